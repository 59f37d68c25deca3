//! [`Lab`]: building, starting and tearing down one lab instance.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};

use super::{
    LabConfig, bpffs, frr, prereq,
    process::Procs,
    topology::{self, Names},
    wait_for,
};

/// How long FRR gets to bring every BGP session to Established.
const BGP_DEADLINE: Duration = Duration::from_secs(60);
/// How long a started daemon or echo server gets to become reachable.
const READY_DEADLINE: Duration = Duration::from_secs(15);

static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);

/// One running lab. See the module docs for what drop cleans up.
pub struct Lab {
    pub(super) cfg: LabConfig,
    pub(super) names: Names,
    pub(super) workdir: PathBuf,
    /// Namespaces this lab created, in creation order.
    pub(super) created: Vec<String>,
    pub(super) procs: Procs,
    /// FRR daemons started: (daemon name, pid), for their crash-buffer directories.
    frr_pids: Vec<(&'static str, u32)>,
    echo_pids: Vec<u32>,
    /// Containers started: (pid of their `podman run`, container name).
    containers: Vec<(u32, String)>,
    /// Keep the work directory on drop: set until start succeeds, so a failed start keeps its logs.
    keep_workdir: bool,
}

/// A fresh id `<pid>-<n>` whose namespaces and work directory do not exist yet.
fn fresh_id() -> (String, PathBuf) {
    loop {
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let workdir = std::env::temp_dir().join(format!("l3lb-lab-{id}"));
        let names = Names::new(&id, 1, topology::Shape::Routed);
        let taken = names
            .all()
            .iter()
            .any(|ns| Path::new("/run/netns").join(ns).exists());
        let bridged = Names::new(&id, 1, topology::Shape::Bridged);
        let taken = taken || Path::new("/run/netns").join(&bridged.router).exists();
        let pins_taken = (1..=topology::MAX_NODES).any(|i| bpffs::dir(&id, i).exists());
        if !taken && !pins_taken && !workdir.exists() {
            return (id, workdir);
        }
    }
}

fn find_echo_bin(cfg: &LabConfig) -> anyhow::Result<PathBuf> {
    if let Some(p) = &cfg.echo_bin {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("L3LB_ECHO_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("l3lb-echo"))
        .collect();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        anyhow!(
            "l3lb-echo binary not found (looked at {candidates:?}); build it with \
             `cargo build -p l3lb-tests --bin l3lb-echo`, or set L3LB_ECHO_BIN / LabConfig::echo_bin"
        )
    })
}

impl Lab {
    /// Builds the topology, starts FRR in the router and node namespaces (routed labs only) and
    /// the echo servers in the pods, and waits until every BGP session is Established and every
    /// echo server answers.
    pub fn start(cfg: LabConfig) -> anyhow::Result<Lab> {
        let routed = cfg.shape == topology::Shape::Routed;
        prereq::check(routed)?;
        let max = cfg.shape.max_nodes();
        if !(1..=max).contains(&cfg.nodes) {
            bail!("LabConfig::nodes must be 1..={max}, got {}", cfg.nodes);
        }
        let echo_bin = find_echo_bin(&cfg)?;
        let t0 = Instant::now();
        let (id, workdir) = fresh_id();
        fs::create_dir_all(&workdir).with_context(|| format!("creating {}", workdir.display()))?;
        eprintln!("lab {id}: work directory {}", workdir.display());
        // From here on, Drop cleans up whatever was made, also when a step below fails.
        let mut lab = Lab {
            names: Names::new(&id, cfg.nodes, cfg.shape),
            cfg,
            workdir,
            created: Vec::new(),
            procs: Procs::default(),
            frr_pids: Vec::new(),
            echo_pids: Vec::new(),
            containers: Vec::new(),
            keep_workdir: true,
        };
        topology::build(&lab.names, lab.cfg.shape, &mut lab.created)
            .context("building the lab topology")?;
        let t_topo = t0.elapsed();
        if routed {
            lab.start_frr()?;
        }
        lab.start_echo(&echo_bin)?;
        if routed {
            lab.wait_bgp_established()?;
        }
        let t_bgp = t0.elapsed();
        lab.wait_echo_ready()?;
        eprintln!(
            "lab {id}: ready in {:.2?} (topology {t_topo:.2?}, BGP established at {t_bgp:.2?})",
            t0.elapsed()
        );
        lab.keep_workdir = false;
        Ok(lab)
    }

