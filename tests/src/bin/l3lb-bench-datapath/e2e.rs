//! End-to-end rows: the same load through l3lb's XDP path, with the DNATed packets handed to the
//! kernel's forwarding path (the default) and redirected into the pod's veth (`--xdp-redirect`),
//! and through the same lab topology with iptables DNAT doing the translation (what kube-proxy
//! does) and no XDP program, in one run. Each l3lb measurement records which DNAT verdicts its
//! packets got; the iptables one that no XDP program was attached and its DNAT rule matched.
//!
//! UDP: 64-byte frames from our traffic generator (`generator.rs`), redirected as `xdp_frame`s
//! into the router's end of node 1's uplink, so the node receives them in the uplink's NAPI poll
//! as from a NIC ring (a socket's skbs going into a veth would be copied before XDP sees them,
//! which is not how a NIC feeds XDP). GRO is on for the uplink in every row: it gives the veth
//! its NAPI, which the iptables row needs (with no XDP program) to take redirected frames. One
//! flow; counted as delivered when the datagrams reach the pod's UDP layer (its `Udp: NoPorts`
//! counter: nothing listens on that port, so no receiving application sets the pace).
//! TCP: short connections (connect, one line each way, close) per second from the client.
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use etherparse::PacketBuilder;
use l3lb_tests::{
    lab::{Lab, LabConfig, wait_for},
    netns::in_netns,
    scenario::Cluster,
};
use serde_json::{Value, json};

use crate::{generator::Generator, progress::Progress};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// The UDP load's port: served by the VIP, with no listener in the pod.
const SINK_PORT: u16 = 9000;
const ECHO_PORT: u16 = 8080;
const CLIENT_PORT: u16 = 40_000;
/// UDP payload for a 64-byte Ethernet frame (14 + 20 + 8 + 18 + 4 FCS).
const UDP_PAYLOAD: usize = 18;
const SECONDS: u64 = 5;
/// Frames per generator call: a fraction of a second at the rates seen here.
const CHUNK: u32 = 1 << 18;
/// Upper bound of frames per load, whatever the rate.
const MAX_FRAMES: u64 = 100_000_000;

/// What one UDP load did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Udp {
    pub sent: u64,
    pub delivered: u64,
    pub secs: f64,
    /// The kernel's mean time per generated frame (generator program, redirect and the
    /// receiving NAPI poll on the generator's CPU).
    pub kernel_ns: f64,
}

impl Udp {
    /// Delivered at the pod per second.
    pub fn pps(&self) -> f64 {
        self.delivered as f64 / self.secs
    }

    pub fn loss_pct(&self) -> f64 {
        100.0 * (1.0 - self.delivered as f64 / self.sent.max(1) as f64)
    }
}

pub struct Rates {
    /// None when the kernel refuses the generator's live frames.
    pub udp: Option<Udp>,
    pub tcp_cps: f64,
    /// Through l3lb: the DNAT verdicts each load's packets got.
    pub udp_paths: Option<Paths>,
    pub tcp_paths: Option<Paths>,
    /// Through iptables: packets its DNAT rule for the UDP load matched (conntrack NATs a flow's
    /// first packet through the rule, the rest by the connection's entry).
    pub iptables_rule_packets: Option<u64>,
}

/// Packets DNATed during one measurement, by where they went.
#[derive(Clone, Copy, Debug, Default)]
pub struct Paths {
    /// `xdp_dnat_pass`: to the kernel's forwarding path.
    pub kernel: u64,
    /// `xdp_redirect`: straight into the pod's interface.
    pub redirect: u64,
}

/// Node 1's DNAT verdict counters, when measuring through l3lb.
type Verdicts<'a> = Option<&'a dyn Fn() -> anyhow::Result<Paths>>;

fn paths_of(c: &Cluster) -> anyhow::Result<Paths> {
    let packets: BTreeMap<String, u64> = c.datapath_packets(1)?;
    let get = |name: &str| packets.get(name).copied().unwrap_or(0);
    Ok(Paths {
        kernel: get("xdp_dnat_pass"),
        redirect: get("xdp_redirect"),
    })
}

