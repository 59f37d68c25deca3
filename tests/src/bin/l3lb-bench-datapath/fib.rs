//! `hit_tcp4_redirect_fib`: an established flow's DNAT followed by the delivery XDP makes with
//! `--xdp-redirect`: `bpf_fib_lookup` for the backend, the TTL decrement with its checksum
//! update, the next hop's MAC addresses written, `bpf_redirect_map` into the listed interface.
//!
//! The FIB it looks in is that of the network namespace the test run is made from (its `lo` is
//! the ingress device): [`setup`] gives a scratch namespace a veth `rd0` with a route to the VIP
//! prefix and a permanent neighbour for the backend, and forwarding on.
//!
//! TTL design: the kernel runs the program `repeat` times on the same buffer, and each run takes
//! one from the TTL; at TTL 1 XDP leaves the packet to the kernel (to send the ICMP error), so
//! one call with a large repeat would measure that path for all but the first runs. So the
//! frame starts at TTL 255 and each call repeats 254 times (every run sees a TTL of 2 or more
//! and redirects), over many calls; the row is the mean of the kernel's per-run times, weighted
//! by runs. Checked per call: the verdict is XDP_REDIRECT, the TTL went down by exactly 254 and
//! the destination MAC is the neighbour's; over all calls, `xdp_redirect` counted every run.
use std::{collections::BTreeSet, ffi::CString};

use anyhow::{Context as _, ensure};
use l3lb_common::{Counter, PROTO_TCP};
use l3lb_tests::{
    lab::ScratchNs,
    packets::{CLIENT, CLIENT_PORT, HTTP, VIP, backends, fe, tcp_ack},
};
use l3lb_userspace::{core::model::DatapathSettings, node::datapath::Datapath};
use serde_json::Value;

use crate::testrun::{REPEAT, packets, row};

const DEV: &str = "rd0";
const NEIGH_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
/// Runs per call: from TTL 255 down to 1, every run forwards.
const PER_CALL: u32 = 254;
/// Calls: about as many runs as the other rows.
const CALLS: u32 = REPEAT / PER_CALL;
const XDP_REDIRECT: u32 = 4;
/// Offset of the IPv4 TTL in an Ethernet frame.
const TTL: usize = 14 + 8;

/// Route and neighbour for the backend (the VIP itself: the DNAT stays idempotent) in `ns`.
pub fn setup(ns: &ScratchNs) -> anyhow::Result<()> {
    let vip = std::net::Ipv4Addr::from(VIP).to_string();
    let mac = NEIGH_MAC.map(|b| format!("{b:02x}")).join(":");
    ns.ip(&["link", "add", DEV, "type", "veth", "peer", "name", "rd1"])?;
    ns.ip(&["addr", "add", "10.99.0.1/24", "dev", DEV])?;
    ns.ip(&["link", "set", DEV, "up"])?;
    ns.ip(&["link", "set", "rd1", "up"])?;
    ns.ip(&["route", "add", "203.0.113.0/24", "dev", DEV])?;
    ns.ip(&[
        "neigh",
        "add",
        &vip,
        "lladdr",
        &mac,
        "dev",
        DEV,
        "nud",
        "permanent",
    ])?;
    ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    Ok(())
}

/// `frame` (IPv4 in Ethernet) with TTL `ttl` and its header checksum recomputed.
fn with_ttl(mut frame: Vec<u8>, ttl: u8) -> Vec<u8> {
    frame[TTL] = ttl;
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = frame[14..34]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let folded = (folded & 0xffff) + (folded >> 16);
    frame[24..26].copy_from_slice(&(!(folded as u16)).to_be_bytes());
    frame
}

/// Run from a thread inside the namespace [`setup`] prepared.
pub fn row_redirect() -> anyhow::Result<Value> {
    let name = "hit_tcp4_redirect_fib";
    let dev = CString::new(DEV)?;
    // SAFETY: a NUL-terminated name; the call only reads it.
    let ifindex = unsafe { libc::if_nametoindex(dev.as_ptr()) };
    ensure!(ifindex != 0, "{name}: no {DEV} in this namespace");
    let mut dp =
        Datapath::load_detached().context("loading the embedded eBPF object (root needed)")?;
    dp.configure(&DatapathSettings {
        prefixes: ["203.0.113.0/24".parse()?].into(),
        redirect_targets: BTreeSet::from([ifindex]),
    })?;
    dp.set_frontend(fe(VIP, HTTP, PROTO_TCP), &backends(&[(VIP, HTTP)]))?;
    let frame = with_ttl(tcp_ack((CLIENT, CLIENT_PORT), (VIP, HTTP)), 255);
    dp.test_run_xdp(&frame, 1)?;
    dp.test_run_xdp(&frame, 1)?;
    let before = (
        packets(&dp, Counter::XdpRedirect)?,
        packets(&dp, Counter::XdpFlowNew)?,
        packets(&dp, Counter::XdpFlowEstablished)?,
    );
    let mut ns_total = 0.0;
    for _ in 0..CALLS {
        let run = dp.test_run_xdp(&frame, PER_CALL)?;
        ensure!(
            run.verdict == XDP_REDIRECT,
            "{name}: verdict {}",
            run.verdict
        );
        ensure!(
            run.packet[TTL] == 255 - PER_CALL as u8 && run.packet[..6] == NEIGH_MAC,
            "{name}: TTL {} and destination MAC {:02x?} after {PER_CALL} runs",
            run.packet[TTL],
            &run.packet[..6]
        );
        ns_total += run.duration.as_nanos() as f64 * f64::from(PER_CALL);
    }
    let runs = u64::from(CALLS) * u64::from(PER_CALL);
    let redirected = packets(&dp, Counter::XdpRedirect)? - before.0;
    let new = packets(&dp, Counter::XdpFlowNew)? - before.1;
    let established = packets(&dp, Counter::XdpFlowEstablished)? - before.2;
    ensure!(
        (redirected, new, established) == (runs, 0, 0),
        "{name}: {redirected} redirected (want {runs}), {new} new, {established} established flows"
    );
    let mut r = row(name, ns_total / runs as f64);
    r["repeat"] = PER_CALL.into();
    r["calls"] = CALLS.into();
    r["design"] = "TTL 255, 254 runs per call (each run decrements the TTL; all stay above 1 \
                   and redirect), mean over all calls"
        .into();
    Ok(r)
}
