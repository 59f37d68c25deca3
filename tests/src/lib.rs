//! Test fixtures for l3lb: a Kubernetes test API server and a network-namespace lab.
//! Used by the integration tests in `tests/tests/` and by `cargo xtask demo`.
pub mod apiserver;
pub mod bench;
pub mod flood;
pub mod l2;
pub mod lab;
pub mod manifest;
pub mod netns;
pub mod nodes;
pub mod operate;
pub mod packets;
pub mod raw_bpf;
pub mod scenario;
pub mod sctp;
