//! Programming frontends: each frontend gets a counter slot and each of its endpoints a backend
//! slot (ids), then its whole backend set and Maglev table go into the frontend map in one
//! update. Backend slots of endpoints that left are freed only after that update, with a new
//! generation, so flows still pinned to them are recognised as stale and given a live backend.
//!
//! The ids in use are remembered in memory (the daemon is the maps' only writer) and rebuilt
//! from the maps on a pinned load.
use std::collections::BTreeMap;

use aya::maps::{Array, MapData, PerCpuArray, PerCpuValues};
use l3lb_common::{
    BACKEND_ACTIVE, BACKEND_DRAINING, BACKEND_FREE, BackendV4, FRONTEND_AFFINITY, Frontend,
    FrontendKeyV4, MAP_BACKEND_STATS_V4, MAP_BACKENDS_V4, MAP_FRONTEND_STATS, MAP_FRONTENDS_V4,
    MAX_BACKEND_SLOTS, MAX_BACKENDS, MAX_FRONTENDS, Stat, hash,
};
use tracing::warn;

use super::{Datapath, DatapathError, ids::Ids, map_err};
use crate::{
    maps::{endpoint_of_v4, key_of},
    model::{Backends, Endpoint, FrontendId},
};

/// What is programmed for one frontend: its counter slot and its endpoints' backend slots.
#[derive(Debug, Clone, Default)]
pub(super) struct Programmed {
    pub(super) slot: u32,
    pub(super) backends: BTreeMap<Endpoint, u32>,
}

/// Ids in use, by frontend.
#[derive(Debug)]
pub(super) struct Slots {
    pub(super) frontends: Ids,
    pub(super) backends_v4: Ids,
    pub(super) programmed: BTreeMap<FrontendKeyV4, Programmed>,
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            frontends: Ids::new(MAX_FRONTENDS),
            backends_v4: Ids::new(MAX_BACKEND_SLOTS),
            programmed: BTreeMap::new(),
        }
    }
}

/// The endpoints a frontend value holds: ready first, then terminating, at most
/// [`MAX_BACKENDS`]; each with whether it takes new flows.
fn wanted(id: &FrontendId, backends: &Backends) -> Vec<(Endpoint, bool)> {
    let mut out: Vec<(Endpoint, bool)> = backends.ready.iter().map(|e| (*e, true)).collect();
    out.extend(
        backends
            .terminating
            .iter()
            .filter(|e| !backends.ready.contains(e))
            .map(|e| (*e, false)),
    );
    out.retain(|(e, _)| e.addr.is_ipv4() == id.vip.is_ipv4());
    if out.len() > MAX_BACKENDS {
        warn!(frontend = %id, endpoints = out.len(), max = MAX_BACKENDS,
            "too many local endpoints; programming the first");
        out.truncate(MAX_BACKENDS);
    }
    out.sort();
    out
}

fn backend_key(e: &Endpoint) -> u64 {
    match e.addr {
        std::net::IpAddr::V4(a) => hash::backend_key(&a.octets(), e.port),
        std::net::IpAddr::V6(a) => hash::backend_key(&a.octets(), e.port),
    }
}

