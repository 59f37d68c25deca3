//! `/version` and the discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`).
use serde_json::{Value, json};

use super::resources::RESOURCES;

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.0-l3lb-test",
        "platform": "linux/amd64",
    })
}

/// The document served at `segs` (already known to be a discovery path); `served[i]` says
/// whether `RESOURCES[i]` is served now (a custom resource only with its CRD). `None`: nothing
/// is served there.
pub fn document(segs: &[String], served: &[bool]) -> Option<Value> {
    let types = || {
        RESOURCES
            .iter()
            .enumerate()
            .filter(|(i, _)| served.get(*i).copied().unwrap_or(false))
            .map(|(_, r)| r)
    };
    let doc = match segs {
        [api] if api == "api" => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        }),
        [apis] if apis == "apis" => {
            let mut groups: Vec<(&str, &str)> = types()
                .filter(|r| !r.group.is_empty())
                .map(|r| (r.group, r.version))
                .collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|(group, version)| {
                    let gv =
                        json!({"groupVersion": format!("{group}/{version}"), "version": version});
                    json!({"name": group, "versions": [gv], "preferredVersion": gv})
                })
                .collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        [_, rest @ ..] => {
            let (group, version) = match rest {
                [version] => ("", version.as_str()),
                [group, version] => (group.as_str(), version.as_str()),
                _ => ("", ""),
            };
            let mut resources = Vec::new();
            for r in types().filter(|r| r.group == group && r.version == version) {
                let verbs = [
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ];
                resources.push(json!({
                    "name": r.plural,
                    "singularName": r.kind.to_lowercase(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": verbs,
                }));
                if r.has_status {
                    resources.push(json!({
                        "name": format!("{}/status", r.plural),
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["get", "patch", "update"],
                    }));
                }
            }
            if resources.is_empty() && !group.is_empty() {
                return None;
            }
            let group_version = if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            };
            json!({
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": resources,
            })
        }
        [] => return None,
    };
    Some(doc)
}
