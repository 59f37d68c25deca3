//! Watches: kube reflector stores of Services and EndpointSlices, and a trigger that fires on
//! every change so the reconciler runs.
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
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

use crate::metrics::Metrics;

/// Read handles to the watched objects.
#[derive(Clone)]
pub struct Stores {
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
}

impl Stores {
    /// Resolves once every watch has completed its first list; before that an empty store must
    /// not be read as "nothing is wanted".
    pub async fn wait_until_ready(&self) -> anyhow::Result<()> {
        self.services.wait_until_ready().await?;
        self.slices.wait_until_ready().await?;
        Ok(())
    }
}

/// Starts the watches on the current runtime. `changed` is notified on every watch event.
/// Watch errors are counted in `metrics`.
pub fn start(client: Client, changed: Arc<Notify>, metrics: Metrics) -> Stores {
    Stores {
        services: spawn_watch::<Service>(
            Api::all(client.clone()),
            changed.clone(),
            metrics.clone(),
        ),
        slices: spawn_watch::<EndpointSlice>(Api::all(client), changed, metrics),
    }
}

fn spawn_watch<K>(api: Api<K>, changed: Arc<Notify>, metrics: Metrics) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let stream = watcher(api, watcher::Config::default())
        // Fields the reconciler never reads; dropping them keeps the stores small.
        .modify(|obj: &mut K| {
            obj.meta_mut().managed_fields = None;
            if let Some(a) = obj.meta_mut().annotations.as_mut() {
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
        })
        .default_backoff()
        .reflect(writer);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                // The backoff retries; the stores keep the last known state meanwhile.
                Err(error) => {
                    metrics.watch_error(&kind);
                    warn!(%kind, %error, "watch failed; retrying");
                }
            }
        }
    });
    store
}
