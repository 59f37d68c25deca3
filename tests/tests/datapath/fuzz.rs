//! The property test: over 100,000 random and mutated frames (every seed frame truncated at
//! every offset, bytes flipped, IHL, lengths and protocols scrambled, VLAN tags, fragments,
//! options, ICMP errors quoting garbage) through both programs:
//! - every run succeeds and returns a verdict of the specified set (XDP: pass or drop; TC: ok or
//!   shot), and each run counts exactly one verdict;
//! - a frame whose destination field (at any VLAN depth the program parses) holds no VIP leaves
//!   XDP passed and byte for byte unchanged; a frame whose source holds no endpoint leaves TC
//!   unchanged;
//! - every checksum a frame carried right stays right in a frame either program rewrites: the
//!   IPv4 header's, TCP's, UDP's, ICMP's and ICMPv6's (pseudo headers included), and the IPv4
//!   header an ICMP error quotes; over IPv4 and IPv6 frames alike (well-formed frames of random
//!   flows are mixed in, so thousands of rewrites are checked).
use std::collections::BTreeMap;

use l3lb_common::{Counter, PROTO_TCP, PROTO_UDP};
use l3lb_tests::packets::{
    CLIENT, CLIENT_PORT, CLIENT6, DNS, HTTP, OTHER, POD, POD_DNS, POD_HTTP, POD6, TC_ACT_OK, VIP,
    VIP6, XDP_DROP, XDP_PASS, backends, backends6, fe, fe6, icmp, icmp4_error, icmp6, icmp6_error,
    ipv6_ext, quote, tagged, tcp, tcp_ack, tcp6, udp, udp_fragment_tail, udp6,
};
use l3lb_userspace::node::datapath::Datapath;

use crate::{
    checksums::{Checks, checks},
    require_root,
};

const TC_ACT_SHOT: u32 = 2;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let c = (CLIENT, CLIENT_PORT);
    let c6 = (CLIENT6, CLIENT_PORT);
    let mut out = vec![
        tcp(c, (VIP, HTTP), &[], None),
        tcp_ack(c, (VIP, HTTP)),
        tcp(c, (VIP, HTTP), &[1, 1, 1, 0], None),
        udp(c, (VIP, DNS), false),
        udp(c, (VIP, DNS), true),
        udp_fragment_tail(CLIENT, VIP),
        tcp(c, (OTHER, HTTP), &[], None),
        icmp(CLIENT, VIP, 8, &[]),
        icmp4_error(
            [192, 0, 2, 1],
            VIP,
            (3, 4, [0, 0, 5, 0]),
            &quote(&tcp((VIP, HTTP), c, &[], Some(1)), 40),
        ),
        icmp4_error(
            [192, 0, 2, 1],
            VIP,
            (3, 4, [0, 0, 5, 0]),
            &quote(&udp((VIP, DNS), c, false), 28),
        ),
        icmp4_error(
            POD,
            CLIENT,
            (3, 3, [0; 4]),
            &quote(&udp(c, (POD, POD_DNS), false), 36),
        ),
        tcp((POD, POD_HTTP), c, &[], Some(1)),
        udp((POD, POD_DNS), c, false),
        tcp6(c6, (VIP6, HTTP), None),
        tcp6(c6, (VIP6, HTTP), Some(1)),
        udp6(c6, (VIP6, DNS)),
        icmp6(CLIENT6, VIP6, 128),
        ipv6_ext(CLIENT6, VIP6, 44),
        ipv6_ext(CLIENT6, VIP6, 0),
        icmp6_error(
            POD6,
            CLIENT6,
            (1, 4, [0; 4]),
            &quote(&udp6(c6, (POD6, POD_DNS)), 48),
        ),
        tcp6((POD6, POD_HTTP), c6, Some(1)),
        udp6((POD6, POD_DNS), c6),
        // A router's Packet Too Big about the VIP's reply of a translated flow (XDP), and the
        // same about a TCP one.
        icmp6_error(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            VIP6,
            (2, 0, [0, 0, 5, 0]),
            &quote(&udp6((VIP6, DNS), c6), 48),
        ),
        icmp6_error(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            VIP6,
            (2, 0, [0, 0, 5, 0]),
            &quote(&tcp6((VIP6, HTTP), c6, Some(1)), 60),
        ),
    ];
    let tagged_seeds: Vec<Vec<u8>> = out.iter().take(6).map(|f| tagged(f, &[7])).collect();
    out.extend(tagged_seeds);
    out.push(tagged(&udp(c, (VIP, DNS), false), &[1, 2]));
    out
}

