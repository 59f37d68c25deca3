//! The checks behind each allocation decision, and the refusal texts: may a Service have an
//! address as far as pools and prefixes go, next to its current holders, and which address
//! auto-assignment picks.
use std::net::IpAddr;

use ipnet::IpNet;

use super::{
    Pool, Run,
    space::{Family, clip},
};
use crate::core::{
    annotations::{ALLOW_SHARED_IP, L2_ADDRESS_COUNT},
    ownership::{Basis, may_share, named_for, owner_of},
};

/// Whether an address is kept as a Service's grant or granted anew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Keep {
    Granted,
    New,
}

impl Run<'_> {
    /// Whether `ip` may be `i`'s as far as pools and prefixes go.
    pub(super) fn in_pool(&self, i: usize, ip: IpAddr, source: &str) -> Result<(), String> {
        let c = &self.claims[i];
        let what = if source.is_empty() {
            ip.to_string()
        } else {
            format!("{source} {ip}")
        };
        let containing: Vec<&Pool> = self.pools.iter().filter(|p| p.contains(&ip)).collect();
        if containing.is_empty() {
            return Err(format!(
                "{what} is outside every address pool ({})",
                self.pool_list()
            ));
        }
        if !containing
            .iter()
            .any(|p| p.allows(&c.key.namespace, c.labels))
        {
            return Err(format!(
                "{what} is in pool {}, which does not allow this Service (namespaces or serviceSelector)",
                names(&containing)
            ));
        }
        if c.l2_only()
            && !containing
                .iter()
                .any(|p| p.is_l2() && p.allows(&c.key.namespace, c.labels))
        {
            return Err(format!(
                "{what} is in pool {}, which is not an L2 pool (advertisement: l2), but the \
                 Service carries the annotation {L2_ADDRESS_COUNT}",
                names(&containing)
            ));
        }
        if !self.prefixes.iter().any(|p| p.contains(&ip)) {
            return Err(format!(
                "{what} is in pool {} but outside every --prefix ({})",
                names(&containing),
                list(self.prefixes)
            ));
        }
        Ok(())
    }

    /// Whether `i` may hold `ip` next to its current holders: as the grant it already has
    /// (`Keep::Granted`), which no externalIPs claim takes, or as a new one (`Keep::New`), which
    /// an address claimed in any Service's externalIPs never is.
    pub(super) fn compatible(&self, i: usize, ip: IpAddr, keep: Keep) -> Result<(), String> {
        let c = &self.claims[i];
        let me = c.claimant(Basis::Granted);
        for &(h, basis) in self.holders.get(&ip).into_iter().flatten() {
            let other = &self.claims[h];
            if h == i {
                continue;
            }
            if basis == Basis::External && keep == Keep::New {
                return Err(format!(
                    "{ip} is in the spec.externalIPs of {}; l3lb never allocates an address \
                     claimed there",
                    named_for(&other.key, &c.key)
                ));
            }
            let held = other.claimant(basis);
            // A grant kept is contested by the rule; a new one never takes what is held.
            let owner = match keep {
                Keep::Granted => owner_of([&held, &me]).unwrap_or(&held),
                Keep::New => &held,
            };
            if owner.key == me.key {
                continue;
            }
            if !other.ours {
                return Err(format!(
                    "{ip} is taken by {}, which l3lb does not handle",
                    named_for(&other.key, &c.key)
                ));
            }
            if !may_share(owner, &me) {
                return Err(format!(
                    "{ip} is taken by {}; Services of one namespace share an address only when \
                     both carry the annotation {ALLOW_SHARED_IP} with the same value",
                    named_for(&other.key, &c.key)
                ));
            }
            if let Some((port, proto)) = c.ports.intersection(&other.ports).next() {
                return Err(format!(
                    "{ip} is shared with {} (key {:?}), which already uses port {port}/{proto}",
                    named_for(&other.key, &c.key),
                    c.sharing.unwrap_or_default()
                ));
            }
        }
        Ok(())
    }

    /// An address of `family` for `i` from the pools that auto-assign to it: one it can share
    /// with Services of its sharing key, else the lowest free one.
    pub(super) fn auto(&mut self, i: usize, family: Family) -> Result<IpAddr, String> {
        let c = &self.claims[i];
        let allowing: Vec<&Pool> = self
            .pools
            .iter()
            .filter(|p| p.allows(&c.key.namespace, c.labels))
            .collect();
        // l3lb.io/l2-address-count: from L2 pools only.
        let allowing_all = allowing.len();
        let allowing: Vec<&Pool> = allowing
            .into_iter()
            .filter(|p| !c.l2_only() || p.is_l2())
            .collect();
        let auto: Vec<&Pool> = allowing.iter().copied().filter(|p| p.auto_assign).collect();
        let of_family: Vec<&Pool> = auto
            .iter()
            .copied()
            .filter(|p| p.cidrs.iter().any(|n| Family::of_net(n) == family))
            .collect();
        let cidrs: Vec<IpNet> = of_family
            .iter()
            .flat_map(|p| &p.cidrs)
            .filter(|n| Family::of_net(n) == family)
            .flat_map(|n| clip(n, self.prefixes))
            .collect();
        if cidrs.is_empty() {
            let why = if self.pools.is_empty() {
                no_pool(self.prefixes)
            } else if allowing.is_empty() && allowing_all > 0 {
                format!(
                    "the Service carries the annotation {L2_ADDRESS_COUNT}, but no L2 pool \
                     (advertisement: l2) allows it ({})",
                    self.pool_list()
                )
            } else if allowing.is_empty() {
                format!("no pool allows this Service ({})", self.pool_list())
            } else if auto.is_empty() {
                format!(
                    "pool {} allows this Service but has autoAssign off; request an address",
                    names(&allowing)
                )
            } else if of_family.is_empty() {
                format!("no pool with autoAssign for this Service has {family} addresses")
            } else {
                format!(
                    "the {family} addresses of pool {} are outside every --prefix ({})",
                    names(&of_family),
                    list(self.prefixes)
                )
            };
            return Err(format!("cannot allocate an {family} address: {why}"));
        }
        if c.sharing.is_some() {
            let shareable = self.holders.iter().find(|(ip, hs)| {
                !hs.is_empty()
                    // Not one it holds already (a Service with several addresses).
                    && !hs.iter().any(|(h, _)| *h == i)
                    && cidrs.iter().any(|n| n.contains(*ip))
                    && self.compatible(i, **ip, Keep::New).is_ok()
            });
            if let Some((ip, _)) = shareable {
                return Ok(*ip);
            }
        }
        for net in &cidrs {
            if let Some(ip) = self.cursors.first_free(net, &self.holders) {
                return Ok(ip);
            }
        }
        Err(format!(
            "cannot allocate an {family} address: pool {} is exhausted",
            names(&of_family)
        ))
    }

    fn pool_list(&self) -> String {
        if self.pools.is_empty() {
            return no_pool(self.prefixes);
        }
        let pools: Vec<String> = self
            .pools
            .iter()
            .map(|p| format!("{}: {}", p.name, list(&p.cidrs)))
            .collect();
        pools.join("; ")
    }
}

/// What to do when no pool exists: create one, with an example over the prefixes.
pub fn no_pool(prefixes: &[IpNet]) -> String {
    let addresses: Vec<String> = prefixes.iter().map(ToString::to_string).collect();
    format!(
        "no L3lbPool exists; create one, e.g. kubectl apply -f- <<<'{{apiVersion: l3lb.io/v1alpha1, \
         kind: L3lbPool, metadata: {{name: default}}, spec: {{addresses: [{}]}}}}'",
        addresses.join(", ")
    )
}

fn names(pools: &[&Pool]) -> String {
    let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    names.join(", ")
}

fn list(nets: &[IpNet]) -> String {
    let nets: Vec<String> = nets.iter().map(ToString::to_string).collect();
    nets.join(", ")
}
