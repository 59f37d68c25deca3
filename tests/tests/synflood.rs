//! End to end, as root: a flood of spoofed SYNs to a served VIP:port does not break established
//! flows through the same VIP. 16 long-lived TCP connections are opened first; then the client's
//! namespace sends more than a million SYNs, each from another spoofed source (100.64.0.0/10,
//! which the router routes back to the client, where the pod's SYN-ACKs die). Every time the
//! node has seen another [`ROUND_EVERY`] new flows (more than its flow tables hold), every
//! connection does a round in both directions: the pod speaks first (a server push, as after an
//! idle spell), then the client sends a line and the pod echoes it. No packet from a pod address
//! may reach the router for the whole test: every reply leaves the node translated.
//!
//! The pod side of the connections is a listener of this test process inside the pod's
//! namespace (`l3lb-echo` only ever answers): it lets the pod send first, which is what an
//! evicted reply translation breaks (a client packet alone would re-create it).
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use l3lb_common::MAX_FLOWS;
use l3lb_tests::{
    flood::SynFlood,
    lab::{LabConfig, wait_for},
    netns::in_netns,
    scenario::Cluster,
};
use serde_json::json;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 40);
const PORT: u16 = 80;
/// The test's own listener in the pod (the lab's echo server has the echo port).
const POD_PORT: u16 = 9090;
const CONNECTIONS: usize = 16;
/// New flows the node must see during the flood.
const FLOOD: u64 = 1_000_000;
/// New flows between two rounds: more than the flow tables hold, so a table that recorded the
/// flood's flows with the established ones has turned over completely in between.
const ROUND_EVERY: u64 = MAX_FLOWS as u64 + 70_000;
/// Spoofed sources: the router routes them back to the client's namespace.
const SPOOFED: &str = "100.64.0.0/10";
/// Bounds of the flood, whatever the counters say. On the 2-core test machine the flood takes
/// about 20 s when idle (some 60,000 SYNs a second through the whole chain), but over 2 minutes
/// while other builds hold both cores (7,300 a second seen).
const FLOOD_MAX_PACKETS: u64 = 4_000_000;
const FLOOD_MAX_TIME: Duration = Duration::from_secs(240);
/// A round's reads may wait behind the flood's queues and a retransmission or two.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Source prefixes of pod addresses (IPv4, IPv6) in the lab.
const POD_SOURCES: [(&str, &str); 2] = [
    ("iptables", "10.244.0.0/16"),
    ("ip6tables", "fd00:244::/32"),
];

/// One connection: the client's end (in the client namespace) and the pod's (in the pod's).
struct Conn {
    client: BufReader<TcpStream>,
    pod: BufReader<TcpStream>,
}

fn read_line(r: &mut BufReader<TcpStream>, what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    let n = r.read_line(&mut line).with_context(|| what.to_owned())?;
    ensure!(n > 0, "{what}: connection closed");
    Ok(line.trim_end().to_owned())
}

impl Conn {
    /// The pod sends a line first, then the client sends one and the pod echoes it back.
    fn round(&mut self, tag: &str) -> anyhow::Result<()> {
        let push = format!("push {tag}");
        self.pod
            .get_ref()
            .write_all(format!("{push}\n").as_bytes())?;
        let got = read_line(&mut self.client, "the client reading the pod's push")?;
        ensure!(got == push, "the client read {got:?}, not {push:?}");
        let line = format!("echo {tag}");
        self.client
            .get_ref()
            .write_all(format!("{line}\n").as_bytes())?;
        let got = read_line(&mut self.pod, "the pod reading the client's line")?;
        ensure!(got == line, "the pod read {got:?}, not {line:?}");
        self.pod
            .get_ref()
            .write_all(format!("{got}\n").as_bytes())?;
        let back = read_line(&mut self.client, "the client reading the echo")?;
        ensure!(back == line, "the client read {back:?}, not {line:?}");
        Ok(())
    }
}

/// Opens `CONNECTIONS` connections from the client through the VIP to the test's listener in the
/// pod, and pairs each client end with the pod end that accepted it (the pod sees the client's
/// own address and port).
fn connect(c: &Cluster) -> anyhow::Result<Vec<Conn>> {
    let listener = in_netns(c.lab.pod_ns(1), || {
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, POD_PORT))
    })??;
    let to = SocketAddr::from((VIP, PORT));
    let clients = in_netns(c.lab.client_ns(), move || {
        (0..CONNECTIONS)
            .map(|_| TcpStream::connect_timeout(&to, IO_TIMEOUT))
            .collect::<std::io::Result<Vec<_>>>()
    })??;
    let mut pods = BTreeMap::new();
    for _ in 0..CONNECTIONS {
        let (stream, peer) = listener.accept()?;
        pods.insert(peer, stream);
    }
    clients
        .into_iter()
        .map(|client| {
            let local = client.local_addr()?;
            let pod = pods
                .remove(&local)
                .with_context(|| format!("no pod end for {local}: the pod saw {pods:?}"))?;
            for s in [&client, &pod] {
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
            }
            Ok(Conn {
                client: BufReader::new(client),
                pod: BufReader::new(pod),
            })
        })
        .collect()
}

