//! End-to-end rows: the same load through l3lb's XDP path, with the DNATed packets handed to the
//! kernel's forwarding path (the default) and redirected into the pod's veth (`--xdp-redirect`),
//! and through the same lab topology with iptables DNAT doing the translation (what kube-proxy
//! does), in one run. Each l3lb measurement records which DNAT verdicts its packets got. UDP: 64-byte frames sent as fast as one thread can (`sendmmsg`, 64 datagrams a
//! call), counted as delivered when they reach the pod's UDP layer (its `Udp: NoPorts` counter:
//! nothing listens on that port, so no receiving application sets the pace). TCP: short
//! connections (connect, one line each way, close) per second.
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, IoSlice, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use l3lb_tests::{
    lab::{Lab, LabConfig, wait_for},
    netns::in_netns,
    scenario::Cluster,
};
use nix::{
    errno::Errno,
    sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, sendmmsg},
};
use serde_json::{Value, json};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// The UDP load's port: served by the VIP, with no listener in the pod.
const SINK_PORT: u16 = 9000;
const ECHO_PORT: u16 = 8080;
/// UDP payload for a 64-byte Ethernet frame (14 + 20 + 8 + 18 + 4 FCS).
const UDP_PAYLOAD: usize = 18;
/// Datagrams per sendmmsg call.
const BATCH: usize = 64;
const SECONDS: u64 = 5;

pub struct Rates {
    pub udp_pps: f64,
    pub tcp_cps: f64,
    /// Through l3lb: the DNAT verdicts each load's packets got.
    pub udp_paths: Option<Paths>,
    pub tcp_paths: Option<Paths>,
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

/// Sends 64-byte frames to `to` from one thread for `secs`, `BATCH` per system call; returns how
/// many the socket took.
fn blast(to: SocketAddrV4, secs: u64) -> anyhow::Result<u64> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(to)?;
    let payload = [0x5au8; UDP_PAYLOAD];
    let slices: Vec<[IoSlice<'_>; 1]> = (0..BATCH).map(|_| [IoSlice::new(&payload)]).collect();
    // Connected: no address per message.
    let addrs: Vec<Option<SockaddrIn>> = vec![None; BATCH];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let (start, mut sent) = (Instant::now(), 0u64);
    while start.elapsed() < Duration::from_secs(secs) {
        match sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices,
            &addrs,
            [],
            MsgFlags::empty(),
        ) {
            Ok(results) => sent += results.count() as u64,
            // A full device queue: the next call tries again.
            Err(Errno::ENOBUFS | Errno::EAGAIN) => {}
            // The pod's port unreachable (nothing listens on the sink port), translated back to
            // the VIP as it should be, reaches this connected socket: a few a second (the pod's
            // ICMP rate limit). It surfaces only when it hits a call's first datagram.
            Err(Errno::ECONNREFUSED) => {}
            Err(e) => return Err(e).context("sendmmsg"),
        }
    }
    Ok(sent)
}

fn measure(lab: &Lab, verdicts: Verdicts<'_>) -> anyhow::Result<Rates> {
    let before = udp_no_ports(lab)?;
    let to = SocketAddrV4::new(VIP, SINK_PORT);
    let (sent, udp_paths) = moved(verdicts, || {
        let sent = in_netns(lab.client_ns(), move || blast(to, SECONDS))??;
        // Let what is still queued arrive.
        std::thread::sleep(Duration::from_millis(300));
        Ok(sent)
    })?;
    let delivered = udp_no_ports(lab)? - before;
    eprintln!(
        "  udp: {sent} frames sent, {delivered} delivered ({:.0} % lost)",
        100.0 * (1.0 - delivered as f64 / sent.max(1) as f64)
    );
    let udp_pps = delivered as f64 / SECONDS as f64;

    let client = lab.client_ns().to_owned();
    let (tcp_cps, tcp_paths) = moved(verdicts, || {
        in_netns(&client, move || -> anyhow::Result<f64> {
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
    })?;
    Ok(Rates {
        udp_pps,
        tcp_cps,
        udp_paths,
        tcp_paths,
    })
}

/// Through l3lb: first as the daemon starts (DNATed packets take the kernel's forwarding path),
/// then restarted with `--xdp-redirect`. Returns (kernel path, redirect).
pub fn through_l3lb() -> anyhow::Result<(Rates, Rates)> {
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
    let kernel = measure(&c.lab, Some(&|| paths_of(&c)))?;
    c.stop_daemon(1)?;
    c.daemon_args = vec!["--xdp-redirect".into()];
    c.start_daemon(1)?;
    // The daemon lists the pod's veth within a refresh; from then on DNATed packets go into it.
    wait_for("DNATed packets redirected", Duration::from_secs(30), || {
        let before = paths_of(&c)?.redirect;
        c.lab.tcp_request(VIP, ECHO_PORT)?;
        Ok((paths_of(&c)?.redirect > before).then_some(()))
    })?;
    let redirect = measure(&c.lab, Some(&|| paths_of(&c)))?;
    Ok((kernel, redirect))
}

pub fn through_iptables() -> anyhow::Result<Rates> {
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
    measure(&lab, None)
}
