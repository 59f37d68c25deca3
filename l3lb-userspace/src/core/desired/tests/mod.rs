//! Desired-state tables (fixtures here, themes in the submodules): endpoints, VIP sources,
//! classes, malformed input.
use std::collections::BTreeSet;

use ipnet::IpNet;
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use serde_json::json;

use super::{Scope, desired};
use crate::core::{
    class::ClassFilter,
    model::{Backends, Desired, Endpoint, FrontendId, Proto},
};

const NODE: &str = "node-a";

fn prefixes() -> Vec<IpNet> {
    vec!["198.51.100.0/24".parse().unwrap()]
}

/// A LoadBalancer Service `ns/name` of l3lb's class, allocated `vip` (in its status), with the
/// given ports.
fn svc(name: &str, vip: &str, ports: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": name},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "l3lb.io/l3lb", "ports": ports},
        "status": {"loadBalancer": {"ingress": [{"ip": vip}]}},
    }))
    .unwrap()
}

fn http() -> serde_json::Value {
    json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"}])
}

/// An EndpointSlice for Service `service` with endpoints (address, node, ready).
fn slice(
    service: &str,
    eps: &[(&str, &str, Option<bool>)],
    ports: serde_json::Value,
) -> EndpointSlice {
    let endpoints: Vec<_> = eps
        .iter()
        .map(|(addr, node, ready)| json!({"addresses": [addr], "nodeName": node, "conditions": {"ready": ready}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": format!("{service}-abc"),
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }))
    .unwrap()
}

fn web_ports() -> serde_json::Value {
    json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
}

/// The scope these tests run in: externalIPs anywhere inside the prefix (the policies have tests
/// of their own, in `ownership_tests`).
fn scope(class: &ClassFilter) -> Scope {
    Scope {
        external_ips: crate::core::ownership::ExternalIps::Prefix,
        ..Scope::new(NODE, &prefixes(), class)
    }
}

fn run(services: &[Service], slices: &[EndpointSlice]) -> Desired {
    let s: Vec<&Service> = services.iter().collect();
    let e: Vec<&EndpointSlice> = slices.iter().collect();
    desired(&s, &e, &scope(&ClassFilter::default()))
}

fn fe(vip: &str, port: u16, proto: Proto) -> FrontendId {
    FrontendId {
        vip: vip.parse().unwrap(),
        port,
        proto,
    }
}

fn ep(addr: &str, port: u16) -> Endpoint {
    Endpoint {
        addr: addr.parse().unwrap(),
        port,
    }
}

#[test]
fn local_ready_endpoint_makes_vip_wanted_with_resolved_target_port() {
    let d = run(
        &[svc("web", "198.51.100.10", http())],
        &[slice(
            "web",
            &[
                ("10.244.1.2", NODE, Some(true)),
                ("10.244.2.2", "node-b", Some(true)),
            ],
            web_ports(),
        )],
    );
    assert_eq!(
        d.addresses,
        BTreeSet::from(["198.51.100.10".parse().unwrap()])
    );
    let want = Backends::from([ep("10.244.1.2", 8080)]);
    assert_eq!(
        d.frontends.get(&fe("198.51.100.10", 80, Proto::Tcp)),
        Some(&want)
    );
    assert_eq!(d.frontends.len(), 1);
    assert!(d.refusals.is_empty());
}

#[test]
fn unset_ready_counts_as_ready_and_not_ready_does_not() {
    let unset = run(
        &[svc("web", "198.51.100.10", http())],
        &[slice("web", &[("10.244.1.2", NODE, None)], web_ports())],
    );
    assert_eq!(unset.addresses.len(), 1);
    let not_ready = run(
        &[svc("web", "198.51.100.10", http())],
        &[slice(
            "web",
            &[("10.244.1.2", NODE, Some(false))],
            web_ports(),
        )],
    );
    assert!(not_ready.addresses.is_empty());
    assert!(not_ready.frontends.is_empty());
}

#[test]
fn endpoints_only_on_other_nodes_want_nothing() {
    let d = run(
        &[svc("web", "198.51.100.10", http())],
        &[slice(
            "web",
            &[("10.244.2.2", "node-b", Some(true))],
            web_ports(),
        )],
    );
    assert_eq!(d, Desired::default());
}

