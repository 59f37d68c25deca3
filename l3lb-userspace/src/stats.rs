//! `l3lb stats`: the datapath counters of the l3lb programs attached to an uplink, read from the
//! kernel, so an operator sees which path packets took without asking the daemon.
use std::collections::BTreeMap;

use aya::{
    maps::{Map, MapData, MapError, MapInfo, PerCpuArray},
    programs::{ProgramError, loaded_programs},
};
use l3lb_common::{Counter, MAP_STATS, PROG_XDP_INGRESS, Stat};

use crate::datapath::{DatapathError, UplinkFault, attached_xdp_id, sum_counters};

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(transparent)]
    Query(#[from] UplinkFault),
    #[error("no XDP program is attached to {0}: is `l3lb run --uplink {0}` running?")]
    NotAttached(String),
    #[error("the XDP program on {uplink} is {name:?}, not l3lb's")]
    NotL3lb { uplink: String, name: String },
    #[error("reading program {id}: {source}")]
    Program {
        id: u32,
        #[source]
        source: ProgramError,
    },
    #[error("the l3lb program on {0} has no {MAP_STATS} map")]
    NoStatsMap(String),
    #[error("opening map {id}: {source}")]
    Map {
        id: u32,
        #[source]
        source: MapError,
    },
    #[error(transparent)]
    Datapath(#[from] DatapathError),
}

/// Counters of the l3lb XDP program attached to `uplink` in this network namespace.
pub async fn attached_counters(uplink: &str) -> Result<BTreeMap<Counter, Stat>, StatsError> {
    let prog_id = attached_xdp_id(uplink)
        .await?
        .ok_or_else(|| StatsError::NotAttached(uplink.to_owned()))?;
    let info = loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == prog_id)
        .ok_or_else(|| StatsError::NotAttached(uplink.to_owned()))?;
    // The kernel keeps the first 15 bytes of a program's name.
    let name = info.name_as_str().unwrap_or_default().to_owned();
    if name.is_empty() || !PROG_XDP_INGRESS.starts_with(&name) {
        return Err(StatsError::NotL3lb {
            uplink: uplink.to_owned(),
            name,
        });
    }
    let map_ids = info
        .map_ids()
        .map_err(|source| StatsError::Program {
            id: prog_id,
            source,
        })?
        .unwrap_or_default();
    for id in map_ids {
        let info = MapInfo::from_id(id).map_err(|source| StatsError::Map { id, source })?;
        if info.name_as_str() != Some(MAP_STATS) {
            continue;
        }
        let data = MapData::from_id(id).map_err(|source| StatsError::Map { id, source })?;
        let map = Map::PerCpuArray(data);
        let stats: PerCpuArray<&MapData, Stat> =
            PerCpuArray::try_from(&map).map_err(|source| StatsError::Map { id, source })?;
        return Ok(sum_counters(&stats)?);
    }
    Err(StatsError::NoStatsMap(uplink.to_owned()))
}

/// A table for people: one line per counter.
pub fn render(counters: &BTreeMap<Counter, Stat>) -> String {
    let mut out = format!("{:<24} {:>14} {:>16}\n", "counter", "packets", "bytes");
    for (counter, stat) in counters {
        out += &format!(
            "{:<24} {:>14} {:>16}\n",
            counter.name(),
            stat.packets,
            stat.bytes
        );
    }
    out
}
