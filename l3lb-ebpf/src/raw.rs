//! The crate's only `unsafe` code (every other module is safe, and `cargo xtask test` checks
//! it): XDP packet memory, map values, the helpers without a safe binding, and the license
//! section. Each piece is small and states what makes it sound.
//!
//! Packet memory is never borrowed: a [`View`] is a bounds-checked address, read and written by
//! copy, so views may overlap and any number may be held at once. Map values are copied out
//! ([`get`]), or read and written through a [`Slot`] by copy; only values too large for the
//! 512-byte stack that no program writes are lent by reference ([`shared`]).
use core::marker::PhantomData;

use aya_ebpf::{
    bindings::bpf_fib_lookup as FibParams,
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray},
    helpers,
    programs::XdpContext,
};
use l3lb_common::{
    Affinity, BackendV4, BackendV6, CachedPinV4, CachedPinV6, Config, FlowNatV4, FlowNatV6,
    Frontend, Pin, Stat, neigh::NeighMac,
};
use network_types::{
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

mod sealed {
    pub trait Plain {}
    pub trait Shared {}
    pub trait Map {}
}

/// Plain data: no padding, and every bit pattern is a valid value, so a copy of any bytes (a
/// packet's, a map value another CPU or the daemon may be writing) is one.
pub trait Plain: sealed::Plain + Copy {}
impl<T: sealed::Plain + Copy> Plain for T {}

macro_rules! plain {
    ($($t:ty),* $(,)?) => { $(impl sealed::Plain for $t {})* };
}
plain!(u8, u16, u32, u64, Ipv4Hdr, Ipv6Hdr, TcpHdr, UdpHdr);
plain!(
    Affinity,
    BackendV4,
    BackendV6,
    CachedPinV4,
    CachedPinV6,
    FlowNatV4,
    FlowNatV6,
    NeighMac,
    Pin,
    Stat
);
// Elements without padding, packed without gaps.
impl<T: sealed::Plain, const N: usize> sealed::Plain for [T; N] {}

/// Map values read in place, by reference: too large to copy onto the stack, and written by no
/// program. The daemon replaces a frontend whole, in one map update (a reader keeps the value it
/// looked up); the config is an array slot the daemon overwrites in place, once per change, so a
/// reader racing that write may see old and new fields mixed: every field is a plain integer
/// (any mix is a value), and the next packet sees the new config.
pub trait Shared: sealed::Shared {}
impl<T: sealed::Shared> Shared for T {}
impl sealed::Shared for Frontend {}
impl sealed::Shared for Config {}

// ---- Packet memory (XDP) ----

/// `size_of::<T>()` bytes of an XDP packet, checked to lie inside it.
pub struct View<'p, T> {
    at: *mut u8,
    _packet: PhantomData<(&'p XdpContext, T)>,
}

impl<T> Clone for View<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for View<'_, T> {}

/// The `T` at `offset` in the packet, if all of its bytes lie inside it.
#[inline(always)]
pub fn view<T: Plain>(ctx: &XdpContext, offset: usize) -> Option<View<'_, T>> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some(View {
        at: (start + offset) as *mut u8,
        _packet: PhantomData,
    })
}

impl<'p, T: Plain> View<'p, T> {
    /// A copy of the whole `T`.
    #[inline(always)]
    pub fn read(self) -> T {
        self.get::<T, 0>()
    }

    /// Overwrites the whole `T`.
    #[inline(always)]
    pub fn write(self, value: T) {
        self.set::<T, 0>(value)
    }

    /// A copy of the `F` at byte `AT` of the `T`.
    #[inline(always)]
    pub fn get<F: Plain, const AT: usize>(self) -> F {
        const { assert!(AT + size_of::<F>() <= size_of::<T>()) };
        // SAFETY: `view` checked that the `size_of::<T>()` bytes at `at` lie inside the packet
        // (and the verifier checks each access again), and `AT + size_of::<F>()` does not pass
        // them (checked above, at compile time); the packet stays mapped for the whole program
        // run, which `'p` does not outlive. The read is unaligned and copies: no reference to
        // packet memory is made, so overlapping views cannot alias one. Any bytes are an `F`
        // (`Plain`).
        unsafe { self.at.add(AT).cast::<F>().read_unaligned() }
    }

    /// Writes `value` at byte `AT` of the `T`.
    #[inline(always)]
    pub fn set<F: Plain, const AT: usize>(self, value: F) {
        const { assert!(AT + size_of::<F>() <= size_of::<T>()) };
        // SAFETY: in bounds and mapped as in `get`; XDP may write its packet, and no reference
        // to packet memory exists anywhere (views only copy). `F` has no padding (`Plain`), so
        // every byte written is initialised.
        unsafe { self.at.add(AT).cast::<F>().write_unaligned(value) }
    }
}

// ---- Map values ----

