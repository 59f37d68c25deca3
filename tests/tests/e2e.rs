//! End to end, as root: a router with FRR peering over eBGP with two nodes, each running FRR and a
//! real `l3lb run` against the test API server; a pod behind each node; a client behind the router.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use l3lb_tests::{
    lab::{LabConfig, wait_for},
    scenario::Cluster,
};
use serde_json::{Value, json};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const PORT: u16 = 80;
const CONVERGE: Duration = Duration::from_secs(30);

fn has_vip(c: &Cluster, node: usize, ip: Ipv4Addr) -> anyhow::Result<bool> {
    Ok(c.lab.lo_addresses(node)?.contains(&IpAddr::V4(ip)))
}

fn wait_vip(c: &Cluster, node: usize, present: bool) -> anyhow::Result<()> {
    wait_addr(c, node, VIP, present)
}

fn wait_addr(c: &Cluster, node: usize, vip: Ipv4Addr, present: bool) -> anyhow::Result<()> {
    wait_for(
        &format!(
            "{vip} {} lo of node{node}",
            if present { "on" } else { "off" }
        ),
        CONVERGE,
        || {
            if has_vip(c, node, vip)? == present {
                Ok(Some(()))
            } else {
                bail!("lo of node{node}: {:?}", c.lab.lo_addresses(node)?)
            }
        },
    )
}

/// The value of the sample `name` (with its labels, as exposed) in a Prometheus text body.
/// Adds `ip` to `lo` in `ns` as l3lb does (marked as l3lb's).
fn add_marked(ns: &str, ip: std::net::IpAddr) -> anyhow::Result<()> {
    l3lb_tests::netns::in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            use l3lb_userspace::node::executor::AddressTable as _;
            let lo = l3lb_userspace::node::addresses::Netlink::new("lo", None)?;
            lo.add(ip).await?;
            Ok::<_, anyhow::Error>(())
        })
    })?
}

fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Sends `n` TCP connections and `n` UDP requests to the VIP; every one must succeed and every
/// pod must have seen the client's own address. Returns how many answers each pod gave.
fn spread(c: &Cluster, n: usize) -> anyhow::Result<BTreeMap<String, usize>> {
    spread_to(c, VIP, n)
}

fn spread_to(c: &Cluster, vip: Ipv4Addr, n: usize) -> anyhow::Result<BTreeMap<String, usize>> {
    let client = c.lab.client_ip().to_string();
    let mut per_pod = BTreeMap::new();
    for i in 0..n {
        for (proto, answer) in [
            ("tcp", c.lab.tcp_request(vip, PORT)),
            ("udp", c.lab.udp_request(vip, PORT)),
        ] {
            let answer = answer.with_context(|| format!("{proto} request {i} to {vip}:{PORT}"))?;
            let mut words = answer.split_whitespace();
            let (Some(pod), Some(peer)) = (words.next(), words.next()) else {
                bail!("odd answer {answer:?}")
            };
            let peer_ip = peer.rsplit_once(':').map(|(ip, _)| ip).unwrap_or(peer);
            ensure!(
                peer_ip == client,
                "{pod} saw {peer_ip} over {proto}, not the client's {client}"
            );
            *per_pod.entry(format!("{pod}/{proto}")).or_insert(0) += 1;
        }
    }
    Ok(per_pod)
}

