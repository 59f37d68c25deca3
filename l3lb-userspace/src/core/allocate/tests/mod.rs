//! Allocation tables (fixtures here, themes in the submodules): requested and auto-assigned
//! addresses.
use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

use super::{Pool, allocate};
use crate::core::{
    class::ClassFilter,
    model::ServiceKey,
    pool::{L3lbPool, validate},
};

/// A LoadBalancer Service under construction; `age` orders creation (lower is older).
#[derive(Clone)]
struct S {
    ns: &'static str,
    name: &'static str,
    age: u32,
    spec: Value,
    annotations: Value,
    labels: Value,
    status: Vec<&'static str>,
}

fn svc(name: &'static str, age: u32) -> S {
    S {
        ns: "default",
        name,
        age,
        spec: json!({"type": "LoadBalancer", "loadBalancerClass": "l3lb.io/l3lb",
                     "ports": [{"port": 80, "protocol": "TCP"}]}),
        annotations: json!({}),
        labels: json!({}),
        status: vec![],
    }
}

impl S {
    fn set(mut self, field: &str, v: Value) -> Self {
        self.spec[field] = v;
        self
    }
    fn lb_ip(self, ip: &str) -> Self {
        self.set("loadBalancerIP", json!(ip))
    }
    fn ann(mut self, k: &str, v: &str) -> Self {
        self.annotations[k] = json!(v);
        self
    }
    fn share(self, key: &str) -> Self {
        self.ann("l3lb.io/allow-shared-ip", key)
    }
    fn port(self, port: u16, proto: &str) -> Self {
        self.set("ports", json!([{"port": port, "protocol": proto}]))
    }
    fn status(mut self, ips: &[&'static str]) -> Self {
        self.status = ips.to_vec();
        self
    }
    fn families(self, fams: &[&str], policy: &str) -> Self {
        self.set("ipFamilies", json!(fams))
            .set("ipFamilyPolicy", json!(policy))
    }
    fn ns(mut self, ns: &'static str) -> Self {
        self.ns = ns;
        self
    }
    fn label(mut self, k: &str, v: &str) -> Self {
        self.labels[k] = json!(v);
        self
    }
    fn build(&self) -> Service {
        let ingress: Vec<Value> = self.status.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"namespace": self.ns, "name": self.name,
                         "creationTimestamp": format!("2024-01-01T00:{:02}:00Z", self.age),
                         "annotations": self.annotations, "labels": self.labels},
            "spec": self.spec,
            "status": {"loadBalancer": {"ingress": ingress}},
        }))
        .unwrap()
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn pool(name: &str, cidrs: &[&str]) -> Pool {
    Pool::new(
        name,
        &cidrs.iter().map(|c| net(c)).collect::<Vec<_>>(),
        true,
    )
}

fn pool_obj(v: Value) -> Pool {
    let obj: L3lbPool = serde_json::from_value(v).unwrap();
    let (mut pools, problems) = validate(&[&obj]);
    assert!(problems.is_empty(), "{problems:?}");
    pools.remove(0)
}

fn prefixes() -> Vec<IpNet> {
    vec![net("198.51.100.0/24"), net("2001:db8:100::/120")]
}

struct Case {
    what: &'static str,
    pools: Vec<Pool>,
    services: Vec<S>,
    class: ClassFilter,
    /// Every Service l3lb handles, with its addresses (refused ones with none).
    want: &'static [(&'static str, &'static [&'static str])],
    /// Refused Services, each with a part of its reason.
    refused: &'static [(&'static str, &'static str)],
}

fn case(what: &'static str, services: Vec<S>) -> Case {
    Case {
        what,
        pools: vec![pool("lab", &["198.51.100.0/24", "2001:db8:100::/120"])],
        services,
        class: ClassFilter::default(),
        want: &[],
        refused: &[],
    }
}

