//! EndpointSlices as l3lb keeps them: of each slice only its Service and its endpoints on this
//! node, and a slice without any is not kept at all. At 100,000 endpoints over 10,000 Services
//! whole slice objects were most of the daemon's memory, and on a large cluster most slices have
//! no endpoint on any one node. A change is marked only when this node's endpoints change, so
//! endpoints moving on other nodes cost no recompute here. Of every slice, the names of the nodes
//! with a Ready endpoint are also kept, for L2 mode's announcer choice ([`ReadyNodes`]).
use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{
    SERVICE_NAME_LABEL,
    local::{Local, local_endpoints},
};
use crate::core::{l2::ReadyNodes, model::ServiceKey};

/// A slice's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SliceId {
    pub namespace: String,
    pub name: String,
}

/// The local endpoints of every slice that has some, by Service, and the Services whose local
/// endpoints changed since [`SliceIndex::take_dirty`].
#[derive(Debug, Default)]
pub struct SliceIndex {
    node: String,
    /// Per Service: (slice name, its local endpoints), by slice name.
    by_service: HashMap<ServiceKey, Vec<(String, Vec<Local>)>>,
    /// The Service each kept slice belongs to.
    owner: HashMap<SliceId, ServiceKey>,
    dirty: BTreeSet<ServiceKey>,
    ready: ReadyNodes,
    /// Whether a change of Ready nodes alone counts as a change (only while an L2 pool exists:
    /// otherwise endpoints moving on other nodes would wake every node's passes).
    ready_matters: bool,
}

/// The Service an EndpointSlice belongs to (its `kubernetes.io/service-name` label).
pub fn slice_owner(slice: &EndpointSlice) -> Option<ServiceKey> {
    Some(ServiceKey {
        namespace: slice.metadata.namespace.clone()?,
        name: slice
            .metadata
            .labels
            .as_ref()?
            .get(SERVICE_NAME_LABEL)?
            .clone(),
    })
}

fn pair(id: &SliceId) -> (String, String) {
    (id.namespace.clone(), id.name.clone())
}

fn slice_id(slice: &EndpointSlice) -> Option<SliceId> {
    Some(SliceId {
        namespace: slice.metadata.namespace.clone()?,
        name: slice.metadata.name.clone()?,
    })
}