#[test]
fn anycast_vip_end_to_end_with_frr() -> anyhow::Result<()> {
    let mut c = Cluster::start(LabConfig::default())?;
    let (n1, n2) = (c.lab.node_ip(1), c.lab.node_ip(2));

    // A Service whose requested VIP is outside the prefix is refused with a Warning Event.
    c.apply_service("outside", Ipv4Addr::new(203, 0, 113, 7), PORT)?;
    c.apply_endpoints("outside", |_| true)?;
    c.apply_service("web", VIP, PORT)?;
    c.apply_endpoints("web", |_| true)?;

    // Both nodes assume the VIP and the router installs two equal-cost next hops.
    wait_vip(&c, 1, true)?;
    wait_vip(&c, 2, true)?;
    c.wait_nexthops(VIP, &[n1, n2])?;
    for i in [1, 2] {
        ensure!(
            c.daemon_log(i).contains(&format!("assuming address {VIP}")),
            "node{i} log:\n{}",
            c.daemon_log(i)
        );
    }

    // Many connections all succeed, reach both pods, and each pod saw the client's address.
    let per_pod = spread(&c, 48)?;
    println!("answers per pod: {per_pod:?}");
    for key in ["pod1/tcp", "pod2/tcp", "pod1/udp", "pod2/udp"] {
        ensure!(
            per_pod.get(key).copied().unwrap_or(0) > 0,
            "no answer from {key}: {per_pod:?}"
        );
    }

    // Each node's datapath counted what it did: DNAT in XDP, replies translated back in TC.
    for i in [1, 2] {
        let packets = c.datapath_packets(i)?;
        // DNATed: redirected to the pod's veth (GRO on in the lab), or passed to the kernel.
        let dnat = ["xdp_dnat_pass", "xdp_redirect"]
            .iter()
            .map(|c| packets.get(*c).copied().unwrap_or(0))
            .sum::<u64>();
        ensure!(dnat > 0, "node{i}: nothing DNATed in {packets:?}");
        ensure!(
            packets.get("tc_rev_nat").copied().unwrap_or(0) > 0,
            "node{i}: no tc_rev_nat in {packets:?}"
        );
        ensure!(
            packets.get("tc_rev_nat_error") == Some(&0),
            "node{i}: {packets:?}"
        );
        // Per frontend, as `l3lb stats --frontends` reads it: the TCP and UDP frontends both
        // counted, and nothing else listed.
        let per_frontend = c.frontend_packets(i)?;
        let names: Vec<&String> = per_frontend.keys().collect();
        ensure!(
            names == [&format!("{VIP}:{PORT}/tcp"), &format!("{VIP}:{PORT}/udp")]
                && per_frontend.values().all(|n| *n > 0),
            "node{i}: per-frontend packets {per_frontend:?}"
        );
    }

    // A host daemon listening on all addresses (an "sshd" on port 22 in each node) answers on
    // the node's own address but not through the VIP: XDP drops what no frontend serves.
    for i in [1, 2] {
        let ns = c.lab.node_ns(i).to_owned();
        let mut sshd = std::process::Command::new(env!("CARGO_BIN_EXE_l3lb-echo"));
        sshd.args([
            "--name",
            &format!("node{i}-sshd"),
            "--port",
            "22",
            "--bind",
            "0.0.0.0",
        ]);
        c.lab.spawn_in(&ns, &format!("node{i}-sshd"), sshd)?;
        let node = c.lab.node_ip(i);
        wait_for(
            &format!("node{i}'s listener on {node}:22"),
            CONVERGE,
            || c.lab.tcp_request(node, 22).map(Some),
        )?;
    }
    for attempt in 0..3 {
        // Dropped in XDP, so the connect times out: no answer and no reset from the host stack.
        match c.lab.tcp_request(VIP, 22) {
            Ok(answer) => bail!("attempt {attempt}: a listener answered through the VIP: {answer}"),
            Err(e) => ensure!(
                e.chain().any(|e| e
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)),
                "attempt {attempt}: connect to {VIP}:22 did not time out: {e:#}"
            ),
        }
    }
    let dropped: u64 = [1, 2]
        .into_iter()
        .map(|i| {
            Ok(c.datapath_packets(i)?
                .get("xdp_drop_vip_no_frontend")
                .copied()
                .unwrap_or(0))
        })
        .sum::<anyhow::Result<u64>>()?;
    ensure!(
        dropped > 0,
        "no xdp_drop_vip_no_frontend counted on either node"
    );

    // Each daemon's listener: alive, ready once synced, the VIP and its two frontends (TCP, UDP)
    // in the metrics, the DNATed packets counted.
    for i in [1, 2] {
        ensure!(c.http_get(i, "/healthz")?.0 == 200, "node{i} /healthz");
        wait_for(&format!("node{i} /readyz = 200"), CONVERGE, || {
            let (code, body) = c.http_get(i, "/readyz")?;
            ensure!(code == 200, "{code} {body}");
            Ok(Some(()))
        })?;
        wait_for(
            &format!("node{i} /metrics: 1 VIP, 2 frontends, DNAT counted in all and per frontend"),
            CONVERGE,
            || {
                let (code, body) = c.http_get(i, "/metrics")?;
                ensure!(code == 200, "{code} {body}");
                let dnat_via = |v: &str| {
                    metric(
                        &body,
                        &format!(r#"l3lb_datapath_packets_total{{verdict="{v}"}}"#),
                    )
                };
                let (vips, frontends, dnat) = (
                    metric(&body, "l3lb_vips_assumed"),
                    metric(&body, "l3lb_frontends"),
                    dnat_via("xdp_dnat_pass")
                        .zip(dnat_via("xdp_redirect"))
                        .map(|(a, b)| a + b),
                );
                // Per frontend, from the datapath's per-frontend counters (housekeeping tick).
                let per_frontend = |proto: &str| {
                    metric(
                        &body,
                        &format!(
                            r#"l3lb_frontend_packets_total{{vip="{VIP}",port="{PORT}",proto="{proto}"}}"#
                        ),
                    )
                };
                let (tcp, udp) = (per_frontend("tcp"), per_frontend("udp"));
                ensure!(
                    vips == Some(1.0) && frontends == Some(2.0) && dnat.is_some_and(|n| n > 0.0),
                    "vips {vips:?} frontends {frontends:?} dnat {dnat:?}"
                );
                ensure!(
                    tcp.is_some_and(|n| n > 0.0) && udp.is_some_and(|n| n > 0.0),
                    "per-frontend packets: tcp {tcp:?} udp {udp:?}"
                );
                Ok(Some(()))
            },
        )?;
    }

    // The refused Service: one Warning Event saying why (AllocationFailed), nothing assumed.
    let events = c.api.events();
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e["regarding"]["name"] == "outside" || e["involvedObject"]["name"] == "outside")
        .collect();
    // From the allocator alone: one Event, not one per node.
    ensure!(
        refused.len() == 1,
        "not exactly one Event for the refused Service; events: {events:#?}"
    );
    for e in &refused {
        ensure!(e["type"] == "Warning", "{e}");
        let note = e["note"]
            .as_str()
            .or(e["message"].as_str())
            .unwrap_or_default();
        ensure!(
            note.contains("203.0.113.7") && note.contains("outside every address pool"),
            "{e}"
        );
    }
    for i in [1, 2] {
        ensure!(
            !has_vip(&c, i, Ipv4Addr::new(203, 0, 113, 7))?,
            "node{i} assumed the refused VIP"
        );
    }

    // A stray address of l3lb's inside the prefix (one it added and no Service wants any more) is
    // removed; one outside the prefix stays, and so does one inside it that l3lb did not add. The
    // others go on first, so the pass that removes the stray has seen them too.
    let node1 = c.lab.node_ns(1).to_owned();
    c.lab.exec(
        &node1,
        &["ip", "addr", "add", "203.0.113.5/32", "dev", "lo"],
    )?;
    c.lab.exec(
        &node1,
        &["ip", "addr", "add", "198.51.100.99/32", "dev", "lo"],
    )?;
    add_marked(&node1, "198.51.100.98".parse()?)?;
    wait_for("stray 198.51.100.98 removed from node1", CONVERGE, || {
        let lo = c.lab.lo_addresses(1)?;
        if lo.contains(&"198.51.100.98".parse()?) {
            bail!("lo: {lo:?}")
        } else {
            Ok(Some(()))
        }
    })?;
    // Two more full passes (every RESYNC) leave the others alone.
    let passes = || -> anyhow::Result<f64> {
        let (_, body) = c.http_get(1, "/metrics")?;
        metric(&body, "l3lb_reconcile_duration_seconds_count").context("no pass count")
    };
    let before = passes()?;
    wait_for("two more passes on node1", CONVERGE, || {
        let now = passes()?;
        if now >= before + 2.0 {
            Ok(Some(()))
        } else {
            bail!("{now} passes")
        }
    })?;
    for (ip, what) in [
        (Ipv4Addr::new(203, 0, 113, 5), "outside the prefix"),
        (
            Ipv4Addr::new(198, 51, 100, 99),
            "inside the prefix, not l3lb's",
        ),
    ] {
        ensure!(has_vip(&c, 1, ip)?, "{ip} ({what}) was removed");
    }
    ensure!(has_vip(&c, 1, VIP)?, "the stray removal took the VIP too");
    // Gone again, so a restarted daemon's prefix check does not refuse it.
    c.lab.exec(
        &node1,
        &["ip", "addr", "del", "198.51.100.99/32", "dev", "lo"],
    )?;

    // node1 is labelled out of external load balancers: it withdraws the VIP (the router drops
    // that path, traffic goes to pod2 only) but keeps its frontends so flows drain; says why in
    // its log and an Event on the Node. Without the label it announces again.
    let exclude = |labels: Value| c.apply_node(1, labels, false);
    exclude(json!({"node.kubernetes.io/exclude-from-external-load-balancers": "true"}))?;
    wait_vip(&c, 1, false)?;
    c.wait_nexthops(VIP, &[n2])?;
    let per_pod = spread(&c, 8)?;
    ensure!(
        per_pod.keys().all(|k| k.starts_with("pod2/")),
        "traffic reached the excluded node: {per_pod:?}"
    );
    ensure!(
        c.daemon_log(1)
            .contains("node excluded from load balancing"),
        "node1 log:\n{}",
        c.daemon_log(1)
    );
    wait_for("node1 metrics: excluded, frontends kept", CONVERGE, || {
        let (_, body) = c.http_get(1, "/metrics")?;
        let (excluded, frontends) = (
            metric(&body, "l3lb_node_excluded"),
            metric(&body, "l3lb_frontends"),
        );
        ensure!(
            excluded == Some(1.0) && frontends == Some(2.0),
            "excluded {excluded:?} frontends {frontends:?}"
        );
        Ok(Some(()))
    })?;
    wait_for("an Event on Node node1", CONVERGE, || {
        let events = c.api.events();
        Ok(events
            .iter()
            .any(|e| e["regarding"]["kind"] == "Node" && e["reason"] == "VIPsWithdrawn")
            .then_some(()))
    })?;
    exclude(json!({}))?;
    wait_vip(&c, 1, true)?;
    c.wait_nexthops(VIP, &[n1, n2])?;

    // The endpoint on node2 turns not-Ready: node2 forfeits, the router drops that path.
    c.apply_endpoints("web", |i| i == 1)?;
    wait_vip(&c, 2, false)?;
    c.wait_nexthops(VIP, &[n1])?;
    ensure!(
        c.daemon_log(2)
            .contains(&format!("forfeiting address {VIP}")),
        "node2 log:\n{}",
        c.daemon_log(2)
    );
    ensure!(has_vip(&c, 1, VIP)?, "node1 must keep the VIP");
    // Each announcement and withdrawal is a Normal Event on the Service, saying which node and why.
    wait_for("VIP Events on Service web", CONVERGE, || {
        let notes: Vec<String> = c
            .api
            .events()
            .iter()
            .filter(|e| e["regarding"]["name"] == "web" && e["type"] == "Normal")
            .map(|e| format!("{} {}", e["reason"], e["note"]))
            .collect();
        let has = |reason: &str, text: &str| {
            notes
                .iter()
                .any(|n| n.starts_with(&format!("\"{reason}\"")) && n.contains(text))
        };
        let want = [
            ("VIPAssumed", format!("node node1 announces {VIP}")),
            ("VIPAssumed", format!("node node2 announces {VIP}")),
            (
                "VIPForfeited",
                format!("node node1 withdrew {VIP}: the node is excluded"),
            ),
            (
                "VIPForfeited",
                format!("node node2 withdrew {VIP}: no Ready endpoint"),
            ),
        ];
        match want.iter().find(|(r, t)| !has(r, t)) {
            None => Ok(Some(())),
            Some(missing) => bail!("no {missing:?} among {notes:#?}"),
        }
    })?;
    let per_pod = spread(&c, 16)?;
    ensure!(
        per_pod.keys().all(|k| k.starts_with("pod1/")),
        "traffic reached a forfeited node: {per_pod:?}"
    );

    // A daemon restart leaves the wanted address and the pinned datapath alone: traffic flows
    // while it is down, and the restarted daemon reuses the maps (nothing re-programmed, no
    // forfeit, no re-assume). tests/restart.rs covers connections across the restart.
    c.stop_daemon(1)?;
    ensure!(
        has_vip(&c, 1, VIP)?,
        "the VIP went away when the daemon stopped"
    );
    spread(&c, 8).context("requests while node1's daemon is down")?;
    c.start_daemon(1)?;
    wait_for("restarted node1 daemon synced", CONVERGE, || {
        Ok(c.daemon_log(1).contains("watches synced").then_some(()))
    })?;
    spread(&c, 8)?;
    let log = c.daemon_log(1);
    ensure!(
        log.contains("reused pinned datapath state"),
        "restart did not reuse the pinned maps:\n{log}"
    );
    ensure!(
        !log.contains("assuming address")
            && !log.contains("forfeiting address")
            && !log.contains("frontend programmed"),
        "restart moved the address or re-programmed the maps:\n{log}"
    );
    ensure!(has_vip(&c, 1, VIP)?, "VIP lost over the restart");

    // Deleting the Service withdraws the VIP everywhere.
    c.delete_service("web")?;
    wait_vip(&c, 1, false)?;
    wait_vip(&c, 2, false)?;
    c.wait_nexthops(VIP, &[])?;
    Ok(())
}

