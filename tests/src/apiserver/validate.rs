//! What the server checks in a client's write to a main resource before storing it (or, in a
//! dry run, answering as if it had), as the real API server would refuse it:
//!
//! - `metadata.name`: a DNS-1035 label for Services, a DNS-1123 label for Namespaces, a path
//!   segment for RBAC objects, a DNS-1123 subdomain for everything else (422 Invalid);
//! - DaemonSets and Deployments: a selector that matches the pod template's labels, containers
//!   each with a name and an image (422 Invalid);
//! - with `fieldValidation=Strict` (kubectl's default): the object decodes as its Kubernetes type,
//!   with no field the type does not have and no value of the wrong type (400 BadRequest, as
//!   "strict decoding error"). Built-in kinds only: custom resources are not checked against
//!   their CRD's schema.
//!
//! Writes of the test harness ([`super::ApiServer::apply`]) and to `/status` are not checked.
use k8s_openapi::{
    api::{apps, coordination, core::v1 as corev1, discovery, events, rbac},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::{resources::ResourceType, status::ApiError};

/// How strictly to decode (the `fieldValidation` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// `Ignore` or `Warn` (the default): unknown fields are dropped silently.
    Lenient,
    Strict,
}

impl FieldValidation {
    pub fn from_query(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("" | "Ignore" | "Warn") => Ok(Self::Lenient),
            Some("Strict") => Ok(Self::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

/// Checks `obj`, a client's new version of an object of type `rt`.
pub fn check(rt: &ResourceType, obj: &Value, fields: FieldValidation) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    // Empty: generateName, or the URL's name (checked against the body by the store).
    if !name.is_empty()
        && let Err(why) = name_rule(rt)(name)
    {
        let detail = format!("metadata.name: Invalid value: {name:?}: {why}");
        return Err(ApiError::invalid(rt, name, &detail));
    }
    if fields == FieldValidation::Strict {
        strict_decode(rt, obj)?;
    }
    if rt.group == "apps" {
        workload(obj).map_err(|detail| ApiError::invalid(rt, name, &detail))?;
    }
    Ok(())
}

fn name_rule(rt: &ResourceType) -> fn(&str) -> Result<(), String> {
    match (rt.group, rt.kind) {
        ("", "Service") => dns1035_label,
        ("", "Namespace") => dns1123_label,
        ("rbac.authorization.k8s.io", _) => path_segment,
        _ => dns1123_subdomain,
    }
}

fn label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn dns1123_label(s: &str) -> Result<(), String> {
    if s.len() <= 63 && label_chars(s) {
        return Ok(());
    }
    Err(
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
         and must start and end with an alphanumeric character (at most 63)"
            .into(),
    )
}

fn dns1035_label(s: &str) -> Result<(), String> {
    if s.len() <= 63 && label_chars(s) && s.as_bytes()[0].is_ascii_lowercase() {
        return Ok(());
    }
    Err(
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with \
         an alphabetic character, and end with an alphanumeric character (at most 63)"
            .into(),
    )
}

fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() <= 253 && s.split('.').all(label_chars) {
        return Ok(());
    }
    Err(
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' \
         or '.', and must start and end with an alphanumeric character (at most 253)"
            .into(),
    )
}

fn path_segment(s: &str) -> Result<(), String> {
    if s == "." || s == ".." {
        return Err(format!("may not be '{s}'"));
    }
    match s.find(['/', '%']) {
        Some(i) => Err(format!("may not contain '{}'", &s[i..=i])),
        None => Ok(()),
    }
}

/// `obj` decoded as `T` and encoded again: what the server understood of it.
fn roundtrip<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// Strict decoding: `obj` as its built-in type, every field it has known to that type.
fn strict_decode(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let decode: fn(&Value) -> Result<Value, String> = match (rt.group, rt.kind) {
        ("", "Namespace") => roundtrip::<corev1::Namespace>,
        ("", "Node") => roundtrip::<corev1::Node>,
        ("", "Pod") => roundtrip::<corev1::Pod>,
        ("", "Service") => roundtrip::<corev1::Service>,
        ("", "Endpoints") => roundtrip::<corev1::Endpoints>,
        ("", "ConfigMap") => roundtrip::<corev1::ConfigMap>,
        ("", "Secret") => roundtrip::<corev1::Secret>,
        ("", "ServiceAccount") => roundtrip::<corev1::ServiceAccount>,
        ("", "Event") => roundtrip::<corev1::Event>,
        ("discovery.k8s.io", _) => roundtrip::<discovery::v1::EndpointSlice>,
        ("coordination.k8s.io", _) => roundtrip::<coordination::v1::Lease>,
        ("events.k8s.io", _) => roundtrip::<events::v1::Event>,
        ("apiextensions.k8s.io", _) => roundtrip::<CustomResourceDefinition>,
        ("rbac.authorization.k8s.io", "Role") => roundtrip::<rbac::v1::Role>,
        ("rbac.authorization.k8s.io", "ClusterRole") => roundtrip::<rbac::v1::ClusterRole>,
        ("rbac.authorization.k8s.io", "RoleBinding") => roundtrip::<rbac::v1::RoleBinding>,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            roundtrip::<rbac::v1::ClusterRoleBinding>
        }
        ("apps", "DaemonSet") => roundtrip::<apps::v1::DaemonSet>,
        ("apps", "Deployment") => roundtrip::<apps::v1::Deployment>,
        _ => return Ok(()),
    };
    let cannot = |why: String| {
        ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {why}",
            kind = rt.kind,
            version = rt.version
        ))
    };
    let mut typed = obj.clone();
    typed["apiVersion"] = json!(rt.api_version());
    typed["kind"] = json!(rt.kind);
    let decoded = decode(&typed).map_err(cannot)?;
    let mut unknown = Vec::new();
    unknown_fields(&typed, &decoded, "", &mut unknown);
    match unknown.as_slice() {
        [] => Ok(()),
        fields => {
            let fields: Vec<String> = fields
                .iter()
                .map(|f| format!("unknown field {f:?}"))
                .collect();
            Err(cannot(format!(
                "strict decoding error: {}",
                fields.join(", ")
            )))
        }
    }
}

