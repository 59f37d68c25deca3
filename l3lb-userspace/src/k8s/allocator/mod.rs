//! The address allocator: while this daemon holds the allocator Lease, it turns the Services and
//! L3lbPools into `status.loadBalancer.ingress` writes ([`allocate`], pure, then
//! [`status::changes`]) and Warning Events for the Services it cannot give addresses to. Only the
//! Lease holder runs passes, so every refusal is reported once, not once per node. It runs inside
//! every `l3lb run` (single-binary mode) or alone as `l3lb allocate` ([`crate::daemon::allocate`]):
//! the same [`start`] either way.
mod pool_status;
mod summary;

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use summary::Summary;
use tokio::sync::{Notify, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{
    core::config::AllocatorConfig,
    core::{
        allocate::{
            allocate, left_alone,
            status::{self, StatusChange},
        },
        class::ClassFilter,
        model::ServiceKey,
        pool::{L3lbPool, PoolProblem, validate},
    },
    k8s::{
        events::{
            announcements::{VipEvent, VipEvents},
            refusals::RefusalEvents,
        },
        leader::{
            Leadership,
            elector::{Elector, ElectorHandle},
        },
        watch::AllocatorStores,
    },
    metrics::Metrics,
};

/// Services written (or found changed) since the store's copy: the resourceVersion that copy has.
/// Until the watch brings a newer one, a pass would decide on stale data, so it skips them.
type Outdated = HashMap<ServiceKey, Option<String>>;

/// After a failed status write, the next pass comes this soon.
const RETRY: Duration = Duration::from_secs(1);
/// Longest a pass waits for its Events to be published.
const EVENTS_TIMEOUT: Duration = Duration::from_secs(5);

/// How a status write ended.
enum Written {
    /// Written, or moot (the Service changed or went): wait for the watch.
    Done,
    Retry,
}

pub struct Allocator {
    pub client: Client,
    /// Identity in the Lease and in Events (a node's name, or an `l3lb allocate` replica's).
    pub identity: String,
    pub prefixes: Vec<IpNet>,
    pub class: ClassFilter,
    /// Services and pools are read from here.
    pub stores: AllocatorStores,
    /// Notified on Service and pool changes.
    pub trigger: Arc<Notify>,
    pub leadership: watch::Receiver<Leadership>,
    /// A pass at least this often while leading.
    pub resync: Duration,
    /// Where the Normal `AddressAssigned` Events go (published in the background).
    pub events: VipEvents,
    /// Counts the passes.
    pub metrics: Metrics,
}

/// Stands for the allocator Lease and runs the [`Allocator`] on the current runtime; stopping the
/// returned handle releases the Lease.
pub fn start(
    client: Client,
    config: &AllocatorConfig,
    stores: AllocatorStores,
    trigger: Arc<Notify>,
    events: VipEvents,
    metrics: Metrics,
) -> ElectorHandle {
    let namespace = config
        .lease
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    info!(lease = %config.lease.name, %namespace, identity = %config.identity,
        duration = ?config.lease.duration, "standing for the address allocator Lease");
    let (elector, leadership) = Elector::new(
        client.clone(),
        &namespace,
        &config.lease.name,
        &config.identity,
        config.lease.duration,
    );
    tokio::spawn(
        Allocator {
            client,
            identity: config.identity.clone(),
            prefixes: config.prefixes.clone(),
            class: config.class.clone(),
            stores,
            trigger,
            leadership,
            resync: config.resync_interval,
            events,
            metrics,
        }
        .run(),
    );
    elector.spawn()
}

/// Waits until the published leadership is `leading`; `false` once the elector is gone.
async fn until_leading(rx: &mut watch::Receiver<Leadership>, leading: bool) -> bool {
    rx.wait_for(|l| l.is_leader() == leading).await.is_ok()
}

impl Allocator {
    /// Runs until the elector stops: passes while leading, idle otherwise.
    pub async fn run(mut self) {
        let mut refusals = RefusalEvents::allocator(self.client.clone(), &self.identity);
        let mut problems: BTreeSet<PoolProblem> = BTreeSet::new();
        let mut outdated = Outdated::new();
        let mut summary = Summary::default();
        loop {
            if !until_leading(&mut self.leadership, true).await {
                return;
            }
            let mut leader = self.leadership.clone();
            tokio::select! {
                ready = self.stores.wait_until_ready() => if ready.is_err() { return },
                _ = until_leading(&mut leader, false) => continue,
            }
            info!(identity = %self.identity, pools = self.stores.pools.len(), "allocating addresses for LoadBalancer Services");
            // A new term: the refusals are this daemon's to report again.
            refusals.reset();
            problems.clear();
            summary.reset();
            let mut resync = tokio::time::interval(self.resync);
            let mut term = 0u64;
            while self.leadership.borrow().is_leader() {
                term += 1;
                let failed = self
                    .pass(&mut refusals, &mut problems, &mut outdated, &mut summary)
                    .instrument(info_span!("allocate", pass = term))
                    .await;
                self.metrics.allocation_passes.inc();
                let retry = async {
                    if failed {
                        tokio::time::sleep(RETRY).await
                    } else {
                        std::future::pending().await
                    }
                };
                tokio::select! {
                    _ = self.trigger.notified() => crate::k8s::trigger::settle(&self.trigger).await,
                    changed = self.leadership.changed() => if changed.is_err() { return },
                    _ = resync.tick() => {}
                    _ = retry => {}
                }
            }
            info!(identity = %self.identity, "no longer the allocator");
        }
    }

    /// One allocation pass; `true` if a status write failed (retried soon).
    async fn pass(
        &self,
        refusals: &mut RefusalEvents,
        problems: &mut BTreeSet<PoolProblem>,
        outdated: &mut Outdated,
        summary: &mut Summary,
    ) -> bool {
        let started = std::time::Instant::now();
        let pool_objects = self.stores.pools.state();
        let pool_refs: Vec<&L3lbPool> = pool_objects.iter().map(AsRef::as_ref).collect();
        let (pools, now_problems) = validate(&pool_refs);
        let now_problems: BTreeSet<PoolProblem> = now_problems.into_iter().collect();
        for p in now_problems.difference(problems) {
            warn!(pool = %p.pool, reason = %p.reason, "address pool problem");
        }
        *problems = now_problems;
        let services = self.stores.services.state();
        let refs: Vec<&Service> = services.iter().map(AsRef::as_ref).collect();
        let allocation = allocate(&refs, &pools, &self.prefixes, &self.class);
        summary.report(
            left_alone(&refs, &pools, &self.class),
            &self.prefixes,
            std::time::Instant::now(),
        );
        let changes = status::changes(&refs, &allocation);
        let usage = crate::core::allocate::usage::usage(&allocation, &pools, &self.prefixes);
        let pools_failed = pool_status::write(&self.client, &pool_refs, &usage).await;
        debug!(
            services = allocation.assigned.len(),
            changes = changes.len(),
            elapsed = ?started.elapsed(),
            "allocation"
        );
        let changed: HashMap<&ServiceKey, &Option<String>> = changes
            .iter()
            .map(|c| (&c.key, &c.resource_version))
            .collect();
        outdated.retain(|key, rv| changed.get(key).is_some_and(|now| *now == rv));
        let mut failed = pools_failed;
        for change in &changes {
            if outdated.contains_key(&change.key) {
                continue;
            }
            // A lapsed Lease (renewals failing) stops the writes at once.
            if !self.leadership.borrow().is_leader() {
                return false;
            }
            match self.write(change, &pools).await {
                Written::Done => {
                    outdated.insert(change.key.clone(), change.resource_version.clone());
                }
                Written::Retry => failed = true,
            }
        }
        if tokio::time::timeout(EVENTS_TIMEOUT, refusals.report(&allocation.refusals))
            .await
            .is_err()
        {
            debug!("publishing Events timed out; retrying next pass");
        }
        failed
    }

    /// Writes one Service's status.
    async fn write(&self, change: &StatusChange, pools: &[crate::core::allocate::Pool]) -> Written {
        let key = &change.key;
        let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
        let patch = Patch::Merge(change.patch());
        match api
            .patch_status(&key.name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => {
                let to: Vec<String> = change.to.iter().map(ToString::to_string).collect();
                if to.is_empty() {
                    info!(service = %key, from = ?change.from, "addresses released");
                } else {
                    let from_pools: Vec<&str> = change
                        .to
                        .iter()
                        .filter_map(|ip| pools.iter().find(|p| p.contains(ip)))
                        .map(|p| p.name.as_str())
                        .collect();
                    info!(service = %key, from = ?change.from, to = ?to, pools = ?from_pools, "addresses assigned");
                    self.events.send(vec![VipEvent {
                        service: key.clone(),
                        reason: "AddressAssigned",
                        note: format!(
                            "l3lb assigned {} (pool {})",
                            to.join(", "),
                            from_pools.join(", ")
                        ),
                    }]);
                }
                Written::Done
            }
            // Changed since the store saw it: the watch brings the new version, decided anew.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                debug!(service = %key, "Service changed meanwhile; deciding again");
                Written::Done
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                debug!(service = %key, "Service gone");
                Written::Done
            }
            Err(error) => {
                warn!(service = %key, %error, "cannot write the Service's status; retrying");
                Written::Retry
            }
        }
    }
}
