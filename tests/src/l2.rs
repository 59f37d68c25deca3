//! L2 mode in a bridged lab ([`crate::lab::Shape::Bridged`]): Services with several L2
//! addresses, who answers for an address as the client sees it (its neighbour table), and a node
//! falling off the segment. Shared by `tests/tests/l2.rs` and the failover benchmark.
use std::net::IpAddr;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use l3lb_userspace::core::{
    l2::{L2Service, announcers},
    model::ServiceKey,
};

use crate::{
    lab::{Lab, wait_for},
    scenario::{Cluster, EndpointState, node_name},
};

/// The annotation asking the allocator for N addresses per family from L2 pools.
pub const ADDRESS_COUNT: &str = "l3lb.io/l2-address-count";

/// The client's interface on the segment.
const CLIENT_LINK: &str = "eth0";

/// The client's neighbour entry for one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// Link-layer address, lowercase `aa:bb:..`.
    pub mac: String,
    /// NUD states as `ip` names them (`REACHABLE`, `STALE`, ...).
    pub state: Vec<String>,
}

/// The nodes every daemon should agree announce `addrs` (Service `default/name`'s) when the
/// nodes in `eligible` have a Ready endpoint and are alive: the daemons' own pure choice
/// ([`announcers`]), so a test waits for the converged state rather than the first one it sees
/// (at start, a node announces what it would while it has not seen the others' Leases yet).
pub fn expected_announcers(
    name: &str,
    addrs: &[IpAddr],
    eligible: &[usize],
) -> anyhow::Result<Vec<usize>> {
    let nodes: std::collections::BTreeSet<String> =
        eligible.iter().map(|i| node_name(*i)).collect();
    let service = L2Service {
        key: ServiceKey {
            namespace: "default".into(),
            name: name.into(),
        },
        addresses: addrs.to_vec(),
        ready_nodes: nodes.clone(),
    };
    let chosen = announcers(&[service], &Default::default(), &nodes);
    addrs
        .iter()
        .map(|a| {
            let node = chosen
                .get(a)
                .with_context(|| format!("no announcer for {a}"))?;
            eligible
                .iter()
                .copied()
                .find(|i| node_name(*i) == *node)
                .with_context(|| format!("{a}: announcer {node} is no lab node"))
        })
        .collect()
}

