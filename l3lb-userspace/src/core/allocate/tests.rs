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

#[test]
fn the_status_is_the_record() {
    let cases = [
        case(
            "a recorded address stays though a lower one is free",
            vec![svc("a", 1).status(&["198.51.100.7"]), svc("b", 2)],
        )
        .want(&[("a", &["198.51.100.7"]), ("b", &["198.51.100.1"])]),
        case(
            "a restart or a new leader allocates no recorded address again",
            vec![svc("a", 5).status(&["198.51.100.1"]), svc("b", 1)],
        )
        .want(&[("a", &["198.51.100.1"]), ("b", &["198.51.100.2"])]),
        case(
            "two records of one address without sharing: the older keeps it, the younger moves",
            vec![
                svc("b", 2).status(&["198.51.100.1"]),
                svc("a", 1).status(&["198.51.100.1"]),
            ],
        )
        .want(&[("a", &["198.51.100.1"]), ("b", &["198.51.100.2"])]),
        case(
            "a recorded address is refused to a request, even an older Service's",
            vec![
                svc("old", 1).status(&["198.51.100.1"]),
                svc("new", 0).lb_ip("198.51.100.1").status(&[]),
            ],
        )
        .want(&[("new", &[]), ("old", &["198.51.100.1"])])
        .refused(&[("new", "198.51.100.1 is taken by Service default/old")]),
        case(
            "the pool of a recorded address is gone: it is released and replaced",
            vec![svc("a", 1).status(&["203.0.113.9"])],
        )
        .want(&[("a", &["198.51.100.1"])]),
        case(
            "a refused Service loses its recorded address",
            vec![svc("a", 1).status(&["198.51.100.3"]).lb_ip("203.0.113.1")],
        )
        .want(&[("a", &[])])
        .refused(&[("a", "outside every address pool")]),
        case(
            "an extra address of the same family in the record is dropped",
            vec![svc("a", 1).status(&["198.51.100.3", "198.51.100.4"])],
        )
        .want(&[("a", &["198.51.100.3"])]),
    ];
    for c in cases {
        c.check();
    }
}

#[test]
fn sharing_needs_both_to_opt_in_with_one_key_and_disjoint_ports() {
    let cases = [
        case(
            "same key, different ports: one address",
            vec![
                svc("tcp", 1)
                    .share("dns")
                    .port(53, "TCP")
                    .lb_ip("198.51.100.53"),
                svc("udp", 2)
                    .share("dns")
                    .port(53, "UDP")
                    .lb_ip("198.51.100.53"),
            ],
        )
        .want(&[("tcp", &["198.51.100.53"]), ("udp", &["198.51.100.53"])]),
        case(
            "same key, auto: the younger joins the older's address",
            vec![
                svc("tcp", 1).share("dns").port(53, "TCP"),
                svc("other", 2),
                svc("udp", 3).share("dns").port(53, "UDP"),
            ],
        )
        .want(&[
            ("other", &["198.51.100.2"]),
            ("tcp", &["198.51.100.1"]),
            ("udp", &["198.51.100.1"]),
        ]),
        case(
            "only one opts in",
            vec![
                svc("a", 1).lb_ip("198.51.100.9").port(80, "TCP"),
                svc("b", 2)
                    .share("k")
                    .lb_ip("198.51.100.9")
                    .port(443, "TCP"),
            ],
        )
        .want(&[("a", &["198.51.100.9"]), ("b", &[])])
        .refused(&[(
            "b",
            "both carry the annotation l3lb.io/allow-shared-ip with the same value",
        )]),
        case(
            "different keys",
            vec![
                svc("a", 1).share("x").lb_ip("198.51.100.9").port(80, "TCP"),
                svc("b", 2)
                    .share("y")
                    .lb_ip("198.51.100.9")
                    .port(443, "TCP"),
            ],
        )
        .want(&[("a", &["198.51.100.9"]), ("b", &[])])
        .refused(&[("b", "taken by Service default/a")]),
        case(
            "same key, clashing port",
            vec![
                svc("a", 1).share("k").lb_ip("198.51.100.9"),
                svc("b", 2).share("k").lb_ip("198.51.100.9"),
            ],
        )
        .want(&[("a", &["198.51.100.9"]), ("b", &[])])
        .refused(&[("b", "already uses port 80/TCP")]),
        case(
            "same key, clashing port, auto: a separate address",
            vec![svc("a", 1).share("k"), svc("b", 2).share("k")],
        )
        .want(&[("a", &["198.51.100.1"]), ("b", &["198.51.100.2"])]),
        case(
            "MetalLB's sharing annotation counts as the same key",
            vec![
                svc("a", 1).share("k").port(53, "TCP").lb_ip("198.51.100.9"),
                svc("b", 2)
                    .ann("metallb.universe.tf/allow-shared-ip", "k")
                    .port(53, "UDP")
                    .lb_ip("198.51.100.9"),
            ],
        )
        .want(&[("a", &["198.51.100.9"]), ("b", &["198.51.100.9"])]),
    ];
    for c in cases {
        c.check();
    }
}

