//! End-to-end rows: the same load through l3lb's XDP path and
//! through the same lab topology with iptables DNAT doing the translation (what kube-proxy does),
//! in one run. UDP: 64-byte frames from iperf3 as fast as it can send, counted as delivered to the
//! pod. TCP: short connections (connect, one line each way, close) per second.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use l3lb_tests::{
    lab::{Lab, LabConfig, wait_for},
    netns::in_netns,
    scenario::Cluster,
};
use serde_json::{Value, json};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const IPERF_PORT: u16 = 5201;
const ECHO_PORT: u16 = 8080;
/// UDP payload for a 64-byte Ethernet frame (14 + 20 + 8 + 18 + 4 FCS).
const UDP_PAYLOAD: &str = "18";
const SECONDS: u64 = 5;

pub struct Rates {
    pub udp_pps: f64,
    pub tcp_cps: f64,
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

fn start_iperf(lab: &mut Lab) -> anyhow::Result<()> {
    let ns = lab.pod_ns(1).to_owned();
    let mut cmd = Command::new("iperf3");
    cmd.args(["-s", "-p", &IPERF_PORT.to_string()]);
    lab.spawn_in(&ns, "iperf3-server", cmd)?;
    // The server is up once it accepts on its port inside the pod.
    let pod = lab.pod_ip(1);
    wait_for("iperf3 server listening", Duration::from_secs(10), || {
        let target = SocketAddr::from((pod, IPERF_PORT));
        let ok = in_netns(&ns, move || {
            TcpStream::connect_timeout(&target, Duration::from_secs(1)).is_ok()
        })?;
        Ok(ok.then_some(()))
    })?;
    Ok(())
}

fn measure(lab: &Lab) -> anyhow::Result<Rates> {
    let out = lab.exec(
        lab.client_ns(),
        &[
            "iperf3",
            "-c",
            &VIP.to_string(),
            "-p",
            &IPERF_PORT.to_string(),
            "-u",
            "-b",
            "0",
            "-l",
            UDP_PAYLOAD,
            "-t",
            &SECONDS.to_string(),
            "-J",
        ],
    )?;
    let report: Value = serde_json::from_str(&out).context("iperf3 JSON")?;
    let sum = &report["end"]["sum"];
    let (packets, lost, secs) = (
        sum["packets"].as_f64(),
        sum["lost_packets"].as_f64(),
        sum["seconds"].as_f64(),
    );
    let (Some(packets), Some(lost), Some(secs)) = (packets, lost, secs) else {
        bail!("iperf3 report without packets/lost_packets/seconds: {sum}");
    };
    let udp_pps = (packets - lost) / secs;

    let client = lab.client_ns().to_owned();
    let tcp_cps = in_netns(&client, move || -> anyhow::Result<f64> {
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
    })??;
    Ok(Rates { udp_pps, tcp_cps })
}

pub fn through_l3lb() -> anyhow::Result<Rates> {
    let mut c = Cluster::start(LabConfig {
        nodes: 1,
        ..LabConfig::default()
    })?;
    start_iperf(&mut c.lab)?;
    let ports: Vec<Value> = [
        ("iperf-tcp", IPERF_PORT, "TCP"),
        ("iperf-udp", IPERF_PORT, "UDP"),
        ("echo", ECHO_PORT, "TCP"),
    ]
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
    measure(&c.lab)
}

pub fn through_iptables() -> anyhow::Result<Rates> {
    let mut lab = Lab::start(LabConfig {
        nodes: 1,
        ..LabConfig::default()
    })?;
    start_iperf(&mut lab)?;
    let node = lab.node_ns(1).to_owned();
    let pod = lab.pod_ip(1);
    for (proto, port, to) in [
        ("udp", IPERF_PORT, IPERF_PORT),
        ("tcp", IPERF_PORT, IPERF_PORT),
        ("tcp", ECHO_PORT, ECHO_PORT),
    ] {
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
    measure(&lab)
}
