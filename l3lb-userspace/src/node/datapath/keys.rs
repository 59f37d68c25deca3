//! The frontend maps seen as model types: conversion between [`FrontendId`]/[`Endpoint`] and the
//! `#[repr(C)]` map keys, and the [`FrontendTable`] the executor drives.
use std::{
    collections::BTreeMap,
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
};

use l3lb_common::{
    BackendV4, BackendV6, Counter, FrontendKeyV4, FrontendKeyV6, Stat, ip6, ip6_octets,
};

pub use crate::node::datapath::DatapathError as MapError;
use crate::{
    core::model::{Backends, DatapathSettings, Endpoint, FrontendId, Frontends, Proto},
    node::datapath::{Datapath, DatapathError},
    node::{executor::FrontendTable, observe::FrontendObserver},
};

/// The frontend map key of an IPv4 frontend.
pub fn key_of(id: &FrontendId) -> Option<FrontendKeyV4> {
    let IpAddr::V4(vip) = id.vip else { return None };
    Some(FrontendKeyV4 {
        vip_be: u32::from(vip).to_be(),
        port_be: id.port.to_be(),
        proto: id.proto.number(),
        _pad: 0,
    })
}

pub fn id_of(key: &FrontendKeyV4) -> Option<FrontendId> {
    Some(FrontendId {
        vip: IpAddr::V4(Ipv4Addr::from(u32::from_be(key.vip_be))),
        port: u16::from_be(key.port_be),
        proto: Proto::from_number(key.proto)?,
    })
}

/// The frontend map key of an IPv6 frontend.
pub fn key_of_v6(id: &FrontendId) -> Option<FrontendKeyV6> {
    let IpAddr::V6(vip) = id.vip else { return None };
    Some(FrontendKeyV6 {
        vip: ip6(vip.octets()),
        port_be: id.port.to_be(),
        proto: id.proto.number(),
        _pad: 0,
        _pad2: 0,
    })
}

pub fn id_of_v6(key: &FrontendKeyV6) -> Option<FrontendId> {
    Some(FrontendId {
        vip: IpAddr::from(ip6_octets(key.vip)),
        port: u16::from_be(key.port_be),
        proto: Proto::from_number(key.proto)?,
    })
}

pub fn endpoint_of_v6(b: &BackendV6) -> Endpoint {
    Endpoint {
        addr: IpAddr::from(ip6_octets(b.addr)),
        port: u16::from_be(b.port_be),
    }
}

pub fn endpoint_of_v4(b: &BackendV4) -> Endpoint {
    Endpoint {
        addr: IpAddr::V4(Ipv4Addr::from(u32::from_be(b.addr_be))),
        port: u16::from_be(b.port_be),
    }
}

impl FrontendTable for Datapath {
    type Error = DatapathError;

    fn upsert(&mut self, id: FrontendId, endpoints: &Backends) -> Result<(), DatapathError> {
        self.set_frontend(id, endpoints)
    }

    fn remove(&mut self, id: FrontendId) -> Result<(), DatapathError> {
        self.remove_frontend(id)
    }

    fn configure(&mut self, settings: &DatapathSettings) -> Result<(), DatapathError> {
        Datapath::configure(self, settings)
    }
}

impl FrontendObserver for Datapath {
    type Error = DatapathError;

    fn frontends(&self) -> Result<Frontends, DatapathError> {
        Datapath::frontends(self)
    }

    fn settings(&self) -> Result<DatapathSettings, DatapathError> {
        Datapath::settings(self)
    }

    async fn redirect_capable(&self) -> Result<BTreeSet<u32>, DatapathError> {
        super::redirect::capable_interfaces()
            .await
            .map_err(DatapathError::RedirectTargets)
    }

    fn counters(&self) -> Result<BTreeMap<Counter, Stat>, DatapathError> {
        Datapath::counters(self)
    }

    fn frontend_stats(
        &self,
        after: Option<FrontendId>,
        limit: usize,
    ) -> Result<BTreeMap<FrontendId, Stat>, DatapathError> {
        Datapath::frontend_stats_after(self, after, limit)
    }

    fn check_uplinks(&mut self) -> impl Future<Output = BTreeMap<String, String>> + Send {
        Datapath::check_uplinks(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_in_network_order() {
        let id = FrontendId {
            vip: "198.51.100.10".parse().unwrap(),
            port: 80,
            proto: Proto::Udp,
        };
        let key = key_of(&id).unwrap();
        assert_eq!(key.vip_be.to_ne_bytes(), [198, 51, 100, 10]);
        assert_eq!(key.port_be.to_ne_bytes(), [0, 80]);
        assert_eq!(key.proto, 17);
        assert_eq!(id_of(&key), Some(id));
        let b = BackendV4 {
            addr_be: u32::from_ne_bytes([10, 244, 1, 1]),
            port_be: 8080u16.to_be(),
            ..BackendV4::default()
        };
        assert_eq!(
            endpoint_of_v4(&b),
            Endpoint {
                addr: "10.244.1.1".parse().unwrap(),
                port: 8080
            }
        );
    }

    #[test]
    fn ipv6_key_round_trips_with_the_address_bytes_in_order() {
        let id = FrontendId {
            vip: "2001:db8::1".parse().unwrap(),
            port: 443,
            proto: Proto::Tcp,
        };
        let key = key_of_v6(&id).unwrap();
        assert_eq!(ip6_octets(key.vip)[..2], [0x20, 0x01]);
        assert_eq!(ip6_octets(key.vip)[15], 1);
        assert_eq!(id_of_v6(&key), Some(id));
        assert_eq!(key_of(&id), None);
    }

    #[test]
    fn ipv6_has_no_v4_key() {
        let id = FrontendId {
            vip: "2001:db8::1".parse().unwrap(),
            port: 80,
            proto: Proto::Tcp,
        };
        assert_eq!(key_of(&id), None);
    }
}