impl Datapath {
    /// Adds or replaces frontend `id`: ready endpoints take new flows, terminating ones keep
    /// their pinned flows. The frontend map is written once, with the whole set and its table.
    pub fn set_frontend(
        &mut self,
        id: FrontendId,
        backends: &Backends,
    ) -> Result<(), DatapathError> {
        let key = key_of(&id).ok_or(DatapathError::Ipv6Unsupported)?;
        let wanted = wanted(&id, backends);
        let mut programmed = match self.slots.programmed.get(&key) {
            Some(p) => p.clone(),
            None => {
                let slot = self.slots.frontends.take().ok_or(DatapathError::Full {
                    what: "frontend slots",
                })?;
                self.zero_stat(MAP_FRONTEND_STATS, slot)?;
                Programmed {
                    slot,
                    backends: BTreeMap::new(),
                }
            }
        };
        let previous = self.frontend_value(&key)?;
        let mut value = Frontend {
            id: programmed.slot,
            ..Frontend::default()
        };
        if let Some(t) = backends.affinity_timeout_s {
            value.flags |= FRONTEND_AFFINITY;
            value.affinity_timeout_s = t;
        }
        let mut members = Vec::new();
        for (local, (endpoint, active)) in wanted.iter().enumerate() {
            let slot = match programmed.backends.get(endpoint) {
                Some(slot) => *slot,
                None => {
                    let slot = self.slots.backends_v4.take().ok_or(DatapathError::Full {
                        what: "backend slots",
                    })?;
                    self.zero_stat(MAP_BACKEND_STATS_V4, slot)?;
                    programmed.backends.insert(*endpoint, slot);
                    slot
                }
            };
            let state = if *active {
                BACKEND_ACTIVE
            } else {
                BACKEND_DRAINING
            };
            self.write_backend(slot, endpoint, state, programmed.slot)?;
            value.backends[local] = slot;
            if *active {
                members.push((backend_key(endpoint), local as u8));
            }
        }
        value.count = wanted.len() as u32;
        value.active = members.len() as u32;
        members.sort();
        // Build over the table in the map, so only what must move moves.
        let mut prev_keys = Vec::new();
        if let Some(prev) = &previous {
            value.table = prev.table;
            let by_slot: BTreeMap<u32, &Endpoint> =
                programmed.backends.iter().map(|(e, s)| (*s, e)).collect();
            for slot in &prev.backends[..(prev.count as usize).min(MAX_BACKENDS)] {
                // A slot we do not know (maps from another run, changed by hand): its table
                // entries are treated as free.
                prev_keys.push(by_slot.get(slot).map_or(0, |e| backend_key(e)));
            }
            if prev.active == 0 {
                prev_keys.clear();
            }
        }
        hash::maglev_update::<MAX_BACKENDS>(&mut value.table, &prev_keys, &members);
        self.vip_before_upsert(&key)?;
        self.hash_mut::<FrontendKeyV4, Frontend>(MAP_FRONTENDS_V4)?
            .insert(key, value, 0)
            .map_err(map_err(MAP_FRONTENDS_V4, "insert"))?;
        self.vip_refs.insert(key);
        // Only now that no table names them: free the slots of endpoints that left.
        let gone: Vec<Endpoint> = programmed
            .backends
            .keys()
            .filter(|e| !wanted.iter().any(|(w, _)| w == *e))
            .copied()
            .collect();
        for endpoint in gone {
            if let Some(slot) = programmed.backends.remove(&endpoint) {
                self.free_backend(slot)?;
            }
        }
        self.slots.programmed.insert(key, programmed);
        Ok(())
    }

    /// Removes frontend `id` and frees its slots; removing an absent one succeeds. Its VIP
    /// leaves the VIP set after its last frontend.
    pub fn remove_frontend(&mut self, id: FrontendId) -> Result<(), DatapathError> {
        let key = key_of(&id).ok_or(DatapathError::Ipv6Unsupported)?;
        let mut map = self.hash_mut::<FrontendKeyV4, Frontend>(MAP_FRONTENDS_V4)?;
        super::remove_absent_ok(&mut map, &key).map_err(map_err(MAP_FRONTENDS_V4, "remove"))?;
        self.vip_after_remove(&key)?;
        if let Some(programmed) = self.slots.programmed.remove(&key) {
            for slot in programmed.backends.values() {
                self.free_backend(*slot)?;
            }
            self.slots.frontends.give_back(programmed.slot);
        }
        Ok(())
    }

