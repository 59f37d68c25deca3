//! Address allocation: which addresses each of l3lb's Services gets, a pure function of the
//! Services and the pools. The leader writes the result to `status.loadBalancer.ingress`, which is
//! also the record the next run (or the next leader) starts from: an address a Service holds
//! there stays with it while it is still valid, so restarts and leader changes move nothing.
//!
//! A run goes through the Services oldest first, twice. First every Service keeps the addresses
//! of its status that are still valid (right family, requested if it requests any, inside a pool
//! that allows it, and its own by [`crate::core::ownership`]'s rule: no `spec.externalIPs` takes a
//! grant). Then each Service missing an address gets the one it requests, or one from the first
//! matching pool with auto-assign; a Service that cannot get every address it needs gets none and
//! a refusal. Addresses held by Services of another class, and every `spec.externalIPs` of any
//! Service, are never handed to anyone else.
use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;

use crate::core::{
    annotations::L2_ADDRESS_COUNT,
    class::ClassFilter,
    model::{Refusal, ServiceKey},
    ownership::Basis,
};

mod checks;
mod claim;
mod left_alone;
mod space;
pub mod status;
pub mod usage;

use checks::Keep;
pub use checks::no_pool;
use claim::Claim;
pub use left_alone::{LeftAlone, left_alone};
use space::{Cursors, Family};

pub use crate::core::pool::Pool;

/// The addresses every Service of l3lb's should have, and the Services refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Every Service l3lb handles, with its addresses in `spec.ipFamilies` order (none when
    /// refused); also, with none, each Service no longer of type LoadBalancer whose status still
    /// lists addresses of the pools.
    pub assigned: BTreeMap<ServiceKey, Vec<IpAddr>>,
    pub refusals: Vec<Refusal>,
}

/// Indices into the claims of the Services holding each address, with what each holds it by.
type Holders = BTreeMap<IpAddr, Vec<(usize, Basis)>>;

struct Run<'a> {
    claims: Vec<Claim<'a>>,
    pools: &'a [Pool],
    prefixes: &'a [IpNet],
    holders: Holders,
    cursors: Cursors,
}

/// Allocates addresses for the LoadBalancer Services `class` owns, from `pools` clipped to
/// `prefixes`.
pub fn allocate(
    services: &[&Service],
    pools: &[Pool],
    prefixes: &[IpNet],
    class: &ClassFilter,
) -> Allocation {
    let is_lb =
        |s: &&&Service| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let mut claims: Vec<Claim> = services
        .iter()
        .filter(is_lb)
        .filter_map(|s| Claim::new(s, class.owns(s)))
        .collect();
    // Other Services count only for their externalIPs (kube-proxy serves those of any type).
    let load_balancers = claims.len();
    claims.extend(
        services
            .iter()
            .filter(|s| !is_lb(s))
            .filter_map(|s| Claim::new(s, false))
            .filter(|c| !c.external.is_empty()),
    );
    let mut run = Run {
        claims,
        pools,
        prefixes,
        holders: Holders::new(),
        cursors: Cursors::default(),
    };
    let mut order: Vec<usize> = (0..run.claims.len())
        .filter(|i| run.claims[*i].ours)
        .collect();
    order.sort_by(|a, b| run.claims[*a].order().cmp(&run.claims[*b].order()));
    for (i, c) in run.claims.iter().enumerate() {
        for ip in &c.external {
            run.holders
                .entry(*ip)
                .or_default()
                .push((i, Basis::External));
        }
        // Another implementation's grants stay its own.
        if !c.ours && i < load_balancers {
            for ip in &c.current {
                run.holders
                    .entry(*ip)
                    .or_default()
                    .push((i, Basis::Granted));
            }
        }
    }
    let kept: Vec<(usize, Vec<IpAddr>)> = order.iter().map(|&i| (i, run.keep(i))).collect();
    let mut out = Allocation::default();
    for (i, kept) in kept {
        let (addresses, reasons) = run.fill(i, kept);
        let key = run.claims[i].key.clone();
        out.refusals
            .extend(reasons.into_iter().map(|reason| Refusal {
                service: key.clone(),
                reason,
            }));
        out.assigned.insert(key, addresses);
    }
    // A Service that stopped being a LoadBalancer keeps no address of l3lb's pools on record.
    for s in services.iter().filter(|s| !is_lb(s)) {
        if let Some(c) = Claim::new(s, false)
            && !c.current.is_empty()
            && c.current
                .iter()
                .all(|ip| pools.iter().any(|p| p.contains(ip)))
        {
            out.assigned.insert(c.key, Vec::new());
        }
    }
    out.refusals.sort();
    out
}