#[test]
fn families_pools_and_exhaustion() {
    let v4_only = || vec![pool("v4", &["198.51.100.0/24"])];
    let cases = [
        case(
            "IPv6 only",
            vec![svc("a", 1).families(&["IPv6"], "SingleStack")],
        )
        .want(&[("a", &["2001:db8:100::1"])]),
        case(
            "RequireDualStack: one of each, in ipFamilies order",
            vec![svc("a", 1).families(&["IPv6", "IPv4"], "RequireDualStack")],
        )
        .want(&[("a", &["2001:db8:100::1", "198.51.100.1"])]),
        case(
            "PreferDualStack without IPv6 pool: IPv4 only, no refusal",
            vec![svc("a", 1).families(&["IPv4", "IPv6"], "PreferDualStack")],
        )
        .pools(v4_only())
        .want(&[("a", &["198.51.100.1"])]),
        case(
            "RequireDualStack without IPv6 pool: refused, nothing assigned",
            vec![
                svc("a", 1).families(&["IPv4", "IPv6"], "RequireDualStack"),
                svc("b", 2),
            ],
        )
        .pools(v4_only())
        .want(&[("a", &[]), ("b", &["198.51.100.1"])])
        .refused(&[(
            "a",
            "no pool with autoAssign for this Service has IPv6 addresses",
        )]),
        case(
            "RequireDualStack requesting only IPv4",
            vec![
                svc("a", 1)
                    .families(&["IPv4", "IPv6"], "RequireDualStack")
                    .lb_ip("198.51.100.4"),
            ],
        )
        .want(&[("a", &[])])
        .refused(&[("a", "requires an IPv6 address")]),
        case(
            "dual-stack request by annotation",
            vec![
                svc("a", 1)
                    .families(&["IPv4", "IPv6"], "RequireDualStack")
                    .ann("l3lb.io/load-balancer-ips", "2001:db8:100::9,198.51.100.9"),
            ],
        )
        .want(&[("a", &["198.51.100.9", "2001:db8:100::9"])]),
        case(
            "pool exhausted",
            vec![svc("a", 1), svc("b", 2), svc("c", 3)],
        )
        .pools(vec![pool("tiny", &["198.51.100.0/30"])])
        .want(&[
            ("a", &["198.51.100.1"]),
            ("b", &["198.51.100.2"]),
            ("c", &[]),
        ])
        .refused(&[("c", "pool tiny is exhausted")]),
        case(
            "the next pool once the first is full",
            vec![svc("a", 1), svc("b", 2)],
        )
        .pools(vec![
            pool("a-tiny", &["198.51.100.4/32"]),
            pool("b-more", &["198.51.100.64/26"]),
        ])
        .want(&[("a", &["198.51.100.4"]), ("b", &["198.51.100.65"])]),
        case(
            "autoAssign off: requests only",
            vec![svc("auto", 1), svc("asks", 2).lb_ip("198.51.100.7")],
        )
        .pools(vec![Pool::new("manual", &[net("198.51.100.0/24")], false)])
        .want(&[("asks", &["198.51.100.7"]), ("auto", &[])])
        .refused(&[(
            "auto",
            "pool manual allows this Service but has autoAssign off",
        )]),
        case(
            "namespace and label selectors",
            vec![
                svc("edge", 1).ns("web").label("tier", "edge"),
                svc("plain", 2).ns("web"),
                svc("elsewhere", 3).ns("other").label("tier", "edge"),
                svc("asks", 4).ns("other").lb_ip("198.51.100.200"),
            ],
        )
        .pools(vec![pool_obj(
            json!({"metadata": {"name": "edge"}, "spec": {
            "addresses": ["198.51.100.0/24"], "namespaces": ["web"],
            "serviceSelector": {"matchLabels": {"tier": "edge"}}}}),
        )])
        .want(&[
            ("asks", &[]),
            ("edge", &["198.51.100.1"]),
            ("elsewhere", &[]),
            ("plain", &[]),
        ])
        .refused(&[
            ("asks", "is in pool edge, which does not allow this Service"),
            ("elsewhere", "no pool allows this Service"),
            ("plain", "no pool allows this Service"),
        ]),
    ];
    for c in cases {
        c.check();
    }
}

