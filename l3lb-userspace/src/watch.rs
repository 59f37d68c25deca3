//! Watches: kube reflector stores of Services, EndpointSlices, this node's own Node and the
//! L3lbPools, and triggers that fire on changes: the reconciler's on every change, the
//! allocator's on Services and pools.
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::{
    core::v1::{Node, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, Resource,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tracing::warn;

use crate::{allocate::pool::L3lbPool, metrics::Metrics};

mod trim;

/// Read handles to the watched objects.
#[derive(Clone)]
pub struct Stores {
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    /// Only this node's Node (field selector on its name): at most one object.
    pub node: Store<Node>,
    /// Read by the allocator only; not part of [`Stores::wait_until_ready`], so a cluster
    /// without the CRD still has its VIPs served.
    pub pools: Store<L3lbPool>,
}

impl Stores {
    /// Resolves once every watch has completed its first list; before that an empty store must
    /// not be read as "nothing is wanted".
    pub async fn wait_until_ready(&self) -> anyhow::Result<()> {
        self.services.wait_until_ready().await?;
        self.slices.wait_until_ready().await?;
        self.node.wait_until_ready().await?;
        Ok(())
    }

    /// This node's Node object, if the API server has one.
    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.node
            .state()
            .into_iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
    }
}

/// Starts the watches on the current runtime. `changed` is notified on every watch event,
/// `allocate` on Service and L3lbPool events. Watch errors are counted in `metrics`.
pub fn start(
    client: Client,
    node: &str,
    changed: Arc<Notify>,
    allocate: Arc<Notify>,
    metrics: Metrics,
) -> Stores {
    let all = watcher::Config::default;
    let this_node = all().fields(&format!("metadata.name={node}"));
    let both = vec![changed.clone(), allocate.clone()];
    Stores {
        services: spawn_watch::<Service>(
            Api::all(client.clone()),
            all(),
            trim::service,
            both,
            metrics.clone(),
        ),
        slices: spawn_watch::<EndpointSlice>(
            Api::all(client.clone()),
            all(),
            trim::slice(node.to_owned()),
            vec![changed.clone()],
            metrics.clone(),
        ),
        node: spawn_watch::<Node>(
            Api::all(client.clone()),
            this_node,
            trim::node,
            vec![changed],
            metrics.clone(),
        ),
        pools: spawn_watch::<L3lbPool>(
            Api::all(client),
            all(),
            trim::pool,
            vec![allocate],
            metrics,
        ),
    }
}

fn spawn_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: impl FnMut(&mut K) + Send + 'static,
    notify: Vec<Arc<Notify>>,
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
                Ok(_) => notify.iter().for_each(|n| n.notify_one()),
                // The backoff retries; the stores keep the last known state meanwhile.
                Err(error) => {
                    metrics.watch_error(&kind);
                    if kind == crate::allocate::pool::KIND {
                        warn!(%kind, %error, "watch failed; retrying (is the CRD deploy/crd.yaml applied? without it no addresses are allocated)");
                    } else {
                        warn!(%kind, %error, "watch failed; retrying");
                    }
                }
            }
        }
    });
    store
}
