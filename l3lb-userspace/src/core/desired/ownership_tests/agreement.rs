//! The allocator and the nodes agree on every owner, over random Services.
use super::*;

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
        test_rng::Rng,
    };
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
