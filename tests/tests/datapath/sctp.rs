//! SCTP through both programs and both families: an INIT opens a new flow, later chunks follow
//! its pin, replies leave from the VIP, an ICMP error quoting a reply reaches the pod, and the
//! CRC32c (computed from scratch by the fixture builder) stays valid, since only addresses change.
use l3lb_common::{Counter, PROTO_SCTP};
use l3lb_tests::{
    packets::{
        CLIENT, CLIENT_PORT, CLIENT6, OTHER, POD, POD6, TC_ACT_OK, VIP, VIP6, backends, backends6,
        conn, ep, fe, fe6, flow, icmp4_error, quote,
    },
    sctp::{DATA, INIT, sctp, sctp6},
};

use crate::{Prog, Row, run_table, xdp_drop, xdp_row};

/// Diameter: the Service's port and its pods' (SCTP is never given another port).
const DIAMETER: u16 = 3868;
const ROUTER: [u8; 4] = [192, 0, 2, 254];
const FRAG_NEEDED: (u8, u8, [u8; 4]) = (3, 4, [0, 0, 0x05, 0x78]);

fn sctp_frontends(row: Row) -> Row {
    Row {
        frontends: vec![
            (fe(VIP, DIAMETER, PROTO_SCTP), backends(&[(POD, DIAMETER)])),
            (
                fe6(VIP6, DIAMETER, PROTO_SCTP),
                backends6(&[(POD6, DIAMETER)]),
            ),
        ],
        ..row
    }
}

fn tc(name: &'static str, before: Vec<Vec<u8>>, input: Vec<u8>, output: Vec<u8>) -> Row {
    // One packet from the client: a new flow; more: established.
    let counter = match before.len() {
        1 => Counter::TcRevNatNew,
        _ => Counter::TcRevNat,
    };
    sctp_frontends(Row {
        prog: Prog::TcEgress,
        verdict: TC_ACT_OK,
        before,
        ..xdp_row(name, input, Some(output), counter)
    })
}

#[test]
fn sctp_fixtures() {
    let c = (CLIENT, CLIENT_PORT);
    let c6 = (CLIENT6, CLIENT_PORT);
    let new = vec![Counter::XdpFlowNew];
    let rows = vec![
        sctp_frontends(Row {
            events: new.clone(),
            new_flows_after: Some(vec![flow((POD, DIAMETER), PROTO_SCTP, (VIP, DIAMETER))]),
            new_pins_after: Some(vec![(
                conn(c, (VIP, DIAMETER), PROTO_SCTP),
                ep(POD, DIAMETER),
            )]),
            ..xdp_row(
                "sctp init to the vip is dnatted to the pod, pinned and recorded as a new flow; \
                 crc32c still valid",
                sctp(c, (VIP, DIAMETER), INIT),
                Some(sctp(c, (POD, DIAMETER), INIT)),
                Counter::XdpDnatPass,
            )
        }),
        sctp_frontends(Row {
            before: vec![sctp(c, (VIP, DIAMETER), INIT)],
            events: vec![Counter::XdpFlowEstablished],
            flows_after: Some(vec![flow((POD, DIAMETER), PROTO_SCTP, (VIP, DIAMETER))]),
            ..xdp_row(
                "sctp data after the init goes to its pod and establishes the association",
                sctp(c, (VIP, DIAMETER), DATA),
                Some(sctp(c, (POD, DIAMETER), DATA)),
                Counter::XdpDnatPass,
            )
        }),
        sctp_frontends(Row {
            before: vec![sctp(c, (VIP, DIAMETER), INIT)],
            events: new.clone(),
            ..xdp_row(
                "an sctp init always starts a new flow",
                sctp(c, (VIP, DIAMETER), INIT),
                Some(sctp(c, (POD, DIAMETER), INIT)),
                Counter::XdpDnatPass,
            )
        }),
        sctp_frontends(Row {
            events: new,
            ..xdp_row(
                "ipv6 sctp init to the vip is dnatted to the pod",
                sctp6(c6, (VIP6, DIAMETER), INIT),
                Some(sctp6(c6, (POD6, DIAMETER), INIT)),
                Counter::XdpDnatPass,
            )
        }),
        sctp_frontends(xdp_drop(
            "sctp to a port the vip does not serve is dropped",
            sctp(c, (VIP, 2905), INIT),
            Counter::XdpDropVipNoFrontend,
        )),
        sctp_frontends(xdp_row(
            "sctp to another address passes untouched",
            sctp(c, (OTHER, DIAMETER), INIT),
            None,
            Counter::XdpPassNotOurs,
        )),
        sctp_frontends(Row {
            before: vec![sctp(c, (VIP, DIAMETER), INIT)],
            ..xdp_row(
                "frag needed quoting an sctp reply reaches the pod",
                icmp4_error(
                    ROUTER,
                    VIP,
                    FRAG_NEEDED,
                    &quote(&sctp((VIP, DIAMETER), c, DATA), 28),
                ),
                Some(icmp4_error(
                    ROUTER,
                    POD,
                    FRAG_NEEDED,
                    &quote(&sctp((POD, DIAMETER), c, DATA), 28),
                )),
                Counter::XdpIcmpErrorNat,
            )
        }),
        tc(
            "sctp reply from the pod to an init leaves from the vip",
            vec![sctp(c, (VIP, DIAMETER), INIT)],
            sctp((POD, DIAMETER), c, DATA),
            sctp((VIP, DIAMETER), c, DATA),
        ),
        tc(
            "sctp reply of an established association leaves from the vip",
            vec![
                sctp(c, (VIP, DIAMETER), INIT),
                sctp(c, (VIP, DIAMETER), DATA),
            ],
            sctp((POD, DIAMETER), c, DATA),
            sctp((VIP, DIAMETER), c, DATA),
        ),
        tc(
            "ipv6 sctp reply from the pod to an init leaves from the vip",
            vec![sctp6(c6, (VIP6, DIAMETER), INIT)],
            sctp6((POD6, DIAMETER), c6, DATA),
            sctp6((VIP6, DIAMETER), c6, DATA),
        ),
        tc(
            "ipv6 sctp reply of an established association leaves from the vip",
            vec![
                sctp6(c6, (VIP6, DIAMETER), INIT),
                sctp6(c6, (VIP6, DIAMETER), DATA),
            ],
            sctp6((POD6, DIAMETER), c6, DATA),
            sctp6((VIP6, DIAMETER), c6, DATA),
        ),
    ];
    run_table(rows);
}
