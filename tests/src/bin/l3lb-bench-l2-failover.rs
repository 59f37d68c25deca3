//! `cargo xtask bench l2-failover`: how fast an L2 address moves to another node, on a bridged
//! lab (the client and three nodes on one segment, a real `l3lb run` per node, one Service with
//! one L2 address per family and a Ready endpoint on every node).
//!
//! Two failures of the address's announcer, each `--runs` times per family:
//! - `not_ready`: its endpoint goes not-Ready (the EndpointSlice written to the API server);
//! - `killed`: its daemon is SIGKILLed and its uplink set down.
//!
//! Each run starts from the converged state (the client finds the address at the node every
//! daemon should agree on, the daemons' own pure choice) and ends when the client's entry names
//! the node that choice gives without the failed one. During it the client sends a UDP datagram
//! every few milliseconds (bounded in time, inside the lab) and polls its neighbour table.
//! Measured from the failure: `moved` (the client's entry holds the new announcer's MAC: its
//! gratuitous ARP / unsolicited NA reached it), `answered` (the first answer from the new node's
//! pod) and `via_new` (the first such answer once the entry had moved: traffic arriving through
//! the new node). The lab keeps
//! the client's entries reachable for an hour, so an entry that never moves is a stale entry the
//! client would keep (`stale`). Undoing each failure, the address must come back to its first
//! announcer with an announcement too; the runs where the client did not hear of it are counted
//! (`unannounced_takebacks`, the client's entry then flushed). Medians are printed beside the targets (issue #12: 1 s and 3 s)
//! and one JSON line per failure kind and family is appended to the output file.
use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr, UdpSocket},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use l3lb_tests::{l2::expected_announcers, lab::LabConfig, netns::in_netns, scenario::Cluster};
use serde_json::json;

const NODES: usize = 3;
const PORT: u16 = 80;
/// How long one run waits for the address to move.
const RUN_DEADLINE: Duration = Duration::from_secs(10);
/// Between two datagrams of the client.
const SEND_EVERY: Duration = Duration::from_millis(5);
/// How long the first announcer gets to take its address back (with an announcement) after a
/// run, before the client is told.
const TAKE_BACK: Duration = Duration::from_secs(15);
/// How long the address gets to come back to its announcer before a run.
const SETTLE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Failure {
    NotReady,
    Killed,
}

impl Failure {
    fn name(self) -> &'static str {
        match self {
            Failure::NotReady => "not_ready",
            Failure::Killed => "killed",
        }
    }

    fn target(self) -> Duration {
        match self {
            Failure::NotReady => Duration::from_secs(1),
            Failure::Killed => Duration::from_secs(3),
        }
    }
}

/// One run, times from the failure.
#[derive(Default)]
struct Run {
    moved: Option<Duration>,
    answered: Option<Duration>,
    via_new: Option<Duration>,
    /// Undoing the failure, `old` took the address back without the client hearing of it.
    unannounced: bool,
}

struct Args {
    out: PathBuf,
    runs: usize,
    families: Vec<bool>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        out: "target/bench/l2-failover.json".into(),
        runs: 5,
        families: vec![false, true],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out" => a.out = value.into(),
            "--runs" => a.runs = value.parse()?,
            "--family" => {
                a.families = match value.as_str() {
                    "ipv4" => vec![false],
                    "ipv6" => vec![true],
                    "both" => vec![false, true],
                    _ => bail!("--family ipv4|ipv6|both"),
                }
            }
            _ => bail!("unknown flag {flag}; use --runs N --family ipv4|ipv6|both --out FILE"),
        }
    }
    anyhow::ensure!((1..=50).contains(&a.runs), "--runs must be 1..=50");
    Ok(a)
}

