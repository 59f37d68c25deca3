//! Per-CPU counters: per verdict, per frontend, per backend.
use aya_ebpf::btf_maps::PerCpuArray;
use l3lb_common::{Counter, Stat};

use crate::{
    maps::{L3LB_FRONTEND_STATS, L3LB_STATS},
    raw,
};

/// Adds one packet of `bytes` to slot `slot` of `map`, on this CPU: only programs on this CPU
/// write it, and they do not preempt each other mid-update.
#[inline(always)]
pub fn add<const N: usize>(map: &PerCpuArray<Stat, N>, slot: u32, bytes: u64) {
    if let Some(stat) = raw::slot(map, &slot) {
        let Stat { packets, bytes: b } = stat.get();
        stat.set(Stat {
            packets: packets + 1,
            bytes: b + bytes,
        });
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
