//! Watches: the node's kube reflector stores of Services, L3lbPools (which externalIPs a Service
//! may have) and its own Node and the index of its EndpointSlice endpoints ([`slices`]); the
//! allocator's of Services and L3lbPools (sharing the node's stores when both run in one
//! process); and triggers that fire on changes: the reconciler's on every node change, the
//! allocator's on Services and pools.
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::{
    Api, Client, Resource,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tracing::warn;

use crate::{
    core::{model::ServiceKey, pool::L3lbPool},
    k8s::trigger::{Fire, Trigger},
    metrics::Metrics,
};

pub mod changes;
pub mod leases;
pub mod slices;
mod trim;

/// Read handles to the watched objects.
#[derive(Clone)]
pub struct Stores {
    pub services: Store<Service>,
    /// Which Services changed since the reconciler last took them.
    pub service_changes: changes::ServiceChanges,
    /// This node's endpoints, by Service.
    pub slices: slices::LocalSlices,
    /// Only this node's Node (field selector on its name): at most one object.
    pub node: Store<Node>,
    /// Not part of [`Stores::wait_until_ready`], so a cluster without the CRD still has its
    /// VIPs served.
    pub pools: Store<L3lbPool>,
    /// Set once the Service, EndpointSlice and Node stores completed their first list.
    synced: watch::Receiver<bool>,
    /// Set once the pool store did.
    pools_synced: watch::Receiver<bool>,
}

/// Read handles to what the allocator reads: every Service and every L3lbPool.
#[derive(Clone)]
pub struct AllocatorStores {
    pub services: Store<Service>,
    /// Not part of the node's [`Stores::wait_until_ready`], so a cluster without the CRD still
    /// has its VIPs served.
    pub pools: Store<L3lbPool>,
    /// Set once the Service store (with the node: every node store) and the pool store
    /// completed their first list.
    synced: watch::Receiver<bool>,
}

/// A flag set when `ready` resolves. kube's `Store::wait_until_ready` wakes only the last task
/// that polled it (a oneshot receiver keeps one waker), so two tasks waiting on one store can
/// wait forever; a single task waits on the stores, everyone else on the flag.
fn flag<F>(ready: F) -> watch::Receiver<bool>
where
    F: Future<Output = Result<(), kube::runtime::reflector::store::WriterDropped>> + Send + 'static,
{
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if ready.await.is_ok() {
            tx.send_replace(true);
            // Kept, so waiters see `true` rather than a closed channel.
            tx.closed().await;
        }
    });
    rx
}

async fn wait_flag(flag: &watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut flag = flag.clone();
    flag.wait_for(|ready| *ready)
        .await
        .map(|_| ())
        .map_err(|_| anyhow::anyhow!("a watch ended before its first list completed"))
}

impl Stores {
    /// Resolves once every watch has completed its first list; before that an empty store must
    /// not be read as "nothing is wanted". Any number of tasks may wait at once.
    pub async fn wait_until_ready(&self) -> anyhow::Result<()> {
        wait_flag(&self.synced).await
    }

    /// Resolves once the pool watch completed its first list.
    pub async fn wait_until_pools_ready(&self) -> anyhow::Result<()> {
        wait_flag(&self.pools_synced).await
    }

    /// The allocator's view for a daemon that also allocates: this node's Service and pool
    /// stores (whose watches notify `allocate` too).
    pub fn for_allocator(&self) -> AllocatorStores {
        let synced = {
            let (node, pools) = (self.synced.clone(), self.pools_synced.clone());
            let (tx, rx) = watch::channel(false);
            tokio::spawn(async move {
                if wait_flag(&node).await.is_ok() && wait_flag(&pools).await.is_ok() {
                    tx.send_replace(true);
                    tx.closed().await;
                }
            });
            rx
        };
        AllocatorStores {
            services: self.services.clone(),
            pools: self.pools.clone(),
            synced,
        }
    }

    /// The Service `key` as the store has it.
    pub fn service(&self, key: &ServiceKey) -> Option<Arc<Service>> {
        self.services
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
    }

    /// This node's Node object, if the API server has one.
    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.node
            .state()
            .into_iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
    }
}

