//! Datapath fixture tables (root): the programs from the daemon's embedded object, run with
//! BPF_PROG_TEST_RUN. Each row: map setup, input packet, expected verdict, expected output
//! packet (built independently with etherparse, which computes every checksum from scratch),
//! expected counter and expected flow table.
use std::{collections::BTreeMap, os::unix::fs::MetadataExt as _};

use l3lb_common::{
    Counter, FlowKeyV4, FlowNatV4, FrontendKeyV4, FrontendV4, MAX_BACKENDS, PROTO_TCP, PROTO_UDP,
    Stat, flow_slot,
};
use l3lb_userspace::datapath::{Datapath, DatapathError};

#[path = "datapath/attach.rs"]
mod attach;
#[path = "datapath/pinning.rs"]
mod pinning;
#[path = "datapath/vip_filter.rs"]
mod vip_filter;

use l3lb_tests::packets::{
    CLIENT, CLIENT_PORT, DNS, HTTP, HTTPS, OTHER, POD, POD_DNS, POD_HTTP, TC_ACT_OK, VIP, XDP_DROP,
    XDP_PASS, arp_request, be, flow, frontend, frontend_key, ipv6_udp, tcp, truncated, udp,
    udp_no_csum,
};

#[derive(Clone, Copy, Debug)]
enum Prog {
    Xdp,
    TcEgress,
}

/// One row of a fixture table.
struct Row {
    name: &'static str,
    prog: Prog,
    frontends: Vec<(FrontendKeyV4, FrontendV4)>,
    flows: Vec<(FlowKeyV4, FlowNatV4)>,
    input: Vec<u8>,
    verdict: u32,
    /// None: the packet must come out byte for byte as it went in.
    output: Option<Vec<u8>>,
    counter: Counter,
    /// Flow table after the run; None: unchanged from `flows`.
    flows_after: Option<Vec<(FlowKeyV4, FlowNatV4)>>,
}

/// The frontends most rows run against.
fn frontends() -> Vec<(FrontendKeyV4, FrontendV4)> {
    vec![
        (
            frontend_key(VIP, HTTP, PROTO_TCP),
            frontend(&[(POD, POD_HTTP)]),
        ),
        (
            frontend_key(VIP, DNS, PROTO_UDP),
            frontend(&[(POD, POD_DNS)]),
        ),
        (frontend_key(VIP, HTTPS, PROTO_TCP), frontend(&[])),
    ]
}

fn xdp_row(name: &'static str, input: Vec<u8>, output: Option<Vec<u8>>, counter: Counter) -> Row {
    Row {
        name,
        prog: Prog::Xdp,
        frontends: frontends(),
        flows: vec![],
        input,
        verdict: XDP_PASS,
        output,
        counter,
        flows_after: None,
    }
}

/// A row whose packet XDP drops, untouched.
fn xdp_drop(name: &'static str, input: Vec<u8>, counter: Counter) -> Row {
    Row {
        verdict: XDP_DROP,
        ..xdp_row(name, input, None, counter)
    }
}

fn tc_row(
    name: &'static str,
    flows: Vec<(FlowKeyV4, FlowNatV4)>,
    input: Vec<u8>,
    output: Option<Vec<u8>>,
    counter: Counter,
) -> Row {
    Row {
        name,
        prog: Prog::TcEgress,
        frontends: frontends(),
        flows,
        input,
        verdict: TC_ACT_OK,
        output,
        counter,
        flows_after: None,
    }
}