/// A well-formed frame (every checksum right) of a random flow: a client's packet to a
/// frontend, or an endpoint's reply, over IPv4 or IPv6, sometimes VLAN-tagged. Clients come
/// from a small pool, so replies often belong to a flow XDP translated before.
fn random_flow(r: &mut Rng) -> Vec<u8> {
    let port = CLIENT_PORT + r.below(8) as u16;
    let mut client = CLIENT;
    client[3] = r.below(64) as u8;
    let mut client6 = CLIENT6;
    client6[15] = r.below(64) as u8;
    let (c, c6) = ((client, port), (client6, port));
    let ack = Some(r.next() as u32);
    let f = match r.below(8) {
        0 => tcp(c, (VIP, HTTP), &[], None),
        1 => tcp_ack(c, (VIP, HTTP)),
        2 => udp(c, (VIP, DNS), false),
        3 => tcp6(c6, (VIP6, HTTP), [None, ack][r.below(2)]),
        4 => udp6(c6, (VIP6, DNS)),
        5 => tcp((POD, POD_HTTP), c, &[], ack),
        6 => udp((POD, POD_DNS), c, false),
        _ => [tcp6((POD6, POD_HTTP), c6, ack), udp6((POD6, POD_DNS), c6)][r.below(2)].clone(),
    };
    match r.below(4) {
        0 => tagged(&f, &[r.below(4095) as u16 + 1]),
        _ => f,
    }
}

fn mutate(r: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut f = seed.to_vec();
    match r.below(8) {
        // A well-formed frame of a random flow instead.
        7 => f = random_flow(r),
        // Flip a few bytes anywhere.
        0 => {
            for _ in 0..=r.below(4) {
                let i = r.below(f.len());
                f[i] ^= 1 << r.below(8);
            }
        }
        // Scramble the first byte of the IPv4 header (version, IHL), or the IPv6 next header.
        1 => {
            let i = if f.len() > 20 && f[12] == 0x86 {
                20
            } else {
                14
            };
            if i < f.len() {
                f[i] = r.next() as u8;
            }
        }
        // Total/payload length and fragment fields.
        2 => {
            for i in [16, 17, 18, 19, 20, 21] {
                if i < f.len() && r.below(2) == 0 {
                    f[i] = r.next() as u8;
                }
            }
        }
        // Protocol byte (v4) or next header (v6).
        3 => {
            let i = if f[12] == 0x86 { 20 } else { 23 };
            if i < f.len() {
                f[i] = [1, 6, 17, 58, 132, 0, 44, 47][r.below(8)];
            }
        }
        // Random tail (garbage after the headers).
        4 => {
            let cut = r.below(f.len());
            f.truncate(cut);
            for _ in 0..r.below(64) {
                f.push(r.next() as u8);
            }
        }
        // Entirely random bytes of a random length, ethertype kept sometimes.
        5 => {
            let len = r.below(120);
            f = (0..len).map(|_| r.next() as u8).collect();
            if len > 14 && r.below(2) == 0 {
                [f[12], f[13]] = [[0x08, 0x00], [0x86, 0xdd], [0x81, 0x00]][r.below(3)];
            }
        }
        // Truncated anywhere.
        6 => f.truncate(r.below(f.len() + 1)),
        _ => unreachable!(),
    }
    f
}

