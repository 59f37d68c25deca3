use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use super::*;
use crate::core::model::ServiceKey;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn names(n: &[&str]) -> BTreeSet<String> {
    n.iter().map(|s| (*s).to_owned()).collect()
}

fn svc(name: &str, addresses: &[&str], ready: &[&str]) -> L2Service {
    L2Service {
        key: ServiceKey {
            namespace: "ns".into(),
            name: name.into(),
        },
        addresses: addresses.iter().map(|a| ip(a)).collect(),
        ready_nodes: names(ready),
    }
}

const NODES: [&str; 5] = ["node-a", "node-b", "node-c", "node-d", "node-e"];

#[test]
fn the_score_is_pinned_so_every_version_agrees() {
    // A change here makes nodes of different l3lb versions pick different announcers during a
    // rolling upgrade: both would answer ARP for the same address. (Values computed
    // independently, by a Python transcription of FNV-1a 64 and splitmix64's finaliser.)
    assert_eq!(score(ip("192.0.2.1"), "node-a"), 0xe387_aa03_cccc_a119);
    assert_eq!(score(ip("2001:db8::1"), "node-a"), 0xe871_5af1_03ab_3ddb);
    assert_ne!(
        score(ip("192.0.2.1"), "node-a"),
        score(ip("192.0.2.1"), "node-b")
    );
    assert_ne!(
        score(ip("192.0.2.1"), "node-a"),
        score(ip("192.0.2.2"), "node-a")
    );
}

#[test]
fn the_announcer_is_the_highest_scoring_eligible_node() {
    let all = names(&NODES);
    let s = svc("web", &["192.0.2.1"], &NODES);
    let got = announcers(std::slice::from_ref(&s), &names(&[]), &all);
    let best = NODES
        .iter()
        .max_by_key(|n| score(ip("192.0.2.1"), n))
        .unwrap();
    assert_eq!(got.get(&ip("192.0.2.1")).map(String::as_str), Some(*best));
    // Same inputs in any order: same answer (every node agrees).
    let mut reversed = s.clone();
    reversed.ready_nodes = NODES.iter().rev().map(|n| n.to_string()).collect();
    assert_eq!(announcers(&[reversed], &names(&[]), &all), got);
}

#[test]
fn only_eligible_nodes_announce() {
    let s = svc("web", &["192.0.2.1"], &["node-a", "node-b", "node-c"]);
    // (excluded, alive, the nodes that may be chosen)
    let cases: [(&[&str], &[&str], &[&str]); 6] = [
        (&[], &NODES, &["node-a", "node-b", "node-c"]),
        (&["node-a", "node-b"], &NODES, &["node-c"]),
        (&[], &["node-b", "node-d", "node-e"], &["node-b"]),
        (&["node-b"], &["node-b", "node-c"], &["node-c"]),
        (&[], &["node-d"], &[]),
        (&["node-a", "node-b", "node-c"], &NODES, &[]),
    ];
    for (excluded, alive, may) in cases {
        let got = announcers(std::slice::from_ref(&s), &names(excluded), &names(alive));
        let got = got.get(&ip("192.0.2.1")).map(String::as_str);
        match got {
            Some(n) => assert!(may.contains(&n), "{n} chosen; {excluded:?} {alive:?}"),
            None => assert!(may.is_empty(), "nobody chosen; {excluded:?} {alive:?}"),
        }
    }
}

#[test]
fn unrelated_changes_move_nothing_and_a_leaving_node_moves_only_its_addresses() {
    let alive = names(&NODES);
    let services: Vec<L2Service> = (0..40)
        .map(|i| svc(&format!("s{i}"), &[&format!("192.0.2.{}", i + 1)], &NODES))
        .collect();
    let before = announcers(&services, &names(&[]), &alive);
    assert_eq!(before.len(), 40);
    // A spread over nodes: every node announces something out of 40 addresses.
    let used: BTreeSet<&String> = before.values().collect();
    assert_eq!(used.len(), NODES.len(), "{before:?}");

    // Another Service added: nothing else moves.
    let mut more = services.clone();
    more.push(svc("new", &["192.0.2.200"], &NODES));
    let after = announcers(&more, &names(&[]), &alive);
    for (a, n) in &before {
        assert_eq!(after.get(a), Some(n), "{a} moved");
    }

    // node-c dies: exactly the addresses it announced move, to someone else.
    let without_c = names(&["node-a", "node-b", "node-d", "node-e"]);
    let after = announcers(&services, &names(&[]), &without_c);
    for (a, n) in &before {
        let now = after.get(a).unwrap();
        if n == "node-c" {
            assert_ne!(now, "node-c");
        } else {
            assert_eq!(now, n, "{a} moved though its announcer stayed");
        }
    }

    // node-c comes back: everything returns (rendezvous hashing has no memory).
    assert_eq!(announcers(&services, &names(&[]), &alive), before);
}

