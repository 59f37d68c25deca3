//! [`merge`] kept up to date: when some Services' shares change, only the VIPs they name (had or
//! have), the frontends of those VIPs and the refusals of every Service naming them are looked at
//! again. The result equals [`merge`] over all shares.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::{ServiceDesired, may_share, not_shared};
use crate::model::{Desired, FrontendId, Refusal, ServiceKey};

#[cfg(doc)]
use super::merge;

#[derive(Default)]
pub struct Merged {
    /// Services naming each frontend, in Service order.
    claimants: BTreeMap<FrontendId, Claimants>,
    /// Services naming each VIP; the first has it, the others share it or are refused.
    vip_claimants: BTreeMap<IpAddr, Claimants>,
    refusals_of: BTreeMap<ServiceKey, Vec<Refusal>>,
    desired: Desired,
}

/// Services in Service order. Nearly always one, so a sorted Vec sized to fit: a BTreeSet
/// allocates a node of about half a kilobyte even for one key (5 MB at 10,000 frontends).
#[derive(Default)]
struct Claimants(Vec<ServiceKey>);

impl Claimants {
    fn insert(&mut self, key: &ServiceKey) {
        if let Err(at) = self.0.binary_search(key) {
            self.0.reserve_exact(1);
            self.0.insert(at, key.clone());
        }
    }

    fn remove(&mut self, key: &ServiceKey) {
        if let Ok(at) = self.0.binary_search(key) {
            self.0.remove(at);
        }
    }

    fn first(&self) -> Option<&ServiceKey> {
        self.0.first()
    }

    fn iter(&self) -> std::slice::Iter<'_, ServiceKey> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a Claimants {
    type Item = &'a ServiceKey;
    type IntoIter = std::slice::Iter<'a, ServiceKey>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Adds or removes `key` as a claimant of `at`.
fn claim<K: Ord + Copy>(map: &mut BTreeMap<K, Claimants>, at: K, key: &ServiceKey, on: bool) {
    if on {
        map.entry(at).or_default().insert(key);
    } else if let Some(c) = map.get_mut(&at) {
        c.remove(key);
        if c.0.is_empty() {
            map.remove(&at);
        }
    }
}

impl Merged {
    pub fn desired(&self) -> &Desired {
        &self.desired
    }

    /// The Services serving a frontend of `vip` (those it is wanted for).
    pub fn services_of(&self, vip: IpAddr) -> BTreeSet<ServiceKey> {
        self.desired
            .frontends
            .range(vip_range(vip))
            .filter_map(|(id, _)| self.claimants.get(id)?.first().cloned())
            .collect()
    }

    /// `parts` are all current shares; `changed` the Services whose share changed, with their
    /// previous share (if they had one).
    pub fn update(
        &mut self,
        parts: &BTreeMap<ServiceKey, ServiceDesired>,
        changed: Vec<(ServiceKey, Option<ServiceDesired>)>,
    ) {
        let mut vips = BTreeSet::new();
        let mut refusers = BTreeSet::new();
        for (key, old) in changed {
            for (id, _) in old.iter().flat_map(|o| &o.claims) {
                vips.insert(id.vip);
                claim(&mut self.claimants, *id, &key, false);
                claim(&mut self.vip_claimants, id.vip, &key, false);
            }
            for (id, _) in parts.get(&key).iter().flat_map(|p| &p.claims) {
                vips.insert(id.vip);
                claim(&mut self.claimants, *id, &key, true);
                claim(&mut self.vip_claimants, id.vip, &key, true);
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
            refusers.extend(self.vip_claimants.get(&vip).into_iter().flatten().cloned());
        }
        for key in refusers {
            match parts.get(&key) {
                Some(part) => {
                    let refusals = self.refusals(parts, &key, part);
                    self.refusals_of.insert(key, refusals);
                }
                None => {
                    self.refusals_of.remove(&key);
                }
            }
        }
        let mut all: Vec<Refusal> = self.refusals_of.values().flatten().cloned().collect();
        all.sort();
        all.dedup();
        self.desired.refusals = all;
    }

    /// The Service that has `vip`, if `key` may not share it.
    fn vip_denied<'s>(
        &'s self,
        parts: &BTreeMap<ServiceKey, ServiceDesired>,
        vip: IpAddr,
        key: &ServiceKey,
    ) -> Option<&'s ServiceKey> {
        let first = self.vip_claimants.get(&vip)?.first()?;
        let first_sharing = parts.get(first).and_then(|p| p.sharing.as_deref());
        let part = parts.get(key)?;
        (!may_share(first, first_sharing, key, part)).then_some(first)
    }

    /// The Service serving frontend `id`: its first claimant that may use the VIP.
    fn server<'s>(
        &'s self,
        parts: &BTreeMap<ServiceKey, ServiceDesired>,
        id: &FrontendId,
    ) -> Option<&'s ServiceKey> {
        self.claimants
            .get(id)?
            .iter()
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
            if let Some(first) = self.vip_denied(parts, id.vip, key) {
                out.push(refuse(not_shared(id.vip, first)));
                continue;
            }
            if let Some(winner) = self.server(parts, id).filter(|w| *w != key) {
                out.push(refuse(format!(
                    "{id} is already served for Service {winner}"
                )));
            }
        }
        out
    }
}

fn vip_range(vip: IpAddr) -> std::ops::RangeInclusive<FrontendId> {
    FrontendId::vip_range(vip)
}
