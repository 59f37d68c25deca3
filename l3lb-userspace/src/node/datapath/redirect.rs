//! Which interfaces XDP may redirect translated packets into: those whose driver takes
//! redirected frames (`NETDEV_XDP_ACT_NDO_XMIT` in the kernel's `netdev` generic netlink family,
//! Linux >= 6.3: a NIC driver with ndo_xdp_xmit, or a veth whose peer has NAPI — GRO on or an
//! XDP program — as a CNI may set up). Redirecting into any other interface would silently lose
//! the frame, so only these become redirect targets; packets to the others take the kernel's
//! forwarding path. The messages are netlink-packet-generic's, over a netlink-sys socket.
use std::{collections::BTreeSet, io, time::Duration};

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable,
    NetlinkMessage, NetlinkPayload, NetlinkSerializable, Nla, NlaBuffer, NlasIterator, Parseable,
    ParseableParametrized, parse_u32, parse_u64,
};
use netlink_packet_generic::{
    GenlFamily, GenlHeader, GenlMessage,
    ctrl::{GenlCtrl, GenlCtrlCmd, nlas::GenlCtrlAttrs},
};
use netlink_sys::{
    AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket, protocols::NETLINK_GENERIC,
};

const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
/// `NETDEV_XDP_ACT_NDO_XMIT`: the device takes frames redirected to it.
const NDO_XMIT: u64 = 1 << 2;
/// Longest a query waits for the kernel.
const TIMEOUT: Duration = Duration::from_secs(2);

/// An attribute of a `netdev` family message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NetdevAttr {
    IfIndex(u32),
    XdpFeatures(u64),
    Other(DefaultNla),
}

impl Nla for NetdevAttr {
    fn value_len(&self) -> usize {
        match self {
            NetdevAttr::IfIndex(_) => 4,
            NetdevAttr::XdpFeatures(_) => 8,
            NetdevAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            NetdevAttr::IfIndex(_) => NETDEV_A_DEV_IFINDEX,
            NetdevAttr::XdpFeatures(_) => NETDEV_A_DEV_XDP_FEATURES,
            NetdevAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            NetdevAttr::IfIndex(i) => buffer[..4].copy_from_slice(&i.to_ne_bytes()),
            NetdevAttr::XdpFeatures(f) => buffer[..8].copy_from_slice(&f.to_ne_bytes()),
            NetdevAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for NetdevAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let value = buf.value();
        Ok(match buf.kind() {
            NETDEV_A_DEV_IFINDEX => NetdevAttr::IfIndex(parse_u32(value)?),
            NETDEV_A_DEV_XDP_FEATURES => NetdevAttr::XdpFeatures(parse_u64(value)?),
            _ => NetdevAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// A message of the kernel's `netdev` generic netlink family.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Netdev {
    cmd: u8,
    attrs: Vec<NetdevAttr>,
}

impl GenlFamily for Netdev {
    fn family_name() -> &'static str {
        "netdev"
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        1
    }
}

impl Emitable for Netdev {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for Netdev {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let attrs = NlasIterator::new(buf)
            .map(|nla| nla.and_then(|nla| NetdevAttr::parse(&nla)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            cmd: header.cmd,
            attrs,
        })
    }
}

/// One request on `socket` and every payload of its answer (one message, or a whole dump).
async fn request<F>(socket: &TokioSocket, mut msg: GenlMessage<F>, dump: bool) -> io::Result<Vec<F>>
where
    F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + std::fmt::Debug,
    GenlMessage<F>: NetlinkSerializable + NetlinkDeserializable,
{
    msg.finalize();
    let mut nl = NetlinkMessage::from(msg);
    nl.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
    nl.header.sequence_number = 1;
    nl.finalize();
    let mut buf = vec![0; nl.buffer_len()];
    nl.serialize(&mut buf);
    socket.send(&buf).await?;
    let mut out = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full().await?;
        let mut at = 0;
        while at < data.len() {
            let msg = NetlinkMessage::<GenlMessage<F>>::deserialize(&data[at..])
                .map_err(|e| io::Error::other(format!("bad netlink answer: {e}")))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        None => Ok(out),
                    };
                }
                NetlinkPayload::InnerMessage(genl) => out.push(genl.payload),
                _ => {}
            }
            if len == 0 {
                break;
            }
            at += len.next_multiple_of(4);
        }
        if !dump {
            return Ok(out);
        }
    }
}

/// Interfaces (in this network namespace) that take redirected XDP frames.
pub async fn capable_interfaces() -> io::Result<BTreeSet<u32>> {
    tokio::time::timeout(TIMEOUT, query())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "netdev netlink query timed out"))?
}

async fn query() -> io::Result<BTreeSet<u32>> {
    let mut socket = TokioSocket::new(NETLINK_GENERIC)?;
    socket.socket_mut().bind_auto()?;
    socket.socket_mut().connect(&SocketAddr::new(0, 0))?;
    let family = GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(Netdev::family_name().to_owned())],
    };
    let id = request(&socket, GenlMessage::from_payload(family), false)
        .await?
        .iter()
        .flat_map(|f| &f.nlas)
        .find_map(|a| match a {
            GenlCtrlAttrs::FamilyId(id) => Some(*id),
            _ => None,
        })
        .ok_or_else(|| io::Error::other("no netdev generic netlink family (kernel < 6.3?)"))?;
    let mut get = GenlMessage::from_payload(Netdev {
        cmd: NETDEV_CMD_DEV_GET,
        attrs: Vec::new(),
    });
    get.set_resolved_family_id(id);
    let devices = request(&socket, get, true).await?;
    Ok(devices.iter().filter_map(redirect_target).collect())
}

/// The interface index of a device that takes redirected frames.
fn redirect_target(dev: &Netdev) -> Option<u32> {
    let ifindex = dev.attrs.iter().find_map(|a| match a {
        NetdevAttr::IfIndex(i) => Some(*i),
        _ => None,
    })?;
    let features = dev.attrs.iter().find_map(|a| match a {
        NetdevAttr::XdpFeatures(f) => Some(*f),
        _ => None,
    })?;
    (features & NDO_XMIT != 0).then_some(ifindex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netdev_messages_round_trip_and_only_xmit_devices_are_targets() {
        let dev = |ifindex, features| Netdev {
            cmd: NETDEV_CMD_DEV_GET,
            attrs: vec![
                NetdevAttr::IfIndex(ifindex),
                NetdevAttr::XdpFeatures(features),
            ],
        };
        let mut buf = vec![0; dev(3, NDO_XMIT | 1).buffer_len()];
        dev(3, NDO_XMIT | 1).emit(&mut buf);
        let header = GenlHeader {
            cmd: NETDEV_CMD_DEV_GET,
            version: 1,
        };
        let parsed = Netdev::parse_with_param(&buf, header).unwrap();
        assert_eq!(parsed, dev(3, NDO_XMIT | 1));
        assert_eq!(redirect_target(&parsed), Some(3));
        assert_eq!(redirect_target(&dev(4, 1)), None, "no ndo_xdp_xmit");
        let no_features = Netdev {
            cmd: NETDEV_CMD_DEV_GET,
            attrs: vec![NetdevAttr::IfIndex(5)],
        };
        assert_eq!(redirect_target(&no_features), None);
    }
}
