//! `cargo xtask bench control-plane`: a real `l3lb run` in a lab node against the test API server
//! seeded with many Services and EndpointSlices. Measures the time to first full sync, the time
//! from an EndpointSlice change to the address being applied (kernel netlink events, so the
//! address step is observed exactly), where that time went ([`stages`]), and the daemon's peak
//! RSS; with `--heap-profile`, a daemon built with `--features dhat-heap` writes its heap at its
//! peak ([`heap`]). Writes one JSON line per run.
mod heap;
mod progress;
mod stages;

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
    /// How many of the Services have an endpoint on this node (every one by default); the
    /// others' endpoints are all elsewhere, so their VIPs are not this node's to add.
    local_services: Option<usize>,
    endpoints_per_service: usize,
    changes: usize,
    out: PathBuf,
    /// The daemon also stands for the allocator (single-binary mode), as `l3lb run` does by
    /// default; `false`: as nodes run beside a separate `l3lb allocate`.
    allocator: bool,
    /// Where a daemon built with `--features dhat-heap` writes its heap profile.
    heap_profile: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        services: 10_000,
        local_services: None,
        endpoints_per_service: 10,
        changes: 1_000,
        out: "target/bench/control-plane.json".into(),
        allocator: true,
        heap_profile: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--services" => a.services = value.parse()?,
            "--local-services" => a.local_services = Some(value.parse()?),
            "--endpoints-per-service" => a.endpoints_per_service = value.parse()?,
            "--changes" => a.changes = value.parse()?,
            "--out" => a.out = value.into(),
            "--allocator" => a.allocator = value.parse()?,
            "--heap-profile" => a.heap_profile = Some(value.into()),
            _ => bail!(
                "unknown flag {flag}; use --services N --local-services N --endpoints-per-service N --changes N \
                 --allocator true|false --heap-profile FILE --out FILE"
            ),
        }
    }
    anyhow::ensure!(
        a.services > 0 && a.services < 60_000,
        "--services must be 1..60000 (VIPs come from {PREFIX})"
    );
    anyhow::ensure!(
        a.local_services.is_none_or(|l| l > 0 && l <= a.services),
        "--local-services must be 1..=--services"
    );
    Ok(a)
}

impl Args {
    fn local_services(&self) -> usize {
        self.local_services.unwrap_or(self.services)
    }

    /// Every `stride`-th Service is local, spread over the whole range.
    fn stride(&self) -> usize {
        self.services / self.local_services()
    }

