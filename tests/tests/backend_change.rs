//! End to end, as root: the backend set changes under open connections and none is lost.
//!
//! Node1 serves the VIP from one endpoint (its pod's address A), with 16 long-lived TCP
//! connections open through it. A second endpoint joins: a second address B on the same pod,
//! so the same echo server answers there. Maglev sends part of the new connections to B, but
//! every connection opened before stays pinned to A and keeps working; without pinning the ones
//! rehashed to B would reach an address that has no such connection and be reset. Then B leaves
//! again, and the connections on A still work.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, ensure};
use l3lb_tests::{
    lab::{LabConfig, Stream, wait_for},
    scenario::{Cluster, EndpointState},
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 40);
const PORT: u16 = 80;
const CONVERGE: Duration = Duration::from_secs(30);
const CONNECTIONS: usize = 16;

/// The EndpointSlice of Service `web`: one Ready endpoint on node1 per address.
fn endpoints(c: &Cluster, addrs: &[Ipv4Addr]) -> anyhow::Result<()> {
    let eps: Vec<_> = addrs
        .iter()
        .map(|a| (IpAddr::V4(*a), 1, EndpointState::Ready))
        .collect();
    c.apply_endpoint_list("web", &eps)
}

fn open(c: &Cluster, n: usize, what: &str) -> anyhow::Result<Vec<Stream>> {
    let client = c.lab.client_ns().to_owned();
    (0..n)
        .map(|i| {
            Stream::open(&client, SocketAddr::from((VIP, PORT)))
                .with_context(|| format!("{what} connection {i}"))
        })
        .collect()
}

fn exchange_all(streams: &mut [Stream], tag: &str) -> anyhow::Result<()> {
    for (i, s) in streams.iter_mut().enumerate() {
        s.exchange(&format!("{tag}-{i}"))
            .with_context(|| format!("connection {i} after {tag}"))?;
    }
    Ok(())
}

/// Established connections in the pod whose local address is `addr`.
fn established_on(c: &Cluster, addr: Ipv4Addr) -> anyhow::Result<usize> {
    let echo = c.lab.config().echo_port;
    let out = c.lab.exec(
        c.lab.pod_ns(1),
        &[
            "ss",
            "-Htn",
            "state",
            "established",
            "src",
            &format!("{addr}:{echo}"),
        ],
    )?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
}

/// Waits until node1's datapath serves the VIP from `n` endpoints.
fn wait_backends(c: &Cluster, n: usize) -> anyhow::Result<()> {
    wait_for(&format!("node1 programs {n} endpoints"), CONVERGE, || {
        let (_, body) = c.http_get(1, "/metrics")?;
        let backends = body
            .lines()
            .find_map(|l| l.strip_prefix("l3lb_backends "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        // Two frontends (TCP and UDP), each with every endpoint.
        ensure!(
            backends == Some((2 * n) as f64),
            "l3lb_backends {backends:?}"
        );
        Ok(Some(()))
    })
}

#[test]
fn a_backend_joining_and_leaving_loses_no_open_connection() -> anyhow::Result<()> {
    let c = Cluster::start(LabConfig {
        nodes: 1,
        ..LabConfig::default()
    })?;
    let a = c.lab.pod_ip(1);
    let b = Ipv4Addr::new(a.octets()[0], a.octets()[1], a.octets()[2], 3);
    c.lab.exec(
        c.lab.pod_ns(1),
        &["ip", "addr", "add", &format!("{b}/24"), "dev", "eth0"],
    )?;
    c.apply_service("web", VIP, PORT)?;
    endpoints(&c, &[a])?;
    c.wait_nexthops(VIP, &[c.lab.node_ip(1)])?;

    let mut before = open(&c, CONNECTIONS, "first")?;
    exchange_all(&mut before, "opened")?;
    ensure!(
        established_on(&c, a)? >= CONNECTIONS,
        "connections not on {a}"
    );

    // B joins: new connections spread over both, the open ones stay on A.
    endpoints(&c, &[a, b])?;
    wait_backends(&c, 2)?;
    exchange_all(&mut before, "join")?;
    let mut after = open(&c, CONNECTIONS, "second")?;
    exchange_all(&mut after, "join")?;
    let on_b = established_on(&c, b)?;
    ensure!(
        on_b > 0 && on_b < CONNECTIONS,
        "{on_b} of the {CONNECTIONS} new connections went to the new endpoint {b}; want some, not all"
    );

    // B leaves again: the connections pinned to A are untouched.
    endpoints(&c, &[a])?;
    wait_backends(&c, 1)?;
    exchange_all(&mut before, "leave")?;
    println!(
        "backend change: {CONNECTIONS} open connections kept working while {b} joined and left; \
         {on_b} of {CONNECTIONS} new connections went to it"
    );
    Ok(())
}
