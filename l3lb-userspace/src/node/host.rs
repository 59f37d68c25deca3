//! Every address on the host, not only the VIP interface's: endpoints at one of them would reach
//! the node's own sockets, and a `--prefix` covering one that l3lb did not add is refused at
//! start (l3lb would announce and DNAT what belongs to the host).
use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::{address::AddressMessage, link::LinkAttribute};

use super::addresses::{AddressError, Netlink, address_of, is_ours};

/// One address anywhere on the host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostAddress {
    pub ip: IpAddr,
    pub prefix_len: u8,
    pub interface_index: u32,
    /// Added by l3lb (carries [`L3LB_ADDRESS_PROTO`](super::addresses::L3LB_ADDRESS_PROTO)).
    pub ours: bool,
}

impl Netlink {
    /// Refuses `prefixes` that cover an address l3lb did not add, on any interface: the host's
    /// own addresses, a router id on `lo`, another daemon's.
    pub async fn check_prefixes(&self, prefixes: &[ipnet::IpNet]) -> Result<(), AddressError> {
        let foreign: Vec<HostAddress> = self
            .all_addresses()
            .await?
            .into_iter()
            .filter(|a| !a.ours && prefixes.iter().any(|p| p.contains(&a.ip)))
            .collect();
        if foreign.is_empty() {
            return Ok(());
        }
        let names: std::collections::BTreeMap<u32, String> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect::<Vec<_>>()
            .await
            .map_err(self.err("link dump"))?
            .into_iter()
            .filter_map(|l| {
                let name = l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })?;
                Some((l.header.index, name))
            })
            .collect();
        let found = foreign
            .iter()
            .map(|a| {
                let dev = names.get(&a.interface_index).map_or("?", String::as_str);
                format!("{}/{} on {dev}", a.ip, a.prefix_len)
            })
            .collect();
        Err(AddressError::ForeignInPrefix { found })
    }

    /// Every address on every interface of the host.
    pub async fn all_addresses(&self) -> Result<Vec<HostAddress>, AddressError> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(self.err("address dump of every interface"))?;
        let mut out: Vec<HostAddress> = msgs
            .iter()
            .filter_map(|m| {
                Some(HostAddress {
                    ip: address_of(m)?,
                    prefix_len: m.header.prefix_len,
                    interface_index: m.header.index,
                    ours: is_ours(m),
                })
            })
            .collect();
        out.sort();
        Ok(out)
    }
}
