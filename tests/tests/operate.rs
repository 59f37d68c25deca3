//! `l3lb status` and `l3lb explain` on the FRR lab, against the states a node goes through:
//! served, its pod not Ready, draining, excluded, refused, contested — each as the tools report
//! it, checked against what the node really does (routes at the router).
use std::{net::Ipv4Addr, time::Duration};

use anyhow::{bail, ensure};
use l3lb_tests::{
    lab::{LabConfig, wait_for},
    scenario::{Cluster, EndpointState},
};
use serde_json::{Value, json};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const PORT: u16 = 80;
const CONVERGE: Duration = Duration::from_secs(30);

/// The explanation's lines for the VIP (Service-wide lines first) as (check, ok, text).
fn lines(e: &Value) -> Vec<(String, bool, String)> {
    let vip_lines = e["vips"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|v| v["lines"].as_array().into_iter().flatten());
    e["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(vip_lines)
        .map(|l| {
            (
                l["check"].as_str().unwrap_or_default().to_owned(),
                l["ok"].as_bool().unwrap_or(true),
                l["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn announced(e: &Value) -> Option<bool> {
    e["vips"].as_array()?.first()?["announced"].as_bool()
}

/// Waits until node `i` explains `service` with a failing `check` whose text holds `text`
/// (or, with `check` "announced", until it says the VIP is announced).
fn wait_explained(
    c: &Cluster,
    i: usize,
    service: &str,
    check: &str,
    text: &str,
) -> anyhow::Result<Value> {
    wait_for(
        &format!("node{i} explains {service}: {check} {text:?}"),
        CONVERGE,
        || {
            let e = c.explain_json(i, service)?;
            let hit = match check {
                "announced" => announced(&e) == Some(true),
                _ => lines(&e)
                    .iter()
                    .any(|(c, ok, t)| c == check && !ok && t.contains(text)),
            };
            if hit {
                Ok(Some(e))
            } else {
                bail!("{:#?}", lines(&e))
            }
        },
    )
}

/// node `i`'s status row for VIP:PORT/tcp.
fn row(status: &Value) -> Option<Value> {
    status["rows"]
        .as_array()?
        .iter()
        .find(|r| {
            r["vip"] == json!(VIP.to_string()) && r["port"] == json!(PORT) && r["proto"] == "tcp"
        })
        .cloned()
}

#[test]
fn status_and_explain_follow_what_the_node_does() -> anyhow::Result<()> {
    let c = Cluster::start(LabConfig::default())?;
    let (n1, n2) = (c.lab.node_ip(1), c.lab.node_ip(2));
    c.apply_service("web", VIP, PORT)?;
    c.apply_endpoints("web", |_| true)?;
    c.wait_nexthops(VIP, &[n1, n2])?;

    // Served: announced, one Ready endpoint, the address on with a lifetime, in the maps, and
    // the packets of a request counted.
    wait_explained(&c, 1, "default/web", "announced", "")?;
    c.lab.tcp_request(VIP, PORT)?;
    c.lab.tcp_request(VIP, PORT)?;
    let status = c.status_json(1)?;
    println!("{}", c.l3lb_on(1, "status", &[])?);
    let r = row(&status).ok_or_else(|| anyhow::anyhow!("no row: {status:#}"))?;
    ensure!(
        r["services"] == json!(["default/web"]) && r["ready"] == 1,
        "{r:#}"
    );
    ensure!(r["on_interface"] == true && r["in_maps"] == true, "{r:#}");
    ensure!(
        r["lifetime_s"].as_u64().is_some_and(|s| s > 0 && s <= 60),
        "{r:#}"
    );
    ensure!(
        status["node"] == "node1" && status["excluded"].is_null(),
        "{status:#}"
    );
    ensure!(
        status["uplinks"][0][0] == "up0" && status["uplinks"][0][1].is_null(),
        "{status:#}"
    );
    println!("{}", c.l3lb_on(1, "explain", &["default/web"])?);

    // pod2 not Ready: node2 says why it does not announce, and it really withdrew.
    c.apply_endpoints("web", |i| i == 1)?;
    c.wait_nexthops(VIP, &[n1])?;
    wait_explained(
        &c,
        2,
        "default/web",
        "endpoints",
        "no Ready endpoint on this node",
    )?;
    let r = row(&c.status_json(2)?);
    ensure!(r.as_ref().is_none_or(|r| r["ready"] == 0), "{r:?}");

    // pod1 terminating: node1 drains (frontend kept, address withdrawn).
    c.apply_endpoint_states("web", |i| (i == 1).then_some(EndpointState::Terminating))?;
    wait_explained(&c, 1, "default/web", "draining", "in-flight flows")?;
    let r = row(&c.status_json(1)?).ok_or_else(|| anyhow::anyhow!("no row while draining"))?;
    ensure!(r["terminating"] == 1 && r["draining"] == true, "{r:#}");
    println!("{}", c.l3lb_on(1, "explain", &["default/web"])?);

    // Both Ready again, then node1 excluded: withdrawn, and the status says why.
    c.apply_endpoints("web", |_| true)?;
    c.wait_nexthops(VIP, &[n1, n2])?;
    c.apply_node(
        1,
        json!({"node.kubernetes.io/exclude-from-external-load-balancers": "true"}),
        false,
    )?;
    c.wait_nexthops(VIP, &[n2])?;
    wait_explained(
        &c,
        1,
        "default/web",
        "excluded",
        "exclude-from-external-load-balancers",
    )?;
    let status = c.status_json(1)?;
    ensure!(
        status["excluded"]
            .as_str()
            .is_some_and(|e| e.contains("exclude-from-external-load-balancers")),
        "{status:#}"
    );
    c.apply_node(1, json!({}), false)?;
    c.wait_nexthops(VIP, &[n1, n2])?;

    // Refused: an externalIP outside --prefix (the pool address it is granted meanwhile is
    // served); contested: another namespace's externalIP on web's grant; waiting: no address
    // granted (requested outside every pool).
    c.api.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "default", "name": "outside"},
        "spec": {"type": "LoadBalancer", "externalIPs": ["203.0.113.9"],
                 "ports": [{"name": "tcp", "port": PORT, "protocol": "TCP"}]},
    }))?;
    c.api.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "evil", "name": "grab"},
        "spec": {"type": "LoadBalancer", "externalIPs": [VIP.to_string()],
                 "ports": [{"name": "tcp", "port": PORT, "protocol": "TCP"}]},
    }))?;
    c.apply_service("waiting", Ipv4Addr::new(203, 0, 113, 7), PORT)?;
    wait_explained(&c, 1, "default/outside", "refused", "outside every prefix")?;
    let e = wait_explained(
        &c,
        1,
        "evil/grab",
        "owner",
        "belongs to Service default/web",
    )?;
    println!("{}", c.l3lb_on(1, "explain", &["evil/grab"])?);
    ensure!(announced(&e) == Some(false), "{e:#}");
    wait_explained(
        &c,
        1,
        "default/waiting",
        "addresses",
        "status.loadBalancer.ingress is empty",
    )?;
    wait_explained(&c, 1, "default/missing", "service", "no such Service")?;
    // The contest changed nothing for the owner.
    wait_explained(&c, 1, "default/web", "announced", "")?;
    Ok(())
}
