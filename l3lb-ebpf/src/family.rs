//! What differs between IPv4 and IPv6 for backend choice: the maps and their key types. The
//! choice itself ([`crate::lb`]) is written once, for any [`Family`].
use aya_ebpf::btf_maps::{Array, HashMap, LruHashMap, PerCpuArray};
use l3lb_common::{
    Affinity, AffinityKeyV4, AffinityKeyV6, BACKEND_FREE, BackendV4, BackendV6, CachedPinV4,
    CachedPinV6, ConnKeyV4, ConnKeyV6, FlowKeyV4, FlowKeyV6, FlowNatV4, FlowNatV6, Frontend,
    FrontendKeyV4, FrontendKeyV6, Ip6, Pin, Stat,
    hash::{
        cache_hash_v4, cache_hash_v6, client_hash_v4, client_hash_v6, flow_hash_v4, flow_hash_v6,
    },
};

use crate::{
    maps::{self, AFFINITY, CACHE, FLOWS, FRONTENDS, NEW_FLOWS, NO_PREALLOC, SLOTS},
    parse::Tuple,
    raw::{self, Plain},
};

/// A backend slot's fields the choice reads.
pub trait BackendSlot: Plain {
    fn state(&self) -> u8;
    fn generation(&self) -> u32;
    fn frontend(&self) -> u32;
}

/// A flow-cache slot.
pub trait Cached<K>: Plain {
    fn new(key: K, pin: Pin, check: u32) -> Self;
    fn parts(&self) -> (&K, &Pin, u32);
}

pub trait Family {
    type Addr: Copy;
    type Conn: Copy + PartialEq + 'static;
    type Cache: Cached<Self::Conn> + 'static;
    type Backend: BackendSlot + 'static;
    type FrontendKey: 'static;
    type AffinityKey: 'static;
    type Reply: 'static;
    type Nat: 'static;

    fn frontends() -> &'static HashMap<Self::FrontendKey, Frontend, FRONTENDS, NO_PREALLOC>;
    fn backends() -> &'static Array<Self::Backend, SLOTS>;
    fn conns() -> &'static LruHashMap<Self::Conn, Pin, FLOWS>;
    fn new_conns() -> &'static LruHashMap<Self::Conn, Pin, NEW_FLOWS>;
    fn cache() -> &'static Array<Self::Cache, CACHE>;
    fn affinity() -> &'static LruHashMap<Self::AffinityKey, Affinity, AFFINITY>;
    fn replies() -> &'static LruHashMap<Self::Reply, Self::Nat, FLOWS>;
    fn new_replies() -> &'static LruHashMap<Self::Reply, Self::Nat, NEW_FLOWS>;
    fn backend_stats() -> &'static PerCpuArray<Stat, SLOTS>;
    fn is_vip(addr: Self::Addr) -> bool;

    fn conn(t: &Tuple<Self::Addr>) -> Self::Conn;
    fn frontend_key(t: &Tuple<Self::Addr>) -> Self::FrontendKey;
    fn affinity_key(frontend: u32, t: &Tuple<Self::Addr>) -> Self::AffinityKey;
    /// The reply-path entry of `t` translated to `backend`.
    fn reply(t: &Tuple<Self::Addr>, backend: &Self::Backend) -> (Self::Reply, Self::Nat);
    fn cache_hash(t: &Tuple<Self::Addr>) -> u32;
    fn flow_hash(t: &Tuple<Self::Addr>) -> u32;
    fn client_hash(t: &Tuple<Self::Addr>) -> u32;

    /// The backend of a pin, unless its slot was freed (or reused) since.
    #[inline(always)]
    fn pinned(pin: &Pin) -> Option<Self::Backend> {
        let backend = raw::get(Self::backends(), &pin.backend)?;
        (backend.state() != BACKEND_FREE && backend.generation() == pin.gen_).then_some(backend)
    }
}

macro_rules! slot {
    ($t:ty) => {
        impl BackendSlot for $t {
            #[inline(always)]
            fn state(&self) -> u8 {
                self.state
            }
            #[inline(always)]
            fn generation(&self) -> u32 {
                self.gen_
            }
            #[inline(always)]
            fn frontend(&self) -> u32 {
                self.frontend
            }
        }
    };
}
slot!(BackendV4);
slot!(BackendV6);

