//! The plan: ordered steps that turn observed state into desired state. Pure: no I/O, no clock
//! (the caller passes `now`), so every ordering rule is unit-tested.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use ipnet::IpNet;

use crate::core::model::{Backends, DatapathSettings, Desired, FrontendId, Frontends, Observed};

impl Observed {
    /// What the node looks like once `steps` all succeeded: the executor's record between
    /// observations.
    pub fn record(&mut self, steps: &[Step]) {
        for step in steps {
            match step {
                Step::UpsertFrontend { id, endpoints, .. } => {
                    self.frontends.insert(*id, endpoints.clone());
                }
                Step::AddAddress(ip) => {
                    self.addresses.insert(*ip);
                }
                Step::RemoveAddress(ip) => {
                    self.addresses.remove(ip);
                }
                Step::RenewAddress(_) => {}
                Step::RemoveFrontend(id) => {
                    self.frontends.remove(id);
                }
                Step::Configure(settings) => self.settings = settings.clone(),
            }
        }
    }
}

/// One change to the node. Steps are applied in the order the plan lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Replace a frontend's whole backend set in one map update.
    UpsertFrontend {
        id: FrontendId,
        endpoints: Backends,
        /// Not in the maps at all (new, or lost): while it fails to program, its VIP does not
        /// forward and must not stay advertised. (A failed update leaves the old set serving.)
        missing: bool,
    },
    /// Put a VIP on the interface (the routing daemon then advertises it).
    AddAddress(IpAddr),
    /// Take a VIP off the interface (route withdrawn).
    RemoveAddress(IpAddr),
    /// Re-add a VIP that is already there, resetting its kernel lifetime.
    RenewAddress(IpAddr),
    /// Delete a frontend from the maps, once its drain time is over.
    RemoveFrontend(FrontendId),
    /// Set the datapath's prefixes and redirect targets (first, before any frontend).
    Configure(DatapathSettings),
}

impl Step {
    /// Stable snake_case name of the step's kind, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::UpsertFrontend { .. } => "upsert_frontend",
            Step::AddAddress(_) => "add_address",
            Step::RemoveAddress(_) => "remove_address",
            Step::RenewAddress(_) => "renew_address",
            Step::RemoveFrontend(_) => "remove_frontend",
            Step::Configure(_) => "configure_datapath",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Frontends no longer wanted but kept in the maps so in-flight flows drain, with the time
    /// they were first seen unwanted. Feed back into the next call.
    pub draining: BTreeMap<FrontendId, Instant>,
}

/// Orders changes so a VIP is only advertised once it forwards and withdrawn before it stops:
/// frontends are programmed first, then addresses added; addresses are removed first, and
/// frontends only after `drain` has passed (since they left the desired state, or since all
/// their endpoints were terminating). While an uplink does not forward
/// (`observed.not_forwarding`), no address is wanted: every VIP is withdrawn, frontends stay.
/// Only addresses inside `prefixes` are ever touched.
pub fn plan(
    desired: &Desired,
    observed: &Observed,
    prefixes: &[IpNet],
    draining: &BTreeMap<FrontendId, Instant>,
    now: Instant,
    drain: Duration,
) -> Plan {
    let managed = |ip: &IpAddr| prefixes.iter().any(|p| p.contains(ip));
    let mut out = Plan::default();

    let forwarding = observed.not_forwarding.is_empty();
    let wanted = |ip: &IpAddr| forwarding && desired.addresses.contains(ip);
    // A frontend whose endpoints are all terminating serves its pinned flows (its VIP is not
    // wanted, so the route goes first) until `drain` has passed, then it goes like any other.
    let mut drained = BTreeSet::new();
    for (id, endpoints) in &desired.frontends {
        if !endpoints.ready.is_empty() {
            continue;
        }
        let since = draining.get(id).copied().unwrap_or(now);
        if now.saturating_duration_since(since) >= drain {
            drained.insert(*id);
        }
        // Kept (past its deadline once drained), so the frontend is not programmed again while
        // its endpoints stay terminating.
        out.draining.insert(*id, since);
    }
    for (id, endpoints) in &desired.frontends {
        if drained.contains(id) {
            continue;
        }
        let current = observed.frontends.get(id);
        if current != Some(endpoints) {
            out.steps.push(Step::UpsertFrontend {
                id: *id,
                endpoints: endpoints.clone(),
                missing: current.is_none(),
            });
        }
    }
    for ip in desired
        .addresses
        .iter()
        .filter(|ip| managed(ip) && wanted(ip))
    {
        if !observed.addresses.contains(ip) {
            out.steps.push(Step::AddAddress(*ip));
        }
    }
    for ip in observed.addresses.iter().filter(|ip| managed(ip)) {
        if !wanted(ip) {
            out.steps.push(Step::RemoveAddress(*ip));
        }
    }
    for id in observed.frontends.keys() {
        if drained.contains(id) {
            out.steps.push(Step::RemoveFrontend(*id));
            continue;
        }
        if desired.frontends.contains_key(id) {
            continue;
        }
        let since = draining.get(id).copied().unwrap_or(now);
        if now.saturating_duration_since(since) >= drain {
            out.steps.push(Step::RemoveFrontend(*id));
        } else {
            out.draining.insert(*id, since);
        }
    }
    out
}

