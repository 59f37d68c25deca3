//! Per-CPU verdict counters.
use l3lb_common::Counter;

use crate::maps::L3LB_STATS;

/// Adds one packet of `bytes` to `counter` on this CPU.
#[inline(always)]
pub fn count(counter: Counter, bytes: u64) {
    if let Some(stat) = L3LB_STATS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU array slot: valid for the whole program run, and only programs on this
        // CPU write it (they do not preempt each other mid-update).
        unsafe {
            (*stat).packets += 1;
            (*stat).bytes += bytes;
        }
    }
}
