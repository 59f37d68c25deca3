//! The daemon's loop: on watch changes (coalesced for a few milliseconds), on a periodic resync
//! and when a drain ends, compute desired state and run a reconcile pass. Watch-driven passes
//! trust the executor's record of the node; the periodic resync observes it again and heals
//! drift. Beside it run, unless turned off (`--allocator=false`), the allocator election and,
//! while elected, the [`Allocator`](allocator::Allocator). [`allocate`] runs only those
//! (`l3lb allocate`); [`pass`] is one reconcile pass.
mod allocate;
pub mod control;
mod l2;
mod node_facts;
pub mod pass;
mod signals;
pub mod status;

use std::{sync::Arc, time::Duration};

pub use allocate::allocate;
use kube::Client;
use node_facts::{check_node_addresses, refresh_host};
use signals::{Shutdown, stop};
use tokio::{sync::Notify, time::Instant};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{
    core::{
        desired::{
            Scope,
            cache::DesiredCache,
            node::{exclusion, facts},
        },
        pool::{L3lbPool, validate},
    },
    daemon::pass::Reconciler,
    k8s::{
        allocator,
        events::{
            announcements::{Forfeit, Owners, VipEvents},
            refusals::RefusalEvents,
        },
        trigger::Trigger,
        watch::{self, changes::Pending},
    },
    metrics::timing::{PassStages, mono_ns},
    node::{
        datapath::neigh::ResponderTable,
        executor::{AddressTable, FrontendTable},
        observe::{AddressObserver, FrontendObserver},
    },
};

/// Longest a pass waits for its Events to be published.
const EVENTS_TIMEOUT: Duration = Duration::from_secs(5);

/// How often, between passes, the datapath counters are copied into the metrics and the uplinks
/// are checked for their programs (a VIP must not stay announced where nothing forwards it).
const HOUSEKEEPING: Duration = Duration::from_secs(5);

/// Longest the start waits for the L3lbPools' first list (externalIPs are checked against them)
/// before it serves without them; a cluster without the CRD never lists them.
const POOLS_WAIT: Duration = Duration::from_secs(10);

/// Runs until SIGTERM/SIGINT. Addresses and maps are left as they are on exit, so a restarted
/// daemon finds them wanted and changes nothing.
pub async fn run<
    F: FrontendTable + FrontendObserver + ResponderTable,
    A: AddressTable + AddressObserver,