/// The client's datagrams to `to`, every [`SEND_EVERY`] until `stop` or [`RUN_DEADLINE`]:
/// every answer as (when, answering node).
fn probe(
    client_ns: &str,
    to: SocketAddr,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<thread::JoinHandle<Vec<(Instant, usize)>>> {
    let any: IpAddr = match to {
        SocketAddr::V4(_) => [0u8; 4].into(),
        SocketAddr::V6(_) => [0u16; 8].into(),
    };
    let sock = in_netns(client_ns, move || UdpSocket::bind((any, 0)))??;
    sock.connect(to)?;
    sock.set_read_timeout(Some(SEND_EVERY))?;
    Ok(thread::spawn(move || {
        let start = Instant::now();
        let mut answers = Vec::new();
        let mut buf = [0u8; 256];
        while !stop.load(Ordering::Relaxed) && start.elapsed() < RUN_DEADLINE {
            // Unanswered datagrams (lost on a dead node, ICMP errors) are simply not counted.
            let _ = sock.send(b"probe\n");
            while let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                let node = text
                    .split_whitespace()
                    .next()
                    .and_then(|pod| pod.strip_prefix("pod")?.parse().ok());
                if let Some(node) = node {
                    answers.push((Instant::now(), node));
                }
            }
        }
        answers
    }))
}

/// Fails `old` as `failure` says.
fn fail(
    c: &mut Cluster,
    failure: Failure,
    v6: bool,
    service: &str,
    old: usize,
) -> anyhow::Result<()> {
    match failure {
        Failure::NotReady => c.apply_l2_endpoints(service, v6, &[old]),
        Failure::Killed => {
            c.kill_daemon(old)?;
            c.lab.set_uplink(old, false)
        }
    }
}

/// Waits until the client finds `addr` at `node`, served by its pod.
fn wait_at(c: &Cluster, addr: IpAddr, node: usize, deadline: Duration) -> anyhow::Result<()> {
    c.wait_served_all(&[addr], PORT, &[], deadline, |nodes| {
        anyhow::ensure!(nodes == [node], "want node{node}");
        Ok(())
    })
    .map(drop)
}

/// Undoes [`fail`] and waits until the client finds `addr` back at `old`. Returns whether the
/// client had to be told: a daemon that takes its address back without a gratuitous ARP /
/// unsolicited NA leaves the client at the interim node (counted, then the client's entry is
/// flushed so the next run starts where it should).
fn repair(
    c: &mut Cluster,
    failure: Failure,
    v6: bool,
    service: &str,
    addr: IpAddr,
    old: usize,
) -> anyhow::Result<bool> {
    match failure {
        Failure::NotReady => c.apply_l2_endpoints(service, v6, &[])?,
        Failure::Killed => {
            c.lab.set_uplink(old, true)?;
            c.start_daemon(old)?;
        }
    }
    let Err(e) = wait_at(c, addr, old, TAKE_BACK) else {
        return Ok(false);
    };
    let sends_to = c.lab.client_sends_to(addr)?;
    if sends_to == Some(old) {
        return Err(e.context(format!(
            "{addr} not served at node{old}, where the client sends it"
        )));
    }
    eprintln!(
        "  {addr} not back at node{old} within {TAKE_BACK:?}: the client still sends it to \
         {sends_to:?} (answered by {:?}); flushing its entry",
        c.answering_node(addr, PORT).ok()
    );
    c.lab.forget_client_neighbour(addr)?;
    wait_at(c, addr, old, SETTLE)?;
    Ok(true)
}

