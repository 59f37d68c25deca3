//! What a request asks for beyond its path: query parameters, and the metadata-only form
//! (`as=PartialObjectMetadata`) that kube-rs' metadata watchers request.
use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

pub type Query = HashMap<String, String>;

pub fn wants_metadata_only(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("as=PartialObjectMetadata"))
}

/// The `PartialObjectMetadata` form of `obj`.
pub fn to_metadata_only(obj: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"]})
}