>(
    client: Client,
    mut reconciler: Reconciler<F, A>,
) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::listen();
    let config = reconciler.config().clone();
    let changed = Arc::new(Trigger::default());
    let allocate = Arc::new(Notify::new());
    let metrics = reconciler.metrics().clone();
    let stores = watch::start(
        client.clone(),
        &config.node_name,
        changed.clone(),
        allocate.clone(),
        metrics.clone(),
    );
    let mut events = RefusalEvents::new(client.clone(), &config.node_name);
    let vip_events = VipEvents::start(client.clone(), &config.node_name, metrics.clone());
    // Single-binary mode: this daemon also stands for the allocator Lease, sharing its Service
    // watch; otherwise `l3lb allocate` runs elsewhere, under an identity that may write status.
    let l2_client = client.clone();
    let elector = config.allocator.then(|| {
        let stores = stores.for_allocator();
        let config = config.allocator_config();
        allocator::start(
            client,
            &config,
            stores,
            allocate,
            vip_events.clone(),
            metrics.clone(),
        )
    });
    let mut owners = Owners::default();
    let mut l2 = {
        let answering = reconciler
            .frontends_mut()
            .responders()
            .unwrap_or_else(|error| {
                warn!(%error, "cannot read the ARP/NDP responder maps; starting from none");
                Default::default()
            });
        let namespace = config
            .l2_lease_namespace
            .clone()
            .unwrap_or_else(|| l2_client.default_namespace().to_owned());
        l2::L2::new(
            l2_client,
            namespace,
            &config,
            changed.clone(),
            metrics.clone(),
            answering,
        )
    };

    info!(node = %config.node_name, "waiting for the first list of Services, EndpointSlices and the Node");
    tokio::select! {
        ready = stores.wait_until_ready() => ready?,
        _ = shutdown.requested() => {
            stop(elector).await;
            return Ok(());
        }
    }
    info!(
        services = stores.services.len(),
        local_endpointslices = stores.slices.lock().len(),
        "watches synced"
    );
    check_node_addresses(&stores, &config)?;
    if tokio::time::timeout(POOLS_WAIT, stores.wait_until_pools_ready())
        .await
        .is_err()
    {
        warn!(wait = ?POOLS_WAIT, "L3lbPools not listed yet (is deploy/base/crd.yaml applied?); externalIPs are served once they are");
    }
    metrics.health.set_synced();
    let mut host = Vec::new();
    refresh_host(&reconciler, &mut host).await;

    let mut resync = tokio::time::interval(config.resync_interval);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pass_no: u64 = 0;
    let mut cache = DesiredCache::new(Scope {
        external_ips: config.external_ips,
        ..Scope::new(&config.node_name, &config.prefixes, &config.class)
    });
    let mut queries = control::serve(&config.control_socket);
    loop {
        let drain_deadline = reconciler.next_drain_deadline().map(Instant::from_std);
        let full = tokio::select! {
            _ = changed.fired() => {
                changed.settle().await;
                false
            }
            _ = resync.tick() => true,
            _ = sleep_until_opt(drain_deadline) => false,
            // L2 mode: a node whose Lease stops changing turns dead without any watch event.
            _ = sleep_opt(l2.next_expiry()) => false,
            _ = housekeeping.tick() => {
                reconciler.refresh_counters();
                reconciler.refresh_frontend_stats();
                let host_changed = refresh_host(&reconciler, &mut host).await;
                let targets_changed = reconciler.refresh_redirect_targets().await;
                if !reconciler.check_uplinks().await && !host_changed && !targets_changed {
                    continue;
                }
                false
            }
            Some(query) = queries.recv() => {
                let leader = elector.as_ref().map(|e| e.is_leader());
                let mut answer = answer(&query.request, &cache, &reconciler, leader).await;
                if let control::Answer::Explain(explanation) = &mut answer {
                    l2.explain(explanation);
                }
                let _ = query.reply.send(answer);
                continue;
            }
            _ = shutdown.requested() => {
                info!("shutting down; addresses and maps stay in place for the next start");
                stop(elector).await;
                return Ok(());
            }
        };
        pass_no += 1;
        let span = info_span!("reconcile", pass = pass_no, full);
        async {
            let first_change_ns = changed.take_first();
            let started_ns = mono_ns();
            let started = std::time::Instant::now();
            let node = stores.node(&config.node_name);
            if full {
                // Recomputed from scratch on every resync, like the node is observed afresh.
                cache = DesiredCache::new(cache.scope().clone());
                refresh_host(&reconciler, &mut host).await;
            }
            let pool_objects = stores.pools.state();
            let pool_refs: Vec<&L3lbPool> = pool_objects.iter().map(AsRef::as_ref).collect();
            let pools = validate(&pool_refs).0;
            cache.set_pools(pools.clone());
            cache.set_facts(facts(
                node.as_deref(),
                &config.pod_cidrs,
                &host,
                &config.prefixes,
            ));
            let excluded = exclusion(node.as_deref());
            events.exclusion(excluded);
            metrics.node_excluded.set(i64::from(excluded.is_some()));
            cache.set_exclusion(excluded);
            let recomputed = {
                let mut slices = stores.slices.lock();
                let dirty = slices.take_dirty();
                match stores.service_changes.take() {
                    // A fresh cache (a resync) takes every Service too.
                    Pending::Keys(keys) if !full => {
                        let now = keys.into_iter().map(|k| {
                            let svc = stores.service(&k);
                            (k, svc)
                        });
                        cache.update_of(now, &slices, dirty)
                    }
                    _ => cache.update(&stores.services.state(), &slices, dirty),
                }
            };
            let mut changed_vips = cache.take_changed();
            let want = cache.current();
            debug!(recomputed, "desired state");
            // L2 pools' addresses: only where this node announces them, never on the host.
            let (want, l2_round) = {
                let mut slices = stores.slices.lock();
                slices.set_ready_matters(pools.iter().any(crate::core::pool::Pool::is_l2));
                l2.decide(&want, &pools, &cache, &slices, excluded.is_some())
            };
            if let Some(round) = &l2_round {
                if let crate::core::plan::Changed::Vips(vips) = &mut changed_vips {
                    vips.extend(round.moved());
                }
                l2.withdraw(round, reconciler.frontends_mut());
            }
            let desired_took = started.elapsed();
            let outcome = if full {
                reconciler.pass(&want).await
            } else {
                reconciler.quick_pass_changed(&want, &changed_vips).await
            };
            let mut stages = PassStages {
                first_change_ns,
                started_ns,
                desired: desired_took,
                ..reconciler.stages()
            };
            let publishing = std::time::Instant::now();
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
            let why = match (excluded, reconciler.not_forwarding()) {
                (Some(_), _) => Forfeit::NodeExcluded,
                (None, true) => Forfeit::NotForwarding,
                (None, false) => Forfeit::NoLocalEndpoint,
            };
            metrics
                .endpoints_refused
                .set(cache.endpoints_refused() as i64);
            vip_events.send(owners.events(
                &config.node_name,
                &outcome.assumed,
                &outcome.forfeited,
                why,
                |vip| cache.services_of(vip),
            ));
            if let Some(round) = l2_round {
                vip_events.send(l2.answer(round, reconciler.frontends_mut()));
            }
            stages.events = publishing.elapsed();
            stages.report(&metrics.pass_stages, full);
        }
        .instrument(span)
        .await;
    }
}

async fn sleep_opt(after: Option<Duration>) {
    match after {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Answers a control query from the state the loop acts on.
async fn answer<F: FrontendTable + FrontendObserver, A: AddressTable + AddressObserver>(
    request: &control::Request,
    cache: &DesiredCache,
    reconciler: &Reconciler<F, A>,
    allocator_leader: Option<bool>,
) -> control::Answer {
    let observed = match reconciler.node_now().await {
        Ok(o) => o,
        Err(error) => return control::Answer::Error(format!("cannot read the node: {error:#}")),
    };
    let draining = reconciler.draining();
    let config = reconciler.config();
    match request {
        control::Request::Status => {
            let node = status::NodeState {
                node: &config.node_name,
                interface: &config.interface,
                uplinks: &config.uplinks,
                observed: &observed,
                draining: &draining,
                allocator_leader,
            };
            let desired = cache.current();
            control::Answer::Status(Box::new(status::snapshot(cache, &desired, &node)))
        }
        control::Request::Explain { service } => {
            let Some((namespace, name)) = service.split_once('/') else {
                return control::Answer::Error(format!(
                    "{service:?}: name the Service as namespace/name"
                ));
            };
            let key = crate::core::model::ServiceKey {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            };
            let node = crate::core::desired::explain::NodeView {
                observed: &observed,
                draining: &draining,
            };
            control::Answer::Explain(Box::new(cache.explain(&key, &node)))
        }
    }
}
