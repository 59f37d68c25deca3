//! Per-frontend and per-backend packet and byte counters, summed over CPUs: a plain read for
//! the daemon (metrics) and tools. `bpftool map dump name L3LB_FRONTEND_STATS` shows the same per
//! CPU, by slot.
use std::{collections::BTreeMap, ops::Bound};

use aya::maps::{MapData, PerCpuArray};
use l3lb_common::{MAP_FRONTEND_STATS, Stat};

use super::{Datapath, DatapathError, family::Fam, map_err, slots::backend_stats_map};
use crate::core::model::{Endpoint, FrontendId};

impl Datapath {
    fn stat(&self, name: &'static str, slot: u32) -> Result<Stat, DatapathError> {
        let map = self
            .ebpf
            .map(name)
            .ok_or(DatapathError::MissingMap { name })?;
        let stats: PerCpuArray<&MapData, Stat> =
            PerCpuArray::try_from(map).map_err(map_err(name, "open"))?;
        let per_cpu = stats.get(&slot, 0).map_err(map_err(name, "lookup"))?;
        Ok(super::sum_cpus(&per_cpu))
    }

    /// Packets and bytes DNATed for each programmed frontend since it was programmed.
    pub fn frontend_stats(&self) -> Result<BTreeMap<FrontendId, Stat>, DatapathError> {
        self.frontend_stats_after(None, usize::MAX)
    }

    /// [`Self::frontend_stats`] for at most `limit` frontends, in order, after `after` (one map
    /// read each: a caller can spread a large table over time).
    pub fn frontend_stats_after(
        &self,
        after: Option<FrontendId>,
        limit: usize,
    ) -> Result<BTreeMap<FrontendId, Stat>, DatapathError> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = BTreeMap::new();
        for (id, p) in self
            .slots
            .programmed
            .range((lower, Bound::Unbounded))
            .take(limit)
        {
            out.insert(*id, self.stat(MAP_FRONTEND_STATS, p.slot)?);
        }
        Ok(out)
    }

    /// Packets and bytes DNATed to each endpoint of each programmed frontend since it joined.
    pub fn backend_stats(&self) -> Result<BTreeMap<(FrontendId, Endpoint), Stat>, DatapathError> {
        let mut out = BTreeMap::new();
        for (id, p) in &self.slots.programmed {
            let map = backend_stats_map(Fam::of(id.vip));
            for (endpoint, slot) in &p.backends {
                out.insert((*id, *endpoint), self.stat(map, *slot)?);
            }
        }
        Ok(out)
    }
}
