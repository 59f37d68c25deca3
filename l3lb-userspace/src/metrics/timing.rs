//! Where a watch-driven change spends its time, stage by stage: waiting to be picked up after
//! the watch delivered it, desired state, plan, map writes, netlink, Events. Every pass records
//! its stages into the `l3lb_pass_stage_seconds` histograms and one debug line (target
//! `l3lb::timing`) that carries monotonic timestamps, so `cargo xtask bench control-plane` can
//! line a pass up with the change it made and the kernel's address event.
use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
};
use tracing::debug;

/// Nanoseconds on CLOCK_MONOTONIC: the same clock in every process on the machine (network
/// namespaces do not change it), so the benchmark compares it with its own readings. 0 if it
/// cannot be read.
pub fn mono_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| {
            u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
                + u64::try_from(t.tv_nsec()).unwrap_or(0)
        })
        .unwrap_or(0)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
}

/// One histogram per stage.
pub type StageHistograms = Family<StageLabels, Histogram, fn() -> Histogram>;

/// 10 µs .. ~20 s.
pub fn stage_histograms() -> StageHistograms {
    Family::new_with_constructor(|| Histogram::new(exponential_buckets(1e-5, 2.0, 22)))
}

/// The stages of one pass. Durations are zero for stages the pass did not reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassStages {
    /// When the first watch change this pass serves arrived (monotonic ns; 0: no change, a
    /// resync or a timer).
    pub first_change_ns: u64,
    /// When the pass started (monotonic ns).
    pub started_ns: u64,
    /// Pools, node facts and desired state.
    pub desired: Duration,
    /// Observing the node (only when the pass has no record of it).
    pub observe: Duration,
    /// Planning, renewals included.
    pub plan: Duration,
    /// Writing the eBPF maps.
    pub maps: Duration,
    /// Address requests (rtnetlink), until every one is acknowledged.
    pub netlink: Duration,
    /// Recording what was applied, metrics.
    pub record: Duration,
    /// Queueing and publishing Events.
    pub events: Duration,
    /// Steps applied.
    pub steps: usize,
}

impl PassStages {
    /// From the first change to the pass's start.
    pub fn waited(&self) -> Duration {
        match self.first_change_ns {
            0 => Duration::ZERO,
            first => Duration::from_nanos(self.started_ns.saturating_sub(first)),
        }
    }

    fn each(&self) -> [(&'static str, Duration); 8] {
        [
            ("wait", self.waited()),
            ("desired", self.desired),
            ("observe", self.observe),
            ("plan", self.plan),
            ("maps", self.maps),
            ("netlink", self.netlink),
            ("record", self.record),
            ("events", self.events),
        ]
    }

    /// Observes every stage into `histograms` and logs the pass's line (debug, target
    /// `l3lb::timing`; the benchmark parses its fields).
    pub fn report(&self, histograms: &StageHistograms, full: bool) {
        for (stage, took) in self.each() {
            histograms
                .get_or_create(&StageLabels { stage })
                .observe(took.as_secs_f64());
        }
        let us = |d: Duration| d.as_micros() as u64;
        debug!(target: "l3lb::timing",
            first_change_ns = self.first_change_ns,
            started_ns = self.started_ns,
            wait_us = us(self.waited()),
            desired_us = us(self.desired),
            observe_us = us(self.observe),
            plan_us = us(self.plan),
            maps_us = us(self.maps),
            netlink_us = us(self.netlink),
            record_us = us(self.record),
            events_us = us(self.events),
            steps = self.steps,
            full,
            "pass stages");
    }
}
