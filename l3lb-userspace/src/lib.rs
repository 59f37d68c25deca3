//! l3lb: anycast load balancer for bare-metal Kubernetes. The node daemon's library.
//!
//! Data flows one way: [`watch`] (kube stores) → [`desired`] (pure) → [`plan`] (pure, against
//! what [`reconcile`] observed) → [`apply`] (maps first, then addresses; on removal the reverse).
pub mod addresses;
pub mod allocate;
pub mod allocator;
pub mod annotations;
pub mod apply;
pub mod class;
pub mod config;
pub mod daemon;
pub mod datapath;
pub mod desired;
pub mod events;
pub mod leader;
pub mod maps;
pub mod metrics;
pub mod model;
pub mod ownership;
pub mod plan;
pub mod reconcile;
pub mod stats;
pub mod vip_events;
pub mod watch;
