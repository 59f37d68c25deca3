//! ICMP errors about translated flows, both directions and both families: a router's
//! Fragmentation Needed / Packet Too Big to the VIP reaches the pod quoting the pod's own packet;
//! a pod's (or the node's) error to the client quotes what the client sent to the VIP; for new
//! flows (one client packet so far) and established ones alike. Every checksum of the expected
//! packets is computed from scratch by etherparse.
use l3lb_common::Counter;
use l3lb_tests::packets::{
    CLIENT, CLIENT_PORT, CLIENT6, DNS, HTTP, POD, POD_DNS, POD_HTTP, POD6, TC_ACT_OK, VIP, VIP6,
    icmp4_error, icmp6_error, quote, tcp, tcp_ack, tcp6, udp, udp6,
};

use crate::{Prog, Row, run_table, xdp_row};

const ROUTER: [u8; 4] = [192, 0, 2, 254];
const ROUTER6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// The node's address towards its pods (it forwards to them).
const NODE_POD_GW: [u8; 4] = [10, 244, 1, 1];
/// Fragmentation needed, next-hop MTU 1400.
const FRAG_NEEDED: (u8, u8, [u8; 4]) = (3, 4, [0, 0, 0x05, 0x78]);
const PORT_UNREACHABLE: (u8, u8, [u8; 4]) = (3, 3, [0; 4]);
const PACKET_TOO_BIG: (u8, u8, [u8; 4]) = (2, 0, [0, 0, 0x05, 0x78]);
const PORT_UNREACHABLE6: (u8, u8, [u8; 4]) = (1, 4, [0; 4]);

fn xdp(name: &'static str, before: Vec<u8>, input: Vec<u8>, output: Vec<u8>) -> Row {
    Row {
        before: vec![before],
        ..xdp_row(name, input, Some(output), Counter::XdpIcmpErrorNat)
    }
}

fn tc(name: &'static str, before: Vec<u8>, input: Vec<u8>, output: Vec<u8>) -> Row {
    Row {
        prog: Prog::TcEgress,
        verdict: TC_ACT_OK,
        counter: Counter::TcIcmpErrorNat,
        ..xdp(name, before, input, output)
    }
}

fn v6(row: Row) -> Row {
    use l3lb_common::{PROTO_TCP, PROTO_UDP};
    use l3lb_tests::packets::{backends6, fe6};
    Row {
        frontends: vec![
            (fe6(VIP6, HTTP, PROTO_TCP), backends6(&[(POD6, POD_HTTP)])),
            (fe6(VIP6, DNS, PROTO_UDP), backends6(&[(POD6, POD_DNS)])),
        ],
        ..row
    }
}

