//! Which endpoints a node may program. Anyone who can write an EndpointSlice can point a Service
//! anywhere (CVE-2021-25740), so an endpoint is checked before its address reaches the maps: it
//! must be an ordinary unicast address inside this node's pod CIDRs (when known), never one of
//! the node's own addresses (its sockets), a VIP, loopback or link-local. Pure.
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
};

use ipnet::IpNet;

/// What the node knows of itself for the checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// Where this node's pods get their addresses (the Node's `spec.podCIDRs`, or `--pod-cidrs`);
    /// empty: unknown, so only the other checks apply.
    pub pod_cidrs: Vec<IpNet>,
    /// The node's own addresses: its Node's `status.addresses` and every address on its
    /// interfaces. Traffic DNATed to one of them would reach the host's sockets.
    pub own_addresses: BTreeSet<IpAddr>,
}

/// Why an endpoint address is not programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Distrust {
    /// Loopback, link-local, multicast, unspecified, broadcast or IPv4-mapped.
    NotUnicast,
    /// One of the node's own addresses.
    NodeAddress,
    /// Inside a --prefix: a VIP range.
    InsidePrefix,
    /// Outside the node's pod CIDRs.
    OutsidePodCidrs,
}

impl fmt::Display for Distrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distrust::NotUnicast => "not ordinary unicast pod addresses (loopback, link-local, multicast or unspecified)",
            Distrust::NodeAddress => "addresses of the node itself, whose sockets a VIP must never reach",
            Distrust::InsidePrefix => "inside the VIP prefixes (--prefix)",
            Distrust::OutsidePodCidrs => "outside the node's pod CIDRs",
        })
    }
}

/// Why `addr` must not be programmed on this node, if it must not.
pub fn distrust(addr: IpAddr, facts: &NodeFacts, prefixes: &[IpNet]) -> Option<Distrust> {
    let not_unicast = match addr {
        IpAddr::V4(a) => {
            a.is_loopback()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_unspecified()
                || a.is_broadcast()
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unicast_link_local()
                || a.is_multicast()
                || a.is_unspecified()
                || a.to_ipv4_mapped().is_some()
        }
    };
    if not_unicast {
        Some(Distrust::NotUnicast)
    } else if facts.own_addresses.contains(&addr) {
        Some(Distrust::NodeAddress)
    } else if prefixes.iter().any(|p| p.contains(&addr)) {
        Some(Distrust::InsidePrefix)
    } else if !facts.pod_cidrs.is_empty() && !facts.pod_cidrs.iter().any(|c| c.contains(&addr)) {
        Some(Distrust::OutsidePodCidrs)
    } else {
        None
    }
}

/// At most this many addresses are listed in one refusal.
const LISTED: usize = 5;

/// One refusal text per reason for the distrusted endpoint addresses of a Service.
pub fn refusals(distrusted: &BTreeMap<IpAddr, Distrust>, facts: &NodeFacts) -> Vec<String> {
    let mut by_reason: BTreeMap<Distrust, Vec<IpAddr>> = BTreeMap::new();
    for (addr, why) in distrusted {
        by_reason.entry(*why).or_default().push(*addr);
    }
    by_reason
        .into_iter()
        .map(|(why, addrs)| {
            let mut listed: Vec<String> =
                addrs.iter().take(LISTED).map(|a| a.to_string()).collect();
            if addrs.len() > LISTED {
                listed.push(format!("and {} more", addrs.len() - LISTED));
            }
            let cidrs = match why {
                Distrust::OutsidePodCidrs => {
                    let c: Vec<String> = facts.pod_cidrs.iter().map(|c| c.to_string()).collect();
                    format!(" ({})", c.join(", "))
                }
                _ => String::new(),
            };
            format!(
                "endpoints {} are {why}{cidrs}; they are not programmed",
                listed.join(", ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_pod_addresses_of_this_node_are_trusted() {
        let facts = NodeFacts {
            pod_cidrs: vec![
                "10.244.1.0/24".parse().unwrap(),
                "fd00:244:1::/64".parse().unwrap(),
            ],
            own_addresses: [ip("10.100.1.2"), ip("10.244.1.1")].into(),
        };
        let prefixes: Vec<IpNet> = vec!["198.51.100.0/24".parse().unwrap()];
        let cases = [
            ("10.244.1.7", None),
            ("fd00:244:1::7", None),
            ("10.244.2.7", Some(Distrust::OutsidePodCidrs)),
            ("fd00:244:2::7", Some(Distrust::OutsidePodCidrs)),
            ("10.244.1.1", Some(Distrust::NodeAddress)),
            ("10.100.1.2", Some(Distrust::NodeAddress)),
            ("127.0.0.1", Some(Distrust::NotUnicast)),
            ("::1", Some(Distrust::NotUnicast)),
            ("169.254.1.1", Some(Distrust::NotUnicast)),
            ("fe80::1", Some(Distrust::NotUnicast)),
            ("224.0.0.1", Some(Distrust::NotUnicast)),
            ("0.0.0.0", Some(Distrust::NotUnicast)),
            ("::ffff:10.244.1.7", Some(Distrust::NotUnicast)),
            ("198.51.100.4", Some(Distrust::InsidePrefix)),
        ];
        for (addr, want) in cases {
            assert_eq!(distrust(ip(addr), &facts, &prefixes), want, "{addr}");
        }
        // Without known pod CIDRs the other checks still hold.
        let unknown = NodeFacts {
            pod_cidrs: vec![],
            ..facts.clone()
        };
        assert_eq!(distrust(ip("10.9.9.9"), &unknown, &prefixes), None);
        assert_eq!(
            distrust(ip("10.100.1.2"), &unknown, &prefixes),
            Some(Distrust::NodeAddress)
        );
    }

    #[test]
    fn refusals_group_by_reason_and_cap_the_list() {
        let facts = NodeFacts {
            pod_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
            ..NodeFacts::default()
        };
        let mut bad: BTreeMap<IpAddr, Distrust> = (1..=7)
            .map(|i| (ip(&format!("10.9.0.{i}")), Distrust::OutsidePodCidrs))
            .collect();
        bad.insert(ip("127.0.0.1"), Distrust::NotUnicast);
        let texts = refusals(&bad, &facts);
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts[0].starts_with("endpoints 127.0.0.1 are not ordinary unicast"));
        assert_eq!(
            texts[1],
            "endpoints 10.9.0.1, 10.9.0.2, 10.9.0.3, 10.9.0.4, 10.9.0.5, and 2 more are outside \
             the node's pod CIDRs (10.244.1.0/24); they are not programmed"
        );
    }
}
