//! Prerequisites of the lab: checked up front, each failure with an install hint. Never a skip.
use std::{path::Path, process::Command};

use anyhow::bail;

pub(crate) const FRR_DIR: &str = "/usr/lib/frr";
const HINT: &str = "install the lab prerequisites with `sudo bash .ci/setup` (Debian 12)";

fn on_path(tool: &str) -> bool {
    Command::new(tool)
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// Fails with every missing prerequisite listed; FRR only when the lab runs it (`frr`).
pub(crate) fn check(frr: bool) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the netns lab needs root (network namespaces, veths, FRR); run the test as root");
    }
    for tool in ["ip", "ethtool", "sysctl", "chown"] {
        if !on_path(tool) {
            missing.push(format!("`{tool}` not found on PATH"));
        }
    }
    if frr {
        if !on_path("vtysh") {
            missing.push("`vtysh` not found on PATH".to_string());
        }
        for daemon in ["zebra", "bgpd"] {
            let p = Path::new(FRR_DIR).join(daemon);
            if !p.exists() {
                missing.push(format!("{} missing (apt package `frr`)", p.display()));
            }
        }
        if !frr_user_exists() {
            missing
                .push("system user `frr` missing (created by the apt package `frr`)".to_string());
        }
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        missing.push(
            "the kernel has no BTF (/sys/kernel/btf/vmlinux): l3lb's programs need Linux >= 6.6 \
             built with CONFIG_DEBUG_INFO_BTF=y"
                .to_string(),
        );
    }
    if !Path::new("/sys/fs/bpf").is_dir() {
        missing.push(
            "/sys/fs/bpf missing: mount a bpffs (`mount -t bpf bpf /sys/fs/bpf`)".to_string(),
        );
    }
    if !missing.is_empty() {
        bail!(
            "netns lab prerequisites missing: {}; {HINT}",
            missing.join("; ")
        );
    }
    Ok(())
}

fn frr_user_exists() -> bool {
    Command::new("id")
        .args(["-u", "frr"])
        .output()
        .is_ok_and(|o| o.status.success())
}
