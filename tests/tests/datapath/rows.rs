//! The basic XDP and TC rows: DNAT of new and pinned flows, the reply path, and what passes. A
//! flow's first packet is pinned and recorded among the new flows; the client's next packet
//! moves it to the established tables.
use l3lb_common::{Counter, PROTO_TCP, PROTO_UDP};
use l3lb_tests::packets::{
    CLIENT, CLIENT_PORT, DNS, HTTP, HTTPS, OTHER, POD, POD_DNS, POD_HTTP, VIP, arp_request,
    backends, conn, ep, fe, flow, ipv6_udp, tagged, tcp, tcp_ack, truncated, udp, udp_no_csum,
};

use crate::{Row, frontends, tc_row, xdp_drop, xdp_row};

const NEW: &[Counter] = &[Counter::XdpFlowNew];
const ESTABLISHED: &[Counter] = &[Counter::XdpFlowEstablished];

fn terminating(eps: &[([u8; 4], u16)]) -> l3lb_userspace::core::model::Backends {
    l3lb_userspace::core::model::Backends {
        terminating: eps.iter().map(|(a, p)| ep(*a, *p)).collect(),
        ..Default::default()
    }
}

pub fn xdp() -> Vec<Row> {
    let client = (CLIENT, CLIENT_PORT);
    let http_flow = flow((POD, POD_HTTP), PROTO_TCP, (VIP, HTTP));
    let dns_flow = flow((POD, POD_DNS), PROTO_UDP, (VIP, DNS));
    let http_pin = (conn(client, (VIP, HTTP), PROTO_TCP), ep(POD, POD_HTTP));
    let dns_pin = (conn(client, (VIP, DNS), PROTO_UDP), ep(POD, POD_DNS));
    // NOP, NOP, NOP, End-of-options: 4 bytes of IPv4 options (IHL 6).
    let options = [1u8, 1, 1, 0];
    let syn = tcp(client, (VIP, HTTP), &[], None);
    // SYN and ACK: an established flow.
    let handshake = vec![syn.clone(), tcp_ack(client, (VIP, HTTP))];
    vec![
        Row {
            events: NEW.to_vec(),
            new_flows_after: Some(vec![http_flow]),
            pins_after: Some(vec![]),
            new_pins_after: Some(vec![http_pin]),
            ..xdp_row(
                "tcp syn to vip is dnatted to the pod, pinned and recorded for the reply as a new flow",
                syn.clone(),
                Some(tcp(client, (POD, POD_HTTP), &[], None)),
                Counter::XdpDnatPass,
            )
        },
        Row {
            events: NEW.to_vec(),
            new_flows_after: Some(vec![dns_flow]),
            pins_after: Some(vec![]),
            new_pins_after: Some(vec![dns_pin]),
            ..xdp_row(
                "udp to vip is dnatted to the pod, pinned and recorded as a new flow",
                udp(client, (VIP, DNS), false),
                Some(udp(client, (POD, POD_DNS), false)),
                Counter::XdpDnatPass,
            )
        },
        Row {
            events: NEW.to_vec(),
            new_flows_after: Some(vec![dns_flow]),
            ..xdp_row(
                "udp checksum 0 stays 0",
                udp_no_csum(client, (VIP, DNS)),
                Some(udp_no_csum(client, (POD, POD_DNS))),
                Counter::XdpDnatPass,
            )
        },
        Row {
            before: vec![syn.clone()],
            events: ESTABLISHED.to_vec(),
            flows_after: Some(vec![http_flow]),
            pins_after: Some(vec![http_pin]),
            ..xdp_row(
                "the client's ack after a syn goes to its backend without a new pick and establishes \
                 the flow",
                tcp_ack(client, (VIP, HTTP)),
                Some(tcp_ack(client, (POD, POD_HTTP))),
                Counter::XdpDnatPass,
            )
        },
        Row {
            before: handshake.clone(),
            pins_after: Some(vec![http_pin]),
            ..xdp_row(
                "an ack of an established flow goes to its backend, nothing recorded again",
                tcp_ack(client, (VIP, HTTP)),
                Some(tcp_ack(client, (POD, POD_HTTP))),
                Counter::XdpDnatPass,
            )
        },
        Row {
            before: vec![udp(client, (VIP, DNS), false)],
            events: ESTABLISHED.to_vec(),
            flows_after: Some(vec![dns_flow]),
            pins_after: Some(vec![dns_pin]),
            ..xdp_row(
                "the second datagram of a udp flow goes to its backend and establishes the flow",
                udp(client, (VIP, DNS), false),
                Some(udp(client, (POD, POD_DNS), false)),
                Counter::XdpDnatPass,
            )
        },
        Row {
            before: vec![syn.clone()],
            events: NEW.to_vec(),
            pins_after: Some(vec![]),
            ..xdp_row(
                "a syn on a new flow's tuple is a new flow",
                syn.clone(),
                Some(tcp(client, (POD, POD_HTTP), &[], None)),
                Counter::XdpDnatPass,
            )
        },
        Row {
            before: handshake.clone(),
            events: NEW.to_vec(),
            pins_after: Some(vec![http_pin]),
            ..xdp_row(
                "a syn on an established flow's tuple is picked anew and stays established",
                syn.clone(),
                Some(tcp(client, (POD, POD_HTTP), &[], None)),
                Counter::XdpDnatPass,
            )
        },
        Row {
            events: NEW.to_vec(),
            new_flows_after: Some(vec![http_flow]),
            pins_after: Some(vec![]),
            new_pins_after: Some(vec![http_pin]),
            ..xdp_row(
                "an ack without a pin (table lost it) is balanced and recorded as a new flow",
                tcp_ack(client, (VIP, HTTP)),
                Some(tcp_ack(client, (POD, POD_HTTP))),
                Counter::XdpDnatPass,
            )
        },
        Row {
            before: vec![syn.clone()],
            then: vec![(fe(VIP, HTTP, PROTO_TCP), terminating(&[(POD, POD_HTTP)]))],
            events: ESTABLISHED.to_vec(),
            flows_after: Some(vec![http_flow]),
            pins_after: Some(vec![http_pin]),
            ..xdp_row(
                "a new flow of a terminating backend still goes to it and is established",
                tcp_ack(client, (VIP, HTTP)),
                Some(tcp_ack(client, (POD, POD_HTTP))),
                Counter::XdpDnatPass,
            )
        },
        Row {
            before: handshake.clone(),
            then: vec![(fe(VIP, HTTP, PROTO_TCP), terminating(&[(POD, POD_HTTP)]))],
            pins_after: Some(vec![http_pin]),
            ..xdp_row(
                "an established flow of a terminating backend still goes to it",
                tcp_ack(client, (VIP, HTTP)),
                Some(tcp_ack(client, (POD, POD_HTTP))),
                Counter::XdpDnatPass,
            )
        },
        Row {
            then: vec![(fe(VIP, HTTP, PROTO_TCP), terminating(&[(POD, POD_HTTP)]))],
            ..xdp_drop(
                "a new flow to a frontend with only terminating backends is dropped",
                tcp(client, (VIP, HTTP), &[], None),
                Counter::XdpNoBackend,
            )
        },
        Row {
            before: handshake,
            then: vec![(fe(VIP, HTTP, PROTO_TCP), backends(&[(OTHER, POD_HTTP)]))],
            events: vec![Counter::XdpFlowStale, Counter::XdpFlowNew],
            flows_after: Some(vec![
                http_flow,
                flow((OTHER, POD_HTTP), PROTO_TCP, (VIP, HTTP)),
            ]),
            pins_after: Some(vec![(
                conn(client, (VIP, HTTP), PROTO_TCP),
                ep(OTHER, POD_HTTP),
            )]),
            ..xdp_row(
                "an established flow whose backend left is given a live one, still established",
                tcp_ack(client, (VIP, HTTP)),
                Some(tcp_ack(client, (OTHER, POD_HTTP))),
                Counter::XdpDnatPass,
            )
        },
        Row {
            before: vec![syn.clone()],
            then: vec![(fe(VIP, HTTP, PROTO_TCP), backends(&[(OTHER, POD_HTTP)]))],
            events: vec![Counter::XdpFlowStale, Counter::XdpFlowNew],
            new_flows_after: Some(vec![
                http_flow,
                flow((OTHER, POD_HTTP), PROTO_TCP, (VIP, HTTP)),
            ]),
            pins_after: Some(vec![]),
            new_pins_after: Some(vec![(
                conn(client, (VIP, HTTP), PROTO_TCP),
                ep(OTHER, POD_HTTP),
            )]),
            ..xdp_row(
                "a new flow whose backend left is given a live one, still new",
                tcp_ack(client, (VIP, HTTP)),
                Some(tcp_ack(client, (OTHER, POD_HTTP))),
                Counter::XdpDnatPass,
            )
        },
        Row {
            events: NEW.to_vec(),
            new_flows_after: Some(vec![http_flow]),
            ..xdp_row(
                "an 802.1q-tagged syn to the vip is dnatted, tag kept",
                tagged(&tcp(client, (VIP, HTTP), &[], None), &[100]),
                Some(tagged(&tcp(client, (POD, POD_HTTP), &[], None), &[100])),
                Counter::XdpDnatPass,
            )
        },
        Row {
            events: NEW.to_vec(),
            new_flows_after: Some(vec![dns_flow]),
            ..xdp_row(
                "a double-tagged (qinq) udp datagram to the vip is dnatted",
                tagged(&udp(client, (VIP, DNS), false), &[10, 20]),
                Some(tagged(&udp(client, (POD, POD_DNS), false), &[10, 20])),
                Counter::XdpDnatPass,
            )
        },
        xdp_drop(
            "a tagged packet to the vip on an unserved port is dropped",
            tagged(&tcp(client, (VIP, 22), &[], None), &[100]),
            Counter::XdpDropVipNoFrontend,
        ),
        xdp_row(
            "a tagged packet to another address passes untouched",
            tagged(&tcp(client, (OTHER, HTTP), &[], None), &[100]),
            None,
            Counter::XdpPassNotOurs,
        ),
        xdp_row(
            "three tags deep is not parsed and passes untouched",
            tagged(&tcp(client, (VIP, HTTP), &[], None), &[1, 2, 3]),
            None,
            Counter::XdpPassNotOurs,
        ),
        xdp_drop(
            "ipv4 with options to a frontend is dropped",
            tcp(client, (VIP, HTTP), &options, None),
            Counter::XdpDropVipIpOptions,
        ),
        xdp_row(
            "packet to another address passes untouched",
            tcp(client, (OTHER, HTTP), &[], None),
            None,
            Counter::XdpPassNotOurs,
        ),
        xdp_drop(
            "vip on a tcp port without frontend is dropped",
            tcp(client, (VIP, 8443), &[], None),
            Counter::XdpDropVipNoFrontend,
        ),
        xdp_drop(
            "vip port with the other protocol is dropped",
            udp(client, (VIP, HTTP), false),
            Counter::XdpDropVipNoFrontend,
        ),
        xdp_drop(
            "frontend without endpoints is dropped",
            tcp(client, (VIP, HTTPS), &[], None),
            Counter::XdpNoBackend,
        ),
        xdp_drop(
            "ipv4 first fragment to a frontend is dropped",
            udp(client, (VIP, DNS), true),
            Counter::XdpDropVipFragment,
        ),
        xdp_drop(
            "tcp header to the vip cut short is dropped",
            truncated(tcp(client, (VIP, HTTP), &[], None), 14 + 20 + 10),
            Counter::XdpDropVipNoFrontend,
        ),
        xdp_drop(
            "udp header to the vip cut short is dropped",
            truncated(udp(client, (VIP, DNS), false), 14 + 20 + 6),
            Counter::XdpDropVipNoFrontend,
        ),
        xdp_row(
            "ipv4 header cut short passes untouched",
            truncated(tcp(client, (VIP, HTTP), &[], None), 14 + 10),
            None,
            Counter::XdpPassNotOurs,
        ),
        xdp_row(
            "bare ethernet header passes untouched",
            truncated(tcp(client, (VIP, HTTP), &[], None), 14),
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
        Row {
            frontends: vec![(fe(VIP, HTTP, PROTO_TCP), backends(&[(POD, POD_HTTP)]))],
            ..xdp_row(
                "tcp to a vip whose frontends are all on other ports is not a frontend packet",
                tcp(client, (OTHER, HTTPS), &[], None),
                None,
                Counter::XdpPassNotOurs,
            )
        },
    ]
}

pub fn tc() -> Vec<Row> {
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
        Row {
            before: vec![tcp(client, (VIP, HTTP), &[], None)],
            ..tc_row(
                "a new flow's syn-ack leaves from vip:port (new-flow table)",
                vec![],
                tcp((POD, POD_HTTP), client, &[], Some(1_001)),
                Some(tcp((VIP, HTTP), client, &[], Some(1_001))),
                Counter::TcRevNatNew,
            )
        },
        Row {
            before: vec![udp(client, (VIP, DNS), false)],
            ..tc_row(
                "the answer to a first datagram leaves from vip:port (new-flow table)",
                vec![],
                udp((POD, POD_DNS), client, false),
                Some(udp((VIP, DNS), client, false)),
                Counter::TcRevNatNew,
            )
        },
        Row {
            frontends: [
                frontends(),
                vec![(fe(VIP, 8081, PROTO_TCP), backends(&[(POD, POD_HTTP)]))],
            ]
            .concat(),
            // A new flow to another frontend of the same endpoint, on the same client port.
            before: vec![tcp(client, (VIP, 8081), &[], None)],
            ..tc_row(
                "an established flow's record is used before a new flow's",
                vec![http_flow],
                tcp((POD, POD_HTTP), client, &[], Some(1_001)),
                Some(tcp((VIP, HTTP), client, &[], Some(1_001))),
                Counter::TcRevNat,
            )
        },
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
