//! Forwarding end to end, as root.
//!
//! Advertise only what forwards: when another XDP program takes node1's uplink, its daemon
//! withdraws the VIP (the router keeps only node2's path), says why in its log and metrics, and
//! announces again once the uplink is free and its program back.
//!
//! Redirect into pod interfaces is opt-in: without `--xdp-redirect` every DNATed packet takes
//! the kernel's forwarding path (where host netfilter sees it); with it, packets are redirected
//! into the pod's veth; a restart without it clears what the earlier run left in the pinned maps.
//!
//! The programs' own log is opt-in too: with `--bpf-log` a rare datapath event (a frontend table
//! naming a backend that takes no new flows) reaches the daemon's log; without it the programs'
//! logging flag is off, and a restart without it turns it off again.
use std::{net::Ipv4Addr, process::Command, time::Duration};

use anyhow::{Context as _, bail, ensure};
use aya::{
    Ebpf,
    maps::{Array, DevMapHash, Map, MapData},
    programs::{Xdp, XdpMode},
};
use l3lb_common::{
    BACKEND_ACTIVE, BACKEND_DRAINING, BackendV4, CONFIG_LOG, CONFIG_REDIRECT, Config,
    MAP_BACKENDS_V4, MAP_CONFIG, MAP_REDIRECT, PROG_XDP_NOOP,
};
use l3lb_tests::{
    lab::{LabConfig, wait_for},
    netns::in_netns,
    scenario::Cluster,
};
use l3lb_userspace::node::datapath::EBPF_OBJECT;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 30);
const PORT: u16 = 80;
const CONVERGE: Duration = Duration::from_secs(30);

/// Detaches l3lb's XDP link from node `i`'s uplink by hand and puts a program of its own there
/// (held by the returned object), retrying if the daemon re-attached in between.
fn displace(c: &Cluster, i: usize) -> anyhow::Result<Ebpf> {
    let pin = c
        .lab
        .bpffs_dir(i)
        .join(format!("link_xdp_{}", c.lab.uplink()));
    let uplink = c.lab.uplink().to_owned();
    wait_for("a foreign XDP program on the uplink", CONVERGE, || {
        // From the host's mount namespace: `ip netns exec` would hide the host's bpffs.
        let out = Command::new("bpftool")
            .args(["link", "detach", "pinned"])
            .arg(&pin)
            .output()
            .context("running bpftool (bash .ci/setup installs it)")?;
        ensure!(
            out.status.success(),
            "bpftool link detach: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let uplink = uplink.clone();
        let attached = in_netns(c.lab.node_ns(i), move || -> anyhow::Result<Ebpf> {
            let mut ebpf = Ebpf::load(EBPF_OBJECT)?;
            let noop: &mut Xdp = ebpf
                .program_mut(PROG_XDP_NOOP)
                .context("no noop program")?
                .try_into()?;
            noop.load()?;
            noop.attach(&uplink, XdpMode::Driver)?;
            Ok(ebpf)
        })?;
        // EBUSY: the daemon put its own back first; detach again.
        Ok(attached.ok())
    })
}

fn metric(c: &Cluster, i: usize, name: &str) -> anyhow::Result<Option<f64>> {
    let (_, body) = c.http_get(i, "/metrics")?;
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok()))
}

