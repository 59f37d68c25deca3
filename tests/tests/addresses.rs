//! VIP lifetimes in the kernel, as root, in a scratch network namespace: addresses l3lb adds carry
//! the configured valid/preferred lifetime, a renewal resets it without removing the address, an
//! address nobody renews expires (a dead daemon's VIPs are withdrawn), and `forever` makes one
//! permanent again.
use std::{net::IpAddr, process::Command, time::Duration};

use anyhow::{Context as _, bail, ensure};
use l3lb_tests::{lab::wait_for, netns::in_netns};
use l3lb_userspace::node::{
    addresses::Netlink, executor::AddressTable as _, observe::AddressObserver as _,
};
use serde_json::Value;

/// The kernel's "forever" lifetime.
const FOREVER: u64 = u32::MAX as u64;

/// A scratch network namespace, deleted on drop.
struct ScratchNetns(String);

impl ScratchNetns {
    /// `tag` keeps the names of tests running at once apart.
    fn new(tag: &str) -> anyhow::Result<Self> {
        let name = format!("l3lb-addr-{}-{tag}", std::process::id());
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
    let ns = ScratchNetns::new("life")?;
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

/// l3lb marks its addresses (IFA_PROTO) and only marked ones are its own: an address put inside
/// the prefix by hand is neither observed nor removable by the daemon, and a --prefix covering
/// one, on any interface, is refused at start.
#[test]
fn only_marked_addresses_are_ours_and_a_prefix_over_others_is_refused() -> anyhow::Result<()> {
    let euid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    ensure!(
        euid.ok() == Some(0),
        "this test adds addresses in a scratch network namespace and needs root: \
         `sudo -E env PATH=$PATH cargo test -p l3lb-tests --test addresses`"
    );
    let ns = ScratchNetns::new("mark")?;
    ip(&["-n", &ns.0, "addr", "add", "198.51.100.50/32", "dev", "lo"])?;
    ip(&[
        "-n", &ns.0, "link", "add", "up0", "type", "veth", "peer", "name", "up1",
    ])?;
    ip(&["-n", &ns.0, "addr", "add", "203.0.113.1/24", "dev", "up0"])?;
    in_netns(&ns.0.clone(), marked)?
}

fn marked() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ours: IpAddr = "198.51.100.7".parse()?;
    let ours6: IpAddr = "2001:db8:100::7".parse()?;
    let by_hand: IpAddr = "198.51.100.50".parse()?;
    let lo = rt.block_on(async { Netlink::new("lo", None) })?;
    rt.block_on(lo.add(ours))?;
    rt.block_on(lo.add(ours6))?;
    let seen = rt.block_on(lo.addresses())?;
    ensure!(
        seen.contains(&ours) && seen.contains(&ours6) && !seen.contains(&by_hand),
        "l3lb's addresses on lo: {seen:?}"
    );
    let host = rt.block_on(lo.all_addresses())?;
    ensure!(
        host.iter().any(|a| a.ip == ours && a.ours)
            && host.iter().any(|a| a.ip == by_hand && !a.ours),
        "host addresses: {host:?}"
    );

    let refused = |prefix: &str| -> anyhow::Result<String> {
        let prefixes = [prefix.parse()?];
        match rt.block_on(lo.check_prefixes(&prefixes)) {
            Ok(()) => Ok(String::new()),
            Err(e) => Ok(e.to_string()),
        }
    };
    let msg = refused("198.51.100.0/24")?;
    ensure!(
        msg.contains("198.51.100.50/32 on lo") && !msg.contains("198.51.100.7"),
        "{msg:?}"
    );
    let msg = refused("203.0.113.0/24")?;
    ensure!(msg.contains("203.0.113.1/24 on up0"), "{msg:?}");
    ensure!(
        refused("198.51.100.0/29")?.is_empty(),
        "only l3lb's own address inside"
    );

    // Wanted by a Service, the hand-made address becomes l3lb's (the add replaces it, marked).
    rt.block_on(lo.add(by_hand))?;
    let seen = rt.block_on(lo.addresses())?;
    ensure!(seen.contains(&by_hand), "taken over: {seen:?}");
    Ok(())
}
