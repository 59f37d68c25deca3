//! Frontends that several Services claim, resolved by [`crate::core::ownership`]'s rule and kept up to
//! date: when some Services' shares change, only the VIPs they name (had or have), the frontends
//! of those VIPs and the refusals of every Service naming them are looked at again. Feeding every
//! share at once gives the from-scratch result ([`super::desired`]).
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use k8s_openapi::jiff::Timestamp;

use super::ServiceDesired;
use crate::core::{
    annotations::ALLOW_SHARED_IP,
    model::{Desired, FrontendId, Refusal, ServiceKey},
    ownership::{Basis, Claimant, may_share, named_for, owner_of},
};

#[derive(Default)]
pub struct Merged {
    /// Services naming each frontend, in rank order.
    claimants: BTreeMap<FrontendId, Claimants>,
    /// Services naming each VIP, in rank order; the owner has it, the others share it or are
    /// refused.
    vip_claimants: BTreeMap<IpAddr, Claimants>,
    /// The refusals of each Service that has some.
    refusals_of: BTreeMap<ServiceKey, Vec<Refusal>>,
    desired: Desired,
}

/// A Service's claim as ranked by [`crate::core::ownership::rank`] (fields in that order).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ranked {
    basis: Basis,
    undated: bool,
    created: Option<Timestamp>,
    key: ServiceKey,
}

impl Ranked {
    fn new(key: &ServiceKey, part: &ServiceDesired, vip: IpAddr) -> Self {
        let c = part.claimant(key, vip);
        let (basis, undated, created, _) = c.rank();
        Self {
            basis,
            undated,
            created,
            key: key.clone(),
        }
    }
}

/// Claims in rank order. Nearly always one, so a sorted Vec sized to fit: a BTreeSet allocates
/// a node of about half a kilobyte even for one key (5 MB at 10,000 frontends).
#[derive(Default)]
struct Claimants(Vec<Ranked>);

impl Claimants {
    fn insert(&mut self, claim: Ranked) {
        if let Err(at) = self.0.binary_search(&claim) {
            self.0.reserve_exact(1);
            self.0.insert(at, claim);
        }
    }

    fn remove(&mut self, key: &ServiceKey) {
        self.0.retain(|c| c.key != *key);
    }

    fn keys(&self) -> impl Iterator<Item = &ServiceKey> {
        self.0.iter().map(|c| &c.key)
    }
}

/// Adds or removes `key`'s claim on `at` (on VIP `vip`).
fn claim<K: Ord + Copy>(
    map: &mut BTreeMap<K, Claimants>,
    at: K,
    vip: IpAddr,
    key: &ServiceKey,
    part: Option<&ServiceDesired>,
) {
    match part {
        Some(part) => map
            .entry(at)
            .or_default()
            .insert(Ranked::new(key, part, vip)),
        None => {
            if let Some(c) = map.get_mut(&at) {
                c.remove(key);
                if c.0.is_empty() {
                    map.remove(&at);
                }
            }
        }
    }
}

/// The refusal of a Service that may not use `vip`, which `owner` has.
fn not_shared(vip: IpAddr, owner: &ServiceKey, key: &ServiceKey) -> String {
    let owner = named_for(owner, key);
    format!(
        "{vip} belongs to {owner}; Services of one namespace share a VIP only when both carry the \
         annotation {ALLOW_SHARED_IP} with the same value"
    )
}

impl Merged {
    pub fn desired(&self) -> &Desired {
        &self.desired
    }

    /// The Services serving a frontend of `vip` (those it is wanted for).
    pub fn services_of(
        &self,
        parts: &BTreeMap<ServiceKey, ServiceDesired>,
        vip: IpAddr,
    ) -> BTreeSet<ServiceKey> {
        self.desired
            .frontends
            .range(vip_range(vip))
            .filter_map(|(id, _)| self.server(parts, id).cloned())
            .collect()
    }

