//! IP families, pools, prefixes and exhaustion.
use super::*;

#[test]
fn families_pools_and_exhaustion() {
    let v4_only = || vec![pool("v4", &["198.51.100.0/24"])];
    let cases = [
        case(
            "IPv6 only",
            vec![svc("a", 1).families(&["IPv6"], "SingleStack")],
        )
        .want(&[("a", &["2001:db8:100::1"])]),
        case(
            "RequireDualStack: one of each, in ipFamilies order",
            vec![svc("a", 1).families(&["IPv6", "IPv4"], "RequireDualStack")],
        )
        .want(&[("a", &["2001:db8:100::1", "198.51.100.1"])]),
        case(
            "PreferDualStack without IPv6 pool: IPv4 only, no refusal",
            vec![svc("a", 1).families(&["IPv4", "IPv6"], "PreferDualStack")],
        )
        .pools(v4_only())
        .want(&[("a", &["198.51.100.1"])]),
        case(
            "RequireDualStack without IPv6 pool: refused, nothing assigned",
            vec![
                svc("a", 1).families(&["IPv4", "IPv6"], "RequireDualStack"),
                svc("b", 2),
            ],
        )
        .pools(v4_only())
        .want(&[("a", &[]), ("b", &["198.51.100.1"])])
        .refused(&[(
            "a",
            "no pool with autoAssign for this Service has IPv6 addresses",
        )]),
        case(
            "RequireDualStack requesting only IPv4",
            vec![
                svc("a", 1)
                    .families(&["IPv4", "IPv6"], "RequireDualStack")
                    .lb_ip("198.51.100.4"),
            ],
        )
        .want(&[("a", &[])])
        .refused(&[("a", "requires an IPv6 address")]),
        case(
            "dual-stack request by annotation",
            vec![
                svc("a", 1)
                    .families(&["IPv4", "IPv6"], "RequireDualStack")
                    .ann("l3lb.io/load-balancer-ips", "2001:db8:100::9,198.51.100.9"),
            ],
        )
        .want(&[("a", &["198.51.100.9", "2001:db8:100::9"])]),
        case(
            "pool exhausted",
            vec![svc("a", 1), svc("b", 2), svc("c", 3)],
        )
        .pools(vec![pool("tiny", &["198.51.100.0/30"])])
        .want(&[
            ("a", &["198.51.100.1"]),
            ("b", &["198.51.100.2"]),
            ("c", &[]),
        ])
        .refused(&[("c", "pool tiny is exhausted")]),
        case(
            "the next pool once the first is full",
            vec![svc("a", 1), svc("b", 2)],
        )
        .pools(vec![
            pool("a-tiny", &["198.51.100.4/32"]),
            pool("b-more", &["198.51.100.64/26"]),
        ])
        .want(&[("a", &["198.51.100.4"]), ("b", &["198.51.100.65"])]),
        case(
            "autoAssign off: requests only",
            vec![svc("auto", 1), svc("asks", 2).lb_ip("198.51.100.7")],
        )
        .pools(vec![Pool::new("manual", &[net("198.51.100.0/24")], false)])
        .want(&[("asks", &["198.51.100.7"]), ("auto", &[])])
        .refused(&[(
            "auto",
            "pool manual allows this Service but has autoAssign off",
        )]),
        case(
            "namespace and label selectors",
            vec![
                svc("edge", 1).ns("web").label("tier", "edge"),
                svc("plain", 2).ns("web"),
                svc("elsewhere", 3).ns("other").label("tier", "edge"),
                svc("asks", 4).ns("other").lb_ip("198.51.100.200"),
            ],
        )
        .pools(vec![pool_obj(
            json!({"metadata": {"name": "edge"}, "spec": {
            "addresses": ["198.51.100.0/24"], "namespaces": ["web"],
            "serviceSelector": {"matchLabels": {"tier": "edge"}}}}),
        )])
        .want(&[
            ("asks", &[]),
            ("edge", &["198.51.100.1"]),
            ("elsewhere", &[]),
            ("plain", &[]),
        ])
        .refused(&[
            ("asks", "is in pool edge, which does not allow this Service"),
            ("elsewhere", "no pool allows this Service"),
            ("plain", "no pool allows this Service"),
        ]),
    ];
    for c in cases {
        c.check();
    }
}
