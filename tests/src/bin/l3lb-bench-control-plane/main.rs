//! `cargo xtask bench control-plane`: a real `l3lb run` in a lab node against the test API server
//! seeded with many Services and EndpointSlices. Measures the time to first full sync, the time
//! from an EndpointSlice change to the address being applied (kernel netlink events, so the
//! address step is observed exactly), and the daemon's peak RSS. Writes one JSON line per run.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use l3lb_tests::{
    apiserver::ApiServer,
    lab::{Lab, LabConfig},
    netns::in_netns,
    scenario::l3lb_bin,
};
use rtnetlink::{
    constants::RTMGRP_IPV4_IFADDR,
    packet_core::NetlinkPayload,
    packet_route::{RouteNetlinkMessage, address::AddressAttribute},
    sys::{AsyncSocket, SocketAddr},
};
use serde_json::json;
use tokio::sync::mpsc;

const NODE: &str = "bench-node";
const PREFIX: &str = "100.64.0.0/16";

struct Args {
    services: usize,
    endpoints_per_service: usize,
    changes: usize,
    out: PathBuf,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        services: 10_000,
        endpoints_per_service: 10,
        changes: 1_000,
        out: "target/bench/control-plane.json".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--services" => a.services = value.parse()?,
            "--endpoints-per-service" => a.endpoints_per_service = value.parse()?,
            "--changes" => a.changes = value.parse()?,
            "--out" => a.out = value.into(),
            _ => bail!(
                "unknown flag {flag}; use --services N --endpoints-per-service N --changes N --out FILE"
            ),
        }
    }
    anyhow::ensure!(
        a.services > 0 && a.services < 60_000,
        "--services must be 1..60000 (VIPs come from {PREFIX})"
    );
    Ok(a)
}

fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 1)) + i as u32)
}

/// Allocated long ago, as on a running cluster: the address is on record in the status, so the
/// elected allocator has nothing to write.
fn service(i: usize) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "bench", "name": format!("svc-{i}")},
        "spec": {"type": "LoadBalancer", "loadBalancerIP": vip(i).to_string(),
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]},
        "status": {"loadBalancer": {"ingress": [{"ip": vip(i).to_string()}]}}})
}

/// Endpoint 0 is on this node (10 % of all endpoints with 10 per Service); the rest elsewhere.
fn slice(i: usize, per: usize, local_ready: bool) -> serde_json::Value {
    let endpoints: Vec<_> = (0..per)
        .map(|k| {
            let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + (i * per + k) as u32);
            let (node, ready) = if k == 0 { (NODE.to_owned(), local_ready) } else { (format!("node-{k}"), true) };
            json!({"addresses": [addr.to_string()], "nodeName": node, "conditions": {"ready": ready}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "bench", "name": format!("svc-{i}-x"), "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
}

/// Address added (true) or removed (false), as the kernel announces it.
type AddrEvent = (Instant, bool, IpAddr);

/// Subscribes to IPv4 address events inside `ns`.
fn address_events(
    rt: &tokio::runtime::Runtime,
    ns: &str,
) -> anyhow::Result<mpsc::UnboundedReceiver<AddrEvent>> {
    let handle = rt.handle().clone();
    let (mut conn, _handle, mut messages) = in_netns(ns, move || {
        let _guard = handle.enter();
        rtnetlink::new_connection()
    })??;
    conn.socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, RTMGRP_IPV4_IFADDR))?;
    rt.spawn(conn);
    let (tx, rx) = mpsc::unbounded_channel();
    rt.spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            let now = Instant::now();
            let (added, m) = match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(m)) => (true, m),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(m)) => (false, m),
                _ => continue,
            };
            let ip = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = ip
                && tx.send((now, added, ip)).is_err()
            {
                break;
            }
        }
    });
    Ok(rx)
}

fn wait_event(
    rx: &mut mpsc::UnboundedReceiver<AddrEvent>,
    rt: &tokio::runtime::Runtime,
    added: bool,
    ip: IpAddr,
) -> anyhow::Result<Instant> {
    rt.block_on(async {
        let deadline = tokio::time::sleep(Duration::from_secs(30));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some((t, a, i)) if a == added && i == ip => return Ok(t),
                    Some(_) => {}
                    None => bail!("address event stream ended"),
                },
                _ = &mut deadline => bail!("no {} of {ip} within 30 s", if added { "add" } else { "removal" }),
            }
        }
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or(f64::NAN)
}

