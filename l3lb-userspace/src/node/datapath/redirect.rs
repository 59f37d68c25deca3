//! Which interfaces XDP may redirect translated packets into: those whose driver takes
//! redirected frames (`NETDEV_XDP_ACT_NDO_XMIT` in the kernel's netdev family: a NIC driver with
//! ndo_xdp_xmit, or a veth whose peer has NAPI — GRO on or an XDP program — as a CNI may set up).
//! Redirecting into any other interface would silently lose the frame, so only these are listed
//! in `L3LB_REDIRECT`; packets to the others take the kernel's forwarding path.
//!
//! The list is refreshed every few seconds (pods come and go with their veths), through the
//! pinned map, beside the reconcile loop. Only with `--xdp-redirect`: redirected frames skip the
//! node's netfilter and tc; without it the map is kept empty and the flag clear.
use std::{
    collections::BTreeSet,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    time::Duration,
};

use aya::maps::{Array, DevMapHash, Map, MapData};
use l3lb_common::{CONFIG_REDIRECT, Config, MAP_CONFIG, MAP_REDIRECT};
use tracing::{debug, info, warn};

const NETLINK_GENERIC: i32 = 16;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
/// `NETDEV_XDP_ACT_NDO_XMIT`: the device takes frames redirected to it.
const NDO_XMIT: u64 = 1 << 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const REFRESH: Duration = Duration::from_secs(5);

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscalls on an fd we own from here on.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_GENERIC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh, valid descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: a valid fd and a timeval of the size given.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw mut tv).cast(),
            size_of::<libc::timeval>() as u32,
        )
    };
    Ok(fd)
}

/// A generic netlink request: header, genl header, attributes.
fn request(family: u16, flags: u16, cmd: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = vec![cmd, 1, 0, 0];
    for (kind, value) in attrs {
        let len = 4 + value.len();
        body.extend_from_slice(&(len as u16).to_ne_bytes());
        body.extend_from_slice(&kind.to_ne_bytes());
        body.extend_from_slice(value);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&family.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&body);
    msg
}

/// Attributes of a genl message body (after the 4-byte genl header).
fn attributes(body: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 4;
    while at + 4 <= body.len() {
        let len = u16::from_ne_bytes([body[at], body[at + 1]]) as usize;
        let kind = u16::from_ne_bytes([body[at + 2], body[at + 3]]) & 0x3fff;
        if len < 4 || at + len > body.len() {
            break;
        }
        out.push((kind, &body[at + 4..at + len]));
        at += len.next_multiple_of(4);
    }
    out
}

/// Sends `req` and collects every reply message's body until done (or the single reply).
fn exchange(fd: &OwnedFd, req: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    // SAFETY: sending a buffer we own on a valid fd (to the kernel: a zeroed sockaddr_nl).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const kernel).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let dump = u16::from_ne_bytes([req[6], req[7]]) & NLM_F_DUMP != 0;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receiving into a buffer we own, of the length given.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut at = 0;
        let n = n as usize;
        while at + 16 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or_default()) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if len < 16 || at + len > n {
                break;
            }
            match kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let errno =
                        i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap_or_default());
                    if errno != 0 {
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    return Ok(out);
                }
                _ => out.push(buf[at + 16..at + len].to_vec()),
            }
            at += len.next_multiple_of(4);
        }
        if !dump {
            return Ok(out);
        }
    }
}