    /// The FRR runtime directory of `ns` (router or node namespace).
    pub fn frr_dir(&self, ns: &str) -> PathBuf {
        self.workdir.join(format!("frr-{ns}"))
    }

    fn frr_namespaces(&self) -> Vec<String> {
        let mut v = vec![self.names.router.clone()];
        v.extend(self.names.nodes.iter().cloned());
        v
    }

    fn start_frr(&mut self) -> anyhow::Result<()> {
        let spaces = self.frr_namespaces();
        for (idx, ns) in spaces.iter().enumerate() {
            let dir = self.frr_dir(ns);
            frr::prepare_dir(&dir)?;
            let bgpd = match idx {
                0 => frr::router_bgpd_config(ns, self.cfg.nodes),
                i => frr::node_bgpd_config(ns, i, self.cfg.vip_prefix, self.cfg.vip_prefix6),
            };
            fs::write(dir.join("zebra.conf"), frr::zebra_config(ns))?;
            fs::write(dir.join("bgpd.conf"), bgpd)?;
            let pid = self.spawn_in(
                ns,
                &format!("{ns}-zebra"),
                frr::daemon_command("zebra", &dir),
            )?;
            self.frr_pids.push(("zebra", pid));
        }
        // bgpd needs zebra's API socket; wait for each zebra once, after starting them all.
        for (idx, ns) in spaces.iter().enumerate() {
            let api = self.frr_dir(ns).join("zserv.api");
            let zebra = self.frr_pids[idx].1;
            let log = self.workdir.join(format!("{ns}-zebra.log"));
            let procs = &mut self.procs;
            // Ok(Some(Err)) ends the wait at once: a dead daemon will not create its socket.
            wait_for(
                &format!("zebra API socket {}", api.display()),
                READY_DEADLINE,
                || {
                    if !procs.running(zebra)? {
                        return Ok(Some(Err(anyhow!(
                            "zebra in {ns} exited; see {}",
                            log.display()
                        ))));
                    }
                    Ok(api.exists().then_some(Ok(())))
                },
            )??;
        }
        for ns in &spaces {
            let dir = self.frr_dir(ns);
            let pid =
                self.spawn_in(ns, &format!("{ns}-bgpd"), frr::daemon_command("bgpd", &dir))?;
            self.frr_pids.push(("bgpd", pid));
        }
        Ok(())
    }

    fn start_echo(&mut self, bin: &Path) -> anyhow::Result<()> {
        for i in 1..=self.cfg.nodes {
            let mut cmd = Command::new(bin);
            // Dual-stack: one socket each for TCP and UDP answers IPv4 and IPv6.
            cmd.args([
                "--name",
                &format!("pod{i}"),
                "--port",
                &self.cfg.echo_port.to_string(),
                "--bind",
                "::",
            ]);
            let ns = self.names.pods[i - 1].clone();
            let pid = self.spawn_in(&ns, &format!("pod{i}-echo"), cmd)?;
            self.echo_pids.push(pid);
        }
        Ok(())
    }

    fn wait_bgp_established(&self) -> anyhow::Result<()> {
        let dir = self.frr_dir(&self.names.router);
        let want = self.cfg.nodes;
        wait_for("every router BGP session Established", BGP_DEADLINE, || {
            let states = frr::peer_states(&frr::vtysh_json(&dir, "show bgp summary json")?);
            let up = states.iter().filter(|(_, s)| s == "Established").count();
            if up == want {
                return Ok(Some(()));
            }
            bail!("{up}/{want} Established: {states:?}")
        })
    }

    fn wait_echo_ready(&mut self) -> anyhow::Result<()> {
        for i in 1..=self.cfg.nodes {
            let (ns, ip, port) = (
                self.pod_ns(i).to_string(),
                self.pod_ip(i),
                self.cfg.echo_port,
            );
            let (pid, log) = (
                self.echo_pids[i - 1],
                self.workdir.join(format!("pod{i}-echo.log")),
            );
            let procs = &mut self.procs;
            wait_for(&format!("echo server in {ns}"), READY_DEADLINE, || {
                if !procs.running(pid)? {
                    return Ok(Some(Err(anyhow!(
                        "echo server exited; see {}",
                        log.display()
                    ))));
                }
                super::client::tcp_request(&ns, ip, port).map(|_| Some(Ok(())))
            })??;
        }
        Ok(())
    }

