//! Pure decisions: what the node should serve and who gets which address, as functions of plain
//! data. No I/O, no tokio, no clock: everything here is tested with tables, without a cluster.
//!
//! [`model`] is the shared vocabulary; [`ownership`] the one rule for who owns an address;
//! [`desired`] turns Services and EndpointSlices into a node's frontends and VIPs; [`plan`] the
//! difference between desired and observed into ordered steps; [`allocate`] Services and
//! [`pool`]s into the addresses the allocator grants; [`class`] and [`annotations`] read which
//! Services are l3lb's and what they ask for.
pub mod allocate;
pub mod annotations;
pub mod class;
pub mod config;
pub mod desired;
pub mod l2;
pub mod model;
pub mod ownership;
pub mod plan;
pub mod pool;
#[cfg(test)]
pub(crate) mod test_rng;