/// Interfaces (in this network namespace) that take redirected XDP frames.
pub fn capable_interfaces() -> io::Result<BTreeSet<u32>> {
    let fd = socket()?;
    let family = request(
        GENL_ID_CTRL,
        0,
        CTRL_CMD_GETFAMILY,
        &[(CTRL_ATTR_FAMILY_NAME, b"netdev\0")],
    );
    let reply = exchange(&fd, &family)?;
    let id = reply
        .iter()
        .flat_map(|m| attributes(m))
        .find(|(k, _)| *k == CTRL_ATTR_FAMILY_ID)
        .and_then(|(_, v)| Some(u16::from_ne_bytes(v.get(..2)?.try_into().ok()?)))
        .ok_or_else(|| io::Error::other("no netdev generic netlink family (kernel < 6.3?)"))?;
    let mut out = BTreeSet::new();
    for dev in exchange(&fd, &request(id, NLM_F_DUMP, NETDEV_CMD_DEV_GET, &[]))? {
        let attrs = attributes(&dev);
        let ifindex = attrs
            .iter()
            .find(|(k, _)| *k == NETDEV_A_DEV_IFINDEX)
            .and_then(|(_, v)| Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?)));
        let features = attrs
            .iter()
            .find(|(k, _)| *k == NETDEV_A_DEV_XDP_FEATURES)
            .and_then(|(_, v)| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)));
        if let (Some(ifindex), Some(f)) = (ifindex, features)
            && f & NDO_XMIT != 0
        {
            out.insert(ifindex);
        }
    }
    Ok(out)
}

/// Makes the pinned redirect map in `dir` list exactly `want`; returns (added, removed).
pub fn sync(dir: &Path, want: &BTreeSet<u32>) -> anyhow::Result<(usize, usize)> {
    let data = MapData::from_pin(dir.join(MAP_REDIRECT))?;
    let mut map: DevMapHash<MapData> = DevMapHash::try_from(Map::DevMapHash(data))?;
    let have: BTreeSet<u32> = map.keys().collect::<Result<_, _>>()?;
    for ifindex in want.difference(&have) {
        map.insert(*ifindex, *ifindex, None, 0)?;
    }
    for ifindex in have.difference(want) {
        map.remove(*ifindex)?;
    }
    // XDP looks routes up only while there is somewhere to redirect to.
    let data = MapData::from_pin(dir.join(MAP_CONFIG))?;
    let mut config: Array<MapData, Config> = Array::try_from(Map::Array(data))?;
    let mut value = config.get(&0, 0)?;
    let flags = match want.is_empty() {
        true => value.flags & !CONFIG_REDIRECT,
        false => value.flags | CONFIG_REDIRECT,
    };
    if flags != value.flags {
        value.flags = flags;
        config.set(0, value, 0)?;
    }
    Ok((
        want.difference(&have).count(),
        have.difference(want).count(),
    ))
}

/// Turns redirection off in the pinned maps in `dir` (no target, flag clear), also undoing what an
/// earlier run with `--xdp-redirect` left there: every translated packet takes the kernel's path.
pub fn disable(dir: &Path) -> anyhow::Result<()> {
    let (_, removed) = sync(dir, &BTreeSet::new())?;
    if removed > 0 {
        info!(
            removed,
            "XDP redirect off: removed the redirect targets an earlier run left"
        );
    }
    Ok(())
}

/// Keeps the pinned redirect map in `dir` in line with the interfaces, every few seconds.
pub fn spawn_refresh(dir: PathBuf) {
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            let result = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || -> anyhow::Result<(usize, usize, usize)> {
                    let want = capable_interfaces()?;
                    let (added, removed) = sync(&dir, &want)?;
                    Ok((want.len(), added, removed))
                }
            })
            .await;
            match result {
                Ok(Ok((n, added, removed))) if added + removed > 0 => {
                    info!(
                        interfaces = n,
                        added, removed, "XDP redirect targets updated"
                    )
                }
                Ok(Ok(_)) => debug!("XDP redirect targets unchanged"),
                Ok(Err(error)) if !warned => {
                    warned = true;
                    warn!(%error, "cannot list XDP redirect targets; translated packets take the kernel's path");
                }
                Ok(Err(error)) => debug!(%error, "cannot list XDP redirect targets"),
                Err(error) => debug!(%error, "redirect refresh task failed"),
            }
            tokio::time::sleep(REFRESH).await;
        }
    });
}
