//! Per-CPU verdict counters: one slot per verdict (exactly one per packet), plus event counters
//! (counted in addition to the packet's verdict, with 0 bytes).

/// Counter slots; the daemon, `l3lb stats` and `bpftool map dump` read them.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    /// XDP: not for a VIP (or not parseable): passed untouched.
    XdpPassNotOurs = 0,
    /// XDP: DNATed to a local endpoint and handed to the kernel's forwarding path.
    XdpDnatPass = 1,
    /// XDP: a frontend without an endpoint for new flows: dropped (the host's sockets must not
    /// answer for it).
    XdpNoBackend = 2,
    /// TC egress: reply of an established translated flow, source restored to VIP:port.
    TcRevNat = 3,
    /// TC egress: not a translated flow: passed untouched.
    TcPassNotOurs = 4,
    /// Event: the flow tables could not record a new flow (the next packet retries).
    XdpFlowInsertFailed = 5,
    /// XDP: a fragment not addressed to a VIP: passed untouched.
    XdpPassFragment = 6,
    /// TC egress: rewriting a translated reply failed half-way; the packet was dropped.
    TcRevNatError = 7,
    /// XDP: addressed to a VIP but on no frontend (a port/protocol no Service serves, another
    /// IP protocol, an ICMP type not let through, a truncated header): dropped, so host sockets
    /// listening on all addresses are not reachable through a VIP.
    XdpDropVipNoFrontend = 8,
    /// XDP: a fragment addressed to a VIP: dropped.
    XdpDropVipFragment = 9,
    /// XDP: IPv4 options or IPv6 extension headers addressed to a VIP: dropped.
    XdpDropVipIpOptions = 10,
    /// XDP: ICMP echo request, destination unreachable or time exceeded (and their ICMPv6
    /// counterparts, neighbour discovery) to a VIP: passed to the host untouched.
    XdpPassVipIcmp = 11,
    /// XDP: DNATed and redirected straight to the endpoint's interface.
    XdpRedirect = 12,
    /// XDP: an ICMP error to a VIP quoting a translated flow, translated to its endpoint.
    XdpIcmpErrorNat = 13,
    /// TC egress: an ICMP error quoting a translated flow, translated back to the VIP.
    TcIcmpErrorNat = 14,
    /// Event: a flow without a pin got its backend from the Maglev table.
    XdpFlowNew = 15,
    /// Event: a new flow of an affine client went to its remembered backend.
    XdpAffinityHit = 16,
    /// Event: a pinned flow's backend was gone; the flow was given a new one.
    XdpFlowStale = 17,
    /// Event: the client's second packet of a new flow (its handshake ACK, a second datagram)
    /// moved it to the established tables.
    XdpFlowEstablished = 18,
    /// TC egress: reply of a new flow (a SYN-ACK, an answer to a first datagram), source
    /// restored to VIP:port from the new-flow table.
    TcRevNatNew = 19,
    /// XDP: an ARP request or Neighbour Solicitation for an L2 address this node announces:
    /// answered from XDP (XDP_TX).
    XdpNeighReply = 20,
}

impl Counter {
    /// Every counter, in slot order.
    pub const ALL: [Counter; 21] = [
        Counter::XdpPassNotOurs,
        Counter::XdpDnatPass,
        Counter::XdpNoBackend,
        Counter::TcRevNat,
        Counter::TcPassNotOurs,
        Counter::XdpFlowInsertFailed,
        Counter::XdpPassFragment,
        Counter::TcRevNatError,
        Counter::XdpDropVipNoFrontend,
        Counter::XdpDropVipFragment,
        Counter::XdpDropVipIpOptions,
        Counter::XdpPassVipIcmp,
        Counter::XdpRedirect,
        Counter::XdpIcmpErrorNat,
        Counter::TcIcmpErrorNat,
        Counter::XdpFlowNew,
        Counter::XdpAffinityHit,
        Counter::XdpFlowStale,
        Counter::XdpFlowEstablished,
        Counter::TcRevNatNew,
        Counter::XdpNeighReply,
    ];

    /// Stable snake_case name, for metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::XdpPassNotOurs => "xdp_pass_not_ours",
            Counter::XdpDnatPass => "xdp_dnat_pass",
            Counter::XdpNoBackend => "xdp_no_backend",
            Counter::TcRevNat => "tc_rev_nat",
            Counter::TcPassNotOurs => "tc_pass_not_ours",
            Counter::XdpFlowInsertFailed => "xdp_flow_insert_failed",
            Counter::XdpPassFragment => "xdp_pass_fragment",
            Counter::TcRevNatError => "tc_rev_nat_error",
            Counter::XdpDropVipNoFrontend => "xdp_drop_vip_no_frontend",
            Counter::XdpDropVipFragment => "xdp_drop_vip_fragment",
            Counter::XdpDropVipIpOptions => "xdp_drop_vip_ip_options",
            Counter::XdpPassVipIcmp => "xdp_pass_vip_icmp",
            Counter::XdpRedirect => "xdp_redirect",
            Counter::XdpIcmpErrorNat => "xdp_icmp_error_nat",
            Counter::TcIcmpErrorNat => "tc_icmp_error_nat",
            Counter::XdpFlowNew => "xdp_flow_new",
            Counter::XdpAffinityHit => "xdp_affinity_hit",
            Counter::XdpFlowStale => "xdp_flow_stale",
            Counter::XdpFlowEstablished => "xdp_flow_established",
            Counter::TcRevNatNew => "tc_rev_nat_new",
            Counter::XdpNeighReply => "xdp_neigh_reply",
        }
    }

    /// Whether this counter is an event counted in addition to a packet's verdict.
    pub const fn is_event(self) -> bool {
        matches!(
            self,
            Counter::XdpFlowInsertFailed
                | Counter::XdpFlowNew
                | Counter::XdpAffinityHit
                | Counter::XdpFlowStale
                | Counter::XdpFlowEstablished
        )
    }
}

/// Slots in the stats map; larger than the number of counters so new ones need no map resize.
pub const COUNTER_SLOTS: u32 = 32;
const _: () = assert!(Counter::ALL.len() as u32 <= COUNTER_SLOTS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_cover_their_slots() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
