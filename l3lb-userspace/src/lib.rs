//! l3lb: anycast load balancer for bare-metal Kubernetes. The daemon's library, behind the thin
//! `l3lb` binary.
//!
//! # Shape
//!
//! Modules are grouped by role, and imports only point down: [`cli`] → [`daemon`] → [`k8s`] and
//! [`node`] → [`core`]; [`metrics`] is the leaf everyone may count into.
//!
//! - [`core`]: pure decisions over plain data, no I/O, no tokio, no clock. [`core::desired`]
//!   turns Services, this node's EndpointSlice endpoints and the node's facts into the
//!   frontends and VIPs it should have (refusing what it must not serve); [`core::ownership`] is
//!   the one rule for who owns an address, used there and by [`core::allocate`]; [`core::plan`]
//!   orders the steps from what the node has to what it should have.
//! - [`k8s`]: Kubernetes I/O. Watches keep trimmed stores and the index of local endpoints; the
//!   allocator, elected over a Lease, writes Service status; Events say what was refused and
//!   which nodes announce what.
//! - [`node`]: the machine. The executor carries out steps (datapath settings, frontends into
//!   the eBPF maps, VIPs onto the interface); the observer reads it back (maps, l3lb's and the
//!   host's addresses, counters, uplink health). Both are traits, so passes are tested against
//!   in-memory fakes.
//! - [`daemon`]: the loop. A watch change (coalesced), a resync or a housekeeping tick runs a
//!   pass: desired state (incremental), observe (or trust the record of the last pass), plan,
//!   apply, Events.
//! - [`cli`]: one module per command; flags become a validated [`core::config`] once.
//!
//! # Data flow
//!
//! watch → desired (pure) → observe → plan (pure) → apply: the datapath's settings first, then
//! frontends into the maps, then VIPs onto the interface; on removal VIPs first and frontends
//! after the drain. Every map write is a plan step; nothing else writes the maps.
pub mod cli;
pub mod core;
pub mod daemon;
pub mod k8s;
pub mod metrics;
pub mod node;
