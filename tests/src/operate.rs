//! `l3lb status` and `l3lb explain` against a lab node, as an operator runs them there (root, in
//! the node's network namespace, next to its daemon's control socket).
use std::path::PathBuf;

use anyhow::Context as _;
use serde_json::Value;

use crate::scenario::{Cluster, l3lb_bin, node_name};

impl Cluster {
    /// Node `i`'s daemon control socket (every daemon shares the host's mounts).
    pub fn control_socket(&self, i: usize) -> PathBuf {
        self.lab
            .workdir()
            .join(format!("l3lb-{}.sock", node_name(i)))
    }

    /// `l3lb <command> <args> --control-socket <node i's>` in node `i`'s namespace.
    pub fn l3lb_on(&self, i: usize, command: &str, args: &[&str]) -> anyhow::Result<String> {
        let bin = l3lb_bin()?;
        let socket = self.control_socket(i);
        let mut argv = vec![
            bin.to_str().context("non-UTF-8 binary path")?,
            command,
            "--control-socket",
            socket.to_str().context("non-UTF-8 socket path")?,
        ];
        argv.extend_from_slice(args);
        self.lab.exec(self.lab.node_ns(i), &argv)
    }

    /// `l3lb status -o json` on node `i`.
    pub fn status_json(&self, i: usize) -> anyhow::Result<Value> {
        let out = self.l3lb_on(i, "status", &["-o", "json"])?;
        serde_json::from_str(&out).with_context(|| format!("status output {out:?}"))
    }

    /// `l3lb explain <service> -o json` on node `i`.
    pub fn explain_json(&self, i: usize, service: &str) -> anyhow::Result<Value> {
        let out = self.l3lb_on(i, "explain", &[service, "-o", "json"])?;
        serde_json::from_str(&out).with_context(|| format!("explain output {out:?}"))
    }
}
