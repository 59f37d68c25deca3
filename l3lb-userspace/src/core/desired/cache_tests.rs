//! The incremental cache against a full recompute, over random changes.
use std::{collections::BTreeSet, net::IpAddr, sync::Arc};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use serde_json::json;

use super::DesiredCache;
use crate::core::{
    class::ClassFilter,
    desired::{Scope, desired, node::Exclusion, slices::SliceIndex, trust::NodeFacts},
    model::{Desired, FrontendId, ServiceKey},
    plan::Changed,
    pool::{L3lbPool, validate},
};

use crate::core::test_rng::Rng;

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
/// full recompute gives, and names every VIP whose frontends or address changed.
#[test]
fn incremental_result_equals_full_recompute_on_random_changes() {
    random_changes(Feed::Everything);
}

/// The same when the cache is told which Services changed (as the watch does), and handed
/// every Service only after a relist.
#[test]
fn changed_services_alone_give_the_full_recompute_too() {
    random_changes(Feed::ChangedKeys);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    Everything,
    ChangedKeys,
}

/// The VIPs whose frontends or address differ between `a` and `b`.
fn differing(a: &Desired, b: &Desired) -> BTreeSet<IpAddr> {
    let frontends = |d: &Desired| -> BTreeSet<(FrontendId, String)> {
        d.frontends
            .iter()
            .map(|(id, b)| (*id, format!("{b:?}")))
            .collect()
    };
    let (fa, fb) = (frontends(a), frontends(b));
    fa.symmetric_difference(&fb)
        .map(|(id, _)| id.vip)
        .chain(a.addresses.symmetric_difference(&b.addresses).copied())
        .collect()
}

fn random_changes(feed: Feed) {
    let prefixes = ["198.51.100.0/24".parse().unwrap()];
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let mut services: Vec<Option<Arc<Service>>> =
        (0..5).map(|i| Some(Arc::new(service(&mut r, i)))).collect();
    let mut slices: Vec<Option<EndpointSlice>> = (0..8).map(|i| Some(slice(&mut r, i))).collect();
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
    let mut before = Desired::default();
    for step in 0..3_000 {
        // Services (by key) changed in this step, for the cache fed by keys.
        let mut touched: BTreeSet<ServiceKey> = BTreeSet::new();
        let mut relisted = false;
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
            relisted = true;
            for s in slices.iter().flatten() {
                assert!(!index.apply(s), "a relisted slice changed nothing");
            }
        } else if r.next(2) == 0 {
            let i = r.next(5) as usize;
            touched.extend(services[i].as_deref().and_then(ServiceKey::of));
            services[i] = (r.next(5) != 0).then(|| Arc::new(service(&mut r, i)));
            touched.extend(services[i].as_deref().and_then(ServiceKey::of));
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
        let recomputed = match feed {
            Feed::ChangedKeys if step > 0 && !relisted => {
                let now = |key: &ServiceKey| {
                    svcs.iter()
                        .find(|s| ServiceKey::of(s).as_ref() == Some(key))
                        .cloned()
                };
                cache.update_of(
                    touched.into_iter().map(|k| (k.clone(), now(&k))),
                    &index,
                    dirty,
                )
            }
            _ => cache.update(&svcs, &index, dirty),
        };
        let got = cache.current().into_owned();
        match cache.take_changed() {
            Changed::All => {}
            Changed::Vips(named) => {
                let missed: Vec<_> = differing(&before, &got)
                    .difference(&named)
                    .copied()
                    .collect();
                assert!(
                    missed.is_empty(),
                    "step {step}: changed VIPs not named: {missed:?}"
                );
            }
        }
        before = got.clone();
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

/// L2 mode's input: a Service whose status names an address another Service of another
/// namespace owns (the older one) is not listed with it, so its nodes cannot announce it.
#[test]
fn granted_lists_only_the_owner_of_a_contested_address() {
    let svc = |ns: &str, created: &str| -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": ns, "name": "web", "creationTimestamp": created},
                "spec": {"type": "LoadBalancer", "loadBalancerClass": "l3lb.io/l3lb",
                         "ports": [{"name": "http", "port": 80}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}},
            }))
            .unwrap(),
        )
    };
    let prefixes = ["198.51.100.0/24".parse().unwrap()];
    let class = ClassFilter::default();
    let mut cache = DesiredCache::new(Scope::new("n1", &prefixes, &class));
    let owner = svc("a", "2024-01-01T00:00:00Z");
    let intruder = svc("b", "2024-06-01T00:00:00Z");
    cache.update(&[owner, intruder], &SliceIndex::new("n1"), BTreeSet::new());
    let granted: Vec<(String, Vec<IpAddr>)> = cache
        .granted()
        .map(|(k, ips)| (k.namespace.clone(), ips))
        .collect();
    assert_eq!(
        granted,
        [(
            "a".to_owned(),
            vec!["198.51.100.1".parse::<IpAddr>().unwrap()]
        )]
    );
}
