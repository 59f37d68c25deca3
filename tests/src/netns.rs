//! Run code inside a named network namespace (`ip netns add NAME`, i.e. /run/netns/NAME).
//!
//! Sockets keep the namespace they were created in, so a listener bound or a stream connected
//! inside [`in_netns`] can be used afterwards from any thread of the test process.
use std::{fs::File, io, os::fd::AsRawFd, thread};

/// Runs `f` on a fresh thread that has joined namespace `name`, and returns its result.
pub fn in_netns<T, F>(name: &str, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let file = File::open(format!("/run/netns/{name}"))
        .map_err(|e| io::Error::new(e.kind(), format!("network namespace {name}: {e}")))?;
    thread::spawn(move || {
        // SAFETY: setns on a valid namespace fd only changes this (short-lived) thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("thread inside network namespace panicked"))?
}
