//! L2 pools and `l3lb.io/l2-address-count`: N addresses per family, from L2 pools only.
use super::*;

const COUNT: &str = "l3lb.io/l2-address-count";

fn l2_pool(name: &str, cidrs: &[&str]) -> Pool {
    pool(name, cidrs).l2(&[])
}

#[test]
fn l2_address_counts() {
    // A BGP pool sorts first, so auto-assignment without the annotation takes from it.
    let both = || {
        vec![
            pool("a-bgp", &["198.51.100.0/26", "2001:db8:100::/122"]),
            l2_pool("b-l2", &["198.51.100.64/26", "2001:db8:100::40/122"]),
        ]
    };
    let cases = [
        case(
            "without the annotation: one address from the first pool, BGP or not",
            vec![svc("a", 1)],
        )
        .pools(both())
        .want(&[("a", &["198.51.100.1"])]),
        case(
            "count 1: one address, from the L2 pool",
            vec![svc("a", 1).ann(COUNT, "1")],
        )
        .pools(both())
        .want(&[("a", &["198.51.100.65"])]),
        case(
            "count 3: three addresses from the L2 pool, none shared with the next Service",
            vec![svc("a", 1).ann(COUNT, "3"), svc("b", 2).ann(COUNT, "2")],
        )
        .pools(both())
        .want(&[
            ("a", &["198.51.100.65", "198.51.100.66", "198.51.100.67"]),
            ("b", &["198.51.100.68", "198.51.100.69"]),
        ]),
        case(
            "IPv6, and dual-stack: N of each family, in ipFamilies order",
            vec![
                svc("a", 1)
                    .families(&["IPv6"], "SingleStack")
                    .ann(COUNT, "2"),
                svc("b", 2)
                    .families(&["IPv6", "IPv4"], "RequireDualStack")
                    .ann(COUNT, "2"),
            ],
        )
        .pools(both())
        .want(&[
            ("a", &["2001:db8:100::41", "2001:db8:100::42"]),
            (
                "b",
                &[
                    "2001:db8:100::43",
                    "2001:db8:100::44",
                    "198.51.100.65",
                    "198.51.100.66",
                ],
            ),
        ]),
        case(
            "kept across runs: the status is the record, in any order",
            vec![
                svc("a", 1)
                    .ann(COUNT, "2")
                    .status(&["198.51.100.70", "198.51.100.66"]),
            ],
        )
        .pools(both())
        .want(&[("a", &["198.51.100.70", "198.51.100.66"])]),
        case(
            "count raised: the kept ones stay, the missing ones are added",
            vec![svc("a", 1).ann(COUNT, "3").status(&["198.51.100.70"])],
        )
        .pools(both())
        .want(&[("a", &["198.51.100.70", "198.51.100.65", "198.51.100.66"])]),
        case(
            "count lowered: the first ones of the record are kept",
            vec![
                svc("a", 1)
                    .ann(COUNT, "1")
                    .status(&["198.51.100.70", "198.51.100.66"]),
            ],
        )
        .pools(both())
        .want(&[("a", &["198.51.100.70"])]),
        case(
            "a BGP address on record is not kept once the Service asks for L2",
            vec![svc("a", 1).ann(COUNT, "1").status(&["198.51.100.1"])],
        )
        .pools(both())
        .want(&[("a", &["198.51.100.65"])]),
        case(
            "the L2 pool too small: refused, nothing assigned, the next Service unaffected",
            vec![svc("a", 1).ann(COUNT, "3"), svc("b", 2).ann(COUNT, "2")],
        )
        .pools(vec![l2_pool("tiny", &["198.51.100.0/30"])])
        .want(&[("a", &[]), ("b", &["198.51.100.1", "198.51.100.2"])])
        .refused(&[("a", "pool tiny is exhausted")]),
        case(
            "no L2 pool: refused with the reason",
            vec![svc("a", 1).ann(COUNT, "2")],
        )
        .want(&[("a", &[])])
        .refused(&[("a", "no L2 pool (advertisement: l2) allows it")]),
        case(
            "bad values are refused",
            vec![
                svc("a", 1).ann(COUNT, "0"),
                svc("b", 2).ann(COUNT, "17"),
                svc("c", 3).ann(COUNT, "many"),
            ],
        )
        .pools(both())
        .want(&[("a", &[]), ("b", &[]), ("c", &[])])
        .refused(&[
            ("a", "from 1 to 16"),
            ("b", "from 1 to 16"),
            ("c", "\"many\""),
        ]),
        case(
            "several addresses and a requested one do not mix",
            vec![svc("a", 1).ann(COUNT, "2").lb_ip("198.51.100.70")],
        )
        .pools(both())
        .want(&[("a", &[])])
        .refused(&[("a", "use one or the other")]),
        case(
            "count 1 with a requested address: it must be in an L2 pool",
            vec![
                svc("a", 1).ann(COUNT, "1").lb_ip("198.51.100.70"),
                svc("b", 2).ann(COUNT, "1").lb_ip("198.51.100.5"),
            ],
        )
        .pools(both())
        .want(&[("a", &["198.51.100.70"]), ("b", &[])])
        .refused(&[("b", "which is not an L2 pool")]),
        case(
            "sharing: a second Service shares the first address, never one address twice",
            vec![
                svc("a", 1).ann(COUNT, "2").share("k"),
                svc("b", 2).ann(COUNT, "2").share("k").port(53, "UDP"),
            ],
        )
        .pools(both())
        .want(&[
            ("a", &["198.51.100.65", "198.51.100.66"]),
            ("b", &["198.51.100.65", "198.51.100.66"]),
        ]),
    ];
    for c in cases {
        c.check();
    }
}

#[test]
fn an_l2_pool_from_its_object() {
    let p = pool_obj(json!({"metadata": {"name": "l2"}, "spec": {
        "addresses": ["198.51.100.0/24"], "advertisement": "l2", "interfaces": ["eth1"]}}));
    assert!(p.is_l2());
    assert_eq!(p.interfaces, ["eth1"]);
}
