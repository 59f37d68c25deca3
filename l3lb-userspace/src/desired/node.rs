//! Whether this node takes part in load balancing at all, from its own Node object. Pure.
use std::fmt;

use k8s_openapi::api::core::v1::Node;

use crate::model::Desired;

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

/// What an excluded node should have: no VIPs (every route withdrawn), but the same frontends, so
/// connections that still arrive while the routers converge are forwarded and drain.
pub fn exclude(mut desired: Desired, exclusion: Option<Exclusion>) -> Desired {
    if exclusion.is_some() {
        desired.addresses.clear();
    }
    desired
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{Endpoint, FrontendId, Proto};

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
        assert_eq!(exclude(want.clone(), None), want);
        let out = exclude(want.clone(), Some(Exclusion::Cordoned));
        assert!(out.addresses.is_empty());
        assert_eq!(out.frontends, want.frontends);
    }
}
