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

#[test]
fn external_ips_follow_the_policy_and_the_pools() {
    let services = [svc("web", "a", 10, &[], &[VIP])];
    let slices = [slice("web", "a", &["10.244.1.2"])];
    let served = |scope: &Scope| {
        run(scope, &services, &slices)
            .frontends
            .contains_key(&http(VIP))
    };
    assert!(served(&scope(ExternalIps::Pool, &[])));
    assert!(served(&scope(ExternalIps::Pool, &["web"])));
    assert!(served(&scope(ExternalIps::Prefix, &["other"])));
    let d = run(&scope(ExternalIps::Pool, &["other"]), &services, &slices);
    assert!(d.frontends.is_empty());
    assert_eq!(
        refusals(&d)[0].1,
        format!(
            "spec.externalIPs {VIP} is in pool public, which does not allow this Service \
             (namespaces or serviceSelector)"
        )
    );
    let no_pools = Scope {
        pools: vec![],
        ..scope(ExternalIps::Pool, &[])
    };
    assert!(
        refusals(&run(&no_pools, &services, &slices))[0]
            .1
            .contains("is in no L3lbPool")
    );
    let d = run(&scope(ExternalIps::None, &[]), &services, &slices);
    assert!(d.frontends.is_empty());
    assert!(refusals(&d)[0].1.contains("--external-ips=none"));
    // A grant is served whatever the external IP policy says.
    let granted = [svc("web", "a", 10, &[VIP], &[VIP])];
    assert!(
        run(&scope(ExternalIps::None, &[]), &granted, &slices)
            .frontends
            .contains_key(&http(VIP))
    );
}

#[test]
fn untrusted_endpoints_are_refused_and_the_rest_serves() {
    let mut scope = scope(ExternalIps::Pool, &[]);
    scope.facts = NodeFacts {
        pod_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
        own_addresses: ["10.244.1.1".parse().unwrap(), "10.100.1.2".parse().unwrap()].into(),
    };
    let services = [svc("web", "a", 10, &[VIP], &[])];
    let d = run(
        &scope,
        &services,
        &[slice(
            "web",
            "a",
            &[
                "10.244.1.2",
                "10.244.2.2",
                "127.0.0.1",
                "10.244.1.1",
                "10.100.1.2",
                "169.254.0.1",
                "203.0.113.99",
            ],
        )],
    );
    assert_eq!(d.frontends[&http(VIP)], backends(&["10.244.1.2"]));
    assert!(d.addresses.contains(&VIP.parse().unwrap()));
    let reasons: Vec<String> = refusals(&d).into_iter().map(|(_, r)| r).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    let has = |addrs: &str, why: &str| {
        reasons
            .iter()
            .any(|r| r.starts_with(&format!("endpoints {addrs} are {why}")))
    };
    assert!(
        has("127.0.0.1, 169.254.0.1", "not ordinary unicast"),
        "{reasons:?}"
    );
    assert!(
        has("10.100.1.2, 10.244.1.1", "addresses of the node itself"),
        "{reasons:?}"
    );
    assert!(
        has("203.0.113.99", "inside the VIP prefixes"),
        "{reasons:?}"
    );
    assert!(
        has("10.244.2.2", "outside the node's pod CIDRs (10.244.1.0/24)"),
        "{reasons:?}"
    );

    // Only untrusted endpoints: nothing programmed, nothing announced.
    let d = run(&scope, &services, &[slice("web", "a", &["10.244.1.1"])]);
    assert!(d.frontends.is_empty() && d.addresses.is_empty());
}

