//! Rare events: a flow the tables could not record, a redirect the kernel refused, a frontend
//! whose table names a backend that takes no new flows. Each is handled (and counted) where it
//! happens; here it is also logged with aya-log when the daemon asks (`CONFIG_LOG`, off by
//! default), at most once a second per CPU and kind: an event that repeats for every packet of
//! a flood still writes a handful of records. Nothing here runs on a packet's ordinary path, and
//! with logging off an event costs one config lookup.
use aya_ebpf::{btf_maps::PerCpuArray, macros::btf_map};
use aya_log_ebpf::warn;
use l3lb_common::Counter;

use crate::{maps, raw, stats};

/// The rate limiter's slots.
#[derive(Clone, Copy)]
#[repr(u32)]
enum Kind {
    FlowInsert = 0,
    Redirect = 1,
    TableInactive = 2,
}
const KINDS: usize = 3;

/// One record per kind and CPU at most this often.
const INTERVAL_NS: u64 = 1_000_000_000;

/// When each kind was last logged on this CPU (ns since boot; 0: never). The program's own: the
/// daemon neither reads nor pins it.
#[btf_map]
static L3LB_LOG_LIMIT: PerCpuArray<u64, KINDS> = PerCpuArray::new();

/// Whether to log an event of `kind` now (and, if so, that it was).
#[inline(always)]
fn due(kind: Kind) -> bool {
    if !maps::logging() {
        return false;
    }
    let Some(last) = raw::slot(&L3LB_LOG_LIMIT, &(kind as u32)) else {
        return false;
    };
    let now = raw::now_ns();
    let then = last.get();
    if then != 0 && now.wrapping_sub(then) < INTERVAL_NS {
        return false;
    }
    last.set(now);
    true
}

// Not `#[cold]`: that puts a function in `.text.unlikely.`, and the loader (aya 0.14) resolves
// calls into that section by offset as if into `.text` (seen: the verifier ran another function).

// aya-log's macros take the program context first and only evaluate it: these events happen
// where no context is at hand, so they pass `()`.

/// The flow tables could not record a new or newly established flow (full, or contended): the
/// packet is still translated, and the flow's next packet retries.
#[inline(never)]
pub fn flow_insert_failed() {
    stats::count(Counter::XdpFlowInsertFailed, 0);
    if due(Kind::FlowInsert) {
        warn!(
            (),
            "flow insert failed (counted as xdp_flow_insert_failed): the next packet retries"
        );
    }
}

/// The kernel refused a redirect into `ifindex`, listed in `L3LB_REDIRECT` a moment before: the
/// packet went to the kernel's forwarding path instead.
#[inline(never)]
pub fn redirect_failed(ifindex: u32) {
    if due(Kind::Redirect) {
        warn!(
            (),
            "redirect into listed ifindex {} failed; passed to the kernel instead", ifindex
        );
    }
}

/// Frontend `frontend`'s table named backend slot `slot`, whose state is `state` (not active):
/// the new flow got no backend and was dropped. The daemon frees or drains a slot only after the
/// table stops naming it, but a packet may run between its two writes.
#[inline(never)]
pub fn table_names_inactive(frontend: u32, slot: u32, state: u8) {
    if due(Kind::TableInactive) {
        warn!(
            (),
            "frontend {} names backend slot {} in state {} for a new flow: dropped",
            frontend,
            slot,
            state
        );
    }
}
