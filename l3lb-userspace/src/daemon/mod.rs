//! The daemon's loop: on watch changes (coalesced for a few milliseconds), on a periodic resync
//! and when a drain ends, compute desired state and run a reconcile pass. Watch-driven passes
//! trust the executor's record of the node; the periodic resync observes it again and heals
//! drift. Beside it run, unless turned off (`--allocator=false`), the allocator election and,
//! while elected, the [`Allocator`](allocator::Allocator). [`allocate`] runs only those
//! (`l3lb allocate`).
pub mod pass;
use std::{net::IpAddr, sync::Arc, time::Duration};

use kube::Client;
use tokio::{sync::Notify, time::Instant};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{
    core::config::AllocatorConfig,
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
        leader::elector::ElectorHandle,
        watch::{self, AllocatorStores},
    },
    metrics::Metrics,
    node::executor::{AddressTable, FrontendTable},
};

/// Longest a pass waits for its Events to be published.
const EVENTS_TIMEOUT: Duration = Duration::from_secs(5);

/// How often, between passes, the datapath counters are copied into the metrics and the uplinks
/// are checked for their programs (a VIP must not stay announced where nothing forwards it).
const HOUSEKEEPING: Duration = Duration::from_secs(5);

/// Longest the start waits for the L3lbPools' first list (externalIPs are checked against them)
/// before it serves without them; a cluster without the CRD never lists them.
const POOLS_WAIT: Duration = Duration::from_secs(10);

/// Longest a shutdown waits to release the allocator Lease.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs until SIGTERM/SIGINT. Addresses and maps are left as they are on exit, so a restarted
/// daemon finds them wanted and changes nothing.
pub async fn run<F: FrontendTable, A: AddressTable>(
    client: Client,
    mut reconciler: Reconciler<F, A>,
) -> anyhow::Result<()> {
    let config = reconciler.config().clone();
    let changed = Arc::new(Notify::new());
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

    info!(node = %config.node_name, "waiting for the first list of Services, EndpointSlices and the Node");
    tokio::select! {
        ready = stores.wait_until_ready() => ready?,
        _ = shutdown() => {
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
        warn!(wait = ?POOLS_WAIT, "L3lbPools not listed yet (is deploy/crd.yaml applied?); externalIPs are served once they are");
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
    loop {
        let drain_deadline = reconciler.next_drain_deadline().map(Instant::from_std);
        let full = tokio::select! {
            _ = changed.notified() => {
                crate::k8s::trigger::settle(&changed).await;
                false
            }
            _ = resync.tick() => true,
            _ = sleep_until_opt(drain_deadline) => false,
            _ = housekeeping.tick() => {
                reconciler.refresh_counters();
                reconciler.refresh_frontend_stats();
                let host_changed = refresh_host(&reconciler, &mut host).await;
                if !reconciler.check_uplinks().await && !host_changed {
                    continue;
                }
                false
            }
            _ = shutdown() => {
                info!("shutting down; addresses and maps stay in place for the next start");
                stop(elector).await;
                return Ok(());
            }
        };
        pass_no += 1;
        let span = info_span!("reconcile", pass = pass_no, full);
        async {
            let node = stores.node(&config.node_name);
            if full {
                // Recomputed from scratch on every resync, like the node is observed afresh.
                cache = DesiredCache::new(cache.scope().clone());
                refresh_host(&reconciler, &mut host).await;
            }
            let pool_objects = stores.pools.state();
            let pool_refs: Vec<&L3lbPool> = pool_objects.iter().map(AsRef::as_ref).collect();
            cache.set_pools(validate(&pool_refs).0);
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
            let (want, recomputed) = {
                let mut slices = stores.slices.lock();
                let dirty = slices.take_dirty();
                cache.desired(&stores.services.state(), &slices, dirty)
            };
            debug!(recomputed, "desired state");
            let outcome = if full {
                reconciler.pass(&want).await
            } else {
                reconciler.quick_pass(&want).await
            };
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
        }
        .instrument(span)
        .await;
    }
}

/// Reads the host's addresses outside the VIP prefixes into `host` (kept as they were when they
/// cannot be read); returns whether they changed. VIPs are left out: they are refused as such,
/// and with them the set would change on every announcement.
async fn refresh_host<F: FrontendTable, A: AddressTable>(
    reconciler: &Reconciler<F, A>,
    host: &mut Vec<IpAddr>,
) -> bool {
    let prefixes = &reconciler.config().prefixes;
    match reconciler.host_addresses().await {
        Ok(mut now) => {
            now.retain(|ip| !prefixes.iter().any(|p| p.contains(ip)));
            now.sort();
            now.dedup();
            let changed = now != *host;
            *host = now;
            changed
        }
        Err(error) => {
            warn!(%error, "cannot read the host's addresses; checking endpoints against the last known ones");
            false
        }
    }
}

/// Refuses to run when a --prefix covers one of the Node's own addresses: l3lb would announce
/// and DNAT what belongs to the node.
fn check_node_addresses(
    stores: &watch::Stores,
    config: &crate::core::config::Config,
) -> anyhow::Result<()> {
    let node = stores.node(&config.node_name);
    let covered: Vec<String> = node
        .as_deref()
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| {
            a.address
                .parse::<IpAddr>()
                .is_ok_and(|ip| config.prefixes.iter().any(|p| p.contains(&ip)))
        })
        .map(|a| format!("{} ({})", a.address, a.type_))
        .collect();
    if covered.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "--prefix covers addresses of Node {}: {}; narrow --prefix so it holds only VIPs",
        config.node_name,
        covered.join(", ")
    )
}

/// `l3lb allocate`: only the allocator, with its own Service and pool watches, until
/// SIGTERM/SIGINT (which releases a held Lease). Ready (`metrics.health`) once both were listed.
pub async fn allocate(
    client: Client,
    config: &AllocatorConfig,
    metrics: Metrics,
) -> anyhow::Result<()> {
    let trigger = Arc::new(Notify::new());
    let stores = AllocatorStores::start(client.clone(), trigger.clone(), metrics.clone());
    let events = VipEvents::start(client.clone(), &config.identity, metrics.clone());
    let elector = allocator::start(
        client,
        config,
        stores.clone(),
        trigger,
        events,
        metrics.clone(),
    );
    info!(identity = %config.identity, "waiting for the first list of Services and L3lbPools");
    tokio::select! {
        ready = stores.wait_until_ready() => ready?,
        _ = shutdown() => {
            stop(Some(elector)).await;
            return Ok(());
        }
    }
    info!(
        services = stores.services.len(),
        pools = stores.pools.len(),
        "watches synced"
    );
    // Nothing else to wait for: a standby replica is as ready as the leader.
    metrics.health.set_synced();
    metrics.health.pass_done(0);
    shutdown().await;
    info!("shutting down");
    stop(Some(elector)).await;
    Ok(())
}

/// Releases the allocator Lease, if this process stands for it.
async fn stop(elector: Option<ElectorHandle>) {
    if let Some(elector) = elector {
        elector.stop(RELEASE_TIMEOUT).await;
    }
}

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