#[test]
fn other_classes_are_not_ours_but_their_addresses_stay_theirs() {
    let other = svc("metallb", 1)
        .set("loadBalancerClass", json!("metallb.io/metallb"))
        .status(&["198.51.100.1"]);
    let classless = svc("classless", 2).set("loadBalancerClass", Value::Null);
    let ext = svc("ext", 3)
        .set("loadBalancerClass", json!("other"))
        .set("externalIPs", json!(["198.51.100.2"]));
    let services = vec![
        other.clone(),
        classless.clone(),
        ext.clone(),
        svc("ours", 4),
    ];
    case(
        "only our class; the others' addresses are skipped",
        services.clone(),
    )
    .want(&[("ours", &["198.51.100.3"])])
    .check();
    let mut default = case("classless too with --default-load-balancer", services).want(&[
        ("classless", &["198.51.100.3"]),
        ("ours", &["198.51.100.4"]),
    ]);
    default.class.default = true;
    default.check();
    case(
        "a request for another class's address",
        vec![other, svc("ours", 4).lb_ip("198.51.100.1")],
    )
    .want(&[("ours", &[])])
    .refused(&[(
        "ours",
        "taken by Service default/metallb, which l3lb does not handle",
    )])
    .check();
    let cluster_ip = svc("cip", 1).set("type", json!("ClusterIP"));
    case("not a LoadBalancer", vec![cluster_ip.clone()]).check();
    // Changed from LoadBalancer to ClusterIP: the pool's address is taken off its status (and
    // free again); an address from elsewhere is someone else's to clear.
    case(
        "no longer a LoadBalancer",
        vec![cluster_ip.status(&["198.51.100.1"]), svc("new", 2)],
    )
    .want(&[("cip", &[]), ("new", &["198.51.100.1"])])
    .check();
    let foreign = svc("cip", 1)
        .set("type", json!("NodePort"))
        .status(&["203.0.113.1"]);
    case("no longer a LoadBalancer, address not ours", vec![foreign]).check();
}

