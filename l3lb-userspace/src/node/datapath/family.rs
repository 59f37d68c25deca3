//! The per-family maps behind one interface: frontend values by [`FrontendId`], backend slots
//! as [`SlotEntry`]s. Everything above this works the same for IPv4 and IPv6.
use std::net::IpAddr;

use aya::maps::{Array, MapData, MapError};
use l3lb_common::{
    BACKEND_FREE, BackendV4, BackendV6, Frontend, FrontendKeyV4, FrontendKeyV6, MAP_BACKENDS_V4,
    MAP_BACKENDS_V6, MAP_FRONTENDS_V4, MAP_FRONTENDS_V6, ip6,
};

use super::{Datapath, DatapathError, map_err, remove_absent_ok};
use crate::{
    core::model::{Endpoint, FrontendId},
    node::datapath::keys::{endpoint_of_v4, endpoint_of_v6, id_of, id_of_v6, key_of, key_of_v6},
};

/// An address family: which set of maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Fam {
    V4,
    V6,
}

impl Fam {
    pub(super) fn of(addr: IpAddr) -> Fam {
        match addr {
            IpAddr::V4(_) => Fam::V4,
            IpAddr::V6(_) => Fam::V6,
        }
    }
}

/// A backend slot of either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SlotEntry {
    pub(super) endpoint: Endpoint,
    pub(super) state: u8,
    pub(super) gen_: u32,
    pub(super) frontend: u32,
}

impl SlotEntry {
    pub(super) fn in_use(&self) -> bool {
        self.state != BACKEND_FREE
    }
}

fn v4_entry(b: &BackendV4) -> SlotEntry {
    SlotEntry {
        endpoint: endpoint_of_v4(b),
        state: b.state,
        gen_: b.gen_,
        frontend: b.frontend,
    }
}

fn v6_entry(b: &BackendV6) -> SlotEntry {
    SlotEntry {
        endpoint: endpoint_of_v6(b),
        state: b.state,
        gen_: b.gen_,
        frontend: b.frontend,
    }
}

