//! Commands run to completion, and long-running processes the lab started and must stop.
use std::{
    fs::File,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};

/// How long a process gets between SIGTERM and SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs `args[0]` with the rest as arguments; on failure the error carries the command and stderr.
pub(crate) fn run(args: &[&str]) -> anyhow::Result<String> {
    let (prog, rest) = args.split_first().ok_or_else(|| anyhow!("empty command"))?;
    let out = Command::new(prog)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{}`", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `args` inside network namespace `ns` (`ip netns exec`).
pub(crate) fn run_in(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    run(&full)
}

/// One process the lab started.
struct Tracked {
    label: String,
    child: Child,
}

/// The processes the lab started, stopped in reverse start order.
#[derive(Default)]
pub(crate) struct Procs {
    tracked: Vec<Tracked>,
}

impl Procs {
    /// Starts `cmd` inside `ns` via `ip netns exec`, which execs the program: the pid returned is
    /// the program's own. Environment and working directory set on `cmd` are kept; stdin is null,
    /// stdout and stderr go to `log`.
    pub(crate) fn spawn_in(
        &mut self,
        ns: &str,
        label: &str,
        log: &Path,
        cmd: &Command,
    ) -> anyhow::Result<u32> {
        self.spawn_wrapped(&["ip", "netns", "exec", ns], ns, label, log, cmd)
    }

    /// Like [`Procs::spawn_in`], but joins only the network namespace (`nsenter --net`, which
    /// also execs the program): the process keeps the host's mounts, /sys/fs/bpf included.
    pub(crate) fn spawn_in_netns_only(
        &mut self,
        ns: &str,
        label: &str,
        log: &Path,
        cmd: &Command,
    ) -> anyhow::Result<u32> {
        let net = format!("--net=/run/netns/{ns}");
        self.spawn_wrapped(&["nsenter", &net, "--"], ns, label, log, cmd)
    }

    /// Starts `cmd` in the test's own namespaces (podman, which puts its container in a
    /// namespace itself).
    pub(crate) fn spawn_host(
        &mut self,
        label: &str,
        log: &Path,
        cmd: &Command,
    ) -> anyhow::Result<u32> {
        self.spawn_wrapped(&[], "the host", label, log, cmd)
    }

    /// Starts `wrapper` followed by `cmd` (or `cmd` alone).
    fn spawn_wrapped(
        &mut self,
        wrapper: &[&str],
        ns: &str,
        label: &str,
        log: &Path,
        cmd: &Command,
    ) -> anyhow::Result<u32> {
        let mut wrapped = match wrapper.split_first() {
            Some((prog, args)) => {
                let mut w = Command::new(prog);
                w.args(args).arg(cmd.get_program());
                w
            }
            None => Command::new(cmd.get_program()),
        };
        wrapped.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = wrapped
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {label} in {ns}: {:?}", cmd.get_program()))?;
        let pid = child.id();
        self.tracked.push(Tracked {
            label: label.to_string(),
            child,
        });
        Ok(pid)
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.tracked.iter().map(|t| t.child.id()).collect()
    }

    /// Whether `pid` (one of ours) is still running; an exited one is reaped here.
    pub(crate) fn running(&mut self, pid: u32) -> anyhow::Result<bool> {
        let t = self.find(pid)?;
        Ok(t.child.try_wait()?.is_none())
    }

    /// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL. Forgets the pid afterwards.
    pub(crate) fn stop(&mut self, pid: u32) -> anyhow::Result<()> {
        stop_child(&mut self.take(pid)?)
    }

    /// SIGKILL at once (a crash, as far as the process can tell), and reap. Forgets the pid.
    pub(crate) fn kill(&mut self, pid: u32) -> anyhow::Result<()> {
        let mut t = self.take(pid)?;
        if t.child.try_wait()?.is_none() {
            // Child::kill sends SIGKILL to this very pid, not reaped yet; wait reaps it.
            t.child
                .kill()
                .with_context(|| format!("SIGKILL to {} (pid {pid})", t.label))?;
            t.child.wait()?;
        }
        Ok(())
    }

    /// Stops everything, newest first. Returns the errors instead of stopping at the first.
    pub(crate) fn stop_all(&mut self) -> Vec<anyhow::Error> {
        let mut errors = Vec::new();
        while let Some(mut t) = self.tracked.pop() {
            if let Err(e) = stop_child(&mut t) {
                errors.push(e);
            }
        }
        errors
    }

    /// Forgets `pid` (one of ours) and hands it over.
    fn take(&mut self, pid: u32) -> anyhow::Result<Tracked> {
        let idx = self
            .tracked
            .iter()
            .position(|t| t.child.id() == pid)
            .ok_or_else(|| anyhow!("pid {pid} was not started by this lab"))?;
        Ok(self.tracked.remove(idx))
    }

    fn find(&mut self, pid: u32) -> anyhow::Result<&mut Tracked> {
        self.tracked
            .iter_mut()
            .find(|t| t.child.id() == pid)
            .ok_or_else(|| anyhow!("pid {pid} was not started by this lab"))
    }
}

fn stop_child(t: &mut Tracked) -> anyhow::Result<()> {
    let pid = t.child.id();
    if t.child.try_wait()?.is_some() {
        return Ok(()); // already exited (and now reaped)
    }
    let raw = libc::pid_t::try_from(pid)?;
    // SAFETY: kill(2) on a pid we spawned and have not reaped yet, so it cannot have been reused.
    if unsafe { libc::kill(raw, libc::SIGTERM) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e).with_context(|| format!("SIGTERM to {} (pid {pid})", t.label));
        }
    }
    let start = Instant::now();
    while start.elapsed() < STOP_GRACE {
        if t.child.try_wait()?.is_some() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    // Child::kill sends SIGKILL to this very pid; wait reaps it.
    t.child
        .kill()
        .with_context(|| format!("SIGKILL to {} (pid {pid})", t.label))?;
    t.child.wait()?;
    Ok(())
}
