//! The bpffs directory l3lb pins into: its maps (by name) and one bpf_link per program and
//! uplink. Pins outlive the daemon, so packets keep being forwarded while it is down or
//! restarting, and the next start reuses them.
use std::{
    io,
    path::{Path, PathBuf},
};

use aya::maps::{MapInfo, MapType};
use l3lb_common::neigh::{MAP_NEIGH_V4, MAP_NEIGH_V6, MAX_NEIGH, NeighKeyV4, NeighKeyV6, NeighMac};
use l3lb_common::{
    Affinity, AffinityKeyV4, AffinityKeyV6, BackendV4, BackendV6, COUNTER_SLOTS, CachedPinV4,
    CachedPinV6, Config, ConnKeyV4, ConnKeyV6, FLOW_CACHE_SLOTS, FlowKeyV4, FlowKeyV6, FlowNatV4,
    FlowNatV6, Frontend, FrontendKeyV4, FrontendKeyV6, MAP_AFFINITY_V4, MAP_AFFINITY_V6,
    MAP_BACKEND_STATS_V4, MAP_BACKEND_STATS_V6, MAP_BACKENDS_V4, MAP_BACKENDS_V6, MAP_CONFIG,
    MAP_CONNS_V4, MAP_CONNS_V6, MAP_FLOW_CACHE_V4, MAP_FLOW_CACHE_V6, MAP_FLOWS_V4, MAP_FLOWS_V6,
    MAP_FRONTEND_STATS, MAP_FRONTENDS_V4, MAP_FRONTENDS_V6, MAP_NEW_CONNS_V4, MAP_NEW_CONNS_V6,
    MAP_NEW_FLOWS_V4, MAP_NEW_FLOWS_V6, MAP_REDIRECT, MAP_STATS, MAP_VIPS_V4, MAP_VIPS_V6,
    MAX_AFFINITY, MAX_BACKEND_SLOTS, MAX_FLOWS, MAX_FRONTENDS, MAX_NEW_FLOWS, MAX_REDIRECT,
    MAX_VIPS, Pin, Stat, VipKeyV4, VipKeyV6, VipV4,
};
use tracing::{info, warn};

use super::DatapathError;

/// Where `l3lb run` pins unless told otherwise.
pub const DEFAULT_BPFFS_DIR: &str = "/sys/fs/bpf/l3lb";

/// `statfs(2)` f_type of a BPF file system.
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

/// Pin-name prefixes of the program links, followed by the uplink's name.
const XDP_LINK_PREFIX: &str = "link_xdp_";
const TC_LINK_PREFIX: &str = "link_tc_egress_";

/// A map's shape as the embedded object declares it; a pinned map of another shape was left by an
/// incompatible version and must not be reused.
struct Shape {
    name: &'static str,
    map_type: MapType,
    key_size: usize,
    value_size: usize,
    max_entries: u32,
}

const fn shape<K, V>(name: &'static str, map_type: MapType, max_entries: u32) -> Shape {
    Shape {
        name,
        map_type,
        key_size: size_of::<K>(),
        value_size: size_of::<V>(),
        max_entries,
    }
}

