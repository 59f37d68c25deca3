//! End to end, as root: an IPv6 VIP. Both nodes put it on `lo` as a /128, FRR advertises it over
//! the IPv6 BGP sessions and the router installs both paths; TCP and UDP from the client reach
//! both pods through XDP's DNAT, every pod sees the client's own IPv6 address, and replies come
//! back from the VIP (the client's sockets accept them).
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr},
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use l3lb_tests::{
    lab::{LabConfig, wait_for},
    scenario::{Cluster, EndpointState},
};
use serde_json::json;

const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10);
const PORT: u16 = 80;
const CONVERGE: Duration = Duration::from_secs(30);

fn apply(c: &Cluster) -> anyhow::Result<()> {
    let echo = c.lab.config().echo_port;
    let ports = json!([
        {"name": "tcp", "port": PORT, "protocol": "TCP", "targetPort": echo},
        {"name": "udp", "port": PORT, "protocol": "UDP", "targetPort": echo},
    ]);
    c.api.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "default", "name": "web6"},
        "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv6"], "loadBalancerIP": VIP.to_string(),
                 "ports": ports},
    }))?;
    let endpoints: Vec<_> = (1..=c.lab.config().nodes)
        .map(|i| (IpAddr::V6(c.lab.pod_ip6(i)), i, EndpointState::Ready))
        .collect();
    c.apply_endpoint_list("web6", &endpoints)
}

#[test]
fn ipv6_vip_end_to_end_with_source_preserved() -> anyhow::Result<()> {
    let mut c = Cluster::start(LabConfig::default())?;
    // Redirect into the pods' veths is opt-in; this test covers it for IPv6.
    c.daemon_args = vec!["--xdp-redirect".into()];
    for i in [1, 2] {
        c.stop_daemon(i)?;
        c.start_daemon(i)?;
    }
    apply(&c)?;
    for i in [1, 2] {
        wait_for(&format!("{VIP} on lo of node{i}"), CONVERGE, || {
            let lo = c.lab.lo_addresses(i)?;
            if lo.contains(&IpAddr::V6(VIP)) {
                Ok(Some(()))
            } else {
                bail!("lo of node{i}: {lo:?}")
            }
        })?;
    }
    let want = vec![c.lab.router_link(1), c.lab.router_link(2)];
    wait_for("router IPv6 route via both nodes", CONVERGE, || {
        let hops = c.lab.router_nexthops6(&format!("{VIP}/128"))?;
        if hops == want {
            Ok(Some(()))
        } else {
            bail!("next hops {hops:?}")
        }
    })?;

    let client = c.lab.client_ip6().to_string();
    let mut per_pod: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..32 {
        for (proto, answer) in [
            ("tcp", c.lab.tcp_request(VIP, PORT)),
            ("udp", c.lab.udp_request(VIP, PORT)),
        ] {
            let answer =
                answer.with_context(|| format!("{proto} request {i} to [{VIP}]:{PORT}"))?;
            let mut words = answer.split_whitespace();
            let (Some(pod), Some(peer)) = (words.next(), words.next()) else {
                bail!("odd answer {answer:?}")
            };
            let peer_ip = peer
                .rsplit_once(':')
                .map(|(ip, _)| ip.trim_matches(['[', ']']))
                .unwrap_or(peer);
            ensure!(
                peer_ip == client,
                "{pod} saw {peer_ip} over {proto}, not the client's {client}"
            );
            *per_pod.entry(format!("{pod}/{proto}")).or_insert(0) += 1;
        }
    }
    println!("IPv6 answers per pod: {per_pod:?}");
    for key in ["pod1/tcp", "pod2/tcp", "pod1/udp", "pod2/udp"] {
        ensure!(
            per_pod.get(key).copied().unwrap_or(0) > 0,
            "no answer from {key}: {per_pod:?}"
        );
    }
    for i in [1, 2] {
        let packets = c.datapath_packets(i)?;
        // The lab's pod veths have GRO on: XDP redirects into them once the neighbour is known.
        for counter in ["xdp_redirect", "tc_rev_nat"] {
            ensure!(
                packets.get(counter).copied().unwrap_or(0) > 0,
                "node{i}: no {counter} in {packets:?}"
            );
        }
    }
    Ok(())
}