/// Maps a value can be looked up in: aya's, whose lookups return the kernel's value pointers
/// (sealed: [`get`], [`slot`] and [`shared`] trust what `find` returns).
pub trait Lookup<K, V>: sealed::Map {
    /// The value under `key`: valid until the program run ends (array slots always; hash values
    /// are freed only after an RCU grace period once removed or replaced).
    fn find(&self, key: &K) -> Option<*mut V>;
}

impl<K, V, const M: usize, const F: usize> sealed::Map for HashMap<K, V, M, F> {}
impl<K, V, const M: usize, const F: usize> sealed::Map for LruHashMap<K, V, M, F> {}
impl<V, const M: usize, const F: usize> sealed::Map for Array<V, M, F> {}
impl<V, const M: usize, const F: usize> sealed::Map for PerCpuArray<V, M, F> {}

impl<K, V, const M: usize, const F: usize> Lookup<K, V> for HashMap<K, V, M, F> {
    #[inline(always)]
    fn find(&self, key: &K) -> Option<*mut V> {
        self.get_ptr_mut(key)
    }
}

impl<K, V, const M: usize, const F: usize> Lookup<K, V> for LruHashMap<K, V, M, F> {
    #[inline(always)]
    fn find(&self, key: &K) -> Option<*mut V> {
        self.get_ptr_mut(key)
    }
}

impl<V, const M: usize, const F: usize> Lookup<u32, V> for Array<V, M, F> {
    #[inline(always)]
    fn find(&self, index: &u32) -> Option<*mut V> {
        self.get_ptr_mut(*index)
    }
}

impl<V, const M: usize, const F: usize> Lookup<u32, V> for PerCpuArray<V, M, F> {
    #[inline(always)]
    fn find(&self, index: &u32) -> Option<*mut V> {
        self.get_ptr_mut(*index)
    }
}

/// A copy of the value under `key`.
#[inline(always)]
pub fn get<K, V: Plain>(map: &impl Lookup<K, V>, key: &K) -> Option<V> {
    map.find(key).map(|slot| Slot(slot).get())
}

/// The value under `key`, to read and write by copy (a flow-cache slot, a counter).
#[inline(always)]
pub fn slot<K, V: Plain>(map: &impl Lookup<K, V>, key: &K) -> Option<Slot<V>> {
    map.find(key).map(Slot)
}

/// The value under `key`, by reference (see [`Shared`]).
#[inline(always)]
pub fn shared<'m, K, V: Shared>(map: &'m impl Lookup<K, V>, key: &K) -> Option<&'m V> {
    let value = map.find(key)?;
    // SAFETY: a successful lookup's pointer (not null): aligned (the kernel aligns values to 8
    // bytes, no more is asked of the types here) and valid until the program run ends, which no
    // value of the program outlives; no program writes a `Shared` type, the daemon replaces
    // hash values whole (the old one stays until an RCU grace period after the run), and its
    // in-place writes of the config slot only mix integers (see `Shared`).
    Some(unsafe { &*value })
}

/// A map value, read and written by copy: another CPU may be writing it at the same time (a
/// flow-cache slot), so a reader checks what it copied where that matters.
#[derive(Clone, Copy)]
pub struct Slot<V>(*mut V);

impl<V: Plain> Slot<V> {
    #[inline(always)]
    pub fn get(self) -> V {
        // SAFETY: a successful lookup's pointer (see [`Lookup::find`]): aligned, valid for the
        // program run; a copy, no reference; any bits are a `V` (`Plain`).
        unsafe { self.0.read() }
    }

    #[inline(always)]
    pub fn set(self, value: V) {
        // SAFETY: as in `get`; programs may write map values, and no reference to a `Plain`
        // map value is ever made.
        unsafe { self.0.write(value) }
    }
}

// ---- Helpers ----

/// Nanoseconds since boot (`bpf_ktime_get_ns`).
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { helpers::bpf_ktime_get_ns() }
}

/// All-zero FIB lookup parameters.
#[inline(always)]
pub fn fib_params() -> FibParams {
    // SAFETY: a C struct of integers, unions of integers and byte arrays: all zeroes is a value.
    unsafe { core::mem::zeroed() }
}

/// `bpf_fib_lookup` on `params`; the helper's return code.
#[inline(always)]
pub fn fib_lookup(ctx: &XdpContext, params: &mut FibParams, flags: u32) -> i64 {
    // SAFETY: the context is the program's own; the helper reads and writes `params`, a
    // `FibParams` of the size given, and nothing else.
    unsafe { helpers::bpf_fib_lookup(ctx.ctx.cast(), params, size_of::<FibParams>() as i32, flags) }
}

// ---- The license ----

/// The kernel reads the program's license from this section (GPL: the helpers l3lb calls need
/// it). `link_section` and `no_mangle` are unsafe attributes: the symbol must not clash, and the
/// section must hold what the loader expects (a NUL-terminated string).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
