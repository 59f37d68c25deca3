//! A minimal OpenAPI v3: `/openapi/v3` lists a document per served group version, and each
//! document has, for every served type, the PATCH path with the query parameters it takes
//! (`x-kubernetes-group-version-kind` naming the type) and no schemas. kubectl reads exactly this
//! to learn that the server validates fields itself: it then sends `fieldValidation=Strict` and
//! leaves validation to the server (see [`super::validate`]) instead of validating against
//! schemas it would have to download.
//!
//! `/openapi/v2` is an empty document (protobuf, kubectl's only v2 format; an empty message):
//! for a kind the server does not serve, kubectl validates against v2 schemas, finds none and
//! checks nothing, and then fails as against a real server ("no matches for kind").
use std::hash::{DefaultHasher, Hash as _, Hasher as _};

use serde_json::{Map, Value, json};

use super::{discovery, resources::RESOURCES};

/// What `/openapi/v2` is served as.
pub const V2_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The query parameters every PATCH takes here.
const PATCH_PARAMS: [&str; 4] = ["dryRun", "fieldManager", "fieldValidation", "force"];

/// `api/v1` or `apis/<group>/<version>`: the key of a group version under `/openapi/v3`.
fn gv_path(group: &str, version: &str) -> String {
    match group {
        "" => format!("api/{version}"),
        g => format!("apis/{g}/{version}"),
    }
}

/// The group versions with a served type (`served[i]`: whether `RESOURCES[i]` is), in table order.
fn group_versions(served: &[bool]) -> Vec<(&'static str, &'static str)> {
    let mut gvs: Vec<(&str, &str)> = Vec::new();
    for (i, r) in RESOURCES.iter().enumerate() {
        if served.get(i).copied().unwrap_or(false) && !gvs.contains(&(r.group, r.version)) {
            gvs.push((r.group, r.version));
        }
    }
    gvs
}

/// The document of group version `group/version`; `None` if it serves nothing.
fn document(group: &str, version: &str, served: &[bool]) -> Option<Value> {
    let mut paths = Map::new();
    for (i, r) in RESOURCES.iter().enumerate() {
        if !served.get(i).copied().unwrap_or(false) || r.group != group || r.version != version {
            continue;
        }
        let scope = if r.namespaced {
            "namespaces/{namespace}/"
        } else {
            ""
        };
        let path = format!("/{}/{scope}{}/{{name}}", gv_path(group, version), r.plural);
        let parameters: Vec<Value> = PATCH_PARAMS
            .iter()
            .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string"}}))
            .collect();
        let gvk = json!({"group": group, "version": version, "kind": r.kind});
        paths.insert(
            path,
            json!({"patch": {"x-kubernetes-group-version-kind": gvk, "parameters": parameters}}),
        );
    }
    if paths.is_empty() {
        return None;
    }
    let info = json!({"title": "Kubernetes", "version": discovery::version()["gitVersion"]});
    Some(json!({"openapi": "3.0.0", "info": info, "paths": paths, "components": {}}))
}

/// The document at `/openapi/v3/<segs...>` (`segs` empty: the index); `None`: not served.
pub fn serve(segs: &[String], served: &[bool]) -> Option<Value> {
    match segs {
        [] => {
            let mut paths = Map::new();
            for (group, version) in group_versions(served) {
                let doc = document(group, version, served)?;
                // The hash tells a client's cache when the document changed (a CRD came or went).
                let mut h = DefaultHasher::new();
                doc.to_string().hash(&mut h);
                let key = gv_path(group, version);
                let url = format!("/openapi/v3/{key}?hash={:016X}", h.finish());
                paths.insert(key, json!({"serverRelativeURL": url}));
            }
            Some(json!({"paths": paths}))
        }
        [api, version] if api == "api" => document("", version, served),
        [apis, group, version] if apis == "apis" => document(group, version, served),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_a_patch_operation_per_served_type() {
        let served: Vec<bool> = RESOURCES.iter().map(|r| !r.custom).collect();
        let index = serve(&[], &served).unwrap();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        assert!(index["paths"].get("apis/l3lb.io/v1alpha1").is_none());
        let apps = serve(&["apis".into(), "apps".into(), "v1".into()], &served).unwrap();
        let patch =
            &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "DaemonSet"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        let core = serve(&["api".into(), "v1".into()], &served).unwrap();
        assert!(core["paths"].get("/api/v1/namespaces/{name}").is_some());
        assert!(serve(&["apis".into(), "nope".into(), "v1".into()], &served).is_none());
    }
}
