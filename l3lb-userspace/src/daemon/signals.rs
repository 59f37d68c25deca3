//! How the daemon stops: on SIGTERM or SIGINT, releasing the allocator Lease if it holds it
//! (addresses and maps stay for the next start).
use std::time::Duration;

use tracing::warn;

use crate::k8s::leader::elector::ElectorHandle;

/// Longest a shutdown waits to release the allocator Lease.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// Releases the allocator Lease, if this process stands for it.
pub(super) async fn stop(elector: Option<ElectorHandle>) {
    if let Some(elector) = elector {
        elector.stop(RELEASE_TIMEOUT).await;
    }
}

pub(super) async fn shutdown() {
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
