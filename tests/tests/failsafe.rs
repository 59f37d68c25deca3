//! Fail-safe advertisement end to end, as root: a daemon that stops renewing (here: frozen with
//! SIGSTOP, as a hung process would be) lets its VIP expire, FRR withdraws it and the router keeps
//! only the other node's path; once the daemon runs again it announces the VIP again.
use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use l3lb_tests::{
    lab::{LabConfig, wait_for},
    scenario::Cluster,
};
use serde_json::Value;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const PORT: u16 = 80;
/// Short, so the test waits little; more than twice the lab's 2 s resync.
const LIFETIME: &str = "5s";
const CONVERGE: Duration = Duration::from_secs(30);

/// Sends SIGCONT on drop, so a failing test never leaves a frozen daemon behind.
struct Frozen(i32);

impl Frozen {
    fn new(pid: u32) -> anyhow::Result<Self> {
        let pid = i32::try_from(pid)?;
        // SAFETY: signalling a child this test started.
        ensure!(unsafe { libc::kill(pid, libc::SIGSTOP) } == 0, "SIGSTOP");
        Ok(Self(pid))
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// The VIP's valid lifetime on node `i`'s `lo`, in seconds, if it is there.
fn vip_lifetime(c: &Cluster, i: usize) -> anyhow::Result<Option<u64>> {
    let out = c
        .lab
        .exec(c.lab.node_ns(i), &["ip", "-j", "addr", "show", "dev", "lo"])?;
    let links: Vec<Value> = serde_json::from_str(&out)?;
    Ok(links
        .iter()
        .filter_map(|l| l["addr_info"].as_array())
        .flatten()
        .find(|a| a["local"].as_str() == Some(&VIP.to_string()))
        .and_then(|a| a["valid_life_time"].as_u64()))
}

#[test]
fn a_hung_daemon_lets_its_vip_expire_and_the_router_withdraws_it() -> anyhow::Result<()> {
    let mut c = Cluster::start(LabConfig::default())?;
    let (n1, n2) = (c.lab.node_ip(1), c.lab.node_ip(2));
    c.apply_service("web", VIP, PORT)?;
    c.apply_endpoints("web", |_| true)?;
    c.wait_nexthops(VIP, &[n1, n2])?;

    // node1's daemon again, with a short lifetime: the restart keeps the VIP, and the next pass
    // renews it with the new lifetime.
    c.stop_daemon(1)?;
    c.daemon_args = vec!["--address-lifetime".into(), LIFETIME.into()];
    let pid = c.start_daemon(1)?;
    wait_for(
        &format!("{VIP} on node1 with a lifetime of at most {LIFETIME}"),
        CONVERGE,
        || match vip_lifetime(&c, 1)? {
            Some(secs) if secs <= 5 => Ok(Some(())),
            seen => bail!("valid lifetime {seen:?}"),
        },
    )?;
    c.wait_nexthops(VIP, &[n1, n2])?;

    // Frozen, it renews nothing: the kernel removes the VIP and FRR withdraws node1's path.
    let frozen = Frozen::new(pid).context("freezing node1's daemon")?;
    wait_for(&format!("{VIP} to expire on node1"), CONVERGE, || {
        let lo = c.lab.lo_addresses(1)?;
        if lo.contains(&IpAddr::V4(VIP)) {
            bail!("lo of node1: {lo:?}")
        }
        Ok(Some(()))
    })?;
    c.wait_nexthops(VIP, &[n2])?;
    ensure!(
        c.lab.lo_addresses(2)?.contains(&IpAddr::V4(VIP)),
        "node2 lost the VIP too"
    );

    // Running again, the daemon's next pass announces the VIP again.
    drop(frozen);
    c.wait_nexthops(VIP, &[n1, n2])?;
    Ok(())
}
