//! EndpointSlice endpoints as the datapath serves them: ready, terminating-but-serving, gone;
//! address families; `sessionAffinity: ClientIP`.
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use serde_json::{Value, json};

use super::{Scope, desired};
use crate::core::{
    class::ClassFilter,
    model::{Backends, Desired, Endpoint, FrontendId, Proto},
};

const NODE: &str = "node-a";

fn service(extra: Value) -> Service {
    let mut spec = json!({"type": "LoadBalancer", "loadBalancerClass": "l3lb.io/l3lb",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(
        json!({"metadata": {"namespace": "default", "name": "web"}, "spec": spec,
               "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.10"}]}}}),
    )
    .unwrap()
}

fn slice(family: &str, endpoints: Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": format!("web-{family}"),
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": family,
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }))
    .unwrap()
}

fn run(svc: &Service, slices: &[EndpointSlice]) -> Desired {
    let s: Vec<&EndpointSlice> = slices.iter().collect();
    let scope = Scope::new(
        NODE,
        &["198.51.100.0/24".parse().unwrap()],
        &ClassFilter::default(),
    );
    desired(&[svc], &s, &scope)
}

fn fe() -> FrontendId {
    FrontendId {
        vip: "198.51.100.10".parse().unwrap(),
        port: 80,
        proto: Proto::Tcp,
    }
}

fn ep(addr: &str) -> Endpoint {
    Endpoint {
        addr: addr.parse().unwrap(),
        port: 8080,
    }
}

fn endpoint(addr: &str, conditions: Value) -> Value {
    json!({"addresses": [addr], "nodeName": NODE, "conditions": conditions})
}

#[test]
fn ready_terminating_and_gone_endpoints() {
    let d = run(
        &service(json!({})),
        &[slice(
            "IPv4",
            json!([
                endpoint(
                    "10.244.1.1",
                    json!({"ready": true, "serving": true, "terminating": false})
                ),
                endpoint(
                    "10.244.1.2",
                    json!({"ready": false, "serving": true, "terminating": true})
                ),
                endpoint(
                    "10.244.1.3",
                    json!({"ready": false, "serving": false, "terminating": true})
                ),
                endpoint("10.244.1.4", json!({"ready": false})),
                endpoint("10.244.1.5", json!({})),
            ]),
        )],
    );
    let want = Backends {
        ready: [ep("10.244.1.1"), ep("10.244.1.5")].into(),
        terminating: [ep("10.244.1.2")].into(),
        affinity_timeout_s: None,
    };
    assert_eq!(d.frontends[&fe()], want);
    assert!(d.addresses.contains(&fe().vip));
}

#[test]
fn only_terminating_endpoints_keep_the_frontend_without_the_vip() {
    let d = run(
        &service(json!({})),
        &[slice(
            "IPv4",
            json!([endpoint(
                "10.244.1.2",
                json!({"ready": false, "serving": true, "terminating": true})
            )]),
        )],
    );
    assert_eq!(
        d.frontends[&fe()],
        Backends {
            terminating: [ep("10.244.1.2")].into(),
            ..Backends::default()
        }
    );
    assert!(d.addresses.is_empty(), "{:?}", d.addresses);
}

#[test]
fn an_endpoint_ready_in_one_slice_and_terminating_in_another_is_ready() {
    let d = run(
        &service(json!({})),
        &[
            slice(
                "IPv4",
                json!([endpoint("10.244.1.2", json!({"ready": true}))]),
            ),
            serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": "web-old",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": [endpoint("10.244.1.2", json!({"ready": false, "serving": true}))],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }))
            .unwrap(),
        ],
    );
    assert_eq!(d.frontends[&fe()], Backends::from([ep("10.244.1.2")]));
}

#[test]
fn a_vip_is_served_by_endpoints_of_its_own_family() {
    let d = run(
        &service(json!({})),
        &[
            slice(
                "IPv4",
                json!([endpoint("10.244.1.2", json!({"ready": true}))]),
            ),
            slice("IPv6", json!([endpoint("fd00::2", json!({"ready": true}))])),
        ],
    );
    assert_eq!(d.frontends[&fe()], Backends::from([ep("10.244.1.2")]));
}

#[test]
fn client_ip_affinity_with_its_timeout_or_the_default() {
    let slices = [slice(
        "IPv4",
        json!([endpoint("10.244.1.2", json!({"ready": true}))]),
    )];
    let cases = [
        (json!({}), None),
        (json!({"sessionAffinity": "None"}), None),
        (json!({"sessionAffinity": "ClientIP"}), Some(10_800)),
        (
            json!({"sessionAffinity": "ClientIP",
                   "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
            Some(60),
        ),
    ];
    for (extra, want) in cases {
        let d = run(&service(extra.clone()), &slices);
        assert_eq!(d.frontends[&fe()].affinity_timeout_s, want, "{extra}");
    }
}