/// The verdicts that moved while `f` ran.
fn moved<T>(
    verdicts: Verdicts<'_>,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, Option<Paths>)> {
    let Some(read) = verdicts else {
        return Ok((f()?, None));
    };
    let before = read()?;
    let out = f()?;
    let after = read()?;
    Ok((
        out,
        Some(Paths {
            kernel: after.kernel - before.kernel,
            redirect: after.redirect - before.redirect,
        }),
    ))
}

fn wait_route(lab: &Lab) -> anyhow::Result<()> {
    wait_for(
        &format!("router route to {VIP}"),
        Duration::from_secs(30),
        || {
            let hops = lab.router_nexthops(&format!("{VIP}/32"))?;
            if hops.is_empty() {
                bail!("no route yet")
            } else {
                Ok(Some(()))
            }
        },
    )
}

/// The pod's `Udp: NoPorts` counter: datagrams that reached its UDP layer for a port nobody
/// listens on.
fn udp_no_ports(lab: &Lab) -> anyhow::Result<u64> {
    let snmp = lab.exec(lab.pod_ns(1), &["cat", "/proc/net/snmp"])?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        bail!("no Udp lines in /proc/net/snmp:\n{snmp}");
    };
    let column = names
        .split_whitespace()
        .position(|n| n == "NoPorts")
        .context("no NoPorts column")?;
    values
        .split_whitespace()
        .nth(column)
        .context("short Udp line")?
        .parse()
        .context("NoPorts value")
}

/// A line of `/sys/class/net/<dev>/<attr>` inside `ns`.
fn sys_net(lab: &Lab, ns: &str, dev: &str, attr: &str) -> anyhow::Result<String> {
    let path = format!("/sys/class/net/{dev}/{attr}");
    Ok(lab.exec(ns, &["cat", &path])?.trim().to_owned())
}

fn mac(text: &str) -> anyhow::Result<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad MAC address {text:?}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad MAC address {text:?}"))
}

/// The UDP frame as it would arrive from the router: the client's datagram to the VIP's sink
/// port, from the router's end of the uplink to the node's end.
fn frame(lab: &Lab) -> anyhow::Result<Vec<u8>> {
    let router_mac = mac(&sys_net(
        lab,
        lab.router_ns(),
        &lab.router_link(1),
        "address",
    )?)?;
    let node_mac = mac(&sys_net(lab, lab.node_ns(1), lab.uplink(), "address")?)?;
    let mut out = Vec::new();
    PacketBuilder::ethernet2(router_mac, node_mac)
        .ipv4(lab.client_ip().octets(), VIP.octets(), 64)
        .udp(CLIENT_PORT, SINK_PORT)
        .write(&mut out, &[0x5a; UDP_PAYLOAD])
        .context("building the UDP frame")?;
    Ok(out)
}

