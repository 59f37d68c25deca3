//! The EndpointSlice watch feeds a [`SliceIndex`] directly instead of a reflector store: only
//! this node's endpoints are kept (see [`crate::core::desired::slices`]). A relist replaces the kept
//! slices as the reflector would: what it does not return is forgotten once it is complete.
use std::{
    collections::HashSet,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};
use tracing::warn;

use crate::{
    core::desired::slices::{SliceId, SliceIndex},
    k8s::trigger::{Fire as _, Trigger},
    metrics::Metrics,
};

/// A shared handle to the index the watch keeps up to date.
#[derive(Clone)]
pub struct LocalSlices {
    index: Arc<Mutex<SliceIndex>>,
    ready: tokio::sync::watch::Receiver<bool>,
}

impl LocalSlices {
    /// The index; hold the guard only briefly (the watch waits for it).
    pub fn lock(&self) -> MutexGuard<'_, SliceIndex> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves once the first list is complete.
    pub async fn wait_until_ready(&self) -> Result<(), tokio::sync::watch::error::RecvError> {
        self.ready
            .clone()
            .wait_for(|ready| *ready)
            .await
            .map(|_| ())
    }
}

/// Starts the watch on the current runtime. `changed` is notified when this node's endpoints
/// change and when a list completes.
pub fn spawn(
    api: Api<EndpointSlice>,
    node: &str,
    changed: Arc<Trigger>,
    metrics: Metrics,
) -> LocalSlices {
    let index = Arc::new(Mutex::new(SliceIndex::new(node)));
    let (ready_tx, ready) = tokio::sync::watch::channel(false);
    let handle = LocalSlices {
        index: index.clone(),
        ready,
    };
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        // The kept slices a relist in progress has returned so far.
        let mut relisted: Option<HashSet<SliceId>> = None;
        let lock = || index.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(event) = stream.next().await {
            let touched = match event {
                Ok(watcher::Event::Init) => {
                    relisted = Some(HashSet::new());
                    false
                }
                Ok(watcher::Event::InitApply(slice)) => {
                    let mut index = lock();
                    let touched = index.apply(&slice);
                    if let (Some(seen), Some(id)) = (&mut relisted, index.kept(&slice)) {
                        seen.insert(id);
                    }
                    touched
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(seen) = relisted.take() {
                        lock().retain(|id| seen.contains(id));
                    }
                    ready_tx.send_replace(true);
                    true
                }
                Ok(watcher::Event::Apply(slice)) => lock().apply(&slice),
                Ok(watcher::Event::Delete(slice)) => lock().delete(&slice),
                // The backoff retries; the index keeps the last known state meanwhile.
                Err(error) => {
                    metrics.watch_error("EndpointSlice");
                    warn!(kind = "EndpointSlice", %error, "watch failed; retrying");
                    false
                }
            };
            if touched {
                changed.fire();
            }
        }
    });
    handle
}
