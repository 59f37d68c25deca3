//! Rows measured with BPF_PROG_TEST_RUN on the daemon's embedded object: the kernel runs the
//! program `repeat` times on one frame and reports the mean time per run.
//!
//! The kernel reuses the (rewritten) frame across repeats, so each hit row uses a backend equal
//! to the VIP:port: the rewrite is idempotent and every repeat takes the named path. The
//! matching counter must have grown by exactly `repeat`, which proves it.
use anyhow::{Context as _, ensure};
use l3lb_common::{Counter, PROTO_TCP, PROTO_UDP};
use l3lb_tests::packets::{
    CLIENT, CLIENT_PORT, DNS, HTTP, OTHER, VIP, XDP_PASS, frontend, frontend_key, tcp, udp,
};
use l3lb_userspace::datapath::Datapath;
use serde_json::{Value, json};

pub const REPEAT: u32 = 1_000_000;

pub fn rows() -> anyhow::Result<Vec<Value>> {
    let enabled = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_default();
    ensure!(
        enabled.trim() != "1",
        "kernel.bpf_stats_enabled is on; it slows every program run: sysctl -w kernel.bpf_stats_enabled=0"
    );
    let mut dp =
        Datapath::load_detached().context("loading the embedded eBPF object (root needed)")?;
    // Backends equal to the frontends: the DNAT is idempotent across repeats.
    dp.upsert_frontend(
        frontend_key(VIP, HTTP, PROTO_TCP),
        &frontend(&[(VIP, HTTP)]),
    )?;
    dp.upsert_frontend(frontend_key(VIP, DNS, PROTO_UDP), &frontend(&[(VIP, DNS)]))?;

    let tcp4 = tcp((CLIENT, CLIENT_PORT), (VIP, HTTP), &[], Some(1));
    let udp4 = udp((CLIENT, CLIENT_PORT), (VIP, DNS), false);
    let other = tcp((CLIENT, CLIENT_PORT), (OTHER, HTTP), &[], Some(1));

    let noop = dp.test_run_xdp_noop(&tcp4, REPEAT)?;
    ensure!(noop.verdict == XDP_PASS, "noop returned {}", noop.verdict);
    let mut out = vec![row("noop", noop.duration.as_nanos() as f64)];
    // Established: the first run records the flow, every later one finds it.
    for (name, packet, counter) in [
        ("pass_non_vip", &other, Counter::XdpPassNotOurs),
        ("hit_tcp4_established", &tcp4, Counter::XdpDnatPass),
        ("hit_udp4", &udp4, Counter::XdpDnatPass),
    ] {
        let before = packets(&dp, counter)?;
        let run = dp.test_run_xdp(packet, REPEAT)?;
        let hits = packets(&dp, counter)? - before;
        ensure!(run.verdict == XDP_PASS, "{name}: verdict {}", run.verdict);
        ensure!(
            hits == u64::from(REPEAT),
            "{name}: {} counted {hits} times, not {REPEAT}",
            counter.name()
        );
        out.push(row(name, run.duration.as_nanos() as f64));
    }
    Ok(out)
}

fn packets(dp: &Datapath, counter: Counter) -> anyhow::Result<u64> {
    Ok(dp.counters()?.get(&counter).map_or(0, |s| s.packets))
}

fn row(name: &str, ns_per_packet: f64) -> Value {
    json!({"name": name, "ns_per_packet": ns_per_packet, "pps": 1e9 / ns_per_packet, "repeat": REPEAT})
}
