//! [`ScratchNs`]: one bare network namespace (only `lo`, up) for fixtures that need a route, a
//! neighbour or a device but no lab, e.g. a FIB lookup in BPF_PROG_TEST_RUN. Deleted on drop.
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;

use super::{
    process::{run, run_in},
    topology::{add_netns, del_netns},
};

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct ScratchNs {
    name: String,
}

impl ScratchNs {
    /// Creates `l3lb-<pid>-<n>-<role>`, a name no lab uses (their roles are fixed).
    pub fn new(role: &str) -> anyhow::Result<Self> {
        let name = format!(
            "l3lb-{}-{}-{role}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut created = Vec::new();
        let made = add_netns(&name, &mut created);
        // Whatever part was made is deleted on drop.
        let ns = ScratchNs {
            name: created.pop().unwrap_or(name),
        };
        made.with_context(|| format!("creating namespace {}", ns.name))?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `args` to completion inside the namespace; the error carries stderr.
    pub fn exec(&self, args: &[&str]) -> anyhow::Result<String> {
        run_in(&self.name, args)
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["ip", "-n", self.name.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }
}

impl Drop for ScratchNs {
    fn drop(&mut self) {
        if let Err(e) = del_netns(&self.name) {
            eprintln!("removing namespace {}: {e:#}", self.name);
        }
    }
}
