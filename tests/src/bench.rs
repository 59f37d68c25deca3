//! What the benchmark binaries share.
use std::{fs::File, path::Path};

/// A benchmark's output, `target/bench/<name>.json` or as given: one JSON object per row,
/// appended (earlier runs are kept), the directory made if missing.
pub fn rows_file(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}
