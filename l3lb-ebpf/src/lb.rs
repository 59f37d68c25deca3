//! Backend choice, for either family: a pinned flow keeps its backend; a new one gets the
//! backend its client is affine to (`sessionAffinity: ClientIP`), else the one the frontend's
//! Maglev table names for the flow's hash. New flows are pinned (and recorded for the reply
//! path) here.
//!
//! A flow's first packet (a SYN, a first datagram, a packet of a flow whose pin was lost) is
//! pinned and recorded in the *new-flow* tables; the client's next packet moves it to the
//! *established* ones (and the flow cache). Spoofed sources never send that second packet, so a
//! flood of them only churns the new-flow tables and cannot evict established flows, whose
//! replies would then leave untranslated.
use l3lb_common::{
    Affinity, BACKEND_ACTIVE, Counter, FRONTEND_AFFINITY, Frontend, MAX_BACKENDS, Pin,
    hash::{cache_slot, maglev_slot, pin_check},
};

use crate::{
    family::{BackendSlot, Cached, Family},
    parse::Tuple,
    rare,
    raw::{self, Slot},
    stats,
};

const _: () = assert!(MAX_BACKENDS.is_power_of_two());

/// What the maps say about a TCP/UDP packet to a possible VIP.
pub enum Choice<B> {
    /// The backend this packet goes to, and its slot.
    Backend(B, u32),
    /// A frontend without a backend for new flows.
    NoBackend,
    /// Not a frontend.
    NotFound,
}

/// What a flow's established pin says.
enum Pinned<B> {
    /// A live backend, and its slot.
    Live(B, u32),
    /// A pin whose backend is gone: the flow was established.
    Stale,
    /// No established pin.
    Missing,
}

/// The backend of the flow `t` belongs to: its pin, or a new pick. A TCP SYN (without ACK)
/// always starts a new flow, so a client reusing a port after the old flow's end is balanced
/// like any new connection.
#[inline(always)]
pub fn choose<F: Family>(t: &Tuple<F::Addr>) -> Choice<F::Backend> {
    let conn = F::conn(t);
    let hash = F::cache_hash(t);
    let cache = raw::slot(F::cache(), &cache_slot(hash));
    // Whether a new pick for this flow goes to the established tables: it was established
    // (its backend left, or a SYN reuses the tuple of an established flow: the pick must then
    // replace its pin, and any copy of it in the flow cache, or the next packet would find
    // the old one).
    let established = if t.syn {
        cached::<F>(cache, &conn) || F::conns().get_ptr(conn).is_some()
    } else {
        match pinned::<F>(&conn, hash, cache) {
            Pinned::Live(backend, slot) => return Choice::Backend(backend, slot),
            Pinned::Stale => true,
            Pinned::Missing => {
                if let Some((backend, slot)) = establish::<F>(t, &conn, hash, cache) {
                    return Choice::Backend(backend, slot);
                }
                false
            }
        }
    };
    let Some(frontend) = raw::shared(F::frontends(), &F::frontend_key(t)) else {
        return Choice::NotFound;
    };
    if frontend.active == 0 {
        return Choice::NoBackend;
    }
    let Some((backend, pin)) = pick::<F>(frontend, t) else {
        return Choice::NoBackend;
    };
    stats::count(Counter::XdpFlowNew, 0);
    let (reply, nat) = F::reply(t, &backend);
    // Reply path first: once the pin exists, later packets skip straight to the backend.
    let recorded = if established {
        let done =
            F::replies().insert(&reply, &nat, 0).is_ok() && F::conns().insert(conn, pin, 0).is_ok();
        if done {
            remember::<F>(cache, conn, pin, hash);
        }
        done
    } else {
        F::new_replies().insert(&reply, &nat, 0).is_ok()
            && F::new_conns().insert(conn, pin, 0).is_ok()
    };
    if !recorded {
        // Still translated: the next packet finds no pin and retries.
        rare::flow_insert_failed();
    }
    Choice::Backend(backend, pin.backend)
}

/// Whether the flow-cache slot holds a copy of `conn`'s pin (live or not).
#[inline(always)]
fn cached<F: Family>(cache: Option<Slot<F::Cache>>, conn: &F::Conn) -> bool {
    cache.is_some_and(|cached| cached.get().parts().0 == conn)
}

