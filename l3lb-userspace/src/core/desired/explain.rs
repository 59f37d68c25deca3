//! Why each address of a Service is or is not announced on this node, in the order the daemon
//! decides: the Service and its class, its addresses and where each comes from, the prefix and
//! the external IP policy, the ownership rule, its ports and local endpoints (and those refused),
//! then the node: excluded, an uplink not forwarding, the frontends in the maps, the address on
//! the interface, draining. Read from the same state the daemon acts on (the desired-state cache
//! and the node as observed), so it cannot disagree with what the daemon does. Pure.
use std::{collections::BTreeSet, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::cache::DesiredCache;
use crate::core::{
    model::{FrontendId, Observed, ServiceKey},
    ownership::Basis,
};

/// One check, in decision order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// What was checked: one of [`CHECKS`], or `l2` in place of `address` for an L2 pool's
    /// address (added by the daemon, which decides those: `daemon/l2.rs`).
    pub check: String,
    pub ok: bool,
    pub text: String,
}

/// One address of the Service, and whether this node announces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipExplanation {
    pub vip: IpAddr,
    pub announced: bool,
    pub lines: Vec<Line>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub service: String,
    pub node: String,
    /// Service-wide checks; the first failing one ends the explanation.
    pub lines: Vec<Line>,
    pub vips: Vec<VipExplanation>,
}

/// The node side of the decision.
pub struct NodeView<'a> {
    /// The node as the executor last recorded it (maps, addresses, uplinks not forwarding).
    pub observed: &'a Observed,
    /// Frontends kept in the maps only for their in-flight flows.
    pub draining: &'a BTreeSet<FrontendId>,
}

fn line(check: &str, ok: bool, text: impl Into<String>) -> Line {
    Line {
        check: check.to_owned(),
        ok,
        text: text.into(),
    }
}

impl DesiredCache {
    /// Explains Service `key` on this node, as of the last [`DesiredCache::desired`].
    pub fn explain(&self, key: &ServiceKey, node: &NodeView) -> Explanation {
        let scope = self.scope();
        let mut out = Explanation {
            service: key.to_string(),
            node: scope.node.clone(),
            lines: Vec::new(),
            vips: Vec::new(),
        };
        let Some(svc) = self.service(key) else {
            out.lines.push(line(
                "service",
                false,
                "no such Service in the daemon's view (deleted, or not listed yet)",
            ));
            return out;
        };
        let spec = svc.spec.as_ref();
        let type_ = spec.and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP");
        if type_ != "LoadBalancer" {
            out.lines.push(line(
                "service",
                false,
                format!("type {type_}: l3lb serves LoadBalancer Services only"),
            ));
            return out;
        }
        out.lines.push(line("service", true, "type LoadBalancer"));
        let class = spec.and_then(|s| s.load_balancer_class.as_deref());
        if !scope.class.owns(svc) {
            let why = match class {
                Some(c) => format!(
                    "loadBalancerClass {c:?} is another implementation's (this l3lb serves {:?})",
                    scope.class.class
                ),
                None => {
                    "no loadBalancerClass, and this l3lb runs with --default-load-balancer false"
                        .to_owned()
                }
            };
            out.lines.push(line("class", false, why));
            return out;
        }
        out.lines.push(line(
            "class",
            true,
            match class {
                Some(c) => format!("loadBalancerClass {c:?}"),
                None => "no loadBalancerClass: l3lb is the default".to_owned(),
            },
        ));
        let Some(part) = self.part(key) else {
            out.lines.push(line("service", false, "not computed yet"));
            return out;
        };
        let vips: BTreeSet<IpAddr> = part.claims.iter().map(|(id, _)| id.vip).collect();
        for refusal in self.desired_refusals(key) {
            out.lines.push(line("refused", false, refusal));
        }
        if vips.is_empty() {
            out.lines.push(line(
                "addresses",
                false,
                "no address to serve: status.loadBalancer.ingress is empty (the allocator grants \
                 one; see the Service's AllocationFailed Events) and no externalIP is served",
            ));
            return out;
        }
        for vip in vips {
            out.vips.push(self.explain_vip(key, part, vip, node));
        }
        out
    }

