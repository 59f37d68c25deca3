//! Address pools: the cluster-scoped `L3lbPool` custom resource (`l3lb.io/v1alpha1`, manifest in
//! deploy/base/crd.yaml) and its validated form. A CRD rather than a file: every daemon, and so every
//! leader in turn, sees the same pools, and an operator changes them with kubectl without
//! restarting anything.
use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::core::{ClusterResourceScope, Resource, Selector, SelectorExt as _};
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "l3lb.io";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "L3lbPool";
pub const PLURAL: &str = "l3lbpools";

/// One `L3lbPool` object.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct L3lbPool {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PoolSpec,
    /// Written by the allocator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PoolStatus>,
}

/// At most this many Services are named in a pool's status (the count is always whole).
pub const NAMED_SERVICES: usize = 50;

/// A pool's status, as the allocator last wrote it: what it hands out and who holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// Addresses the pool hands out (inside --prefix; not a CIDR's network or IPv4 broadcast
    /// address), at most `i64::MAX` (an IPv6 /64 has more).
    pub total: i64,
    pub used: i64,
    pub free: i64,
    /// How many Services hold addresses of the pool.
    pub service_count: i64,
    /// The first [`NAMED_SERVICES`] of them, as namespace/name.
    #[serde(default)]
    pub services: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpec {
    /// CIDRs, IPv4 or IPv6.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Allocate from this pool to Services that request no address; `false`: only requested
    /// addresses come from it.
    #[serde(default = "yes")]
    pub auto_assign: bool,
    /// Only Services in these namespaces; absent: any namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    /// Only Services whose labels match; absent: any Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<LabelSelector>,
    /// How the pool's addresses reach clients: BGP through FRR (the default) or L2 (the
    /// announcing node answers ARP/NDP for them itself).
    #[serde(default)]
    pub advertisement: Advertisement,
    /// L2 pools: the interfaces to answer ARP/NDP on; absent: the uplinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<String>>,
}

impl Default for PoolSpec {
    fn default() -> Self {
        Self {
            addresses: Vec::new(),
            auto_assign: true,
            namespaces: None,
            service_selector: None,
            advertisement: Advertisement::default(),
            interfaces: None,
        }
    }
}

/// How a pool's addresses are made reachable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Advertisement {
    /// Every node with a Ready local endpoint announces the address to its BGP router (anycast).
    #[default]
    Bgp,
    /// One node per address, agreed by every node from the same API state, answers ARP and
    /// Neighbour Solicitations for it on a flat network with no router.
    L2,
}

impl fmt::Display for Advertisement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bgp => "bgp",
            Self::L2 => "l2",
        })
    }
}

fn yes() -> bool {
    true
}

impl Resource for L3lbPool {
    type DynamicType = ();
    type Scope = ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A pool, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub cidrs: Vec<IpNet>,
    pub auto_assign: bool,
    pub advertisement: Advertisement,
    /// L2 pools: the interfaces named in the spec (empty: the uplinks).
    pub interfaces: Vec<String>,
    namespaces: Option<BTreeSet<String>>,
    selector: Option<Selector>,
}

/// Something wrong in a pool's spec; the rest of the pool still counts (a bad selector drops the
/// whole pool, so it cannot match more than intended).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PoolProblem {
    pub pool: String,
    pub reason: String,
}

impl fmt::Display for PoolProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L3lbPool {}: {}", self.pool, self.reason)
    }
}

impl Pool {
    /// A pool of `cidrs` for every Service (tests and simple set-ups).
    pub fn new(name: &str, cidrs: &[IpNet], auto_assign: bool) -> Self {
        Self {
            name: name.to_owned(),
            cidrs: cidrs.to_vec(),
            auto_assign,
            advertisement: Advertisement::Bgp,
            interfaces: Vec::new(),
            namespaces: None,
            selector: None,
        }
    }

    /// The same pool, announced in L2 mode on `interfaces` (empty: the uplinks).
    pub fn l2(mut self, interfaces: &[&str]) -> Self {
        self.advertisement = Advertisement::L2;
        self.interfaces = interfaces.iter().map(|i| (*i).to_owned()).collect();
        self
    }

    pub fn is_l2(&self) -> bool {
        self.advertisement == Advertisement::L2
    }

    /// Whether a Service in `namespace` with `labels` may have addresses from this pool.
    pub fn allows(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|n| n.contains(namespace))
            && self.selector.as_ref().is_none_or(|s| s.matches(labels))
    }

    pub fn contains(&self, ip: &std::net::IpAddr) -> bool {
        self.cidrs.iter().any(|c| c.contains(ip))
    }
}

/// Validates the pool objects, ordered by name (the order auto-assignment tries them in).
pub fn validate(objects: &[&L3lbPool]) -> (Vec<Pool>, Vec<PoolProblem>) {
    let mut pools = Vec::new();
    let mut problems = Vec::new();
    for obj in objects {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let problem = |reason: String| PoolProblem {
            pool: name.clone(),
            reason,
        };
        let spec = &obj.spec;
        let selector = match spec.service_selector.clone().map(Selector::try_from) {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                problems.push(problem(format!(
                    "serviceSelector is invalid ({e}); pool ignored"
                )));
                continue;
            }
        };
        let mut cidrs = Vec::new();
        for a in &spec.addresses {
            match a.trim().parse::<IpNet>() {
                Ok(net) if net.trunc() != net => problems.push(problem(format!(
                    "address {a} has host bits set (did you mean {}?); ignored",
                    net.trunc()
                ))),
                Ok(net) => cidrs.push(net),
                Err(_) => problems.push(problem(format!(
                    "address {a:?} is not a CIDR like 198.51.100.0/24 or 2001:db8::/120; ignored"
                ))),
            }
        }
        if cidrs.is_empty() {
            problems.push(problem("no usable addresses".to_owned()));
        }
        let interfaces = interfaces(spec, &mut |r| problems.push(problem(r)));
        pools.push(Pool {
            name,
            cidrs,
            auto_assign: spec.auto_assign,
            advertisement: spec.advertisement,
            interfaces,
            namespaces: spec
                .namespaces
                .as_ref()
                .map(|n| n.iter().cloned().collect()),
            selector,
        });
    }
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    problems.sort();
    (pools, problems)
}