impl SliceIndex {
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            ..Self::default()
        }
    }

    /// Whether a change of Ready nodes alone counts as a change ([`SliceIndex::apply`]).
    pub fn set_ready_matters(&mut self, matters: bool) {
        self.ready_matters = matters;
    }

    /// A slice was added or changed. Returns whether this node's endpoints, or the slice's
    /// Ready nodes (if they matter), changed.
    pub fn apply(&mut self, slice: &EndpointSlice) -> bool {
        let Some(id) = slice_id(slice) else {
            return false;
        };
        let owner = slice_owner(slice);
        let ready = self.ready.apply(pair(&id), owner.clone(), slice);
        let locals = local_endpoints(slice, &self.node);
        let local = match owner.filter(|_| !locals.is_empty()) {
            Some(owner) => self.put(id, owner, locals),
            None => self.remove(&id),
        };
        local || (ready && self.ready_matters)
    }

    /// A slice was deleted. Returns whether this node's endpoints, or the Ready nodes (if they
    /// matter), changed.
    pub fn delete(&mut self, slice: &EndpointSlice) -> bool {
        slice_id(slice).is_some_and(|id| {
            let ready = self.ready.remove(&pair(&id)) && self.ready_matters;
            self.remove(&id) || ready
        })
    }

    /// The id of `slice` if it is kept (it has endpoints on this node, or Ready ones anywhere).
    pub fn kept(&self, slice: &EndpointSlice) -> Option<SliceId> {
        slice_id(slice).filter(|id| self.owner.contains_key(id) || self.ready.contains(&pair(id)))
    }

    /// Forgets every kept slice `keep` says no to (those a relist did not return).
    pub fn retain(&mut self, keep: impl Fn(&SliceId) -> bool) {
        let gone: Vec<SliceId> = self.owner.keys().filter(|id| !keep(id)).cloned().collect();
        for id in gone {
            self.remove(&id);
        }
        let gone: Vec<(String, String)> = self
            .ready
            .ids()
            .filter(|(namespace, name)| {
                !keep(&SliceId {
                    namespace: namespace.clone(),
                    name: name.clone(),
                })
            })
            .cloned()
            .collect();
        for id in gone {
            self.ready.remove(&id);
        }
    }

    /// The nodes with a Ready endpoint of Service `key` in family `v6` (L2 mode).
    pub fn ready_nodes(&self, key: &ServiceKey, v6: bool) -> BTreeSet<String> {
        self.ready.of(key, v6)
    }

    /// The local endpoints of Service `key`'s slices.
    pub fn endpoints_of(&self, key: &ServiceKey) -> impl Iterator<Item = &[Local]> {
        self.by_service
            .get(key)
            .into_iter()
            .flatten()
            .map(|(_, locals)| locals.as_slice())
    }

    /// The Services whose local endpoints changed since the last call.
    pub fn take_dirty(&mut self) -> BTreeSet<ServiceKey> {
        std::mem::take(&mut self.dirty)
    }

    /// How many slices are kept (those with an endpoint on this node).
    pub fn len(&self) -> usize {
        self.owner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owner.is_empty()
    }

    fn put(&mut self, id: SliceId, owner: ServiceKey, mut locals: Vec<Local>) -> bool {
        if self.owner.get(&id).is_some_and(|o| *o != owner) {
            // Relabelled to another Service: it leaves the old one.
            self.remove(&id);
        }
        locals.shrink_to_fit();
        let own = self.by_service.entry(owner.clone()).or_default();
        match own.binary_search_by(|(name, _)| name.as_str().cmp(&id.name)) {
            Ok(at) if own[at].1 == locals => return false,
            Ok(at) => own[at].1 = locals,
            Err(at) => {
                own.reserve_exact(1);
                own.insert(at, (id.name.clone(), locals));
            }
        }
        self.dirty.insert(owner.clone());
        self.owner.insert(id, owner);
        true
    }

    fn remove(&mut self, id: &SliceId) -> bool {
        let Some(owner) = self.owner.remove(id) else {
            return false;
        };
        if let Some(own) = self.by_service.get_mut(&owner) {
            own.retain(|(name, _)| *name != id.name);
            if own.is_empty() {
                self.by_service.remove(&owner);
            }
        }
        self.dirty.insert(owner);
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn slice(name: &str, service: &str, endpoints: Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": name,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }))
        .unwrap()
    }

    fn key(name: &str) -> ServiceKey {
        ServiceKey {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn addrs(index: &SliceIndex, service: &str) -> Vec<String> {
        index
            .endpoints_of(&key(service))
            .flatten()
            .map(|l| format!("{}{}", l.endpoint, if l.ready { "" } else { "~" }))
            .collect()
    }

    #[test]
    fn keeps_only_slices_with_local_endpoints_and_marks_only_local_changes() {
        let mut index = SliceIndex::new("n1");
        index.set_ready_matters(true);
        let here = json!([{"addresses": ["10.0.0.1"], "nodeName": "n1"},
                          {"addresses": ["10.0.0.2"], "nodeName": "n2"}]);
        let elsewhere = json!([{"addresses": ["10.0.1.1"], "nodeName": "n2"}]);
        assert!(index.apply(&slice("a-1", "a", here.clone())));
        // Nothing on n1, but a new Ready node (n2) for L2 mode's choice.
        assert!(index.apply(&slice("b-1", "b", elsewhere)));
        assert_eq!(index.len(), 1);
        assert_eq!(index.take_dirty(), BTreeSet::from([key("a")]));
        assert_eq!(addrs(&index, "a"), ["10.0.0.1:8080"]);

        // Another node's endpoint changes: nothing to recompute here, and while the set of Ready
        // nodes stays the same, no change at all.
        let moved = json!([{"addresses": ["10.0.0.1"], "nodeName": "n1"},
                           {"addresses": ["10.0.0.9"], "nodeName": "n2"}]);
        assert!(!index.apply(&slice("a-1", "a", moved)));
        let elsewhere = json!([{"addresses": ["10.0.0.1"], "nodeName": "n1"},
                               {"addresses": ["10.0.0.9"], "nodeName": "n3"}]);
        assert!(index.apply(&slice("a-1", "a", elsewhere)));
        assert!(index.take_dirty().is_empty());
        let v4 = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
        assert_eq!(index.ready_nodes(&key("a"), false), v4(&["n1", "n3"]));
        assert_eq!(index.ready_nodes(&key("b"), false), v4(&["n2"]));

        // The local one turns terminating, a second slice adds one, then the first goes.
        let terminating = json!([{"addresses": ["10.0.0.1"], "nodeName": "n1",
                                  "conditions": {"ready": false, "serving": true}}]);
        assert!(index.apply(&slice("a-1", "a", terminating)));
        assert!(index.apply(&slice("a-2", "a", here)));
        assert_eq!(addrs(&index, "a"), ["10.0.0.1:8080~", "10.0.0.1:8080"]);
        assert!(index.delete(&slice("a-1", "a", json!([]))));
        assert_eq!(addrs(&index, "a"), ["10.0.0.1:8080"]);
        assert_eq!(index.take_dirty(), BTreeSet::from([key("a")]));
        // b-1 had no endpoint here, but its Ready node n2 was kept.
        assert!(index.delete(&slice("b-1", "b", json!([]))));
        assert!(index.take_dirty().is_empty());
        assert!(index.ready_nodes(&key("b"), false).is_empty());
        assert!(!index.delete(&slice("b-1", "b", json!([]))), "gone");

        // Without L2 pools, another node's change is no change here.
        index.set_ready_matters(false);
        let elsewhere = json!([{"addresses": ["10.0.1.1"], "nodeName": "n2"}]);
        assert!(!index.apply(&slice("c-1", "c", elsewhere)));
        assert_eq!(
            index.ready_nodes(&key("c"), false),
            v4(&["n2"]),
            "still kept"
        );
    }

    #[test]
    fn a_relabelled_slice_moves_and_a_relist_forgets_what_it_did_not_return() {
        let mut index = SliceIndex::new("n1");
        let here = json!([{"addresses": ["10.0.0.1"], "nodeName": "n1"}]);
        index.apply(&slice("s-1", "a", here.clone()));
        index.apply(&slice("s-2", "a", here.clone()));
        index.take_dirty();
        assert!(index.apply(&slice("s-1", "b", here.clone())));
        assert_eq!(index.take_dirty(), BTreeSet::from([key("a"), key("b")]));
        assert_eq!(addrs(&index, "a"), ["10.0.0.1:8080"]);
        assert_eq!(addrs(&index, "b"), ["10.0.0.1:8080"]);
        assert_eq!(
            index.kept(&slice("s-2", "a", json!([]))).map(|id| id.name),
            Some("s-2".to_owned())
        );

        index.retain(|id| id.name == "s-1");
        assert_eq!(index.len(), 1);
        assert!(addrs(&index, "a").is_empty());
        assert_eq!(index.take_dirty(), BTreeSet::from([key("a")]));
    }
}
