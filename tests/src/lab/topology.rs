//! Namespaces, veths, addresses, routes and sysctls of the lab, in one of two [`Shape`]s.
//!
//! Routed (BGP mode), the default:
//! ```text
//!  client ns            router ns                  node<i> ns                  pod<i> ns
//!  eth0 10.100.0.2 ---- cl0 10.100.0.1
//!                       n<i> 10.100.<i>.1 ------- up0 10.100.<i>.2
//!                                                 pod0 10.244.<i>.1 -------- eth0 10.244.<i>.2
//! ```
//! Every link also carries IPv6: fd00:100::/64 (client), fd00:100:<i>::/64 (node uplinks),
//! fd00:244:<i>::/64 (pods), with `::1` on the router's or node's side and `::2` on the other.
//!
//! Bridged (L2 mode): no router, one segment 10.100.0.0/24 and fd00:100::/64 on a bridge in the
//! switch namespace; the pods as above.
//! ```text
//!  client ns            switch ns (br0)             node<i> ns
//!  eth0 10.100.0.2 ---- cl0
//!                       n<i> -------------------- up0 10.100.0.<100+i>, fd00:100::<100+i>
//! ```
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
/// Most nodes a bridged lab supports (10.100.0.<100+i>).
const MAX_BRIDGED_NODES: usize = 150;
/// The bridge of a bridged lab, in the switch namespace.
const BRIDGE: &str = "br0";

/// How the client reaches the nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Shape {
    /// Through a router running FRR, which peers with FRR on every node over eBGP (BGP mode).
    #[default]
    Routed,
    /// On one Ethernet segment (a bridge) with the nodes: no router, no FRR (L2 mode).
    Bridged,
}

impl Shape {
    pub(crate) fn max_nodes(self) -> usize {
        match self {
            Shape::Routed => MAX_NODES,
            Shape::Bridged => MAX_BRIDGED_NODES,
        }
    }

    /// Node `i`'s uplink address.
    pub(crate) fn node_ip(self, i: usize) -> Ipv4Addr {
        match self {
            Shape::Routed => node_ip(i),
            Shape::Bridged => Ipv4Addr::new(10, 100, 0, 100 + i as u8),
        }
    }

    /// Node `i`'s uplink address (IPv6).
    pub(crate) fn node_ip6(self, i: usize) -> Ipv6Addr {
        match self {
            Shape::Routed => ip6(i, false, 2),
            Shape::Bridged => ip6(0, false, 0x100 + i as u16),
        }
    }
}

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
    /// The router's namespace, or in a bridged lab the switch's (`-switch`).
    pub router: String,
    pub nodes: Vec<String>,
    pub pods: Vec<String>,
}