/// The usable interface names of an L2 pool's spec; a name that cannot be an interface (empty,
/// over 15 bytes, with '/' or whitespace, "." or "..") is reported and left out.
fn interfaces(spec: &PoolSpec, problem: &mut dyn FnMut(String)) -> Vec<String> {
    let Some(names) = &spec.interfaces else {
        return Vec::new();
    };
    if spec.advertisement == Advertisement::Bgp {
        problem("interfaces applies to advertisement l2 only; ignored".to_owned());
        return Vec::new();
    }
    let mut out = Vec::new();
    for n in names {
        let valid = !n.is_empty()
            && n.len() <= 15
            && n != "."
            && n != ".."
            && !n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
        if !valid {
            problem(format!("interface {n:?} is not an interface name; ignored"));
        } else if !out.contains(n) {
            out.push(n.clone());
        }
    }
    if out.is_empty() {
        problem("no usable interfaces; answering on the uplinks".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pool(v: serde_json::Value) -> L3lbPool {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn validation_keeps_what_is_usable_and_says_what_is_not() {
        let good = pool(json!({"metadata": {"name": "b"}, "spec": {
            "addresses": ["198.51.100.0/24", "2001:db8:1::/120", "10.0.0.1/8", "nope"],
            "namespaces": ["web"], "serviceSelector": {"matchLabels": {"tier": "edge"}}}}));
        let bad_selector = pool(json!({"metadata": {"name": "a"}, "spec": {
            "addresses": ["203.0.113.0/24"],
            "serviceSelector": {"matchExpressions": [{"key": "x", "operator": "Bogus"}]}}}));
        let manual = pool(json!({"metadata": {"name": "c"}, "spec": {
            "addresses": ["192.0.2.0/28"], "autoAssign": false}}));
        let (pools, problems) = validate(&[&good, &bad_selector, &manual]);
        assert_eq!(
            pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert_eq!(
            pools[0].cidrs,
            [
                "198.51.100.0/24".parse::<IpNet>().unwrap(),
                "2001:db8:1::/120".parse().unwrap()
            ]
        );
        assert!(pools[0].auto_assign && !pools[1].auto_assign);
        let reasons: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(
            reasons[0].starts_with("L3lbPool a: serviceSelector is invalid"),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("10.0.0.1/8") && r.contains("10.0.0.0/8"))
        );
        assert!(reasons.iter().any(|r| r.contains("\"nope\"")));

        let labels = |l: &[(&str, &str)]| -> BTreeMap<String, String> {
            l.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let edge = labels(&[("tier", "edge")]);
        assert!(pools[0].allows("web", &edge));
        assert!(!pools[0].allows("other", &edge), "namespace not listed");
        assert!(!pools[0].allows("web", &labels(&[])), "labels do not match");
        assert!(pools[1].allows("anything", &labels(&[])));
    }

    #[test]
    fn advertisement_defaults_to_bgp_and_l2_names_its_interfaces() {
        let bgp = pool(json!({"metadata": {"name": "a"}, "spec": {"addresses": ["192.0.2.0/28"]}}));
        let l2 = pool(json!({"metadata": {"name": "b"}, "spec": {
            "addresses": ["192.0.2.16/28"], "advertisement": "l2",
            "interfaces": ["eth0", "eth0", "", "a/b", "much-too-long-name0", "bond0.100"]}}));
        let l2_uplinks = pool(json!({"metadata": {"name": "c"}, "spec": {
            "addresses": ["192.0.2.32/28"], "advertisement": "l2"}}));
        let bgp_with_interfaces = pool(json!({"metadata": {"name": "d"}, "spec": {
            "addresses": ["192.0.2.48/28"], "interfaces": ["eth0"]}}));
        let (pools, problems) = validate(&[&bgp, &l2, &l2_uplinks, &bgp_with_interfaces]);
        let got: Vec<(Advertisement, Vec<String>)> = pools
            .iter()
            .map(|p| (p.advertisement, p.interfaces.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (Advertisement::Bgp, vec![]),
                (Advertisement::L2, vec!["eth0".into(), "bond0.100".into()]),
                (Advertisement::L2, vec![]),
                (Advertisement::Bgp, vec![]),
            ]
        );
        assert!(!pools[0].is_l2() && pools[1].is_l2());
        let reasons: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            reasons,
            [
                "L3lbPool b: interface \"\" is not an interface name; ignored",
                "L3lbPool b: interface \"a/b\" is not an interface name; ignored",
                "L3lbPool b: interface \"much-too-long-name0\" is not an interface name; ignored",
                "L3lbPool d: interfaces applies to advertisement l2 only; ignored",
            ]
        );
        // An unknown advertisement does not decode (the CRD's enum refuses it at the API too).
        let bad: Result<L3lbPool, _> = serde_json::from_value(json!({"metadata": {"name": "e"},
            "spec": {"addresses": ["192.0.2.0/28"], "advertisement": "ospf"}}));
        assert!(bad.is_err());
    }
}
