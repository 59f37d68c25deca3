//! PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902) via the `json-patch`
//! crate kube itself uses; strategic merge patch and server-side apply are approximated by
//! merge patches (lists are replaced, not merged by key), which is all the daemon sends.
use serde_json::Value;

/// The patch flavours a client names with its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/json-patch+json" => Some(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Parses a patch body: JSON, or YAML for server-side apply.
pub fn parse_body(kind: PatchKind, body: &[u8]) -> Result<Value, String> {
    match kind {
        PatchKind::Apply => serde_saphyr::from_slice(body).map_err(|e| format!("apply body: {e}")),
        _ => serde_json::from_slice(body).map_err(|e| format!("patch body: {e}")),
    }
}

/// Applies `patch` of `kind` to `target`; a JSON patch is all-or-nothing.
pub fn apply(kind: PatchKind, target: &mut Value, patch: &Value) -> Result<(), String> {
    match kind {
        PatchKind::Merge | PatchKind::Strategic | PatchKind::Apply => {
            json_patch::merge(target, patch);
            Ok(())
        }
        PatchKind::Json => {
            let ops: json_patch::Patch =
                serde_json::from_value(patch.clone()).map_err(|e| format!("JSON patch: {e}"))?;
            json_patch::patch(target, &ops).map_err(|e| format!("JSON patch: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        let patch = json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": 1}});
        apply(PatchKind::Merge, &mut doc, &patch).unwrap();
        assert_eq!(
            doc,
            json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {"x": 1}})
        );
    }

    #[test]
    fn json_patch_operations_are_atomic() {
        let mut doc = json!({"metadata": {"labels": {"a/b": "1"}}, "items": [1, 2]});
        let ops = json!([
            {"op": "test", "path": "/metadata/labels/a~1b", "value": "1"},
            {"op": "replace", "path": "/metadata/labels/a~1b", "value": "2"},
            {"op": "add", "path": "/items/-", "value": 3},
            {"op": "remove", "path": "/items/0"},
            {"op": "copy", "from": "/items", "path": "/copy"},
            {"op": "move", "from": "/copy", "path": "/moved"},
        ]);
        apply(PatchKind::Json, &mut doc, &ops).unwrap();
        let want = json!({"metadata": {"labels": {"a/b": "2"}}, "items": [2, 3], "moved": [2, 3]});
        assert_eq!(doc, want);
        let failing = json!([
            {"op": "add", "path": "/x", "value": 1},
            {"op": "test", "path": "/items/0", "value": 9},
        ]);
        assert!(apply(PatchKind::Json, &mut doc, &failing).is_err());
        assert_eq!(
            doc, want,
            "a failed JSON patch must leave the object as it was"
        );
    }

    #[test]
    fn apply_body_is_yaml() {
        let body = b"metadata:\n  labels:\n    a: \"1\"\n";
        let v = parse_body(PatchKind::Apply, body).unwrap();
        assert_eq!(v, json!({"metadata": {"labels": {"a": "1"}}}));
    }
}