/// Packets from pod addresses the router forwarded (counted by rules added at the start).
fn untranslated(c: &Cluster) -> anyhow::Result<u64> {
    let mut total = 0;
    for (tool, prefix) in POD_SOURCES {
        let out = c.lab.exec(
            c.lab.router_ns(),
            &[tool, "-w", "-n", "-v", "-x", "-L", "FORWARD"],
        )?;
        let line = out
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == prefix))
            .with_context(|| format!("no counting rule for {prefix} in:\n{out}"))?;
        let packets: u64 = line
            .split_whitespace()
            .next()
            .context("empty rule line")?
            .parse()?;
        total += packets;
    }
    Ok(total)
}

fn counter(packets: &BTreeMap<String, u64>, name: &str) -> u64 {
    packets.get(name).copied().unwrap_or(0)
}

/// Every connection does a round; the first failure says which and how many packets left
/// untranslated so far.
fn round_all(c: &Cluster, conns: &mut [Conn], tag: &str) -> anyhow::Result<()> {
    for (i, conn) in conns.iter_mut().enumerate() {
        if let Err(e) = conn.round(&format!("{tag} {i}")) {
            let leaked = untranslated(c).map_or_else(|e| format!("? ({e:#})"), |n| n.to_string());
            bail!(
                "connection {i}, round {tag:?}: {e:#}; packets from pod addresses at the router so far: {leaked}"
            );
        }
    }
    Ok(())
}

#[test]
fn a_spoofed_syn_flood_does_not_break_established_flows() -> anyhow::Result<()> {
    let c = Cluster::start(LabConfig {
        nodes: 1,
        ..LabConfig::default()
    })?;
    let router = c.lab.router_ns().to_owned();
    // The pod's SYN-ACKs to the spoofed sources go back to the client, which drops them.
    let client_ip = c.lab.client_ip().to_string();
    c.lab
        .exec(&router, &["ip", "route", "add", SPOOFED, "via", &client_ip])?;
    for (tool, prefix) in POD_SOURCES {
        c.lab
            .exec(&router, &[tool, "-w", "-A", "FORWARD", "-s", prefix])?;
    }

    let ports = json!([{"name": "tcp", "port": PORT, "protocol": "TCP", "targetPort": POD_PORT}]);
    c.api.apply(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "default", "name": "flood"},
        "spec": {"type": "LoadBalancer", "loadBalancerIP": VIP.to_string(), "ports": ports}}))?;
    c.api.apply(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": "flood-x1",
                     "labels": {"kubernetes.io/service-name": "flood"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [c.lab.pod_ip(1).to_string()], "nodeName": "node1",
                       "conditions": {"ready": true}}],
        "ports": [{"name": "tcp", "port": POD_PORT, "protocol": "TCP"}]}),
    )?;
    c.wait_nexthops(VIP, &[c.lab.node_ip(1)])?;

    let mut conns = connect(&c)?;
    round_all(&c, &mut conns, "before")?;
    let before = c.datapath_packets(1)?;

    let flood = SynFlood {
        to: SocketAddrV4::new(VIP, PORT),
        sources: SPOOFED.parse()?,
        max_packets: FLOOD_MAX_PACKETS,
        max_duration: FLOOD_MAX_TIME,
    }
    .start(c.lab.client_ns())?;
    let started = Instant::now();
    let new_flows = || -> anyhow::Result<u64> {
        Ok(counter(&c.datapath_packets(1)?, "xdp_flow_new") - counter(&before, "xdp_flow_new"))
    };
    let mut rounds = 0;
    let seen = loop {
        let next = (rounds + 1) * ROUND_EVERY;
        let seen = wait_for(
            "the node to count the flood's next flows",
            FLOOD_MAX_TIME,
            || {
                let seen = new_flows()?;
                let done = seen >= next.min(FLOOD) || flood.finished();
                Ok(done.then_some(seen))
            },
        )?;
        ensure!(
            seen >= next.min(FLOOD),
            "the flood ended after {:.1?} with {seen} new flows counted at the node",
            started.elapsed()
        );
        if seen >= next {
            rounds += 1;
            println!(
                "round {rounds} at {seen} new flows, {:.1?} into the flood",
                started.elapsed()
            );
            round_all(&c, &mut conns, &format!("flood {rounds}"))?;
        }
        if seen >= FLOOD {
            break seen;
        }
    };
    let sent = flood.stop()?;
    let flood_time = started.elapsed();
    round_all(&c, &mut conns, "after")?;

    let after = c.datapath_packets(1)?;
    let grown: BTreeMap<&str, u64> = after
        .iter()
        .map(|(k, v)| (k.as_str(), v - counter(&before, k)))
        .filter(|(_, v)| *v > 0)
        .collect();
    println!(
        "flood: {} SYNs sent in {:.1?} ({:.0}/s), {seen} new flows counted at the node when it \
         stopped ({flood_time:.1?}); {rounds} rounds during the flood; node counters grew {grown:?}",
        sent.packets,
        sent.elapsed,
        sent.rate()
    );
    ensure!(rounds >= 3, "only {rounds} rounds during the flood");
    ensure!(
        counter(&after, "xdp_flow_new") - counter(&before, "xdp_flow_new") >= FLOOD,
        "the node counted fewer than {FLOOD} new flows: {grown:?}"
    );
    ensure!(
        counter(&after, "tc_rev_nat_error") == 0,
        "replies dropped half-translated: {grown:?}"
    );
    let leaked = untranslated(&c)?;
    ensure!(
        leaked == 0,
        "{leaked} packets from pod addresses reached the router: replies left untranslated"
    );
    Ok(())
}
