//! Rows measured with BPF_PROG_TEST_RUN on the daemon's embedded object: the kernel runs the
//! program (XDP, and for the `tc_*` rows TC egress) `repeat` times on one frame and reports the
//! mean time per run.
//!
//! The kernel reuses the (rewritten) frame across repeats, so each hit row uses a backend equal
//! to the VIP:port: the rewrite is idempotent and every repeat takes the named path. The
//! matching counter must have grown by exactly `repeat`, the new-flow counter by `repeat` for
//! the new-flow row and by 0 for the others, and no flow may have been established during a
//! run, which proves it. Two rows need more than one frame repeated: an established flow found
//! only in the LRU (`lru.rs`) and the redirect path with its FIB lookup (`fib.rs`); each states
//! its design. All of them run from a thread inside the scratch namespace `fib::setup` prepared
//! (the FIB lookup's).
use anyhow::{Context as _, ensure};
use l3lb_common::{Counter, PROTO_TCP, PROTO_UDP};
use l3lb_tests::packets::{
    CLIENT, CLIENT_PORT, CLIENT6, DNS, HTTP, TC_ACT_OK, VIP, VIP6, XDP_PASS, backends, backends6,
    fe, fe6, tcp, tcp_ack, tcp6, udp,
};
use l3lb_userspace::node::datapath::Datapath;
use serde_json::{Value, json};

pub const REPEAT: u32 = 1_000_000;

/// An address outside the VIP prefix, as the node's own traffic is.
const NODE: [u8; 4] = [192, 0, 2, 1];

pub fn rows() -> anyhow::Result<Vec<Value>> {
    let enabled = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_default();
    ensure!(
        enabled.trim() != "1",
        "kernel.bpf_stats_enabled is on; it slows every program run: sysctl -w kernel.bpf_stats_enabled=0"
    );
    let mut dp =
        Datapath::load_detached().context("loading the embedded eBPF object (root needed)")?;
    dp.set_prefixes(&["203.0.113.0/24".parse()?, "2001:db8:a::/64".parse()?])?;
    // Backends equal to the frontends: the DNAT is idempotent across repeats.
    dp.set_frontend(fe(VIP, HTTP, PROTO_TCP), &backends(&[(VIP, HTTP)]))?;
    dp.set_frontend(fe(VIP, DNS, PROTO_UDP), &backends(&[(VIP, DNS)]))?;
    dp.set_frontend(fe6(VIP6, HTTP, PROTO_TCP), &backends6(&[(VIP6, HTTP)]))?;

    let syn4 = tcp((CLIENT, CLIENT_PORT), (VIP, HTTP), &[], None);
    let ack4 = tcp_ack((CLIENT, CLIENT_PORT + 1), (VIP, HTTP));
    let udp4 = udp((CLIENT, CLIENT_PORT), (VIP, DNS), false);
    let other = tcp_ack((CLIENT, CLIENT_PORT), (NODE, HTTP));
    let ack6 = tcp6((CLIENT6, CLIENT_PORT), (VIP6, HTTP), Some(1));

    let noop = dp.test_run_xdp_noop(&ack4, REPEAT)?;
    ensure!(noop.verdict == XDP_PASS, "noop returned {}", noop.verdict);
    let mut out = vec![row("noop", noop.duration.as_nanos() as f64)];
    // Established rows: two packets first (the first pins the flow as new, the second
    // establishes it), so every repeat finds the established pin (no new flow is counted during
    // the run).
    for packet in [&ack4, &udp4, &ack6] {
        dp.test_run_xdp(packet, 1)?;
        dp.test_run_xdp(packet, 1)?;
    }
    for (name, packet, counter, new_flows) in [
        ("pass_non_vip", &other, Counter::XdpPassNotOurs, 0),
        ("hit_tcp4_new", &syn4, Counter::XdpDnatPass, REPEAT),
        ("hit_tcp4_established", &ack4, Counter::XdpDnatPass, 0),
        ("hit_tcp6_established", &ack6, Counter::XdpDnatPass, 0),
        ("hit_udp4", &udp4, Counter::XdpDnatPass, 0),
    ] {
        let before = (
            packets(&dp, counter)?,
            packets(&dp, Counter::XdpFlowNew)?,
            packets(&dp, Counter::XdpFlowEstablished)?,
        );
        let run = dp.test_run_xdp(packet, REPEAT)?;
        let hits = packets(&dp, counter)? - before.0;
        let new = packets(&dp, Counter::XdpFlowNew)? - before.1;
        // An established row finds the established pin: no flow moves there during the run.
        let established = packets(&dp, Counter::XdpFlowEstablished)? - before.2;
        ensure!(
            established == 0,
            "{name}: {established} flows established during the run"
        );
        ensure!(run.verdict == XDP_PASS, "{name}: verdict {}", run.verdict);
        ensure!(
            hits == u64::from(REPEAT),
            "{name}: {} counted {hits} times, not {REPEAT}",
            counter.name()
        );
        ensure!(
            new == u64::from(new_flows),
            "{name}: {new} new flows, want {new_flows}"
        );
        out.push(row(name, run.duration.as_nanos() as f64));
    }
    out.push(crate::lru::row_lru(&mut dp)?);
    // TC egress: the reply of the established flow of `ack4` (its backend is the VIP:port, so the
    // rewrite is idempotent too), and a packet that is not l3lb's (the node's own).
    let reply4 = tcp((VIP, HTTP), (CLIENT, CLIENT_PORT + 1), &[], Some(1));
    let node_out = tcp_ack((NODE, 22), (CLIENT, CLIENT_PORT));
    for (name, packet, counter) in [
        ("tc_pass_not_ours", &node_out, Counter::TcPassNotOurs),
        ("tc_rev_nat_established", &reply4, Counter::TcRevNat),
    ] {
        let before = packets(&dp, counter)?;
        let run = dp.test_run_tc_egress(packet, REPEAT)?;
        let hits = packets(&dp, counter)? - before;
        ensure!(run.verdict == TC_ACT_OK, "{name}: verdict {}", run.verdict);
        ensure!(
            hits == u64::from(REPEAT),
            "{name}: {} counted {hits} times, not {REPEAT}",
            counter.name()
        );
        out.push(row(name, run.duration.as_nanos() as f64));
    }
    out.push(crate::fib::row_redirect()?);
    Ok(out)
}

pub fn packets(dp: &Datapath, counter: Counter) -> anyhow::Result<u64> {
    Ok(dp.counters()?.get(&counter).map_or(0, |s| s.packets))
}

pub fn row(name: &str, ns_per_packet: f64) -> Value {
    json!({"name": name, "ns_per_packet": ns_per_packet, "pps": 1e9 / ns_per_packet, "repeat": REPEAT})
}
