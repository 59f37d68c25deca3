//! Programming frontends: each frontend gets a counter slot and each of its endpoints a backend
//! slot (ids), then its whole backend set and Maglev table go into the frontend map in one
//! update. Backend slots of endpoints that left are freed only after that update, with a new
//! generation, so flows still pinned to them are recognised as stale and given a live backend.
//!
//! The ids in use are remembered in memory (the daemon is the maps' only writer) and rebuilt
//! from the maps on a pinned load.
use std::{collections::BTreeMap, net::IpAddr};

use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use l3lb_common::{
    BACKEND_ACTIVE, BACKEND_DRAINING, BACKEND_FREE, FRONTEND_AFFINITY, Frontend,
    MAP_FRONTEND_STATS, MAX_BACKEND_SLOTS, MAX_BACKENDS, Stat, hash,
};
use tracing::warn;

use super::{
    Datapath, DatapathError,
    family::{Fam, SlotEntry},
    map_err,
    slots::{BackendSlots, Programmed, Slots, backend_stats_map},
};
use crate::core::model::{Backends, Endpoint, FrontendId, Frontends};

/// The endpoints a frontend value holds: those of the VIP's family, ready first, then
/// terminating, at most [`MAX_BACKENDS`]; each with whether it takes new flows.
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
        IpAddr::V4(a) => hash::backend_key(&a.octets(), e.port),
        IpAddr::V6(a) => hash::backend_key(&a.octets(), e.port),
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
        let fam = Fam::of(id.vip);
        let wanted = wanted(&id, backends);
        let mut programmed = match self.slots.programmed.get(&id) {
            Some(p) => p.clone(),
            None => {
                let slot = self.slots.frontends.take().ok_or(DatapathError::Full {
                    what: "frontend slots",
                })?;
                self.zero_stat(MAP_FRONTEND_STATS, slot)?;
                Programmed {
                    slot,
                    backends: BackendSlots::default(),
                }
            }
        };
        let previous = self.frontend_value(&id)?;
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
                    let slot = self.slots.backends(fam).take().ok_or(DatapathError::Full {
                        what: "backend slots",
                    })?;
                    self.zero_stat(backend_stats_map(fam), slot)?;
                    programmed.backends.insert(*endpoint, slot);
                    slot
                }
            };
            let state = if *active {
                BACKEND_ACTIVE
            } else {
                BACKEND_DRAINING
            };
            let current = self.read_slot(fam, slot)?;
            // A slot keeps its generation while in use; it changes when the slot is freed.
            let entry = SlotEntry {
                endpoint: *endpoint,
                state,
                gen_: current.gen_,
                frontend: programmed.slot,
            };
            if entry != current {
                self.write_slot(fam, slot, &entry)?;
            }
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
        if let Some(prev) = previous.filter(|p| p.active > 0) {
            value.table = prev.table;
            let by_slot: BTreeMap<u32, &Endpoint> =
                programmed.backends.iter().map(|(e, s)| (*s, e)).collect();
            for slot in &prev.backends[..(prev.count as usize).min(MAX_BACKENDS)] {
                // A slot we do not know (maps changed by hand): its table entries are free.
                prev_keys.push(by_slot.get(slot).map_or(0, |e| backend_key(e)));
            }
        }
        hash::maglev_update::<MAX_BACKENDS>(&mut value.table, &prev_keys, &members);
        self.vip_before_upsert(&id)?;
        self.put_frontend(&id, &value)?;
        self.vip_refs.insert(id);
        // Only now that no table names them: free the slots of endpoints that left.
        let gone: Vec<Endpoint> = programmed
            .backends
            .keys()
            .filter(|e| !wanted.iter().any(|(w, _)| w == *e))
            .copied()
            .collect();
        for endpoint in gone {
            if let Some(slot) = programmed.backends.remove(&endpoint) {
                self.free_backend(fam, slot)?;
            }
        }
        self.slots.programmed.insert(id, programmed);
        Ok(())
    }

    /// Removes frontend `id` and frees its slots; removing an absent one succeeds. Its VIP
    /// leaves the VIP set after its last frontend.
    pub fn remove_frontend(&mut self, id: FrontendId) -> Result<(), DatapathError> {
        self.delete_frontend(&id)?;
        self.vip_after_remove(&id)?;
        if let Some(programmed) = self.slots.programmed.remove(&id) {
            for slot in programmed.backends.values() {
                self.free_backend(Fam::of(id.vip), *slot)?;
            }
            self.slots.frontends.give_back(programmed.slot);
        }
        Ok(())
    }

    /// Marks a backend slot free under a new generation, and makes it available again.
    fn free_backend(&mut self, fam: Fam, slot: u32) -> Result<(), DatapathError> {
        let current = self.read_slot(fam, slot)?;
        let unspecified = match fam {
            Fam::V4 => IpAddr::from([0u8; 4]),
            Fam::V6 => IpAddr::from([0u8; 16]),
        };
        let freed = SlotEntry {
            endpoint: Endpoint {
                addr: unspecified,
                port: 0,
            },
            state: BACKEND_FREE,
            gen_: current.gen_.wrapping_add(1),
            frontend: 0,
        };
        self.write_slot(fam, slot, &freed)?;
        self.slots.backends(fam).give_back(slot);
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
    pub fn frontends(&self) -> Result<Frontends, DatapathError> {
        let mut out = Frontends::new();
        self.each_frontend(|id, value| {
            let mut backends = Backends {
                affinity_timeout_s: (value.flags & FRONTEND_AFFINITY != 0)
                    .then_some(value.affinity_timeout_s),
                ..Backends::default()
            };
            for slot in &value.backends[..(value.count as usize).min(MAX_BACKENDS)] {
                let b = self.read_slot(Fam::of(id.vip), *slot)?;
                match b.state {
                    BACKEND_ACTIVE => backends.ready.insert(b.endpoint),
                    BACKEND_DRAINING => backends.terminating.insert(b.endpoint),
                    _ => false,
                };
            }
            out.insert(id, backends);
            Ok(())
        })?;
        Ok(out)
    }

    /// Rebuilds the record of ids in use from the maps (a pinned load): every frontend's slot and
    /// backend slots; backend slots in use that no frontend names (a crash half-way) are freed.
    pub(super) fn sync_slots(&mut self) -> Result<(), DatapathError> {
        let mut slots = Slots::default();
        self.each_frontend(|id, value| {
            let fam = Fam::of(id.vip);
            let mut programmed = Programmed {
                slot: value.id,
                backends: BackendSlots::default(),
            };
            slots.frontends.mark_used(value.id);
            for slot in &value.backends[..(value.count as usize).min(MAX_BACKENDS)] {
                let b = self.read_slot(fam, *slot)?;
                if b.in_use() {
                    programmed.backends.insert(b.endpoint, *slot);
                    slots.backends(fam).mark_used(*slot);
                }
            }
            slots.programmed.insert(id, programmed);
            Ok(())
        })?;
        self.slots = slots;
        for fam in [Fam::V4, Fam::V6] {
            for slot in 0..MAX_BACKEND_SLOTS {
                if self.slots.backends(fam).is_used(slot) {
                    continue;
                }
                if self.read_slot(fam, slot)?.in_use() {
                    self.free_backend(fam, slot)?;
                }
            }
        }
        Ok(())
    }

    /// The backend slot of `endpoint` in frontend `id`, if programmed (tests, diagnostics).
    pub fn backend_slot(&self, id: &FrontendId, endpoint: &Endpoint) -> Option<u32> {
        self.slots
            .programmed
            .get(id)?
            .backends
            .get(endpoint)
            .copied()
    }
}
