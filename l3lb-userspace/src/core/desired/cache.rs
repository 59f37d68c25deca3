//! Incremental desired state: only Services whose Service object or local endpoints changed since
//! the last call are recomputed. The Service store hands out a new `Arc` for every changed object
//! and the cache holds the `Arc`s it last saw, so a pointer it does not know is a changed or new
//! object, and a known pointer missing from the input is a changed or deleted one (a held
//! allocation cannot be reused for another object); only pointers are hashed per call. The
//! [`SliceIndex`] says itself which Services' local endpoints changed. A change of the pools or of
//! the node's facts (rare) recomputes every Service. The result equals [`desired`].
use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, hash_map::Entry},
    sync::Arc,
};

use k8s_openapi::api::core::v1::Service;

#[cfg(doc)]
use super::desired;
use super::{
    Local, Scope, ServiceDesired,
    merged::Merged,
    node::{Exclusion, exclude},
    service_desired,
    slices::SliceIndex,
    trust::NodeFacts,
};
use crate::core::{
    model::{Desired, ServiceKey},
    pool::Pool,
};

/// What the last call saw (by address), and each LoadBalancer Service's share, for one scope.
pub struct DesiredCache {
    scope: Scope,
    /// The scope changed since the last call: every Service is recomputed.
    rescope: bool,
    /// Untrusted local endpoint addresses left out, over all Services.
    endpoints_refused: usize,
    services: HashMap<usize, Arc<Service>>,
    by_key: BTreeMap<ServiceKey, Arc<Service>>,
    parts: BTreeMap<ServiceKey, ServiceDesired>,
    merged: Merged,
}

/// Entries of `known` whose pointer is not in `input` (removed from `known`), and the `input`
/// entries `known` lacks (added to it).
fn diff<T>(known: &mut HashMap<usize, Arc<T>>, input: &[Arc<T>]) -> (Vec<Arc<T>>, Vec<Arc<T>>) {
    let present: HashSet<usize> = input.iter().map(|o| Arc::as_ptr(o).addr()).collect();
    let mut removed = Vec::new();
    known.retain(|ptr, obj| {
        let keep = present.contains(ptr);
        if !keep {
            removed.push(Arc::clone(obj));
        }
        keep
    });
    let mut added = Vec::new();
    for obj in input {
        if let Entry::Vacant(slot) = known.entry(Arc::as_ptr(obj).addr()) {
            slot.insert(Arc::clone(obj));
            added.push(Arc::clone(obj));
        }
    }
    (removed, added)
}

impl DesiredCache {
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            rescope: false,
            endpoints_refused: 0,
            services: HashMap::new(),
            by_key: BTreeMap::new(),
            parts: BTreeMap::new(),
            merged: Merged::default(),
        }
    }

    /// The Services a wanted `vip` is announced for, as of the last [`DesiredCache::desired`].
    pub fn services_of(&self, vip: std::net::IpAddr) -> BTreeSet<ServiceKey> {
        self.merged.services_of(&self.parts, vip)
    }

    /// Local endpoint addresses left out as untrusted, as of the last [`DesiredCache::desired`].
    pub fn endpoints_refused(&self) -> usize {
        self.endpoints_refused
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The desired state as of the last [`DesiredCache::desired`].
    pub fn current(&self) -> Cow<'_, Desired> {
        exclude(self.merged.desired(), self.scope.exclusion)
    }

    /// Service `key` as the last call saw it.
    pub(super) fn service(&self, key: &ServiceKey) -> Option<&Service> {
        self.by_key.get(key).map(AsRef::as_ref)
    }

    /// Service `key`'s share, if it is one of l3lb's.
    pub(super) fn part(&self, key: &ServiceKey) -> Option<&ServiceDesired> {
        self.parts.get(key)
    }

    pub(super) fn parts(&self) -> &BTreeMap<ServiceKey, ServiceDesired> {
        &self.parts
    }

    pub(super) fn merged(&self) -> &Merged {
        &self.merged
    }

    /// New pools: every Service is recomputed on the next call if they differ.
    pub fn set_pools(&mut self, pools: Vec<Pool>) {
        if self.scope.pools != pools {
            self.scope.pools = pools;
            self.rescope = true;
        }
    }

    /// New facts about the node: every Service is recomputed on the next call if they differ.
    pub fn set_facts(&mut self, facts: NodeFacts) {
        if self.scope.facts != facts {
            self.scope.facts = facts;
            self.rescope = true;
        }
    }

    /// Whether the node is excluded from load balancing: while it is, [`DesiredCache::desired`]
    /// wants no VIP.
    pub fn set_exclusion(&mut self, exclusion: Option<Exclusion>) {
        self.scope.exclusion = exclusion;
    }

    /// The same as [`desired`] over these Services and slices, recomputing only the Services
    /// whose Service object changed since the last call or that `dirty` names (those whose local
    /// endpoints changed: [`SliceIndex::take_dirty`]). Returns how many Services were
    /// recomputed.
    pub fn desired(
        &mut self,
        services: &[Arc<Service>],
        slices: &SliceIndex,
        mut dirty: BTreeSet<ServiceKey>,
    ) -> (Cow<'_, Desired>, usize) {
        let (removed, added) = diff(&mut self.services, services);
        for svc in removed {
            if let Some(key) = ServiceKey::of(&svc) {
                if self.by_key.get(&key).is_some_and(|s| Arc::ptr_eq(s, &svc)) {
                    self.by_key.remove(&key);
                }
                dirty.insert(key);
            }
        }
        for svc in added {
            if let Some(key) = ServiceKey::of(&svc) {
                self.by_key.insert(key.clone(), svc);
                dirty.insert(key);
            }
        }
        if std::mem::take(&mut self.rescope) {
            dirty.extend(self.by_key.keys().cloned());
        }
        let recomputed = dirty.len();
        let mut changed = Vec::with_capacity(dirty.len());
        for key in dirty {
            let old = self.parts.remove(&key);
            self.endpoints_refused -= old.as_ref().map_or(0, |o| o.endpoints_refused);
            changed.push((key.clone(), old));
            let Some(svc) = self.by_key.get(&key).filter(|s| self.scope.class.owns(s)) else {
                continue;
            };
            let own: Vec<&[Local]> = slices.endpoints_of(&key).collect();
            let part = service_desired(svc, &own, &self.scope);
            self.endpoints_refused += part.endpoints_refused;
            self.parts.insert(key, part);
        }
        self.merged.update(&self.parts, changed);
        (
            exclude(self.merged.desired(), self.scope.exclusion),
            recomputed,
        )
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
