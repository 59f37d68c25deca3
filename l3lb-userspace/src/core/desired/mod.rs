//! Desired state: which frontends and VIPs this node should serve. A pure function of the watched
//! Services and EndpointSlices and the [`Scope`]: the node's name and facts, the managed prefixes,
//! the class, the pools and the external IP policy.
use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use k8s_openapi::{
    api::{core::v1::Service, discovery::v1::EndpointSlice},
    jiff::Timestamp,
};

use crate::core::{
    class::ClassFilter,
    model::{Backends, Desired, FrontendId, ServiceKey},
    ownership::{Basis, Claimant, ExternalIps},
    pool::Pool,
};

pub mod cache;
pub mod explain;
mod local;
mod merged;
pub mod slices;
pub mod trust;

mod service;

use local::Local;
use merged::Merged;
pub use service::service_desired;
use slices::SliceIndex;
use trust::NodeFacts;
pub mod node;

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What desired state is computed against, besides the Services and EndpointSlices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// This node's name, as in EndpointSlice endpoints' `nodeName`.
    pub node: String,
    pub prefixes: Vec<IpNet>,
    pub class: ClassFilter,
    /// Which `spec.externalIPs` are served.
    pub external_ips: ExternalIps,
    /// The validated L3lbPools (which externalIPs a Service may have).
    pub pools: Vec<Pool>,
    pub facts: NodeFacts,
    /// Why the node is excluded from load balancing, if it is: it then wants no VIP.
    pub exclusion: Option<node::Exclusion>,
}

impl Scope {
    /// No pools, nothing known of the node, externalIPs only from pools.
    pub fn new(node: &str, prefixes: &[IpNet], class: &ClassFilter) -> Self {
        Self {
            node: node.to_owned(),
            prefixes: prefixes.to_vec(),
            class: class.clone(),
            external_ips: ExternalIps::default(),
            pools: Vec::new(),
            facts: NodeFacts::default(),
            exclusion: None,
        }
    }
}

/// Computes what this node should serve from scratch (the daemon keeps it up to date
/// incrementally with [`cache::DesiredCache`], which gives the same result).
///
/// The Services are the LoadBalancer Services the class owns. A Service's VIPs are
/// `status.loadBalancer.ingress[].ip` (what the allocator granted; a requested address counts
/// once it is there) and the `spec.externalIPs` the policy allows, kept when inside a prefix;
/// who serves a VIP that several Services name is [`crate::core::ownership`]'s rule. A VIP is wanted
/// when at least one of its frontends has a Ready endpoint on the node; a frontend whose
/// endpoints there are all terminating (not Ready, still serving) is kept for its pinned flows,
/// without its VIP. Endpoints the node must not trust ([`trust`]) are left out. An excluded node
/// ([`node::exclusion`]) wants no VIP at all, but keeps its frontends so flows drain.
pub fn desired(services: &[&Service], slices: &[&EndpointSlice], scope: &Scope) -> Desired {
    let mut index = SliceIndex::new(&scope.node);
    for slice in slices {
        index.apply(slice);
    }
    let parts: BTreeMap<ServiceKey, ServiceDesired> = services
        .iter()
        .filter(|s| scope.class.owns(s))
        .filter_map(|s| {
            let key = ServiceKey::of(s)?;
            let own: Vec<&[Local]> = index.endpoints_of(&key).collect();
            let part = service_desired(s, &own, scope);
            Some((key, part))
        })
        .collect();
    let mut merged = Merged::default();
    merged.update(&parts, parts.keys().map(|k| (k.clone(), None)).collect());
    node::exclude(merged.desired(), scope.exclusion).into_owned()
}

/// One Service's share of the desired state, before frontends that several Services claim are
/// resolved (`merged`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceDesired {
    /// Every frontend the Service names, in order, with its local backends (maybe none).
    claims: Vec<(FrontendId, Backends)>,
    refusals: Vec<String>,
    /// The key under which it shares its VIPs, if it opts in.
    sharing: Option<String>,
    created: Option<Timestamp>,
    /// Its VIPs granted by the allocator (in its status); the others are externalIPs.
    granted: Vec<IpAddr>,
    /// Local endpoint addresses left out as untrusted.
    pub endpoints_refused: usize,
}

impl ServiceDesired {
    /// This Service's claim on `vip`, for [`crate::core::ownership`].
    fn claimant<'a>(&'a self, key: &'a ServiceKey, vip: IpAddr) -> Claimant<'a> {
        Claimant {
            key,
            basis: match self.granted.contains(&vip) {
                true => Basis::Granted,
                false => Basis::External,
            },
            created: self.created,
            sharing: self.sharing.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod endpoint_tests;

#[cfg(test)]
mod ownership_tests;

#[cfg(test)]
mod explain_tests;