/// Offsets of the IPv4 header the program may parse (after 0, 1 or 2 VLAN tags).
fn l3_offsets(f: &[u8]) -> Vec<(usize, [u8; 2])> {
    let mut out = Vec::new();
    let mut type_off = 12;
    for _ in 0..3 {
        if f.len() < type_off + 2 {
            break;
        }
        let t = [f[type_off], f[type_off + 1]];
        out.push((type_off + 2, t));
        if t != [0x81, 0x00] && t != [0x88, 0xa8] {
            break;
        }
        type_off += 4;
    }
    out
}

/// Whether the frame's destination (or, for `source`, its source) address field could hold
/// `v4`/`v6` at any depth the program parses.
fn names(f: &[u8], source: bool, v4: &[[u8; 4]], v6: &[[u8; 16]]) -> bool {
    l3_offsets(f).iter().any(|(l3, t)| {
        let field = |off4: usize, off6: usize| match *t {
            [0x08, 0x00] => f
                .get(l3 + off4..l3 + off4 + 4)
                .is_some_and(|a| v4.iter().any(|v| v == a)),
            [0x86, 0xdd] => f
                .get(l3 + off6..l3 + off6 + 16)
                .is_some_and(|a| v6.iter().any(|v| v == a)),
            _ => false,
        };
        if source { field(12, 8) } else { field(16, 24) }
    })
}

