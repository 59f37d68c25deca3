//! Per-CPU counters: per verdict, per frontend, per backend.
use aya_ebpf::btf_maps::PerCpuArray;
use l3lb_common::{Counter, Stat};

use crate::maps::{L3LB_FRONTEND_STATS, L3LB_STATS};

#[inline(always)]
pub fn add<const N: usize>(map: &PerCpuArray<Stat, N>, slot: u32, bytes: u64) {
    if let Some(stat) = map.get_ptr_mut(slot) {
        // SAFETY: a per-CPU array slot: valid for the whole program run, and only programs on this
        // CPU write it (they do not preempt each other mid-update).
        unsafe {
            (*stat).packets += 1;
            (*stat).bytes += bytes;
        }
    }
}

/// Adds one packet of `bytes` to `counter` on this CPU.
#[inline(always)]
pub fn count(counter: Counter, bytes: u64) {
    add(&L3LB_STATS, counter as u32, bytes);
}

/// Adds one packet of `bytes` to a frontend.
#[inline(always)]
pub fn count_frontend(frontend: u32, bytes: u64) {
    add(&L3LB_FRONTEND_STATS, frontend, bytes);
}
