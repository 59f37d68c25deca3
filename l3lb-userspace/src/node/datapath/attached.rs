//! `l3lb stats`: the datapath counters of the l3lb programs attached to an uplink, read from the
//! kernel, so an operator sees which path packets took without asking the daemon.
use std::collections::BTreeMap;

use aya::{
    Pod,
    maps::{HashMap, Map, MapData, MapError, MapInfo, PerCpuArray},
    programs::{ProgramError, loaded_programs},
};
use l3lb_common::{
    Counter, Frontend, FrontendKeyV4, FrontendKeyV6, MAP_FRONTEND_STATS, MAP_FRONTENDS_V4,
    MAP_FRONTENDS_V6, MAP_STATS, PROG_XDP_INGRESS, Stat,
};

use crate::{
    core::model::FrontendId,
    node::datapath::keys::{id_of, id_of_v6},
    node::datapath::{DatapathError, UplinkFault, attached_xdp_id, sum_counters, sum_cpus},
};

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
    #[error("the l3lb program on {uplink} has no {map} map")]
    NoMap { uplink: String, map: &'static str },
    #[error("opening map {id}: {source}")]
    Map {
        id: u32,
        #[source]
        source: MapError,
    },
    #[error(transparent)]
    Datapath(#[from] DatapathError),
}

/// A map of the attached program: its (kernel-truncated) name, id and key size.
struct Attached {
    name: String,
    id: u32,
    key_size: u32,
}

/// The maps of the l3lb XDP program attached to `uplink` in this network namespace.
async fn attached_maps(uplink: &str) -> Result<Vec<Attached>, StatsError> {
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
    let mut out = Vec::new();
    for id in map_ids {
        let info = MapInfo::from_id(id).map_err(|source| StatsError::Map { id, source })?;
        out.push(Attached {
            name: info.name_as_str().unwrap_or_default().to_owned(),
            id,
            key_size: info.key_size(),
        });
    }
    Ok(out)
}

/// The map `name` with keys of `K` among `maps` (of the program on `uplink`), opened. The kernel
/// keeps the first 15 bytes of a map's name, so L3LB_FRONTENDS_V4 and _V6 differ only by key.
fn open<K>(
    maps: &[Attached],
    uplink: &str,
    name: &'static str,
    as_map: fn(MapData) -> Map,
) -> Result<(u32, Map), StatsError> {
    let short = &name[..name.len().min(KERNEL_NAME_LEN)];
    let id = maps
        .iter()
        .find(|m| m.name == short && m.key_size as usize == size_of::<K>())
        .ok_or_else(|| StatsError::NoMap {
            uplink: uplink.to_owned(),
            map: name,
        })?
        .id;
    let data = MapData::from_id(id).map_err(|source| StatsError::Map { id, source })?;
    Ok((id, as_map(data)))
}

/// How much of a map's name the kernel keeps (BPF_OBJ_NAME_LEN less the NUL).
const KERNEL_NAME_LEN: usize = 15;

/// Counters of the l3lb XDP program attached to `uplink` in this network namespace.
pub async fn attached_counters(uplink: &str) -> Result<BTreeMap<Counter, Stat>, StatsError> {
    let maps = attached_maps(uplink).await?;
    let (id, map) = open::<u32>(&maps, uplink, MAP_STATS, Map::PerCpuArray)?;
    let stats: PerCpuArray<&MapData, Stat> =
        PerCpuArray::try_from(&map).map_err(|source| StatsError::Map { id, source })?;
    Ok(sum_counters(&stats)?)
}

/// Packets and bytes DNATed per frontend by the l3lb XDP program attached to `uplink`.
pub async fn attached_frontend_stats(
    uplink: &str,
) -> Result<BTreeMap<FrontendId, Stat>, StatsError> {
    let maps = attached_maps(uplink).await?;
    let (id, map) = open::<u32>(&maps, uplink, MAP_FRONTEND_STATS, Map::PerCpuArray)?;
    let stats: PerCpuArray<&MapData, Stat> =
        PerCpuArray::try_from(&map).map_err(|source| StatsError::Map { id, source })?;
    let mut out = BTreeMap::new();
    let (id4, v4) = open::<FrontendKeyV4>(&maps, uplink, MAP_FRONTENDS_V4, Map::HashMap)?;
    frontends_of(id4, &v4, id_of, &stats, &mut out)?;
    let (id6, v6) = open::<FrontendKeyV6>(&maps, uplink, MAP_FRONTENDS_V6, Map::HashMap)?;
    frontends_of(id6, &v6, id_of_v6, &stats, &mut out)?;
    Ok(out)
}

/// Adds the counters of every frontend in `map` (map id `id`, keys `K`) to `out`. One entry at a
/// time: each value carries its 16 KB Maglev table.
fn frontends_of<K: Pod>(
    id: u32,
    map: &Map,
    id_of: fn(&K) -> Option<FrontendId>,
    stats: &PerCpuArray<&MapData, Stat>,
    out: &mut BTreeMap<FrontendId, Stat>,
) -> Result<(), StatsError> {
    let err = |source| StatsError::Map { id, source };
    let frontends: HashMap<&MapData, K, Frontend> = HashMap::try_from(map).map_err(err)?;
    for entry in frontends.iter() {
        let (key, frontend) = entry.map_err(err)?;
        let Some(fid) = id_of(&key) else { continue };
        let per_cpu = stats.get(&frontend.id, 0).map_err(err)?;
        out.insert(fid, sum_cpus(&per_cpu));
    }
    Ok(())
}