fn peak_rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmHWM in /proc/<pid>/status")?
        .parse()?;
    Ok(kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let a = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut lab = Lab::start(LabConfig {
        nodes: 1,
        vip_prefix: PREFIX.parse()?,
        ..LabConfig::default()
    })?;
    let api = ApiServer::new();
    api.apply_yaml(l3lb_tests::scenario::POOL_CRD)?;
    api.apply(json!({"apiVersion": "l3lb.io/v1alpha1", "kind": "L3lbPool",
        "metadata": {"name": "bench"}, "spec": {"addresses": [PREFIX]}}))?;
    for i in 0..a.services {
        api.apply(service(i))?;
        api.apply(slice(i, a.endpoints_per_service, true))?;
    }
    let ns = lab.node_ns(1).to_owned();
    let addr = rt.block_on(api.listen_in_netns(&ns))?;
    let kubeconfig = lab.workdir().join("kubeconfig-bench");
    ApiServer::write_kubeconfig(addr, &kubeconfig)?;
    let mut events = address_events(&rt, &ns)?;

    let mut cmd = Command::new(l3lb_bin()?);
    cmd.args([
        "run",
        "--node-name",
        NODE,
        "--prefix",
        PREFIX,
        "--uplink",
        lab.uplink(),
        "--default-load-balancer",
    ])
    .arg("--bpffs-dir")
    .arg(lab.bpffs_dir(1))
    .env("KUBECONFIG", &kubeconfig)
    .env(
        "RUST_LOG",
        std::env::var("L3LB_BENCH_LOG").unwrap_or("warn".into()),
    );
    let started = Instant::now();
    // Host mounts: the daemon pins into the host's bpffs (see Lab::spawn_in_netns_only).
    let pid = lab.spawn_in_netns_only(&ns, "l3lb-bench", cmd)?;

    // First full sync: every VIP has been added.
    let mut pending: std::collections::BTreeSet<IpAddr> =
        (0..a.services).map(|i| IpAddr::V4(vip(i))).collect();
    rt.block_on(async {
        let deadline = tokio::time::sleep(Duration::from_secs(300));
        tokio::pin!(deadline);
        while !pending.is_empty() {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some((_, true, ip)) => { pending.remove(&ip); }
                    Some(_) => {}
                    None => bail!("address event stream ended"),
                },
                _ = &mut deadline => bail!("first sync incomplete after 300 s: {} VIPs missing", pending.len()),
            }
        }
        Ok(())
    })?;
    let first_sync_s = started.elapsed().as_secs_f64();

    // Changes: flip one Service's local endpoint not-Ready (VIP removed), then Ready (VIP added).
    let mut lat_ms = Vec::with_capacity(a.changes);
    for c in 0..a.changes {
        let i = (c / 2 * 7919) % a.services;
        let ready = c % 2 == 1;
        while events.try_recv().is_ok() {}
        let t = Instant::now();
        api.apply(slice(i, a.endpoints_per_service, ready))?;
        let seen = wait_event(&mut events, &rt, ready, IpAddr::V4(vip(i)))?;
        lat_ms.push(seen.duration_since(t).as_secs_f64() * 1e3);
    }
    lat_ms.sort_by(f64::total_cmp);
    let rss = peak_rss_mb(pid)?;
    let row = json!({
        "name": "endpointslice_change_to_applied",
        "services": a.services,
        "endpoints": a.services * a.endpoints_per_service,
        "local_endpoints": a.services,
        "changes": a.changes,
        "p50_ms": percentile(&lat_ms, 0.5),
        "p99_ms": percentile(&lat_ms, 0.99),
        "max_ms": lat_ms.last().copied().unwrap_or(f64::NAN),
        "first_sync_s": first_sync_s,
        "peak_rss_mb": rss,
    });
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.out)?;
    use std::io::Write as _;
    writeln!(file, "{row}")?;

    let table: BTreeMap<&str, String> = [
        ("services", a.services.to_string()),
        (
            "endpoints",
            (a.services * a.endpoints_per_service).to_string(),
        ),
        ("changes", a.changes.to_string()),
        ("p50_ms", format!("{:.2}", percentile(&lat_ms, 0.5))),
        ("p99_ms", format!("{:.2}", percentile(&lat_ms, 0.99))),
        ("first_sync_s", format!("{first_sync_s:.2}")),
        ("peak_rss_mb", format!("{rss:.1}")),
    ]
    .into();
    println!("control-plane benchmark (appended to {})", a.out.display());
    for (k, v) in table {
        println!("  {k:<14} {v:>12}");
    }
    lab.stop(pid)?;
    Ok(())
}