/// Allocation is a fixed point: writing the result into the statuses and allocating again gives
/// the same addresses and refusals, whatever the order the Services come in.
#[test]
fn allocation_is_stable_across_runs_and_input_order() {
    let services = [
        svc("a", 1).share("k").port(53, "UDP"),
        svc("b", 2).share("k").port(53, "TCP"),
        svc("c", 3).lb_ip("198.51.100.1"),
        svc("d", 4).lb_ip("198.51.100.200"),
        svc("e", 5).families(&["IPv4", "IPv6"], "RequireDualStack"),
        svc("f", 6).status(&["198.51.100.200"]),
    ];
    let pools = vec![pool("lab", &["198.51.100.0/24", "2001:db8:100::/120"])];
    let class = ClassFilter::default();
    let built: Vec<Service> = services.iter().map(S::build).collect();
    let refs: Vec<&Service> = built.iter().collect();
    let first = allocate(&refs, &pools, &prefixes(), &class);
    let mut rewritten = built.clone();
    for s in &mut rewritten {
        let key = ServiceKey::of(s).unwrap();
        let ips = &first.assigned[&key];
        let ingress: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
        s.status = serde_json::from_value(json!({"loadBalancer": {"ingress": ingress}})).unwrap();
    }
    rewritten.reverse();
    let refs: Vec<&Service> = rewritten.iter().collect();
    let second = allocate(&refs, &pools, &prefixes(), &class);
    assert_eq!(first, second);
    // c asks for a's address, d for the one f holds on record.
    let refused: Vec<&str> = first
        .refusals
        .iter()
        .map(|r| r.service.name.as_str())
        .collect();
    assert_eq!(refused, ["c", "d"], "{first:?}");
    assert_eq!(
        first.assigned.values().filter(|v| v.is_empty()).count(),
        2,
        "{first:?}"
    );
}

/// The contests of [`crate::core::ownership`]: a grant against externalIPs, requests against
/// externalIPs and other tenants, sharing across namespaces, release and re-grant.
#[test]
fn one_owner_per_address() {
    let external = |s: S, ips: &[&str]| s.set("externalIPs", json!(ips));
    let cases = [
        case(
            "a grant keeps its address against an older Service's externalIPs",
            vec![
                svc("web", 30)
                    .lb_ip("198.51.100.10")
                    .status(&["198.51.100.10"]),
                external(svc("grab", 1).ns("evil"), &["198.51.100.10"]),
            ],
        )
        .want(&[("web", &["198.51.100.10"]), ("grab", &["198.51.100.1"])]),
        case(
            "an address claimed in externalIPs is never granted to a request",
            vec![
                external(svc("ext", 10).ns("evil"), &["198.51.100.10"]),
                svc("web", 1).lb_ip("198.51.100.10"),
            ],
        )
        .want(&[("ext", &["198.51.100.1"]), ("web", &[])])
        .refused(&[(
            "web",
            "198.51.100.10 is in the spec.externalIPs of a Service in another namespace; l3lb \
             never allocates an address claimed there",
        )]),
        case(
            "nor auto-assigned, also when a ClusterIP Service claims it",
            vec![
                external(
                    svc("plain", 1).set("type", json!("ClusterIP")),
                    &["198.51.100.1"],
                ),
                svc("web", 2),
            ],
        )
        .want(&[("web", &["198.51.100.2"])]),
        case(
            "another tenant's grant is refused to a request without naming it",
            vec![
                svc("web", 1).status(&["198.51.100.10"]),
                svc("grab", 0).ns("evil").lb_ip("198.51.100.10"),
            ],
        )
        .want(&[("grab", &[]), ("web", &["198.51.100.10"])])
        .refused(&[(
            "grab",
            "198.51.100.10 is taken by a Service in another namespace;",
        )]),
        case(
            "a sharing key from another namespace does not share",
            vec![
                svc("tcp", 1)
                    .ns("dns")
                    .share("k")
                    .status(&["198.51.100.53"]),
                svc("udp", 2)
                    .ns("evil")
                    .share("k")
                    .port(53, "UDP")
                    .lb_ip("198.51.100.53"),
            ],
        )
        .want(&[("tcp", &["198.51.100.53"]), ("udp", &[])])
        .refused(&[("udp", "is taken by a Service in another namespace")]),
        case(
            "released (no longer a LoadBalancer), the address is granted to the next request",
            vec![
                svc("web", 1)
                    .set("type", json!("ClusterIP"))
                    .status(&["198.51.100.10"]),
                svc("next", 2).ns("other").lb_ip("198.51.100.10"),
            ],
        )
        .want(&[("next", &["198.51.100.10"]), ("web", &[])]),
    ];
    for c in cases {
        c.check();
    }
}
