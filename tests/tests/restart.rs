//! End to end, as root: restarting a node's daemon does not interrupt forwarding. The maps and the
//! XDP/TC links are pinned, so while the daemon is down the programs keep DNATing with the maps'
//! last contents, and the restarted daemon reuses them (replacing the programs in place).
//! Long-lived TCP connections opened before the restart keep working after it, and requests sent
//! throughout the restart all succeed.
use std::{
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use l3lb_tests::{
    lab::{LabConfig, REQUEST_TIMEOUT, Stream, wait_for},
    netns::in_netns,
    scenario::{Cluster, l3lb_bin},
};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const PORT: u16 = 80;
const CONVERGE: Duration = Duration::from_secs(30);
/// Long-lived connections held open across the restart.
const LONG_LIVED: usize = 8;
/// Short requests that must succeed while the daemon is down, and again after it is back.
const REQUESTS_PER_PHASE: usize = 20;

/// One short TCP request (connect, line, answer, close) from inside the client's namespace.
fn tcp_request() -> anyhow::Result<()> {
    let to = SocketAddr::from((VIP, PORT));
    let stream = TcpStream::connect_timeout(&to, REQUEST_TIMEOUT)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    (&stream).write_all(b"hello\n")?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    ensure!(line.starts_with("pod"), "odd answer {line:?}");
    Ok(())
}

/// Requests sent back to back from the client until stopped: how many succeeded, which failed,
/// and the longest time between two successes.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    ok: AtomicUsize,
    failures: std::sync::Mutex<Vec<String>>,
    max_gap: std::sync::Mutex<Duration>,
}

fn start_load(client_ns: &str, load: Arc<Load>) -> thread::JoinHandle<()> {
    let ns = client_ns.to_owned();
    thread::spawn(move || {
        let l = load.clone();
        let run = in_netns(&ns, move || {
            let mut last = Instant::now();
            while !l.stop.load(Ordering::Relaxed) {
                match tcp_request() {
                    Ok(()) => {
                        let mut gap = l.max_gap.lock().unwrap_or_else(|e| e.into_inner());
                        *gap = (*gap).max(last.elapsed());
                        last = Instant::now();
                        l.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => l
                        .failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("{e:#}")),
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        if let Err(e) = run {
            load.failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("client namespace: {e}"));
        }
    })
}

fn wait_requests(load: &Load, more: usize, what: &str) -> anyhow::Result<()> {
    let want = load.ok.load(Ordering::Relaxed) + more;
    wait_for(&format!("{more} requests {what}"), CONVERGE, || {
        let ok = load.ok.load(Ordering::Relaxed);
        let failed = load.failures.lock().map(|f| f.len()).unwrap_or(0);
        if ok >= want {
            Ok(Some(()))
        } else {
            bail!("{ok}/{want} succeeded, {failed} failed")
        }
    })
}

#[test]
fn daemon_restart_keeps_forwarding_and_long_lived_connections() -> anyhow::Result<()> {
    let mut c = Cluster::start(LabConfig::default())?;
    // Only node1 has a Ready endpoint: every connection goes through the node we restart.
    c.apply_service("web", VIP, PORT)?;
    c.apply_endpoints("web", |i| i == 1)?;
    let n1 = c.lab.node_ip(1);
    wait_for("router route to the VIP via node1", CONVERGE, || {
        let hops = c.lab.router_nexthops(&format!("{VIP}/32"))?;
        if hops == [n1] {
            Ok(Some(()))
        } else {
            bail!("next hops {hops:?}")
        }
    })?;

    let client_ns = c.lab.client_ns().to_owned();
    let mut streams = (0..LONG_LIVED)
        .map(|i| {
            Stream::open(&client_ns, SocketAddr::from((VIP, PORT)))
                .with_context(|| format!("long-lived connection {i}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (i, s) in streams.iter_mut().enumerate() {
        ensure!(s.pod == "pod1", "connection {i} reached {}", s.pod);
        s.exchange(&format!("before-{i}"))?;
    }

    let load = Arc::new(Load::default());
    let worker = start_load(&client_ns, load.clone());
    wait_requests(&load, REQUESTS_PER_PHASE, "before the restart")?;

    // Down: SIGTERM. The pinned links keep the programs on the uplink.
    let t_stop = Instant::now();
    c.stop_daemon(1)?;
    let link = c.lab.exec(
        c.lab.node_ns(1),
        &["ip", "-d", "link", "show", c.lab.uplink()],
    )?;
    ensure!(
        link.contains("xdp"),
        "XDP left the uplink with the daemon:\n{link}"
    );
    wait_requests(&load, REQUESTS_PER_PHASE, "while the daemon is down")?;
    for (i, s) in streams.iter_mut().enumerate() {
        s.exchange(&format!("down-{i}"))
            .with_context(|| format!("long-lived connection {i} while the daemon is down"))?;
    }

    // Up again: it reuses the pinned maps and replaces the programs in place.
    c.start_daemon(1)?;
    wait_for("restarted node1 daemon synced", CONVERGE, || {
        Ok(c.daemon_log(1).contains("watches synced").then_some(()))
    })?;
    let downtime = t_stop.elapsed();
    wait_requests(&load, REQUESTS_PER_PHASE, "after the restart")?;
    load.stop.store(true, Ordering::Relaxed);
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("load thread panicked"))?;

    for (i, s) in streams.iter_mut().enumerate() {
        let pod = s
            .exchange(&format!("after-{i}"))
            .with_context(|| format!("long-lived connection {i} after the restart"))?;
        ensure!(pod == "pod1", "connection {i} now answered by {pod}");
    }
    let failures = load.failures.lock().map(|f| f.clone()).unwrap_or_default();
    let ok = load.ok.load(Ordering::Relaxed);
    let max_gap = load.max_gap.lock().map(|g| *g).unwrap_or_default();
    println!(
        "restart: daemon down/starting for {downtime:.2?}; {ok} requests ok, {} failed, longest \
         gap between answers {max_gap:.2?}; {LONG_LIVED} long-lived connections survived",
        failures.len()
    );
    ensure!(
        failures.is_empty(),
        "requests failed during the restart: {failures:?}"
    );

    let log = c.daemon_log(1);
    ensure!(
        log.contains("reused pinned datapath state")
            && log.contains("replaced the program in the pinned link"),
        "the restarted daemon did not reuse the pinned state:\n{log}"
    );
    ensure!(
        !log.contains("frontend programmed")
            && !log.contains("assuming address")
            && !log.contains("forfeiting address"),
        "the restart re-programmed what was already there:\n{log}"
    );

    // Uninstall: with the daemon stopped, `l3lb cleanup` detaches the programs and removes the
    // pins. Run with host mounts (nsenter --net), where the pins are.
    c.stop_daemon(1)?;
    let dir = c.lab.bpffs_dir(1);
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", c.lab.node_ns(1)))
        .arg("--")
        .arg(l3lb_bin()?)
        .arg("cleanup")
        .arg("--bpffs-dir")
        .arg(&dir)
        .args(["--uplink", c.lab.uplink()])
        .output()?;
    ensure!(
        out.status.success(),
        "l3lb cleanup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = c.lab.exec(
        c.lab.node_ns(1),
        &["ip", "-d", "link", "show", c.lab.uplink()],
    )?;
    ensure!(
        !link.contains("xdp"),
        "XDP still attached after cleanup:\n{link}"
    );
    ensure!(!dir.exists(), "{} left after cleanup", dir.display());
    Ok(())
}
