//! The node: what l3lb changes on the machine and how it looks at it. [`executor`] carries out a
//! plan (frontends into the maps, VIPs onto the interface); [`observe`] reads the node back
//! (maps, addresses, counters, uplink health); [`datapath`] is the eBPF side of both (the
//! embedded programs, their pinned maps and links), [`addresses`] and [`host`] the rtnetlink
//! side.
pub mod addresses;
pub mod announce;
pub mod datapath;
pub mod executor;
pub mod host;
pub mod lifetimes;
pub mod observe;
