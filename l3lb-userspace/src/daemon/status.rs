//! What the daemon serves now, as `l3lb status` shows it: per VIP its Services, frontends and
//! local endpoints, whether it is wanted and on the interface, and the node-level state (uplinks,
//! exclusion, allocator). Built from the state the loop acts on; the CLI adds what the kernel
//! says (address lifetimes, per-frontend counters).
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde::{Deserialize, Serialize};

use crate::core::{
    desired::cache::DesiredCache,
    model::{Desired, FrontendId, Observed},
};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub node: String,
    /// Where the VIPs go.
    pub interface: String,
    pub uplinks: Vec<UplinkState>,
    /// Why the node announces nothing, if it is excluded.
    pub excluded: Option<String>,
    /// `None`: this daemon does not run the allocator; else whether it leads.
    pub allocator_leader: Option<bool>,
    pub vips: Vec<VipState>,
    /// (Service, reason) of what this node refuses.
    pub refusals: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkState {
    pub name: String,
    pub forwarding: bool,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipState {
    pub vip: IpAddr,
    /// The node should announce it.
    pub wanted: bool,
    /// On the interface, as the daemon last applied or observed it.
    pub on_interface: bool,
    pub services: Vec<String>,
    pub frontends: Vec<FrontendState>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontendState {
    pub port: u16,
    pub proto: String,
    pub ready: usize,
    pub terminating: usize,
    /// In the maps with the wanted endpoints.
    pub programmed: bool,
    /// Kept only while its in-flight flows drain.
    pub draining: bool,
}

/// The node-level facts the snapshot needs from the loop.
pub struct NodeState<'a> {
    pub node: &'a str,
    pub interface: &'a str,
    pub uplinks: &'a [String],
    pub observed: &'a Observed,
    pub draining: &'a BTreeSet<FrontendId>,
    pub allocator_leader: Option<bool>,
}

/// The snapshot of `desired` (as the cache last computed it) on the node as observed.
pub fn snapshot(cache: &DesiredCache, desired: &Desired, node: &NodeState) -> Snapshot {
    let observed = node.observed;
    let mut vips: BTreeSet<IpAddr> = desired.frontends.keys().map(|id| id.vip).collect();
    vips.extend(observed.frontends.keys().map(|id| id.vip));
    vips.extend(&observed.addresses);
    let mut frontends: BTreeMap<FrontendId, FrontendState> = BTreeMap::new();
    for (id, backends) in desired.frontends.iter().chain(&observed.frontends) {
        frontends.entry(*id).or_insert_with(|| FrontendState {
            port: id.port,
            proto: id.proto.to_string(),
            ready: desired.frontends.get(id).map_or(0, |b| b.ready.len()),
            terminating: desired.frontends.get(id).map_or(0, |b| b.terminating.len()),
            programmed: observed.frontends.get(id) == Some(backends)
                && desired.frontends.get(id) == Some(backends),
            draining: node.draining.contains(id),
        });
    }
    Snapshot {
        node: node.node.to_owned(),
        interface: node.interface.to_owned(),
        uplinks: node
            .uplinks
            .iter()
            .map(|u| UplinkState {
                name: u.clone(),
                forwarding: !observed.not_forwarding.contains_key(u),
                reason: observed.not_forwarding.get(u).cloned(),
            })
            .collect(),
        excluded: cache.scope().exclusion.map(|e| e.to_string()),
        allocator_leader: node.allocator_leader,
        vips: vips
            .into_iter()
            .map(|vip| VipState {
                vip,
                wanted: desired.addresses.contains(&vip) && observed.not_forwarding.is_empty(),
                on_interface: observed.addresses.contains(&vip),
                services: cache
                    .services_of(vip)
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                frontends: frontends
                    .range(FrontendId::vip_range(vip))
                    .map(|(_, f)| f.clone())
                    .collect(),
            })
            .collect(),
        refusals: desired
            .refusals
            .iter()
            .map(|r| (r.service.to_string(), r.reason.clone()))
            .collect(),
    }
}
