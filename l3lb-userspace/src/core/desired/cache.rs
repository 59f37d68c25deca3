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
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
    use serde_json::json;

    use super::DesiredCache;
    use crate::core::{
        class::ClassFilter,
        desired::{Scope, desired, node::Exclusion, slices::SliceIndex, trust::NodeFacts},
        pool::{L3lbPool, validate},
    };

    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.next(from.len() as u64) as usize]
        }
    }

    fn service(r: &mut Rng, i: usize) -> Service {
        let vip = r.pick(&[
            "198.51.100.1",
            "198.51.100.2",
            "198.51.100.200",
            "203.0.113.1",
            "x",
        ]);
        // Contests between grants and externalIPs, namespaces and ages.
        let external = match r.next(3) {
            0 => json!(["198.51.100.1"]),
            1 => json!(["198.51.100.200", "198.51.100.2"]),
            _ => json!(null),
        };
        let namespace = r.pick(&["ns", "ns", "ns2"]);
        let created = r.pick(&["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", ""]);
        let created = (!created.is_empty()).then_some(created);
        let kind = r.pick(&["LoadBalancer", "LoadBalancer", "ClusterIP"]);
        let ports = match r.next(3) {
            0 => json!([{"name": "http", "port": 80}]),
            1 => json!([{"name": "dns", "port": 53, "protocol": "UDP"}]),
            _ => {
                json!([{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}])
            }
        };
        // Sharing keys and classes vary too, so VIPs are shared, refused and handed over.
        let annotations = match r.next(4) {
            0 => json!({}),
            1 => json!({"l3lb.io/allow-shared-ip": "a"}),
            2 => json!({"metallb.universe.tf/allow-shared-ip": "a"}),
            _ => json!({"l3lb.io/allow-shared-ip": "b"}),
        };
        let class = r.pick(&["l3lb.io/l3lb", "l3lb.io/l3lb", "l3lb.io/l3lb", "other"]);
        serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": format!("svc-{i}"),
                         "annotations": annotations, "creationTimestamp": created},
            "spec": {"type": kind, "loadBalancerClass": class, "ports": ports,
                     "externalIPs": external},
            "status": {"loadBalancer": {"ingress": [{"ip": vip}]}},
        }))
        .unwrap()
    }

    fn slice(r: &mut Rng, i: usize) -> EndpointSlice {
        let owner = format!("svc-{}", r.next(5));
        let endpoints: Vec<_> = (0..r.next(3))
            .map(|k| {
                // Some outside the pod CIDR 10.0.0.0/16, when it is known.
                let net = r.pick(&["10.0", "10.0", "10.9"]);
                json!({"addresses": [format!("{net}.{i}.{k}")], "nodeName": r.pick(&["n1", "n2"]),
                       "conditions": {"ready": r.next(4) != 0}})
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"namespace": r.pick(&["ns", "ns", "ns2"]), "name": format!("slice-{i}"),
                         "labels": {"kubernetes.io/service-name": owner}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]
        }))
        .unwrap()
    }

    /// Random changes (replace, delete, re-create a Service or a slice, move a slice to another
    /// Service, learn or forget the node's pod CIDRs): after each, the cache gives exactly what a
    /// full recompute gives.
    #[test]
    fn incremental_result_equals_full_recompute_on_random_changes() {
        let prefixes = ["198.51.100.0/24".parse().unwrap()];
        let mut r = Rng(0x2545_f491_4f6c_dd1d);
        let mut services: Vec<Option<Arc<Service>>> =
            (0..5).map(|i| Some(Arc::new(service(&mut r, i)))).collect();
        let mut slices: Vec<Option<EndpointSlice>> =
            (0..8).map(|i| Some(slice(&mut r, i))).collect();
        let mut index = SliceIndex::new("n1");
        for s in slices.iter().flatten() {
            index.apply(s);
        }
        let class = ClassFilter::default();
        let pool: L3lbPool = serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"addresses": ["198.51.100.0/25"], "namespaces": ["ns"]}}))
        .unwrap();
        let (pools, _) = validate(&[&pool]);
        let mut scope = Scope::new("n1", &prefixes, &class);
        scope.pools = pools;
        let mut cache = DesiredCache::new(scope);
        for step in 0..3_000 {
            if step % 250 == 125 {
                let pod_cidrs = match (step / 250) % 2 {
                    0 => vec!["10.0.0.0/16".parse().unwrap()],
                    _ => vec![],
                };
                cache.set_facts(NodeFacts {
                    pod_cidrs,
                    ..NodeFacts::default()
                });
            } else if step % 333 == 0 {
                // Cordoned and uncordoned: VIPs go and come back, frontends stay.
                cache.set_exclusion(((step / 333) % 2 == 1).then_some(Exclusion::Cordoned));
            } else if step % 500 == 499 {
                // A relist: every object arrives again, as a new `Arc` with the same content.
                for s in services.iter_mut().flatten() {
                    *s = Arc::new(Service::clone(s));
                }
                for s in slices.iter().flatten() {
                    assert!(!index.apply(s), "a relisted slice changed nothing");
                }
            } else if r.next(2) == 0 {
                let i = r.next(5) as usize;
                services[i] = (r.next(5) != 0).then(|| Arc::new(service(&mut r, i)));
            } else {
                let i = r.next(8) as usize;
                let new = (r.next(5) != 0).then(|| slice(&mut r, i));
                match (&slices[i], &new) {
                    (Some(old), Some(s)) if old.metadata.namespace != s.metadata.namespace => {
                        // Another object, not the same one changed: the old one is gone.
                        index.delete(old);
                        index.apply(s)
                    }
                    (_, Some(s)) => index.apply(s),
                    (Some(old), None) => index.delete(old),
                    (None, None) => false,
                };
                slices[i] = new;
            }
            let svcs: Vec<Arc<Service>> = services.iter().flatten().cloned().collect();
            let dirty = index.take_dirty();
            let (got, recomputed) = cache.desired(&svcs, &index, dirty);
            let got = got.into_owned();
            let svc_refs: Vec<&Service> = svcs.iter().map(AsRef::as_ref).collect();
            let slice_refs: Vec<&EndpointSlice> = slices.iter().flatten().collect();
            let want = desired(&svc_refs, &slice_refs, cache.scope());
            assert_eq!(got, want, "step {step}");
            assert!(
                step == 0 || step % 500 == 499 || step % 250 == 125 || recomputed <= 2,
                "step {step}: {recomputed} Services recomputed"
            );
        }
    }
}