fn xdp_rows() -> Vec<Row> {
    let client_http = (CLIENT, CLIENT_PORT);
    let client_dns = (CLIENT, CLIENT_PORT);
    let http_flow = flow((POD, POD_HTTP), PROTO_TCP, (VIP, HTTP));
    let dns_flow = flow((POD, POD_DNS), PROTO_UDP, (VIP, DNS));
    // NOP, NOP, NOP, End-of-options: 4 bytes of IPv4 options (IHL 6).
    let options = [1u8, 1, 1, 0];
    vec![
        Row {
            flows_after: Some(vec![http_flow]),
            ..xdp_row(
                "tcp syn to vip is dnatted to the pod and passed",
                tcp(client_http, (VIP, HTTP), &[], None),
                Some(tcp(client_http, (POD, POD_HTTP), &[], None)),
                Counter::XdpDnatPass,
            )
        },
        Row {
            flows_after: Some(vec![dns_flow]),
            ..xdp_row(
                "udp to vip is dnatted to the pod",
                udp(client_dns, (VIP, DNS), false),
                Some(udp(client_dns, (POD, POD_DNS), false)),
                Counter::XdpDnatPass,
            )
        },
        Row {
            flows_after: Some(vec![dns_flow]),
            ..xdp_row(
                "udp checksum 0 stays 0",
                udp_no_csum(client_dns, (VIP, DNS)),
                Some(udp_no_csum(client_dns, (POD, POD_DNS))),
                Counter::XdpDnatPass,
            )
        },
        xdp_drop(
            "ipv4 with options to a frontend is dropped",
            tcp(client_http, (VIP, HTTP), &options, None),
            Counter::XdpDropVipIpOptions,
        ),
        Row {
            flows: vec![http_flow],
            flows_after: Some(vec![http_flow]),
            ..xdp_row(
                "second packet of a recorded flow is dnatted and keeps one flow entry",
                tcp(client_http, (VIP, HTTP), &[], None),
                Some(tcp(client_http, (POD, POD_HTTP), &[], None)),
                Counter::XdpDnatPass,
            )
        },
        xdp_row(
            "packet to another address passes untouched",
            tcp(client_http, (OTHER, HTTP), &[], None),
            None,
            Counter::XdpPassNotOurs,
        ),
        xdp_drop(
            "vip on a tcp port without frontend is dropped",
            tcp(client_http, (VIP, 8443), &[], None),
            Counter::XdpDropVipNoFrontend,
        ),
        xdp_drop(
            "vip port with the other protocol is dropped",
            udp(client_dns, (VIP, HTTP), false),
            Counter::XdpDropVipNoFrontend,
        ),
        xdp_drop(
            "frontend without endpoints is dropped",
            tcp(client_http, (VIP, HTTPS), &[], None),
            Counter::XdpNoBackend,
        ),
        xdp_drop(
            "ipv4 first fragment to a frontend is dropped",
            udp(client_dns, (VIP, DNS), true),
            Counter::XdpDropVipFragment,
        ),
        xdp_drop(
            "tcp header to the vip cut short is dropped",
            truncated(tcp(client_http, (VIP, HTTP), &[], None), 14 + 20 + 10),
            Counter::XdpDropVipNoFrontend,
        ),
        xdp_drop(
            "udp header to the vip cut short is dropped",
            truncated(udp(client_dns, (VIP, DNS), false), 14 + 20 + 6),
            Counter::XdpDropVipNoFrontend,
        ),
        xdp_row(
            "ipv4 header cut short passes untouched",
            truncated(tcp(client_http, (VIP, HTTP), &[], None), 14 + 10),
            None,
            Counter::XdpPassNotOurs,
        ),
        xdp_row(
            "bare ethernet header passes untouched",
            truncated(tcp(client_http, (VIP, HTTP), &[], None), 14),
            None,
            Counter::XdpPassNotOurs,
        ),
        xdp_row(
            "ipv6 passes untouched",
            ipv6_udp(),
            None,
            Counter::XdpPassNotOurs,
        ),
        xdp_row(
            "arp passes untouched",
            arp_request(),
            None,
            Counter::XdpPassNotOurs,
        ),
    ]
}

fn tc_rows() -> Vec<Row> {
    let client = (CLIENT, CLIENT_PORT);
    let http_flow = flow((POD, POD_HTTP), PROTO_TCP, (VIP, HTTP));
    let dns_flow = flow((POD, POD_DNS), PROTO_UDP, (VIP, DNS));
    vec![
        tc_row(
            "tcp reply of a translated flow leaves from vip:port",
            vec![http_flow],
            tcp((POD, POD_HTTP), client, &[], Some(1_001)),
            Some(tcp((VIP, HTTP), client, &[], Some(1_001))),
            Counter::TcRevNat,
        ),
        tc_row(
            "udp reply of a translated flow leaves from vip:port",
            vec![dns_flow],
            udp((POD, POD_DNS), client, false),
            Some(udp((VIP, DNS), client, false)),
            Counter::TcRevNat,
        ),
        tc_row(
            "udp reply without checksum keeps checksum 0",
            vec![dns_flow],
            udp_no_csum((POD, POD_DNS), client),
            Some(udp_no_csum((VIP, DNS), client)),
            Counter::TcRevNat,
        ),
        tc_row(
            "reply with ip options is rewritten after the options",
            vec![http_flow],
            tcp((POD, POD_HTTP), client, &[1, 1, 1, 0], Some(1_001)),
            Some(tcp((VIP, HTTP), client, &[1, 1, 1, 0], Some(1_001))),
            Counter::TcRevNat,
        ),
        tc_row(
            "reply without a flow passes untouched",
            vec![],
            tcp((POD, POD_HTTP), client, &[], Some(1_001)),
            None,
            Counter::TcPassNotOurs,
        ),
        tc_row(
            "reply of another protocol than the flow passes untouched",
            vec![http_flow],
            udp((POD, POD_HTTP), client, false),
            None,
            Counter::TcPassNotOurs,
        ),
        tc_row(
            "truncated reply passes untouched",
            vec![http_flow],
            truncated(tcp((POD, POD_HTTP), client, &[], Some(1_001)), 14 + 20 + 10),
            None,
            Counter::TcPassNotOurs,
        ),
        tc_row(
            "ipv6 passes untouched",
            vec![],
            ipv6_udp(),
            None,
            Counter::TcPassNotOurs,
        ),
        tc_row(
            "arp passes untouched",
            vec![],
            arp_request(),
            None,
            Counter::TcPassNotOurs,
        ),
    ]
}

