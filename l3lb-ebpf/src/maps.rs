//! The maps shared with the daemon (names, key and value types from `l3lb-common`), and the
//! lookups the programs make. Map values are copied out right away: userspace may replace a
//! frontend while a packet is being handled.
use aya_ebpf::{
    btf_maps::{HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use l3lb_common::{
    BackendV4, COUNTER_SLOTS, FlowKeyV4, FlowNatV4, FrontendKeyV4, FrontendV4, MAX_BACKENDS,
    MAX_FLOWS, MAX_FRONTENDS, MAX_VIPS, Stat, VipKeyV4, VipV4, flow_slot,
};

#[btf_map]
pub static L3LB_FRONTENDS_V4: HashMap<FrontendKeyV4, FrontendV4, { MAX_FRONTENDS as usize }> =
    HashMap::new();

#[btf_map]
pub static L3LB_FLOWS_V4: LruHashMap<FlowKeyV4, FlowNatV4, { MAX_FLOWS as usize }> =
    LruHashMap::new();

#[btf_map]
pub static L3LB_VIPS_V4: HashMap<VipKeyV4, VipV4, { MAX_VIPS as usize }> = HashMap::new();

#[btf_map]
pub static L3LB_STATS: PerCpuArray<Stat, { COUNTER_SLOTS as usize }> = PerCpuArray::new();

const _: () = assert!(MAX_BACKENDS.is_power_of_two());

/// What the frontend map says about a VIP:port/proto.
pub enum Pick {
    /// Not a frontend.
    NotFound,
    /// A frontend without a local endpoint.
    NoBackend,
    /// The endpoint this flow goes to.
    Backend(BackendV4),
}

/// Whether `addr_be` is a VIP with at least one frontend.
#[inline(always)]
pub fn is_vip(addr_be: u32) -> bool {
    L3LB_VIPS_V4.get_ptr(VipKeyV4 { vip_be: addr_be }).is_some()
}

/// Picks the endpoint for the flow from `saddr_be:sport_be` to the frontend `key`.
#[inline(always)]
pub fn pick_backend(key: &FrontendKeyV4, saddr_be: u32, sport_be: u16) -> Pick {
    let Some(frontend) = L3LB_FRONTENDS_V4.get_ptr(key) else {
        return Pick::NotFound;
    };
    // SAFETY: the pointer comes from a successful lookup and stays valid for this program run.
    let count = unsafe { (*frontend).count };
    let count = count.min(MAX_BACKENDS as u32);
    if count == 0 {
        return Pick::NoBackend;
    }
    let slot = flow_slot(saddr_be, sport_be, count) as usize & (MAX_BACKENDS - 1);
    // SAFETY: as above; `slot < MAX_BACKENDS` by the mask.
    let backend = unsafe { (*frontend).backends.get(slot).copied() };
    match backend {
        Some(backend) => Pick::Backend(backend),
        None => Pick::NoBackend,
    }
}

/// Records a translated flow for the reverse path. Returns false if the map refused it.
#[inline(always)]
pub fn record_flow(key: &FlowKeyV4, nat: &FlowNatV4) -> bool {
    if let Some(current) = L3LB_FLOWS_V4.get_ptr(key) {
        // SAFETY: pointer from a successful lookup, read once.
        let current = unsafe { *current };
        if current == *nat {
            return true;
        }
    }
    L3LB_FLOWS_V4.insert(key, nat, 0).is_ok()
}

/// The VIP:port a reply matching `key` must carry as its source.
#[inline(always)]
pub fn flow(key: &FlowKeyV4) -> Option<FlowNatV4> {
    let nat = L3LB_FLOWS_V4.get_ptr(key)?;
    // SAFETY: pointer from a successful lookup, read once.
    Some(unsafe { *nat })
}
