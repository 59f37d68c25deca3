//! Multi-document YAML manifests (what `kubectl kustomize` prints and `deploy/` holds) as JSON
//! values, for the fixtures that read a DaemonSet's privileges or load a manifest.
use anyhow::Context;
use serde_json::Value;

/// Every non-empty document of `yaml`.
pub fn documents(yaml: &str) -> anyhow::Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).context("parsing a YAML manifest")?;
    Ok(docs.into_iter().filter(|v| !v.is_null()).collect())
}

/// The first object of `kind` in `yaml`.
pub fn first_of_kind(yaml: &str, kind: &str) -> anyhow::Result<Value> {
    documents(yaml)?
        .into_iter()
        .find(|v| v["kind"] == kind)
        .with_context(|| format!("no {kind} in the manifest"))
}

/// The value of env var `name` in the first container of the first `kind` in `objects`.
pub fn env<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a str> {
    let object = objects.iter().find(|o| o["kind"] == kind)?;
    object["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

/// `objects` as one multi-document YAML manifest.
pub fn to_yaml(objects: &[Value]) -> anyhow::Result<String> {
    let docs = objects
        .iter()
        .map(serde_saphyr::to_string)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs.join("---\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_document_and_finds_a_kind() {
        let yaml = "kind: A\nn: 1\n---\n---\nkind: B\nn: 2\n---\nkind: B\nn: 3\n";
        assert_eq!(documents(yaml).unwrap().len(), 3);
        assert_eq!(first_of_kind(yaml, "B").unwrap()["n"], 2);
        assert!(first_of_kind(yaml, "C").is_err());
        let round = to_yaml(&documents(yaml).unwrap()).unwrap();
        assert_eq!(documents(&round).unwrap(), documents(yaml).unwrap());
    }
}