    /// The frontend map's value for `key`, if any.
    pub(super) fn frontend_value(
        &self,
        key: &FrontendKeyV4,
    ) -> Result<Option<Frontend>, DatapathError> {
        let map = self.hash::<FrontendKeyV4, Frontend>(MAP_FRONTENDS_V4)?;
        match map.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(MAP_FRONTENDS_V4, "lookup")(e)),
        }
    }

    fn backends_v4(&mut self) -> Result<Array<&mut MapData, BackendV4>, DatapathError> {
        let map = self
            .ebpf
            .map_mut(MAP_BACKENDS_V4)
            .ok_or(DatapathError::MissingMap {
                name: MAP_BACKENDS_V4,
            })?;
        Array::try_from(map).map_err(map_err(MAP_BACKENDS_V4, "open"))
    }

    /// Backend slot `slot` as the map holds it.
    pub(super) fn backend_v4(&self, slot: u32) -> Result<BackendV4, DatapathError> {
        let map = self
            .ebpf
            .map(MAP_BACKENDS_V4)
            .ok_or(DatapathError::MissingMap {
                name: MAP_BACKENDS_V4,
            })?;
        let array: Array<&MapData, BackendV4> =
            Array::try_from(map).map_err(map_err(MAP_BACKENDS_V4, "open"))?;
        array
            .get(&slot, 0)
            .map_err(map_err(MAP_BACKENDS_V4, "lookup"))
    }

    fn write_backend(
        &mut self,
        slot: u32,
        endpoint: &Endpoint,
        state: u8,
        frontend: u32,
    ) -> Result<(), DatapathError> {
        let current = self.backend_v4(slot)?;
        let std::net::IpAddr::V4(addr) = endpoint.addr else {
            return Err(DatapathError::Ipv6Unsupported);
        };
        let value = BackendV4 {
            addr_be: u32::from(addr).to_be(),
            port_be: endpoint.port.to_be(),
            state,
            _pad: 0,
            // A slot keeps its generation while in use; it changes when the slot is freed.
            gen_: current.gen_,
            frontend,
        };
        if value != current {
            self.backends_v4()?
                .set(slot, value, 0)
                .map_err(map_err(MAP_BACKENDS_V4, "update"))?;
        }
        Ok(())
    }

    /// Marks a backend slot free under a new generation, and makes it available again.
    pub(super) fn free_backend(&mut self, slot: u32) -> Result<(), DatapathError> {
        let current = self.backend_v4(slot)?;
        let freed = BackendV4 {
            state: BACKEND_FREE,
            gen_: current.gen_.wrapping_add(1),
            ..BackendV4::default()
        };
        self.backends_v4()?
            .set(slot, freed, 0)
            .map_err(map_err(MAP_BACKENDS_V4, "update"))?;
        self.slots.backends_v4.give_back(slot);
        Ok(())
    }

    /// Zeroes one slot of a per-CPU counter map, for a slot taken into use.
    fn zero_stat(&mut self, name: &'static str, slot: u32) -> Result<(), DatapathError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, source)| DatapathError::Cpus { source })?;
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DatapathError::MissingMap { name })?;
        let mut stats: PerCpuArray<&mut MapData, Stat> =
            PerCpuArray::try_from(map).map_err(map_err(name, "open"))?;
        let zeros = PerCpuValues::try_from(vec![Stat::default(); cpus])
            .map_err(|source| DatapathError::Cpus { source })?;
        stats.set(slot, zeros, 0).map_err(map_err(name, "update"))
    }

    /// Every frontend as the maps hold it.
    pub fn frontends(&self) -> Result<crate::model::Frontends, DatapathError> {
        let map = self.hash::<FrontendKeyV4, Frontend>(MAP_FRONTENDS_V4)?;
        let mut out = crate::model::Frontends::new();
        for entry in map.iter() {
            let (key, value) = entry.map_err(map_err(MAP_FRONTENDS_V4, "iterate"))?;
            let Some(id) = crate::maps::id_of(&key) else {
                continue;
            };
            let mut backends = Backends {
                affinity_timeout_s: (value.flags & FRONTEND_AFFINITY != 0)
                    .then_some(value.affinity_timeout_s),
                ..Backends::default()
            };
            for slot in &value.backends[..(value.count as usize).min(MAX_BACKENDS)] {
                let b = self.backend_v4(*slot)?;
                match b.state {
                    BACKEND_ACTIVE => backends.ready.insert(endpoint_of_v4(&b)),
                    BACKEND_DRAINING => backends.terminating.insert(endpoint_of_v4(&b)),
                    _ => false,
                };
            }
            out.insert(id, backends);
        }
        Ok(out)
    }

    /// Rebuilds the record of ids in use from the maps (a pinned load): every frontend's slot and
    /// backend slots; backend slots in use that no frontend names (a crash half-way) are freed.
    pub(super) fn sync_slots(&mut self) -> Result<(), DatapathError> {
        let mut slots = Slots::default();
        let map = self.hash::<FrontendKeyV4, Frontend>(MAP_FRONTENDS_V4)?;
        let mut found = Vec::new();
        for entry in map.iter() {
            found.push(entry.map_err(map_err(MAP_FRONTENDS_V4, "iterate"))?);
        }
        for (key, value) in found {
            let mut programmed = Programmed {
                slot: value.id,
                backends: BTreeMap::new(),
            };
            slots.frontends.mark_used(value.id);
            for slot in &value.backends[..(value.count as usize).min(MAX_BACKENDS)] {
                let b = self.backend_v4(*slot)?;
                if b.state != BACKEND_FREE {
                    programmed.backends.insert(endpoint_of_v4(&b), *slot);
                    slots.backends_v4.mark_used(*slot);
                }
            }
            slots.programmed.insert(key, programmed);
        }
        self.slots = slots;
        for slot in 0..MAX_BACKEND_SLOTS {
            if self.slots.backends_v4.is_used(slot) {
                continue;
            }
            if self.backend_v4(slot)?.state != BACKEND_FREE {
                self.free_backend(slot)?;
            }
        }
        Ok(())
    }
}
