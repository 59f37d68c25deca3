//! The status as the record, other classes' addresses, and stability across runs.
use super::*;

#[test]
fn the_status_is_the_record() {
    let cases = [
        case(
            "a recorded address stays though a lower one is free",
            vec![svc("a", 1).status(&["198.51.100.7"]), svc("b", 2)],
        )
        .want(&[("a", &["198.51.100.7"]), ("b", &["198.51.100.1"])]),
        case(
            "a restart or a new leader allocates no recorded address again",
            vec![svc("a", 5).status(&["198.51.100.1"]), svc("b", 1)],
        )
        .want(&[("a", &["198.51.100.1"]), ("b", &["198.51.100.2"])]),
        case(
            "two records of one address without sharing: the older keeps it, the younger moves",
            vec![
                svc("b", 2).status(&["198.51.100.1"]),
                svc("a", 1).status(&["198.51.100.1"]),
            ],
        )
        .want(&[("a", &["198.51.100.1"]), ("b", &["198.51.100.2"])]),
        case(
            "a recorded address is refused to a request, even an older Service's",
            vec![
                svc("old", 1).status(&["198.51.100.1"]),
                svc("new", 0).lb_ip("198.51.100.1").status(&[]),
            ],
        )
        .want(&[("new", &[]), ("old", &["198.51.100.1"])])
        .refused(&[("new", "198.51.100.1 is taken by Service default/old")]),
        case(
            "the pool of a recorded address is gone: it is released and replaced",
            vec![svc("a", 1).status(&["203.0.113.9"])],
        )
        .want(&[("a", &["198.51.100.1"])]),
        case(
            "a refused Service loses its recorded address",
            vec![svc("a", 1).status(&["198.51.100.3"]).lb_ip("203.0.113.1")],
        )
        .want(&[("a", &[])])
        .refused(&[("a", "outside every address pool")]),
        case(
            "an extra address of the same family in the record is dropped",
            vec![svc("a", 1).status(&["198.51.100.3", "198.51.100.4"])],
        )
        .want(&[("a", &["198.51.100.3"])]),
    ];
    for c in cases {
        c.check();
    }
}

#[test]
fn other_classes_are_not_ours_but_their_addresses_stay_theirs() {
    let other = svc("metallb", 1)
        .set("loadBalancerClass", json!("metallb.io/metallb"))
        .status(&["198.51.100.1"]);
    let classless = svc("classless", 2).set("loadBalancerClass", Value::Null);
    let ext = svc("ext", 3)
        .set("loadBalancerClass", json!("other"))
        .set("externalIPs", json!(["198.51.100.2"]));
    let services = vec![
        other.clone(),
        classless.clone(),
        ext.clone(),
        svc("ours", 4),
    ];
    case(
        "only our class; the others' addresses are skipped",
        services.clone(),
    )
    .want(&[("ours", &["198.51.100.3"])])
    .check();
    let mut default = case("classless too with --default-load-balancer", services).want(&[
        ("classless", &["198.51.100.3"]),
        ("ours", &["198.51.100.4"]),
    ]);
    default.class.default = true;
    default.check();
    case(
        "a request for another class's address",
        vec![other, svc("ours", 4).lb_ip("198.51.100.1")],
    )
    .want(&[("ours", &[])])
    .refused(&[(
        "ours",
        "taken by Service default/metallb, which l3lb does not handle",
    )])
    .check();
    let cluster_ip = svc("cip", 1).set("type", json!("ClusterIP"));
    case("not a LoadBalancer", vec![cluster_ip.clone()]).check();
    // Changed from LoadBalancer to ClusterIP: the pool's address is taken off its status (and
    // free again); an address from elsewhere is someone else's to clear.
    case(
        "no longer a LoadBalancer",
        vec![cluster_ip.status(&["198.51.100.1"]), svc("new", 2)],
    )
    .want(&[("cip", &[]), ("new", &["198.51.100.1"])])
    .check();
    let foreign = svc("cip", 1)
        .set("type", json!("NodePort"))
        .status(&["203.0.113.1"]);
    case("no longer a LoadBalancer, address not ours", vec![foreign]).check();
}

/// Allocation is a fixed point: writing the result into the statuses and allocating again gives
/// the same addresses and refusals, whatever the order the Services come in.
#[test]
fn allocation_is_stable_across_runs_and_input_order() {
    let services = [
        svc("a", 1).share("k").port(53, "UDP"),
        svc("b", 2).share("k").port(53, "TCP"),
        svc("c", 3).lb_ip("198.51.100.1"),
        svc("d", 4).lb_ip("198.51.100.200"),
        svc("e", 5).families(&["IPv4", "IPv6"], "RequireDualStack"),
        svc("f", 6).status(&["198.51.100.200"]),
    ];
    let pools = vec![pool("lab", &["198.51.100.0/24", "2001:db8:100::/120"])];
    let class = ClassFilter::default();
    let built: Vec<Service> = services.iter().map(S::build).collect();
    let refs: Vec<&Service> = built.iter().collect();
    let first = allocate(&refs, &pools, &prefixes(), &class);
    let mut rewritten = built.clone();
    for s in &mut rewritten {
        let key = ServiceKey::of(s).unwrap();
        let ips = &first.assigned[&key];
        let ingress: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
        s.status = serde_json::from_value(json!({"loadBalancer": {"ingress": ingress}})).unwrap();
    }
    rewritten.reverse();
    let refs: Vec<&Service> = rewritten.iter().collect();
    let second = allocate(&refs, &pools, &prefixes(), &class);
    assert_eq!(first, second);
    // c asks for a's address, d for the one f holds on record.
    let refused: Vec<&str> = first
        .refusals
        .iter()
        .map(|r| r.service.name.as_str())
        .collect();
    assert_eq!(refused, ["c", "d"], "{first:?}");
    assert_eq!(
        first.assigned.values().filter(|v| v.is_empty()).count(),
        2,
        "{first:?}"
    );
}