impl Names {
    pub(crate) fn new(id: &str, nodes: usize, shape: Shape) -> Self {
        let name = |role: &str| format!("l3lb-{id}-{role}");
        let hub = match shape {
            Shape::Routed => "router",
            Shape::Bridged => "switch",
        };
        Names {
            id: id.to_string(),
            client: name("client"),
            router: name(hub),
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
pub(crate) fn build(names: &Names, shape: Shape, created: &mut Vec<String>) -> anyhow::Result<()> {
    for ns in names.all() {
        add_netns(ns, created).with_context(|| format!("creating namespace {ns}"))?;
    }
    match shape {
        Shape::Routed => build_routed(names)?,
        Shape::Bridged => build_bridged(names)?,
    }
    for (idx, (node, pod)) in names.nodes.iter().zip(&names.pods).enumerate() {
        sysctl(
            node,
            &["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"],
        )?;
        pod_link(node, pod, idx + 1)?;
    }
    Ok(())
}

fn build_routed(names: &Names) -> anyhow::Result<()> {
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

    for (idx, node) in names.nodes.iter().enumerate() {
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
    }
    Ok(())
}

/// The client and every node's uplink on one bridge. The client's neighbour entries stay
/// reachable for an hour, a stale one in use is probed only after an hour, and it ignores
/// redirects: an entry for an L2 address changes only when a node announces the address (a
/// gratuitous ARP or unsolicited NA), never because the kernel re-resolved it or a node
/// redirected it while a test watched.
fn build_bridged(names: &Names) -> anyhow::Result<()> {
    let (client, switch) = (names.client.as_str(), names.router.as_str());
    // No multicast snooping: a Neighbour Solicitation for an L2 address goes to its
    // solicited-node group, which no node joins (the responder is XDP), and must reach them all.
    ip(
        switch,
        &[
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ],
    )?;
    ip(switch, &["link", "set", BRIDGE, "up"])?;
    let port = |dev: &str| -> anyhow::Result<()> {
        ip(switch, &["link", "set", dev, "master", BRIDGE])?;
        ip(switch, &["link", "set", dev, "up"])
    };
    veth(client, "eth0", switch, "cl0")?;
    port("cl0")?;
    sysctl(
        client,
        &[
            "net.ipv4.conf.all.accept_redirects=0",
            "net.ipv6.conf.all.accept_redirects=0",
            "net.ipv4.neigh.eth0.base_reachable_time_ms=3600000",
            "net.ipv6.neigh.eth0.base_reachable_time_ms=3600000",
            // A stale entry in use waits this long before it is probed, and keeps its MAC.
            "net.ipv4.neigh.eth0.delay_first_probe_time=3600",
            "net.ipv6.neigh.eth0.delay_first_probe_time=3600",
        ],
    )?;
    addr_up(client, "eth0", CLIENT_IP, CLIENT_IP6)?;
    // As from a real wire (see build_routed): the client's own packets reach the nodes' XDP
    // with full checksums.
    run_in(client, &["ethtool", "-K", "eth0", "tx", "off"])
        .with_context(|| format!("disabling tx checksum offload on eth0 in {client}"))?;
    for (idx, node) in names.nodes.iter().enumerate() {
        let i = idx + 1;
        let link = router_link(i);
        veth(node, UPLINK, switch, &link)?;
        port(&link)?;
        // A test sets an uplink down and up again (a node falling off the segment and coming
        // back): its IPv6 address must come back with it, as a configured host's would.
        sysctl(
            node,
            &[&format!("net.ipv6.conf.{UPLINK}.keep_addr_on_down=1")],
        )?;
        addr_up(
            node,
            UPLINK,
            Shape::Bridged.node_ip(i),
            Shape::Bridged.node_ip6(i),
        )?;
    }
    let mut ports = vec!["cl0".to_owned()];
    ports.extend((1..=names.nodes.len()).map(router_link));
    pass_on(&names.id, switch, &ports)
}

/// Attaches an XDP program that passes everything to each of `ports` in namespace `ns`: a veth
/// schedules its peer's NAPI for XDP frames (a node's XDP_TX: an ARP or NA reply) only when the
/// peer has an XDP program; GRO alone leaves them queued until other traffic passes. A NIC needs
/// nothing of the kind.
fn pass_on(id: &str, ns: &str, ports: &[String]) -> anyhow::Result<()> {
    let pass = crate::raw_bpf::xdp_pass()?;
    let pinned = std::path::Path::new("/sys/fs/bpf").join(format!("l3lb-{id}-xdp-pass"));
    crate::raw_bpf::pin(&pass, &pinned)?;
    let (path, netns) = (
        pinned.to_string_lossy().into_owned(),
        format!("--net=/run/netns/{ns}"),
    );
    // nsenter, not `ip -n`: that mounts a fresh /sys, without the host's bpffs.
    let attached = ports.iter().try_for_each(|dev| {
        let args = [
            "nsenter", &netns, "ip", "link", "set", dev, "xdpdrv", "pinned", &path,
        ];
        run(&args).map(drop)
    });
    // Attached, the program stays with the ports; the pin is not needed any more.
    std::fs::remove_file(&pinned).with_context(|| format!("unpinning {}", pinned.display()))?;
    attached
}

/// The pod of node `i`: a veth from the node, the node as its default gateway.
fn pod_link(node: &str, pod: &str, i: usize) -> anyhow::Result<()> {
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
    )
}

/// Deletes namespace `ns` if it still exists (deleting it also removes its veths).
pub(crate) fn del_netns(ns: &str) -> anyhow::Result<()> {
    if std::path::Path::new("/run/netns").join(ns).exists() {
        run(&["ip", "netns", "del", ns])?;
    }
    Ok(())
}