#[test]
fn a_displaced_xdp_program_withdraws_the_vip_until_the_uplink_forwards_again() -> anyhow::Result<()>
{
    let c = Cluster::start(LabConfig::default())?;
    let (n1, n2) = (c.lab.node_ip(1), c.lab.node_ip(2));
    c.apply_service("web", VIP, PORT)?;
    c.apply_endpoints("web", |_| true)?;
    c.wait_nexthops(VIP, &[n1, n2])?;

    let foreign = displace(&c, 1)?;
    c.wait_nexthops(VIP, &[n2])?;
    let log = c.daemon_log(1);
    ensure!(
        log.contains("uplink does not forward") && log.contains("not l3lb's"),
        "node1's log does not say why it withdrew:\n{log}"
    );
    ensure!(
        metric(&c, 1, "l3lb_uplinks_not_forwarding")? == Some(1.0),
        "l3lb_uplinks_not_forwarding is not 1"
    );
    // node2 still serves the VIP through the router.
    let answer = c.lab.tcp_request(VIP, PORT)?;
    ensure!(answer.starts_with("pod2"), "answer via node2: {answer:?}");

    // The other program leaves: the next check re-attaches l3lb's and the VIP comes back.
    drop(foreign);
    c.wait_nexthops(VIP, &[n1, n2])?;
    wait_for(
        "uplinks_not_forwarding back at 0",
        CONVERGE,
        || match metric(&c, 1, "l3lb_uplinks_not_forwarding")? {
            Some(0.0) => Ok(Some(())),
            seen => bail!("l3lb_uplinks_not_forwarding {seen:?}"),
        },
    )?;
    ensure!(
        c.daemon_log(1).contains("uplink forwards again"),
        "node1's log does not record the recovery"
    );
    Ok(())
}

/// Packets node 1's datapath DNATed to the kernel's path and redirected, over `n` TCP and UDP
/// requests through the VIP.
fn dnat_paths(c: &Cluster, n: usize) -> anyhow::Result<(u64, u64)> {
    let count = |name: &str| -> anyhow::Result<u64> {
        Ok(c.datapath_packets(1)?.get(name).copied().unwrap_or(0))
    };
    let before = (count("xdp_dnat_pass")?, count("xdp_redirect")?);
    for i in 0..n {
        let tcp = c.lab.tcp_request(VIP, PORT)?;
        let udp = c.lab.udp_request(VIP, PORT)?;
        ensure!(
            tcp.starts_with("pod1") && udp.starts_with("pod1"),
            "request {i}: answers {tcp:?}, {udp:?}"
        );
    }
    Ok((
        count("xdp_dnat_pass")? - before.0,
        count("xdp_redirect")? - before.1,
    ))
}

/// What node 1's pinned maps say: the redirect flag, and how many interfaces are listed.
fn redirect_state(c: &Cluster) -> anyhow::Result<(bool, usize)> {
    let dir = c.lab.bpffs_dir(1);
    let config: Array<MapData, Config> =
        Array::try_from(Map::Array(MapData::from_pin(dir.join(MAP_CONFIG))?))?;
    let flag = config.get(&0, 0)?.flags & CONFIG_REDIRECT != 0;
    let targets: DevMapHash<MapData> =
        DevMapHash::try_from(Map::DevMapHash(MapData::from_pin(dir.join(MAP_REDIRECT))?))?;
    Ok((flag, targets.keys().count()))
}

/// A one-node lab serving `web` at VIP:PORT, announced.
fn one_node_serving_web() -> anyhow::Result<Cluster> {
    let c = Cluster::start(LabConfig {
        nodes: 1,
        ..LabConfig::default()
    })?;
    c.apply_service("web", VIP, PORT)?;
    c.apply_endpoints("web", |_| true)?;
    c.wait_nexthops(VIP, &[c.lab.node_ip(1)])?;
    Ok(c)
}

#[test]
fn xdp_redirect_is_opt_in_and_a_restart_without_it_turns_it_off() -> anyhow::Result<()> {
    let mut c = one_node_serving_web()?;

    // By default: the kernel's path, nothing listed (the pod's veth could take redirects).
    let (pass, redirected) = dnat_paths(&c, 10)?;
    ensure!(
        pass > 0 && redirected == 0,
        "default: {pass} passed, {redirected} redirected"
    );
    ensure!(
        redirect_state(&c)? == (false, 0),
        "default: {:?}",
        redirect_state(&c)?
    );

    // With --xdp-redirect: the pod's veth is listed (within a refresh) and packets go into it.
    c.stop_daemon(1)?;
    c.daemon_args = vec!["--xdp-redirect".into()];
    c.start_daemon(1)?;
    wait_for("requests redirected into the pod's veth", CONVERGE, || {
        let (_, redirected) = dnat_paths(&c, 2)?;
        Ok((redirected > 0).then_some(()))
    })?;
    let (flag, targets) = redirect_state(&c)?;
    ensure!(
        flag && targets > 0,
        "with --xdp-redirect: flag {flag}, {targets} targets"
    );

    // Restarted without it: the daemon clears what the earlier run left in the pinned maps.
    c.stop_daemon(1)?;
    c.daemon_args.clear();
    c.start_daemon(1)?;
    wait_for("the pinned maps without redirect", CONVERGE, || {
        let state = redirect_state(&c)?;
        ensure!(state == (false, 0), "flag and targets {state:?}");
        Ok(Some(()))
    })?;
    let (pass, redirected) = dnat_paths(&c, 10)?;
    ensure!(
        pass > 0 && redirected == 0,
        "after the restart: {pass} passed, {redirected} redirected"
    );
    Ok(())
}

