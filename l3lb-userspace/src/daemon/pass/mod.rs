//! One reconcile pass: observe the node (or trust the executor's record of it), plan against the
//! desired state, apply. The loop that drives the passes is in [`crate::daemon`].
mod housekeeping;
mod timed;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use tracing::{debug, info, warn};

use crate::{
    core::config::Config,
    core::{
        model::{Backends, DatapathSettings, Desired, FrontendId, Observed},
        plan::{Changed, Step, configure, plan, plan_vips, renewals},
    },
    metrics::{Counts, Metrics, timing::PassStages},
    node::{
        executor::{AddressTable, FrontendTable, Outcome, apply},
        observe::{AddressObserver, FrontendObserver},
    },
};

/// Owns the node-side state between passes.
pub struct Reconciler<F, A> {
    config: Config,
    frontends: F,
    addresses: A,
    draining: BTreeMap<FrontendId, std::time::Instant>,
    metrics: Metrics,
    /// When the wanted VIPs last had their lifetime renewed (all of them successfully).
    renewed: Option<std::time::Instant>,
    /// The node as last observed plus every step applied since; `None` after a failed step, so
    /// the next pass observes again.
    known: Option<Observed>,
    /// Uplinks found not forwarding by the last check, with why.
    not_forwarding: BTreeMap<String, String>,
    /// The last frontend whose counters the previous refresh read; None: start from the first.
    stats_cursor: Option<FrontendId>,
    /// Interfaces that take redirected frames, as last listed (only with `--xdp-redirect`).
    redirect_capable: BTreeSet<u32>,
    /// Listing them failed and that was logged.
    redirect_warned: bool,
    /// Where the last pass spent its time (observe, plan, maps, netlink, record).
    stages: PassStages,
    /// Local endpoints over every frontend of the record (`known`), kept with it.
    backends: usize,
}

/// How many frontends' counters one housekeeping tick reads.
pub const FRONTEND_STATS_CHUNK: usize = 1024;

impl<F: FrontendTable + FrontendObserver, A: AddressTable + AddressObserver> Reconciler<F, A> {
    pub fn new(config: Config, frontends: F, addresses: A, metrics: Metrics) -> Self {
        Self {
            config,
            frontends,
            addresses,
            draining: BTreeMap::new(),
            metrics,
            renewed: None,
            known: None,
            not_forwarding: BTreeMap::new(),
            stats_cursor: None,
            redirect_capable: BTreeSet::new(),
            redirect_warned: false,
            stages: PassStages::default(),
            backends: 0,
        }
    }

    /// The stages of the last pass that [`Reconciler::quick_pass`] or [`Reconciler::pass`]
    /// ran; the caller adds its own (desired state, Events).
    pub fn stages(&self) -> PassStages {
        self.stages
    }

    /// What the datapath should be told besides its frontends.
    fn wanted_settings(&self) -> DatapathSettings {
        DatapathSettings {
            prefixes: self.config.prefixes.iter().copied().collect(),
            redirect_targets: match self.config.xdp_redirect {
                true => self.redirect_capable.clone(),
                false => BTreeSet::new(),
            },
        }
    }

