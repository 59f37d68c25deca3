//! Contested addresses on a node, by [`crate::core::ownership`]'s rule: grants against externalIPs,
//! externalIPs against each other, namespaces, the external IP policy and pools, release and
//! re-grant; and endpoints the node must not trust.
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use serde_json::{Value, json};

use super::{Scope, desired, trust::NodeFacts};
use crate::core::{
    class::ClassFilter,
    model::{Backends, Desired, Endpoint, FrontendId, Proto},
    ownership::ExternalIps,
    pool::{L3lbPool, validate},
};

const NODE: &str = "n1";
const VIP: &str = "203.0.113.10";

/// A LoadBalancer Service `ns/name` created at `created` (seconds into 2024-01-01), with
/// `status` in its status and `external` as its externalIPs, serving TCP 80 -> port "http".
fn svc(ns: &str, name: &str, created: u32, status: &[&str], external: &[&str]) -> Service {
    let ingress: Vec<Value> = status.iter().map(|ip| json!({"ip": ip})).collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name,
                     "creationTimestamp": format!("2024-01-01T00:00:{created:02}Z")},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "l3lb.io/l3lb",
                 "externalIPs": external,
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        "status": {"loadBalancer": {"ingress": ingress}},
    }))
    .unwrap()
}

/// The EndpointSlice of `ns/name` with Ready endpoints `addrs` on this node.
fn slice(ns: &str, name: &str, addrs: &[&str]) -> EndpointSlice {
    let endpoints: Vec<Value> = addrs
        .iter()
        .map(|a| json!({"addresses": [a], "nodeName": NODE, "conditions": {"ready": true}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": format!("{name}-1"),
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }))
    .unwrap()
}

/// A pool over 203.0.113.0/24 for the namespaces given (all when empty).
fn scope(external_ips: ExternalIps, pool_namespaces: &[&str]) -> Scope {
    let mut spec = json!({"addresses": ["203.0.113.0/24"]});
    if !pool_namespaces.is_empty() {
        spec["namespaces"] = json!(pool_namespaces);
    }
    let pool: L3lbPool =
        serde_json::from_value(json!({"metadata": {"name": "public"}, "spec": spec})).unwrap();
    Scope {
        external_ips,
        pools: validate(&[&pool]).0,
        ..Scope::new(
            NODE,
            &["203.0.113.0/24".parse().unwrap()],
            &ClassFilter::default(),
        )
    }
}

fn run(scope: &Scope, services: &[Service], slices: &[EndpointSlice]) -> Desired {
    let s: Vec<&Service> = services.iter().collect();
    let e: Vec<&EndpointSlice> = slices.iter().collect();
    desired(&s, &e, scope)
}

fn http(vip: &str) -> FrontendId {
    FrontendId {
        vip: vip.parse().unwrap(),
        port: 80,
        proto: Proto::Tcp,
    }
}