/// Waits until Service `name`'s status records exactly `want`.
fn wait_ingress(c: &Cluster, name: &str, want: Ipv4Addr) -> anyhow::Result<()> {
    wait_for(&format!("{name} allocated {want}"), CONVERGE, || {
        let got = c.ingress(name);
        if got == [IpAddr::V4(want)] {
            Ok(Some(()))
        } else {
            bail!("status.loadBalancer.ingress {got:?}")
        }
    })
}

#[test]
fn a_service_without_an_address_gets_one_from_the_pool_and_keeps_it() -> anyhow::Result<()> {
    let mut c = Cluster::start(LabConfig::default())?;
    let (n1, n2) = (c.lab.node_ip(1), c.lab.node_ip(2));
    let first = Ipv4Addr::new(198, 51, 100, 1);
    let next = Ipv4Addr::new(198, 51, 100, 2);

    // Requested .10 and auto-assigned: the auto one gets the pool's first host address.
    c.apply_service("web", VIP, PORT)?;
    c.apply_endpoints("web", |_| true)?;
    c.apply_lb_service("auto", None, PORT)?;
    c.apply_endpoints("auto", |_| true)?;
    wait_ingress(&c, "web", VIP)?;
    wait_ingress(&c, "auto", first)?;

    // Both nodes assume the allocated address, the router has both paths, it answers.
    wait_addr(&c, 1, first, true)?;
    wait_addr(&c, 2, first, true)?;
    c.wait_nexthops(first, &[n1, n2])?;
    let per_pod = spread_to(&c, first, 16)?;
    println!("answers per pod through {first}: {per_pod:?}");
    for key in ["pod1/tcp", "pod2/tcp", "pod1/udp", "pod2/udp"] {
        ensure!(
            per_pod.contains_key(key),
            "no answer from {key}: {per_pod:?}"
        );
    }
    let assigned: Vec<Value> = c
        .api
        .events()
        .into_iter()
        .filter(|e| e["regarding"]["name"] == "auto" && e["reason"] == "AddressAssigned")
        .collect();
    ensure!(
        assigned.len() == 1
            && assigned[0]["note"]
                .as_str()
                .is_some_and(|n| n.contains("pool lab")),
        "{assigned:#?}"
    );

    // The allocator's daemon stops: the other node's takes over (the Lease is released on
    // SIGTERM), keeps both addresses and gives a new Service the next free one.
    let leader = c.allocator().context("nobody holds the allocator Lease")?;
    let other = 3 - leader;
    c.stop_daemon(leader)?;
    c.apply_lb_service("later", None, PORT)?;
    c.apply_endpoints("later", |_| true)?;
    wait_ingress(&c, "later", next)?;
    ensure!(
        c.allocator() == Some(other),
        "allocator {:?}",
        c.allocator()
    );
    ensure!(
        c.daemon_log(other).contains("acquired the allocator Lease"),
        "node{other} log:\n{}",
        c.daemon_log(other)
    );
    wait_addr(&c, other, next, true)?;

    // The stopped daemon comes back: nothing is allocated anew, nothing moves.
    c.start_daemon(leader)?;
    wait_for("restarted daemon synced", CONVERGE, || {
        Ok(c.daemon_log(leader)
            .contains("watches synced")
            .then_some(()))
    })?;
    wait_addr(&c, leader, next, true)?;
    for (name, ip) in [("web", VIP), ("auto", first), ("later", next)] {
        ensure!(
            c.ingress(name) == [IpAddr::V4(ip)],
            "{name}: {:?}",
            c.ingress(name)
        );
    }
    ensure!(
        !c.daemon_log(leader).contains("addresses assigned"),
        "the restarted daemon allocated:\n{}",
        c.daemon_log(leader)
    );
    spread_to(&c, first, 4)?;
    Ok(())
}
