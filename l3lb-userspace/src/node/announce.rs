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
