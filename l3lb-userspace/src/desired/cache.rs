//! Incremental desired state: only Services whose Service object or EndpointSlices changed since
//! the last call are recomputed. The stores hand out a new `Arc` for every changed object and the
//! cache holds the `Arc`s it last saw, so a pointer it does not know is a changed or new object,
//! and a known pointer missing from the input is a changed or deleted one (a held allocation
//! cannot be reused for another object). Only pointers are hashed per call; the result equals
//! [`desired`].
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, hash_map::Entry},
    sync::Arc,
};

use ipnet::IpNet;
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};

use super::{SERVICE_NAME_LABEL, ServiceDesired, merged::Merged, service_desired, service_key};
use crate::{
    class::ClassFilter,
    model::{Desired, ServiceKey},
};

#[cfg(doc)]
use super::desired;

/// What the last call saw (by address), and each LoadBalancer Service's share, for one node,
/// prefixes and class.
pub struct DesiredCache {
    node: String,
    prefixes: Vec<IpNet>,
    class: ClassFilter,
    services: HashMap<usize, Arc<Service>>,
    slices: HashMap<usize, Arc<EndpointSlice>>,
    by_key: BTreeMap<ServiceKey, Arc<Service>>,
    slices_of: HashMap<ServiceKey, Vec<Arc<EndpointSlice>>>,
    parts: BTreeMap<ServiceKey, ServiceDesired>,
    merged: Merged,
}

fn slice_owner(slice: &EndpointSlice) -> Option<ServiceKey> {
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
    pub fn new(node: &str, prefixes: &[IpNet], class: &ClassFilter) -> Self {
        Self {
            node: node.to_owned(),
            prefixes: prefixes.to_vec(),
            class: class.clone(),
            services: HashMap::new(),
            slices: HashMap::new(),
            by_key: BTreeMap::new(),
            slices_of: HashMap::new(),
            parts: BTreeMap::new(),
            merged: Merged::default(),
        }
    }

    /// The same as [`desired`] over these objects, recomputing only the Services whose inputs
    /// changed since the last call. Returns how many Services were recomputed.
    /// The Services a wanted `vip` is announced for, as of the last [`DesiredCache::desired`].
    pub fn services_of(&self, vip: std::net::IpAddr) -> BTreeSet<ServiceKey> {
        self.merged.services_of(vip)
    }

    pub fn desired(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
    ) -> (&Desired, usize) {
        let mut dirty: BTreeSet<ServiceKey> = BTreeSet::new();
        let (removed, added) = diff(&mut self.services, services);
        for svc in removed {
            if let Some(key) = service_key(&svc) {
                if self.by_key.get(&key).is_some_and(|s| Arc::ptr_eq(s, &svc)) {
                    self.by_key.remove(&key);
                }
                dirty.insert(key);
            }
        }
        for svc in added {
            if let Some(key) = service_key(&svc) {
                self.by_key.insert(key.clone(), svc);
                dirty.insert(key);
            }
        }
        let (removed, added) = diff(&mut self.slices, slices);
        for slice in removed {
            if let Some(key) = slice_owner(&slice) {
                if let Some(own) = self.slices_of.get_mut(&key) {
                    own.retain(|s| !Arc::ptr_eq(s, &slice));
                    if own.is_empty() {
                        self.slices_of.remove(&key);
                    }
                }
                dirty.insert(key);
            }
        }
        for slice in added {
            if let Some(key) = slice_owner(&slice) {
                self.slices_of.entry(key.clone()).or_default().push(slice);
                dirty.insert(key);
            }
        }
        let recomputed = dirty.len();
        let mut changed = Vec::with_capacity(dirty.len());
        for key in dirty {
            changed.push((key.clone(), self.parts.remove(&key)));
            let Some(svc) = self.by_key.get(&key).filter(|s| self.class.owns(s)) else {
                continue;
            };
            let own: Vec<&EndpointSlice> = self
                .slices_of
                .get(&key)
                .into_iter()
                .flatten()
                .map(AsRef::as_ref)
                .collect();
            let part = service_desired(svc, &own, &self.node, &self.prefixes);
            self.parts.insert(key, part);
        }
        self.merged.update(&self.parts, changed);
        (self.merged.desired(), recomputed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
    use serde_json::json;

    use super::DesiredCache;
    use crate::{class::ClassFilter, desired::desired};

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
            "198.51.100.3",
            "203.0.113.1",
            "x",
        ]);
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
            "metadata": {"namespace": "ns", "name": format!("svc-{i}"), "annotations": annotations},
            "spec": {"type": kind, "loadBalancerClass": class, "ports": ports},
            "status": {"loadBalancer": {"ingress": [{"ip": vip}]}},
        }))
        .unwrap()
    }

    fn slice(r: &mut Rng, i: usize) -> EndpointSlice {
        let owner = format!("svc-{}", r.next(5));
        let endpoints: Vec<_> = (0..r.next(3))
            .map(|k| {
                json!({"addresses": [format!("10.0.{i}.{k}")], "nodeName": r.pick(&["n1", "n2"]),
                       "conditions": {"ready": r.next(4) != 0}})
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": format!("slice-{i}"),
                         "labels": {"kubernetes.io/service-name": owner}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]
        }))
        .unwrap()
    }

    /// Random changes (replace, delete, re-create a Service or a slice, move a slice to another
    /// Service): after each, the cache gives exactly what a full recompute gives.
    #[test]
    fn incremental_result_equals_full_recompute_on_random_changes() {
        let prefixes = ["198.51.100.0/24".parse().unwrap()];
        let mut r = Rng(0x2545_f491_4f6c_dd1d);
        let mut services: Vec<Option<Arc<Service>>> =
            (0..5).map(|i| Some(Arc::new(service(&mut r, i)))).collect();
        let mut slices: Vec<Option<Arc<EndpointSlice>>> =
            (0..8).map(|i| Some(Arc::new(slice(&mut r, i)))).collect();
        let class = ClassFilter::default();
        let mut cache = DesiredCache::new("n1", &prefixes, &class);
        for step in 0..3_000 {
            if step % 500 == 499 {
                // A relist: every object arrives again, as a new `Arc` with the same content.
                for s in services.iter_mut().flatten() {
                    *s = Arc::new(Service::clone(s));
                }
                for s in slices.iter_mut().flatten() {
                    *s = Arc::new(EndpointSlice::clone(s));
                }
            } else if r.next(2) == 0 {
                let i = r.next(5) as usize;
                services[i] = (r.next(5) != 0).then(|| Arc::new(service(&mut r, i)));
            } else {
                let i = r.next(8) as usize;
                slices[i] = (r.next(5) != 0).then(|| Arc::new(slice(&mut r, i)));
            }
            let svcs: Vec<Arc<Service>> = services.iter().flatten().cloned().collect();
            let sls: Vec<Arc<EndpointSlice>> = slices.iter().flatten().cloned().collect();
            let (got, recomputed) = cache.desired(&svcs, &sls);
            let svc_refs: Vec<&Service> = svcs.iter().map(AsRef::as_ref).collect();
            let slice_refs: Vec<&EndpointSlice> = sls.iter().map(AsRef::as_ref).collect();
            let want = desired(&svc_refs, &slice_refs, "n1", &prefixes, &class);
            assert_eq!(*got, want, "step {step}");
            assert!(
                step == 0 || step % 500 == 499 || recomputed <= 2,
                "step {step}: {recomputed} Services recomputed"
            );
        }
    }
}
