//! Who owns an address: one rule, used by the allocator when it keeps or grants addresses and by
//! every node when it decides which Service's frontends a VIP serves, so they never disagree.
//!
//! An address granted by the allocator (in a Service's `status.loadBalancer.ingress`) belongs to
//! that Service until the allocator releases it: a claim that is not a grant (`spec.externalIPs`)
//! never takes it. Between claims of the same basis the older Service wins, a Service without a
//! creation time last, ties by namespace/name. Other claimants serve the address only when they
//! may share it with the owner: same namespace and the same sharing key (an annotation written in
//! another namespace must not pull a tenant's address onto nodes it does not run on). Texts about
//! a contest name the owner only to Services of its own namespace. Pure.
use std::fmt;

use k8s_openapi::jiff::Timestamp;

use crate::core::model::ServiceKey;

/// What a claim on an address rests on; grants first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Basis {
    /// In the Service's `status.loadBalancer.ingress`: written by the allocator.
    Granted,
    /// In the Service's `spec.externalIPs`: written by whoever may edit the Service.
    External,
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Basis::Granted => "status.loadBalancer.ingress",
            Basis::External => "spec.externalIPs",
        })
    }
}

/// One Service's claim on one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claimant<'a> {
    pub key: &'a ServiceKey,
    pub basis: Basis,
    pub created: Option<Timestamp>,
    /// The Service's sharing key, if it opts in to sharing.
    pub sharing: Option<&'a str>,
}

/// The order claims are ranked in: the least ranks first and owns.
pub type Rank<'a> = (Basis, bool, Option<Timestamp>, &'a ServiceKey);

impl<'a> Claimant<'a> {
    pub fn rank(&self) -> Rank<'a> {
        rank(self.basis, self.created, self.key)
    }
}

/// The rank of a claim of `basis` by Service `key`, created at `created`.
pub fn rank(basis: Basis, created: Option<Timestamp>, key: &ServiceKey) -> Rank<'_> {
    (basis, created.is_none(), created, key)
}

/// The owner of an address among its claimants, if any.
pub fn owner_of<'c, 'a>(
    claimants: impl IntoIterator<Item = &'c Claimant<'a>>,
) -> Option<&'c Claimant<'a>>
where
    'a: 'c,
{
    claimants.into_iter().min_by(|a, b| a.rank().cmp(&b.rank()))
}

/// Whether `other` may serve an address `owner` owns, beside it.
pub fn may_share(owner: &Claimant, other: &Claimant) -> bool {
    owner.key == other.key
        || (owner.key.namespace == other.key.namespace
            && owner.sharing.is_some()
            && owner.sharing == other.sharing)
}

/// How a text shown to `viewer` (an Event on it) names Service `other`: by name within its own
/// namespace, never across namespaces (tenants must not learn each other's Services).
pub fn named_for(other: &ServiceKey, viewer: &ServiceKey) -> String {
    if other.namespace == viewer.namespace {
        format!("Service {other}")
    } else {
        "a Service in another namespace".to_owned()
    }
}

/// Which `spec.externalIPs` l3lb serves (`--external-ips`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ExternalIps {
    /// Only addresses inside an L3lbPool that allows the Service (its namespaces and
    /// serviceSelector): the pool's owner decides who may announce what.
    #[default]
    Pool,
    /// Any address inside --prefix, from any Service (trusts everyone who can edit a Service).
    Prefix,
    /// None at all.
    None,
}

impl fmt::Display for ExternalIps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExternalIps::Pool => "pool",
            ExternalIps::Prefix => "prefix",
            ExternalIps::None => "none",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> ServiceKey {
        ServiceKey {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn at(secs: i64) -> Option<Timestamp> {
        Some(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn a_grant_beats_any_external_claim_then_age_then_name() {
        let (web, intruder, older, same_age) = (
            key("default", "web"),
            key("evil", "x"),
            key("b", "older"),
            key("a", "same-age"),
        );
        let grant = Claimant {
            key: &web,
            basis: Basis::Granted,
            created: at(2_000),
            sharing: None,
        };
        // Older, and first by name: still no match for a grant.
        let external = Claimant {
            key: &intruder,
            basis: Basis::External,
            created: at(1_000),
            sharing: None,
        };
        assert_eq!(owner_of([&external, &grant]).map(|c| c.key), Some(&web));
        assert_eq!(owner_of([&grant, &external]).map(|c| c.key), Some(&web));

        // Between external claims: the older wins, a Service without a creation time last, ties
        // by namespace/name.
        let ext = |key, created| Claimant {
            key,
            basis: Basis::External,
            created,
            sharing: None,
        };
        let (a, b, c, d) = (
            ext(&older, at(10)),
            ext(&intruder, at(20)),
            ext(&same_age, at(20)),
            ext(&web, None),
        );
        assert_eq!(owner_of([&b, &d, &a, &c]).map(|c| c.key), Some(&older));
        assert_eq!(owner_of([&b, &d, &c]).map(|c| c.key), Some(&same_age));
        assert_eq!(owner_of([&d, &b]).map(|c| c.key), Some(&intruder));
        assert_eq!(owner_of(std::iter::empty::<&Claimant>()), None);
    }

    #[test]
    fn sharing_needs_one_namespace_and_one_key() {
        let (dns_tcp, dns_udp, other_ns) =
            (key("dns", "tcp"), key("dns", "udp"), key("tenant", "udp"));
        let claim = |key, sharing| Claimant {
            key,
            basis: Basis::Granted,
            created: at(1),
            sharing,
        };
        let owner = claim(&dns_tcp, Some("dns"));
        assert!(may_share(&owner, &claim(&dns_udp, Some("dns"))));
        assert!(may_share(&owner, &claim(&dns_tcp, None)), "itself");
        assert!(!may_share(&owner, &claim(&dns_udp, Some("other"))));
        assert!(!may_share(&owner, &claim(&dns_udp, None)));
        assert!(
            !may_share(&owner, &claim(&other_ns, Some("dns"))),
            "the same key from another namespace"
        );
        assert!(!may_share(&claim(&dns_tcp, None), &claim(&dns_udp, None)));
    }

    #[test]
    fn other_tenants_are_not_named() {
        let viewer = key("team-a", "api");
        assert_eq!(
            named_for(&key("team-a", "web"), &viewer),
            "Service team-a/web"
        );
        assert_eq!(
            named_for(&key("team-b", "web"), &viewer),
            "a Service in another namespace"
        );
    }
}