/// The allocator and the nodes apply one rule: over random Services (namespaces, ages, sharing
/// keys, requests, externalIPs, stale records), after the allocator writes its grants, a node
/// serves every granted address for its grantee (or a same-namespace sharer) and never for
/// another Service, and serves an externalIPs claim only on an address nobody was granted.
#[test]
fn allocator_and_nodes_agree_on_every_owner() {
    use std::collections::BTreeMap;

    use crate::core::{
        allocate::{Pool, allocate},
        model::ServiceKey,
    };

    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }
    let addr = |r: &mut Rng| format!("203.0.113.{}", 1 + r.next(4));
    let scope = scope(ExternalIps::Pool, &[]);
    let pools = vec![Pool::new(
        "public",
        &["203.0.113.0/29".parse().unwrap()],
        true,
    )];
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..400 {
        let mut services = Vec::new();
        let mut slices = Vec::new();
        let mut owner_of_endpoint = BTreeMap::new();
        for i in 0..(2 + r.next(4)) {
            let ns = ["a", "b"][r.next(2) as usize];
            let name = format!("s{i}");
            let mut svc = svc(ns, &name, r.next(3) as u32, &[], &[]);
            let spec = svc.spec.as_mut().unwrap();
            spec.ports.as_mut().unwrap()[0].port = 80 + r.next(2) as i32;
            if r.next(3) == 0 {
                spec.load_balancer_ip = Some(addr(&mut r));
            }
            if r.next(2) == 0 {
                spec.external_ips = Some(vec![addr(&mut r)]);
            }
            if r.next(3) == 0 {
                let key = ["k", "j"][r.next(2) as usize];
                svc.metadata.annotations =
                    Some([("l3lb.io/allow-shared-ip".into(), key.into())].into());
            }
            if r.next(3) == 0 {
                // A stale or forged record the allocator decides on.
                let ip = addr(&mut r);
                svc.status =
                    serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": ip}]}}))
                        .unwrap();
            }
            let ep = format!("10.244.1.{}", 10 + i);
            owner_of_endpoint.insert(
                ep.parse::<std::net::IpAddr>().unwrap(),
                (ns.to_owned(), name.clone()),
            );
            slices.push(slice(ns, &name, &[&ep]));
            services.push(svc);
        }
        let refs: Vec<&Service> = services.iter().collect();
        let allocation = allocate(&refs, &pools, &scope.prefixes, &scope.class);
        // The allocator's grants become the status, as its writes would make them.
        for svc in &mut services {
            let key = ServiceKey {
                namespace: svc.metadata.namespace.clone().unwrap(),
                name: svc.metadata.name.clone().unwrap(),
            };
            let ips: Vec<Value> = allocation.assigned[&key]
                .iter()
                .map(|ip| json!({"ip": ip.to_string()}))
                .collect();
            svc.status = serde_json::from_value(json!({"loadBalancer": {"ingress": ips}})).unwrap();
        }
        let d = run(&scope, &services, &slices);
        let grantee: BTreeMap<std::net::IpAddr, &ServiceKey> = allocation
            .assigned
            .iter()
            .flat_map(|(k, ips)| ips.iter().map(move |ip| (*ip, k)))
            .collect();
        let sharing = |key: &ServiceKey| {
            services
                .iter()
                .find(|s| {
                    s.metadata.name.as_deref() == Some(&key.name)
                        && s.metadata.namespace.as_deref() == Some(&key.namespace)
                })
                .and_then(|s| crate::core::annotations::sharing_key(s).map(str::to_owned))
        };
        for ip in grantee.keys() {
            assert!(
                d.addresses.contains(ip),
                "round {round}: granted {ip} is not announced: {d:?}"
            );
        }
        for (id, backends) in &d.frontends {
            for e in backends.ready.iter() {
                let (ns, name) = &owner_of_endpoint[&e.addr];
                let server = ServiceKey {
                    namespace: ns.clone(),
                    name: name.clone(),
                };
                if let Some(owner) = grantee.get(&id.vip) {
                    let shares = owner.namespace == server.namespace
                        && sharing(owner).is_some()
                        && sharing(owner) == sharing(&server);
                    assert!(
                        **owner == server || shares,
                        "round {round}: {id} granted to {owner} but served for {server}"
                    );
                }
            }
        }
    }
}
