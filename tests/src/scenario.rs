//! The lab as a small cluster: the netns lab, a test API server reachable from every node
//! namespace, and one real `l3lb run` per node (or, split as deployed, `l3lb run
//! --allocator=false` per node and one `l3lb allocate`, under the identities and privileges a
//! [`Setup`] gives). Shared by the end-to-end test and the demo.
use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    path::PathBuf,
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::{
    apiserver::ApiServer,
    lab::{ContainerSpec, Lab, LabConfig, Privileges, Shape, container, wait_for},
};

/// How often each daemon does a full pass; short so drift repair is quick to observe.
pub const RESYNC: &str = "2s";

/// deploy/base/crd.yaml, the L3lbPool CustomResourceDefinition.
pub const POOL_CRD: &str = include_str!("../../deploy/base/crd.yaml");

/// The L3lbPool [`Cluster::start`] creates: the whole IPv4 and IPv6 VIP prefixes, auto-assigned;
/// in a bridged lab an L2 pool (`advertisement: l2`, answered on the uplinks).
pub const LAB_POOL: &str = "lab";

/// The daemons' allocator Lease (their default name, in the kubeconfig's namespace).
pub const ALLOCATOR_LEASE: &str = "l3lb-allocator";

/// Each daemon's metrics and health listener, on loopback inside its node's namespace (every node
/// is its own namespace, so they all use the same port).
pub const METRICS_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 9465);

/// The split allocator's listener, in node 1's namespace beside that node's daemon.
pub const ALLOCATOR_METRICS_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 9466);

/// The split allocator's identity in the Lease.
pub const ALLOCATOR_IDENTITY: &str = "l3lb-allocator-0";

/// How [`Cluster::start_with`] runs l3lb. The default, [`Cluster::start`]: each node's `l3lb
/// run` as root with every capability and no token (full API access), each standing for the
/// allocator Lease (single-binary mode).
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// Applied to the API server before anything starts (RBAC objects, say).
    pub manifests: Vec<String>,
    /// Who the node daemons are.
    pub nodes: Identity,
    /// `Some`: `l3lb allocate` runs as its own process (in node 1's network namespace) as this
    /// identity, and the node daemons with `--allocator=false`.
    pub allocator: Option<Identity>,
}

/// Who a process is to the API server and to the kernel.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// The ServiceAccount `(namespace, name)` whose token its kubeconfig carries, with that
    /// namespace as the context's (a pod's own); `None`: no token (full access), `default`.
    pub service_account: Option<(String, String)>,
    /// `None`: as the test runs (root, every capability).
    pub privileges: Option<Privileges>,
    /// `Some`: l3lb runs from this container (its image, with its mounts and environment, under
    /// `privileges`: `podman run`, see [`crate::lab::container`]) instead of the host's binary.
    pub container: Option<ContainerSpec>,
}

/// An EndpointSlice endpoint's conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    Ready,
    /// Not ready, not serving (a failing readiness probe).
    NotReady,
    /// Shutting down but still serving: not ready, serving, terminating.
    Terminating,
}

pub struct Cluster {
    // Dropped first: daemons and namespaces go before the API server's runtime.
    pub lab: Lab,
    pub api: ApiServer,
    daemons: BTreeMap<usize, u32>,
    kubeconfigs: BTreeMap<usize, PathBuf>,
    starts: BTreeMap<usize, usize>,
    setup: Setup,
    /// The split allocator's pid and its starts so far.
    allocator: (Option<u32>, usize),
    /// Containers l3lb runs in: pid of their `podman run` -> container name.
    containers: BTreeMap<u32, String>,
    /// Extra `l3lb run` arguments for the daemons started from now on.
    pub daemon_args: Vec<String>,
    pub runtime: tokio::runtime::Runtime,
}

/// The `l3lb` binary under test: `$L3LB_BIN`, else target/<profile>/l3lb next to this executable.
pub fn l3lb_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("L3LB_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("l3lb");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "l3lb binary not found next to {}; run `cargo build -p l3lb-userspace` or set L3LB_BIN",
        exe.display()
    )
}

pub fn metrics_addr() -> SocketAddr {
    SocketAddr::from(METRICS_ADDR)
}

pub fn node_name(i: usize) -> String {
    format!("node{i}")
}

impl Cluster {
    /// Builds the lab, serves the API inside every node namespace and starts a daemon per node.
    pub fn start(cfg: LabConfig) -> anyhow::Result<Cluster> {
        Self::start_with(cfg, Setup::default())
    }