impl Case {
    fn want(mut self, want: &'static [(&'static str, &'static [&'static str])]) -> Self {
        self.want = want;
        self
    }
    fn refused(mut self, refused: &'static [(&'static str, &'static str)]) -> Self {
        self.refused = refused;
        self
    }
    fn pools(mut self, pools: Vec<Pool>) -> Self {
        self.pools = pools;
        self
    }

    fn check(&self) {
        let services: Vec<Service> = self.services.iter().map(S::build).collect();
        let refs: Vec<&Service> = services.iter().collect();
        let got = allocate(&refs, &self.pools, &prefixes(), &self.class);
        let want: BTreeMap<ServiceKey, Vec<IpAddr>> = self
            .want
            .iter()
            .map(|(name, ips)| {
                let s = self.services.iter().find(|s| s.name == *name).unwrap();
                let key = ServiceKey {
                    namespace: s.ns.into(),
                    name: (*name).into(),
                };
                (key, ips.iter().map(|ip| ip.parse().unwrap()).collect())
            })
            .collect();
        assert_eq!(got.assigned, want, "{}: assigned", self.what);
        let refused: Vec<&str> = got
            .refusals
            .iter()
            .map(|r| r.service.name.as_str())
            .collect();
        let want_refused: Vec<&str> = self.refused.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            refused, want_refused,
            "{}: refused {:?}",
            self.what, got.refusals
        );
        for (r, (_, part)) in got.refusals.iter().zip(self.refused) {
            assert!(
                r.reason.contains(part),
                "{}: {:?} lacks {part:?}",
                self.what,
                r.reason
            );
        }
    }
}

#[test]
fn requested_and_auto_assigned_addresses() {
    let cases = [
        case(
            "auto: the lowest host address, oldest Service first",
            vec![svc("b", 2), svc("a", 3)],
        )
        .want(&[("a", &["198.51.100.2"]), ("b", &["198.51.100.1"])]),
        case(
            "spec.loadBalancerIP inside a pool",
            vec![svc("a", 1).lb_ip("198.51.100.10")],
        )
        .want(&[("a", &["198.51.100.10"])]),
        case(
            "l3lb annotation, both MetalLB annotations",
            vec![
                svc("a", 1).ann("l3lb.io/load-balancer-ips", "198.51.100.11"),
                svc("b", 2).ann("metallb.universe.tf/loadBalancerIPs", "198.51.100.12"),
                svc("c", 3).ann("metallb.io/loadBalancerIPs", "198.51.100.13"),
            ],
        )
        .want(&[
            ("a", &["198.51.100.11"]),
            ("b", &["198.51.100.12"]),
            ("c", &["198.51.100.13"]),
        ]),
        case(
            "requested outside every pool",
            vec![svc("a", 1).lb_ip("203.0.113.7")],
        )
        .want(&[("a", &[])])
        .refused(&[(
            "a",
            "spec.loadBalancerIP 203.0.113.7 is outside every address pool (lab: 198.51.100.0/24",
        )]),
        case("requested garbage", vec![svc("a", 1).lb_ip("not-an-ip")])
            .want(&[("a", &[])])
            .refused(&[("a", "\"not-an-ip\" is not an IP address")]),
        case(
            "two places request different addresses",
            vec![
                svc("a", 1)
                    .lb_ip("198.51.100.5")
                    .ann("metallb.universe.tf/loadBalancerIPs", "198.51.100.6"),
            ],
        )
        .want(&[("a", &[])])
        .refused(&[("a", "request different addresses")]),
        case("wrong family", vec![svc("a", 1).lb_ip("2001:db8:100::5")])
            .want(&[("a", &[])])
            .refused(&[(
                "a",
                "2001:db8:100::5 is IPv6, but the Service's IP families are IPv4",
            )]),
        case(
            "a request changes: the new address replaces the recorded one",
            vec![svc("a", 1).lb_ip("198.51.100.6").status(&["198.51.100.5"])],
        )
        .want(&[("a", &["198.51.100.6"])]),
        case(
            "requested but outside --prefix",
            vec![svc("a", 1).lb_ip("203.0.113.7")],
        )
        .pools(vec![pool("wide", &["203.0.113.0/24"])])
        .want(&[("a", &[])])
        .refused(&[("a", "is in pool wide but outside every --prefix")]),
        case("auto only from inside --prefix", vec![svc("a", 1)])
            .pools(vec![pool("wide", &["203.0.113.0/24"])])
            .want(&[("a", &[])])
            .refused(&[(
                "a",
                "IPv4 addresses of pool wide are outside every --prefix",
            )]),
        case("no pools at all", vec![svc("a", 1)])
            .pools(vec![])
            .want(&[("a", &[])])
            .refused(&[("a", "no L3lbPool exists")]),
    ];
    for c in cases {
        c.check();
    }
}

mod contests;
mod families;
mod l2;
mod records;
