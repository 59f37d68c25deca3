//! Metrics and health: handles the reconciler and the watches update, registered into a
//! [`Registry`] the caller owns (never a global), and served over HTTP by [`http`].
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use l3lb_common::{Counter as Verdict, MAP_FRONTENDS_V4, Stat};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::core::model::{Backends, Desired, Observed};

mod frontend_stats;
pub mod http;
pub mod timing;

pub use frontend_stats::FrontendStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MapLabels {
    pub map: &'static str,
}

/// Handles to every l3lb metric. Cloning shares the underlying values.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub pass_duration: Histogram,
    /// Each stage of a pass ([`timing::PassStages`]).
    pub pass_stages: timing::StageHistograms,
    pub frontends: Gauge,
    pub frontends_draining: Gauge,
    pub vips: Gauge,
    pub backends: Gauge,
    pub node_excluded: Gauge,
    pub l2_addresses_announced: Gauge,
    pub uplinks_not_forwarding: Gauge,
    pub endpoints_refused: Gauge,
    pub map_entries: Family<MapLabels, Gauge>,
    pub datapath_packets: Family<VerdictLabels, Counter>,
    pub datapath_bytes: Family<VerdictLabels, Counter>,
    pub frontend_stats: FrontendStats,
    pub step_failures: Family<StepLabels, Counter>,
    pub watch_errors: Family<ResourceLabels, Counter>,
    pub events_dropped: Counter,
    pub allocation_passes: Counter,
    pub health: Health,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            // 1 ms .. ~16 s
            pass_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            pass_stages: timing::stage_histograms(),
            frontends: Gauge::default(),
            frontends_draining: Gauge::default(),
            vips: Gauge::default(),
            backends: Gauge::default(),
            node_excluded: Gauge::default(),
            l2_addresses_announced: Gauge::default(),
            uplinks_not_forwarding: Gauge::default(),
            endpoints_refused: Gauge::default(),
            map_entries: Family::default(),
            datapath_packets: Family::default(),
            datapath_bytes: Family::default(),
            frontend_stats: FrontendStats::default(),
            step_failures: Family::default(),
            watch_errors: Family::default(),
            events_dropped: Counter::default(),
            allocation_passes: Counter::default(),
            health: Health::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under the `l3lb_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("l3lb");
        r.register(
            "reconcile_duration_seconds",
            "Duration of a reconcile pass (observe, plan, apply)",
            self.pass_duration.clone(),
        );
        r.register(
            "pass_stage_seconds",
            "Time a pass spent per stage: wait (from the first watch change it serves to its \
             start), desired, observe, plan, maps (eBPF map writes), netlink (address \
             requests), record, events",
            self.pass_stages.clone(),
        );
        r.register(
            "frontends",
            "Wanted frontends (VIP:port/proto) programmed in the maps",
            self.frontends.clone(),
        );
        r.register(
            "frontends_draining",
            "Frontends no longer wanted, kept in the maps until their drain ends",
            self.frontends_draining.clone(),
        );
        r.register(
            "vips_assumed",
            "VIPs on the advertising interface (inside the managed prefixes)",
            self.vips.clone(),
        );
        r.register(
            "endpoints_refused",
            "Local endpoint addresses of l3lb's Services left out as untrusted (outside the pod \
             CIDRs, the node's own, loopback, link-local, inside --prefix)",
            self.endpoints_refused.clone(),
        );
        r.register(
            "backends",
            "Local endpoints over all frontends in the maps",
            self.backends.clone(),
        );
        r.register(
            "l2_addresses_announced",
            "L2 pool addresses this node announces (answers ARP/NDP for and forwards)",
            self.l2_addresses_announced.clone(),
        );
        r.register(
            "node_excluded",
            "1 while this node announces no VIP because it is cordoned or labelled \
             node.kubernetes.io/exclude-from-external-load-balancers",
            self.node_excluded.clone(),
        );
        r.register(
            "uplinks_not_forwarding",
            "Uplinks whose l3lb programs are gone or replaced and could not be re-attached; \
             while above 0 the node announces no VIP",
            self.uplinks_not_forwarding.clone(),
        );
        r.register(
            "map_entries",
            "Entries in an eBPF map",
            self.map_entries.clone(),
        );
        r.register(
            "datapath_packets",
            "Packets per datapath verdict, summed over CPUs",
            self.datapath_packets.clone(),
        );
        r.register(
            "datapath_bytes",
            "Bytes per datapath verdict, summed over CPUs",
            self.datapath_bytes.clone(),
        );
        r.register_collector(Box::new(self.frontend_stats.clone()));
        r.register(
            "step_failures",
            "Plan steps that failed (retried next pass), by step kind",
            self.step_failures.clone(),
        );
        r.register(
            "watch_errors",
            "Kubernetes watch errors (retried with backoff), by resource",
            self.watch_errors.clone(),
        );
        r.register(
            "events_dropped",
            "Normal VIP Events not published because the queue to the API server was full",
            self.events_dropped.clone(),
        );
        r.register(
            "allocation_passes",
            "Allocation passes this process ran while it held the allocator Lease",
            self.allocation_passes.clone(),
        );
    }

    /// Records the node's state after a pass.
    pub fn record_state(&self, desired: &Desired, after: &Observed, draining: usize) {
        let programmed = desired
            .frontends
            .iter()
            .filter(|(id, eps)| after.frontends.get(id) == Some(eps))
            .count();
        self.record_programmed(programmed, after, draining);
    }

    /// [`Self::record_state`] when `programmed` frontends are known to match (after a pass
    /// whose every step succeeded, all wanted ones do), without comparing them again.
    pub fn record_programmed(&self, programmed: usize, after: &Observed, draining: usize) {
        self.record_counts(&Counts {
            programmed,
            in_maps: after.frontends.len(),
            vips: after.addresses.len(),
            backends: after.frontends.values().map(Backends::len).sum(),
            draining,
        });
    }

    /// The node's state after a pass, counted by the caller (the reconciler keeps the counts
    /// with its record of the node, so a pass costs no walk over every frontend).
    pub fn record_counts(&self, c: &Counts) {
        self.frontends.set(gauge(c.programmed));
        self.frontends_draining.set(gauge(c.draining));
        self.vips.set(gauge(c.vips));
        self.backends.set(gauge(c.backends));
        self.map_entries
            .get_or_create(&MapLabels {
                map: MAP_FRONTENDS_V4,
            })
            .set(gauge(c.in_maps));
    }

    /// Mirrors the datapath's own counters (absolute values; they live in the kernel).
    pub fn record_counters(&self, counters: &BTreeMap<Verdict, Stat>) {
        for (verdict, stat) in counters {
            let labels = VerdictLabels {
                verdict: verdict.name(),
            };
            let packets = self.datapath_packets.get_or_create(&labels);
            packets.inner().store(stat.packets, Ordering::Relaxed);
            let bytes = self.datapath_bytes.get_or_create(&labels);
            bytes.inner().store(stat.bytes, Ordering::Relaxed);
        }
    }

    pub fn record_pass(&self, took: Duration, failed_steps: &BTreeMap<&'static str, usize>) {
        self.pass_duration.observe(took.as_secs_f64());
        for (step, n) in failed_steps {
            self.step_failures
                .get_or_create(&StepLabels { step })
                .inc_by(*n as u64);
        }
    }

    pub fn watch_error(&self, resource: &str) {
        self.watch_errors
            .get_or_create(&ResourceLabels {
                resource: resource.to_owned(),
            })
            .inc();
    }
}

/// What a pass leaves on the node, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Wanted frontends programmed as wanted.
    pub programmed: usize,
    /// Frontends in the maps (wanted or draining).
    pub in_maps: usize,
    /// VIPs on the interface.
    pub vips: usize,
    /// Local endpoints over the frontends in the maps.
    pub backends: usize,
    pub draining: usize,
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Liveness and readiness, shared with the HTTP server.
#[derive(Clone, Debug, Default)]
pub struct Health {
    synced: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Every watch completed its first list.
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Relaxed);
    }

    /// A pass after the first list applied every step. Stays ready from then on: later failures
    /// are retried and counted, not a reason to restart or unschedule the daemon.
    pub fn pass_done(&self, failed: usize) {
        if failed == 0 && self.synced.load(Ordering::Relaxed) {
            self.ready.store(true, Ordering::Relaxed);
        }
    }

    /// `Ok` when ready, else what it waits for.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.synced.load(Ordering::Relaxed) {
            Err("waiting for the first list of every watch")
        } else if !self.ready.load(Ordering::Relaxed) {
            Err("waiting for a reconcile pass without failures")
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
