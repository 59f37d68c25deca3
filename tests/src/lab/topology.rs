//! Namespaces, veths, addresses, routes and sysctls of the lab.
//!
//! ```text
//!  client ns            router ns                  node<i> ns                  pod<i> ns
//!  eth0 10.100.0.2 ---- cl0 10.100.0.1
//!                       n<i> 10.100.<i>.1 ------- up0 10.100.<i>.2
//!                                                 pod0 10.244.<i>.1 -------- eth0 10.244.<i>.2
//! ```
//! Every link also carries IPv6: fd00:100::/64 (client), fd00:100:<i>::/64 (node uplinks),
//! fd00:244:<i>::/64 (pods), with `::1` on the router's or node's side and `::2` on the other.
//! Veths are created directly inside their namespaces, so names inside are short and fixed; only
//! namespace names carry the lab's unique id.
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Context;

use super::process::{run, run_in};

/// The node's uplink towards the router, same name in every node namespace.
pub const UPLINK: &str = "up0";
/// The node's side of the veth to its pod.
pub const POD_LINK: &str = "pod0";
pub(crate) const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 2);
pub(crate) const ROUTER_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 1);
/// Most nodes a lab supports (third octet of 10.100.<i>.0/24, router link names n<i>).
pub(crate) const MAX_NODES: usize = 200;

/// Router-side interface of the link to node `i`.
pub(crate) fn router_link(i: usize) -> String {
    format!("n{i}")
}

/// 10.100.<i>.1: the router's address on the link to node `i`.
pub(crate) fn router_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 100, i as u8, 1)
}

/// 10.100.<i>.2: node `i`'s uplink address.
pub(crate) fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 100, i as u8, 2)
}

/// 10.244.<i>.1: node `i`'s address towards its pod (the pod's gateway).
pub(crate) fn pod_gw(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, i as u8, 1)
}

/// 10.244.<i>.2: the pod on node `i`.
pub(crate) fn pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, i as u8, 2)
}

/// The IPv6 address `::<host>` of lab network `net` (0: the client's, i: node i's uplink), or of
/// node i's pod network (`pod`).
pub(crate) fn ip6(net: usize, pod: bool, host: u16) -> Ipv6Addr {
    let site = if pod { 0x244 } else { 0x100 };
    Ipv6Addr::new(0xfd00, site, net as u16, 0, 0, 0, 0, host)
}

pub(crate) const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 2);

/// Namespace names of one lab instance: `l3lb-<id>-<role>`.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub id: String,
    pub client: String,
    pub router: String,
    pub nodes: Vec<String>,
    pub pods: Vec<String>,
}

impl Names {
    pub(crate) fn new(id: &str, nodes: usize) -> Self {
        let name = |role: &str| format!("l3lb-{id}-{role}");
        Names {
            id: id.to_string(),
            client: name("client"),
            router: name("router"),
            nodes: (1..=nodes).map(|i| name(&format!("node{i}"))).collect(),
            pods: (1..=nodes).map(|i| name(&format!("pod{i}"))).collect(),
        }
    }

    /// Every namespace, in creation order.
    pub(crate) fn all(&self) -> Vec<&str> {
        let mut v = vec![self.client.as_str(), self.router.as_str()];
        v.extend(self.nodes.iter().map(String::as_str));
        v.extend(self.pods.iter().map(String::as_str));
        v
    }
}

fn sysctl(ns: &str, settings: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["sysctl", "-qw"];
    args.extend_from_slice(settings);
    run_in(ns, &args).map(drop)
}

fn ip(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["ip", "-n", ns];
    full.extend_from_slice(args);
    run(&full).map(drop)
}

/// `a/24` and `a6/64` on `dev` in `ns`, and the link up. No duplicate address detection: the
/// lab's addresses are unique, and a tentative address could not be used for seconds.
fn addr_up(ns: &str, dev: &str, a: Ipv4Addr, a6: Ipv6Addr) -> anyhow::Result<()> {
    ip(ns, &["addr", "add", &format!("{a}/24"), "dev", dev])?;
    ip(
        ns,
        &[
            "-6",
            "addr",
            "add",
            &format!("{a6}/64"),
            "dev",
            dev,
            "nodad",
        ],
    )?;
    ip(ns, &["link", "set", dev, "up"])
}

