//! The reconcile loop: on every watch change (debounced), on a periodic resync and when a drain
//! ends, compute desired state, observe the node, plan, apply.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use kube::Client;
use tokio::{sync::Notify, time::Instant};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{
    apply::{AddressTable, FrontendTable, Outcome, apply},
    config::Config,
    desired::{
        desired,
        node::{exclude, exclusion},
    },
    events::RefusalEvents,
    metrics::Metrics,
    model::{Desired, FrontendId, Observed},
    plan::{plan, renewals},
    watch,
};

/// Watch events arriving within this window are handled by one pass.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Longest a pass waits for its Events to be published.
const EVENTS_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the datapath counters are copied into the metrics between passes.
const COUNTERS_REFRESH: Duration = Duration::from_secs(5);

/// Owns the node-side state between passes.
pub struct Reconciler<F, A> {
    config: Config,
    frontends: F,
    addresses: A,
    draining: BTreeMap<FrontendId, std::time::Instant>,
    metrics: Metrics,
    /// When the wanted VIPs last had their lifetime renewed (all of them successfully).
    renewed: Option<std::time::Instant>,
}

impl<F: FrontendTable, A: AddressTable> Reconciler<F, A> {
    pub fn new(config: Config, frontends: F, addresses: A, metrics: Metrics) -> Self {
        Self {
            config,
            frontends,
            addresses,
            draining: BTreeMap::new(),
            metrics,
            renewed: None,
        }
    }

    /// The node as it is now: frontends in the maps, addresses inside the managed prefixes.
    pub async fn observe(&self) -> anyhow::Result<Observed> {
        let in_prefix = |ip: &IpAddr| self.config.prefixes.iter().any(|p| p.contains(ip));
        let addresses: BTreeSet<IpAddr> = self
            .addresses
            .addresses()
            .await?
            .into_iter()
            .filter(in_prefix)
            .collect();
        Ok(Observed {
            frontends: self.frontends.frontends()?,
            addresses,
        })
    }

    /// One pass: observe, plan, apply, record metrics. Errors are logged; the next pass retries.
    pub async fn pass(&mut self, desired: &Desired) -> Outcome {
        let started = std::time::Instant::now();
        let outcome = self.pass_inner(desired).await;
        self.refresh_counters();
        self.metrics
            .record_pass(started.elapsed(), &outcome.failed_steps);
        outcome
    }

    /// Mirrors the datapath's verdict counters into the metrics.
    pub fn refresh_counters(&self) {
        match self.frontends.counters() {
            Ok(counters) => self.metrics.record_counters(&counters),
            Err(error) => debug!(%error, "cannot read the datapath counters"),
        }
    }

    async fn pass_inner(&mut self, desired: &Desired) -> Outcome {
        let observed = match self.observe().await {
            Ok(o) => o,
            Err(error) => {
                warn!(%error, "cannot read the node's state; retrying next pass");
                return Outcome {
                    applied: 0,
                    failed: 1,
                    failed_steps: [("observe", 1)].into(),
                };
            }
        };
        let now = std::time::Instant::now();
        let renew = renew_due(
            self.config.address_lifetime,
            self.config.resync_interval,
            self.renewed,
            now,
        );
        let p = plan(
            desired,
            &observed,
            &self.config.prefixes,
            &self.draining,
            now,
            self.config.drain_timeout,
        );
        for id in p
            .draining
            .keys()
            .filter(|id| !self.draining.contains_key(id))
        {
            info!(frontend = %id, drain = ?self.config.drain_timeout, "frontend draining");
        }
        self.draining = p.draining;
        let changes = !p.steps.is_empty();
        let mut steps = p.steps;
        if renew {
            steps.extend(renewals(desired, &observed, &self.config.prefixes));
        }
        let outcome = apply(&steps, &mut self.frontends, &self.addresses).await;
        if renew && !outcome.failed_steps.contains_key("renew_address") {
            self.renewed = Some(now);
        }
        let after = if !changes {
            Ok(observed)
        } else {
            self.observe().await
        };
        match after {
            Ok(after) => self
                .metrics
                .record_state(desired, &after, self.draining.len()),
            Err(error) => debug!(%error, "cannot re-read the node's state for metrics"),
        }
        outcome
    }