/// The paths (`spec.template.spec.containers[0].name`) of fields in `input` that `decoded` (its
/// typed round trip) lost. `null` is no field.
fn unknown_fields(input: &Value, decoded: &Value, path: &str, out: &mut Vec<String>) {
    match (input, decoded) {
        (Value::Object(input), Value::Object(decoded)) => {
            for (key, value) in input.iter().filter(|(_, v)| !v.is_null()) {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match decoded.get(key) {
                    Some(d) => unknown_fields(value, d, &at, out),
                    None => out.push(at),
                }
            }
        }
        (Value::Array(input), Value::Array(decoded)) => {
            for (i, (value, d)) in input.iter().zip(decoded).enumerate() {
                unknown_fields(value, d, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// A DaemonSet's or Deployment's own rules: its selector selects its pod template, whose
/// containers have names and images.
fn workload(obj: &Value) -> Result<(), String> {
    let spec = &obj["spec"];
    let selector = &spec["selector"];
    let labels = &spec["template"]["metadata"]["labels"];
    if !selector.is_object() {
        return Err("spec.selector: Required value".into());
    }
    let match_labels = selector["matchLabels"].as_object();
    let expressions = selector["matchExpressions"].as_array();
    if match_labels.is_none_or(|m| m.is_empty()) && expressions.is_none_or(|e| e.is_empty()) {
        return Err(
            "spec.selector: Invalid value: empty selector is invalid for this resource".into(),
        );
    }
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let matches_labels = match_labels
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let matches_expressions = expressions.into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e["operator"].as_str().unwrap_or_default() {
            "In" => label(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => label(key).is_some(),
            "DoesNotExist" => label(key).is_none(),
            _ => false,
        }
    });
    if !(matches_labels && matches_expressions) {
        return Err(format!(
            "spec.template.metadata.labels: Invalid value: {labels}: `selector` does not match template `labels`"
        ));
    }
    let containers = spec["template"]["spec"]["containers"].as_array();
    let Some(containers) = containers.filter(|c| !c.is_empty()) else {
        return Err("spec.template.spec.containers: Required value".into());
    };
    for (i, c) in containers.iter().enumerate() {
        for field in ["name", "image"] {
            if c[field].as_str().is_none_or(str::is_empty) {
                return Err(format!(
                    "spec.template.spec.containers[{i}].{field}: Required value"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::{RESOURCES, by_kind};

    fn rt(api_version: &str, kind: &str) -> &'static ResourceType {
        &RESOURCES[by_kind(api_version, kind).unwrap()]
    }

    fn daemonset() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "l3lb", "namespace": "l3lb-system"},
            "spec": {
                "selector": {"matchLabels": {"app": "l3lb"}},
                "template": {
                    "metadata": {"labels": {"app": "l3lb"}},
                    "spec": {"containers": [{"name": "l3lb", "image": "localhost/l3lb:0.1.0"}]},
                },
            },
        })
    }

    #[test]
    fn accepts_a_valid_object_strictly() {
        let ds = rt("apps/v1", "DaemonSet");
        check(ds, &daemonset(), FieldValidation::Strict).unwrap();
        let mut nulls = daemonset();
        nulls["metadata"]["creationTimestamp"] = Value::Null;
        check(ds, &nulls, FieldValidation::Strict).unwrap();
    }

    #[test]
    fn refuses_unknown_fields_and_wrong_types_when_strict() {
        let ds = rt("apps/v1", "DaemonSet");
        let mut typo = daemonset();
        typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Never");
        let e = check(ds, &typo, FieldValidation::Strict).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message.contains(
                "strict decoding error: unknown field \"spec.template.spec.containers[0].imagePullPolicyy\""
            ),
            "{e}"
        );
        check(ds, &typo, FieldValidation::Lenient).unwrap();
        let mut wrong = daemonset();
        wrong["spec"]["minReadySeconds"] = json!("soon");
        assert_eq!(
            check(ds, &wrong, FieldValidation::Strict).unwrap_err().code,
            400
        );
    }

    #[test]
    fn refuses_a_selector_that_misses_the_template() {
        let ds = rt("apps/v1", "DaemonSet");
        let mut bad = daemonset();
        bad["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        let e = check(ds, &bad, FieldValidation::Lenient).unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert!(e.message.contains("does not match template"), "{e}");
        let mut no_image = daemonset();
        no_image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
        let e = check(ds, &no_image, FieldValidation::Lenient).unwrap_err();
        assert!(
            e.message.contains("containers[0].image: Required value"),
            "{e}"
        );
    }

    #[test]
    fn names_follow_their_kinds_rules() {
        let (svc, cr, lease) = (
            rt("v1", "Service"),
            rt("rbac.authorization.k8s.io/v1", "ClusterRole"),
            rt("coordination.k8s.io/v1", "Lease"),
        );
        let named = |name: &str| json!({"metadata": {"name": name}});
        check(svc, &named("web"), FieldValidation::Lenient).unwrap();
        for bad in ["Web", "1web", "web.x", "-web"] {
            assert_eq!(
                check(svc, &named(bad), FieldValidation::Lenient)
                    .unwrap_err()
                    .code,
                422
            );
        }
        check(cr, &named("system:l3lb"), FieldValidation::Lenient).unwrap();
        assert!(check(cr, &named("a/b"), FieldValidation::Lenient).is_err());
        check(lease, &named("l3lb.allocator-0"), FieldValidation::Lenient).unwrap();
        assert!(check(lease, &named("l3lb_allocator"), FieldValidation::Lenient).is_err());
    }
}
