//! Backend choice: a pinned flow keeps its backend; a new one gets the backend its client is
//! affine to (`sessionAffinity: ClientIP`), else the one the frontend's Maglev table names for
//! the flow's hash. New flows are pinned (and recorded for the reply path) here.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use l3lb_common::{
    Affinity, AffinityKeyV4, BACKEND_ACTIVE, BackendV4, CachedPinV4, ConnKeyV4, Counter,
    FRONTEND_AFFINITY, FlowKeyV4, FlowNatV4, Frontend, FrontendKeyV4, MAX_BACKENDS, Pin,
    hash::{cache_hash_v4, cache_slot, client_hash_v4, flow_hash_v4, maglev_slot, pin_check},
};

use crate::{
    maps::{
        self, L3LB_AFFINITY_V4, L3LB_CONNS_V4, L3LB_FLOW_CACHE_V4, L3LB_FLOWS_V4, L3LB_FRONTENDS_V4,
    },
    parse::Ingress,
    stats,
};

/// What the maps say about an IPv4 TCP/UDP packet to a possible VIP.
pub enum Choice {
    /// The backend this packet goes to, and its id.
    Backend(BackendV4, u32),
    /// A frontend without a backend for new flows.
    NoBackend,
    /// Not a frontend.
    NotFound,
}

/// The backend of the flow `pkt` belongs to: its pin, or a new pick. A TCP SYN (without ACK)
/// always starts a new flow, so a client reusing a port after the old flow's end is balanced
/// like any new connection.
#[inline(always)]
pub fn choose_v4(pkt: &Ingress<'_>) -> Choice {
    let conn = ConnKeyV4 {
        client_be: pkt.saddr_be,
        vip_be: pkt.daddr_be,
        client_port_be: pkt.sport_be,
        vip_port_be: pkt.dport_be,
        proto: pkt.proto,
        _pad: 0,
        _pad2: 0,
    };
    let hash = cache_hash_v4(
        pkt.saddr_be,
        pkt.daddr_be,
        pkt.sport_be,
        pkt.dport_be,
        pkt.proto,
    );
    let cache = L3LB_FLOW_CACHE_V4.get_ptr_mut(cache_slot(hash));
    if !pkt.syn {
        if let Some(cached) = cache {
            // SAFETY: an array slot, valid for the program run; copied out at once (another CPU
            // may be rewriting it: the check word catches a torn copy).
            let cached = unsafe { *cached };
            if cached.key == conn
                && cached.check == pin_check(hash, &cached.pin)
                && let Some(backend) = maps::backend_v4(&cached.pin)
            {
                return Choice::Backend(backend, cached.pin.backend);
            }
        }
        if let Some(pin) = L3LB_CONNS_V4.get_ptr(conn) {
            // SAFETY: pointer from a successful lookup, read once.
            let pin = unsafe { *pin };
            if let Some(backend) = maps::backend_v4(&pin) {
                remember(cache, &conn, &pin, hash);
                return Choice::Backend(backend, pin.backend);
            }
            stats::count(Counter::XdpFlowStale, 0);
        }
    }
    let key = FrontendKeyV4 {
        vip_be: pkt.daddr_be,
        port_be: pkt.dport_be,
        proto: pkt.proto,
        _pad: 0,
    };
    let Some(frontend) = L3LB_FRONTENDS_V4.get_ptr(key) else {
        return Choice::NotFound;
    };
    // SAFETY: pointer from a successful lookup; the value stays valid for this program run
    // (a replacement frees the old one only after an RCU grace period).
    let frontend = unsafe { &*frontend };
    if frontend.active == 0 {
        return Choice::NoBackend;
    }
    let Some((backend, pin)) = pick_v4(frontend, pkt) else {
        return Choice::NoBackend;
    };
    stats::count(Counter::XdpFlowNew, 0);
    let reply = FlowKeyV4 {
        backend_addr_be: backend.addr_be,
        client_addr_be: pkt.saddr_be,
        backend_port_be: backend.port_be,
        client_port_be: pkt.sport_be,
        proto: pkt.proto,
        _pad: 0,
        _pad2: 0,
    };
    let nat = FlowNatV4 {
        vip_be: pkt.daddr_be,
        port_be: pkt.dport_be,
        _pad: 0,
    };
    // Reply path first: once the pin exists, later packets skip straight to the backend.
    let recorded =
        L3LB_FLOWS_V4.insert(reply, nat, 0).is_ok() && L3LB_CONNS_V4.insert(conn, pin, 0).is_ok();
    if recorded {
        remember(cache, &conn, &pin, hash);
    } else {
        // Still translated: the next packet finds no pin and retries.
        stats::count(Counter::XdpFlowInsertFailed, 0);
    }
    Choice::Backend(backend, pin.backend)
}

/// Copies a pin into its flow-cache slot.
#[inline(always)]
fn remember(slot: Option<*mut CachedPinV4>, conn: &ConnKeyV4, pin: &Pin, hash: u32) {
    if let Some(slot) = slot {
        // SAFETY: an array slot, valid for the program run; readers validate what they copy.
        unsafe {
            *slot = CachedPinV4 {
                key: *conn,
                pin: *pin,
                check: pin_check(hash, pin),
                _pad: 0,
            };
        }
    }
}

/// A backend for a new flow of `frontend` (which has active backends).
#[inline(always)]
fn pick_v4(frontend: &Frontend, pkt: &Ingress<'_>) -> Option<(BackendV4, Pin)> {
    let affine = frontend.flags & FRONTEND_AFFINITY != 0;
    let now = if affine {
        unsafe { bpf_ktime_get_ns() }
    } else {
        0
    };
    let client = AffinityKeyV4 {
        frontend: frontend.id,
        client_be: pkt.saddr_be,
    };
    if affine && let Some(seen) = L3LB_AFFINITY_V4.get_ptr(client) {
        // SAFETY: pointer from a successful lookup, read once.
        let seen = unsafe { *seen };
        let timeout = u64::from(frontend.affinity_timeout_s) * 1_000_000_000;
        if now.wrapping_sub(seen.since_ns) < timeout
            && let Some(backend) = maps::backend_v4(&seen.pin)
            && backend.state == BACKEND_ACTIVE
        {
            stats::count(Counter::XdpAffinityHit, 0);
            // Renewed by every new flow, as kube-proxy's `recent` match does.
            let renewed = Affinity {
                pin: seen.pin,
                since_ns: now,
            };
            let _ = L3LB_AFFINITY_V4.insert(client, renewed, 0);
            return Some((backend, seen.pin));
        }
    }
    let hash = if affine {
        client_hash_v4(pkt.saddr_be)
    } else {
        flow_hash_v4(
            pkt.saddr_be,
            pkt.daddr_be,
            pkt.sport_be,
            pkt.dport_be,
            pkt.proto,
        )
    };
    let local = *frontend.table.get(maglev_slot(hash))? as usize;
    let id = *frontend.backends.get(local & (MAX_BACKENDS - 1))?;
    let backend = maps::L3LB_BACKENDS_V4.get_ptr(id)?;
    // SAFETY: an array slot, valid for the program run; copied out at once.
    let backend = unsafe { *backend };
    if backend.state != BACKEND_ACTIVE {
        return None;
    }
    let pin = Pin {
        backend: id,
        gen_: backend.gen_,
    };
    if affine {
        let _ = L3LB_AFFINITY_V4.insert(client, Affinity { pin, since_ns: now }, 0);
    }
    Some((backend, pin))
}