const SHAPES: [Shape; 26] = [
    shape::<FrontendKeyV4, Frontend>(MAP_FRONTENDS_V4, MapType::Hash, MAX_FRONTENDS),
    shape::<u32, BackendV4>(MAP_BACKENDS_V4, MapType::Array, MAX_BACKEND_SLOTS),
    shape::<ConnKeyV4, Pin>(MAP_CONNS_V4, MapType::LruHash, MAX_FLOWS),
    shape::<u32, CachedPinV4>(MAP_FLOW_CACHE_V4, MapType::Array, FLOW_CACHE_SLOTS),
    shape::<AffinityKeyV4, Affinity>(MAP_AFFINITY_V4, MapType::LruHash, MAX_AFFINITY),
    shape::<FlowKeyV4, FlowNatV4>(MAP_FLOWS_V4, MapType::LruHash, MAX_FLOWS),
    shape::<u32, Stat>(MAP_STATS, MapType::PerCpuArray, COUNTER_SLOTS),
    shape::<VipKeyV4, VipV4>(MAP_VIPS_V4, MapType::Hash, MAX_VIPS),
    shape::<u32, Stat>(MAP_FRONTEND_STATS, MapType::PerCpuArray, MAX_FRONTENDS),
    shape::<u32, Stat>(
        MAP_BACKEND_STATS_V4,
        MapType::PerCpuArray,
        MAX_BACKEND_SLOTS,
    ),
    shape::<u32, Config>(MAP_CONFIG, MapType::Array, 1),
    shape::<FrontendKeyV6, Frontend>(MAP_FRONTENDS_V6, MapType::Hash, MAX_FRONTENDS),
    shape::<u32, BackendV6>(MAP_BACKENDS_V6, MapType::Array, MAX_BACKEND_SLOTS),
    shape::<ConnKeyV6, Pin>(MAP_CONNS_V6, MapType::LruHash, MAX_FLOWS),
    shape::<u32, CachedPinV6>(MAP_FLOW_CACHE_V6, MapType::Array, FLOW_CACHE_SLOTS),
    shape::<AffinityKeyV6, Affinity>(MAP_AFFINITY_V6, MapType::LruHash, MAX_AFFINITY),
    shape::<FlowKeyV6, FlowNatV6>(MAP_FLOWS_V6, MapType::LruHash, MAX_FLOWS),
    shape::<VipKeyV6, VipV4>(MAP_VIPS_V6, MapType::Hash, MAX_VIPS),
    shape::<u32, Stat>(
        MAP_BACKEND_STATS_V6,
        MapType::PerCpuArray,
        MAX_BACKEND_SLOTS,
    ),
    // Value: struct bpf_devmap_val (ifindex, program).
    shape::<u32, u64>(MAP_REDIRECT, MapType::DevMapHash, MAX_REDIRECT),
    shape::<ConnKeyV4, Pin>(MAP_NEW_CONNS_V4, MapType::LruHash, MAX_NEW_FLOWS),
    shape::<FlowKeyV4, FlowNatV4>(MAP_NEW_FLOWS_V4, MapType::LruHash, MAX_NEW_FLOWS),
    shape::<ConnKeyV6, Pin>(MAP_NEW_CONNS_V6, MapType::LruHash, MAX_NEW_FLOWS),
    shape::<FlowKeyV6, FlowNatV6>(MAP_NEW_FLOWS_V6, MapType::LruHash, MAX_NEW_FLOWS),
    // L2 mode's ARP/NDP responder entries.
    shape::<NeighKeyV4, NeighMac>(MAP_NEIGH_V4, MapType::Hash, MAX_NEIGH),
    shape::<NeighKeyV6, NeighMac>(MAP_NEIGH_V6, MapType::Hash, MAX_NEIGH),
];

/// Names of the maps l3lb pins.
pub fn map_names() -> impl Iterator<Item = &'static str> {
    SHAPES.iter().map(|s| s.name)
}

pub(super) fn xdp_link(dir: &Path, uplink: &str) -> PathBuf {
    dir.join(format!("{XDP_LINK_PREFIX}{uplink}"))
}

pub(super) fn tc_link(dir: &Path, uplink: &str) -> PathBuf {
    dir.join(format!("{TC_LINK_PREFIX}{uplink}"))
}

/// Makes sure `dir` exists on a bpffs: creates it, and mounts a bpffs on it if it is a plain
/// directory (pins elsewhere are impossible).
pub(super) fn prepare_dir(dir: &Path) -> Result<(), DatapathError> {
    let io_err = |source| DatapathError::BpffsDir {
        dir: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io_err)?;
    if is_bpffs(dir).map_err(io_err)? {
        return Ok(());
    }
    mount_bpffs(dir).map_err(|source| DatapathError::BpffsMount {
        dir: dir.to_owned(),
        source,
    })?;
    warn!(dir = %dir.display(), "not on a bpffs: mounted one there; pins live as long as this mount \
        (mount the host's /sys/fs/bpf to keep them across restarts)");
    Ok(())
}

fn is_bpffs(dir: &Path) -> io::Result<bool> {
    let fs = nix::sys::statfs::statfs(dir)?;
    Ok(fs.filesystem_type().0 as u32 == BPF_FS_MAGIC)
}

fn mount_bpffs(dir: &Path) -> io::Result<()> {
    use nix::mount::{MsFlags, mount};
    mount(
        Some("bpf"),
        dir,
        Some("bpf"),
        MsFlags::empty(),
        Some("mode=0700"),
    )?;
    Ok(())
}

