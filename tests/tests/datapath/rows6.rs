//! IPv6 through both programs: DNAT of new and pinned flows to a pod, the reply path, the VIP
//! filter (extension headers and fragments to a VIP dropped, ICMPv6 echo, errors and neighbour
//! discovery passed), and what is not ours passing untouched.
use l3lb_common::{Counter, PROTO_TCP, PROTO_UDP};
use l3lb_tests::packets::{
    CLIENT_PORT, CLIENT6, DNS, HTTP, HTTPS, OTHER6, POD_DNS, POD_HTTP, POD6, TC_ACT_OK, VIP6,
    XDP_PASS, backends6, ep6, fe6, icmp6, ipv6_ext, tcp6, udp6,
};
use l3lb_userspace::{
    core::model::{Backends, FrontendId},
    node::datapath::Datapath,
};

use crate::{Prog, Row, require_root, run_table, xdp_drop, xdp_row};

fn frontends6() -> Vec<(FrontendId, Backends)> {
    vec![
        (fe6(VIP6, HTTP, PROTO_TCP), backends6(&[(POD6, POD_HTTP)])),
        (fe6(VIP6, DNS, PROTO_UDP), backends6(&[(POD6, POD_DNS)])),
        (fe6(VIP6, HTTPS, PROTO_TCP), backends6(&[])),
    ]
}

fn v6(row: Row) -> Row {
    Row {
        frontends: frontends6(),
        ..row
    }
}

fn xdp_rows() -> Vec<Row> {
    let client = (CLIENT6, CLIENT_PORT);
    let new = vec![Counter::XdpFlowNew];
    vec![
        v6(Row {
            events: new.clone(),
            ..xdp_row(
                "ipv6 tcp syn to the vip is dnatted to the pod",
                tcp6(client, (VIP6, HTTP), None),
                Some(tcp6(client, (POD6, POD_HTTP), None)),
                Counter::XdpDnatPass,
            )
        }),
        v6(Row {
            before: vec![tcp6(client, (VIP6, HTTP), None)],
            events: vec![Counter::XdpFlowEstablished],
            ..xdp_row(
                "ipv6 ack of a new flow goes to its pod and establishes the flow",
                tcp6(client, (VIP6, HTTP), Some(1)),
                Some(tcp6(client, (POD6, POD_HTTP), Some(1))),
                Counter::XdpDnatPass,
            )
        }),
        v6(Row {
            before: vec![
                tcp6(client, (VIP6, HTTP), None),
                tcp6(client, (VIP6, HTTP), Some(1)),
            ],
            ..xdp_row(
                "ipv6 ack of an established flow goes to its pod",
                tcp6(client, (VIP6, HTTP), Some(1)),
                Some(tcp6(client, (POD6, POD_HTTP), Some(1))),
                Counter::XdpDnatPass,
            )
        }),
        v6(Row {
            events: new,
            ..xdp_row(
                "ipv6 udp to the vip is dnatted to the pod",
                udp6(client, (VIP6, DNS)),
                Some(udp6(client, (POD6, POD_DNS))),
                Counter::XdpDnatPass,
            )
        }),
        v6(xdp_drop(
            "ipv6 to the vip on a port no frontend serves is dropped",
            tcp6(client, (VIP6, 22), None),
            Counter::XdpDropVipNoFrontend,
        )),
        v6(xdp_drop(
            "ipv6 frontend without endpoints drops",
            tcp6(client, (VIP6, HTTPS), None),
            Counter::XdpNoBackend,
        )),
        v6(xdp_drop(
            "ipv6 hop-by-hop options to the vip are dropped",
            ipv6_ext(CLIENT6, VIP6, 0),
            Counter::XdpDropVipIpOptions,
        )),
        v6(xdp_drop(
            "ipv6 fragment to the vip is dropped",
            ipv6_ext(CLIENT6, VIP6, 44),
            Counter::XdpDropVipFragment,
        )),
        v6(xdp_row(
            "ipv6 fragment to another address passes untouched",
            ipv6_ext(CLIENT6, OTHER6, 44),
            None,
            Counter::XdpPassFragment,
        )),
        v6(xdp_row(
            "ipv6 hop-by-hop to another address passes untouched",
            ipv6_ext(CLIENT6, OTHER6, 0),
            None,
            Counter::XdpPassNotOurs,
        )),
        v6(xdp_row(
            "icmpv6 echo request to the vip passes",
            icmp6(CLIENT6, VIP6, 128),
            None,
            Counter::XdpPassVipIcmp,
        )),
        v6(xdp_row(
            "icmpv6 packet too big to the vip passes",
            icmp6(CLIENT6, VIP6, 2),
            None,
            Counter::XdpPassVipIcmp,
        )),
        v6(xdp_row(
            "neighbour solicitation to the vip passes",
            icmp6(CLIENT6, VIP6, 135),
            None,
            Counter::XdpPassVipIcmp,
        )),
        v6(xdp_drop(
            "icmpv6 echo reply to the vip is dropped",
            icmp6(CLIENT6, VIP6, 129),
            Counter::XdpDropVipNoFrontend,
        )),
        v6(xdp_row(
            "ipv6 tcp to another address passes untouched",
            tcp6(client, (OTHER6, HTTP), None),
            None,
            Counter::XdpPassNotOurs,
        )),
    ]
}