#[test]
fn icmp_errors_about_translated_flows_are_translated() {
    let c = (CLIENT, CLIENT_PORT);
    let c6 = (CLIENT6, CLIENT_PORT);
    // What the VIP sent (a translated reply) and what the pod sent before translation.
    let reply_tcp = tcp((VIP, HTTP), c, &[], Some(1));
    let pod_tcp = tcp((POD, POD_HTTP), c, &[], Some(1));
    let reply_udp = udp((VIP, DNS), c, false);
    let pod_udp = udp((POD, POD_DNS), c, false);
    // Established flows: the client's second packet moved them to the established tables.
    let established = |row: Row, second: Vec<u8>| Row {
        before: [row.before.clone(), vec![second]].concat(),
        ..row
    };
    let rows = vec![
        established(
            xdp(
                "frag needed quoting an established flow's tcp reply reaches the pod",
                tcp(c, (VIP, HTTP), &[], None),
                icmp4_error(ROUTER, VIP, FRAG_NEEDED, &quote(&reply_tcp, 40)),
                icmp4_error(ROUTER, POD, FRAG_NEEDED, &quote(&pod_tcp, 40)),
            ),
            tcp_ack(c, (VIP, HTTP)),
        ),
        established(
            tc(
                "a pod's port unreachable about an established udp flow leaves from the vip",
                udp(c, (VIP, DNS), false),
                icmp4_error(
                    POD,
                    CLIENT,
                    PORT_UNREACHABLE,
                    &quote(&udp(c, (POD, POD_DNS), false), 36),
                ),
                icmp4_error(
                    VIP,
                    CLIENT,
                    PORT_UNREACHABLE,
                    &quote(&udp(c, (VIP, DNS), false), 36),
                ),
            ),
            udp(c, (VIP, DNS), false),
        ),
        v6(established(
            xdp(
                "packet too big quoting an established flow's tcp reply reaches the pod",
                tcp6(c6, (VIP6, HTTP), None),
                icmp6_error(
                    ROUTER6,
                    VIP6,
                    PACKET_TOO_BIG,
                    &quote(&tcp6((VIP6, HTTP), c6, Some(1)), 60),
                ),
                icmp6_error(
                    ROUTER6,
                    POD6,
                    PACKET_TOO_BIG,
                    &quote(&tcp6((POD6, POD_HTTP), c6, Some(1)), 60),
                ),
            ),
            tcp6(c6, (VIP6, HTTP), Some(1)),
        )),
        xdp(
            "frag needed quoting a whole tcp reply reaches the pod",
            tcp(c, (VIP, HTTP), &[], None),
            icmp4_error(ROUTER, VIP, FRAG_NEEDED, &quote(&reply_tcp, 40)),
            icmp4_error(ROUTER, POD, FRAG_NEEDED, &quote(&pod_tcp, 40)),
        ),
        xdp(
            "frag needed quoting 8 bytes of tcp (no checksum quoted) reaches the pod",
            tcp(c, (VIP, HTTP), &[], None),
            icmp4_error(ROUTER, VIP, FRAG_NEEDED, &quote(&reply_tcp, 28)),
            icmp4_error(ROUTER, POD, FRAG_NEEDED, &quote(&pod_tcp, 28)),
        ),
        xdp(
            "unreachable quoting 8 bytes of udp (its checksum) reaches the pod",
            udp(c, (VIP, DNS), false),
            icmp4_error(ROUTER, VIP, FRAG_NEEDED, &quote(&reply_udp, 28)),
            icmp4_error(ROUTER, POD, FRAG_NEEDED, &quote(&pod_udp, 28)),
        ),
        Row {
            counter: Counter::XdpPassVipIcmp,
            output: None,
            ..xdp(
                "an error quoting no translated flow passes to the host untouched",
                udp(c, (VIP, DNS), false),
                icmp4_error(ROUTER, VIP, FRAG_NEEDED, &quote(&reply_tcp, 40)),
                vec![],
            )
        },
        tc(
            "a pod's port unreachable leaves from the vip quoting what the client sent",
            udp(c, (VIP, DNS), false),
            icmp4_error(
                POD,
                CLIENT,
                PORT_UNREACHABLE,
                &quote(&udp(c, (POD, POD_DNS), false), 36),
            ),
            icmp4_error(
                VIP,
                CLIENT,
                PORT_UNREACHABLE,
                &quote(&udp(c, (VIP, DNS), false), 36),
            ),
        ),
        tc(
            "the node's frag needed keeps its source and quotes the vip",
            tcp(c, (VIP, HTTP), &[], None),
            icmp4_error(
                NODE_POD_GW,
                CLIENT,
                FRAG_NEEDED,
                &quote(&tcp(c, (POD, POD_HTTP), &[], None), 40),
            ),
            icmp4_error(
                NODE_POD_GW,
                CLIENT,
                FRAG_NEEDED,
                &quote(&tcp(c, (VIP, HTTP), &[], None), 40),
            ),
        ),
        v6(xdp(
            "packet too big quoting a tcp reply reaches the pod",
            tcp6(c6, (VIP6, HTTP), None),
            icmp6_error(
                ROUTER6,
                VIP6,
                PACKET_TOO_BIG,
                &quote(&tcp6((VIP6, HTTP), c6, Some(1)), 60),
            ),
            icmp6_error(
                ROUTER6,
                POD6,
                PACKET_TOO_BIG,
                &quote(&tcp6((POD6, POD_HTTP), c6, Some(1)), 60),
            ),
        )),
        v6(tc(
            "a pod's ipv6 port unreachable leaves from the vip",
            udp6(c6, (VIP6, DNS)),
            icmp6_error(
                POD6,
                CLIENT6,
                PORT_UNREACHABLE6,
                &quote(&udp6(c6, (POD6, POD_DNS)), 48),
            ),
            icmp6_error(
                VIP6,
                CLIENT6,
                PORT_UNREACHABLE6,
                &quote(&udp6(c6, (VIP6, DNS)), 48),
            ),
        )),
    ];
    run_table(rows);
}
