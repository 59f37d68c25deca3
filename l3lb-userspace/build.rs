//! Builds the eBPF object (`l3lb-ebpf`'s `l3lb` binary) with aya-build into `$OUT_DIR/l3lb`;
//! `datapath::EBPF_OBJECT` embeds it. `cargo xtask build-ebpf` drives this same build.
use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?,
    );
    let root_dir = manifest_dir
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent", manifest_dir.display()))?
        .join("l3lb-ebpf");
    let root_dir = root_dir
        .to_str()
        .ok_or_else(|| anyhow!("non UTF-8 path {}", root_dir.display()))?;
    aya_build::build_ebpf(
        [Package {
            name: "l3lb-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