/// The established pin of flow `conn` (whose cache hash is `hash`, its cache slot `cache`): from
/// the flow cache, else from the conn table (then cached).
#[inline(always)]
fn pinned<F: Family>(
    conn: &F::Conn,
    hash: u32,
    cache: Option<Slot<F::Cache>>,
) -> Pinned<F::Backend> {
    if let Some(cached) = cache {
        // Another CPU may be rewriting the slot: the check word catches a torn copy.
        let cached = cached.get();
        let (key, pin, check) = cached.parts();
        if key == conn
            && check == pin_check(hash, pin)
            && let Some(backend) = F::pinned(pin)
        {
            return Pinned::Live(backend, pin.backend);
        }
    }
    let Some(pin) = raw::get(F::conns(), conn) else {
        return Pinned::Missing;
    };
    match F::pinned(&pin) {
        Some(backend) => {
            remember::<F>(cache, *conn, pin, hash);
            Pinned::Live(backend, pin.backend)
        }
        None => {
            stats::count(Counter::XdpFlowStale, 0);
            Pinned::Stale
        }
    }
}

/// The client's second packet of new flow `t`: its pin and reply record move to the established
/// tables (and the pin to the flow cache). None: no live pin among the new flows.
#[inline(always)]
fn establish<F: Family>(
    t: &Tuple<F::Addr>,
    conn: &F::Conn,
    hash: u32,
    cache: Option<Slot<F::Cache>>,
) -> Option<(F::Backend, u32)> {
    let pin = raw::get(F::new_conns(), conn)?;
    let Some(backend) = F::pinned(&pin) else {
        stats::count(Counter::XdpFlowStale, 0);
        return None;
    };
    let (reply, nat) = F::reply(t, &backend);
    // The new-flow entries stay until evicted: egress and later packets look in the
    // established tables first.
    if F::replies().insert(&reply, &nat, 0).is_ok() && F::conns().insert(conn, pin, 0).is_ok() {
        remember::<F>(cache, *conn, pin, hash);
        stats::count(Counter::XdpFlowEstablished, 0);
    } else {
        rare::flow_insert_failed();
    }
    Some((backend, pin.backend))
}

/// The live backend a translated flow `t` is pinned to, established or new, if any: no new
/// pick, nothing moved (ICMP errors).
#[inline(always)]
pub fn pinned_flow<F: Family>(t: &Tuple<F::Addr>) -> Option<F::Backend> {
    let hash = F::cache_hash(t);
    let cache = raw::slot(F::cache(), &cache_slot(hash));
    let conn = F::conn(t);
    if let Pinned::Live(backend, _) = pinned::<F>(&conn, hash, cache) {
        return Some(backend);
    }
    F::pinned(&raw::get(F::new_conns(), &conn)?)
}

/// Copies a pin into its flow-cache slot.
#[inline(always)]
fn remember<F: Family>(slot: Option<Slot<F::Cache>>, conn: F::Conn, pin: Pin, hash: u32) {
    if let Some(slot) = slot {
        // Readers validate what they copy.
        slot.set(F::Cache::new(conn, pin, pin_check(hash, &pin)));
    }
}

/// A backend for a new flow of `frontend` (which has active backends).
#[inline(always)]
fn pick<F: Family>(frontend: &Frontend, t: &Tuple<F::Addr>) -> Option<(F::Backend, Pin)> {
    let affine = frontend.flags & FRONTEND_AFFINITY != 0;
    let now = if affine { raw::now_ns() } else { 0 };
    let client = F::affinity_key(frontend.id, t);
    if affine && let Some(seen) = raw::get(F::affinity(), &client) {
        let timeout = u64::from(frontend.affinity_timeout_s) * 1_000_000_000;
        if now.wrapping_sub(seen.since_ns) < timeout
            && let Some(backend) = F::pinned(&seen.pin)
            && backend.state() == BACKEND_ACTIVE
        {
            stats::count(Counter::XdpAffinityHit, 0);
            // Renewed by every new flow, as kube-proxy's `recent` match does.
            let renewed = Affinity {
                pin: seen.pin,
                since_ns: now,
            };
            let _ = F::affinity().insert(&client, renewed, 0);
            return Some((backend, seen.pin));
        }
    }
    let hash = if affine {
        F::client_hash(t)
    } else {
        F::flow_hash(t)
    };
    let local = *frontend.table.get(maglev_slot(hash))? as usize;
    let id = *frontend.backends.get(local & (MAX_BACKENDS - 1))?;
    let backend = raw::get(F::backends(), &id)?;
    if backend.state() != BACKEND_ACTIVE {
        rare::table_names_inactive(frontend.id, id, backend.state());
        return None;
    }
    let pin = Pin {
        backend: id,
        gen_: backend.generation(),
    };
    if affine {
        let _ = F::affinity().insert(&client, Affinity { pin, since_ns: now }, 0);
    }
    Some((backend, pin))
}

/// Counts a DNATed packet for its frontend and backend.
#[inline(always)]
pub fn count<F: Family>(backend: &F::Backend, slot: u32, bytes: u64) {
    stats::count_frontend(backend.frontend(), bytes);
    stats::add(F::backend_stats(), slot, bytes);
}
