//! L2 mode's announcements on takeover: a gratuitous ARP (IPv4) or an unsolicited Neighbour
//! Advertisement (IPv6) sent out of an interface through a raw AF_PACKET socket, so neighbours
//! and switches move to the new announcer at once instead of when their entry goes stale.
//! Needs CAP_NET_RAW.
use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use l3lb_common::neigh::{gratuitous_arp, unsolicited_advertisement};

/// The index and MAC address of interface `name` (from the kernel's link list, in this
/// process's network namespace).
pub fn link(name: &str) -> io::Result<(u32, [u8; 6])> {
    let ifindex = nix::net::if_::if_nametoindex(name).map_err(io::Error::from)?;
    let mac = nix::ifaddrs::getifaddrs()
        .map_err(io::Error::from)?
        .filter(|a| a.interface_name == name)
        .find_map(|a| a.address?.as_link_addr()?.addr())
        .ok_or_else(|| io::Error::other(format!("{name} has no link-layer address")))?;
    Ok((ifindex, mac))
}

/// A raw AF_PACKET socket that only sends (protocol 0: it receives nothing). Opened once when
/// the datapath is set up, so a daemon without CAP_NET_RAW stops at its start rather than at
/// its first takeover.
#[derive(Debug)]
pub struct PacketSocket(OwnedFd);

impl PacketSocket {
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked and owned right away.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends the announcement of `address` from `mac` out of interface `ifindex`.
    pub fn announce(&self, ifindex: u32, mac: [u8; 6], address: IpAddr) -> io::Result<()> {
        match address {
            IpAddr::V4(a) => self.send(ifindex, &gratuitous_arp(&mac, &a.octets())),
            IpAddr::V6(a) => self.send(ifindex, &unsolicited_advertisement(&mac, &a.octets())),
        }
    }

    /// Sends one whole Ethernet frame (its header included) out of `ifindex`.
    pub fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        let ifindex = i32::try_from(ifindex).map_err(io::Error::other)?;
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(frame.get(..6).ok_or(io::ErrorKind::InvalidInput)?);
        // SAFETY: `frame` and `addr` are valid for the lengths given for the duration of the call.
        let sent = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        match sent {
            n if n < 0 => Err(io::Error::last_os_error()),
            n if n as usize != frame.len() => Err(io::Error::other("short send")),
            _ => Ok(()),
        }
    }
}

/// The solicited-node multicast groups (ff02::1:ffXX:XXXX) of the IPv6 addresses this node
/// answers for, joined on their interfaces: a NIC filters multicast frames in hardware, and
/// Neighbour Solicitations for an address no socket joined would never reach the XDP program.
/// Memberships last while the socket is open (a restarted daemon joins again).
#[derive(Debug, Default)]
pub struct SolicitedGroups {
    socket: Option<std::net::UdpSocket>,
    joined: std::collections::BTreeSet<(u32, std::net::Ipv6Addr)>,
}

/// The solicited-node multicast address of `a` (RFC 4291 2.7.1).
pub fn solicited_node(a: std::net::Ipv6Addr) -> std::net::Ipv6Addr {
    let o = a.octets();
    std::net::Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

impl SolicitedGroups {
    /// Joins the groups of `answering` ((ifindex, address) pairs) and leaves the others.
    pub fn set(&mut self, answering: impl IntoIterator<Item = (u32, IpAddr)>) -> io::Result<()> {
        let want: std::collections::BTreeSet<(u32, std::net::Ipv6Addr)> = answering
            .into_iter()
            .filter_map(|(i, a)| match a {
                IpAddr::V6(a) => Some((i, solicited_node(a))),
                IpAddr::V4(_) => None,
            })
            .collect();
        if want == self.joined {
            return Ok(());
        }
        let socket = match &self.socket {
            Some(s) => s,
            None => self.socket.insert(std::net::UdpSocket::bind((
                std::net::Ipv6Addr::UNSPECIFIED,
                0,
            ))?),
        };
        let mut first_error = None;
        for (ifindex, group) in self.joined.difference(&want) {
            if let Err(e) = socket.leave_multicast_v6(group, *ifindex) {
                first_error.get_or_insert(e);
            }
        }
        self.joined.retain(|g| want.contains(g));
        for (ifindex, group) in want.difference(&self.joined.clone()) {
            match socket.join_multicast_v6(group, *ifindex) {
                Ok(()) => {
                    self.joined.insert((*ifindex, *group));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn solicited_node_address() {
        let a: std::net::Ipv6Addr = "2001:db8::1:2a3b:4c5d".parse().unwrap();
        assert_eq!(
            super::solicited_node(a),
            "ff02::1:ff3b:4c5d".parse::<std::net::Ipv6Addr>().unwrap()
        );
    }
}
