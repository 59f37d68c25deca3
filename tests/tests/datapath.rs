//! Datapath fixture tables (root): the programs from the daemon's embedded object, run with
//! BPF_PROG_TEST_RUN. Each row: frontends programmed through the daemon's own code, packets run
//! first, the input packet, expected verdict, expected output packet (built independently with
//! etherparse, which computes every checksum from scratch), expected counters and flow tables.
use std::{collections::BTreeMap, os::unix::fs::MetadataExt as _};

use l3lb_common::{ConnKeyV4, Counter, FlowKeyV4, FlowNatV4, Stat};
use l3lb_userspace::{
    core::model::{Backends, Endpoint, FrontendId},
    node::datapath::Datapath,
};

#[path = "datapath/attach.rs"]
mod attach;
#[path = "datapath/balance.rs"]
mod balance;
#[path = "datapath/bpf_log.rs"]
mod bpf_log;
#[path = "datapath/checksums.rs"]
mod checksums;
#[path = "datapath/flood.rs"]
mod flood;
#[path = "datapath/fuzz.rs"]
mod fuzz;
#[path = "datapath/icmp.rs"]
mod icmp;
#[path = "datapath/neigh.rs"]
mod neigh;
#[path = "datapath/pinning.rs"]
mod pinning;
#[path = "datapath/rows.rs"]
mod rows;
#[path = "datapath/rows6.rs"]
mod rows6;
#[path = "datapath/sctp.rs"]
mod sctp;
#[path = "datapath/vip_filter.rs"]
mod vip_filter;

use l3lb_tests::packets::{
    DNS, HTTP, HTTPS, POD, POD_DNS, POD_HTTP, TC_ACT_OK, VIP, XDP_DROP, XDP_PASS, backends, fe,
};

#[derive(Clone, Copy, Debug)]
pub enum Prog {
    Xdp,
    TcEgress,
}

/// One row of a fixture table.
pub struct Row {
    pub name: &'static str,
    pub prog: Prog,
    pub frontends: Vec<(FrontendId, Backends)>,
    /// Established reply-path translations recorded before the run.
    pub flows: Vec<(FlowKeyV4, FlowNatV4)>,
    /// Packets XDP sees before the input (their counters are not part of the expectation).
    pub before: Vec<Vec<u8>>,
    /// Frontends programmed after `before` ran (a backend set changing under pinned flows).
    pub then: Vec<(FrontendId, Backends)>,
    pub input: Vec<u8>,
    pub verdict: u32,
    /// None: the packet must come out byte for byte as it went in.
    pub output: Option<Vec<u8>>,
    /// The packet's verdict counter.
    pub counter: Counter,
    /// Event counters the input adds (each once).
    pub events: Vec<Counter>,
    /// Established reply-path table after the run; None: unchanged from before it.
    pub flows_after: Option<Vec<(FlowKeyV4, FlowNatV4)>>,
    /// New flows' reply-path table after the run; None: unchanged from before it.
    pub new_flows_after: Option<Vec<(FlowKeyV4, FlowNatV4)>>,
    /// Established pinned flows (resolved to their endpoints) after the run; None: not checked.
    pub pins_after: Option<Vec<(ConnKeyV4, Endpoint)>>,
    /// New flows' pins (resolved to their endpoints) after the run; None: not checked.
    pub new_pins_after: Option<Vec<(ConnKeyV4, Endpoint)>>,
}

/// The frontends most rows run against.
pub fn frontends() -> Vec<(FrontendId, Backends)> {
    use l3lb_common::{PROTO_TCP, PROTO_UDP};
    vec![
        (fe(VIP, HTTP, PROTO_TCP), backends(&[(POD, POD_HTTP)])),
        (fe(VIP, DNS, PROTO_UDP), backends(&[(POD, POD_DNS)])),
        (fe(VIP, HTTPS, PROTO_TCP), backends(&[])),
    ]
}

pub fn xdp_row(
    name: &'static str,
    input: Vec<u8>,
    output: Option<Vec<u8>>,
    counter: Counter,
) -> Row {
    Row {
        name,
        prog: Prog::Xdp,
        frontends: frontends(),
        flows: vec![],
        before: vec![],
        then: vec![],
        input,
        verdict: XDP_PASS,
        output,
        counter,
        events: vec![],
        flows_after: None,
        new_flows_after: None,
        pins_after: None,
        new_pins_after: None,
    }
}

/// A row whose packet XDP drops, untouched.
pub fn xdp_drop(name: &'static str, input: Vec<u8>, counter: Counter) -> Row {
    Row {
        verdict: XDP_DROP,
        ..xdp_row(name, input, None, counter)
    }
}