/// One failure of `addr`'s announcer, which every node should agree is `old` (and, with `old`
/// gone, `new`): from the converged state, until the client's entry names `new`.
fn one_run(
    c: &mut Cluster,
    failure: Failure,
    v6: bool,
    service: &str,
    addr: IpAddr,
    (old, new): (usize, usize),
) -> anyhow::Result<Run> {
    let new_mac = c.lab.uplink_mac(new)?;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe(c.lab.client_ns(), SocketAddr::new(addr, PORT), stop.clone())?;
    let t0 = Instant::now();
    fail(c, failure, v6, service, old)?;
    let mut moved = None;
    while moved.is_none() && t0.elapsed() < RUN_DEADLINE {
        match c.lab.client_neighbour(addr)? {
            Some(n) if n.mac == new_mac => moved = Some(Instant::now()),
            _ => thread::sleep(Duration::from_millis(2)),
        }
    }
    // A little traffic after the move, so `via_new` has an answer to see.
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until && t0.elapsed() < RUN_DEADLINE {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let answers = prober
        .join()
        .map_err(|_| anyhow::anyhow!("prober panicked"))?;
    let since = |t: Instant| t.saturating_duration_since(t0);
    let from_new: Vec<Instant> = answers
        .iter()
        .filter(|(t, node)| *node == new && *t >= t0)
        .map(|(t, _)| *t)
        .collect();
    let run = Run {
        moved: moved.map(since),
        answered: from_new.first().copied().map(since),
        via_new: moved.and_then(|m| from_new.iter().find(|t| **t >= m).copied().map(since)),
        unannounced: false,
    };
    let unannounced = repair(c, failure, v6, service, addr, old)?;
    Ok(Run { unannounced, ..run })
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    (!v.is_empty()).then(|| v[v.len() / 2])
}

fn ms(d: Option<Duration>) -> serde_json::Value {
    d.map_or(json!(null), |d| json!(d.as_secs_f64() * 1e3))
}

fn show(d: Option<Duration>) -> String {
    d.map_or("-".to_owned(), |d| {
        format!("{:.0} ms", d.as_secs_f64() * 1e3)
    })
}

fn main() -> anyhow::Result<()> {
    let a = parse_args()?;
    let mut c = Cluster::start(LabConfig::bridged(NODES))?;
    let mut file = l3lb_tests::bench::rows_file(&a.out)?;
    let mut table = Vec::new();
    for v6 in a.families.iter().copied() {
        let family = if v6 { "ipv6" } else { "ipv4" };
        let service = format!("bench-{family}");
        c.apply_l2_service(&service, v6, 1, PORT)?;
        c.apply_l2_endpoints(&service, v6, &[])?;
        let addr = c.wait_ingress(&service, 1, SETTLE)?[0];
        let all: Vec<usize> = (1..=NODES).collect();
        let old = expected_announcers(&service, &[addr], &all)?[0];
        let others: Vec<usize> = all.iter().copied().filter(|i| *i != old).collect();
        let new = expected_announcers(&service, &[addr], &others)?[0];
        eprintln!("{family}: {addr} announced by node{old}, else node{new}");
        wait_at(&c, addr, old, SETTLE)?;
        for failure in [Failure::NotReady, Failure::Killed] {
            let mut runs = Vec::new();
            for r in 1..=a.runs {
                eprintln!("{family} {}: run {r}/{}", failure.name(), a.runs);
                runs.push(one_run(&mut c, failure, v6, &service, addr, (old, new))?);
            }
            let stale = runs.iter().filter(|r| r.moved.is_none()).count();
            let pick =
                |f: fn(&Run) -> Option<Duration>| median(runs.iter().filter_map(f).collect());
            let (moved, answered, via_new) =
                (pick(|r| r.moved), pick(|r| r.answered), pick(|r| r.via_new));
            let unannounced = runs.iter().filter(|r| r.unannounced).count();
            let row = json!({
                "name": format!("l2_failover_{}", failure.name()),
                "family": family,
                "runs": a.runs,
                "median_via_new_ms": ms(via_new),
                "median_moved_ms": ms(moved),
                "median_answered_ms": ms(answered),
                "max_via_new_ms": ms(runs.iter().filter_map(|r| r.via_new).max()),
                "runs_without_via_new": runs.iter().filter(|r| r.via_new.is_none()).count(),
                "stale_entry_runs": stale,
                "unannounced_takebacks": unannounced,
                "target_ms": failure.target().as_millis() as u64,
                "send_every_ms": SEND_EVERY.as_millis() as u64,
            });
            writeln!(file, "{row}")?;
            table.push(format!(
                "  {family:<5} {:<10} {:>9} {:>9} {:>9} {:>9}   {stale}/{n:<10} {unannounced}/{n}",
                failure.name(),
                show(via_new),
                show(moved),
                show(answered),
                show(Some(failure.target())),
                n = a.runs
            ));
        }
    }
    println!(
        "L2 failover, median of {} runs per row (appended to {}):",
        a.runs,
        a.out.display()
    );
    println!(
        "  {:<5} {:<10} {:>9} {:>9} {:>9} {:>9}   {:<13}taken back unannounced",
        "", "failure", "via new", "moved", "answered", "target", "stale entry"
    );
    for line in table {
        println!("{line}");
    }
    Ok(())
}
