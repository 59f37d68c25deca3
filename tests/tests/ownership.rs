//! Multi-tenant safety end to end, on the FRR lab with a real daemon per node: a Service in
//! another namespace that lists a granted VIP in its `spec.externalIPs` takes none of its
//! traffic, and endpoints pointing at the node itself or outside its pod CIDRs are never
//! programmed.
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use l3lb_tests::{
    lab::{LabConfig, Stream, wait_for},
    scenario::Cluster,
};
use serde_json::{Value, json};

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const PORT: u16 = 80;
/// Where the intruder's and the "host" echo servers listen.
const OTHER_PORT: u16 = 9090;
const CONVERGE: Duration = Duration::from_secs(30);

/// The pod names answering `n` TCP and `n` UDP requests to the VIP.
fn answers(c: &Cluster, n: usize) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut per_pod = BTreeMap::new();
    for i in 0..n {
        for answer in [c.lab.tcp_request(VIP, PORT), c.lab.udp_request(VIP, PORT)] {
            let answer = answer.with_context(|| format!("request {i} to {VIP}:{PORT}"))?;
            let pod = answer.split_whitespace().next().unwrap_or_default();
            *per_pod.entry(pod.to_owned()).or_insert(0) += 1;
        }
    }
    Ok(per_pod)
}

/// Warning Events on Service `ns/name` with `reason`, as (reporting node, note).
fn warnings(c: &Cluster, ns: &str, name: &str, reason: &str) -> Vec<(String, String)> {
    c.api
        .events()
        .iter()
        .filter(|e| {
            e["regarding"]["namespace"] == ns
                && e["regarding"]["name"] == name
                && e["reason"] == reason
                && e["type"] == "Warning"
        })
        .map(|e| {
            (
                e["reportingInstance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                e["note"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// An echo server named `name` on `OTHER_PORT` in namespace `ns`.
fn echo(c: &mut Cluster, ns: &str, name: &str) -> anyhow::Result<()> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_l3lb-echo"));
    cmd.args(["--name", name, "--port", &OTHER_PORT.to_string()]);
    c.lab.spawn_in(ns, name, cmd)?;
    wait_for(&format!("{name} listening"), CONVERGE, || {
        Ok(c.lab
            .exec(ns, &["ss", "-Htln", &format!("sport = :{OTHER_PORT}")])?
            .contains("LISTEN")
            .then_some(()))
    })
}

#[test]
fn an_external_ip_claim_takes_nothing_from_the_owner() -> anyhow::Result<()> {
    let mut c = Cluster::start(LabConfig::default())?;
    let (n1, n2) = (c.lab.node_ip(1), c.lab.node_ip(2));

    // `default/web` requests the VIP and is granted it; pods on both nodes.
    c.apply_service("web", VIP, PORT)?;
    c.apply_endpoints("web", |_| true)?;
    c.wait_nexthops(VIP, &[n1, n2])?;
    ensure!(
        c.ingress("web") == [VIP],
        "web's status: {:?}",
        c.ingress("web")
    );
    let to = SocketAddr::from((VIP, PORT));
    let mut streams: Vec<Stream> = (0..8)
        .map(|_| Stream::open(c.lab.client_ns(), to))
        .collect::<anyhow::Result<_>>()?;

    // `evil/grab`, created later, lists the VIP in its externalIPs (inside the lab pool, which
    // allows every namespace) with a pod on node1 that answers as "intruder".
    let pod1 = c.lab.pod_ns(1).to_owned();
    echo(&mut c, &pod1, "intruder")?;
    c.api.apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "evil", "name": "grab"},
        "spec": {"type": "LoadBalancer", "externalIPs": [VIP.to_string()],
                 "ports": [{"name": "tcp", "port": PORT, "protocol": "TCP", "targetPort": OTHER_PORT}]},
    }))?;
    c.api.apply(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "evil", "name": "grab-1",
                     "labels": {"kubernetes.io/service-name": "grab"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [c.lab.pod_ip(1).to_string()], "nodeName": "node1",
                       "conditions": {"ready": true}}],
        "ports": [{"name": "tcp", "port": OTHER_PORT, "protocol": "TCP"}],
    }))?;

    // Every node refuses the claim, with an Event that does not name the other tenant's Service.
    wait_for(
        "AddressRefused Events on evil/grab from both nodes",
        CONVERGE,
        || {
            let seen = warnings(&c, "evil", "grab", "AddressRefused");
            let nodes: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
            if nodes.contains(&"node1") && nodes.contains(&"node2") {
                Ok(Some(()))
            } else {
                bail!("{seen:?}")
            }
        },
    )?;
    for (node, note) in warnings(&c, "evil", "grab", "AddressRefused") {
        ensure!(
            note.contains(&format!("{VIP} belongs to a Service in another namespace")),
            "{node}: {note}"
        );
        ensure!(
            !note.contains("web") && !note.contains("default"),
            "{node} leaks: {note}"
        );
    }

    // Nothing else changed: web keeps its status and both routes, every open connection goes on,
    // and every new request reaches web's pods.
    ensure!(
        c.ingress("web") == [VIP],
        "web's status: {:?}",
        c.ingress("web")
    );
    c.wait_nexthops(VIP, &[n1, n2])?;
    for (i, s) in streams.iter_mut().enumerate() {
        let pod = s.exchange(&format!("after-claim-{i}"))?;
        ensure!(pod == s.pod, "stream {i} moved from {} to {pod}", s.pod);
    }
    let per_pod = answers(&c, 24)?;
    ensure!(
        per_pod.keys().all(|p| p == "pod1" || p == "pod2"),
        "traffic reached another Service's pod: {per_pod:?}"
    );

    // Once web releases the VIP (deleted), the claim may have it: it is inside a pool that
    // allows the namespace, and the oldest remaining claim.
    c.delete_service("web")?;
    wait_for("grab serves the released VIP from node1", CONVERGE, || {
        let answer = c.lab.tcp_request(VIP, PORT);
        match answer {
            Ok(a) if a.starts_with("intruder ") => Ok(Some(())),
            other => bail!("{other:?}"),
        }
    })?;
    Ok(())
}