macro_rules! cached {
    ($t:ty, $k:ty) => {
        impl Cached<$k> for $t {
            #[inline(always)]
            fn new(key: $k, pin: Pin, check: u32) -> Self {
                Self {
                    key,
                    pin,
                    check,
                    _pad: 0,
                }
            }
            #[inline(always)]
            fn parts(&self) -> (&$k, &Pin, u32) {
                (&self.key, &self.pin, self.check)
            }
        }
    };
}
cached!(CachedPinV4, ConnKeyV4);
cached!(CachedPinV6, ConnKeyV6);

pub struct V4;
pub struct V6;

impl Family for V4 {
    type Addr = u32;
    type Conn = ConnKeyV4;
    type Cache = CachedPinV4;
    type Backend = BackendV4;
    type FrontendKey = FrontendKeyV4;
    type AffinityKey = AffinityKeyV4;
    type Reply = FlowKeyV4;
    type Nat = FlowNatV4;

    fn frontends() -> &'static HashMap<FrontendKeyV4, Frontend, FRONTENDS, NO_PREALLOC> {
        &maps::L3LB_FRONTENDS_V4
    }
    fn backends() -> &'static Array<BackendV4, SLOTS> {
        &maps::L3LB_BACKENDS_V4
    }
    fn conns() -> &'static LruHashMap<ConnKeyV4, Pin, FLOWS> {
        &maps::L3LB_CONNS_V4
    }
    fn new_conns() -> &'static LruHashMap<ConnKeyV4, Pin, NEW_FLOWS> {
        &maps::L3LB_NEW_CONNS_V4
    }
    fn cache() -> &'static Array<CachedPinV4, CACHE> {
        &maps::L3LB_FLOW_CACHE_V4
    }
    fn affinity() -> &'static LruHashMap<AffinityKeyV4, Affinity, AFFINITY> {
        &maps::L3LB_AFFINITY_V4
    }
    fn replies() -> &'static LruHashMap<FlowKeyV4, FlowNatV4, FLOWS> {
        &maps::L3LB_FLOWS_V4
    }
    fn new_replies() -> &'static LruHashMap<FlowKeyV4, FlowNatV4, NEW_FLOWS> {
        &maps::L3LB_NEW_FLOWS_V4
    }
    fn backend_stats() -> &'static PerCpuArray<Stat, SLOTS> {
        &maps::L3LB_BACKEND_STATS_V4
    }
    #[inline(always)]
    fn is_vip(addr: u32) -> bool {
        maps::is_vip_v4(addr)
    }
    #[inline(always)]
    fn conn(t: &Tuple<u32>) -> ConnKeyV4 {
        ConnKeyV4 {
            client_be: t.saddr,
            vip_be: t.daddr,
            client_port_be: t.sport_be,
            vip_port_be: t.dport_be,
            proto: t.proto,
            _pad: 0,
            _pad2: 0,
        }
    }
    #[inline(always)]
    fn frontend_key(t: &Tuple<u32>) -> FrontendKeyV4 {
        FrontendKeyV4 {
            vip_be: t.daddr,
            port_be: t.dport_be,
            proto: t.proto,
            _pad: 0,
        }
    }
    #[inline(always)]
    fn affinity_key(frontend: u32, t: &Tuple<u32>) -> AffinityKeyV4 {
        AffinityKeyV4 {
            frontend,
            client_be: t.saddr,
        }
    }
    #[inline(always)]
    fn reply(t: &Tuple<u32>, b: &BackendV4) -> (FlowKeyV4, FlowNatV4) {
        let key = FlowKeyV4 {
            backend_addr_be: b.addr_be,
            client_addr_be: t.saddr,
            backend_port_be: b.port_be,
            client_port_be: t.sport_be,
            proto: t.proto,
            _pad: 0,
            _pad2: 0,
        };
        let nat = FlowNatV4 {
            vip_be: t.daddr,
            port_be: t.dport_be,
            _pad: 0,
        };
        (key, nat)
    }
    #[inline(always)]
    fn cache_hash(t: &Tuple<u32>) -> u32 {
        cache_hash_v4(t.saddr, t.daddr, t.sport_be, t.dport_be, t.proto)
    }
    #[inline(always)]
    fn flow_hash(t: &Tuple<u32>) -> u32 {
        flow_hash_v4(t.saddr, t.daddr, t.sport_be, t.dport_be, t.proto)
    }
    #[inline(always)]
    fn client_hash(t: &Tuple<u32>) -> u32 {
        client_hash_v4(t.saddr)
    }
}