/// Which VIPs' desired state may differ from the node's since the last plan: every one, or
/// those named (what [`crate::core::desired::cache::DesiredCache`] recomputed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    All,
    Vips(BTreeSet<IpAddr>),
}

/// [`plan`] for a node whose frontends and addresses match `desired` for every VIP but those
/// in `vips`: the same plan, found by looking at those VIPs and the draining frontends' only,
/// so a change of one Service costs the same among 10 VIPs as among 50,000.
pub fn plan_vips(
    desired: &Desired,
    observed: &Observed,
    vips: &BTreeSet<IpAddr>,
    prefixes: &[IpNet],
    draining: &BTreeMap<FrontendId, Instant>,
    now: Instant,
    drain: Duration,
) -> Plan {
    // A draining frontend leaves on its own time: its VIP is looked at on every pass.
    let scope: BTreeSet<IpAddr> = vips
        .iter()
        .copied()
        .chain(draining.keys().map(|id| id.vip))
        .collect();
    let frontends = |all: &Frontends| -> Frontends {
        scope
            .iter()
            .flat_map(|vip| all.range(FrontendId::vip_range(*vip)))
            .map(|(id, b)| (*id, b.clone()))
            .collect()
    };
    let addresses = |all: &BTreeSet<IpAddr>| -> BTreeSet<IpAddr> {
        scope
            .iter()
            .filter(|vip| all.contains(vip))
            .copied()
            .collect()
    };
    let desired = Desired {
        frontends: frontends(&desired.frontends),
        addresses: addresses(&desired.addresses),
        refusals: Vec::new(),
    };
    let observed = Observed {
        frontends: frontends(&observed.frontends),
        addresses: addresses(&observed.addresses),
        not_forwarding: observed.not_forwarding.clone(),
        settings: DatapathSettings::default(),
    };
    plan(&desired, &observed, prefixes, draining, now, drain)
}

/// The step that gives the datapath the `wanted` settings, unless it has them: the first of a
/// pass, so XDP knows the VIP prefixes and where it may redirect before any frontend changes.
pub fn configure(wanted: &DatapathSettings, observed: &Observed) -> Option<Step> {
    (observed.settings != *wanted).then(|| Step::Configure(wanted.clone()))
}

/// Renewals of the lifetime of every wanted VIP that is already on the interface (the ones [`plan`]
/// adds get a fresh lifetime anyway). Only addresses inside `prefixes` are touched; none while an
/// uplink does not forward.
pub fn renewals(desired: &Desired, observed: &Observed, prefixes: &[IpNet]) -> Vec<Step> {
    if !observed.not_forwarding.is_empty() {
        return Vec::new();
    }
    desired
        .addresses
        .intersection(&observed.addresses)
        .filter(|ip| prefixes.iter().any(|p| p.contains(*ip)))
        .map(|ip| Step::RenewAddress(*ip))
        .collect()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod drain_tests;