#[test]
fn endpoints_at_the_node_itself_or_outside_its_pod_cidrs_are_refused() -> anyhow::Result<()> {
    let mut c = Cluster::start(LabConfig {
        nodes: 1,
        ..LabConfig::default()
    })?;
    // A listener on the node itself (as sshd or the kubelet would be), on every address.
    let node1 = c.lab.node_ns(1).to_owned();
    echo(&mut c, &node1, "host")?;
    c.apply_service("web", VIP, PORT)?;
    let (pod, node, gw) = (
        c.lab.pod_ip(1).to_string(),
        c.lab.node_ip(1).to_string(),
        "10.244.1.1".to_owned(),
    );
    let endpoint = |addr: &str, node: &str| -> Value {
        json!({"addresses": [addr], "nodeName": node, "conditions": {"ready": true}})
    };
    c.api.apply(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": "web-x1",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [
            endpoint(&pod, "node1"),
            endpoint(&node, "node1"),
            endpoint(&gw, "node1"),
            endpoint("127.0.0.1", "node1"),
            endpoint("10.244.9.9", "node1"),
            endpoint("10.244.2.2", "node2"),
        ],
        "ports": [{"name": "tcp", "port": OTHER_PORT, "protocol": "TCP"},
                  {"name": "udp", "port": OTHER_PORT, "protocol": "UDP"}],
    }))?;
    // The pod listens on the echo port only; serve OTHER_PORT there too.
    let pod1 = c.lab.pod_ns(1).to_owned();
    echo(&mut c, &pod1, "pod1-other")?;
    c.wait_nexthops(VIP, &[c.lab.node_ip(1)])?;

    let want = [
        (format!("endpoints {node}, {gw} are addresses of the node itself"), "node address"),
        ("endpoints 127.0.0.1 are not ordinary unicast".to_owned(), "loopback"),
        (
            "endpoints 10.244.9.9 are outside the node's pod CIDRs (10.244.1.0/24, fd00:244:1::/64)"
                .to_owned(),
            "outside the pod CIDRs",
        ),
    ];
    wait_for(
        "Warning Events for every untrusted endpoint",
        CONVERGE,
        || {
            let notes: Vec<String> = warnings(&c, "default", "web", "AddressRefused")
                .into_iter()
                .map(|(_, n)| n)
                .collect();
            for (text, what) in &want {
                if !notes.iter().any(|n| n.contains(text.as_str())) {
                    bail!("no Event for the {what}: {notes:?}");
                }
            }
            Ok(Some(()))
        },
    )?;
    ensure!(
        warnings(&c, "default", "web", "AddressRefused")
            .iter()
            .all(|(_, n)| !n.contains("10.244.2.2")),
        "another node's endpoint is not this node's to judge"
    );
    let (_, body) = c.http_get(1, "/metrics")?;
    ensure!(
        body.lines().any(|l| l == "l3lb_endpoints_refused 4"),
        "metrics:\n{}",
        body.lines()
            .filter(|l| l.contains("refused"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every request reaches the pod, none the node's own sockets.
    let per_pod = answers(&c, 16)?;
    ensure!(
        per_pod.keys().all(|p| p == "pod1-other"),
        "a request reached something other than the pod: {per_pod:?}"
    );
    Ok(())
}
