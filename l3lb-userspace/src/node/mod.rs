//! The node: what l3lb changes on the machine and how it looks at it. [`executor`] carries out a
//! plan (frontends into the maps, VIPs onto the interface); [`observe`] reads the node back
//! (maps, addresses, counters, uplink health); [`addresses`] is the rtnetlink side of both.
pub mod addresses;
pub mod executor;
pub mod host;
pub mod observe;