impl Family for V6 {
    type Addr = Ip6;
    type Conn = ConnKeyV6;
    type Cache = CachedPinV6;
    type Backend = BackendV6;
    type FrontendKey = FrontendKeyV6;
    type AffinityKey = AffinityKeyV6;
    type Reply = FlowKeyV6;
    type Nat = FlowNatV6;

    fn frontends() -> &'static HashMap<FrontendKeyV6, Frontend, FRONTENDS, NO_PREALLOC> {
        &maps::L3LB_FRONTENDS_V6
    }
    fn backends() -> &'static Array<BackendV6, SLOTS> {
        &maps::L3LB_BACKENDS_V6
    }
    fn conns() -> &'static LruHashMap<ConnKeyV6, Pin, FLOWS> {
        &maps::L3LB_CONNS_V6
    }
    fn new_conns() -> &'static LruHashMap<ConnKeyV6, Pin, NEW_FLOWS> {
        &maps::L3LB_NEW_CONNS_V6
    }
    fn cache() -> &'static Array<CachedPinV6, CACHE> {
        &maps::L3LB_FLOW_CACHE_V6
    }
    fn affinity() -> &'static LruHashMap<AffinityKeyV6, Affinity, AFFINITY> {
        &maps::L3LB_AFFINITY_V6
    }
    fn replies() -> &'static LruHashMap<FlowKeyV6, FlowNatV6, FLOWS> {
        &maps::L3LB_FLOWS_V6
    }
    fn new_replies() -> &'static LruHashMap<FlowKeyV6, FlowNatV6, NEW_FLOWS> {
        &maps::L3LB_NEW_FLOWS_V6
    }
    fn backend_stats() -> &'static PerCpuArray<Stat, SLOTS> {
        &maps::L3LB_BACKEND_STATS_V6
    }
    #[inline(always)]
    fn is_vip(addr: Ip6) -> bool {
        maps::is_vip_v6(addr)
    }
    #[inline(always)]
    fn conn(t: &Tuple<Ip6>) -> ConnKeyV6 {
        ConnKeyV6 {
            client: t.saddr,
            vip: t.daddr,
            client_port_be: t.sport_be,
            vip_port_be: t.dport_be,
            proto: t.proto,
            _pad: 0,
            _pad2: 0,
        }
    }
    #[inline(always)]
    fn frontend_key(t: &Tuple<Ip6>) -> FrontendKeyV6 {
        FrontendKeyV6 {
            vip: t.daddr,
            port_be: t.dport_be,
            proto: t.proto,
            _pad: 0,
            _pad2: 0,
        }
    }
    #[inline(always)]
    fn affinity_key(frontend: u32, t: &Tuple<Ip6>) -> AffinityKeyV6 {
        AffinityKeyV6 {
            frontend,
            _pad: 0,
            client: t.saddr,
        }
    }
    #[inline(always)]
    fn reply(t: &Tuple<Ip6>, b: &BackendV6) -> (FlowKeyV6, FlowNatV6) {
        let key = FlowKeyV6 {
            backend_addr: b.addr,
            client_addr: t.saddr,
            backend_port_be: b.port_be,
            client_port_be: t.sport_be,
            proto: t.proto,
            _pad: 0,
            _pad2: 0,
        };
        let nat = FlowNatV6 {
            vip: t.daddr,
            port_be: t.dport_be,
            _pad: 0,
            _pad2: 0,
        };
        (key, nat)
    }
    #[inline(always)]
    fn cache_hash(t: &Tuple<Ip6>) -> u32 {
        cache_hash_v6(&t.saddr, &t.daddr, t.sport_be, t.dport_be, t.proto)
    }
    #[inline(always)]
    fn flow_hash(t: &Tuple<Ip6>) -> u32 {
        flow_hash_v6(&t.saddr, &t.daddr, t.sport_be, t.dport_be, t.proto)
    }
    #[inline(always)]
    fn client_hash(t: &Tuple<Ip6>) -> u32 {
        client_hash_v6(&t.saddr)
    }
}