pub fn tc_row(
    name: &'static str,
    flows: Vec<(FlowKeyV4, FlowNatV4)>,
    input: Vec<u8>,
    output: Option<Vec<u8>>,
    counter: Counter,
) -> Row {
    Row {
        prog: Prog::TcEgress,
        flows,
        verdict: TC_ACT_OK,
        ..xdp_row(name, input, output, counter)
    }
}

/// Fails (never skips) when the tests cannot load eBPF programs.
pub fn require_root() {
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    assert_eq!(
        euid, 0,
        "the datapath tests load eBPF programs and need root: run them as root, e.g. \
         `sudo -E env PATH=$PATH cargo test -p l3lb-tests --test datapath`"
    );
}

pub fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Counters grown since `before`.
pub fn grown(
    before: &BTreeMap<Counter, Stat>,
    after: &BTreeMap<Counter, Stat>,
) -> BTreeMap<Counter, u64> {
    after
        .iter()
        .map(|(c, s)| (*c, s.packets - before.get(c).map_or(0, |b| b.packets)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn run_row(row: &Row) -> Result<(), String> {
    let mut dp = Datapath::load_detached().map_err(|e| format!("load: {e:?}"))?;
    for (id, backends) in &row.frontends {
        dp.set_frontend(*id, backends)
            .map_err(|e| format!("{e:?}"))?;
    }
    for (key, nat) in &row.flows {
        dp.insert_flow(*key, nat).map_err(|e| format!("{e:?}"))?;
    }
    for packet in &row.before {
        dp.test_run_xdp(packet, 1)
            .map_err(|e| format!("run before: {e:?}"))?;
    }
    for (id, backends) in &row.then {
        dp.set_frontend(*id, backends)
            .map_err(|e| format!("{e:?}"))?;
    }
    let flows_before = dp.flows().map_err(|e| format!("{e:?}"))?;
    let new_flows_before = dp.new_flows().map_err(|e| format!("{e:?}"))?;
    let counters_before = dp.counters().map_err(|e| format!("{e:?}"))?;
    let out = match row.prog {
        Prog::Xdp => dp.test_run_xdp(&row.input, 1),
        Prog::TcEgress => dp.test_run_tc_egress(&row.input, 1),
    }
    .map_err(|e| format!("test run: {e:?}"))?;
    if out.verdict != row.verdict {
        return Err(format!("verdict {} (want {})", out.verdict, row.verdict));
    }
    let want = row.output.as_ref().unwrap_or(&row.input);
    if &out.packet != want {
        return Err(format!(
            "output packet differs\n got:\n{}\nwant:\n{}",
            hex(&out.packet),
            hex(want)
        ));
    }
    let counters = dp.counters().map_err(|e| format!("{e:?}"))?;
    let mut want_counts: BTreeMap<Counter, u64> = [(row.counter, 1)].into();
    for e in &row.events {
        want_counts.insert(*e, 1);
    }
    let got = grown(&counters_before, &counters);
    if got != want_counts {
        return Err(format!("counters grew {got:?}\nwant {want_counts:?}"));
    }
    let verdict_bytes =
        counters[&row.counter].bytes - counters_before.get(&row.counter).map_or(0, |s| s.bytes);
    if verdict_bytes != row.input.len() as u64 {
        return Err(format!(
            "{} counted {verdict_bytes} bytes, not {}",
            row.counter.name(),
            row.input.len()
        ));
    }
    for (what, got, after, before) in [
        ("flows", dp.flows(), &row.flows_after, flows_before),
        (
            "new flows",
            dp.new_flows(),
            &row.new_flows_after,
            new_flows_before,
        ),
    ] {
        let got = got.map_err(|e| format!("{e:?}"))?;
        let want: BTreeMap<_, _> = match after {
            Some(f) => f.iter().copied().collect(),
            None => before,
        };
        if got != want {
            return Err(format!("{what} {got:?}\nwant {want:?}"));
        }
    }
    for (what, got, want) in [
        ("pins", dp.pinned_flows(), &row.pins_after),
        ("new pins", dp.new_pinned_flows(), &row.new_pins_after),
    ] {
        let Some(want) = want else { continue };
        let got = got.map_err(|e| format!("{e:?}"))?;
        let want: BTreeMap<_, _> = want.iter().copied().collect();
        if got != want {
            return Err(format!("{what} {got:?}\nwant {want:?}"));
        }
    }
    Ok(())
}

pub fn run_table(rows: Vec<Row>) {
    require_root();
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            run_row(row)
                .err()
                .map(|e| format!("[{:?}] {}: {e}", row.prog, row.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
}

#[test]
fn xdp_ingress_fixtures() {
    run_table(rows::xdp());
}

#[test]
fn tc_egress_fixtures() {
    run_table(rows::tc());
}
