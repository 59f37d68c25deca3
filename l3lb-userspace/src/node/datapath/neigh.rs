//! L2 mode's responder entries: (interface index, address) -> the MAC the XDP program answers
//! ARP requests and Neighbour Solicitations with. Only an address's announcer has its entries.
use std::{collections::BTreeMap, net::IpAddr};

use l3lb_common::neigh::{MAP_NEIGH_V4, MAP_NEIGH_V6, NeighKeyV4, NeighKeyV6, NeighMac};

use super::{Datapath, DatapathError, map_err, remove_absent_ok};

/// One responder entry's key: where, and for which address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Responder {
    pub ifindex: u32,
    pub address: IpAddr,
}

fn key_v4(ifindex: u32, a: std::net::Ipv4Addr) -> NeighKeyV4 {
    NeighKeyV4 {
        ifindex,
        addr_be: u32::from_ne_bytes(a.octets()),
    }
}

/// Where the datapath answers ARP/NDP, as the daemon's L2 rounds program it.
pub trait ResponderTable {
    /// Every responder entry, with the MAC it answers with.
    fn responders(&self) -> Result<BTreeMap<Responder, [u8; 6]>, DatapathError>;
    /// Answers for `r.address` on `r.ifindex` with `mac` (replacing any earlier MAC).
    fn set_responder(&mut self, r: Responder, mac: [u8; 6]) -> Result<(), DatapathError>;
    /// Stops answering for `r.address` on `r.ifindex` (absent already: fine).
    fn remove_responder(&mut self, r: Responder) -> Result<(), DatapathError>;
    /// Tells the segment `r.ifindex` is on that `r.address` is at `mac` now (gratuitous ARP,
    /// unsolicited NA).
    fn announce(&self, r: Responder, mac: [u8; 6]) -> std::io::Result<()>;
}

impl ResponderTable for Datapath {
    fn responders(&self) -> Result<BTreeMap<Responder, [u8; 6]>, DatapathError> {
        Datapath::responders(self)
    }
    fn set_responder(&mut self, r: Responder, mac: [u8; 6]) -> Result<(), DatapathError> {
        Datapath::set_responder(self, r, mac)
    }
    fn remove_responder(&mut self, r: Responder) -> Result<(), DatapathError> {
        Datapath::remove_responder(self, r)
    }
    fn announce(&self, r: Responder, mac: [u8; 6]) -> std::io::Result<()> {
        match &self.packets {
            Some(socket) => socket.announce(r.ifindex, mac, r.address),
            None => Err(std::io::Error::other("this datapath has no packet socket")),
        }
    }
}

impl Datapath {
    /// Every responder entry, with the MAC it answers with.
    pub fn responders(&self) -> Result<BTreeMap<Responder, [u8; 6]>, DatapathError> {
        let mut out = BTreeMap::new();
        let v4 = self.hash::<NeighKeyV4, NeighMac>(MAP_NEIGH_V4)?;
        for entry in v4.iter() {
            let (k, v) = entry.map_err(map_err(MAP_NEIGH_V4, "iterate"))?;
            let address = IpAddr::from(k.addr_be.to_ne_bytes());
            out.insert(
                Responder {
                    ifindex: k.ifindex,
                    address,
                },
                v.mac,
            );
        }
        let v6 = self.hash::<NeighKeyV6, NeighMac>(MAP_NEIGH_V6)?;
        for entry in v6.iter() {
            let (k, v) = entry.map_err(map_err(MAP_NEIGH_V6, "iterate"))?;
            out.insert(
                Responder {
                    ifindex: k.ifindex,
                    address: IpAddr::from(k.addr),
                },
                v.mac,
            );
        }
        Ok(out)
    }

    /// Answers for `r.address` on `r.ifindex` with `mac` (replacing any earlier MAC).
    pub fn set_responder(&mut self, r: Responder, mac: [u8; 6]) -> Result<(), DatapathError> {
        let value = NeighMac { mac, _pad: [0; 2] };
        match r.address {
            IpAddr::V4(a) => self
                .hash_mut::<NeighKeyV4, NeighMac>(MAP_NEIGH_V4)?
                .insert(key_v4(r.ifindex, a), value, 0)
                .map_err(map_err(MAP_NEIGH_V4, "insert")),
            IpAddr::V6(a) => self
                .hash_mut::<NeighKeyV6, NeighMac>(MAP_NEIGH_V6)?
                .insert(
                    NeighKeyV6 {
                        ifindex: r.ifindex,
                        addr: a.octets(),
                    },
                    value,
                    0,
                )
                .map_err(map_err(MAP_NEIGH_V6, "insert")),
        }
    }

    /// Stops answering for `r.address` on `r.ifindex` (absent already: fine).
    pub fn remove_responder(&mut self, r: Responder) -> Result<(), DatapathError> {
        match r.address {
            IpAddr::V4(a) => remove_absent_ok::<NeighKeyV4, NeighMac>(
                &mut self.hash_mut(MAP_NEIGH_V4)?,
                &key_v4(r.ifindex, a),
            )
            .map_err(map_err(MAP_NEIGH_V4, "remove")),
            IpAddr::V6(a) => remove_absent_ok::<NeighKeyV6, NeighMac>(
                &mut self.hash_mut(MAP_NEIGH_V6)?,
                &NeighKeyV6 {
                    ifindex: r.ifindex,
                    addr: a.octets(),
                },
            )
            .map_err(map_err(MAP_NEIGH_V6, "remove")),
        }
    }
}
