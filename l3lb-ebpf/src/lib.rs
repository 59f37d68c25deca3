//! Empty on purpose: this library target lets `l3lb-userspace` list `l3lb-ebpf` as a
//! build-dependency. The programs live in the `l3lb` binary target (`src/main.rs`), which
//! aya-build compiles for `bpfel-unknown-none`.
#![no_std]
