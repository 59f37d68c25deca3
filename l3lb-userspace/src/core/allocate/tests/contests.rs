//! Sharing, and the contests of the ownership rule.
use super::*;

#[test]
fn sharing_needs_both_to_opt_in_with_one_key_and_disjoint_ports() {
    let cases = [
        case(
            "same key, different ports: one address",
            vec![
                svc("tcp", 1)
                    .share("dns")
                    .port(53, "TCP")
                    .lb_ip("198.51.100.53"),
                svc("udp", 2)
                    .share("dns")
                    .port(53, "UDP")
                    .lb_ip("198.51.100.53"),
            ],
        )
        .want(&[("tcp", &["198.51.100.53"]), ("udp", &["198.51.100.53"])]),
        case(
            "same key, auto: the younger joins the older's address",
            vec![
                svc("tcp", 1).share("dns").port(53, "TCP"),
                svc("other", 2),
                svc("udp", 3).share("dns").port(53, "UDP"),
            ],
        )
        .want(&[
            ("other", &["198.51.100.2"]),
            ("tcp", &["198.51.100.1"]),
            ("udp", &["198.51.100.1"]),
        ]),
        case(
            "only one opts in",
            vec![
                svc("a", 1).lb_ip("198.51.100.9").port(80, "TCP"),
                svc("b", 2)
                    .share("k")
                    .lb_ip("198.51.100.9")
                    .port(443, "TCP"),
            ],
        )
        .want(&[("a", &["198.51.100.9"]), ("b", &[])])
        .refused(&[(
            "b",
            "both carry the annotation l3lb.io/allow-shared-ip with the same value",
        )]),
        case(
            "different keys",
            vec![
                svc("a", 1).share("x").lb_ip("198.51.100.9").port(80, "TCP"),
                svc("b", 2)
                    .share("y")
                    .lb_ip("198.51.100.9")
                    .port(443, "TCP"),
            ],
        )
        .want(&[("a", &["198.51.100.9"]), ("b", &[])])
        .refused(&[("b", "taken by Service default/a")]),
        case(
            "same key, clashing port",
            vec![
                svc("a", 1).share("k").lb_ip("198.51.100.9"),
                svc("b", 2).share("k").lb_ip("198.51.100.9"),
            ],
        )
        .want(&[("a", &["198.51.100.9"]), ("b", &[])])
        .refused(&[("b", "already uses port 80/TCP")]),
        case(
            "same key, clashing port, auto: a separate address",
            vec![svc("a", 1).share("k"), svc("b", 2).share("k")],
        )
        .want(&[("a", &["198.51.100.1"]), ("b", &["198.51.100.2"])]),
        case(
            "MetalLB's sharing annotation counts as the same key",
            vec![
                svc("a", 1).share("k").port(53, "TCP").lb_ip("198.51.100.9"),
                svc("b", 2)
                    .ann("metallb.universe.tf/allow-shared-ip", "k")
                    .port(53, "UDP")
                    .lb_ip("198.51.100.9"),
            ],
        )
        .want(&[("a", &["198.51.100.9"]), ("b", &["198.51.100.9"])]),
    ];
    for c in cases {
        c.check();
    }
}

/// The contests of [`crate::core::ownership`]: a grant against externalIPs, requests against
/// externalIPs and other tenants, sharing across namespaces, release and re-grant.
#[test]
fn one_owner_per_address() {
    let external = |s: S, ips: &[&str]| s.set("externalIPs", json!(ips));
    let cases = [
        case(
            "a grant keeps its address against an older Service's externalIPs",
            vec![
                svc("web", 30)
                    .lb_ip("198.51.100.10")
                    .status(&["198.51.100.10"]),
                external(svc("grab", 1).ns("evil"), &["198.51.100.10"]),
            ],
        )
        .want(&[("web", &["198.51.100.10"]), ("grab", &["198.51.100.1"])]),
        case(
            "an address claimed in externalIPs is never granted to a request",
            vec![
                external(svc("ext", 10).ns("evil"), &["198.51.100.10"]),
                svc("web", 1).lb_ip("198.51.100.10"),
            ],
        )
        .want(&[("ext", &["198.51.100.1"]), ("web", &[])])
        .refused(&[(
            "web",
            "198.51.100.10 is in the spec.externalIPs of a Service in another namespace; l3lb \
             never allocates an address claimed there",
        )]),
        case(
            "nor auto-assigned, also when a ClusterIP Service claims it",
            vec![
                external(
                    svc("plain", 1).set("type", json!("ClusterIP")),
                    &["198.51.100.1"],
                ),
                svc("web", 2),
            ],
        )
        .want(&[("web", &["198.51.100.2"])]),
        case(
            "another tenant's grant is refused to a request without naming it",
            vec![
                svc("web", 1).status(&["198.51.100.10"]),
                svc("grab", 0).ns("evil").lb_ip("198.51.100.10"),
            ],
        )
        .want(&[("grab", &[]), ("web", &["198.51.100.10"])])
        .refused(&[(
            "grab",
            "198.51.100.10 is taken by a Service in another namespace;",
        )]),
        case(
            "a sharing key from another namespace does not share",
            vec![
                svc("tcp", 1)
                    .ns("dns")
                    .share("k")
                    .status(&["198.51.100.53"]),
                svc("udp", 2)
                    .ns("evil")
                    .share("k")
                    .port(53, "UDP")
                    .lb_ip("198.51.100.53"),
            ],
        )
        .want(&[("tcp", &["198.51.100.53"]), ("udp", &[])])
        .refused(&[("udp", "is taken by a Service in another namespace")]),
        case(
            "released (no longer a LoadBalancer), the address is granted to the next request",
            vec![
                svc("web", 1)
                    .set("type", json!("ClusterIP"))
                    .status(&["198.51.100.10"]),
                svc("next", 2).ns("other").lb_ip("198.51.100.10"),
            ],
        )
        .want(&[("next", &["198.51.100.10"]), ("web", &[])]),
    ];
    for c in cases {
        c.check();
    }
}
