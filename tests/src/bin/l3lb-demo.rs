//! `cargo xtask demo`: builds the lab, runs a real l3lb per node against the test API server and
//! shows each step: VIPs assumed, the router's ECMP route, requests and the source address each
//! pod saw, a failover. Everything it made is removed at the end, also on failure.
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::bail;
use l3lb_tests::{
    lab::{LabConfig, wait_for},
    scenario::Cluster,
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const PORT: u16 = 80;
const WAIT: Duration = Duration::from_secs(30);

/// Steps of the demo, for "[n/STEPS]".
const STEPS: u32 = 8;

/// Prints step `n` with the time since the demo started (and a typical total for reference).
fn step(started: Instant, n: u32, text: &str) {
    let t = started.elapsed().as_secs_f32();
    println!("\n\x1b[1m[{n}/{STEPS}] {text}\x1b[0m   (t+{t:.1}s; the demo takes about 10 s)");
}

fn show_route(c: &Cluster) -> anyhow::Result<()> {
    let route = c.lab.exec(
        c.lab.router_ns(),
        &["ip", "route", "show", &format!("{VIP}/32")],
    )?;
    let route = if route.trim().is_empty() {
        "(no route)".to_owned()
    } else {
        route
    };
    println!("    router# ip route show {VIP}/32");
    for line in route.lines() {
        println!("      {line}");
    }
    Ok(())
}

fn requests(c: &Cluster, n: usize) -> anyhow::Result<()> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..n {
        for answer in [c.lab.tcp_request(VIP, PORT)?, c.lab.udp_request(VIP, PORT)?] {
            // "pod1 10.100.0.2:40312" -> "pod1 10.100.0.2": the port differs per connection.
            let who = answer
                .trim()
                .rsplit_once(':')
                .map_or(answer.trim(), |(a, _)| a)
                .to_owned();
            *seen.entry(who).or_default() += 1;
        }
    }
    println!(
        "    {n} TCP connections + {n} UDP requests from the client ({}) to {VIP}:{PORT}:",
        c.lab.client_ip()
    );
    for (who, count) in seen {
        println!(
            "      {count:>3} answered by \"{who}\"  (pod name, then the source address the pod saw)"
        );
    }
    Ok(())
}

fn wait_hops(c: &Cluster, n: usize) -> anyhow::Result<()> {
    wait_for(&format!("{n} next hop(s) for {VIP}"), WAIT, || {
        let hops = c.lab.router_nexthops(&format!("{VIP}/32"))?;
        if hops.len() == n {
            Ok(Some(()))
        } else {
            bail!("next hops {hops:?}")
        }
    })
}

fn print_log(c: &Cluster, node: usize, needles: &[&str]) {
    for line in c
        .daemon_log(node)
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
    {
        println!("    node{node}| {}", line.trim());
    }
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    step(
        started,
        1,
        "Building the lab: client -- router (FRR) == node1, node2 (FRR + l3lb) -- pod1, pod2",
    );
    let c = Cluster::start(LabConfig::default())?;
    println!("    namespaces: {}", c.lab.namespaces().join(", "));
    println!(
        "    each node runs: l3lb run --node-name nodeN --prefix 198.51.100.0/24 --uplink up0"
    );

    step(
        started,
        2,
        &format!(
            "Service default/web: LoadBalancer requesting {VIP} (granted from L3lbPool lab by the elected allocator), tcp+udp {PORT} -> 8080, one Ready pod per node"
        ),
    );
    c.apply_service("web", VIP, PORT)?;
    c.apply_endpoints("web", |_| true)?;
    wait_hops(&c, 2)?;
    for i in [1, 2] {
        print_log(
            &c,
            i,
            &[
                "acquired the allocator Lease",
                "addresses assigned",
                "frontend programmed",
                "assuming address",
            ],
        );
    }

    step(
        started,
        3,
        "The router learned the VIP from both nodes over BGP: two equal-cost next hops",
    );
    show_route(&c)?;

    step(
        started,
        4,
        "Traffic: ECMP spreads connections over the nodes; XDP DNATs to the local pod, keeping the client's address",
    );
    requests(&c, 12)?;
    for i in [1, 2] {
        let bin = l3lb_tests::scenario::l3lb_bin()?;
        let out = c.lab.exec(
            c.lab.node_ns(i),
            &[&bin.to_string_lossy(), "stats", "--uplink", c.lab.uplink()],
        )?;
        println!("    node{i}# l3lb stats --uplink up0   (which path each packet took)");
        for line in out.lines() {
            println!("      {line}");
        }
    }

    step(
        started,
        5,
        "Failover: pod2 turns not-Ready; node2 withdraws the VIP and the router drops that path",
    );
    c.apply_endpoints("web", |i| i == 1)?;
    wait_hops(&c, 1)?;
    print_log(&c, 2, &["forfeiting address"]);
    show_route(&c)?;
    requests(&c, 6)?;

    step(
        started,
        6,
        "Asking the nodes why: l3lb status on node1, l3lb explain on node2",
    );
    for (i, command, args) in [(1, "status", &[][..]), (2, "explain", &["default/web"][..])] {
        println!("    node{i}# l3lb {command} {}", args.join(" "));
        for line in c.l3lb_on(i, command, args)?.lines() {
            println!("      {line}");
        }
    }

    step(
        started,
        7,
        "Deleting the Service: the VIP is withdrawn everywhere",
    );
    c.delete_service("web")?;
    wait_hops(&c, 0)?;
    show_route(&c)?;

    step(
        started,
        8,
        "Cleaning up: stopping the daemons, FRR and pods; deleting the namespaces",
    );
    drop(c);
    println!("    done");
    Ok(())
}