/// A veth pair: `a_dev` inside `a_ns`, its peer `b_dev` inside `b_ns`.
fn veth(a_ns: &str, a_dev: &str, b_ns: &str, b_dev: &str) -> anyhow::Result<()> {
    ip(
        a_ns,
        &[
            "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", b_ns,
        ],
    )
}

/// Creates one namespace with `lo` up, and records it in `created` (for cleanup) right away.
pub(crate) fn add_netns(ns: &str, created: &mut Vec<String>) -> anyhow::Result<()> {
    run(&["ip", "netns", "add", ns])?;
    created.push(ns.to_string());
    ip(ns, &["link", "set", "lo", "up"])?;
    // No reverse-path filtering anywhere: VIP replies leave nodes with a source the lab routes by BGP.
    sysctl(
        ns,
        &[
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ],
    )
}

/// Builds the whole topology. Every namespace made is pushed to `created` as soon as it exists, so
/// a failure half way still lets the caller delete exactly what was made.
pub(crate) fn build(names: &Names, created: &mut Vec<String>) -> anyhow::Result<()> {
    for ns in names.all() {
        add_netns(ns, created).with_context(|| format!("creating namespace {ns}"))?;
    }
    let (client, router) = (names.client.as_str(), names.router.as_str());

    veth(client, "eth0", router, "cl0")?;
    addr_up(client, "eth0", CLIENT_IP, CLIENT_IP6)?;
    addr_up(router, "cl0", ROUTER_CLIENT_IP, ip6(0, false, 1))?;
    ip(
        client,
        &[
            "route",
            "add",
            "default",
            "via",
            &ROUTER_CLIENT_IP.to_string(),
        ],
    )?;
    ip(
        client,
        &[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &ip6(0, false, 1).to_string(),
        ],
    )?;

    sysctl(
        router,
        &[
            "net.ipv4.ip_forward=1",
            "net.ipv4.fib_multipath_hash_policy=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.fib_multipath_hash_policy=1",
        ],
    )?;

    for (idx, (node, pod)) in names.nodes.iter().zip(&names.pods).enumerate() {
        let i = idx + 1;
        let rlink = router_link(i);
        veth(node, UPLINK, router, &rlink)?;
        addr_up(router, &rlink, router_ip(i), ip6(i, false, 1))?;
        addr_up(node, UPLINK, node_ip(i), ip6(i, false, 2))?;
        // Forwarded packets must reach the node with full checksums, as from a real wire: XDP
        // on the node's uplink cannot handle CHECKSUM_PARTIAL skbs.
        run_in(router, &["ethtool", "-K", &rlink, "tx", "off"])
            .with_context(|| format!("disabling tx checksum offload on {rlink} in {router}"))?;
        ip(
            node,
            &["route", "add", "default", "via", &router_ip(i).to_string()],
        )?;
        ip(
            node,
            &[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &ip6(i, false, 1).to_string(),
            ],
        )?;
        sysctl(
            node,
            &["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"],
        )?;

        veth(pod, "eth0", node, POD_LINK)?;
        addr_up(node, POD_LINK, pod_gw(i), ip6(i, true, 1))?;
        addr_up(pod, "eth0", pod_ip(i), ip6(i, true, 2))?;
        // GRO gives the pod's veth NAPI, so XDP on the node can redirect into it (as a CNI that
        // enables it would); l3lb lists pod0 as a redirect target then.
        run_in(pod, &["ethtool", "-K", "eth0", "gro", "on"])
            .with_context(|| format!("enabling GRO on eth0 in {pod}"))?;
        ip(
            pod,
            &["route", "add", "default", "via", &pod_gw(i).to_string()],
        )?;
        ip(
            pod,
            &[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &ip6(i, true, 1).to_string(),
            ],
        )?;
    }
    Ok(())
}

/// Deletes namespace `ns` if it still exists (deleting it also removes its veths).
pub(crate) fn del_netns(ns: &str) -> anyhow::Result<()> {
    if std::path::Path::new("/run/netns").join(ns).exists() {
        run(&["ip", "netns", "del", ns])?;
    }
    Ok(())
}