/// Whether node 1's pinned config has the programs' logging flag.
fn logging(c: &Cluster) -> anyhow::Result<bool> {
    let dir = c.lab.bpffs_dir(1);
    let config: Array<MapData, Config> =
        Array::try_from(Map::Array(MapData::from_pin(dir.join(MAP_CONFIG))?))?;
    Ok(config.get(&0, 0)?.flags & CONFIG_LOG != 0)
}

/// Sets every backend slot of node 1 in state `from` to `to` by hand; returns how many. Active
/// slots marked draining are what a packet between the daemon's two writes would see (the
/// frontend table still names them): a new flow then finds no backend, the rare event
/// `--bpf-log` reports.
fn set_slot_states(c: &Cluster, from: u8, to: u8) -> anyhow::Result<usize> {
    let dir = c.lab.bpffs_dir(1);
    let mut slots: Array<MapData, BackendV4> =
        Array::try_from(Map::Array(MapData::from_pin(dir.join(MAP_BACKENDS_V4))?))?;
    let mut marked = 0;
    for i in 0..slots.len() {
        let mut backend = slots.get(&i, 0)?;
        if backend.state == from {
            backend.state = to;
            slots.set(i, backend, 0)?;
            marked += 1;
        }
    }
    Ok(marked)
}

#[test]
fn bpf_log_is_opt_in_and_brings_a_rare_datapath_event_into_the_daemons_log() -> anyhow::Result<()> {
    let mut c = one_node_serving_web()?;
    let answer = c.lab.tcp_request(VIP, PORT)?;
    ensure!(answer.starts_with("pod1"), "answer: {answer:?}");
    ensure!(!logging(&c)?, "the programs log without --bpf-log");

    c.stop_daemon(1)?;
    c.daemon_args = vec!["--bpf-log".into()];
    c.start_daemon(1)?;
    wait_for("the programs' logging flag", CONVERGE, || {
        Ok(logging(&c)?.then_some(()))
    })?;
    // Should a pass put the slots right in between, mark them again and retry.
    wait_for("the rare event in the daemon's log", CONVERGE, || {
        set_slot_states(&c, BACKEND_ACTIVE, BACKEND_DRAINING)?;
        // Dropped by XDP: no answer.
        let _ = c.lab.tcp_request(VIP, PORT);
        let log = c.daemon_log(1);
        Ok(log
            .lines()
            .any(|l| l.contains("l3lb::datapath") && l.contains("names backend slot"))
            .then_some(()))
    })?;
    ensure!(logging(&c)?, "a pass turned the programs' logging off");
    set_slot_states(&c, BACKEND_DRAINING, BACKEND_ACTIVE)?;

    // Restarted without it: the flag the earlier run left in the pinned config goes off.
    c.stop_daemon(1)?;
    c.daemon_args.clear();
    c.start_daemon(1)?;
    wait_for("the programs' logging flag off", CONVERGE, || {
        Ok((!logging(&c)?).then_some(()))
    })?;
    wait_for("the VIP answering again", CONVERGE, || {
        Ok(c.lab
            .tcp_request(VIP, PORT)
            .ok()
            .filter(|a| a.starts_with("pod1")))
    })?;
    Ok(())
}
