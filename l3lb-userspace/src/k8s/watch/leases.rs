//! L2 mode: the watch on the nodes' liveness Leases ([`crate::k8s::l2_lease`]), fed into a
//! [`Liveness`] judged on this node's monotonic clock, with the nodes whose Lease says they are
//! excluded from load balancing. A renewal of a live node changes nothing anyone decides, so the
//! reconciler is woken only when a node appears, comes back, leaves, or changes its exclusion;
//! a node going silent is found by the reconciler's own timer ([`NodeLeases::next_expiry`]).
use std::{
    collections::{BTreeSet, HashSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};
use tracing::warn;

use crate::{
    core::l2::{Liveness, View},
    k8s::{
        l2_lease::{LABEL, TIMEOUT, is_excluded, marker, node_of},
        trigger::{Fire as _, Trigger},
    },
    metrics::Metrics,
};

#[derive(Debug)]
struct State {
    liveness: Liveness,
    excluded: BTreeSet<String>,
}

/// A shared handle to what the watch has seen.
#[derive(Clone)]
pub struct NodeLeases {
    state: Arc<Mutex<State>>,
    origin: Instant,
}

impl NodeLeases {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Who is alive now, as `own` judges, and who is excluded. Not fresh before the watch has
    /// run for [`TIMEOUT`]: on a cold start the other nodes' Leases are still being created, and
    /// a node that judged itself the only one alive would announce every address for a moment.
    pub fn judge(&self, own: &str) -> (View, BTreeSet<String>) {
        let now = self.now();
        let state = self.lock();
        let mut view = state.liveness.judge(own, now);
        view.fresh &= now >= TIMEOUT;
        (view, state.excluded.clone())
    }

    /// How long until the judgement may change without a watch event: the next live node turns
    /// dead unless it renews, or the start-up wait ends.
    pub fn next_expiry(&self) -> Option<Duration> {
        let now = self.now();
        let expiry = self.lock().liveness.next_expiry(now);
        let settled = TIMEOUT
            .checked_sub(now)
            .map(|left| left + Duration::from_millis(1));
        match (expiry, settled) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Starts the watch on the current runtime (Leases labelled [`LABEL`] in `api`'s namespace).
pub fn spawn(api: Api<Lease>, changed: Arc<Trigger>, metrics: Metrics) -> NodeLeases {
    let handle = NodeLeases {
        state: Arc::new(Mutex::new(State {
            liveness: Liveness::new(TIMEOUT),
            excluded: BTreeSet::new(),
        })),
        origin: Instant::now(),
    };
    let config = watcher::Config::default().labels(LABEL);
    let stream = watcher(api, config).default_backoff();
    let leases = handle.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut relisted: Option<HashSet<String>> = None;
        while let Some(event) = stream.next().await {
            let now = leases.now();
            let touched = match event {
                Ok(watcher::Event::Init) => {
                    relisted = Some(HashSet::new());
                    false
                }
                Ok(watcher::Event::InitApply(lease)) => {
                    if let (Some(seen), Some(node)) = (&mut relisted, node_of(&lease)) {
                        seen.insert(node.to_owned());
                    }
                    observe(&mut leases.lock(), &lease, now)
                }
                Ok(watcher::Event::InitDone) => {
                    let mut state = leases.lock();
                    if let Some(seen) = relisted.take() {
                        let known: Vec<String> =
                            state.liveness.nodes().map(str::to_owned).collect();
                        for node in known.iter().filter(|n| !seen.contains(*n)) {
                            state.liveness.forget(node);
                            state.excluded.remove(node);
                        }
                    }
                    true
                }
                Ok(watcher::Event::Apply(lease)) => observe(&mut leases.lock(), &lease, now),
                Ok(watcher::Event::Delete(lease)) => match node_of(&lease) {
                    Some(node) => {
                        let mut state = leases.lock();
                        state.liveness.forget(node);
                        state.excluded.remove(node);
                        true
                    }
                    None => false,
                },
                Err(error) => {
                    metrics.watch_error("Lease");
                    warn!(kind = "Lease", %error, "watch failed; retrying");
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

/// Records one Lease; whether it changes anything decided from it (a node new or back from the
/// dead, or its exclusion flipped).
fn observe(state: &mut State, lease: &Lease, now: Duration) -> bool {
    let Some(node) = node_of(lease) else {
        return false;
    };
    let was_alive = state.liveness.is_alive(node, now);
    state.liveness.observe(node, &marker(lease), now);
    let excluded = match is_excluded(lease) {
        true => state.excluded.insert(node.to_owned()),
        false => state.excluded.remove(node),
    };
    !was_alive || excluded
}
