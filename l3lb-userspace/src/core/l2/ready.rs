//! Which nodes have a Ready endpoint of each Service, per address family: what the announcer
//! choice needs of every node's endpoints (the rest of the desired state reads only this node's).
//! Node names are interned: a cluster has few nodes and many slices naming them.
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::core::model::ServiceKey;

/// A slice's Ready nodes: its family (IPv6 or not) and the names, sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    owner: ServiceKey,
    v6: bool,
    nodes: Box<[Arc<str>]>,
}

/// Per slice (namespace, name), its Service and Ready nodes; only slices with some are kept.
#[derive(Debug, Default)]
pub struct ReadyNodes {
    names: HashSet<Arc<str>>,
    slices: HashMap<(String, String), Entry>,
    by_service: HashMap<ServiceKey, BTreeSet<(String, String)>>,
}

impl ReadyNodes {
    /// `slice` (of Service `owner`, if it has one) was added or changed. Returns whether the
    /// Ready nodes it contributes changed.
    pub fn apply(
        &mut self,
        id: (String, String),
        owner: Option<ServiceKey>,
        slice: &EndpointSlice,
    ) -> bool {
        let v6 = match slice.address_type.as_str() {
            "IPv4" => false,
            "IPv6" => true,
            _ => return self.remove(&id),
        };
        let names = super::ready_nodes(slice);
        let Some(owner) = owner.filter(|_| !names.is_empty()) else {
            return self.remove(&id);
        };
        let nodes: Box<[Arc<str>]> = names.iter().map(|n| self.intern(n)).collect();
        let entry = Entry { owner, v6, nodes };
        if self.slices.get(&id) == Some(&entry) {
            return false;
        }
        self.remove(&id);
        self.by_service
            .entry(entry.owner.clone())
            .or_default()
            .insert(id.clone());
        self.slices.insert(id, entry);
        true
    }

    /// The slice is gone. Returns whether it contributed any Ready node.
    pub fn remove(&mut self, id: &(String, String)) -> bool {
        let Some(entry) = self.slices.remove(id) else {
            return false;
        };
        if let Some(ids) = self.by_service.get_mut(&entry.owner) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_service.remove(&entry.owner);
            }
        }
        true
    }

    pub fn contains(&self, id: &(String, String)) -> bool {
        self.slices.contains_key(id)
    }

    /// Every kept slice's id (for a relist to forget those it did not return).
    pub fn ids(&self) -> impl Iterator<Item = &(String, String)> {
        self.slices.keys()
    }

    /// The nodes with a Ready endpoint of Service `key` in family `v6`.
    pub fn of(&self, key: &ServiceKey, v6: bool) -> BTreeSet<String> {
        self.by_service
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|id| self.slices.get(id))
            .filter(|e| e.v6 == v6)
            .flat_map(|e| e.nodes.iter().map(|n| n.to_string()))
            .collect()
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.names.insert(n.clone());
        n
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn slice(family: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": "x"},
            "addressType": family,
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn id(name: &str) -> (String, String) {
        ("ns".into(), name.into())
    }

    fn key(name: &str) -> ServiceKey {
        ServiceKey {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn names(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn ready_nodes_per_service_and_family() {
        let mut r = ReadyNodes::default();
        let v4 = slice(
            "IPv4",
            json!([{"addresses": ["10.0.0.1"], "nodeName": "a"},
                   {"addresses": ["10.0.0.2"], "nodeName": "b", "conditions": {"ready": false}},
                   {"addresses": ["10.0.0.3"], "nodeName": "c", "conditions": {"ready": true}},
                   {"addresses": ["10.0.0.4"]}]),
        );
        assert!(r.apply(id("s-1"), Some(key("s")), &v4));
        assert!(!r.apply(id("s-1"), Some(key("s")), &v4), "unchanged");
        let v6 = slice("IPv6", json!([{"addresses": ["fd00::1"], "nodeName": "b"}]));
        assert!(r.apply(id("s-2"), Some(key("s")), &v6));
        assert_eq!(r.of(&key("s"), false), names(&["a", "c"]));
        assert_eq!(r.of(&key("s"), true), names(&["b"]));
        assert!(r.of(&key("t"), false).is_empty());

        // A node's endpoint turns not Ready: it leaves the set.
        let a_down = slice(
            "IPv4",
            json!([{"addresses": ["10.0.0.1"], "nodeName": "a", "conditions": {"ready": false}},
                   {"addresses": ["10.0.0.3"], "nodeName": "c"}]),
        );
        assert!(r.apply(id("s-1"), Some(key("s")), &a_down));
        assert_eq!(r.of(&key("s"), false), names(&["c"]));

        // Relabelled to another Service: it moves.
        assert!(r.apply(id("s-1"), Some(key("t")), &a_down));
        assert!(r.of(&key("s"), false).is_empty());
        assert_eq!(r.of(&key("t"), false), names(&["c"]));

        // No Ready endpoint left, no owner, or deleted: not kept.
        let none = slice("IPv4", json!([]));
        assert!(r.apply(id("s-1"), Some(key("t")), &none));
        assert!(!r.contains(&id("s-1")));
        assert!(!r.apply(id("s-3"), None, &v4), "a slice of no Service");
        assert!(r.remove(&id("s-2")));
        assert!(!r.remove(&id("s-2")));
        assert_eq!(r.ids().count(), 0);
    }
}
