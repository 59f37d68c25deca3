//! SCTP packets for the datapath fixtures. etherparse has no SCTP, so the common header and one
//! chunk are written here, with the CRC32c computed from scratch over the whole SCTP packet
//! (RFC 9260, appendix A): a fixture's output only matches when its CRC is still valid.
use etherparse::{IpNumber, PacketBuilder};
use l3lb_common::PROTO_SCTP;

use crate::packets::{MAC_NODE, MAC_PEER, ipv4, write};

/// Chunk types: INIT opens an association, DATA carries a message.
pub const INIT: u8 = 1;
pub const DATA: u8 = 0;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// An SCTP packet `sport -> dport` with verification tag `vtag` and one chunk of `chunk_type`.
fn payload(sport: u16, dport: u16, vtag: u32, chunk_type: u8) -> Vec<u8> {
    let value = b"l3lb-sctp-fixture";
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    let chunk_len = 4 + value.len();
    p.extend_from_slice(&[chunk_type, 0]);
    p.extend_from_slice(&(chunk_len as u16).to_be_bytes());
    p.extend_from_slice(value);
    p.resize(p.len().next_multiple_of(4), 0);
    // Stored as the little-endian bytes of the CRC, as Linux and the RFC's reference code do.
    let crc = CRC32C.checksum(&p);
    p[8..12].copy_from_slice(&crc.to_le_bytes());
    p
}

/// An IPv4 SCTP packet `src -> dst` (INIT: vtag 0, otherwise the peer's tag 7).
pub fn sctp(src: ([u8; 4], u16), dst: ([u8; 4], u16), chunk_type: u8) -> Vec<u8> {
    let step =
        PacketBuilder::ethernet2(MAC_PEER, MAC_NODE).ip(ipv4(src.0, dst.0, PROTO_SCTP, &[], false));
    let body = payload(src.1, dst.1, vtag(chunk_type), chunk_type);
    write(|out| {
        step.write(out, IpNumber(PROTO_SCTP), &body)
            .expect("sctp packet")
    })
}

/// An IPv6 SCTP packet `src -> dst`.
pub fn sctp6(src: ([u8; 16], u16), dst: ([u8; 16], u16), chunk_type: u8) -> Vec<u8> {
    let step = PacketBuilder::ethernet2(MAC_PEER, MAC_NODE).ipv6(src.0, dst.0, 64);
    let body = payload(src.1, dst.1, vtag(chunk_type), chunk_type);
    write(|out| {
        step.write(out, IpNumber(PROTO_SCTP), &body)
            .expect("sctp6 packet")
    })
}

fn vtag(chunk_type: u8) -> u32 {
    if chunk_type == INIT { 0 } else { 7 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the SCTP packet of an Ethernet frame whose IP header is `ip_len` long carries a
    /// valid CRC32c.
    fn crc_ok(frame: &[u8], ip_len: usize) -> bool {
        let Some(sctp) = frame.get(14 + ip_len..) else {
            return false;
        };
        if sctp.len() < 12 {
            return false;
        }
        let mut zeroed = sctp.to_vec();
        zeroed[8..12].fill(0);
        CRC32C.checksum(&zeroed).to_le_bytes() == sctp[8..12]
    }

    #[test]
    fn crc32c_matches_the_rfc_test_vector() {
        // RFC 3720, B.4: 32 bytes of zeros.
        assert_eq!(CRC32C.checksum(&[0u8; 32]), 0x8a91_36aa);
    }

    #[test]
    fn a_changed_port_breaks_the_crc_and_a_changed_address_does_not() {
        let p = sctp(([198, 51, 100, 7], 40_000), ([203, 0, 113, 10], 3868), INIT);
        assert!(crc_ok(&p, 20));
        let mut port = p.clone();
        port[14 + 20 + 3] ^= 1;
        assert!(!crc_ok(&port, 20));
        let other = sctp(([198, 51, 100, 7], 40_000), ([10, 244, 1, 5], 3868), INIT);
        assert_eq!(p[14 + 20..], other[14 + 20..], "the CRC covers no address");
    }
}
