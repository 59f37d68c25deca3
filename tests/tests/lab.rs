//! Root tier: the netns lab itself works, without l3lb. FRR advertises /32s on a node's `lo` inside
//! the VIP prefix (and nothing else), the router installs them as ECMP, the client reaches the
//! pods with its own source address, and dropping the lab leaves nothing behind.
use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::bail;
use l3lb_tests::lab::{Lab, LabConfig, wait_for};

const VIP: &str = "198.51.100.10/32";
const OUTSIDE: &str = "203.0.113.5/32";
const ROUTE_DEADLINE: Duration = Duration::from_secs(20);

fn nexthops_become(lab: &Lab, prefix: &str, want: &[Ipv4Addr]) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut want = want.to_vec();
    want.sort();
    wait_for(
        &format!("router next hops for {prefix} = {want:?}"),
        ROUTE_DEADLINE,
        || {
            let got = lab.router_nexthops(prefix)?;
            if got == want {
                return Ok(Some(()));
            }
            bail!("next hops {got:?}")
        },
    )?;
    Ok(t.elapsed())
}

fn check_echo(lab: &Lab, i: usize) -> anyhow::Result<()> {
    let port = lab.config().echo_port;
    let want = format!("pod{i} {}:", lab.client_ip());
    for (proto, answer) in [
        ("tcp", lab.tcp_request(lab.pod_ip(i), port)?),
        ("udp", lab.udp_request(lab.pod_ip(i), port)?),
    ] {
        println!("{proto} to pod{i}: {answer}");
        assert!(
            answer.starts_with(&want),
            "{proto} answer {answer:?}, want {want:?}<port>"
        );
    }
    Ok(())
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn netns_list() -> anyhow::Result<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn lab_advertises_vips_as_ecmp_and_cleans_up() -> anyhow::Result<()> {
    let cfg = LabConfig {
        echo_bin: Some(env!("CARGO_BIN_EXE_l3lb-echo").into()),
        ..LabConfig::default()
    };
    let t0 = Instant::now();
    let lab = Lab::start(cfg)?;
    println!(
        "lab {} started in {:.2?}, workdir {}",
        lab.id(),
        t0.elapsed(),
        lab.workdir().display()
    );
    let (n1, n2) = (lab.node_ip(1), lab.node_ip(2));
    assert_eq!(lab.uplink(), "up0");

    // Anycast: the same /32 on both nodes' lo -> two next hops.
    for i in 1..=2 {
        lab.exec(lab.node_ns(i), &["ip", "addr", "add", VIP, "dev", "lo"])?;
    }
    let took = nexthops_become(&lab, VIP, &[n1, n2])?;
    println!("{VIP}: ECMP via {n1} and {n2} after {took:.2?}");
    let vip: IpAddr = "198.51.100.10".parse()?;
    assert!(lab.lo_addresses(1)?.contains(&vip));

    // Withdrawn from node2 -> one next hop.
    lab.exec(lab.node_ns(2), &["ip", "addr", "del", VIP, "dev", "lo"])?;
    let took = nexthops_become(&lab, VIP, &[n1])?;
    println!("{VIP}: withdrawn from node2, via {n1} only after {took:.2?}");
    assert!(!lab.lo_addresses(2)?.contains(&vip));

    // Outside the VIP prefix: never advertised. Give it the time the VIP needed, and more.
    lab.exec(lab.node_ns(1), &["ip", "addr", "add", OUTSIDE, "dev", "lo"])?;
    lab.exec(
        lab.node_ns(1),
        &["ip", "addr", "add", "198.51.100.77/32", "dev", "lo"],
    )?;
    nexthops_become(&lab, "198.51.100.77/32", &[n1])?; // the marker arrived, so the other had time too
    assert_eq!(
        lab.router_nexthops(OUTSIDE)?,
        Vec::<Ipv4Addr>::new(),
        "{OUTSIDE} must not be advertised"
    );
    let kernel = lab.exec(lab.router_ns(), &["ip", "route", "show", "203.0.113.5/32"])?;
    assert!(
        kernel.trim().is_empty(),
        "router kernel has a route for {OUTSIDE}: {kernel}"
    );

    // Client -> pods directly (static routes for this check only), client source IP preserved.
    for i in 1..=2 {
        let subnet = format!("10.244.{i}.0/24");
        let via = lab.node_ip(i).to_string();
        lab.exec(
            lab.router_ns(),
            &["ip", "route", "add", &subnet, "via", &via],
        )?;
    }
    for i in 1..=2 {
        check_echo(&lab, i)?;
    }

    // Drop: every namespace and pid of this lab is gone.
    let names = lab.namespaces().to_vec();
    let pids = lab.pids();
    let workdir = lab.workdir().to_path_buf();
    assert_eq!(names.len(), 6, "client, router, 2 nodes, 2 pods: {names:?}");
    assert_eq!(
        pids.len(),
        8,
        "zebra+bgpd in router and 2 nodes, 2 echo servers: {pids:?}"
    );
    assert!(pids.iter().all(|p| pid_alive(*p)));
    let t = Instant::now();
    drop(lab);
    println!("lab dropped in {:.2?}", t.elapsed());
    let list = netns_list()?;
    for ns in &names {
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns)),
            "{ns} left in: {list}"
        );
    }
    for pid in &pids {
        assert!(!pid_alive(*pid), "pid {pid} still running");
    }
    assert!(!workdir.exists(), "{} left behind", workdir.display());
    Ok(())
}
