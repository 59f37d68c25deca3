//! Advertise only what forwards, end to end as root: when another XDP program takes node1's
//! uplink, its daemon withdraws the VIP (the router keeps only node2's path), says why in its log
//! and metrics, and announces again once the uplink is free and its program back.
use std::{net::Ipv4Addr, process::Command, time::Duration};

use anyhow::{Context as _, bail, ensure};
use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use l3lb_common::PROG_XDP_NOOP;
use l3lb_tests::{
    lab::{LabConfig, wait_for},
    netns::in_netns,
    scenario::Cluster,
};
use l3lb_userspace::datapath::EBPF_OBJECT;

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
