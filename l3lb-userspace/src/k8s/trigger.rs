//! Coalescing watch triggers: a burst of watch events (a relist, a Deployment rolling) becomes
//! one pass, started as soon as the burst is over or, at the latest, a little after it began.
//! The reconciler's [`Trigger`] waits for no timer: a lone change starts its pass at once, as
//! soon as the runtime has handled what was already ready (the rest of a burst that arrived
//! together); passes cost what their changes cost, so a burst needs no long wait. It also
//! remembers when the first change since its last pass arrived, for the pass's timings.
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use futures::FutureExt as _;
use tokio::{sync::Notify, time::Instant};

use crate::metrics::timing::mono_ns;

/// A pass starts once the watches have been quiet this long after a change...
const QUIET: Duration = Duration::from_millis(2);

/// ...or this long after the first change of a burst, whichever comes first.
const COALESCE_MAX: Duration = Duration::from_millis(20);

/// Returns once no change has arrived for `QUIET`, or `COALESCE_MAX` after the call.
pub async fn settle(changed: &Notify) {
    let deadline = tokio::time::sleep(COALESCE_MAX);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(QUIET) => return,
            _ = &mut deadline => return,
        }
    }
}

/// What the watches fire on a change that matters to the node's passes.
#[derive(Debug, Default)]
pub struct Trigger {
    notify: Notify,
    /// When the first change since [`Trigger::take_first`] arrived (monotonic ns); 0: none.
    first: AtomicU64,
}

/// Something a watch wakes on a change: the reconciler's [`Trigger`] or the allocator's
/// [`Notify`].
pub trait Fire: Send + Sync {
    fn fire(&self);
}

impl Fire for Notify {
    fn fire(&self) {
        self.notify_one();
    }
}

impl Fire for Trigger {
    fn fire(&self) {
        // Only the first change since the last pass is timed.
        let _ =
            self.first
                .compare_exchange(0, mono_ns().max(1), Ordering::Relaxed, Ordering::Relaxed);
        self.notify.notify_one();
    }
}

impl Trigger {
    /// Resolves on the next change (at once if one came since the last wait).
    pub async fn fired(&self) {
        self.notify.notified().await;
    }

    /// Lets the runtime handle what is ready (watch events that arrived with this one) and
    /// returns once that brought no further change, or `COALESCE_MAX` after the call.
    pub async fn settle(&self) {
        let deadline = Instant::now() + COALESCE_MAX;
        loop {
            // Runs every other ready task, and polls the sockets once, before coming back.
            tokio::task::yield_now().await;
            let more = self.notify.notified().now_or_never().is_some();
            if !more || Instant::now() >= deadline {
                return;
            }
        }
    }

    /// When the first change since the last call arrived (monotonic ns), 0 if none did.
    pub fn take_first(&self) -> u64 {
        self.first.swap(0, Ordering::Relaxed)
    }
}