    /// Every address on the host's interfaces.
    pub async fn host_addresses(&self) -> anyhow::Result<Vec<IpAddr>> {
        Ok(self.addresses.host_addresses().await?)
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
            not_forwarding: self.not_forwarding.clone(),
            settings: self.frontends.settings()?,
        })
    }

    /// One full pass: observe, plan, apply, record metrics. Errors are logged; the next pass
    /// retries. Heals drift (an address removed by hand).
    pub async fn pass(&mut self, desired: &Desired) -> Outcome {
        self.known = None;
        self.check_uplinks().await;
        self.refresh_redirect_targets().await;
        self.quick_pass(desired).await
    }

    /// A pass that trusts the executor's own record of the node since the last full pass
    /// instead of observing it again (one netlink dump and a walk of the maps saved). Observes
    /// when there is no record: at start and after a failed step.
    pub async fn quick_pass(&mut self, desired: &Desired) -> Outcome {
        self.quick_pass_changed(desired, &Changed::All).await
    }

    /// [`Reconciler::quick_pass`] that, trusting its record of the node, plans only the VIPs
    /// in `changed` (and those with a frontend draining): what desired state recomputed since
    /// the last pass. A change of one Service costs the same whatever the node serves.
    pub async fn quick_pass_changed(&mut self, desired: &Desired, changed: &Changed) -> Outcome {
        let started = std::time::Instant::now();
        self.stages = PassStages::default();
        let outcome = self.pass_inner(desired, changed).await;
        let recording = std::time::Instant::now();
        self.refresh_counters();
        self.metrics
            .record_pass(started.elapsed(), &outcome.failed_steps);
        self.stages.record += recording.elapsed();
        outcome
    }

    async fn pass_inner(&mut self, desired: &Desired, changed: &Changed) -> Outcome {
        let observing = std::time::Instant::now();
        // The record matches desired state but for `changed`, unless the uplinks changed
        // since (whether any address is wanted at all).
        let trusted = self
            .known
            .as_ref()
            .is_some_and(|k| k.not_forwarding == self.not_forwarding);
        let known = match self.known.take() {
            Some(known) => Ok(known),
            None => self.observe().await.inspect(|o| {
                self.backends = o.frontends.values().map(Backends::len).sum();
            }),
        };
        self.stages.observe = observing.elapsed();
        let mut observed = match known {
            Ok(o) => Observed {
                not_forwarding: self.not_forwarding.clone(),
                ..o
            },
            Err(error) => {
                warn!(%error, "cannot read the node's state; retrying next pass");
                return Outcome {
                    failed: 1,
                    failed_steps: [("observe", 1)].into(),
                    ..Outcome::default()
                };
            }
        };
        let now = std::time::Instant::now();
        let planning = now;
        let renew = renew_due(
            self.config.address_lifetime,
            self.config.resync_interval,
            self.renewed,
            now,
        );
        let (prefixes, drain) = (&self.config.prefixes, self.config.drain_timeout);
        let p = match changed {
            Changed::Vips(vips) if trusted => plan_vips(
                desired,
                &observed,
                vips,
                prefixes,
                &self.draining,
                now,
                drain,
            ),
            _ => plan(desired, &observed, prefixes, &self.draining, now, drain),
        };
        for id in p
            .draining
            .keys()
            .filter(|id| !self.draining.contains_key(id))
        {
            info!(frontend = %id, drain = ?self.config.drain_timeout, "frontend draining");
        }
        self.draining = p.draining;
        let mut steps: Vec<_> = configure(&self.wanted_settings(), &observed)
            .into_iter()
            .chain(p.steps)
            .collect();
        if renew {
            steps.extend(renewals(desired, &observed, &self.config.prefixes));
        }
        self.stages.plan = planning.elapsed();
        self.stages.steps = steps.len();
        let applying = std::time::Instant::now();
        let mut frontends = timed::TimedFrontends {
            inner: &mut self.frontends,
            spent: std::time::Duration::ZERO,
        };
        let outcome = apply(&steps, &mut frontends, &self.addresses).await;
        self.stages.maps = frontends.spent;
        self.stages.netlink = applying.elapsed().saturating_sub(self.stages.maps);
        let recording = std::time::Instant::now();
        if renew && !outcome.failed_steps.contains_key("renew_address") {
            self.renewed = Some(now);
        }
        if outcome.failed == 0 {
            self.backends = self
                .backends
                .saturating_add_signed(backends_added(&observed, &steps));
            observed.record(&steps);
            self.known = Some(observed);
        }
        match &self.known {
            // Every step succeeded, so every wanted frontend is programmed as wanted.
            Some(after) => self.metrics.record_counts(&Counts {
                programmed: desired.frontends.len(),
                in_maps: after.frontends.len(),
                vips: after.addresses.len(),
                backends: self.backends,
                draining: self.draining.len(),
            }),
            None => match self.observe().await {
                Ok(after) => self
                    .metrics
                    .record_state(desired, &after, self.draining.len()),
                Err(error) => debug!(%error, "cannot re-read the node's state for metrics"),
            },
        }
        self.stages.record = recording.elapsed();
        outcome
    }

    /// The node as the executor last recorded it, or as observed now when there is no record.
    pub async fn node_now(&self) -> anyhow::Result<Observed> {
        match &self.known {
            Some(known) => Ok(Observed {
                not_forwarding: self.not_forwarding.clone(),
                ..known.clone()
            }),
            None => self.observe().await,
        }
    }

    /// Frontends kept in the maps only while their flows drain.
    pub fn draining(&self) -> BTreeSet<FrontendId> {
        self.draining.keys().copied().collect()
    }

    /// Whether the last check found an uplink that does not forward.
    pub fn not_forwarding(&self) -> bool {
        !self.not_forwarding.is_empty()
    }

    /// The frontend table itself, for what passes do not plan (L2 mode's responder entries).
    pub fn frontends_mut(&mut self) -> &mut F {
        &mut self.frontends
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// When the earliest drain ends, if any frontend is draining.
    pub fn next_drain_deadline(&self) -> Option<std::time::Instant> {
        let now = std::time::Instant::now();
        self.draining
            .values()
            .map(|since| *since + self.config.drain_timeout)
            // Past: already drained (a frontend whose endpoints all stay terminating).
            .filter(|deadline| *deadline > now)
            .min()
    }
}

/// How many local endpoints `steps` add to (or, negative, take from) the frontends of
/// `before`.
fn backends_added(before: &Observed, steps: &[Step]) -> isize {
    let had = |id: &FrontendId| before.frontends.get(id).map_or(0, Backends::len) as isize;
    steps
        .iter()
        .map(|step| match step {
            Step::UpsertFrontend { id, endpoints, .. } => endpoints.len() as isize - had(id),
            Step::RemoveFrontend(id) => -had(id),
            _ => 0,
        })
        .sum()
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
mod tests;
