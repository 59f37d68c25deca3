//! Store semantics: resourceVersions, watch history with selector transitions, pagination, compaction.
use serde_json::{Value, json};

use super::{
    meta::WriteMode,
    resources::by_kind,
    selector::Selector,
    store::{Filter, Key, Store},
};

fn slice(name: &str, svc: &str) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": svc}}})
}

fn filter(labels: &str) -> Filter {
    Filter {
        res: by_kind("discovery.k8s.io/v1", "EndpointSlice").unwrap(),
        ns: Some("default".into()),
        labels: Selector::labels(labels).unwrap(),
        fields: Selector::default(),
    }
}

fn types(store: &Store, rv: u64, f: &Filter) -> Vec<(&'static str, String)> {
    let events = store.changes_since(rv, f).unwrap();
    events
        .into_iter()
        .map(|(ty, o)| (ty, o["metadata"]["name"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn writes_bump_a_global_resource_version_and_history_follows_selectors() {
    let mut s = Store::default();
    let res = filter("").res;
    let a = s.create(res, "default", slice("a", "web")).unwrap();
    assert_eq!(a["metadata"]["resourceVersion"], "2");
    assert_eq!(a["metadata"]["namespace"], "default");
    s.create(res, "default", slice("b", "db")).unwrap();
    let key = |name: &str| Key {
        res,
        ns: "default".into(),
        name: name.into(),
    };
    s.update(&key("a"), slice("a", "db"), WriteMode::Main, true)
        .unwrap();
    s.update(&key("b"), slice("b", "web"), WriteMode::Main, true)
        .unwrap();
    s.delete(&key("b")).unwrap();
    assert_eq!(s.rv(), 6);

    let all = filter("");
    let web = filter("kubernetes.io/service-name=web");
    let names = |v: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        v.iter().map(|(t, n)| (*t, n.to_string())).collect()
    };
    assert_eq!(
        types(&s, 0, &all),
        names(&[
            ("ADDED", "a"),
            ("ADDED", "b"),
            ("MODIFIED", "a"),
            ("MODIFIED", "b"),
            ("DELETED", "b")
        ])
    );
    assert_eq!(
        types(&s, 0, &web),
        names(&[
            ("ADDED", "a"),
            ("DELETED", "a"),
            ("ADDED", "b"),
            ("DELETED", "b")
        ])
    );
    assert_eq!(types(&s, 5, &all), names(&[("DELETED", "b")]));

    let stale = json!({"metadata": {"name": "a", "resourceVersion": "2"}});
    let err = s
        .update(&key("a"), stale, WriteMode::Main, true)
        .unwrap_err();
    assert_eq!(err.code, 409);
}

#[test]
fn pagination_and_compaction() {
    let mut s = Store::default();
    let f = filter("");
    for name in ["c", "a", "b"] {
        s.create(f.res, "default", slice(name, "web")).unwrap();
    }
    let names = |items: Vec<Value>| -> Vec<String> {
        items
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (page, more) = s.list(&f, None, Some(2));
    assert_eq!((names(page), more), (vec!["a".into(), "b".into()], true));
    let (page, more) = s.list(&f, Some(("default", "b")), Some(2));
    assert_eq!((names(page), more), (vec!["c".into()], false));

    let before = s.rv();
    s.compact();
    let err = s.changes_since(before, &f).unwrap_err();
    assert_eq!((err.code, err.reason), (410, "Expired"));
    assert!(s.changes_since(s.rv(), &f).unwrap().is_empty());
    assert_eq!(
        s.changes_since(s.rv() + 1, &f).unwrap_err().code,
        410,
        "a future rv relists"
    );
}