#[test]
fn xdp_ipv6_fixtures() {
    run_table(xdp_rows());
}

#[test]
fn tc_ipv6_reply_of_a_translated_flow_leaves_from_the_vip() {
    let client = (CLIENT6, CLIENT_PORT);
    let mut rows = Vec::new();
    let (syn, ack) = (
        tcp6(client, (VIP6, HTTP), None),
        tcp6(client, (VIP6, HTTP), Some(1)),
    );
    let (query, again) = (udp6(client, (VIP6, DNS)), udp6(client, (VIP6, DNS)));
    for (name, before, reply, want, counter) in [
        (
            "ipv6 tcp reply of a new flow (syn-ack) leaves from vip:port",
            vec![syn.clone()],
            tcp6((POD6, POD_HTTP), client, Some(1_001)),
            tcp6((VIP6, HTTP), client, Some(1_001)),
            Counter::TcRevNatNew,
        ),
        (
            "ipv6 tcp reply of an established flow leaves from vip:port",
            vec![syn, ack],
            tcp6((POD6, POD_HTTP), client, Some(1_001)),
            tcp6((VIP6, HTTP), client, Some(1_001)),
            Counter::TcRevNat,
        ),
        (
            "ipv6 udp answer to a first datagram leaves from vip:port",
            vec![query.clone()],
            udp6((POD6, POD_DNS), client),
            udp6((VIP6, DNS), client),
            Counter::TcRevNatNew,
        ),
        (
            "ipv6 udp reply of an established flow leaves from vip:port",
            vec![query, again],
            udp6((POD6, POD_DNS), client),
            udp6((VIP6, DNS), client),
            Counter::TcRevNat,
        ),
    ] {
        rows.push(v6(Row {
            prog: Prog::TcEgress,
            before,
            verdict: TC_ACT_OK,
            ..xdp_row(name, reply, Some(want), counter)
        }));
    }
    rows.push(v6(Row {
        prog: Prog::TcEgress,
        verdict: TC_ACT_OK,
        ..xdp_row(
            "ipv6 reply without a flow passes untouched",
            tcp6((POD6, POD_HTTP), client, Some(1_001)),
            None,
            Counter::TcPassNotOurs,
        )
    }));
    run_table(rows);
}

/// XDP pins and records an IPv6 flow, first among the new flows, then (the client's ACK) among
/// the established ones; the tables read back through the daemon's API.
#[test]
fn ipv6_flow_is_pinned_and_recorded() {
    require_root();
    let mut dp = Datapath::load_detached().expect("load");
    for (id, b) in frontends6() {
        dp.set_frontend(id, &b).expect("upsert");
    }
    let client = (CLIENT6, CLIENT_PORT);
    let pod = vec![ep6(POD6, POD_HTTP)];
    let out = dp
        .test_run_xdp(&tcp6(client, (VIP6, HTTP), None), 1)
        .expect("xdp run");
    assert_eq!(out.verdict, XDP_PASS);
    let new_pins = dp.new_pinned_flows_v6().expect("new pins");
    assert_eq!(new_pins.values().copied().collect::<Vec<_>>(), pod);
    assert_eq!(dp.new_flows_v6().expect("new flows").len(), 1);
    assert!(dp.pinned_flows_v6().expect("pins").is_empty());
    assert!(dp.flows_v6().expect("flows").is_empty());
    let out = dp
        .test_run_xdp(&tcp6(client, (VIP6, HTTP), Some(1)), 1)
        .expect("xdp run");
    assert_eq!(out.verdict, XDP_PASS);
    let pins = dp.pinned_flows_v6().expect("pins");
    assert_eq!(pins.values().copied().collect::<Vec<_>>(), pod);
    assert_eq!(
        dp.flows_v6().expect("flows"),
        dp.new_flows_v6().expect("new flows")
    );
    assert_eq!(
        dp.frontends().expect("frontends"),
        frontends6().into_iter().collect()
    );
    let vips: Vec<std::net::IpAddr> = dp.vips().expect("vips").into_iter().collect();
    assert_eq!(vips, vec![l3lb_tests::packets::ip6(VIP6)]);
}