    /// [`Cluster::start`], running l3lb as `setup` says.
    pub fn start_with(cfg: LabConfig, setup: Setup) -> anyhow::Result<Cluster> {
        let who = std::iter::once(&setup.nodes).chain(&setup.allocator);
        for who in who {
            match &who.container {
                Some(c) => container::require_image(&c.image)?,
                None => {
                    let bin = l3lb_bin()?;
                    anyhow::ensure!(
                        bin.is_file(),
                        "{} does not exist; run `cargo build -p l3lb-userspace`",
                        bin.display()
                    );
                }
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let lab = Lab::start(cfg)?;
        let api = ApiServer::new();
        // The CRD as deployed, and one pool covering the lab's VIP prefixes.
        api.apply_yaml(POOL_CRD)?;
        let addresses = [
            lab.config().vip_prefix.to_string(),
            lab.config().vip_prefix6.to_string(),
        ];
        let mut pool = json!({"addresses": addresses});
        if lab.config().shape == Shape::Bridged {
            pool["advertisement"] = json!("l2");
        }
        api.apply(json!({
            "apiVersion": "l3lb.io/v1alpha1", "kind": "L3lbPool",
            "metadata": {"name": LAB_POOL},
            "spec": pool,
        }))?;
        for manifest in &setup.manifests {
            api.apply_yaml(manifest)?;
        }
        let mut cluster = Cluster {
            lab,
            api,
            daemons: BTreeMap::new(),
            kubeconfigs: BTreeMap::new(),
            starts: BTreeMap::new(),
            setup,
            allocator: (None, 0),
            containers: BTreeMap::new(),
            daemon_args: Vec::new(),
            runtime,
        };
        for i in 1..=cluster.lab.config().nodes {
            cluster.apply_node(i, json!({}), false)?;
        }
        for i in 1..=cluster.lab.config().nodes {
            let ns = cluster.lab.node_ns(i).to_owned();
            let addr = cluster.runtime.block_on(cluster.api.listen_in_netns(&ns))?;
            let path = cluster
                .lab
                .workdir()
                .join(format!("kubeconfig-{}", node_name(i)));
            cluster.write_kubeconfig(addr, &path, &cluster.setup.nodes)?;
            cluster.kubeconfigs.insert(i, path);
            cluster.start_daemon(i)?;
        }
        if cluster.setup.allocator.is_some() {
            cluster.start_allocator()?;
        }
        Ok(cluster)
    }

    /// A kubeconfig at `path` for `who` (its token, if any), readable by its uid alone.
    fn write_kubeconfig(
        &self,
        addr: SocketAddr,
        path: &std::path::Path,
        who: &Identity,
    ) -> anyhow::Result<()> {
        let token = who
            .service_account
            .as_ref()
            .map(|(ns, name)| (ns.as_str(), self.api.token_for(ns, name)));
        let namespace = token.as_ref().map_or("default", |(ns, _)| ns);
        let token = token.as_ref().map(|(_, t)| t.as_str());
        ApiServer::write_kubeconfig_as(addr, path, namespace, token)?;
        if let Some(p) = &who.privileges {
            use std::os::unix::fs::PermissionsExt as _;
            std::os::unix::fs::chown(path, Some(p.uid), Some(p.gid))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }

    /// Starts `l3lb allocate` (with a [`Setup::allocator`]) in node 1's network namespace,
    /// against the API server there; its log is [`Cluster::allocator_log`].
    pub fn start_allocator(&mut self) -> anyhow::Result<u32> {
        let who = self
            .setup
            .allocator
            .clone()
            .context("no split allocator in this cluster's setup")?;
        let ns = self.lab.node_ns(1).to_owned();
        let path = self.lab.workdir().join("kubeconfig-allocator");
        if !path.exists() {
            let addr = self.runtime.block_on(self.api.listen_in_netns(&ns))?;
            self.write_kubeconfig(addr, &path, &who)?;
        }
        let prefix = self.lab.config().vip_prefix.to_string();
        let prefix6 = self.lab.config().vip_prefix6.to_string();
        let listen = SocketAddr::from(ALLOCATOR_METRICS_ADDR).to_string();
        let args: Vec<String> = [
            "allocate",
            "--identity",
            ALLOCATOR_IDENTITY,
            "--prefix",
            &prefix,
            "--prefix",
            &prefix6,
            "--resync-interval",
            RESYNC,
            "--metrics-addr",
            &listen,
        ]
        .map(str::to_owned)
        .to_vec();
        self.allocator.1 += 1;
        let log = format!("l3lb-allocator-{}", self.allocator.1);
        let fields = BTreeMap::from([("metadata.name", ALLOCATOR_IDENTITY.to_owned())]);
        let pid = self.spawn_l3lb(
            &ns,
            &log,
            &who,
            who.privileges.as_ref(),
            &fields,
            &path,
            &args,
        )?;
        self.allocator.0 = Some(pid);
        Ok(pid)
    }

    /// Starts l3lb with `args` in network namespace `ns` as `who` under `privileges`, with
    /// `kubeconfig`: the host's binary (joining only the network namespace: host mounts, so pins
    /// go to the host's bpffs and outlive it), or `who`'s container (`fields`: the pod fields its
    /// environment reads). Its output goes to the log `log`.
    #[allow(clippy::too_many_arguments)]
    fn spawn_l3lb(
        &mut self,
        ns: &str,
        log: &str,
        who: &Identity,
        privileges: Option<&Privileges>,
        fields: &BTreeMap<&str, String>,
        kubeconfig: &std::path::Path,
        args: &[String],
    ) -> anyhow::Result<u32> {
        let kubeconfig_str = kubeconfig.to_str().context("non-UTF-8 kubeconfig path")?;
        let env = [
            ("KUBECONFIG", kubeconfig_str),
            ("RUST_LOG", "info"),
            ("NO_COLOR", "1"),
        ];
        let Some(spec) = &who.container else {
            let mut cmd = Command::new(l3lb_bin()?);
            cmd.args(args).envs(env);
            if let Some(p) = privileges {
                cmd = p.wrap(&cmd)?;
            }
            return self.lab.spawn_in_netns_only(ns, log, cmd);
        };
        let privileges = privileges.unwrap_or(&spec.privileges);
        let name = format!("{}-{log}", self.lab.id());
        let cmd = spec.podman_run(&name, ns, privileges, fields, &[kubeconfig], &env, args)?;
        let pid = self.lab.spawn_container(log, &name, cmd)?;
        self.containers.insert(pid, name);
        Ok(pid)
    }

    /// The process running l3lb for `pid` (a pid [`Cluster::daemon_pid`] or
    /// [`Cluster::allocator_pid`] gave): `pid` itself, or for a container the host pid of its
    /// first process, once it has one (up to 30 s).
    pub fn l3lb_process(&self, pid: u32) -> anyhow::Result<u32> {
        let Some(name) = self.containers.get(&pid) else {
            return Ok(pid);
        };
        wait_for(
            &format!("container {name} to run"),
            Duration::from_secs(30),
            || container::pid(name),
        )
    }

    /// Stops the split allocator with SIGTERM (as the kubelet would).
    pub fn stop_allocator(&mut self) -> anyhow::Result<()> {
        let pid = self.allocator.0.take().context("allocator not running")?;
        self.lab.stop(pid)
    }

    /// The split allocator's current log.
    pub fn allocator_log(&self) -> String {
        let path = self
            .lab
            .workdir()
            .join(format!("l3lb-allocator-{}.log", self.allocator.1));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The pid of the split allocator, if it runs.
    pub fn allocator_pid(&self) -> Option<u32> {
        self.allocator.0
    }

    /// The kubeconfig node `i`'s daemon uses.
    pub fn kubeconfig(&self, i: usize) -> Option<&std::path::Path> {
        self.kubeconfigs.get(&i).map(PathBuf::as_path)
    }

    /// The pid of node `i`'s daemon, if it runs.
    pub fn daemon_pid(&self, i: usize) -> Option<u32> {
        self.daemons.get(&i).copied()
    }

    /// Starts `l3lb run` in node `i`'s namespace, pinning into `lab.bpffs_dir(i)`; its log is
    /// `daemon_log(i)`.
    pub fn start_daemon(&mut self, i: usize) -> anyhow::Result<u32> {
        let privileges = self.setup.nodes.privileges.clone();
        self.start_daemon_as(i, privileges.as_ref())
    }

    /// [`Cluster::start_daemon`] under `privileges` instead of the setup's (`None`: the test's).
    pub fn start_daemon_as(
        &mut self,
        i: usize,
        privileges: Option<&Privileges>,
    ) -> anyhow::Result<u32> {
        let prefix = self.lab.config().vip_prefix.to_string();
        let prefix6 = self.lab.config().vip_prefix6.to_string();
        let bpffs = self.lab.bpffs_dir(i);
        let socket = self.control_socket(i);
        let mut args: Vec<String> = [
            "run",
            "--node-name",
            &node_name(i),
            "--prefix",
            &prefix,
            "--prefix",
            &prefix6,
            "--uplink",
            self.lab.uplink(),
            "--resync-interval",
            RESYNC,
            // The lab's Services carry no loadBalancerClass: served by default.
            "--bpffs-dir",
            bpffs.to_str().context("non-UTF-8 bpffs path")?,
            // Every node daemon shares the host's mounts: one socket path each.
            "--control-socket",
            socket.to_str().context("non-UTF-8 socket path")?,
            "--metrics-addr",
            &metrics_addr().to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        if self.setup.allocator.is_some() {
            args.push("--allocator=false".into());
        }
        args.extend(self.daemon_args.iter().cloned());
        let n = self.starts.entry(i).or_default();
        *n += 1;
        let log = format!("l3lb-{}-{n}", node_name(i));
        let ns = self.lab.node_ns(i).to_owned();
        let kubeconfig = self.kubeconfigs[&i].clone();
        let who = self.setup.nodes.clone();
        let fields = BTreeMap::from([
            ("spec.nodeName", node_name(i)),
            ("metadata.name", format!("l3lb-{}", node_name(i))),
        ]);
        let pid = self.spawn_l3lb(&ns, &log, &who, privileges, &fields, &kubeconfig, &args)?;
        self.daemons.insert(i, pid);
        Ok(pid)
    }

    /// Stops node `i`'s daemon with SIGTERM (as systemd or the kubelet would).
    pub fn stop_daemon(&mut self, i: usize) -> anyhow::Result<()> {
        let pid = self.daemons.remove(&i).context("daemon not running")?;
        self.lab.stop(pid)
    }

    /// Kills node `i`'s daemon with SIGKILL (a crash: no cleanup, its pins and programs stay).
    pub fn kill_daemon(&mut self, i: usize) -> anyhow::Result<()> {
        let pid = self.daemons.remove(&i).context("daemon not running")?;
        self.lab.kill(pid)
    }

    /// The current (latest) log of node `i`'s daemon.
    pub fn daemon_log(&self, i: usize) -> String {
        let n = self.starts.get(&i).copied().unwrap_or(1);
        let path = self
            .lab
            .workdir()
            .join(format!("l3lb-{}-{n}.log", node_name(i)));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Creates or replaces a LoadBalancer Service `default/name` with `spec.loadBalancerIP`,
    /// serving TCP and UDP `port` -> the pods' echo port.
    pub fn apply_service(&self, name: &str, vip: Ipv4Addr, port: u16) -> anyhow::Result<()> {
        self.apply_lb_service(name, Some(vip), port)
    }

    /// Like [`Cluster::apply_service`]; without an address (`None`) the allocator picks one from
    /// the pool.
    pub fn apply_lb_service(
        &self,
        name: &str,
        vip: Option<Ipv4Addr>,
        port: u16,
    ) -> anyhow::Result<()> {
        let echo = self.lab.config().echo_port;
        let mut spec = json!({
            "type": "LoadBalancer",
            "selector": {"app": name},
            "ports": [
                {"name": "tcp", "port": port, "protocol": "TCP", "targetPort": echo},
                {"name": "udp", "port": port, "protocol": "UDP", "targetPort": echo},
            ],
        });
        if let Some(vip) = vip {
            spec["loadBalancerIP"] = json!(vip.to_string());
        }
        self.api.apply(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "default", "name": name},
            "spec": spec,
        }))
    }

    /// The addresses in Service `name`'s `status.loadBalancer.ingress`.
    pub fn ingress(&self, name: &str) -> Vec<IpAddr> {
        let ips = self.api.ingress_ips("default", name);
        ips.iter().filter_map(|ip| ip.parse().ok()).collect()
    }

    /// The node index whose daemon holds the allocator Lease, if any.
    pub fn allocator(&self) -> Option<usize> {
        let holder = self.api.lease_holder("default", ALLOCATOR_LEASE)?;
        (1..=self.lab.config().nodes).find(|i| node_name(*i) == holder)
    }

    /// Creates or replaces the EndpointSlice of Service `name`: every pod, Ready as given by
    /// `ready(node index)`.
    pub fn apply_endpoints(&self, name: &str, ready: impl Fn(usize) -> bool) -> anyhow::Result<()> {
        self.apply_endpoint_states(name, |i| {
            Some(match ready(i) {
                true => EndpointState::Ready,
                false => EndpointState::NotReady,
            })
        })
    }

    /// Creates or replaces the EndpointSlice of Service `name` with the pod of every node `i` for
    /// which `state(i)` is not None, in that state.
    pub fn apply_endpoint_states(
        &self,
        name: &str,
        state: impl Fn(usize) -> Option<EndpointState>,
    ) -> anyhow::Result<()> {
        self.apply_family_endpoint_states(name, false, state)
    }

    /// [`Cluster::apply_endpoint_states`] with the pods' IPv6 addresses when `v6`.
    pub fn apply_family_endpoint_states(
        &self,
        name: &str,
        v6: bool,
        state: impl Fn(usize) -> Option<EndpointState>,
    ) -> anyhow::Result<()> {
        let pod = |i| match v6 {
            true => IpAddr::V6(self.lab.pod_ip6(i)),
            false => IpAddr::V4(self.lab.pod_ip(i)),
        };
        let endpoints: Vec<(IpAddr, usize, EndpointState)> = (1..=self.lab.config().nodes)
            .filter_map(|i| Some((pod(i), i, state(i)?)))
            .collect();
        self.apply_endpoint_list(name, &endpoints)
    }

    /// Creates or replaces the EndpointSlice of Service `name` with the given endpoints (address,
    /// node index, state), all of the first one's family, serving the pods' echo port (TCP, UDP).
    pub fn apply_endpoint_list(
        &self,
        name: &str,
        endpoints: &[(IpAddr, usize, EndpointState)],
    ) -> anyhow::Result<()> {
        let echo = self.lab.config().echo_port;
        let v6 = endpoints.first().is_some_and(|(a, _, _)| a.is_ipv6());
        let endpoints: Vec<Value> = endpoints
            .iter()
            .map(|(addr, i, state)| {
                let (ready, serving, terminating) = match state {
                    EndpointState::Ready => (true, true, false),
                    EndpointState::NotReady => (false, false, false),
                    EndpointState::Terminating => (false, true, true),
                };
                json!({
                    "addresses": [addr.to_string()],
                    "nodeName": node_name(*i),
                    "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
                })
            })
            .collect();
        self.api.apply(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": "default", "name": format!("{name}-x1"),
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": if v6 { "IPv6" } else { "IPv4" },
            "endpoints": endpoints,
            "ports": [
                {"name": "tcp", "port": echo, "protocol": "TCP"},
                {"name": "udp", "port": echo, "protocol": "UDP"},
            ],
        }))
    }

    /// Sends `n` TCP connections and `n` UDP requests from the client to `vip:port`: every one
    /// must be answered, by a pod that saw the client's own address. Answers per `pod/proto`.
    pub fn spread(
        &self,
        vip: impl Into<IpAddr>,
        port: u16,
        n: usize,
    ) -> anyhow::Result<BTreeMap<String, usize>> {
        let vip = vip.into();
        let client = match vip {
            IpAddr::V4(_) => self.lab.client_ip().to_string(),
            IpAddr::V6(_) => self.lab.client_ip6().to_string(),
        };
        let mut per_pod = BTreeMap::new();
        for i in 0..n {
            for (proto, answer) in [
                ("tcp", self.lab.tcp_request(vip, port)),
                ("udp", self.lab.udp_request(vip, port)),
            ] {
                let answer =
                    answer.with_context(|| format!("{proto} request {i} to {vip}:{port}"))?;
                let mut words = answer.split_whitespace();
                let (Some(pod), Some(peer)) = (words.next(), words.next()) else {
                    bail!("odd answer {answer:?}")
                };
                let peer_ip = peer
                    .rsplit_once(':')
                    .map_or(peer, |(ip, _)| ip.trim_matches(['[', ']']));
                anyhow::ensure!(
                    peer_ip == client,
                    "{pod} saw {peer_ip} over {proto}, not the client's {client}"
                );
                *per_pod.entry(format!("{pod}/{proto}")).or_insert(0) += 1;
            }
        }
        Ok(per_pod)
    }

    /// `l3lb stats` in node `i`'s namespace, as counter name -> packets.
    pub fn datapath_packets(&self, i: usize) -> anyhow::Result<BTreeMap<String, u64>> {
        self.stats_packets(i, &[])
    }

    /// Packets DNATed per frontend (`VIP:port/proto`) on node `i`, from `l3lb stats --frontends`.
    pub fn frontend_packets(&self, i: usize) -> anyhow::Result<BTreeMap<String, u64>> {
        self.stats_packets(i, &["--frontends"])
    }

    /// The first two columns of `l3lb stats` on node `i` (with `extra` flags): name -> packets.
    fn stats_packets(&self, i: usize, extra: &[&str]) -> anyhow::Result<BTreeMap<String, u64>> {
        let bin = l3lb_bin()?;
        let bin = bin.to_str().context("non-UTF-8 binary path")?;
        let mut args = vec![bin, "stats", "--uplink", self.lab.uplink()];
        args.extend_from_slice(extra);
        let out = self.lab.exec(self.lab.node_ns(i), &args)?;
        let mut packets = BTreeMap::new();
        for line in out.lines().skip(1) {
            let mut cols = line.split_whitespace();
            if let (Some(name), Some(n)) = (cols.next(), cols.next()) {
                packets.insert(name.to_owned(), n.parse()?);
            }
        }
        Ok(packets)
    }

    /// `GET path` from node `i`'s metrics listener: (status code, body).
    pub fn http_get(&self, i: usize, path: &str) -> anyhow::Result<(u16, String)> {
        self.http_get_from(i, metrics_addr(), path)
    }

    /// `GET path` from the split allocator's listener.
    pub fn allocator_http_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        self.http_get_from(1, SocketAddr::from(ALLOCATOR_METRICS_ADDR), path)
    }

