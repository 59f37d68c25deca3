//! The programs' own log, forwarded to `tracing`; off unless asked. The XDP and TC programs log
//! rare events only (a flow the tables could not record, a refused redirect, a frontend table
//! naming a backend that takes no new flows; at most one record a second per CPU and kind, never
//! one per packet) with aya-log, and only while `CONFIG_LOG` is set in their config map.
//! [`Datapath::forward_log`] sets it and starts a thread that reads the records from the
//! programs' ring buffer and emits each as a `tracing` event (target `l3lb::datapath`, the
//! program's module in `module`). A pinned load clears the flag: a run that did not ask does not
//! pay for an earlier run's logging. `l3lb run --bpf-log` asks.
use std::{
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use aya::{
    Ebpf,
    maps::{Array, MapData},
};
use aya_log::EbpfLogger;
use l3lb_common::{CONFIG_LOG, Config, MAP_CONFIG};

use super::{Datapath, DatapathError, map_err};

/// How long the forwarding thread sleeps between looks at its stop flag when no record comes.
const POLL_MS: i32 = 200;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("the programs' log ring buffer (AYA_LOGS) cannot be opened (already forwarded?)")]
    RingBuffer {
        #[source]
        source: aya_log::Error,
    },
    #[error("turning the programs' logging on failed")]
    Flag {
        #[source]
        source: DatapathError,
    },
    #[error("starting the log forwarding thread failed")]
    Thread {
        #[source]
        source: std::io::Error,
    },
}

/// Forwards the programs' log records while it lives; dropping it stops the thread (after a
/// last read), and leaves the programs logging into a ring buffer nobody reads (records that do
/// not fit are dropped by the programs).
#[derive(Debug)]
pub struct LogForwarder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Datapath {
    /// Turns the programs' logging on and forwards their records to `tracing`, to the
    /// subscriber that is the default where this is called. Once per datapath.
    pub fn forward_log(&mut self) -> Result<LogForwarder, LogError> {
        let mut logger = EbpfLogger::init_with_logger(&mut self.ebpf, ToTracing)
            .map_err(|source| LogError::RingBuffer { source })?;
        set_flag(&mut self.ebpf, true).map_err(|source| LogError::Flag { source })?;
        // Later configuration writes (the plan's Configure steps) keep the flag.
        self.logging = true;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let thread = std::thread::Builder::new()
            .name("l3lb-bpf-log".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let fd = logger.as_raw_fd();
                    loop {
                        wait_readable(fd);
                        logger.flush();
                        if stopped.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                })
            })
            .map_err(|source| LogError::Thread { source })?;
        Ok(LogForwarder {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for LogForwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sets or clears `CONFIG_LOG`, keeping the other flags and the prefixes.
pub(super) fn set_flag(ebpf: &mut Ebpf, on: bool) -> Result<(), DatapathError> {
    let map = ebpf
        .map_mut(MAP_CONFIG)
        .ok_or(DatapathError::MissingMap { name: MAP_CONFIG })?;
    let mut array: Array<&mut MapData, Config> =
        Array::try_from(map).map_err(map_err(MAP_CONFIG, "open"))?;
    let mut config = array.get(&0, 0).map_err(map_err(MAP_CONFIG, "lookup"))?;
    let flags = match on {
        true => config.flags | CONFIG_LOG,
        false => config.flags & !CONFIG_LOG,
    };
    if flags == config.flags {
        return Ok(());
    }
    config.flags = flags;
    array
        .set(0, config, 0)
        .map_err(map_err(MAP_CONFIG, "update"))
}

/// Waits until the ring buffer has a record, or [`POLL_MS`].
fn wait_readable(fd: std::os::fd::RawFd) {
    let mut pollfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; `fd` stays open (the logger owning
    // it outlives the call). An error or a timeout only means: read, then look again.
    unsafe { libc::poll(&mut pollfd, 1, POLL_MS) };
}

/// aya-log hands each record to a `log::Log`; this one emits it as a `tracing` event.
struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let module = record.module_path().unwrap_or(record.target());
        let message = record.args();
        match record.level() {
            log::Level::Error => {
                tracing::error!(target: "l3lb::datapath", module, "{message}")
            }
            log::Level::Warn => tracing::warn!(target: "l3lb::datapath", module, "{message}"),
            log::Level::Info => tracing::info!(target: "l3lb::datapath", module, "{message}"),
            log::Level::Debug => {
                tracing::debug!(target: "l3lb::datapath", module, "{message}")
            }
            log::Level::Trace => {
                tracing::trace!(target: "l3lb::datapath", module, "{message}")
            }
        }
    }

    fn flush(&self) {}
}