/// The UDP load: the generator, from a thread in the router's namespace, sends the frame into
/// the router's end of node 1's uplink in chunks for `SECONDS` (at most `MAX_FRAMES`); the
/// pod's counter says how many arrived.
fn udp_load(lab: &Lab, progress: &Progress, name: &str) -> anyhow::Result<Udp> {
    lab.exec(
        lab.node_ns(1),
        &["ethtool", "-K", lab.uplink(), "gro", "on"],
    )
    .context("enabling GRO on the node's uplink (gives the veth NAPI)")?;
    let ifindex: u32 = sys_net(lab, lab.router_ns(), &lab.router_link(1), "ifindex")?
        .parse()
        .context("router link ifindex")?;
    let generator = Arc::new(Generator::load(&frame(lab)?, ifindex)?);
    let before = udp_no_ports(lab)?;
    let total = Duration::from_secs(SECONDS);
    let (mut sent, mut busy, mut kernel_ns) = (0u64, Duration::ZERO, 0.0);
    let mut last_tick = Instant::now();
    while busy < total && sent < MAX_FRAMES {
        let g = Arc::clone(&generator);
        let (took, ns) = in_netns(lab.router_ns(), move || -> anyhow::Result<_> {
            let t = Instant::now();
            let ns = g.send(CHUNK)?;
            Ok((t.elapsed(), ns))
        })??;
        busy += took;
        sent += u64::from(CHUNK);
        kernel_ns += f64::from(ns) * f64::from(CHUNK);
        if last_tick.elapsed() >= Duration::from_secs(1) {
            progress.tick(name, busy, total);
            last_tick = Instant::now();
        }
    }
    // The receiving NAPI polls run as each batch is flushed; wait for any deferred to softirq
    // threads, until the pod's counter stays put from one poll to the next.
    let mut last = None;
    let delivered_total = wait_for(
        "the pod's UDP counter to settle",
        Duration::from_secs(5),
        || {
            let now = udp_no_ports(lab)?;
            let settled = last == Some(now);
            last = Some(now);
            Ok(settled.then_some(now))
        },
    )?;
    let udp = Udp {
        sent,
        delivered: delivered_total - before,
        secs: busy.as_secs_f64(),
        kernel_ns: kernel_ns / sent.max(1) as f64,
    };
    eprintln!(
        "    {name}: {} frames sent in {:.2} s, {} delivered at the pod ({:.2} % lost), {:.0} pps",
        udp.sent,
        udp.secs,
        udp.delivered,
        udp.loss_pct(),
        udp.pps()
    );
    Ok(udp)
}

/// Short TCP connections per second from the client for `SECONDS`.
fn tcp_load(lab: &Lab) -> anyhow::Result<f64> {
    in_netns(lab.client_ns(), move || -> anyhow::Result<f64> {
        let target = SocketAddr::from((VIP, ECHO_PORT));
        let (start, mut done) = (Instant::now(), 0u64);
        while start.elapsed() < Duration::from_secs(SECONDS) {
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"bench\n")?;
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line)?;
            anyhow::ensure!(line.starts_with("pod1 "), "odd answer {line:?}");
            done += 1;
        }
        Ok(done as f64 / start.elapsed().as_secs_f64())
    })?
}

fn measure(
    lab: &Lab,
    verdicts: Verdicts<'_>,
    progress: &Progress,
    live_frames: bool,
    udp_name: &str,
    tcp_name: &str,
) -> anyhow::Result<Rates> {
    let (udp, udp_paths) = if live_frames {
        progress.step(&format!("{udp_name}: generator, {SECONDS} s"));
        let (udp, paths) = moved(verdicts, || udp_load(lab, progress, udp_name))?;
        (Some(udp), paths)
    } else {
        progress.step(&format!("{udp_name}: skipped (no live frames)"));
        (None, None)
    };
    progress.step(&format!("{tcp_name}: short TCP connections, {SECONDS} s"));
    let (tcp_cps, tcp_paths) = moved(verdicts, || tcp_load(lab))?;
    eprintln!("    {tcp_name}: {tcp_cps:.0} connections/s");
    Ok(Rates {
        udp,
        tcp_cps,
        udp_paths,
        tcp_paths,
        iptables_rule_packets: None,
    })
}

/// Steps [`through_l3lb`] and [`through_iptables`] announce.
pub const STEPS: usize = 9;

