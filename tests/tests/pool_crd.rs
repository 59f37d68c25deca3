//! deploy/base/crd.yaml is written by hand: it must describe exactly the fields the daemon reads
//! (a field missing from the schema is pruned by the API server before any daemon sees it).
use l3lb_tests::manifest::first_of_kind;
use l3lb_userspace::core::pool::{Advertisement, PoolSpec};
use serde_json::{Value, json};

const CRD: &str = include_str!("../../deploy/base/crd.yaml");

fn spec_schema() -> Value {
    let crd = first_of_kind(CRD, "CustomResourceDefinition").unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

#[test]
fn the_crd_schema_has_every_field_of_the_pool_spec() {
    let full = PoolSpec {
        namespaces: Some(vec!["web".into()]),
        service_selector: Some(Default::default()),
        interfaces: Some(vec!["eth0".into()]),
        ..PoolSpec::default()
    };
    let model = serde_json::to_value(&full).unwrap();
    let mut fields: Vec<&String> = model.as_object().unwrap().keys().collect();
    let schema = spec_schema();
    let mut described: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    fields.sort();
    described.sort();
    assert_eq!(fields, described);
}

#[test]
fn the_crd_advertisement_enum_and_default_match_the_model() {
    let schema = spec_schema();
    let advertisement = &schema["properties"]["advertisement"];
    let variants: Vec<Value> = [Advertisement::Bgp, Advertisement::L2]
        .iter()
        .map(|a| serde_json::to_value(a).unwrap())
        .collect();
    assert_eq!(advertisement["enum"], Value::Array(variants));
    assert_eq!(
        advertisement["default"],
        serde_json::to_value(Advertisement::default()).unwrap()
    );
    assert_eq!(advertisement["default"], json!("bgp"));
    // Interface names: what the kernel allows (IFNAMSIZ - 1).
    assert_eq!(schema["properties"]["interfaces"]["items"]["maxLength"], 15);
}
