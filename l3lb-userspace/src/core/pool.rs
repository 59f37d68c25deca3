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
}

impl Default for PoolSpec {
    fn default() -> Self {
        Self {
            addresses: Vec::new(),
            auto_assign: true,
            namespaces: None,
            service_selector: None,
        }
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
            namespaces: None,
            selector: None,
        }
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
        pools.push(Pool {
            name,
            cidrs,
            auto_assign: spec.auto_assign,
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
}