/// Checksums verified in rewritten frames, by (program, family, protocol); "ip4"/"quoted" for
/// IPv4 header checksums.
#[derive(Default)]
struct Verified(BTreeMap<(&'static str, String), u64>);

impl Verified {
    /// Fails if a rewrite broke a checksum `input` had right; counts what it kept.
    fn rewrite(&mut self, prog: &'static str, n: usize, input: &[u8], output: &[u8]) {
        let (before, after): (Checks, Checks) = (checks(input), checks(output));
        let broken = before.broken_in(&after);
        assert!(
            broken.is_empty(),
            "frame {n}: {prog} broke the {broken:?} checksum(s):\n in: {input:02x?}\nout: {output:02x?}"
        );
        let mut count = |what: String| *self.0.entry((prog, what)).or_default() += 1;
        if before.ip4 == Some(true) {
            count("ip4".into());
        }
        if let Some((family, proto, true)) = before.l4 {
            count(format!("v{family}/{proto}"));
        }
        if before.quoted_ip4 == Some(true) {
            count("quoted ip4".into());
        }
    }

    fn get(&self, prog: &'static str, what: &str) -> u64 {
        self.0.get(&(prog, what.to_owned())).copied().unwrap_or(0)
    }
}

#[test]
fn random_and_mutated_frames_keep_the_datapath_properties() {
    require_root();
    let mut dp = Datapath::load_detached().expect("load");
    dp.set_frontend(fe(VIP, HTTP, PROTO_TCP), &backends(&[(POD, POD_HTTP)]))
        .expect("upsert");
    dp.set_frontend(fe(VIP, DNS, PROTO_UDP), &backends(&[(POD, POD_DNS)]))
        .expect("upsert");
    dp.set_frontend(fe6(VIP6, HTTP, PROTO_TCP), &backends6(&[(POD6, POD_HTTP)]))
        .expect("upsert");
    dp.set_frontend(fe6(VIP6, DNS, PROTO_UDP), &backends6(&[(POD6, POD_DNS)]))
        .expect("upsert");
    let seeds = seeds();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    // Every seed cut at every length from an Ethernet header on (BPF_PROG_TEST_RUN refuses
    // anything shorter, as no NIC delivers it).
    for s in &seeds {
        for len in 14..=s.len() {
            frames.push(s[..len].to_vec());
        }
    }
    let mut r = Rng(0x5eed_1e55_ba5e_ba11);
    while frames.len() < 100_000 {
        let seed = &seeds[r.below(seeds.len())];
        let f = mutate(&mut r, seed);
        if f.len() >= 14 {
            frames.push(f);
        }
    }
    let verdicts = |dp: &Datapath| -> u64 {
        let c = dp.counters().expect("counters");
        Counter::ALL
            .iter()
            .filter(|c| !c.is_event())
            .map(|k| c[k].packets)
            .sum()
    };
    let (mut translated, mut dropped, mut tc_changed) = (0, 0, 0);
    let mut verified = Verified::default();
    let mut tc_runs = frames.len() as u64;
    let before = verdicts(&dp);
    for (n, f) in frames.iter().enumerate() {
        let out = dp
            .test_run_xdp(f, 1)
            .unwrap_or_else(|e| panic!("frame {n}: xdp run: {e:?}"));
        assert!(
            [XDP_PASS, XDP_DROP].contains(&out.verdict),
            "frame {n}: XDP verdict {}: {f:02x?}",
            out.verdict
        );
        let vip = names(f, false, &[VIP], &[VIP6]);
        if !vip {
            assert_eq!(
                out.verdict, XDP_PASS,
                "frame {n} to no VIP dropped: {f:02x?}"
            );
            assert_eq!(&out.packet, f, "frame {n} to no VIP altered: {f:02x?}");
        }
        if out.verdict == XDP_DROP {
            dropped += 1;
        }
        if out.verdict == XDP_PASS && out.packet != *f {
            translated += 1;
            verified.rewrite("xdp", n, f, &out.packet);
        }
        // An skb test run refuses frames too short for the network header their ethertype
        // names (the kernel never builds such an skb): those are XDP's alone.
        let tc = match dp.test_run_tc_egress(f, 1) {
            Ok(tc) => tc,
            Err(_) if f.len() < 14 + 40 => {
                tc_runs -= 1;
                continue;
            }
            Err(e) => panic!("frame {n}: tc run ({} bytes): {e:?}", f.len()),
        };
        assert!(
            [TC_ACT_OK, TC_ACT_SHOT].contains(&tc.verdict),
            "frame {n}: TC verdict {}",
            tc.verdict
        );
        // TC changes only replies and errors from endpoints (or errors quoting them).
        if tc.packet != *f {
            tc_changed += 1;
            if tc.verdict == TC_ACT_OK {
                verified.rewrite("tc", n, f, &tc.packet);
            }
            let from_pod = names(f, true, &[POD, [10, 244, 1, 1]], &[POD6])
                || f.windows(4).any(|w| w == POD)
                || f.windows(16).any(|w| w == POD6);
            assert!(
                from_pod,
                "frame {n}: TC altered a frame of no endpoint: {f:02x?}"
            );
        }
    }
    let counted = verdicts(&dp) - before;
    assert_eq!(
        counted,
        frames.len() as u64 + tc_runs,
        "one verdict per run"
    );
    println!(
        "fuzz: {} frames through XDP ({translated} translated, {dropped} dropped), {tc_runs} \
         through TC ({tc_changed} changed); checksums verified in rewritten frames: {:?}",
        frames.len(),
        verified.0
    );
    assert!(
        translated > 100 && dropped > 100,
        "the corpus reaches the VIP paths"
    );
    // Every kind of rewrite was checked, many times over.
    for (prog, what, at_least) in [
        ("xdp", "ip4", 3000),
        ("xdp", "v4/6", 1500),
        ("xdp", "v4/17", 1000),
        ("xdp", "v6/6", 500),
        ("xdp", "v6/17", 500),
        ("xdp", "v4/1", 50),
        ("xdp", "v6/58", 50),
        ("xdp", "quoted ip4", 100),
        ("tc", "ip4", 1000),
        ("tc", "v4/6", 400),
        ("tc", "v4/17", 300),
        ("tc", "v6/6", 150),
        ("tc", "v6/17", 150),
        ("tc", "v4/1", 30),
        ("tc", "v6/58", 30),
        ("tc", "quoted ip4", 50),
    ] {
        let n = verified.get(prog, what);
        assert!(
            n >= at_least,
            "{prog}: {n} rewrites with a right {what} checksum checked, want {at_least}+"
        );
    }
}
