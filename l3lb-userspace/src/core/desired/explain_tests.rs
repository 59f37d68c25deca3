//! Every check `explain` can report, from states the daemon reaches: a missing or foreign
//! Service, no address, refusals, a contested address, a clashing port, no local endpoint, a
//! frontend not programmed, draining, an excluded node, an uplink that does not forward, and an
//! address on or off the interface.
use std::{collections::BTreeSet, sync::Arc};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use serde_json::{Value, json};

use super::{
    Scope,
    cache::DesiredCache,
    explain::{CHECKS, Explanation, NodeView},
    node::Exclusion,
    slices::SliceIndex,
};
use crate::core::{
    class::ClassFilter,
    model::{Backends, Endpoint, FrontendId, Observed, Proto, ServiceKey},
    ownership::ExternalIps,
};

const VIP: &str = "198.51.100.10";

fn svc(ns: &str, name: &str, spec: Value, ingress: &[&str]) -> Arc<Service> {
    let mut spec = spec;
    if spec.get("type").is_none() {
        spec["type"] = json!("LoadBalancer");
    }
    if spec.get("ports").is_none() {
        spec["ports"] = json!([{"name": "http", "port": 80, "protocol": "TCP"}]);
    }
    let ingress: Vec<Value> = ingress.iter().map(|ip| json!({"ip": ip})).collect();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name,
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": spec,
            "status": {"loadBalancer": {"ingress": ingress}},
        }))
        .unwrap(),
    )
}

fn slice(ns: &str, name: &str, ready: bool) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": format!("{name}-1"),
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.2"], "nodeName": "n1",
                       "conditions": {"ready": ready, "serving": true, "terminating": !ready}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }))
    .unwrap()
}

fn key(ns: &str, name: &str) -> ServiceKey {
    ServiceKey {
        namespace: ns.into(),
        name: name.into(),
    }
}

fn http() -> FrontendId {
    FrontendId {
        vip: VIP.parse().unwrap(),
        port: 80,
        proto: Proto::Tcp,
    }
}

fn backends() -> Backends {
    [Endpoint {
        addr: "10.244.1.2".parse().unwrap(),
        port: 8080,
    }]
    .into()
}

struct World {
    cache: DesiredCache,
    observed: Observed,
    draining: BTreeSet<FrontendId>,
}

impl World {
    fn new(services: &[Arc<Service>], slices: &[EndpointSlice]) -> Self {
        let scope = Scope {
            external_ips: ExternalIps::Prefix,
            ..Scope::new(
                "n1",
                &["198.51.100.0/24".parse().unwrap()],
                &ClassFilter::default(),
            )
        };
        let mut cache = DesiredCache::new(scope);
        let mut index = SliceIndex::new("n1");
        for s in slices {
            index.apply(s);
        }
        let dirty = index.take_dirty();
        cache.desired(services, &index, dirty);
        World {
            cache,
            observed: Observed::default(),
            draining: BTreeSet::new(),
        }
    }

    fn explain(&self, ns: &str, name: &str) -> Explanation {
        let node = NodeView {
            observed: &self.observed,
            draining: &self.draining,
        };
        self.cache.explain(&key(ns, name), &node)
    }
}

/// (check, ok) of every line, Service-wide then per VIP.
fn checks(e: &Explanation) -> Vec<(String, bool)> {
    e.lines
        .iter()
        .chain(e.vips.iter().flat_map(|v| &v.lines))
        .map(|l| (l.check.clone(), l.ok))
        .collect()
}

fn has(e: &Explanation, check: &str, ok: bool, text: &str) -> bool {
    e.lines
        .iter()
        .chain(e.vips.iter().flat_map(|v| &v.lines))
        .any(|l| l.check == check && l.ok == ok && l.text.contains(text))
}

