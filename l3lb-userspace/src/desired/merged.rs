//! [`merge`] kept up to date: when some Services' shares change, only the frontends they claim
//! (had or have), the VIPs of those frontends and the refusals of every Service claiming them are
//! looked at again. The result equals [`merge`] over all shares.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::ServiceDesired;
use crate::model::{Desired, FrontendId, Proto, Refusal, ServiceKey};

#[cfg(doc)]
use super::merge;

#[derive(Default)]
pub struct Merged {
    /// Services naming each frontend; the first in order serves it.
    claimants: BTreeMap<FrontendId, BTreeSet<ServiceKey>>,
    refusals_of: BTreeMap<ServiceKey, Vec<Refusal>>,
    desired: Desired,
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
        let mut ids = BTreeSet::new();
        let mut refusers = BTreeSet::new();
        for (key, old) in changed {
            for (id, _) in old.iter().flat_map(|o| &o.claims) {
                ids.insert(*id);
                if let Some(c) = self.claimants.get_mut(id) {
                    c.remove(&key);
                    if c.is_empty() {
                        self.claimants.remove(id);
                    }
                }
            }
            for (id, _) in parts.get(&key).iter().flat_map(|p| &p.claims) {
                ids.insert(*id);
                self.claimants.entry(*id).or_default().insert(key.clone());
            }
            refusers.insert(key);
        }
        let mut vips = BTreeSet::new();
        for id in &ids {
            vips.insert(id.vip);
            let claimants = self.claimants.get(id);
            let backends = claimants
                .and_then(BTreeSet::first)
                .and_then(|winner| parts.get(winner))
                .and_then(|p| p.claims.iter().find(|(i, _)| i == id))
                .map(|(_, b)| b)
                .filter(|b| !b.is_empty());
            match backends {
                Some(b) => self.desired.frontends.insert(*id, b.clone()),
                None => self.desired.frontends.remove(id),
            };
            refusers.extend(claimants.into_iter().flatten().cloned());
        }
        for vip in vips {
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
        }
        for key in refusers {
            match parts.get(&key) {
                Some(part) => {
                    let refusals = self.refusals(&key, part);
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

    fn refusals(&self, key: &ServiceKey, part: &ServiceDesired) -> Vec<Refusal> {
        let refuse = |reason: String| Refusal {
            service: key.clone(),
            reason,
        };
        let mut out: Vec<Refusal> = part.refusals.iter().cloned().map(refuse).collect();
        for (id, _) in &part.claims {
            let winner = self.claimants.get(id).and_then(BTreeSet::first);
            if let Some(winner) = winner.filter(|w| *w != key) {
                out.push(refuse(format!(
                    "{id} is already served for Service {winner}"
                )));
            }
        }
        out
    }
}

/// Every frontend of `vip`.
fn vip_range(vip: IpAddr) -> std::ops::RangeInclusive<FrontendId> {
    let at = |port, proto| FrontendId { vip, port, proto };
    at(0, Proto::Tcp)..=at(u16::MAX, Proto::Udp)
}
