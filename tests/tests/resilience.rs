//! Resilience end to end, as root: the API server goes down for 30 s (listeners closed, every
//! connection cut) and nothing is withdrawn, traffic keeps flowing, the VIP's lifetime keeps
//! being renewed; a change made meanwhile is applied once it is back. A 410 Gone relist and a
//! daemon restart do not flap the VIP either: the kernel's own address events show no removal.
use std::{
    net::{IpAddr, Ipv4Addr},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use l3lb_tests::{
    lab::{LabConfig, wait_for},
    scenario::Cluster,
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 40);
const PORT: u16 = 80;
const OUTAGE: Duration = Duration::from_secs(30);
/// The watches back off while the API server is away (kube-rs: up to 30 s between attempts).
const RECONNECT: Duration = Duration::from_secs(60);

fn has_vip(c: &Cluster, i: usize) -> anyhow::Result<bool> {
    Ok(c.lab.lo_addresses(i)?.contains(&IpAddr::V4(VIP)))
}

/// Lines of `ip monitor address` in node `i` that delete the VIP.
fn vip_deletions(c: &Cluster, i: usize) -> anyhow::Result<Vec<String>> {
    let log = std::fs::read_to_string(c.lab.workdir().join(format!("monitor-node{i}.log")))?;
    Ok(log
        .lines()
        .filter(|l| l.starts_with("Deleted") && l.contains(&format!("{VIP}/32")))
        .map(str::to_owned)
        .collect())
}

#[test]
fn api_server_outage_relist_and_restart_withdraw_nothing() -> anyhow::Result<()> {
    let mut c = Cluster::start(LabConfig::default())?;
    let (n1, n2) = (c.lab.node_ip(1), c.lab.node_ip(2));
    c.apply_service("web", VIP, PORT)?;
    c.apply_endpoints("web", |_| true)?;
    c.wait_nexthops(VIP, &[n1, n2])?;
    for i in [1, 2] {
        let ns = c.lab.node_ns(i).to_owned();
        let mut monitor = Command::new("ip");
        monitor.args(["-o", "monitor", "address"]);
        c.lab.spawn_in(&ns, &format!("monitor-node{i}"), monitor)?;
    }

    // Down for 30 s: both nodes keep the VIP, the router both paths, clients their answers.
    c.api.stop();
    let down = Instant::now();
    let mut answers = 0;
    while down.elapsed() < OUTAGE {
        for i in [1, 2] {
            ensure!(
                has_vip(&c, i)?,
                "node{i} withdrew after {:?} without an API server",
                down.elapsed()
            );
        }
        let hops = c.lab.router_nexthops(&format!("{VIP}/32"))?;
        ensure!(
            hops.len() == 2,
            "router next hops {hops:?} during the outage"
        );
        c.lab
            .tcp_request(VIP, PORT)
            .with_context(|| format!("request {answers} during the outage"))?;
        answers += 1;
        // Meanwhile pod2 turns not-Ready; nobody can tell node2 yet.
        if answers == 10 {
            c.apply_endpoints("web", |i| i == 1)?;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("{answers} answers during a {OUTAGE:?} outage");
    for i in [1, 2] {
        let log = c.daemon_log(i);
        ensure!(
            log.contains("watch failed; retrying"),
            "node{i} did not notice the outage:\n{log}"
        );
        ensure!(!log.contains("forfeiting"), "node{i} forfeited:\n{log}");
    }

    // Back: the daemons relist and apply what changed while they could not see it.
    c.runtime.block_on(c.api.restart())?;
    wait_for(
        "node2 to forfeit after the outage",
        RECONNECT,
        || match has_vip(&c, 2)? {
            false => Ok(Some(())),
            true => bail!("node2 still has {VIP}"),
        },
    )?;
    c.wait_nexthops(VIP, &[n1])?;

    // 410 Gone: every watch relists; nothing withdrawn, and the next change still applies.
    let gone = c.api.gone_served();
    c.api.compact();
    wait_for("a 410 Gone served", RECONNECT, || {
        Ok((c.api.gone_served() > gone).then_some(()))
    })?;
    c.apply_endpoints("web", |_| true)?;
    c.wait_nexthops(VIP, &[n1, n2])?;

    // A daemon restart keeps node1's VIP on its interface throughout.
    c.stop_daemon(1)?;
    c.start_daemon(1)?;
    wait_for("restarted node1 synced", RECONNECT, || {
        Ok(c.daemon_log(1).contains("watches synced").then_some(()))
    })
    .with_context(|| format!("node1's log:\n{}", c.daemon_log(1)))?;
    c.lab.tcp_request(VIP, PORT)?;
    let n1_deleted = vip_deletions(&c, 1)?;
    ensure!(
        n1_deleted.is_empty(),
        "node1's VIP was removed at some point: {n1_deleted:?}"
    );
    let n2_deleted = vip_deletions(&c, 2)?;
    ensure!(
        n2_deleted.len() == 1,
        "node2's VIP should have been removed exactly once (after the outage): {n2_deleted:?}"
    );
    Ok(())
}
