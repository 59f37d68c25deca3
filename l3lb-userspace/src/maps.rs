//! The frontend maps seen as model types: conversion between [`FrontendId`]/[`Endpoint`] and the
//! `#[repr(C)]` map entries, and the [`FrontendTable`] the executor drives.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

use l3lb_common::{BackendV4, Counter, FrontendKeyV4, FrontendV4, MAX_BACKENDS, Stat};
use tracing::warn;

use crate::{
    apply::FrontendTable,
    datapath::{Datapath, DatapathError},
    model::{Endpoint, FrontendId, Frontends, Proto},
};

#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("frontend {0} is IPv6; the datapath serves IPv4 only")]
    Ipv6(FrontendId),
}

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

/// The map value for a backend set; beyond [`MAX_BACKENDS`] the lowest endpoints are kept.
pub fn value_of(endpoints: &BTreeSet<Endpoint>) -> FrontendV4 {
    let mut value = FrontendV4::default();
    let v4 = endpoints.iter().filter_map(|e| match e.addr {
        IpAddr::V4(a) => Some(BackendV4 {
            addr_be: u32::from(a).to_be(),
            port_be: e.port.to_be(),
            _pad: 0,
        }),
        IpAddr::V6(_) => None,
    });
    for (slot, backend) in value.backends.iter_mut().zip(v4) {
        *slot = backend;
        value.count += 1;
    }
    value
}

pub fn endpoints_of(value: &FrontendV4) -> BTreeSet<Endpoint> {
    let n = (value.count as usize).min(MAX_BACKENDS);
    value.backends[..n]
        .iter()
        .map(|b| Endpoint {
            addr: IpAddr::V4(Ipv4Addr::from(u32::from_be(b.addr_be))),
            port: u16::from_be(b.port_be),
        })
        .collect()
}

impl FrontendTable for Datapath {
    type Error = MapError;

    fn frontends(&self) -> Result<Frontends, MapError> {
        Ok(self
            .frontends()?
            .iter()
            .filter_map(|(k, v)| Some((id_of(k)?, endpoints_of(v))))
            .collect())
    }

    fn upsert(&mut self, id: FrontendId, endpoints: &BTreeSet<Endpoint>) -> Result<(), MapError> {
        let key = key_of(&id).ok_or(MapError::Ipv6(id))?;
        if endpoints.len() > MAX_BACKENDS {
            warn!(frontend = %id, endpoints = endpoints.len(), max = MAX_BACKENDS, "too many local endpoints; using the first");
        }
        Ok(self.upsert_frontend(key, &value_of(endpoints))?)
    }

    fn remove(&mut self, id: FrontendId) -> Result<(), MapError> {
        let key = key_of(&id).ok_or(MapError::Ipv6(id))?;
        Ok(self.remove_frontend(&key)?)
    }

    fn counters(&self) -> Result<BTreeMap<Counter, Stat>, MapError> {
        Ok(Datapath::counters(self)?)
    }

    fn check_uplinks(&mut self) -> impl Future<Output = BTreeMap<String, String>> + Send {
        Datapath::check_uplinks(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_value_round_trip_in_network_order() {
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

        let eps: BTreeSet<Endpoint> = (1..=3)
            .map(|i| Endpoint {
                addr: IpAddr::V4(Ipv4Addr::new(10, 244, 1, i)),
                port: 8080,
            })
            .collect();
        let value = value_of(&eps);
        assert_eq!(value.count, 3);
        assert_eq!(value.backends[0].addr_be.to_ne_bytes(), [10, 244, 1, 1]);
        assert_eq!(
            value.backends[0].port_be.to_ne_bytes(),
            8080u16.to_be_bytes()
        );
        assert_eq!(endpoints_of(&value), eps);
    }

    #[test]
    fn backend_sets_beyond_capacity_are_capped() {
        let eps: BTreeSet<Endpoint> = (0..40u8)
            .map(|i| Endpoint {
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)),
                port: 1,
            })
            .collect();
        let value = value_of(&eps);
        assert_eq!(value.count as usize, MAX_BACKENDS);
        assert_eq!(
            endpoints_of(&value),
            eps.iter().take(MAX_BACKENDS).copied().collect()
        );
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