impl Run<'_> {
    fn take(&mut self, ip: IpAddr, i: usize) {
        self.holders
            .entry(ip)
            .or_default()
            .push((i, Basis::Granted));
    }

    /// The addresses of `i`'s status it keeps (at most one per family), taken for it.
    fn keep(&mut self, i: usize) -> Vec<IpAddr> {
        let mut kept: Vec<IpAddr> = Vec::new();
        for ip in self.claims[i].current.clone() {
            let c = &self.claims[i];
            let family = Family::of(&ip);
            let requested_ok = match &c.requested {
                Ok(Some((_, ips))) => ips.iter().any(|r| r.as_ref() == Ok(&ip)),
                Ok(None) => true,
                Err(_) => false,
            };
            let valid = c.wants(family)
                && kept.iter().filter(|k| Family::of(k) == family).count() < c.per_family()
                && requested_ok
                && self.in_pool(i, ip, "").is_ok()
                && self.compatible(i, ip, Keep::Granted).is_ok();
            if valid {
                self.take(ip, i);
                kept.push(ip);
            }
        }
        kept
    }

    /// Completes `i`'s addresses; on any failure of a required one, releases them all.
    fn fill(&mut self, i: usize, mut got: Vec<IpAddr>) -> (Vec<IpAddr>, Vec<String>) {
        let mut reasons = Vec::new();
        let per_family = self.claims[i].per_family();
        match (
            self.claims[i].requested.clone(),
            self.claims[i].l2_count.clone(),
        ) {
            (_, Err(bad_count)) => reasons.push(bad_count),
            (Err(conflict), _) => reasons.push(conflict),
            (Ok(Some((source, _))), Ok(Some(n))) if n > 1 => reasons.push(format!(
                "annotation {L2_ADDRESS_COUNT} asks for {n} addresses, but {source} requests \
                 specific ones; use one or the other"
            )),
            (Ok(Some((source, ips))), _) => {
                self.fill_requested(i, &source, ips, &mut got, &mut reasons)
            }
            (Ok(None), _) => {
                for (family, required) in self.claims[i].families.clone() {
                    while got.iter().filter(|g| Family::of(g) == family).count() < per_family {
                        match self.auto(i, family) {
                            Ok(ip) => {
                                self.take(ip, i);
                                got.push(ip);
                            }
                            Err(reason) => {
                                if required {
                                    reasons.push(reason);
                                }
                                break;
                            }
                        }
                    }
                }
            }
        }
        if !reasons.is_empty() {
            for ip in &got {
                if let Some(h) = self.holders.get_mut(ip) {
                    h.retain(|(h, _)| *h != i);
                }
                self.cursors.rewind(*ip);
            }
            return (Vec::new(), reasons);
        }
        let c = &self.claims[i];
        got.sort_by_key(|ip| c.families.iter().position(|(f, _)| *f == Family::of(ip)));
        (got, reasons)
    }

    fn fill_requested(
        &mut self,
        i: usize,
        source: &str,
        ips: Vec<Result<IpAddr, String>>,
        got: &mut Vec<IpAddr>,
        reasons: &mut Vec<String>,
    ) {
        let mut named: Vec<Family> = Vec::new();
        for ip in ips {
            let ip = match ip {
                Ok(ip) => ip,
                Err(e) => {
                    reasons.push(e);
                    continue;
                }
            };
            let c = &self.claims[i];
            let family = Family::of(&ip);
            if !c.wants(family) {
                reasons.push(format!(
                    "{source} {ip} is {family}, but the Service's IP families are {}",
                    c.family_names()
                ));
                continue;
            }
            if named.contains(&family) {
                reasons.push(format!("{source} names more than one {family} address"));
                continue;
            }
            named.push(family);
            if got.contains(&ip) {
                continue;
            }
            match self
                .in_pool(i, ip, source)
                .and_then(|()| self.compatible(i, ip, Keep::New))
            {
                Ok(()) => {
                    self.take(ip, i);
                    got.push(ip);
                }
                Err(reason) => reasons.push(reason),
            }
        }
        let c = &self.claims[i];
        // A family is only missing when every address given was understood.
        let understood = reasons.is_empty();
        for (family, required) in &c.families {
            if understood && *required && !named.contains(family) {
                reasons.push(format!(
                    "the Service requires an {family} address (IP families {}), but {source} names none",
                    c.family_names()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
