//! What this node's own Node object says: whether the node takes part in load balancing at all,
//! and the facts its endpoints are checked against. Pure.
use std::{borrow::Cow, fmt, net::IpAddr};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;

use super::trust::NodeFacts;
use crate::core::model::Desired;

/// The well-known label that keeps a node out of external load balancers (its value is ignored,
/// as in Kubernetes' service controller).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// Why this node announces no VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exclusion {
    /// The Node carries [`EXCLUDE_LABEL`].
    Labelled,
    /// The Node is cordoned (`spec.unschedulable`), e.g. while it is drained for maintenance.
    Cordoned,
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exclusion::Labelled => write!(f, "the node has the label {EXCLUDE_LABEL}"),
            Exclusion::Cordoned => f.write_str("the node is cordoned (spec.unschedulable)"),
        }
    }
}

/// Why `node` is excluded, if it is. A Node that is not (yet) visible is not excluded: its
/// absence must not withdraw anything.
pub fn exclusion(node: Option<&Node>) -> Option<Exclusion> {
    let node = node?;
    let labelled = node
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(EXCLUDE_LABEL));
    let cordoned = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if labelled {
        Some(Exclusion::Labelled)
    } else if cordoned {
        Some(Exclusion::Cordoned)
    } else {
        None
    }
}

/// What a node should have given its `exclusion`: an excluded one no VIPs (every route
/// withdrawn), but the same frontends, so connections that still arrive while the routers
/// converge are forwarded and drain.
pub fn exclude(desired: &Desired, exclusion: Option<Exclusion>) -> Cow<'_, Desired> {
    match exclusion {
        None => Cow::Borrowed(desired),
        Some(_) => Cow::Owned(Desired {
            addresses: Default::default(),
            ..desired.clone()
        }),
    }
}

/// The facts endpoints are checked against: the pod CIDRs (`pod_cidrs` when given, else the
/// Node's `spec.podCIDRs`) and the node's own addresses (the Node's `status.addresses` and
/// `host`, the addresses on the node's interfaces). Addresses inside `prefixes` are left out:
/// those are VIPs, refused as such, and they come and go with every announcement.
pub fn facts(
    node: Option<&Node>,
    pod_cidrs: &[IpNet],
    host: &[IpAddr],
    prefixes: &[IpNet],
) -> NodeFacts {
    let spec = node.and_then(|n| n.spec.as_ref());
    let pod_cidrs = match pod_cidrs.is_empty() {
        false => pod_cidrs.to_vec(),
        true => spec
            .and_then(|s| {
                s.pod_cidrs
                    .clone()
                    .or_else(|| s.pod_cidr.clone().map(|c| vec![c]))
            })
            .into_iter()
            .flatten()
            .filter_map(|c| c.parse::<IpNet>().ok())
            .map(|c| c.trunc())
            .collect(),
    };
    let listed = node
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|a| a.address.parse::<IpAddr>().ok());
    let own_addresses = listed
        .chain(host.iter().copied())
        .filter(|ip| !prefixes.iter().any(|p| p.contains(ip)))
        .collect();
    NodeFacts {
        pod_cidrs,
        own_addresses,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::core::model::{Endpoint, FrontendId, Proto};

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn exclusion_from_labels_and_cordon() {
        let cases = [
            (json!({"metadata": {"name": "n1"}}), None),
            (
                json!({"metadata": {"name": "n1", "labels": {"other": "x"}}, "spec": {"unschedulable": false}}),
                None,
            ),
            (
                json!({"metadata": {"name": "n1", "labels": {EXCLUDE_LABEL: ""}}}),
                Some(Exclusion::Labelled),
            ),
            (
                json!({"metadata": {"name": "n1", "labels": {EXCLUDE_LABEL: "false"}}}),
                Some(Exclusion::Labelled),
            ),
            (
                json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}}),
                Some(Exclusion::Cordoned),
            ),
            (
                json!({"metadata": {"name": "n1", "labels": {EXCLUDE_LABEL: "true"}}, "spec": {"unschedulable": true}}),
                Some(Exclusion::Labelled),
            ),
        ];
        for (n, want) in cases {
            assert_eq!(exclusion(Some(&node(n.clone()))), want, "{n}");
        }
        assert_eq!(exclusion(None), None, "an unseen Node withdraws nothing");
    }

    #[test]
    fn facts_from_the_node_and_the_host() {
        let n = node(json!({"metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:244:1::/64"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.100.1.2"},
                                     {"type": "Hostname", "address": "n1"}]}}));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let prefixes: Vec<IpNet> = vec!["198.51.100.0/24".parse().unwrap()];
        let host = [ip("10.244.1.1"), ip("198.51.100.7"), ip("127.0.0.1")];
        let f = facts(Some(&n), &[], &host, &prefixes);
        assert_eq!(
            f.pod_cidrs,
            [
                "10.244.1.0/24".parse::<IpNet>().unwrap(),
                "fd00:244:1::/64".parse().unwrap()
            ]
        );
        assert_eq!(
            f.own_addresses,
            [ip("10.100.1.2"), ip("10.244.1.1"), ip("127.0.0.1")].into(),
            "host and Node addresses, but no VIP"
        );
        // --pod-cidr wins over the Node's; a Node without podCIDRs gives none.
        let over: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(facts(Some(&n), &over, &[], &prefixes).pod_cidrs, over);
        let bare = node(json!({"metadata": {"name": "n1"}}));
        assert!(facts(Some(&bare), &[], &[], &prefixes).pod_cidrs.is_empty());
        assert_eq!(facts(None, &[], &[], &prefixes), NodeFacts::default());
    }

    #[test]
    fn excluded_node_keeps_frontends_and_drops_addresses() {
        let id = FrontendId {
            vip: "198.51.100.1".parse().unwrap(),
            port: 80,
            proto: Proto::Tcp,
        };
        let want = Desired {
            frontends: [(
                id,
                [Endpoint {
                    addr: "10.0.0.1".parse().unwrap(),
                    port: 8080,
                }]
                .into(),
            )]
            .into(),
            addresses: [id.vip].into(),
            refusals: vec![],
        };
        assert_eq!(*exclude(&want, None), want);
        let out = exclude(&want, Some(Exclusion::Cordoned));
        assert!(out.addresses.is_empty());
        assert_eq!(out.frontends, want.frontends);
    }
}
