//! The kernel datapath: the embedded eBPF object, its programs' attachment to the uplinks, and
//! typed access to its maps (frontends, flows, counters). [`keys`] converts between model types
//! and the `#[repr(C)]` map keys and is how the executor and the observer see the maps;
//! [`attached`] reads the programs attached to an uplink from outside the daemon (`l3lb stats`).
//! [`bpf_log`] forwards the programs' own log records (rare events) to `tracing` when asked.
pub mod attached;
mod bpf_log;
mod config;
mod error;
mod family;
mod flows;
mod frontends;
mod health;
mod ids;
pub mod keys;
mod links;
pub mod neigh;
mod pin;
pub mod redirect;
mod slots;
mod stats;
mod tcx;
mod testrun;
mod vips;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, MapError, PerCpuArray},
    programs::{SchedClassifier, TcAttachType, Xdp, XdpMode},
};
pub use bpf_log::{LogError, LogForwarder};
pub use error::DatapathError;
pub use health::{UplinkFault, attached_xdp_id};
use l3lb_common::{COUNTER_SLOTS, Counter, MAP_STATS, PROG_TC_EGRESS, PROG_XDP_INGRESS, Stat};
pub use links::Attachment;
pub use pin::{Cleanup, DEFAULT_BPFFS_DIR, cleanup, map_names as pinned_map_names};
pub use testrun::TestRunOutput;
use tracing::info;

/// The eBPF object built by aya-build (see `build.rs`), embedded in the daemon.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/l3lb"));

/// The loaded programs and maps. Unpinned ([`Datapath::attach`]), dropping it detaches the
/// programs from every uplink; pinned ([`Datapath::attach_pinned`]), everything stays.
#[derive(Debug)]
pub struct Datapath {
    ebpf: Ebpf,
    uplinks: Vec<String>,
    pinned: Pinned,
    vip_refs: vips::VipRefs,
    slots: slots::Slots,
    /// The bpffs directory of a pinned datapath.
    dir: Option<PathBuf>,
    /// Whether the programs log rare events (`CONFIG_LOG`): set by [`Datapath::forward_log`],
    /// kept by every write of the configuration.
    logging: bool,
    /// L2 mode's takeover announcements; opened by [`Datapath::attach_pinned`] (the daemon's
    /// datapath), absent from datapaths loaded for tests or tools.
    packets: Option<crate::node::announce::PacketSocket>,
}

/// What a pinned load found in its bpffs directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// Maps reused from an earlier run (the rest were created and pinned).
    pub maps_reused: Vec<&'static str>,
    /// Per uplink: how the XDP and the TC program got there.
    pub uplinks: Vec<(String, Attachment, Attachment)>,
}

impl Datapath {
    /// Loads the embedded object, attaches XDP (native/driver mode) and TC egress to every uplink.
    pub fn attach(uplinks: &[String]) -> Result<Self, DatapathError> {
        let mut datapath = Self::load_detached()?;
        for uplink in uplinks {
            datapath.attach_uplink(uplink)?;
        }
        Ok(datapath)
    }

    /// Loads the object with its maps pinned in the bpffs directory `dir` (reusing maps pinned
    /// there by an earlier run, recreating ones of another layout), attaches XDP and TC egress to
    /// every uplink through pinned links (replacing the program in links pinned by an earlier
    /// run, atomically). Dropping it leaves programs, links and maps in place.
    pub fn attach_pinned(uplinks: &[String], dir: &Path) -> Result<Self, DatapathError> {
        let mut datapath = Self::load_pinned(dir)?;
        datapath.packets =
            Some(crate::node::announce::PacketSocket::open().map_err(DatapathError::PacketSocket)?);
        for uplink in uplinks {
            let xdp = links::xdp(xdp_mut(&mut datapath.ebpf)?, uplink, dir)?;
            let tc = links::tc_egress(tc_mut(&mut datapath.ebpf)?, uplink, dir)?;
            datapath.uplinks.push(uplink.clone());
            datapath.pinned.uplinks.push((uplink.clone(), xdp, tc));
        }
        pin::unpin_other_links(dir, uplinks)?;
        let p = &datapath.pinned;
        let replaced = p
            .uplinks
            .iter()
            .filter(|(_, x, t)| (*x, *t) == (Attachment::Replaced, Attachment::Replaced))
            .count();
        if !p.maps_reused.is_empty() || replaced > 0 {
            info!(dir = %dir.display(), maps = ?p.maps_reused, uplinks_replaced = replaced,
                "reused pinned datapath state");
        } else {
            info!(dir = %dir.display(), "pinned a fresh datapath");
        }
        Ok(datapath)
    }

    /// Loads the object and its programs with the maps pinned in `dir` (see
    /// [`Datapath::attach_pinned`]), without attaching anything.
    pub fn load_pinned(dir: &Path) -> Result<Self, DatapathError> {
        pin::prepare_dir(dir)?;
        let maps_reused = pin::drop_stale_maps(dir)?;
        let mut loader = EbpfLoader::new();
        for name in pin::map_names() {
            loader.map_pin_path(name, dir.join(name));
        }
        let mut datapath = Self::load_programs(loader.load(EBPF_OBJECT))?;
        // An earlier run's logging is not this one's (see `forward_log`).
        bpf_log::set_flag(&mut datapath.ebpf, false)?;
        datapath.pinned.maps_reused = maps_reused;
        datapath.dir = Some(dir.to_owned());
        // Before any program is attached: reused frontends (maybe from a version without a VIP
        // set) must find their VIPs there, or the new program would not translate for them.
        datapath.sync_vips()?;
        datapath.sync_slots()?;
        Ok(datapath)
    }