/// Unpins maps in `dir` whose shape differs from the embedded object's (a layout from another
/// version), so the loader creates fresh ones instead of failing or misreading them. Returns the
/// names of the pinned maps that will be reused.
pub(super) fn drop_stale_maps(dir: &Path) -> Result<Vec<&'static str>, DatapathError> {
    let mut reused = Vec::new();
    for shape in &SHAPES {
        let path = dir.join(shape.name);
        if !path.exists() {
            continue;
        }
        let seen = MapInfo::from_pin(&path).map(|info| {
            (
                info.map_type().ok(),
                info.key_size() as usize,
                info.value_size() as usize,
                info.max_entries(),
            )
        });
        let want = (
            Some(shape.map_type),
            shape.key_size,
            shape.value_size,
            shape.max_entries,
        );
        match seen {
            Ok(seen) if seen == want => reused.push(shape.name),
            other => {
                warn!(map = shape.name, path = %path.display(), seen = ?other.ok(), want = ?want,
                    "pinned map has another layout (older version?); recreating it empty");
                unpin(&path)?;
            }
        }
    }
    Ok(reused)
}

/// Removes a pin; an absent one is fine. Removing a link's last pin detaches it.
pub(super) fn unpin(path: &Path) -> Result<bool, DatapathError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(DatapathError::Unpin {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Pins of program links in `dir`, for any uplink.
fn link_pins(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(XDP_LINK_PREFIX) || name.starts_with(TC_LINK_PREFIX)
        })
        .map(|e| e.path())
        .collect()
}

/// Unpins (so detaches) the links of uplinks that are no longer configured.
pub(super) fn unpin_other_links(dir: &Path, uplinks: &[String]) -> Result<(), DatapathError> {
    let ours: Vec<PathBuf> = uplinks
        .iter()
        .flat_map(|u| [xdp_link(dir, u), tc_link(dir, u)])
        .collect();
    for path in link_pins(dir).into_iter().filter(|p| !ours.contains(p)) {
        if unpin(&path)? {
            info!(pin = %path.display(), "detached from an uplink no longer configured");
        }
    }
    Ok(())
}

/// What [`cleanup`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleanup {
    /// Pins removed (links first, then maps).
    pub removed: Vec<PathBuf>,
    /// Whether the (then empty) directory itself was removed.
    pub dir_removed: bool,
}

/// Uninstall: unpins the program links of `uplinks` (which detaches them from the uplinks unless
/// a running daemon still holds them) and any other l3lb link in `dir`, then the maps, then the
/// directory if nothing else is in it. Absent pins are fine.
pub fn cleanup(dir: &Path, uplinks: &[String]) -> Result<Cleanup, DatapathError> {
    let mut out = Cleanup::default();
    let mut links: Vec<PathBuf> = uplinks
        .iter()
        .flat_map(|u| [xdp_link(dir, u), tc_link(dir, u)])
        .collect();
    // Links of uplinks no longer configured are ours too.
    for path in link_pins(dir) {
        if !links.contains(&path) {
            links.push(path);
        }
    }
    let maps = map_names().map(|name| dir.join(name));
    for path in links.into_iter().chain(maps) {
        if unpin(&path)? {
            info!(pin = %path.display(), "unpinned");
            out.removed.push(path);
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => out.dir_removed = true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            warn!(dir = %dir.display(), %error, "directory left in place (not empty?)")
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cleanup removes l3lb's pins (any uplink's links, the maps) and nothing else; it keeps a
    /// directory that still holds something and is fine with absent pins.
    #[test]
    fn cleanup_removes_only_our_pins() {
        let dir = std::env::temp_dir().join(format!("l3lb-pin-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ours = [
            "link_xdp_eth0",
            "link_tc_egress_eth0",
            "link_xdp_old0",
            MAP_STATS,
        ];
        for name in ours.iter().chain(&["someone-else"]) {
            std::fs::write(dir.join(name), b"").expect("write");
        }
        let done = cleanup(&dir, &["eth0".to_owned(), "eth1".to_owned()]).expect("cleanup");
        let mut removed: Vec<_> = done.removed.iter().filter_map(|p| p.file_name()).collect();
        removed.sort();
        let mut want: Vec<_> = ours.iter().map(std::ffi::OsStr::new).collect();
        want.sort();
        assert_eq!(removed, want);
        assert!(!done.dir_removed);
        assert!(dir.join("someone-else").exists());
        std::fs::remove_file(dir.join("someone-else")).expect("remove");
        let again = cleanup(&dir, &[]).expect("second cleanup");
        assert_eq!(
            again,
            Cleanup {
                removed: vec![],
                dir_removed: true
            }
        );
        assert!(!dir.exists());
    }
}