    /// `GET path` from `addr` in node `i`'s namespace: (status code, body).
    fn http_get_from(
        &self,
        i: usize,
        addr: SocketAddr,
        path: &str,
    ) -> anyhow::Result<(u16, String)> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: l3lb\r\nConnection: close\r\n\r\n");
        let response = crate::netns::in_netns(self.lab.node_ns(i), move || {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(request.as_bytes())?;
            let mut out = String::new();
            stream.read_to_string(&mut out)?;
            Ok::<_, std::io::Error>(out)
        })??;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .with_context(|| format!("no HTTP header end in {response:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("no HTTP status in {head:?}"))?;
        Ok((status, body.to_owned()))
    }

    /// Waits (up to 30 s) until the router's next hops for `vip`/32 are exactly `want`. On a
    /// timeout the error carries the end of every daemon's log.
    pub fn wait_nexthops(&self, vip: Ipv4Addr, want: &[Ipv4Addr]) -> anyhow::Result<()> {
        let want: BTreeSet<Ipv4Addr> = want.iter().copied().collect();
        let what = format!("router next hops for {vip}/32 = {want:?}");
        wait_for(&what, Duration::from_secs(30), || {
            let seen: BTreeSet<_> = self
                .lab
                .router_nexthops(&format!("{vip}/32"))?
                .into_iter()
                .collect();
            if seen == want {
                Ok(Some(()))
            } else {
                bail!("next hops {seen:?}")
            }
        })
        .with_context(|| self.log_tails(20))
    }

    /// Waits (up to 30 s) until `vip` is on node `node`'s `lo` (`present`) or gone from it. On a
    /// timeout the error carries the end of every daemon's log.
    pub fn wait_lo(&self, node: usize, vip: IpAddr, present: bool) -> anyhow::Result<()> {
        let state = if present { "on" } else { "off" };
        wait_for(
            &format!("{vip} {state} lo of node{node}"),
            Duration::from_secs(30),
            || {
                let lo = self.lab.lo_addresses(node)?;
                if lo.contains(&vip) == present {
                    Ok(Some(()))
                } else {
                    bail!("lo of node{node}: {lo:?}")
                }
            },
        )
        .with_context(|| self.log_tails(20))
    }

    /// The last `n` lines of each daemon's current log (and the split allocator's).
    pub fn log_tails(&self, n: usize) -> String {
        let mut out = String::new();
        let split = (self.allocator.1 > 0).then(|| ("allocator".to_owned(), self.allocator_log()));
        let logs = (1..=self.lab.config().nodes).map(|i| (node_name(i), self.daemon_log(i)));
        for (name, log) in logs.chain(split) {
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(n)..];
            out += &format!("--- {name} (last {n} lines)\n{}\n", tail.join("\n"));
        }
        out
    }

    pub fn delete_service(&self, name: &str) -> anyhow::Result<()> {
        self.api.delete("v1", "Service", Some("default"), name)?;
        self.api.delete(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            Some("default"),
            &format!("{name}-x1"),
        )
    }
}
