//! Incremental desired state: only Services whose Service object or local endpoints changed since
//! the last call are recomputed. The caller says which Services changed
//! ([`DesiredCache::desired_of`], from the watch), or hands every Service over
//! ([`DesiredCache::desired`], after a relist): the store hands out a new `Arc` for every changed
//! object and the cache holds the `Arc` it last saw of each Service, so another pointer under a
//! key is a changed object (a held allocation cannot be reused for another object). The
//! [`SliceIndex`] says itself which Services' local endpoints changed. A change of the pools or
//! of the node's facts (rare) recomputes every Service. The result equals [`desired`], and the
//! cache says which VIPs' part of it may have changed ([`DesiredCache::take_changed`]), so the
//! plan looks at those only.
use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
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
    plan::Changed,
    pool::Pool,
};

/// What the last call saw (by address), and each LoadBalancer Service's share, for one scope.
pub struct DesiredCache {
    scope: Scope,
    /// The scope changed since the last call: every Service is recomputed.
    rescope: bool,
    /// Untrusted local endpoint addresses left out, over all Services.
    endpoints_refused: usize,
    /// Each Service as last seen.
    by_key: BTreeMap<ServiceKey, Arc<Service>>,
    parts: BTreeMap<ServiceKey, ServiceDesired>,
    merged: Merged,
    /// VIPs whose frontends or address may have changed since [`DesiredCache::take_changed`].
    changed: Changed,
}

impl DesiredCache {
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            rescope: false,
            endpoints_refused: 0,
            by_key: BTreeMap::new(),
            parts: BTreeMap::new(),
            merged: Merged::default(),
            changed: Changed::All,
        }
    }

    /// The VIPs whose frontends or address may have changed since the last call (every VIP
    /// the first time, and after the node's exclusion changed).
    pub fn take_changed(&mut self) -> Changed {
        std::mem::replace(&mut self.changed, Changed::Vips(BTreeSet::new()))
    }

    /// The Services a wanted `vip` is announced for, as of the last [`DesiredCache::desired`].
    pub fn services_of(&self, vip: IpAddr) -> BTreeSet<ServiceKey> {
        self.merged.services_of(&self.parts, vip)
    }

    /// Each of l3lb's Services with the addresses the allocator granted it (in its status,
    /// inside the managed prefixes) that the ownership rule lets it use: L2 mode chooses
    /// announcers for those inside L2 pools. A Service whose status names another's address
    /// (stale, or written by hand) adds no node to that address's choice.
    pub fn granted(&self) -> impl Iterator<Item = (&ServiceKey, Vec<IpAddr>)> {
        self.parts.iter().filter_map(|(key, part)| {
            let own: Vec<IpAddr> = part
                .granted
                .iter()
                .filter(|ip| self.merged.vip_denied(&self.parts, **ip, key).is_none())
                .copied()
                .collect();
            (!own.is_empty()).then_some((key, own))
        })
    }

    /// Local endpoint addresses left out as untrusted, as of the last [`DesiredCache::desired`].
    pub fn endpoints_refused(&self) -> usize {
        self.endpoints_refused
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The desired state as of the last [`DesiredCache::update`] (or
    /// [`DesiredCache::update_of`], [`DesiredCache::desired`]).
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
        if self.scope.exclusion != exclusion {
            // Every VIP's address goes or comes back.
            self.changed = Changed::All;
        }
        self.scope.exclusion = exclusion;
    }

    /// The same as [`desired`] over these Services and slices: [`DesiredCache::update`], then
    /// [`DesiredCache::current`]. Returns how many Services were recomputed too.
    pub fn desired(
        &mut self,
        services: &[Arc<Service>],
        slices: &SliceIndex,
        dirty: BTreeSet<ServiceKey>,
    ) -> (Cow<'_, Desired>, usize) {
        let recomputed = self.update(services, slices, dirty);
        (self.current(), recomputed)
    }

    /// Brings the desired state up to date with these Services (every one: after a relist)
    /// and slices, recomputing only the Services whose Service object changed since the last
    /// call or that `dirty` names (those whose local endpoints changed:
    /// [`SliceIndex::take_dirty`]). Returns how many Services were recomputed.
    pub fn update(
        &mut self,
        services: &[Arc<Service>],
        slices: &SliceIndex,
        mut dirty: BTreeSet<ServiceKey>,
    ) -> usize {
        let mut present = BTreeMap::new();
        for svc in services {
            if let Some(key) = ServiceKey::of(svc) {
                present.insert(key, svc);
            }
        }
        self.by_key.retain(|key, _| {
            let keep = present.contains_key(key);
            if !keep {
                dirty.insert(key.clone());
            }
            keep
        });
        for (key, svc) in present {
            if self.by_key.get(&key).is_none_or(|s| !Arc::ptr_eq(s, svc)) {
                self.by_key.insert(key.clone(), Arc::clone(svc));
                dirty.insert(key);
            }
        }
        self.recompute(slices, dirty)
    }

    /// [`DesiredCache::update`] when only the Services `changed` names may have changed since
    /// the last call: each with what the store has now (`None`: gone). Costs what the changes
    /// cost, however many Services there are.
    pub fn update_of(
        &mut self,
        changed: impl IntoIterator<Item = (ServiceKey, Option<Arc<Service>>)>,
        slices: &SliceIndex,
        mut dirty: BTreeSet<ServiceKey>,
    ) -> usize {
        for (key, now) in changed {
            match (self.by_key.get(&key), now) {
                (Some(had), Some(now)) if Arc::ptr_eq(had, &now) => {}
                (_, Some(now)) => {
                    self.by_key.insert(key.clone(), now);
                    dirty.insert(key);
                }
                (Some(_), None) => {
                    self.by_key.remove(&key);
                    dirty.insert(key);
                }
                (None, None) => {}
            }
        }
        self.recompute(slices, dirty)
    }

    fn recompute(&mut self, slices: &SliceIndex, mut dirty: BTreeSet<ServiceKey>) -> usize {
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
        let vips = self.merged.update(&self.parts, changed);
        if let Changed::Vips(known) = &mut self.changed {
            known.extend(vips);
        }
        recomputed
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