/// Fails (never skips) when the tests cannot load eBPF programs.
fn require_root() {
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    assert_eq!(
        euid, 0,
        "the datapath tests load eBPF programs and need root: run them as root, e.g. \
         `sudo -E env PATH=$PATH cargo test -p l3lb-tests --test datapath`"
    );
}

fn hex(bytes: &[u8]) -> String {
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

fn run_row(row: &Row) -> Result<(), String> {
    let mut dp = Datapath::load_detached().map_err(|e| format!("load: {e:?}"))?;
    for (key, value) in &row.frontends {
        dp.upsert_frontend(*key, value)
            .map_err(|e| format!("{e:?}"))?;
    }
    for (key, nat) in &row.flows {
        dp.insert_flow(*key, nat).map_err(|e| format!("{e:?}"))?;
    }
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
    let mut want_counters: BTreeMap<Counter, Stat> =
        Counter::ALL.iter().map(|c| (*c, Stat::default())).collect();
    want_counters.insert(
        row.counter,
        Stat {
            packets: 1,
            bytes: row.input.len() as u64,
        },
    );
    if counters != want_counters {
        return Err(format!("counters {counters:?}\nwant {want_counters:?}"));
    }
    let flows = dp.flows().map_err(|e| format!("{e:?}"))?;
    let want_flows: BTreeMap<_, _> = row
        .flows_after
        .as_ref()
        .unwrap_or(&row.flows)
        .iter()
        .copied()
        .collect();
    if flows != want_flows {
        return Err(format!("flows {flows:?}\nwant {want_flows:?}"));
    }
    Ok(())
}

fn run_table(rows: Vec<Row>) {
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
    run_table(xdp_rows());
}

#[test]
fn tc_egress_fixtures() {
    run_table(tc_rows());
}

/// A connection through both programs: XDP records the flow, TC translates the reply.
#[test]
fn round_trip_through_both_programs() {
    require_root();
    let mut dp = Datapath::load_detached().expect("load");
    let backends: Vec<([u8; 4], u16)> = (1..=3)
        .map(|i| ([10, 244, 2, i], 9000 + u16::from(i)))
        .collect();
    dp.upsert_frontend(frontend_key(VIP, HTTP, PROTO_TCP), &frontend(&backends))
        .expect("upsert");
    for port in [
        CLIENT_PORT,
        CLIENT_PORT + 1,
        CLIENT_PORT + 2,
        CLIENT_PORT + 3,
    ] {
        let client = (CLIENT, port);
        let slot = flow_slot(be(CLIENT), port.to_be(), 3) as usize;
        let backend = backends[slot];
        let syn = dp
            .test_run_xdp(&tcp(client, (VIP, HTTP), &[], None), 1)
            .expect("xdp run");
        assert_eq!(syn.verdict, XDP_PASS);
        assert_eq!(
            syn.packet,
            tcp(client, backend, &[], None),
            "client port {port} -> slot {slot}"
        );
        let reply = dp
            .test_run_tc_egress(&tcp(backend, client, &[], Some(1_001)), 1)
            .expect("tc run");
        assert_eq!(reply.verdict, TC_ACT_OK);
        assert_eq!(reply.packet, tcp((VIP, HTTP), client, &[], Some(1_001)));
    }
    let counters = dp.counters().expect("counters");
    assert_eq!(counters[&Counter::XdpDnatPass].packets, 4);
    assert_eq!(counters[&Counter::TcRevNat].packets, 4);
    assert_eq!(dp.flows().expect("flows").len(), 4);
}

/// The control-plane API of the frontend map.
#[test]
fn frontend_map_api() {
    require_root();
    let mut dp = Datapath::load_detached().expect("load");
    let key = frontend_key(VIP, HTTP, PROTO_TCP);
    assert!(dp.frontends().expect("list").is_empty());
    dp.upsert_frontend(key, &frontend(&[(POD, POD_HTTP)]))
        .expect("insert");
    dp.upsert_frontend(key, &frontend(&[(POD, POD_HTTP), (OTHER, 1)]))
        .expect("replace");
    let listed = dp.frontends().expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[&key].count, 2);
    dp.remove_frontend(&key).expect("remove");
    dp.remove_frontend(&key)
        .expect("removing an absent frontend succeeds");
    assert!(dp.frontends().expect("list").is_empty());
    let too_many = FrontendV4 {
        count: MAX_BACKENDS as u32 + 1,
        ..FrontendV4::default()
    };
    assert!(matches!(
        dp.upsert_frontend(key, &too_many),
        Err(DatapathError::TooManyBackends { .. })
    ));
}
