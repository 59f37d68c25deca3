//! The maps shared with the daemon (names, key and value types from `l3lb-common`). Values read
//! by pointer are copied out right away where the daemon may replace them mid-packet; the big
//! frontend value is only ever read through its pointer (one map update replaces it whole, and
//! a reader keeps the version it looked up).
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use l3lb_common::{
    Affinity, AffinityKeyV4, BackendV4, COUNTER_SLOTS, CachedPinV4, Config, ConnKeyV4,
    FLOW_CACHE_SLOTS, FlowKeyV4, FlowNatV4, Frontend, FrontendKeyV4, MAX_AFFINITY,
    MAX_BACKEND_SLOTS, MAX_FLOWS, MAX_FRONTENDS, MAX_VIPS, Pin, Stat, VipKeyV4, VipV4,
};

const NO_PREALLOC: usize = BPF_F_NO_PREALLOC as usize;

/// Frontends are large (the Maglev table): allocated on insert, not for the whole capacity.
#[btf_map]
pub static L3LB_FRONTENDS_V4: HashMap<
    FrontendKeyV4,
    Frontend,
    { MAX_FRONTENDS as usize },
    NO_PREALLOC,
> = HashMap::new();

#[btf_map]
pub static L3LB_BACKENDS_V4: Array<BackendV4, { MAX_BACKEND_SLOTS as usize }> = Array::new();

#[btf_map]
pub static L3LB_CONNS_V4: LruHashMap<ConnKeyV4, Pin, { MAX_FLOWS as usize }> = LruHashMap::new();

#[btf_map]
pub static L3LB_FLOW_CACHE_V4: Array<CachedPinV4, { FLOW_CACHE_SLOTS as usize }> = Array::new();

#[btf_map]
pub static L3LB_AFFINITY_V4: LruHashMap<AffinityKeyV4, Affinity, { MAX_AFFINITY as usize }> =
    LruHashMap::new();

#[btf_map]
pub static L3LB_FLOWS_V4: LruHashMap<FlowKeyV4, FlowNatV4, { MAX_FLOWS as usize }> =
    LruHashMap::new();

#[btf_map]
pub static L3LB_VIPS_V4: HashMap<VipKeyV4, VipV4, { MAX_VIPS as usize }> = HashMap::new();

#[btf_map]
pub static L3LB_STATS: PerCpuArray<Stat, { COUNTER_SLOTS as usize }> = PerCpuArray::new();

#[btf_map]
pub static L3LB_FRONTEND_STATS: PerCpuArray<Stat, { MAX_FRONTENDS as usize }> = PerCpuArray::new();

#[btf_map]
pub static L3LB_BACKEND_STATS_V4: PerCpuArray<Stat, { MAX_BACKEND_SLOTS as usize }> =
    PerCpuArray::new();

#[btf_map]
pub static L3LB_CONFIG: Array<Config, 1> = Array::new();

/// Whether `addr_be` is a VIP with at least one frontend.
#[inline(always)]
pub fn is_vip_v4(addr_be: u32) -> bool {
    L3LB_VIPS_V4.get_ptr(VipKeyV4 { vip_be: addr_be }).is_some()
}

/// Whether `addr_be` lies in one of the VIP prefixes (or no IPv4 prefix is configured).
#[inline(always)]
pub fn in_prefixes_v4(addr_be: u32) -> bool {
    let Some(config) = L3LB_CONFIG.get_ptr(0) else {
        return true;
    };
    // SAFETY: an array slot: valid for the program run; the daemon writes it once at start.
    let config = unsafe { &*config };
    let count = config.v4_count as usize;
    if count == 0 {
        return true;
    }
    let mut i = 0;
    while i < config.v4.len() {
        if i >= count {
            break;
        }
        let [net, mask] = config.v4[i];
        if addr_be & mask == net {
            return true;
        }
        i += 1;
    }
    false
}

/// The backend a pinned flow goes to, unless its slot was freed (or reused) since.
#[inline(always)]
pub fn backend_v4(pin: &Pin) -> Option<BackendV4> {
    let backend = L3LB_BACKENDS_V4.get_ptr(pin.backend)?;
    // SAFETY: an array slot, valid for the program run; copied out at once.
    let backend = unsafe { *backend };
    (backend.state != l3lb_common::BACKEND_FREE && backend.gen_ == pin.gen_).then_some(backend)
}
