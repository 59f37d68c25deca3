//! How the daemon stops: on SIGTERM or SIGINT, releasing the allocator Lease if it holds it
//! (addresses and maps stay for the next start).
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
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

/// SIGTERM and SIGINT, listened for from when it is made. tokio hands a signal only to the
/// listeners that exist when it arrives: a listener made anew at each wait missed a SIGTERM that
/// came during a pass, and the daemon ran on until SIGKILL (without releasing its Lease). One
/// listener kept for the daemon's life keeps it for the next wait.
pub(super) struct Shutdown {
    term: Option<Signal>,
    int: Option<Signal>,
}

impl Shutdown {
    pub(super) fn listen() -> Self {
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(error) => {
                warn!(%error, signal = name, "cannot listen for the signal; it will not stop the daemon");
                None
            }
        };
        Self {
            term: listen(SignalKind::terminate(), "SIGTERM"),
            int: listen(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Resolves once SIGTERM or SIGINT came (since [`Shutdown::listen`]).
    pub(super) async fn requested(&mut self) {
        tokio::select! {
            _ = next(&mut self.term) => {},
            _ = next(&mut self.int) => {},
        }
    }
}

async fn next(signal: &mut Option<Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Shutdown;

    #[tokio::test]
    async fn a_sigterm_while_nobody_waits_is_kept_for_the_next_wait() {
        let mut shutdown = Shutdown::listen();
        // As during a pass: the signal comes while no one waits for it.
        // SAFETY: raise(3) on this process, whose SIGTERM tokio now handles (listener above).
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        tokio::time::timeout(Duration::from_secs(30), shutdown.requested())
            .await
            .expect("the SIGTERM that came before the wait was lost");
    }
}
