//! The external IP policy and pools, and endpoints the node must not trust.
use super::*;

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