impl Lab {
    /// The MAC address of node `i`'s uplink.
    pub fn uplink_mac(&self, i: usize) -> anyhow::Result<String> {
        let out = self.exec(
            self.node_ns(i),
            &["ip", "-j", "link", "show", self.uplink()],
        )?;
        let v: Value = serde_json::from_str(&out)?;
        v[0]["address"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .with_context(|| format!("no address in {out}"))
    }

    /// The client's neighbour entry for `addr`, if it has one with a link-layer address (not
    /// an incomplete or failed one).
    pub fn client_neighbour(&self, addr: IpAddr) -> anyhow::Result<Option<Neighbour>> {
        let to = addr.to_string();
        let args = ["ip", "-j", "neigh", "show", "to", &to, "dev", CLIENT_LINK];
        let out = self.exec(self.client_ns(), &args)?;
        let v: Value = serde_json::from_str(&out).with_context(|| format!("`ip neigh`: {out}"))?;
        let Some(entry) = v.as_array().and_then(|a| a.first()) else {
            return Ok(None);
        };
        let state = entry["state"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        Ok(entry["lladdr"].as_str().map(|mac| Neighbour {
            mac: mac.to_ascii_lowercase(),
            state,
        }))
    }

    /// Forgets the client's neighbour entry for `addr` (the next packet asks again).
    pub fn forget_client_neighbour(&self, addr: IpAddr) -> anyhow::Result<()> {
        let to = addr.to_string();
        let args = ["ip", "neigh", "flush", "to", &to, "dev", CLIENT_LINK];
        self.exec(self.client_ns(), &args).map(drop)
    }

    /// The node whose uplink has `mac`.
    pub fn node_with_mac(&self, mac: &str) -> anyhow::Result<Option<usize>> {
        for i in 1..=self.config().nodes {
            if self.uplink_mac(i)? == mac {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The node the client sends `addr`'s packets to: the one whose MAC its neighbour entry
    /// holds. `None` while it has no complete entry.
    pub fn client_sends_to(&self, addr: IpAddr) -> anyhow::Result<Option<usize>> {
        match self.client_neighbour(addr)? {
            None => Ok(None),
            Some(n) => match self.node_with_mac(&n.mac)? {
                Some(i) => Ok(Some(i)),
                None => bail!("the client's entry for {addr} holds {n:?}, no node's MAC"),
            },
        }
    }

    /// Sets node `i`'s uplink up or down (`ip link set up0 up|down` in its namespace).
    pub fn set_uplink(&self, i: usize, up: bool) -> anyhow::Result<()> {
        let state = if up { "up" } else { "down" };
        let args = ["ip", "link", "set", self.uplink(), state];
        self.exec(self.node_ns(i), &args).map(drop)
    }
}

impl Cluster {
    /// Creates or replaces a LoadBalancer Service `default/name` of one family (IPv6 when `v6`)
    /// asking for `count` L2 addresses, serving TCP and UDP `port` -> the pods' echo port.
    pub fn apply_l2_service(
        &self,
        name: &str,
        v6: bool,
        count: usize,
        port: u16,
    ) -> anyhow::Result<()> {
        let echo = self.lab.config().echo_port;
        self.api.apply(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "default", "name": name,
                         "annotations": {ADDRESS_COUNT: count.to_string()}},
            "spec": {
                "type": "LoadBalancer",
                "ipFamilies": [if v6 { "IPv6" } else { "IPv4" }],
                "ports": [
                    {"name": "tcp", "port": port, "protocol": "TCP", "targetPort": echo},
                    {"name": "udp", "port": port, "protocol": "UDP", "targetPort": echo},
                ],
            },
        }))
    }

    /// Service `name`'s endpoints: the pod of every node, Ready except on the nodes in
    /// `not_ready`.
    pub fn apply_l2_endpoints(
        &self,
        name: &str,
        v6: bool,
        not_ready: &[usize],
    ) -> anyhow::Result<()> {
        self.apply_family_endpoint_states(name, v6, |i| {
            Some(match not_ready.contains(&i) {
                true => EndpointState::NotReady,
                false => EndpointState::Ready,
            })
        })
    }

    /// Waits (up to `deadline`) until Service `name`'s status lists `count` addresses, and
    /// returns them sorted.
    pub fn wait_ingress(
        &self,
        name: &str,
        count: usize,
        deadline: std::time::Duration,
    ) -> anyhow::Result<Vec<IpAddr>> {
        wait_for(
            &format!("{count} addresses in the status of {name}"),
            deadline,
            || {
                let mut ips = self.ingress(name);
                ips.sort();
                match ips.len() == count {
                    true => Ok(Some(ips)),
                    false => bail!("status lists {ips:?}"),
                }
            },
        )
        .with_context(|| self.log_tails(20))
    }

    /// Whether `addr` is served the way L2 mode promises, now: the client's neighbour entry
    /// names a node other than those in `not`, and a TCP and a UDP request to `port` are
    /// answered by that very node's pod, which saw the client's address. The node, or why not.
    pub fn served_by(&self, addr: IpAddr, port: u16, not: &[usize]) -> anyhow::Result<usize> {
        // A request first: it makes the client ask for the address if it has no entry.
        let pod = self.answering_node(addr, port);
        let Some(node) = self.lab.client_sends_to(addr)? else {
            bail!("no neighbour entry for {addr} (request: {pod:?})");
        };
        let pod = pod?;
        if not.contains(&node) {
            bail!("the client still sends {addr} to node{node}");
        }
        if pod != node {
            bail!("the client sends {addr} to node{node}, but pod{pod} answered");
        }
        Ok(node)
    }

    /// Waits (up to `deadline`) until every address of `addrs` is [served](Cluster::served_by)
    /// by a node not in `not`, and `check` accepts the nodes (in the order of `addrs`). On a
    /// timeout the error carries the end of every daemon's log.
    pub fn wait_served_all(
        &self,
        addrs: &[IpAddr],
        port: u16,
        not: &[usize],
        deadline: std::time::Duration,
        check: impl Fn(&[usize]) -> anyhow::Result<()>,
    ) -> anyhow::Result<Vec<usize>> {
        wait_for(
            &format!("{addrs:?} each answered by one node (not {not:?}) and served by its pod"),
            deadline,
            || {
                let nodes = addrs
                    .iter()
                    .map(|a| self.served_by(*a, port, not))
                    .collect::<anyhow::Result<Vec<usize>>>()?;
                check(&nodes).with_context(|| format!("served by {nodes:?}"))?;
                Ok(Some(nodes))
            },
        )
        .with_context(|| self.log_tails(30))
    }

    /// [`Cluster::wait_served_all`] for one address, whatever node serves it.
    pub fn wait_served(
        &self,
        addr: IpAddr,
        port: u16,
        not: &[usize],
        deadline: std::time::Duration,
    ) -> anyhow::Result<usize> {
        let nodes = self.wait_served_all(&[addr], port, not, deadline, |_| Ok(()))?;
        Ok(nodes[0])
    }

    /// `l3lb_l2_addresses_announced` of node `i`'s daemon.
    pub fn l2_announced(&self, i: usize) -> anyhow::Result<f64> {
        let (_, body) = self.http_get(i, "/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix("l3lb_l2_addresses_announced "))
            .and_then(|v| v.trim().parse().ok())
            .context("no l3lb_l2_addresses_announced in /metrics")
    }

    /// One TCP and one UDP request to `addr`: both answered by the same pod, which saw the
    /// client's own address; returns that pod's node.
    pub fn answering_node(&self, addr: IpAddr, port: u16) -> anyhow::Result<usize> {
        let per_pod = self.spread(addr, port, 1)?;
        let pods: std::collections::BTreeSet<&str> = per_pod
            .keys()
            .filter_map(|k| k.split_once('/').map(|(pod, _)| pod))
            .collect();
        let [pod] = pods.into_iter().collect::<Vec<_>>()[..] else {
            bail!("TCP and UDP to {addr} answered by different pods: {per_pod:?}");
        };
        pod.strip_prefix("pod")
            .and_then(|i| i.parse().ok())
            .with_context(|| format!("odd pod name {pod:?}"))
    }
}