#[test]
fn several_addresses_of_a_service_spread_over_distinct_nodes() {
    let addrs = ["192.0.2.10", "192.0.2.11", "192.0.2.12"];
    let three = svc("web", &addrs, &NODES);
    let got = announcers(std::slice::from_ref(&three), &names(&[]), &names(&NODES));
    let nodes: BTreeSet<&String> = got.values().collect();
    assert_eq!((got.len(), nodes.len()), (3, 3), "{got:?}");

    // Two eligible nodes for three addresses: both used, one twice.
    let two = svc("web", &addrs, &["node-a", "node-b"]);
    let got = announcers(&[two], &names(&[]), &names(&NODES));
    let nodes: BTreeSet<&String> = got.values().collect();
    assert_eq!((got.len(), nodes.len()), (3, 2), "{got:?}");

    // An IPv6 Service too.
    let v6 = svc("v6", &["2001:db8::10", "2001:db8::11"], &NODES);
    let got = announcers(&[v6], &names(&[]), &names(&NODES));
    let nodes: BTreeSet<&String> = got.values().collect();
    assert_eq!((got.len(), nodes.len()), (2, 2), "{got:?}");

    // Losing a node that announces none of them moves none of them.
    let before = announcers(std::slice::from_ref(&three), &names(&[]), &names(&NODES));
    let idle = NODES
        .iter()
        .find(|n| !before.values().any(|v| v == *n))
        .unwrap();
    let fewer: BTreeSet<String> = NODES
        .iter()
        .filter(|n| *n != idle)
        .map(|n| n.to_string())
        .collect();
    assert_eq!(announcers(&[three], &names(&[]), &fewer), before);
}

#[test]
fn a_shared_address_has_one_announcer_from_either_services_nodes() {
    let a = svc("a", &["192.0.2.5"], &["node-a"]);
    let b = svc("b", &["192.0.2.5"], &["node-b"]);
    let alive = names(&NODES);
    let got = announcers(&[b.clone(), a.clone()], &names(&[]), &alive);
    assert_eq!(got.len(), 1);
    let n = &got[&ip("192.0.2.5")];
    assert!(n == "node-a" || n == "node-b");
    assert_eq!(announcers(&[a, b], &names(&[]), &alive), got, "order-free");
}

#[test]
fn liveness_is_judged_by_changes_on_the_local_clock() {
    let ms = Duration::from_millis;
    let mut l = Liveness::new(ms(2000));
    l.observe("node-a", "t1/100", ms(0));
    l.observe("node-b", "t1/101", ms(0));
    // First sight counts as a renewal.
    assert_eq!(
        l.judge("node-a", ms(500)).alive,
        names(&["node-a", "node-b"])
    );
    // node-a renews at 1 s and 2 s; node-b stops. A repeat of the same marker (a relist) is
    // not a renewal.
    l.observe("node-a", "t2/102", ms(1000));
    l.observe("node-b", "t1/101", ms(1000));
    l.observe("node-a", "t3/103", ms(2000));
    assert_eq!(
        l.judge("node-a", ms(2000)).alive,
        names(&["node-a", "node-b"])
    );
    let v = l.judge("node-a", ms(2001));
    assert_eq!(v.alive, names(&["node-a"]));
    assert!(v.fresh);
    // Judged from node-b (which no longer sees its own renewals): its view is stale.
    assert!(!l.judge("node-b", ms(2001)).fresh);
    // The next expiry: node-a's at 4 s.
    assert_eq!(l.next_expiry(ms(2500)), Some(ms(1501)));
    assert_eq!(l.next_expiry(ms(4001)), None);
    // A node never seen, or whose Lease is deleted, is dead.
    assert!(!l.is_alive("node-z", ms(0)));
    l.forget("node-a");
    assert!(!l.is_alive("node-a", ms(2001)));
    assert!(!l.judge("node-a", ms(2001)).fresh);
}

