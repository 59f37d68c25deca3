//! VIP lifetimes in the kernel, as root, in a scratch network namespace: addresses l3lb adds carry
//! the configured valid/preferred lifetime, a renewal resets it without removing the address, an
//! address nobody renews expires (a dead daemon's VIPs are withdrawn), and `forever` makes one
//! permanent again.
use std::{net::IpAddr, process::Command, time::Duration};

use anyhow::{Context as _, bail, ensure};
use l3lb_tests::{lab::wait_for, netns::in_netns};
use l3lb_userspace::{addresses::Netlink, apply::AddressTable as _};
use serde_json::Value;

/// The kernel's "forever" lifetime.
const FOREVER: u64 = u32::MAX as u64;

/// A scratch network namespace, deleted on drop.
struct ScratchNetns(String);

impl ScratchNetns {
    fn new() -> anyhow::Result<Self> {
        let name = format!("l3lb-addr-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Self(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip`: install iproute2")?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// (valid, preferred) lifetime in seconds of `addr` on `lo`, as `ip -j addr` shows them.
fn lifetime(ns: &str, addr: IpAddr) -> anyhow::Result<Option<(u64, u64)>> {
    let links: Vec<Value> =
        serde_json::from_str(&ip(&["-n", ns, "-j", "addr", "show", "dev", "lo"])?)?;
    let info = links
        .iter()
        .filter_map(|l| l["addr_info"].as_array())
        .flatten()
        .find(|a| a["local"].as_str() == Some(&addr.to_string()));
    let Some(info) = info else { return Ok(None) };
    let secs = |k: &str| {
        info[k]
            .as_u64()
            .with_context(|| format!("no {k} in {info}"))
    };
    Ok(Some((
        secs("valid_life_time")?,
        secs("preferred_life_time")?,
    )))
}

#[test]
fn vip_lifetime_is_set_renewed_and_expires() -> anyhow::Result<()> {
    let euid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    ensure!(
        euid.ok() == Some(0),
        "this test adds addresses in a scratch network namespace and needs root: \
         `sudo -E env PATH=$PATH cargo test -p l3lb-tests --test addresses`"
    );
    let ns = ScratchNetns::new()?;
    let name = ns.0.clone();
    in_netns(&ns.0.clone(), move || run(&name))?
}

fn run(ns: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let long: IpAddr = "198.51.100.1".parse()?;
    let short: IpAddr = "198.51.100.2".parse()?;
    let (minute, three_secs, forever) = rt.block_on(async {
        Ok::<_, anyhow::Error>((
            Netlink::new("lo", Some(Duration::from_secs(60)))?,
            Netlink::new("lo", Some(Duration::from_secs(3)))?,
            Netlink::new("lo", None)?,
        ))
    })?;

    // Added with a lifetime: the kernel counts it down (valid and preferred alike).
    rt.block_on(minute.add(long))?;
    let (valid, preferred) = lifetime(ns, long)?.context("VIP not added")?;
    ensure!(
        (55..=60).contains(&valid) && (55..=60).contains(&preferred),
        "lifetime {valid}/{preferred}, want 60s"
    );
    ensure!(rt.block_on(minute.addresses())?.contains(&long));

    // A renewal (the same add) resets the lifetime of an address that is already there.
    rt.block_on(three_secs.add(short))?;
    wait_for(
        "the 3 s lifetime to count down",
        Duration::from_secs(5),
        || {
            let seen = lifetime(ns, short)?;
            match seen {
                Some((valid, _)) if valid <= 1 => Ok(Some(())),
                _ => bail!("{short}: {seen:?}"),
            }
        },
    )?;
    rt.block_on(three_secs.add(short))?;
    let seen = lifetime(ns, short)?;
    ensure!(
        matches!(seen, Some((2..=3, _))),
        "after renewal {short}: {seen:?}"
    );

    // Nobody renews it any more: the kernel removes it, as it would a dead daemon's VIP.
    wait_for(
        &format!("{short} to expire"),
        Duration::from_secs(10),
        || {
            let seen = lifetime(ns, short)?;
            if seen.is_none() {
                Ok(Some(()))
            } else {
                bail!("{short}: {seen:?}")
            }
        },
    )?;
    ensure!(lifetime(ns, long)?.is_some(), "{long} expired too early");

    // `forever`: re-adding makes the address permanent again.
    rt.block_on(forever.add(long))?;
    let seen = lifetime(ns, long)?;
    ensure!(
        seen == Some((FOREVER, FOREVER)),
        "{long} with lifetime forever: {seen:?}"
    );
    Ok(())
}