    fn explain_vip(
        &self,
        key: &ServiceKey,
        part: &super::ServiceDesired,
        vip: IpAddr,
        node: &NodeView,
    ) -> VipExplanation {
        let scope = self.scope();
        let mut lines = Vec::new();
        let basis = part.claimant(key, vip).basis;
        lines.push(line(
            "addresses",
            true,
            match basis {
                Basis::Granted => "granted by the allocator (status.loadBalancer.ingress)",
                Basis::External => "spec.externalIPs, allowed by --external-ips and the pools",
            },
        ));
        let denied = self.merged().vip_denied(self.parts(), vip, key);
        if let Some(owner) = denied {
            // Nothing else about this node matters for this Service's claim.
            lines.push(line(
                "owner",
                false,
                format!(
                    "belongs to Service {owner} (a grant beats externalIPs, then the older \
                     Service; sharing needs one namespace and one sharing key): never served \
                     for this one"
                ),
            ));
            return VipExplanation {
                vip,
                announced: false,
                lines,
            };
        }
        lines.push(line("owner", true, "this Service may serve it"));
        let mut forwards = true;
        let mut any_ready = false;
        for (id, backends) in part.claims.iter().filter(|(id, _)| id.vip == vip) {
            let server = self.merged().server(self.parts(), id);
            if server != Some(key) {
                let other = server.map_or("another Service".to_owned(), |s| s.to_string());
                lines.push(line(
                    "frontend",
                    false,
                    format!("{id} is already served for {other}"),
                ));
                continue;
            }
            let (ready, terminating) = (backends.ready.len(), backends.terminating.len());
            any_ready |= ready > 0;
            lines.push(line(
                "endpoints",
                ready > 0,
                format!(
                    "{id}: {ready} Ready and {terminating} terminating endpoints on node {}",
                    scope.node
                ),
            ));
            if !backends.is_empty() {
                let programmed = node.observed.frontends.get(id) == Some(backends);
                forwards &= programmed || backends.ready.is_empty();
                lines.push(line(
                    "maps",
                    programmed,
                    match programmed {
                        true => format!("{id} is in the maps with these endpoints"),
                        false => format!("{id} is not (yet) in the maps as wanted"),
                    },
                ));
            }
            if node.draining.contains(id) {
                lines.push(line(
                    "draining",
                    false,
                    format!("{id} stays in the maps only while its in-flight flows drain"),
                ));
            }
        }
        if !any_ready {
            lines.push(line(
                "endpoints",
                false,
                "no Ready endpoint on this node: other nodes announce it",
            ));
        }
        if let Some(why) = scope.exclusion {
            lines.push(line("excluded", false, format!("withdrawn: {why}")));
        }
        let not_forwarding = &node.observed.not_forwarding;
        if !not_forwarding.is_empty() {
            let list: Vec<String> = not_forwarding
                .iter()
                .map(|(u, why)| format!("{u}: {why}"))
                .collect();
            lines.push(line(
                "uplinks",
                false,
                format!(
                    "withdrawn: an uplink does not forward ({})",
                    list.join("; ")
                ),
            ));
        }
        let wanted = any_ready && scope.exclusion.is_none() && not_forwarding.is_empty();
        let on_interface = node.observed.addresses.contains(&vip);
        lines.push(line(
            "address",
            on_interface == wanted,
            match (on_interface, wanted) {
                (true, true) => "on the interface: FRR advertises it".to_owned(),
                (false, false) => "not on the interface".to_owned(),
                (true, false) => "still on the interface; the next pass withdraws it".to_owned(),
                (false, true) => "not on the interface yet; the next pass adds it".to_owned(),
            },
        ));
        VipExplanation {
            vip,
            announced: on_interface && wanted && forwards,
            lines,
        }
    }

    /// The refusals the last computation holds for `key`.
    fn desired_refusals(&self, key: &ServiceKey) -> Vec<String> {
        self.merged()
            .desired()
            .refusals
            .iter()
            .filter(|r| r.service == *key)
            .map(|r| r.reason.clone())
            .collect()
    }
}

/// Every check an explanation can hold, in decision order.
pub const CHECKS: [&str; 12] = [
    "service",
    "class",
    "refused",
    "addresses",
    "owner",
    "frontend",
    "endpoints",
    "maps",
    "draining",
    "excluded",
    "uplinks",
    "address",
];