fn not_found_is_none<T>(r: Result<T, MapError>) -> Result<Option<T>, MapError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Datapath {
    fn array<V: aya::Pod>(&self, name: &'static str) -> Result<Array<&MapData, V>, DatapathError> {
        let map = self
            .ebpf
            .map(name)
            .ok_or(DatapathError::MissingMap { name })?;
        Array::try_from(map).map_err(map_err(name, "open"))
    }

    fn array_mut<V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<Array<&mut MapData, V>, DatapathError> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DatapathError::MissingMap { name })?;
        Array::try_from(map).map_err(map_err(name, "open"))
    }

    /// Backend slot `slot` of family `fam`, as the map holds it.
    pub(super) fn read_slot(&self, fam: Fam, slot: u32) -> Result<SlotEntry, DatapathError> {
        match fam {
            Fam::V4 => {
                let b = self.array::<BackendV4>(MAP_BACKENDS_V4)?.get(&slot, 0);
                Ok(v4_entry(&b.map_err(map_err(MAP_BACKENDS_V4, "lookup"))?))
            }
            Fam::V6 => {
                let b = self.array::<BackendV6>(MAP_BACKENDS_V6)?.get(&slot, 0);
                Ok(v6_entry(&b.map_err(map_err(MAP_BACKENDS_V6, "lookup"))?))
            }
        }
    }

    /// Writes backend slot `slot`; a free one is written with a zero address.
    pub(super) fn write_slot(
        &mut self,
        fam: Fam,
        slot: u32,
        e: &SlotEntry,
    ) -> Result<(), DatapathError> {
        let port_be = e.endpoint.port.to_be();
        match (fam, e.endpoint.addr) {
            (Fam::V4, IpAddr::V4(a)) => {
                let value = BackendV4 {
                    addr_be: u32::from(a).to_be(),
                    port_be,
                    state: e.state,
                    _pad: 0,
                    gen_: e.gen_,
                    frontend: e.frontend,
                };
                self.array_mut::<BackendV4>(MAP_BACKENDS_V4)?
                    .set(slot, value, 0)
                    .map_err(map_err(MAP_BACKENDS_V4, "update"))
            }
            (Fam::V6, IpAddr::V6(a)) => {
                let value = BackendV6 {
                    addr: ip6(a.octets()),
                    port_be,
                    state: e.state,
                    _pad: 0,
                    gen_: e.gen_,
                    frontend: e.frontend,
                    _pad2: 0,
                };
                self.array_mut::<BackendV6>(MAP_BACKENDS_V6)?
                    .set(slot, value, 0)
                    .map_err(map_err(MAP_BACKENDS_V6, "update"))
            }
            _ => Err(DatapathError::WrongFamily {
                endpoint: e.endpoint,
            }),
        }
    }

    /// The frontend map's value for `id`, if any.
    pub(super) fn frontend_value(
        &self,
        id: &FrontendId,
    ) -> Result<Option<Frontend>, DatapathError> {
        match (key_of(id), key_of_v6(id)) {
            (Some(k), _) => {
                let map = self.hash::<FrontendKeyV4, Frontend>(MAP_FRONTENDS_V4)?;
                not_found_is_none(map.get(&k, 0)).map_err(map_err(MAP_FRONTENDS_V4, "lookup"))
            }
            (_, Some(k)) => {
                let map = self.hash::<FrontendKeyV6, Frontend>(MAP_FRONTENDS_V6)?;
                not_found_is_none(map.get(&k, 0)).map_err(map_err(MAP_FRONTENDS_V6, "lookup"))
            }
            _ => Ok(None),
        }
    }

    /// Inserts or replaces the frontend map's value for `id`: one map update.
    pub(super) fn put_frontend(
        &mut self,
        id: &FrontendId,
        v: &Frontend,
    ) -> Result<(), DatapathError> {
        match (key_of(id), key_of_v6(id)) {
            (Some(k), _) => self
                .hash_mut::<FrontendKeyV4, Frontend>(MAP_FRONTENDS_V4)?
                .insert(k, v, 0)
                .map_err(map_err(MAP_FRONTENDS_V4, "insert")),
            (_, Some(k)) => self
                .hash_mut::<FrontendKeyV6, Frontend>(MAP_FRONTENDS_V6)?
                .insert(k, v, 0)
                .map_err(map_err(MAP_FRONTENDS_V6, "insert")),
            _ => Ok(()),
        }
    }

    /// Deletes `id` from its frontend map; an absent one is fine.
    pub(super) fn delete_frontend(&mut self, id: &FrontendId) -> Result<(), DatapathError> {
        match (key_of(id), key_of_v6(id)) {
            (Some(k), _) => {
                let mut map = self.hash_mut::<FrontendKeyV4, Frontend>(MAP_FRONTENDS_V4)?;
                remove_absent_ok(&mut map, &k).map_err(map_err(MAP_FRONTENDS_V4, "remove"))
            }
            (_, Some(k)) => {
                let mut map = self.hash_mut::<FrontendKeyV6, Frontend>(MAP_FRONTENDS_V6)?;
                remove_absent_ok(&mut map, &k).map_err(map_err(MAP_FRONTENDS_V6, "remove"))
            }
            _ => Ok(()),
        }
    }

    /// Calls `f` with every frontend of both maps and its value, one at a time: a value carries
    /// its Maglev table (about 17 KB), so collecting them all would cost 170 MB at 10,000
    /// frontends.
    pub(super) fn each_frontend(
        &self,
        mut f: impl FnMut(FrontendId, &Frontend) -> Result<(), DatapathError>,
    ) -> Result<(), DatapathError> {
        let v4 = self.hash::<FrontendKeyV4, Frontend>(MAP_FRONTENDS_V4)?;
        for entry in v4.iter() {
            let (k, v) = entry.map_err(map_err(MAP_FRONTENDS_V4, "iterate"))?;
            if let Some(id) = id_of(&k) {
                f(id, &v)?;
            }
        }
        let v6 = self.hash::<FrontendKeyV6, Frontend>(MAP_FRONTENDS_V6)?;
        for entry in v6.iter() {
            let (k, v) = entry.map_err(map_err(MAP_FRONTENDS_V6, "iterate"))?;
            if let Some(id) = id_of_v6(&k) {
                f(id, &v)?;
            }
        }
        Ok(())
    }

    /// Every frontend of both maps (keys only: no copy of the tables).
    pub(super) fn frontend_ids(&self) -> Result<Vec<FrontendId>, DatapathError> {
        let mut out = Vec::new();
        let v4 = self.hash::<FrontendKeyV4, Frontend>(MAP_FRONTENDS_V4)?;
        for k in v4.keys() {
            out.extend(id_of(&k.map_err(map_err(MAP_FRONTENDS_V4, "iterate"))?));
        }
        let v6 = self.hash::<FrontendKeyV6, Frontend>(MAP_FRONTENDS_V6)?;
        for k in v6.keys() {
            out.extend(id_of_v6(&k.map_err(map_err(MAP_FRONTENDS_V6, "iterate"))?));
        }
        Ok(out)
    }
}