    /// What the pinned load found (empty for an unpinned datapath).
    pub fn pinned(&self) -> &Pinned {
        &self.pinned
    }

    /// Loads the object and its programs (through the verifier) without attaching them.
    pub fn load_detached() -> Result<Self, DatapathError> {
        Self::load_programs(Ebpf::load(EBPF_OBJECT))
    }

    fn load_programs(loaded: Result<Ebpf, aya::EbpfError>) -> Result<Self, DatapathError> {
        let mut ebpf = loaded.map_err(|source| DatapathError::Load {
            source: Box::new(source),
        })?;
        xdp_mut(&mut ebpf)?
            .load()
            .map_err(|source| DatapathError::ProgramLoad {
                name: PROG_XDP_INGRESS,
                source,
            })?;
        tc_mut(&mut ebpf)?
            .load()
            .map_err(|source| DatapathError::ProgramLoad {
                name: PROG_TC_EGRESS,
                source,
            })?;
        Ok(Self {
            ebpf,
            uplinks: Vec::new(),
            pinned: Pinned::default(),
            vip_refs: vips::VipRefs::default(),
            slots: slots::Slots::default(),
            dir: None,
            logging: false,
            packets: None,
        })
    }

    fn attach_uplink(&mut self, uplink: &str) -> Result<(), DatapathError> {
        xdp_mut(&mut self.ebpf)?
            .attach(uplink, XdpMode::Driver)
            .map_err(|source| DatapathError::XdpAttach {
                uplink: uplink.to_owned(),
                source,
            })?;
        tc_mut(&mut self.ebpf)?
            .attach(uplink, TcAttachType::Egress)
            .map_err(|source| DatapathError::TcAttach {
                uplink: uplink.to_owned(),
                source,
            })?;
        self.uplinks.push(uplink.to_owned());
        Ok(())
    }

    /// Names of the TC (tcx) egress programs attached to `uplink`, in order: a diagnostic.
    pub fn tc_egress_programs(uplink: &str) -> Result<Vec<String>, DatapathError> {
        let (_revision, programs) = SchedClassifier::query_tcx(uplink, TcAttachType::Egress)
            .map_err(|source| DatapathError::TcQuery {
                uplink: uplink.to_owned(),
                source,
            })?;
        Ok(programs
            .iter()
            .map(|p| String::from_utf8_lossy(p.name()).into_owned())
            .collect())
    }

    /// The uplinks the programs are attached to.
    pub fn uplinks(&self) -> &[String] {
        &self.uplinks
    }

    /// Every counter, summed over CPUs.
    pub fn counters(&self) -> Result<BTreeMap<Counter, Stat>, DatapathError> {
        let map = self
            .ebpf
            .map(MAP_STATS)
            .ok_or(DatapathError::MissingMap { name: MAP_STATS })?;
        let stats: PerCpuArray<&MapData, Stat> =
            PerCpuArray::try_from(map).map_err(map_err(MAP_STATS, "open"))?;
        sum_counters(&stats)
    }

    fn hash<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<HashMap<&MapData, K, V>, DatapathError> {
        let map = self
            .ebpf
            .map(name)
            .ok_or(DatapathError::MissingMap { name })?;
        HashMap::try_from(map).map_err(map_err(name, "open"))
    }

    fn hash_mut<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, DatapathError> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DatapathError::MissingMap { name })?;
        HashMap::try_from(map).map_err(map_err(name, "open"))
    }
}

fn xdp_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, DatapathError> {
    let name = PROG_XDP_INGRESS;
    let program = ebpf
        .program_mut(name)
        .ok_or(DatapathError::MissingProgram { name })?;
    program
        .try_into()
        .map_err(|source| DatapathError::ProgramType { name, source })
}

fn tc_mut(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, DatapathError> {
    let name = PROG_TC_EGRESS;
    let program = ebpf
        .program_mut(name)
        .ok_or(DatapathError::MissingProgram { name })?;
    program
        .try_into()
        .map_err(|source| DatapathError::ProgramType { name, source })
}

/// Every counter of a stats map, summed over CPUs.
pub fn sum_counters<T: std::borrow::Borrow<MapData>>(
    stats: &PerCpuArray<T, Stat>,
) -> Result<BTreeMap<Counter, Stat>, DatapathError> {
    let mut out = BTreeMap::new();
    for counter in Counter::ALL {
        debug_assert!((counter as u32) < COUNTER_SLOTS);
        let per_cpu = stats
            .get(&(counter as u32), 0)
            .map_err(map_err(MAP_STATS, "lookup"))?;
        out.insert(counter, sum_cpus(&per_cpu));
    }
    Ok(out)
}

/// One counter's per-CPU values, summed.
pub fn sum_cpus(per_cpu: &[Stat]) -> Stat {
    per_cpu.iter().fold(Stat::default(), |a, s| Stat {
        packets: a.packets + s.packets,
        bytes: a.bytes + s.bytes,
    })
}

fn remove_absent_ok<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<&mut MapData, K, V>,
    key: &K,
) -> Result<(), MapError> {
    match map.remove(key) {
        Err(MapError::SyscallError(err)) if err.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(())
        }
        Err(MapError::KeyNotFound | MapError::ElementNotFound) => Ok(()),
        other => other,
    }
}

fn map_err(name: &'static str, op: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, op, source }
}
