//! Per-node pin directories on the host's bpffs: two daemons on one kernel need their own.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use super::Lab;

/// The host's BPF file system.
const BPFFS: &str = "/sys/fs/bpf";

/// `/sys/fs/bpf/l3lb-<id>-node<i>`.
pub(super) fn dir(id: &str, i: usize) -> PathBuf {
    Path::new(BPFFS).join(format!("l3lb-{id}-node{i}"))
}

impl Lab {
    /// Node `i`'s pin directory (`l3lb run --bpffs-dir`). Removed, with whatever a daemon pinned
    /// in it, when the lab is dropped.
    pub fn bpffs_dir(&self, i: usize) -> PathBuf {
        dir(&self.names.id, i)
    }

    /// Unpins whatever a daemon left in node `i`'s pin directory (an unpinned link is detached)
    /// and removes the directory. Only this lab's directories: their names carry its id.
    pub(super) fn remove_bpffs_dir(&self, i: usize) -> anyhow::Result<()> {
        let dir = self.bpffs_dir(i);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        for entry in entries {
            let path = entry?.path();
            fs::remove_file(&path).with_context(|| format!("unpinning {}", path.display()))?;
        }
        fs::remove_dir(&dir).with_context(|| format!("removing {}", dir.display()))
    }
}