#[test]
fn vip_outside_prefix_is_refused_and_others_still_served() {
    let d = run(
        &[
            svc("bad", "203.0.113.5", http()),
            svc("web", "198.51.100.10", http()),
        ],
        &[
            slice("bad", &[("10.244.1.3", NODE, Some(true))], web_ports()),
            slice("web", &[("10.244.1.2", NODE, Some(true))], web_ports()),
        ],
    );
    assert_eq!(
        d.addresses,
        BTreeSet::from(["198.51.100.10".parse().unwrap()])
    );
    assert_eq!(d.refusals.len(), 1);
    assert_eq!(d.refusals[0].service.name, "bad");
    assert!(
        d.refusals[0]
            .reason
            .contains("203.0.113.5 is outside every prefix"),
        "{}",
        d.refusals[0].reason
    );
}

#[test]
fn vips_come_from_the_status_and_external_ips_not_from_requests() {
    let mut s = svc("web", "198.51.100.10", http());
    let spec = s.spec.as_mut().unwrap();
    spec.external_ips = Some(vec!["198.51.100.11".into(), "198.51.100.10".into()]);
    // Requested but not (yet) granted by the allocator: not served.
    spec.load_balancer_ip = Some("198.51.100.13".into());
    s.metadata.annotations =
        Some([("l3lb.io/load-balancer-ips".into(), "198.51.100.14".into())].into());
    s.status = serde_json::from_value(
        json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.10"}, {"ip": "198.51.100.12"}]}}),
    )
    .unwrap();
    let d = run(
        &[s],
        &[slice(
            "web",
            &[("10.244.1.2", NODE, Some(true))],
            web_ports(),
        )],
    );
    let vips: Vec<String> = d.addresses.iter().map(ToString::to_string).collect();
    assert_eq!(vips, ["198.51.100.10", "198.51.100.11", "198.51.100.12"]);
    assert_eq!(d.frontends.len(), 3);
    assert!(d.refusals.is_empty());
}

#[test]
fn only_services_of_our_class_are_served() {
    let with_class = |class: serde_json::Value| {
        let mut s = svc("web", "198.51.100.10", http());
        s.spec.as_mut().unwrap().load_balancer_class = serde_json::from_value(class).unwrap();
        s
    };
    let slices = [slice(
        "web",
        &[("10.244.1.2", NODE, Some(true))],
        web_ports(),
    )];
    let e: Vec<&EndpointSlice> = slices.iter().collect();
    let default = ClassFilter {
        default: true,
        ..ClassFilter::default()
    };
    let cases = [
        (json!("l3lb.io/l3lb"), ClassFilter::default(), 1),
        (json!("metallb.io/metallb"), ClassFilter::default(), 0),
        (json!("metallb.io/metallb"), default.clone(), 0),
        (json!(null), ClassFilter::default(), 0),
        (json!(null), default, 1),
    ];
    for (class, filter, vips) in cases {
        let s = with_class(class.clone());
        let d = desired(&[&s], &e, &scope(&filter));
        assert_eq!(d.addresses.len(), vips, "{class} {filter:?}");
        assert!(
            d.refusals.is_empty(),
            "another class is not refused: {:?}",
            d.refusals
        );
    }
}

#[test]
fn malformed_and_unsupported_inputs_are_refused_not_fatal() {
    let cases = [
        ("not-an-ip", "is not an IP address"),
        ("2001:db8::1", "outside every prefix"),
    ];
    for (vip, reason) in cases {
        let d = run(
            &[svc("web", vip, http())],
            &[slice(
                "web",
                &[("10.244.1.2", NODE, Some(true))],
                web_ports(),
            )],
        );
        assert!(d.addresses.is_empty(), "{vip}");
        assert_eq!(d.refusals.len(), 1, "{vip}");
        assert!(
            d.refusals[0].reason.contains(reason),
            "{vip}: {}",
            d.refusals[0].reason
        );
    }
    let other = json!([{"name": "s", "port": 90, "protocol": "DCCP"}]);
    let d = run(&[svc("web", "198.51.100.10", other)], &[]);
    assert!(d.refusals[0].reason.contains("DCCP is not supported"));
}

#[test]
fn non_load_balancer_services_and_foreign_slices_are_ignored() {
    let mut cluster_ip = svc("web", "198.51.100.10", http());
    cluster_ip.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
    let d = run(
        &[cluster_ip],
        &[slice(
            "web",
            &[("10.244.1.2", NODE, Some(true))],
            web_ports(),
        )],
    );
    assert_eq!(d, Desired::default());
    let d = run(
        &[svc("web", "198.51.100.10", http())],
        &[slice(
            "other",
            &[("10.244.1.2", NODE, Some(true))],
            web_ports(),
        )],
    );
    assert!(d.frontends.is_empty());
}

mod ports;
mod sharing;
