//! Object metadata the server owns: timestamps, immutable fields, status handling on writes.
use serde_json::{Value, json};

use super::resources::ResourceType;

/// How a write treats the stored `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// A client write to the main resource: the status of types with a status subresource is kept.
    Main,
    /// A write to `/status`: only the status changes.
    Status,
    /// Test-harness writes: the object is taken as given.
    Force,
}

pub fn now_rfc3339() -> String {
    use k8s_openapi::jiff::Timestamp;
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// A non-empty string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?
        .get(field)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// Sets `obj[field]` to `value`, or removes the field when `value` is `None`.
fn set_or_remove(obj: &mut Value, field: &str, value: Option<&Value>) {
    match (value, obj.as_object_mut()) {
        (Some(v), Some(map)) => drop(map.insert(field.to_string(), v.clone())),
        (None, Some(map)) => drop(map.remove(field)),
        (_, None) => {}
    }
}

/// Makes sure `obj` has an object under `metadata`.
pub fn ensure_metadata(obj: &mut Value) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
}

/// The object without metadata and status: what `metadata.generation` counts changes of.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// The object an update of `old` with `obj` stores (before its new resourceVersion): status
/// taken per `mode`, server-owned metadata kept from `old`, generation bumped on spec changes.
/// Equal to `old` when the update changes nothing.
pub fn updated(rt: &ResourceType, old: &Value, obj: Value, mode: WriteMode) -> Value {
    let mut new = match mode {
        WriteMode::Status => {
            let mut o = old.clone();
            o["status"] = obj.get("status").cloned().unwrap_or(json!({}));
            o
        }
        WriteMode::Main if rt.has_status => {
            let mut o = obj;
            set_or_remove(&mut o, "status", old.get("status"));
            o
        }
        WriteMode::Main | WriteMode::Force => obj,
    };
    ensure_metadata(&mut new);
    new["apiVersion"] = json!(rt.api_version());
    new["kind"] = json!(rt.kind);
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "generation",
        "resourceVersion",
    ] {
        set_or_remove(&mut new["metadata"], field, old["metadata"].get(field));
    }
    if new != *old && spec_part(&new) != spec_part(old) {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(0);
        new["metadata"]["generation"] = json!(generation + 1);
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::{RESOURCES, by_kind};

    fn svc_type() -> &'static ResourceType {
        &RESOURCES[by_kind("v1", "Service").unwrap()]
    }

    fn old() -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "generation": 1, "resourceVersion": "5"},
            "spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}})
    }

    #[test]
    fn main_writes_keep_status_and_server_metadata() {
        let body =
            json!({"metadata": {"name": "web", "uid": "forged"}, "spec": {"type": "ClusterIP"}});
        let new = updated(svc_type(), &old(), body, WriteMode::Main);
        assert_eq!(new["status"], old()["status"]);
        assert_eq!(new["metadata"]["uid"], "u1");
        assert_eq!(new["metadata"]["generation"], 2);
        assert_eq!(new["spec"]["type"], "ClusterIP");
    }

    #[test]
    fn status_writes_change_only_status() {
        let body = json!({"spec": {"type": "ClusterIP"}, "status": {}});
        let new = updated(svc_type(), &old(), body, WriteMode::Status);
        assert_eq!(new["spec"], old()["spec"]);
        assert_eq!(new["status"], json!({}));
        assert_eq!(
            new["metadata"]["generation"], 1,
            "status writes leave generation alone"
        );
    }

    #[test]
    fn unchanged_writes_equal_the_old_object() {
        let new = updated(svc_type(), &old(), old(), WriteMode::Force);
        assert_eq!(new, old());
    }
}