    /// `parts` are all current shares; `changed` the Services whose share changed, with their
    /// previous share (if they had one). Returns the VIPs it looked at again: the only ones
    /// whose frontends or address may have changed.
    pub fn update(
        &mut self,
        parts: &BTreeMap<ServiceKey, ServiceDesired>,
        changed: Vec<(ServiceKey, Option<ServiceDesired>)>,
    ) -> BTreeSet<IpAddr> {
        let mut vips = BTreeSet::new();
        let mut refusers = BTreeSet::new();
        for (key, old) in changed {
            for (id, _) in old.iter().flat_map(|o| &o.claims) {
                vips.insert(id.vip);
                claim(&mut self.claimants, *id, id.vip, &key, None);
                claim(&mut self.vip_claimants, id.vip, id.vip, &key, None);
            }
            let part = parts.get(&key);
            for (id, _) in part.iter().flat_map(|p| &p.claims) {
                vips.insert(id.vip);
                claim(&mut self.claimants, *id, id.vip, &key, part);
                claim(&mut self.vip_claimants, id.vip, id.vip, &key, part);
            }
            refusers.insert(key);
        }
        for &vip in &vips {
            // Every frontend of the VIP: who may serve it can change with who shares the VIP.
            let stale: Vec<FrontendId> = self
                .desired
                .frontends
                .range(vip_range(vip))
                .map(|(id, _)| *id)
                .collect();
            let named: Vec<FrontendId> = self
                .claimants
                .range(vip_range(vip))
                .map(|(id, _)| *id)
                .collect();
            for id in stale.into_iter().chain(named) {
                let backends = self
                    .server(parts, &id)
                    .and_then(|winner| parts.get(winner))
                    .and_then(|p| p.claims.iter().find(|(i, _)| *i == id))
                    .map(|(_, b)| b)
                    .filter(|b| !b.is_empty());
                match backends {
                    Some(b) => self.desired.frontends.insert(id, b.clone()),
                    None => self.desired.frontends.remove(&id),
                };
            }
            if self
                .desired
                .frontends
                .range(vip_range(vip))
                .any(|(_, b)| !b.ready.is_empty())
            {
                self.desired.addresses.insert(vip);
            } else {
                self.desired.addresses.remove(&vip);
            }
            refusers.extend(
                self.vip_claimants
                    .get(&vip)
                    .into_iter()
                    .flat_map(Claimants::keys)
                    .cloned(),
            );
        }
        let mut refusals_changed = false;
        for key in refusers {
            let now = match parts.get(&key) {
                Some(part) => self.refusals(parts, &key, part),
                None => Vec::new(),
            };
            if self
                .refusals_of
                .get(&key)
                .map_or(now.is_empty(), |had| *had == now)
            {
                continue;
            }
            refusals_changed = true;
            match now.is_empty() {
                true => self.refusals_of.remove(&key),
                false => self.refusals_of.insert(key, now),
            };
        }
        // Only Services with refusals are kept: the list is rebuilt from those, when one
        // changed.
        if refusals_changed {
            let mut all: Vec<Refusal> = self.refusals_of.values().flatten().cloned().collect();
            all.sort();
            all.dedup();
            self.desired.refusals = all;
        }
        vips
    }

    /// The owner of `vip` among the Services naming it, if `key` may not share it.
    pub(super) fn vip_denied<'s>(
        &'s self,
        parts: &'s BTreeMap<ServiceKey, ServiceDesired>,
        vip: IpAddr,
        key: &ServiceKey,
    ) -> Option<&'s ServiceKey> {
        let claimants: Vec<Claimant<'s>> = self
            .vip_claimants
            .get(&vip)?
            .keys()
            .filter_map(|k| Some(parts.get(k)?.claimant(k, vip)))
            .collect();
        let owner = owner_of(&claimants)?;
        let me = parts.get(key)?.claimant(key, vip);
        (!may_share(owner, &me)).then_some(owner.key)
    }

    /// The Service serving frontend `id`: its first claimant (in rank order) that may use the
    /// VIP.
    pub(super) fn server<'s>(
        &'s self,
        parts: &'s BTreeMap<ServiceKey, ServiceDesired>,
        id: &FrontendId,
    ) -> Option<&'s ServiceKey> {
        self.claimants
            .get(id)?
            .keys()
            .find(|k| self.vip_denied(parts, id.vip, k).is_none())
    }

    fn refusals(
        &self,
        parts: &BTreeMap<ServiceKey, ServiceDesired>,
        key: &ServiceKey,
        part: &ServiceDesired,
    ) -> Vec<Refusal> {
        let refuse = |reason: String| Refusal {
            service: key.clone(),
            reason,
        };
        let mut out: Vec<Refusal> = part.refusals.iter().cloned().map(refuse).collect();
        for (id, _) in &part.claims {
            if let Some(owner) = self.vip_denied(parts, id.vip, key) {
                out.push(refuse(not_shared(id.vip, owner, key)));
                continue;
            }
            if let Some(winner) = self.server(parts, id).filter(|w| *w != key) {
                out.push(refuse(format!(
                    "{id} is already served for {}",
                    named_for(winner, key)
                )));
            }
        }
        out
    }
}

fn vip_range(vip: IpAddr) -> std::ops::RangeInclusive<FrontendId> {
    FrontendId::vip_range(vip)
}