impl AllocatorStores {
    /// Starts the allocator's own watches on the current runtime (`l3lb allocate`: no node);
    /// `allocate` is notified on Service and L3lbPool events.
    pub fn start(client: Client, allocate: Arc<Notify>, metrics: Metrics) -> Self {
        let services = spawn_watch::<Service>(
            Api::all(client.clone()),
            watcher::Config::default(),
            trim::service,
            |_: &watcher::Event<Service>| {},
            vec![allocate.clone()],
            metrics.clone(),
        );
        let pools = spawn_pools(client, vec![allocate], metrics);
        let synced = {
            let (services, pools) = (services.clone(), pools.clone());
            flag(async move {
                services.wait_until_ready().await?;
                pools.wait_until_ready().await
            })
        };
        Self {
            services,
            pools,
            synced,
        }
    }

    /// Resolves once the Services and the pools were listed (the allocator's start). Any
    /// number of tasks may wait at once.
    pub async fn wait_until_ready(&self) -> anyhow::Result<()> {
        wait_flag(&self.synced).await
    }
}

fn spawn_pools(client: Client, notify: Vec<Arc<dyn Fire>>, metrics: Metrics) -> Store<L3lbPool> {
    let all = watcher::Config::default();
    spawn_watch::<L3lbPool>(Api::all(client), all, trim::pool, |_| {}, notify, metrics)
}

/// Starts the node's watches on the current runtime. `changed` is notified on every watch
/// event, `allocate` on Service and pool events (for an allocator in this process, see
/// [`Stores::for_allocator`]). Watch errors are counted in `metrics`.
pub fn start(
    client: Client,
    node: &str,
    changed: Arc<Trigger>,
    allocate: Arc<Notify>,
    metrics: Metrics,
) -> Stores {
    let all = watcher::Config::default;
    let this_node = all().fields(&format!("metadata.name={node}"));
    let both: Vec<Arc<dyn Fire>> = vec![changed.clone(), allocate.clone()];
    let service_changes = changes::ServiceChanges::default();
    let services = spawn_watch::<Service>(
        Api::all(client.clone()),
        all(),
        trim::service,
        {
            let changes = service_changes.clone();
            move |event: &watcher::Event<Service>| changes.record(event)
        },
        both,
        metrics.clone(),
    );
    let slices = slices::spawn(
        Api::all(client.clone()),
        node,
        changed.clone(),
        metrics.clone(),
    );
    let node = spawn_watch::<Node>(
        Api::all(client.clone()),
        this_node,
        trim::node,
        |_| {},
        vec![changed.clone()],
        metrics.clone(),
    );
    let pools = spawn_pools(client, vec![changed, allocate], metrics);
    let pools_synced = {
        let pools = pools.clone();
        flag(async move { pools.wait_until_ready().await })
    };
    let synced = {
        let (services, slices, node) = (services.clone(), slices.clone(), node.clone());
        flag(async move {
            services.wait_until_ready().await?;
            if slices.wait_until_ready().await.is_err() {
                // The slice watch ended: never synced.
                std::future::pending::<()>().await;
            }
            node.wait_until_ready().await
        })
    };
    Stores {
        services,
        service_changes,
        slices,
        node,
        pools,
        synced,
        pools_synced,
    }
}

fn spawn_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: impl FnMut(&mut K) + Send + 'static,
    mut on_event: impl FnMut(&watcher::Event<K>) + Send + 'static,
    notify: Vec<Arc<dyn Fire>>,
    metrics: Metrics,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let stream = watcher(api, config)
        // Fields the reconciler never reads; dropping them keeps the stores small.
        .modify(trim)
        .default_backoff()
        .reflect(writer);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    on_event(&event);
                    notify.iter().for_each(|n| n.fire());
                }
                // The backoff retries; the stores keep the last known state meanwhile.
                Err(error) => {
                    metrics.watch_error(&kind);
                    if kind == crate::core::pool::KIND {
                        warn!(%kind, %error, "watch failed; retrying (is the CRD deploy/base/crd.yaml applied? without it no addresses are allocated)");
                    } else {
                        warn!(%kind, %error, "watch failed; retrying");
                    }
                }
            }
        }
    });
    store
}