    fn is_local(&self, i: usize) -> bool {
        i.is_multiple_of(self.stride()) && i / self.stride() < self.local_services()
    }
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

/// Endpoint 0 is on this node if `local` (10 % of all endpoints with 10 per Service, when every
/// Service is local); the rest elsewhere.
fn slice(i: usize, per: usize, local: bool, local_ready: bool) -> serde_json::Value {
    let endpoints: Vec<_> = (0..per)
        .map(|k| {
            let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + (i * per + k) as u32);
            let (node, ready) = if k == 0 && local { (NODE.to_owned(), local_ready) } else { (format!("node-{k}"), true) };
            json!({"addresses": [addr.to_string()], "nodeName": node, "conditions": {"ready": ready}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "bench", "name": format!("svc-{i}-x"), "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
}

/// When (monotonic ns), address added (true) or removed (false), as the kernel announces it.
type AddrEvent = (u64, bool, IpAddr);

/// Nanoseconds on CLOCK_MONOTONIC, the clock the daemon's stage timings use.
fn mono_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

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
            let now = mono_ns();
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
) -> anyhow::Result<u64> {
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

use stages::percentile;

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
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
    let progress = progress::Progress::new(if a.heap_profile.is_some() { 6 } else { 5 });
    progress.step(1, "Building the lab: one node, its uplink and bpffs");
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
    progress.step(
        2,
        &format!(
            "Seeding the test API server: {} Services ({} local), {} endpoints",
            a.services,
            a.local_services(),
            a.services * a.endpoints_per_service
        ),
    );
    let mut seeded = progress.count("Services seeded", a.services);
    for i in 0..a.services {
        api.apply(service(i))?;
        api.apply(slice(i, a.endpoints_per_service, a.is_local(i), true))?;
        seeded.at(i + 1);
    }
    let ns = lab.node_ns(1).to_owned();
    let addr = rt.block_on(api.listen_in_netns(&ns))?;
    let kubeconfig = lab.workdir().join("kubeconfig-bench");
    ApiServer::write_kubeconfig(addr, &kubeconfig)?;
    let mut events = address_events(&rt, &ns)?;

    let load_before = loadavg();
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
    .arg(format!("--allocator={}", a.allocator))
    .arg("--bpffs-dir")
    .arg(lab.bpffs_dir(1))
    .env("KUBECONFIG", &kubeconfig)
    // Warnings, and the line per pass with its stages.
    .env(
        "RUST_LOG",
        std::env::var("L3LB_BENCH_LOG").unwrap_or("warn,l3lb::timing=debug".into()),
    )
    .env("NO_COLOR", "1");
    if let Some(file) = &a.heap_profile {
        cmd.env("L3LB_DHAT_FILE", std::path::absolute(file)?);
    }
    progress.step(
        3,
        &format!(
            "Starting l3lb run; first sync: waiting for {} local VIPs",
            a.local_services()
        ),
    );
    let started = Instant::now();
    let started_ns = mono_ns();
    // Host mounts: the daemon pins into the host's bpffs (see Lab::spawn_in_netns_only).
    let pid = lab.spawn_in_netns_only(&ns, "l3lb-bench", cmd)?;

    // First full sync: every local VIP has been added.
    let local: Vec<usize> = (0..a.services).filter(|i| a.is_local(*i)).collect();
    let mut pending: std::collections::BTreeSet<IpAddr> =
        local.iter().map(|i| IpAddr::V4(vip(*i))).collect();
    let mut up = progress.count("VIPs up", local.len());
    rt.block_on(async {
        let deadline = tokio::time::sleep(Duration::from_secs(300));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while !pending.is_empty() {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some((_, true, ip)) => { pending.remove(&ip); }
                    Some(_) => {}
                    None => bail!("address event stream ended"),
                },
                _ = tick.tick() => up.at(local.len() - pending.len()),
                _ = &mut deadline => bail!("first sync incomplete after 300 s: {} VIPs missing", pending.len()),
            }
        }
        Ok(())
    })?;
    let first_sync_s = started.elapsed().as_secs_f64();
    progress.step(
        4,
        &format!(
            "First sync took {first_sync_s:.2} s; {} changes, one at a time",
            a.changes
        ),
    );

    // Changes: flip one local Service's endpoint here not-Ready (VIP removed), then Ready (VIP
    // added).
    let mut lat_ms = Vec::with_capacity(a.changes);
    let mut changes = Vec::with_capacity(a.changes);
    let mut done = progress.count("changes applied", a.changes);
    for c in 0..a.changes {
        done.at(c);
        let i = local[(c / 2 * 7919) % local.len()];
        let ready = c % 2 == 1;
        while events.try_recv().is_ok() {}
        let written_ns = mono_ns();
        api.apply(slice(i, a.endpoints_per_service, true, ready))?;
        let seen_ns = wait_event(&mut events, &rt, ready, IpAddr::V4(vip(i)))?;
        lat_ms.push(seen_ns.saturating_sub(written_ns) as f64 / 1e6);
        changes.push(stages::Change {
            written_ns,
            seen_ns,
        });
    }
    lat_ms.sort_by(f64::total_cmp);
    progress.step(5, "Results");
    let rss = peak_rss_mb(pid)?;
    let load_after = loadavg();
    let log = std::fs::read_to_string(lab.workdir().join("l3lb-bench.log")).unwrap_or_default();
    let passes = stages::parse(&log);
    let (by_stage, unmatched) = stages::breakdown(&changes, &passes);
    let (stages_json, stage_rows) = stages::summary(&by_stage);
    let first_pass = stages::first_pass(&passes, started_ns);
    let row = json!({
        "name": "endpointslice_change_to_applied",
        "services": a.services,
        "endpoints": a.services * a.endpoints_per_service,
        "local_endpoints": local.len(),
        "local_services": local.len(),
        "changes": a.changes,
        "p50_ms": percentile(&lat_ms, 0.5),
        "p99_ms": percentile(&lat_ms, 0.99),
        "max_ms": lat_ms.last().copied().unwrap_or(f64::NAN),
        "first_sync_s": first_sync_s,
        "peak_rss_mb": rss,
        "allocator": a.allocator,
        "heap_profile": a.heap_profile.is_some(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "stages": stages_json,
        "changes_without_pass": unmatched,
        "first_pass": first_pass,
    });
    let mut file = l3lb_tests::bench::rows_file(&a.out)?;
    use std::io::Write as _;
    writeln!(file, "{row}")?;

    let table: BTreeMap<&str, String> = [
        ("services", a.services.to_string()),
        ("local_services", local.len().to_string()),
        (
            "endpoints",
            (a.services * a.endpoints_per_service).to_string(),
        ),
        ("changes", a.changes.to_string()),
        ("p50_ms", format!("{:.2}", percentile(&lat_ms, 0.5))),
        ("p99_ms", format!("{:.2}", percentile(&lat_ms, 0.99))),
        ("first_sync_s", format!("{first_sync_s:.2}")),
        ("peak_rss_mb", format!("{rss:.1}")),
        ("allocator", a.allocator.to_string()),
    ]
    .into();
    println!("control-plane benchmark (appended to {})", a.out.display());
    for (k, v) in table {
        println!("  {k:<14} {v:>12}");
    }
    println!("  load average   {load_before} (before), {load_after} (after)");
    println!("per change, by stage (ms; {unmatched} changes without a matching pass):");
    println!("  {:<12} {:>8} {:>8} {:>8}", "stage", "p50", "p99", "max");
    for r in stage_rows {
        println!("{r}");
    }
    println!("first sync's pass: {first_pass}");
    if a.heap_profile.is_some() {
        // DHAT writes (and symbolises) the profile as the daemon exits, which takes longer than
        // the lab's grace before SIGKILL: stop it here and wait for it.
        heap::stop_and_wait(&mut lab, pid, Duration::from_secs(600))?;
    }
    lab.stop(pid)?;
    if let Some(file) = &a.heap_profile {
        progress.step(6, "The daemon's heap profile");
        heap::report(file)?;
    }
    Ok(())
}