    /// Starts a long-running process inside `ns`, stdout/stderr to `workdir/<log_name>.log`;
    /// tracked and stopped on drop.
    pub fn spawn_in(&mut self, ns: &str, log_name: &str, cmd: Command) -> anyhow::Result<u32> {
        let log = self.workdir.join(format!("{log_name}.log"));
        self.procs.spawn_in(ns, log_name, &log, &cmd)
    }

    /// Like [`Lab::spawn_in`], but the process joins only the network namespace and keeps the
    /// host's mounts. For the l3lb daemon: `ip netns exec` gives a private mount namespace with a
    /// fresh /sys, whose /sys/fs/bpf is not the host's bpffs, so pins would vanish with the
    /// process; with the host's bpffs they outlive it as on a real node.
    pub fn spawn_in_netns_only(
        &mut self,
        ns: &str,
        log_name: &str,
        cmd: Command,
    ) -> anyhow::Result<u32> {
        let log = self.workdir.join(format!("{log_name}.log"));
        self.procs.spawn_in_netns_only(ns, log_name, &log, &cmd)
    }

    /// Starts `cmd`, a `podman run` of container `name` in the foreground (see
    /// [`super::container`]), in the test's own namespaces; output to `workdir/<log_name>.log`.
    /// Its pid is podman's, which passes SIGTERM on to the container; the container is removed
    /// when [`Lab::stop`] stops it and on drop.
    pub fn spawn_container(
        &mut self,
        log_name: &str,
        name: &str,
        cmd: Command,
    ) -> anyhow::Result<u32> {
        let log = self.workdir.join(format!("{log_name}.log"));
        let pid = self.procs.spawn_host(log_name, &log, &cmd)?;
        self.containers.push((pid, name.to_owned()));
        Ok(pid)
    }

    /// SIGTERM, wait, SIGKILL after a deadline. Only pids this lab started.
    pub fn stop(&mut self, pid: u32) -> anyhow::Result<()> {
        self.procs.stop(pid)?;
        self.remove_crash_dir(pid);
        if let Some(i) = self.containers.iter().position(|(p, _)| *p == pid) {
            // Gone already unless podman had to be killed.
            let (_, name) = self.containers.remove(i);
            super::container::remove(&name)?;
        }
        Ok(())
    }

    /// SIGKILL, no grace (a crashed process). Only pids this lab started, not containers.
    pub fn kill(&mut self, pid: u32) -> anyhow::Result<()> {
        if self.containers.iter().any(|(p, _)| *p == pid) {
            bail!("pid {pid} is a container's podman: stop it instead");
        }
        self.procs.kill(pid)?;
        self.remove_crash_dir(pid);
        Ok(())
    }

    /// Whether `pid` (started by this lab) is still running.
    pub fn is_running(&mut self, pid: u32) -> anyhow::Result<bool> {
        self.procs.running(pid)
    }

    /// Every pid this lab started and has not stopped yet.
    pub fn pids(&self) -> Vec<u32> {
        self.procs.pids()
    }

    /// Pids of the echo servers, pod 1 first.
    pub fn echo_pids(&self) -> &[u32] {
        &self.echo_pids
    }

    /// Every namespace this lab created.
    pub fn namespaces(&self) -> &[String] {
        &self.created
    }

    fn remove_crash_dir(&self, pid: u32) {
        if let Some((daemon, _)) = self.frr_pids.iter().find(|(_, p)| *p == pid) {
            let _ = fs::remove_dir_all(frr::crash_dir(daemon, pid));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for e in self.procs.stop_all() {
            eprintln!("lab {}: {e:#}", self.names.id);
        }
        for (_, name) in self.containers.drain(..) {
            if let Err(e) = super::container::remove(&name) {
                eprintln!("lab {}: {e:#}", self.names.id);
            }
        }
        for (daemon, pid) in &self.frr_pids {
            let _ = fs::remove_dir_all(frr::crash_dir(daemon, *pid));
        }
        for i in 1..=self.cfg.nodes {
            if let Err(e) = self.remove_bpffs_dir(i) {
                eprintln!("lab {}: {e:#}", self.names.id);
            }
        }
        for ns in self.created.iter().rev() {
            if let Err(e) = topology::del_netns(ns) {
                eprintln!("lab {}: {e:#}", self.names.id);
            }
        }
        let keep = self.keep_workdir
            || std::thread::panicking()
            || std::env::var_os("L3LB_LAB_KEEP").is_some();
        if keep {
            eprintln!(
                "lab {}: work directory kept: {}",
                self.names.id,
                self.workdir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.workdir);
        }
    }
}
