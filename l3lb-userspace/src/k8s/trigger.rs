//! Coalescing watch triggers: a burst of watch events (a relist, a Deployment rolling) becomes
//! one pass, started as soon as the burst is over or, at the latest, a little after it began.
use std::time::Duration;

use tokio::sync::Notify;

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