    /// When the earliest drain ends, if any frontend is draining.
    pub fn next_drain_deadline(&self) -> Option<std::time::Instant> {
        self.draining
            .values()
            .min()
            .map(|since| *since + self.config.drain_timeout)
    }
}

/// Runs until SIGTERM/SIGINT. Addresses and maps are left as they are on exit, so a restarted
/// daemon finds them wanted and changes nothing.
pub async fn run<F: FrontendTable, A: AddressTable>(
    client: Client,
    mut reconciler: Reconciler<F, A>,
) -> anyhow::Result<()> {
    let config = reconciler.config.clone();
    let changed = Arc::new(Notify::new());
    let metrics = reconciler.metrics.clone();
    let stores = watch::start(
        client.clone(),
        &config.node_name,
        changed.clone(),
        metrics.clone(),
    );
    let mut events = RefusalEvents::new(client, &config.node_name);

    info!(node = %config.node_name, "waiting for the first list of Services, EndpointSlices and the Node");
    tokio::select! {
        ready = stores.wait_until_ready() => ready?,
        _ = shutdown() => return Ok(()),
    }
    info!(
        services = stores.services.len(),
        endpointslices = stores.slices.len(),
        "watches synced"
    );
    metrics.health.set_synced();

    let mut resync = tokio::time::interval(config.resync_interval);
    let mut counters = tokio::time::interval(COUNTERS_REFRESH);
    counters.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pass_no: u64 = 0;
    loop {
        let drain_deadline = reconciler.next_drain_deadline().map(Instant::from_std);
        tokio::select! {
            _ = changed.notified() => tokio::time::sleep(DEBOUNCE).await,
            _ = resync.tick() => {},
            _ = sleep_until_opt(drain_deadline) => {},
            _ = counters.tick() => {
                reconciler.refresh_counters();
                continue;
            }
            _ = shutdown() => {
                info!("shutting down; addresses and maps stay in place for the next start");
                return Ok(());
            }
        }
        pass_no += 1;
        let span = info_span!("reconcile", pass = pass_no);
        async {
            let services = stores.services.state();
            let slices = stores.slices.state();
            let services: Vec<_> = services.iter().map(|s| s.as_ref()).collect();
            let slices: Vec<_> = slices.iter().map(|s| s.as_ref()).collect();
            let excluded = exclusion(stores.node(&config.node_name).as_deref());
            events.exclusion(excluded);
            metrics.node_excluded.set(i64::from(excluded.is_some()));
            let want = exclude(
                desired(&services, &slices, &config.node_name, &config.prefixes),
                excluded,
            );
            let outcome = reconciler.pass(&want).await;
            metrics.health.pass_done(outcome.failed);
            debug!(
                applied = outcome.applied,
                failed = outcome.failed,
                "pass done"
            );
            // Bounded, so an unreachable API server cannot hold up the passes that renew the
            // VIPs' lifetimes; unpublished Events are retried next pass.
            if tokio::time::timeout(EVENTS_TIMEOUT, events.report(&want.refusals))
                .await
                .is_err()
            {
                debug!("publishing Events timed out; retrying next pass");
            }
        }
        .instrument(span)
        .await;
    }
}

/// Whether this pass renews the VIPs' lifetimes: on the first pass (without a lifetime too, so
/// addresses an earlier run gave one become permanent), then, with a lifetime, once at least half
/// a resync interval has passed. Passes come at least every resync interval, so renewals are
/// never more than about one interval apart (config keeps that under half the lifetime), yet a
/// burst of watch-driven passes does not re-add every VIP each time.
pub fn renew_due(
    lifetime: Option<Duration>,
    resync: Duration,
    last: Option<std::time::Instant>,
    now: std::time::Instant,
) -> bool {
    match (lifetime, last) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(_), Some(last)) => now.saturating_duration_since(last) >= resync / 2,
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(error) => {
            warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the daemon");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
