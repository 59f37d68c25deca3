//! End to end, as root: graceful drain. The node's only pod turns terminating (not Ready, still
//! serving): the node withdraws the VIP at once (the BGP path goes), yet every open TCP
//! connection through it keeps working, new connections get no backend, and the frontend leaves
//! the maps only after --drain-timeout.
//!
//! With the route withdrawn the lab's router would have no path at all, so it keeps a floating
//! static route to the VIP via the node, as an upstream that still sends the node its existing
//! flows would (with several nodes the routers move those flows elsewhere; see the README).
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use l3lb_tests::{
    lab::{LabConfig, Stream, wait_for},
    netns::in_netns,
    scenario::{Cluster, EndpointState},
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 30);
const PORT: u16 = 80;
const CONVERGE: Duration = Duration::from_secs(30);
const DRAIN: Duration = Duration::from_secs(8);
const CONNECTIONS: usize = 8;

fn exchange_all(streams: &mut [Stream], tag: &str) -> anyhow::Result<()> {
    for (i, s) in streams.iter_mut().enumerate() {
        let pod = s
            .exchange(&format!("{tag}-{i}"))
            .with_context(|| format!("connection {i} ({tag})"))?;
        ensure!(pod == "pod1", "connection {i} answered by {pod}");
    }
    Ok(())
}

#[test]
fn terminating_pod_drains_with_the_route_withdrawn_and_loses_no_connection() -> anyhow::Result<()> {
    let mut c = Cluster::start(LabConfig {
        nodes: 1,
        ..LabConfig::default()
    })?;
    c.stop_daemon(1)?;
    c.daemon_args = vec!["--drain-timeout".into(), format!("{}s", DRAIN.as_secs())];
    c.start_daemon(1)?;
    let n1 = c.lab.node_ip(1);
    c.apply_service("web", VIP, PORT)?;
    c.apply_endpoint_states("web", |_| Some(EndpointState::Ready))?;
    c.wait_nexthops(VIP, &[n1])?;

    let client = c.lab.client_ns().to_owned();
    let to = SocketAddr::from((VIP, PORT));
    let mut streams = (0..CONNECTIONS)
        .map(|i| Stream::open(&client, to).with_context(|| format!("connection {i}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    exchange_all(&mut streams, "ready")?;
    let router = c.lab.router_ns().to_owned();
    c.lab.exec(
        &router,
        &[
            "ip",
            "route",
            "add",
            &format!("{VIP}/32"),
            "via",
            &n1.to_string(),
            "metric",
            "5000",
        ],
    )?;

    // The pod shuts down: not Ready, still serving.
    let t_term = Instant::now();
    c.apply_endpoint_states("web", |_| Some(EndpointState::Terminating))?;
    wait_for("node1 withdraws the VIP", CONVERGE, || {
        let on_lo = c.lab.lo_addresses(1)?.contains(&IpAddr::V4(VIP));
        let paths = c.lab.router_bgp_nexthops(&format!("{VIP}/32"))?;
        if !on_lo && paths.is_empty() {
            Ok(Some(()))
        } else {
            bail!("VIP on lo: {on_lo}; BGP paths {paths:?}")
        }
    })?;
    let log = c.daemon_log(1);
    ensure!(log.contains(&format!("forfeiting address {VIP}")), "{log}");
    ensure!(
        !log.contains("frontend removed"),
        "the frontend went with the route:\n{log}"
    );

    // Open connections keep working through the drain; new ones find no backend.
    exchange_all(&mut streams, "terminating")?;
    let refused = in_netns(&client, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_err()
    })?;
    ensure!(refused, "a new connection reached a terminating pod");
    let dropped = c.datapath_packets(1)?;
    ensure!(
        dropped.get("xdp_no_backend").copied().unwrap_or(0) > 0,
        "no SYN counted as without backend: {dropped:?}"
    );
    // Passes go on (the resync runs every two seconds) and do not end the drain early.
    let passes = |c: &Cluster| -> anyhow::Result<f64> {
        let (_, body) = c.http_get(1, "/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix("l3lb_reconcile_duration_seconds_count "))
            .and_then(|v| v.trim().parse().ok())
            .context("no pass count in /metrics")
    };
    let before = passes(&c)?;
    wait_for("two more passes on node1", CONVERGE, || {
        let now = passes(&c)?;
        if now >= before + 2.0 {
            Ok(Some(()))
        } else {
            bail!("{now} passes")
        }
    })?;
    ensure!(
        t_term.elapsed() < DRAIN,
        "the passes took the whole drain; nothing was checked before it ended"
    );
    exchange_all(&mut streams, "still-terminating")?;
    ensure!(!c.daemon_log(1).contains("frontend removed"));

    // The pod is gone from the slice: the frontend still goes only once the drain is over.
    c.apply_endpoint_states("web", |_| None)?;
    exchange_all(&mut streams, "gone")?;
    wait_for("the frontend leaves the maps", CONVERGE, || {
        Ok(c.daemon_log(1).contains("frontend removed").then_some(()))
    })?;
    let drained = t_term.elapsed();
    ensure!(
        drained >= DRAIN,
        "frontend removed {drained:?} after the pod turned terminating, before the {DRAIN:?} drain"
    );
    println!(
        "drain: {CONNECTIONS} connections kept working while terminating and after the pod left; \
         frontend removed after {drained:.1?}"
    );
    Ok(())
}