/// Through l3lb: first as the daemon starts (DNATed packets take the kernel's forwarding path),
/// then restarted with `--xdp-redirect`; the UDP loads only with `live_frames`. Returns (kernel
/// path, redirect).
pub fn through_l3lb(progress: &Progress, live_frames: bool) -> anyhow::Result<(Rates, Rates)> {
    progress.step("lab with l3lb: namespaces, FRR, BGP, daemon, the bench Service");
    let mut c = Cluster::start(LabConfig {
        nodes: 1,
        ..LabConfig::default()
    })?;
    let ports: Vec<Value> = [("sink", SINK_PORT, "UDP"), ("echo", ECHO_PORT, "TCP")]
        .iter()
        .map(|(n, p, proto)| json!({"name": n, "port": p, "protocol": proto}))
        .collect();
    c.api.apply(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "default", "name": "bench"},
        "spec": {"type": "LoadBalancer", "loadBalancerIP": VIP.to_string(), "ports": ports}}))?;
    c.api.apply(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": "bench-x", "labels": {"kubernetes.io/service-name": "bench"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [c.lab.pod_ip(1).to_string()], "nodeName": "node1", "conditions": {"ready": true}}],
        "ports": ports}))?;
    wait_route(&c.lab)?;
    let kernel = measure(
        &c.lab,
        Some(&|| paths_of(&c)),
        progress,
        live_frames,
        "e2e_xdp_pass_udp64",
        "e2e_xdp_kernel_tcp_cps",
    )?;
    progress.step("restarting l3lb with --xdp-redirect");
    c.stop_daemon(1)?;
    c.daemon_args = vec!["--xdp-redirect".into()];
    c.start_daemon(1)?;
    // The daemon lists the pod's veth within a refresh; from then on DNATed packets go into it.
    wait_for("DNATed packets redirected", Duration::from_secs(30), || {
        let before = paths_of(&c)?.redirect;
        c.lab.tcp_request(VIP, ECHO_PORT)?;
        Ok((paths_of(&c)?.redirect > before).then_some(()))
    })?;
    let redirect = measure(
        &c.lab,
        Some(&|| paths_of(&c)),
        progress,
        live_frames,
        "e2e_xdp_redirect_udp64",
        "e2e_xdp_tcp_cps",
    )?;
    Ok((kernel, redirect))
}

/// Packets matched by node 1's DNAT rule for the UDP load (`iptables-save -c`).
fn dnat_rule_packets(lab: &Lab) -> anyhow::Result<u64> {
    let rules = lab.exec(lab.node_ns(1), &["iptables-save", "-c", "-t", "nat"])?;
    let line = rules
        .lines()
        .find(|l| l.contains(&format!("--dport {SINK_PORT}")) && l.contains("-j DNAT"))
        .with_context(|| format!("no DNAT rule for port {SINK_PORT}:\n{rules}"))?;
    // "[packets:bytes] -A PREROUTING ..."
    line.trim_start_matches('[')
        .split(':')
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no counters in {line:?}"))
}

pub fn through_iptables(progress: &Progress, live_frames: bool) -> anyhow::Result<Rates> {
    progress.step("lab without l3lb: namespaces, FRR, BGP, iptables DNAT");
    let lab = Lab::start(LabConfig {
        nodes: 1,
        ..LabConfig::default()
    })?;
    let node = lab.node_ns(1).to_owned();
    let pod = lab.pod_ip(1);
    for (proto, port, to) in [("udp", SINK_PORT, SINK_PORT), ("tcp", ECHO_PORT, ECHO_PORT)] {
        lab.exec(
            &node,
            &[
                "iptables",
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-d",
                &VIP.to_string(),
                "-p",
                proto,
                "--dport",
                &port.to_string(),
                "-j",
                "DNAT",
                "--to-destination",
                &format!("{pod}:{to}"),
            ],
        )?;
    }
    lab.exec(
        &node,
        &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"],
    )?;
    wait_route(&lab)?;
    let link = lab.exec(&node, &["ip", "-d", "link", "show", "dev", lab.uplink()])?;
    if link.contains("prog/xdp") {
        bail!("e2e_iptables_udp64: an XDP program is attached to the uplink:\n{link}");
    }
    let before = dnat_rule_packets(&lab)?;
    let mut rates = measure(
        &lab,
        None,
        progress,
        live_frames,
        "e2e_iptables_udp64",
        "e2e_iptables_tcp_cps",
    )?;
    rates.iptables_rule_packets = Some(dnat_rule_packets(&lab)? - before);
    Ok(rates)
}