fn backends(addrs: &[&str]) -> Backends {
    addrs
        .iter()
        .map(|a| Endpoint {
            addr: a.parse().unwrap(),
            port: 8080,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into()
}

/// (Service name, reason) of every refusal.
fn refusals(d: &Desired) -> Vec<(String, String)> {
    d.refusals
        .iter()
        .map(|r| (r.service.name.clone(), r.reason.clone()))
        .collect()
}

#[test]
fn a_grant_keeps_its_address_against_an_older_external_claim() {
    let scope = scope(ExternalIps::Pool, &[]);
    let web = svc("default", "web", 30, &[VIP], &[]);
    let intruder = svc("evil", "grab", 10, &[], &[VIP]);
    let slices = [
        slice("default", "web", &["10.244.1.2"]),
        slice("evil", "grab", &["10.244.1.66"]),
    ];
    for services in [
        [web.clone(), intruder.clone()],
        [intruder.clone(), web.clone()],
    ] {
        let d = run(&scope, &services, &slices);
        assert_eq!(d.frontends[&http(VIP)], backends(&["10.244.1.2"]));
        assert_eq!(d.frontends.len(), 1);
        assert_eq!(
            refusals(&d),
            [(
                "grab".to_owned(),
                format!(
                    "{VIP} belongs to a Service in another namespace; Services of one namespace \
                     share a VIP only when both carry the annotation l3lb.io/allow-shared-ip \
                     with the same value"
                )
            )],
            "the owner is not named across namespaces"
        );
    }
    // On a node where only the claimant has pods, the VIP is not announced at all.
    let d = run(
        &scope,
        &[web.clone(), intruder.clone()],
        &[slice("evil", "grab", &["10.244.1.66"])],
    );
    assert!(d.frontends.is_empty() && d.addresses.is_empty(), "{d:?}");

    // Released by the allocator: the external claim has it now; granted to another Service
    // later, the grant has it back.
    let released = svc("default", "web", 30, &[], &[]);
    let d = run(&scope, &[released, intruder.clone()], &slices);
    assert_eq!(d.frontends[&http(VIP)], backends(&["10.244.1.66"]));
    assert!(d.refusals.is_empty(), "{:?}", d.refusals);
    let regranted = svc("other", "new", 50, &[VIP], &[]);
    let d = run(
        &scope,
        &[regranted, intruder],
        &[
            slice("other", "new", &["10.244.1.9"]),
            slice("evil", "grab", &["10.244.1.66"]),
        ],
    );
    assert_eq!(d.frontends[&http(VIP)], backends(&["10.244.1.9"]));
}

#[test]
fn between_external_claims_the_older_wins_then_the_name() {
    let scope = scope(ExternalIps::Pool, &[]);
    let slices = [
        slice("team", "a", &["10.244.1.2"]),
        slice("team", "b", &["10.244.1.3"]),
        slice("zeta", "c", &["10.244.1.4"]),
    ];
    let d = run(
        &scope,
        &[
            svc("team", "a", 20, &[], &[VIP]),
            svc("team", "b", 10, &[], &[VIP]),
        ],
        &slices,
    );
    assert_eq!(d.frontends[&http(VIP)], backends(&["10.244.1.3"]));
    let r = refusals(&d);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, "a");
    assert!(
        r[0].1
            .starts_with(&format!("{VIP} belongs to Service team/b;")),
        "named within the namespace: {}",
        r[0].1
    );
    // Same age: namespace/name decides.
    let d = run(
        &scope,
        &[
            svc("zeta", "c", 10, &[], &[VIP]),
            svc("team", "b", 10, &[], &[VIP]),
        ],
        &slices,
    );
    assert_eq!(d.frontends[&http(VIP)], backends(&["10.244.1.3"]));
    assert_eq!(refusals(&d)[0].0, "c");
}

#[test]
fn sharing_keys_work_only_within_a_namespace() {
    let scope = scope(ExternalIps::Pool, &[]);
    let shared = |ns: &str, name: &str, port: u16, status: &[&str], external: &[&str]| {
        let mut s = svc(ns, name, 10, status, external);
        s.metadata.annotations = Some([("l3lb.io/allow-shared-ip".into(), "k".into())].into());
        let spec = s.spec.as_mut().unwrap();
        spec.ports.as_mut().unwrap()[0].port = i32::from(port);
        s
    };
    let slices = [
        slice("dns", "tcp", &["10.244.1.2"]),
        slice("dns", "udp", &["10.244.1.3"]),
        slice("evil", "udp", &["10.244.1.66"]),
    ];
    let owner = shared("dns", "tcp", 80, &[VIP], &[]);
    let d = run(
        &scope,
        &[owner.clone(), shared("dns", "udp", 81, &[], &[VIP])],
        &slices,
    );
    assert_eq!(d.frontends.len(), 2, "{d:?}");
    assert!(d.refusals.is_empty(), "{:?}", d.refusals);
    let d = run(
        &scope,
        &[owner, shared("evil", "udp", 81, &[], &[VIP])],
        &slices,
    );
    assert_eq!(d.frontends.len(), 1, "{d:?}");
    assert_eq!(refusals(&d)[0].0, "udp");
}

mod agreement;
mod policy;
