//! Polling with a deadline: never a bare sleep, and a timeout that says what was expected and seen.
use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::bail;

const POLL: Duration = Duration::from_millis(100);

/// Calls `f` until it returns `Ok(Some(value))` or `deadline` has passed.
///
/// `Ok(None)` and `Err(_)` both mean "not yet"; `f` should leave a useful message in the error
/// (or via [`anyhow::Context`]), because the last one is quoted in the timeout error.
pub fn wait_for<T>(
    what: &str,
    deadline: Duration,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        let last = match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "condition not met yet".to_string(),
            Err(e) => format!("{e:#}"),
        };
        if start.elapsed() >= deadline {
            bail!("timed out after {deadline:?} waiting for {what}; last seen: {last}");
        }
        thread::sleep(POLL);
    }
}
