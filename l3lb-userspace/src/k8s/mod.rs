//! Kubernetes I/O: the watches and their trimmed stores ([`watch`]), the allocator's Lease
//! election ([`leader`]), the allocator task that writes Service status ([`allocator`]), and the
//! Events l3lb posts ([`events`]). Decisions are not made here: they come from [`crate::core`].
pub mod allocator;
pub mod events;
pub mod l2_lease;
pub mod leader;
pub mod trigger;
pub mod watch;
