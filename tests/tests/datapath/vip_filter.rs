//! The VIP filter: what reaches a VIP on no frontend is dropped (ICMP echo requests and errors
//! excepted), fragments and packets with IP options to a VIP are dropped, and the same packets
//! to any other address pass untouched. The VIP set follows the frontend map.
use l3lb_common::{Counter, PROTO_TCP, PROTO_UDP};
use l3lb_tests::packets::{
    CLIENT, CLIENT_PORT, DNS, HTTP, OTHER, POD, POD_HTTP, VIP, XDP_DROP, XDP_PASS, backends, fe,
    icmp, ip_raw, tcp, udp, udp_fragment_tail,
};
use l3lb_userspace::node::datapath::Datapath;

use crate::{Row, require_root, run_table, xdp_drop, xdp_row};

const SSH: u16 = 22;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_TIMESTAMP: u8 = 13;
const PROTO_GRE: u8 = 47;

fn rows() -> Vec<Row> {
    let client = (CLIENT, CLIENT_PORT);
    // NOP, NOP, NOP, End-of-options: 4 bytes of IPv4 options (IHL 6).
    let options = [1u8, 1, 1, 0];
    vec![
        xdp_drop(
            "tcp to the vip on a port no frontend serves (ssh) is dropped",
            tcp(client, (VIP, SSH), &[], None),
            Counter::XdpDropVipNoFrontend,
        ),
        xdp_drop(
            "udp to the vip on a port no frontend serves is dropped",
            udp(client, (VIP, SSH), false),
            Counter::XdpDropVipNoFrontend,
        ),
        xdp_drop(
            "another ip protocol (gre) to the vip is dropped",
            ip_raw(CLIENT, VIP, PROTO_GRE, b"gre payload"),
            Counter::XdpDropVipNoFrontend,
        ),
        xdp_row(
            "icmp echo request to the vip passes untouched",
            icmp(CLIENT, VIP, ICMP_ECHO_REQUEST, &[]),
            None,
            Counter::XdpPassVipIcmp,
        ),
        xdp_row(
            "icmp destination unreachable to the vip passes untouched",
            icmp(CLIENT, VIP, ICMP_DEST_UNREACH, &[]),
            None,
            Counter::XdpPassVipIcmp,
        ),
        xdp_row(
            "icmp time exceeded to the vip passes untouched",
            icmp(CLIENT, VIP, ICMP_TIME_EXCEEDED, &[]),
            None,
            Counter::XdpPassVipIcmp,
        ),
        xdp_drop(
            "icmp echo reply to the vip is dropped",
            icmp(CLIENT, VIP, ICMP_ECHO_REPLY, &[]),
            Counter::XdpDropVipNoFrontend,
        ),
        xdp_drop(
            "icmp timestamp request to the vip is dropped",
            icmp(CLIENT, VIP, ICMP_TIMESTAMP, &[]),
            Counter::XdpDropVipNoFrontend,
        ),
        xdp_drop(
            "icmp echo request with ip options to the vip is dropped",
            icmp(CLIENT, VIP, ICMP_ECHO_REQUEST, &options),
            Counter::XdpDropVipIpOptions,
        ),
        xdp_drop(
            "ip options to the vip on an unserved port are dropped",
            tcp(client, (VIP, SSH), &options, None),
            Counter::XdpDropVipIpOptions,
        ),
        xdp_drop(
            "non-first fragment to the vip is dropped",
            udp_fragment_tail(CLIENT, VIP),
            Counter::XdpDropVipFragment,
        ),
        xdp_row(
            "first fragment to another address passes untouched",
            udp(client, (OTHER, DNS), true),
            None,
            Counter::XdpPassFragment,
        ),
        xdp_row(
            "non-first fragment to another address passes untouched",
            udp_fragment_tail(CLIENT, OTHER),
            None,
            Counter::XdpPassFragment,
        ),
        xdp_row(
            "ip options to another address pass untouched",
            tcp(client, (OTHER, HTTP), &options, None),
            None,
            Counter::XdpPassNotOurs,
        ),
        xdp_row(
            "tcp to another address on ssh passes untouched",
            tcp(client, (OTHER, SSH), &[], None),
            None,
            Counter::XdpPassNotOurs,
        ),
        xdp_row(
            "icmp timestamp to another address passes untouched",
            icmp(CLIENT, OTHER, ICMP_TIMESTAMP, &[]),
            None,
            Counter::XdpPassNotOurs,
        ),
        xdp_row(
            "gre to another address passes untouched",
            ip_raw(CLIENT, OTHER, PROTO_GRE, b"gre payload"),
            None,
            Counter::XdpPassNotOurs,
        ),
    ]
}

#[test]
fn xdp_vip_filter_fixtures() {
    run_table(rows());
}

/// Runs XDP on `packet` and returns the verdict, checking the packet comes out untouched.
fn verdict(dp: &Datapath, packet: &[u8]) -> u32 {
    let out = dp.test_run_xdp(packet, 1).expect("xdp run");
    assert_eq!(out.packet, packet, "the packet must come out untouched");
    out.verdict
}

/// The VIP set follows the frontend map: in with the first frontend, out after the last.
#[test]
fn vip_set_follows_the_frontends() {
    require_root();
    let mut dp = Datapath::load_detached().expect("load");
    let http = fe(VIP, HTTP, PROTO_TCP);
    let dns = fe(VIP, DNS, PROTO_UDP);
    let ssh = tcp((CLIENT, CLIENT_PORT), (VIP, SSH), &[], None);
    let http_syn = tcp((CLIENT, CLIENT_PORT), (VIP, HTTP), &[], None);
    assert!(dp.vips().expect("vips").is_empty());
    assert_eq!(verdict(&dp, &ssh), XDP_PASS, "no frontend yet: not a VIP");

    dp.set_frontend(http, &backends(&[(POD, POD_HTTP)]))
        .expect("upsert http");
    dp.set_frontend(dns, &backends(&[])).expect("upsert dns");
    let vips: Vec<std::net::IpAddr> = dp.vips().expect("vips").into_iter().collect();
    assert_eq!(vips, vec![l3lb_tests::packets::ip4(VIP)]);
    assert_eq!(verdict(&dp, &ssh), XDP_DROP);

    // One frontend left: still a VIP; the removed port is dropped like any unserved one.
    dp.remove_frontend(http).expect("remove http");
    assert_eq!(dp.vips().expect("vips").len(), 1);
    assert_eq!(verdict(&dp, &http_syn), XDP_DROP);

    // The last one gone: no longer a VIP, its packets pass untouched.
    dp.remove_frontend(dns).expect("remove dns");
    dp.remove_frontend(dns).expect("removing it again succeeds");
    assert!(dp.vips().expect("vips").is_empty());
    assert_eq!(verdict(&dp, &http_syn), XDP_PASS);
    assert_eq!(verdict(&dp, &ssh), XDP_PASS);

    let counters = dp.counters().expect("counters");
    assert_eq!(counters[&Counter::XdpDropVipNoFrontend].packets, 2);
    assert_eq!(counters[&Counter::XdpPassNotOurs].packets, 3);
}
