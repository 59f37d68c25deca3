//! `l3lb allocate`'s loop: only the allocator, with its own Service and pool watches.
use std::sync::Arc;

use kube::Client;
use tokio::sync::Notify;
use tracing::info;

use super::signals::{Shutdown, stop};
use crate::{
    core::config::AllocatorConfig,
    k8s::{allocator, events::announcements::VipEvents, watch::AllocatorStores},
    metrics::Metrics,
};

/// `l3lb allocate`: only the allocator, with its own Service and pool watches, until
/// SIGTERM/SIGINT (which releases a held Lease). Ready (`metrics.health`) once both were listed.
pub async fn allocate(
    client: Client,
    config: &AllocatorConfig,
    metrics: Metrics,
) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::listen();
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
        _ = shutdown.requested() => {
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
    shutdown.requested().await;
    info!("shutting down");
    stop(Some(elector)).await;
    Ok(())
}