#[test]
fn every_reason_has_its_words() {
    let addr = ip("192.0.2.1");
    let s = svc("web", &["192.0.2.1"], &["node-a", "node-b", "node-c"]);
    let alive = names(&["node-a", "node-b", "node-d"]);
    let excluded = names(&["node-b"]);
    let decided = announcers(std::slice::from_ref(&s), &excluded, &alive);
    assert_eq!(decided[&addr], "node-a");
    let w = |node: &str, decided: &Announcers| {
        why(node, addr, decided, &s.ready_nodes, &excluded, &alive)
    };
    let cases = [
        ("node-a", Why::Announces, "this node announces it"),
        (
            "node-b",
            Why::Excluded,
            "this node is excluded from load balancing",
        ),
        ("node-c", Why::NotAlive, "Lease is not seen renewing"),
        ("node-d", Why::NoReadyEndpoint, "no Ready endpoint"),
    ];
    for (node, want, words) in cases {
        let got = w(node, &decided);
        assert_eq!(got, want, "{node}");
        assert!(got.to_string().contains(words), "{got}");
    }
    // An eligible node that was not chosen; and decisions with nobody (made from other inputs).
    let wider = names(&["node-a", "node-b", "node-c", "node-d"]);
    let got = why("node-c", addr, &decided, &s.ready_nodes, &excluded, &wider);
    assert_eq!(
        got,
        Why::OtherAnnouncer {
            node: "node-a".into()
        }
    );
    assert!(
        got.to_string().contains("node node-a announces it"),
        "{got}"
    );
    let got = why(
        "node-c",
        addr,
        &Announcers::new(),
        &s.ready_nodes,
        &excluded,
        &wider,
    );
    assert_eq!(got, Why::NoEligibleNode);
    assert!(got.to_string().contains("nobody answers"), "{got}");
}

mod serving {
    use std::collections::BTreeMap;

    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;

    use super::*;
    use crate::core::{
        model::{Backends, Desired, FrontendId, Proto},
        pool::Pool,
    };

    fn pools() -> Vec<Pool> {
        vec![
            Pool::new("bgp", &["198.51.100.0/25".parse().unwrap()], true),
            Pool::new("l2", &["198.51.100.128/25".parse().unwrap()], true).l2(&[]),
            Pool::new("l2-eth1", &["2001:db8::/120".parse().unwrap()], true).l2(&["eth1"]),
        ]
    }

    fn frontend(vip: &str) -> FrontendId {
        FrontendId {
            vip: ip(vip),
            port: 80,
            proto: Proto::Tcp,
        }
    }

    #[test]
    fn l2_addresses_are_never_on_the_host_and_forwarded_only_by_their_announcer() {
        let (bgp, mine, theirs) = ("198.51.100.1", "198.51.100.129", "2001:db8::1");
        let desired = Desired {
            frontends: [bgp, mine, theirs]
                .iter()
                .map(|v| (frontend(v), Backends::default()))
                .collect(),
            addresses: [bgp, mine, theirs].iter().map(|v| ip(v)).collect(),
            refusals: vec![],
        };
        let l2 = l2_addresses(&desired.addresses, &pools());
        assert_eq!(l2, [ip(mine), ip(theirs)].into());
        let announcers: Announcers = [
            (ip(mine), "node-a".to_owned()),
            (ip(theirs), "node-b".to_owned()),
        ]
        .into();
        let got = l2_desired(&desired, &l2, &announcers, "node-a");
        assert_eq!(got.addresses, [ip(bgp)].into(), "BGP addresses unchanged");
        let vips: Vec<IpAddr> = got.frontends.keys().map(|f| f.vip).collect();
        assert_eq!(vips, [ip(bgp), ip(mine)]);
        let got = l2_desired(&desired, &l2, &Announcers::new(), "node-a");
        assert_eq!(got.frontends.len(), 1, "nobody announces: only BGP");
    }

    #[test]
    fn responders_on_the_pools_interfaces_or_the_uplinks() {
        let announcers: Announcers = [
            (ip("198.51.100.129"), "node-a".to_owned()),
            (ip("198.51.100.130"), "node-b".to_owned()),
            (ip("2001:db8::1"), "node-a".to_owned()),
            // Not in an L2 pool (a stale decision): never answered for.
            (ip("198.51.100.1"), "node-a".to_owned()),
        ]
        .into();
        let uplinks = ["eth0".to_owned(), "eth2".to_owned()];
        let got = responder_entries(&announcers, "node-a", &pools(), &uplinks);
        let want: BTreeMap<String, BTreeSet<IpAddr>> = [
            ("eth0".to_owned(), [ip("198.51.100.129")].into()),
            ("eth1".to_owned(), [ip("2001:db8::1")].into()),
            ("eth2".to_owned(), [ip("198.51.100.129")].into()),
        ]
        .into();
        assert_eq!(got, want);
    }

    #[test]
    fn ready_nodes_of_a_slice() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "ns"},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.1"], "nodeName": "node-a", "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "nodeName": "node-b", "conditions": {}},
                {"addresses": ["10.0.0.3"], "nodeName": "node-c",
                 "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": true}},
            ],
        }))
        .unwrap();
        assert_eq!(ready_nodes(&slice), names(&["node-a", "node-b"]));
    }
}
