//! L2 mode's takeover announcements (root): a gratuitous ARP and an unsolicited Neighbour
//! Advertisement sent through the daemon's AF_PACKET sender come out of the interface byte for
//! byte, as a capture on the veth peer shows. Everything happens in a namespace the test creates
//! and deletes.
use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::Command,
    time::{Duration, Instant},
};

use l3lb_common::neigh::{gratuitous_arp, unsolicited_advertisement};
use l3lb_tests::netns::in_netns;
use l3lb_userspace::node::announce::{PacketSocket, SolicitedGroups};

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x42];

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?}");
}

/// Captures frames on `ifindex` until one equals `want` or 5 s pass.
fn capture_until(fd: &OwnedFd, want: &[u8]) -> Result<(), Vec<Vec<u8>>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let mut buf = [0u8; 2048];
        // SAFETY: reading into a live buffer of the given length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let frame = buf[..n as usize].to_vec();
        if frame == want {
            return Ok(());
        }
        seen.push(frame);
    }
    Err(seen)
}

/// A packet socket receiving every frame arriving on `ifindex`, with a 200 ms receive timeout.
fn listen(ifindex: u32) -> OwnedFd {
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket(2), checked; then owned.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(all)) };
    assert!(
        fd >= 0,
        "packet socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed sockaddr_ll is valid; bind/setsockopt get valid pointers and lengths.
    unsafe {
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = all;
        addr.sll_ifindex = ifindex as i32;
        let r = libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as u32,
        );
    }
    fd
}

#[test]
fn takeover_announcements_leave_the_interface_as_built() {
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "needs root (a network namespace, raw sockets)");
    let ns = Netns(format!("l3lb-ann-{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    for args in [
        vec![
            "link", "add", "ann0", "type", "veth", "peer", "name", "ann1",
        ],
        vec!["link", "set", "ann0", "up"],
        vec!["link", "set", "ann1", "up"],
    ] {
        let mut full = vec!["-n", ns.0.as_str()];
        full.extend(args);
        ip(&full);
    }
    let result = in_netns(&ns.0, || {
        let index = |name: &str| nix::net::if_::if_nametoindex(name).expect("ifindex");
        let (out, peer) = (index("ann0"), index("ann1"));
        let rx = listen(peer);
        let socket = PacketSocket::open().expect("open the packet socket");
        let v4 = "192.0.2.100".parse().unwrap();
        let v6: std::net::Ipv6Addr = "2001:db8::100".parse().unwrap();
        socket
            .announce(out, MAC, v4)
            .expect("send the gratuitous ARP");
        let arp = capture_until(&rx, &gratuitous_arp(&MAC, &[192, 0, 2, 100]));
        socket
            .announce(out, MAC, v6.into())
            .expect("send the unsolicited NA");
        let na = capture_until(&rx, &unsolicited_advertisement(&MAC, &v6.octets()));
        // The solicited-node group of the answered address is joined on the interface while
        // answered, and left after.
        let group = "ff0200000000000000000001ff000100";
        let joined = || {
            std::fs::read_to_string("/proc/thread-self/net/igmp6")
                .expect("read igmp6")
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some("ann0") && l.contains(group))
        };
        let mut groups = SolicitedGroups::default();
        let before = joined();
        groups.set([(out, v6.into())]).expect("join");
        let during = joined();
        groups.set([]).expect("leave");
        let after = joined();
        (arp, na, (before, during, after))
    })
    .expect("enter the namespace");
    assert!(
        result.0.is_ok(),
        "no gratuitous ARP seen; saw {:?}",
        result.0
    );
    assert!(
        result.1.is_ok(),
        "no unsolicited NA seen; saw {:?}",
        result.1
    );
    assert_eq!(
        result.2,
        (false, true, false),
        "group joined (before, during, after)"
    );
}
