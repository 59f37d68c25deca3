//! What allocation needs to know of one LoadBalancer Service, read once: its IP families, ports,
//! sharing key, requested and current addresses, and its age (older Services keep contested
//! addresses).
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use k8s_openapi::{api::core::v1::Service, jiff::Timestamp};

use super::space::Family;
use crate::core::{
    annotations::{Requested, l2_address_count, requested, sharing_key},
    model::ServiceKey,
    ownership::{Basis, Claimant, Rank, rank},
};

/// A requested address, parsed.
pub type RequestedIp = Result<IpAddr, String>;

#[derive(Clone, Debug)]
pub struct Claim<'a> {
    pub key: ServiceKey,
    /// Handled by l3lb; the others' addresses are only kept clear of.
    pub ours: bool,
    pub labels: &'a BTreeMap<String, String>,
    /// Families wanted, in `spec.ipFamilies` order, with whether each is required.
    pub families: Vec<(Family, bool)>,
    pub sharing: Option<&'a str>,
    /// (port, protocol) of every Service port.
    pub ports: BTreeSet<(i32, &'a str)>,
    /// `status.loadBalancer.ingress` IPs: the record of what was allocated.
    pub current: Vec<IpAddr>,
    /// `spec.externalIPs`: not allocated, but nobody else may have them.
    pub external: Vec<IpAddr>,
    /// Where the request came from and its addresses; `Err`: the Service's requests disagree.
    pub requested: Result<Option<(String, Vec<RequestedIp>)>, String>,
    /// `l3lb.io/l2-address-count`: how many addresses per family, all from L2 pools; `None`: one,
    /// from any pool; `Err`: the annotation is invalid.
    pub l2_count: Result<Option<usize>, String>,
    created: Option<Timestamp>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl<'a> Claim<'a> {
    pub fn new(svc: &'a Service, ours: bool) -> Option<Self> {
        let key = ServiceKey::of(svc)?;
        let spec = svc.spec.as_ref();
        let parse_all = |ips: Option<&'a Vec<String>>| -> Vec<IpAddr> {
            ips.into_iter()
                .flatten()
                .filter_map(|ip| ip.parse().ok())
                .collect()
        };
        let current = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_ref()?.parse().ok())
            .collect();
        let requested = requested(svc).map(|r| {
            r.map(|Requested { source, addresses }| {
                let ips = addresses
                    .into_iter()
                    .map(|a| {
                        a.parse()
                            .map_err(|_| format!("{source}: {a:?} is not an IP address"))
                    })
                    .collect();
                (source, ips)
            })
        });
        Some(Self {
            key,
            ours,
            labels: svc.metadata.labels.as_ref().unwrap_or(&NO_LABELS),
            families: families(svc),
            sharing: sharing_key(svc),
            ports: spec
                .and_then(|s| s.ports.as_ref())
                .into_iter()
                .flatten()
                .map(|p| (p.port, p.protocol.as_deref().unwrap_or("TCP")))
                .collect(),
            current,
            external: parse_all(spec.and_then(|s| s.external_ips.as_ref())),
            requested,
            l2_count: l2_address_count(svc),
            created: svc.metadata.creation_timestamp.as_ref().map(|t| t.0),
        })
    }

    /// Priority order: the rank of a grant (older Services first, one without a creation time
    /// last, then by namespace/name), as [`crate::core::ownership`] ranks them.
    pub fn order(&self) -> Rank<'_> {
        rank(Basis::Granted, self.created, &self.key)
    }

    /// This Service's claim on an address, on `basis`.
    pub fn claimant(&self, basis: Basis) -> Claimant<'_> {
        Claimant {
            key: &self.key,
            basis,
            created: self.created,
            sharing: self.sharing,
        }
    }

    /// How many addresses of each family the Service holds.
    pub fn per_family(&self) -> usize {
        match self.l2_count {
            Ok(Some(n)) => n,
            _ => 1,
        }
    }

    /// Whether its addresses must come from L2 pools.
    pub fn l2_only(&self) -> bool {
        matches!(self.l2_count, Ok(Some(_)))
    }

    pub fn wants(&self, family: Family) -> bool {
        self.families.iter().any(|(f, _)| *f == family)
    }

    pub fn family_names(&self) -> String {
        let names: Vec<String> = self.families.iter().map(|(f, _)| f.to_string()).collect();
        names.join(", ")
    }
}

/// `spec.ipFamilies` (IPv4 when unset) as `spec.ipFamilyPolicy` weighs them: SingleStack wants
/// the first, PreferDualStack requires the first and takes the others when it can,
/// RequireDualStack requires all.
fn families(svc: &Service) -> Vec<(Family, bool)> {
    let spec = svc.spec.as_ref();
    let mut fams: Vec<Family> = Vec::new();
    for f in spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| Family::parse(f))
    {
        if !fams.contains(&f) {
            fams.push(f);
        }
    }
    if fams.is_empty() {
        fams.push(Family::V4);
    }
    match spec.and_then(|s| s.ip_family_policy.as_deref()) {
        Some("RequireDualStack") => fams.into_iter().map(|f| (f, true)).collect(),
        Some("PreferDualStack") => fams
            .into_iter()
            .enumerate()
            .map(|(i, f)| (f, i == 0))
            .collect(),
        _ => vec![(fams[0], true)],
    }
}
