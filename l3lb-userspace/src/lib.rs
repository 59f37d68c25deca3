//! l3lb: anycast load balancer for bare-metal Kubernetes. The node daemon's library.
//!
//! Grouped by role, arrows pointing down only: [`cli`] → [`daemon`] → [`k8s`] and [`node`] →
//! [`core`]. Data flows one way: watch (kube stores) → desired (pure) → plan (pure, against what
//! the node observes) → apply (maps first, then addresses; on removal the reverse). [`metrics`]
//! is the leaf everyone may count into.
pub mod cli;
pub mod core;
pub mod daemon;
pub mod k8s;
pub mod metrics;
pub mod node;
