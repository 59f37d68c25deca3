//! Per-frontend and per-backend packet and byte counters, summed over CPUs: a plain read for
//! the daemon (metrics) and tools. `bpftool map dump name L3LB_FRONTEND_STATS` shows the same per
//! CPU, by slot.
use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuArray};
use l3lb_common::{MAP_BACKEND_STATS_V4, MAP_FRONTEND_STATS, Stat};

use super::{Datapath, DatapathError, map_err};
use crate::{
    maps::id_of,
    model::{Endpoint, FrontendId},
};

impl Datapath {
    fn stat(&self, name: &'static str, slot: u32) -> Result<Stat, DatapathError> {
        let map = self
            .ebpf
            .map(name)
            .ok_or(DatapathError::MissingMap { name })?;
        let stats: PerCpuArray<&MapData, Stat> =
            PerCpuArray::try_from(map).map_err(map_err(name, "open"))?;
        let per_cpu = stats.get(&slot, 0).map_err(map_err(name, "lookup"))?;
        Ok(per_cpu.iter().fold(Stat::default(), |a, s| Stat {
            packets: a.packets + s.packets,
            bytes: a.bytes + s.bytes,
        }))
    }

    /// Packets and bytes DNATed for each programmed frontend since it was programmed.
    pub fn frontend_stats(&self) -> Result<BTreeMap<FrontendId, Stat>, DatapathError> {
        let mut out = BTreeMap::new();
        for (key, p) in &self.slots.programmed {
            if let Some(id) = id_of(key) {
                out.insert(id, self.stat(MAP_FRONTEND_STATS, p.slot)?);
            }
        }
        Ok(out)
    }

    /// Packets and bytes DNATed to each endpoint of each programmed frontend since it joined.
    pub fn backend_stats(&self) -> Result<BTreeMap<(FrontendId, Endpoint), Stat>, DatapathError> {
        let mut out = BTreeMap::new();
        for (key, p) in &self.slots.programmed {
            let Some(id) = id_of(key) else { continue };
            for (endpoint, slot) in &p.backends {
                out.insert((id, *endpoint), self.stat(MAP_BACKEND_STATS_V4, *slot)?);
            }
        }
        Ok(out)
    }
}