#[test]
fn every_check_explains_what_the_daemon_decided() {
    let ours = || json!({"loadBalancerClass": "l3lb.io/l3lb"});
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut note = |e: &Explanation| seen.extend(checks(e).into_iter().map(|(c, _)| c));

    // Announced: every check passes, the address is on the interface.
    let web = svc("default", "web", ours(), &[VIP]);
    let mut w = World::new(std::slice::from_ref(&web), &[slice("default", "web", true)]);
    w.observed.frontends.insert(http(), backends());
    w.observed.addresses.insert(VIP.parse().unwrap());
    let e = w.explain("default", "web");
    note(&e);
    assert!(e.vips[0].announced, "{e:#?}");
    assert!(checks(&e).iter().all(|(_, ok)| *ok), "{e:#?}");
    assert!(has(&e, "address", true, "FRR advertises it"));

    // Not yet programmed or added: the next pass does it.
    w.observed = Observed::default();
    let e = w.explain("default", "web");
    note(&e);
    assert!(!e.vips[0].announced);
    assert!(has(&e, "maps", false, "not (yet) in the maps"));
    assert!(has(&e, "address", false, "the next pass adds it"));

    // Draining, excluded, an uplink down.
    w.draining.insert(http());
    w.observed
        .not_forwarding
        .insert("up0".into(), "XDP program detached".into());
    w.cache.set_exclusion(Some(Exclusion::Cordoned));
    let e = w.explain("default", "web");
    note(&e);
    assert!(has(&e, "draining", false, "in-flight flows"));
    assert!(has(&e, "excluded", false, "cordoned"));
    assert!(has(&e, "uplinks", false, "up0: XDP program detached"));

    // No Ready endpoint here (only a terminating one).
    let w = World::new(
        std::slice::from_ref(&web),
        &[slice("default", "web", false)],
    );
    let e = w.explain("default", "web");
    note(&e);
    assert!(has(
        &e,
        "endpoints",
        false,
        "no Ready endpoint on this node"
    ));

    // Missing, not a LoadBalancer, another class, no address, refused.
    let plain = svc("default", "plain", json!({"type": "ClusterIP"}), &[]);
    let other = svc(
        "default",
        "other",
        json!({"loadBalancerClass": "x.io/y"}),
        &[VIP],
    );
    let waiting = svc("default", "waiting", ours(), &[]);
    let outside = svc("default", "outside", ours(), &["203.0.113.1"]);
    let w = World::new(&[plain, other, waiting, outside], &[]);
    for (name, check, text) in [
        ("gone", "service", "no such Service"),
        ("plain", "service", "type ClusterIP"),
        ("other", "class", "\"x.io/y\" is another implementation's"),
        (
            "waiting",
            "addresses",
            "status.loadBalancer.ingress is empty",
        ),
        ("outside", "refused", "outside every prefix"),
    ] {
        let e = w.explain("default", name);
        note(&e);
        assert!(has(&e, check, false, text), "{name}: {e:#?}");
    }

    // Contested: another namespace's externalIP on web's grant; a clashing port in a sharing
    // pair.
    let grab = svc(
        "evil",
        "grab",
        json!({"loadBalancerClass": "l3lb.io/l3lb", "externalIPs": [VIP]}),
        &[],
    );
    let shared = |name: &str| {
        let s = svc("default", name, ours(), &[VIP]);
        let mut s = Service::clone(&s);
        s.metadata.annotations = Some([("l3lb.io/allow-shared-ip".into(), "k".into())].into());
        Arc::new(s)
    };
    let w = World::new(
        &[web, grab, shared("a"), shared("b")],
        &[slice("evil", "grab", true), slice("default", "b", true)],
    );
    let e = w.explain("evil", "grab");
    note(&e);
    assert!(
        has(&e, "owner", false, "belongs to Service default/"),
        "{e:#?}"
    );
    let e = w.explain("default", "b");
    note(&e);
    assert!(
        has(&e, "frontend", false, "is already served for"),
        "{e:#?}"
    );

    let missing: Vec<&str> = CHECKS
        .iter()
        .copied()
        .filter(|c| !seen.contains(*c))
        .collect();
    assert!(
        missing.is_empty(),
        "checks no scenario produced: {missing:?}"
    );
}
