//! The container image, run as deployed (root, FRR, podman; `cargo xtask image` builds the
//! image first, and this fails with that hint when it is missing). Every node's `l3lb run`
//! runs from the image deploy/base/daemonset.yaml names, by `podman run` in the node's network
//! namespace (the DaemonSet's `hostNetwork`) with exactly that container's securityContext
//! (capabilities, no_new_privs, read-only root file system), its hostPath /sys/fs/bpf, its
//! environment and ServiceAccount token; `l3lb allocate` runs from the same image as
//! deploy/base/allocator.yaml says (uid 65534, no capabilities, read-only, RuntimeDefault
//! seccomp). The API server enforces deploy/base/rbac.yaml. The main scenario passes: a pool
//! address, both nodes announcing, requests keeping the client's address, failover when a pod
//! turns not-Ready, a restarted container reusing the pinned datapath, withdrawal on delete.
use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use l3lb_tests::{
    lab::{
        ContainerSpec, LabConfig,
        privileges::{check_process, service_account},
        wait_for,
    },
    scenario::{ALLOCATOR_IDENTITY, Cluster, Identity, Setup},
};

const NAMESPACE: &str = include_str!("../../deploy/base/namespace.yaml");
const RBAC: &str = include_str!("../../deploy/base/rbac.yaml");
const DAEMONSET: &str = include_str!("../../deploy/base/daemonset.yaml");
const ALLOCATOR: &str = include_str!("../../deploy/base/allocator.yaml");

const PORT: u16 = 80;
const CONVERGE: Duration = Duration::from_secs(30);

/// `kind`'s container `container` and its identity, as the manifest `yaml` deploys them.
fn deployed(yaml: &str, kind: &str, container: &str) -> anyhow::Result<Identity> {
    let spec = ContainerSpec::from_manifest(yaml, kind, container)?;
    // The name `cargo xtask image` gives the image it builds from this version.
    let built = format!("localhost/l3lb:{}", env!("CARGO_PKG_VERSION"));
    ensure!(
        spec.image == built,
        "the {kind} runs {}, but `cargo xtask image` builds {built}",
        spec.image
    );
    Ok(Identity {
        service_account: Some(service_account(yaml, kind)?),
        privileges: Some(spec.privileges.clone()),
        container: Some(spec),
    })
}

/// The mounts of process `pid` (its mount namespace's): (mount point, type, options).
fn mounts(pid: u32) -> anyhow::Result<Vec<(String, String, String)>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mounts"))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.get(1)?.to_string(),
                f.get(2)?.to_string(),
                f.get(3)?.to_string(),
            ))
        })
        .collect())
}

/// `pid` runs the image's binary (`/l3lb`, its only file) on a read-only root, in network
/// namespace `netns` (the node's: a hostNetwork pod's), with the container's host mounts.
fn check_container(pid: u32, netns: &str, spec: &ContainerSpec, what: &str) -> anyhow::Result<()> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))?;
    ensure!(exe.as_os_str() == "/l3lb", "{what} runs {}", exe.display());
    let mounts = mounts(pid)?;
    let root = mounts
        .iter()
        .find(|(at, _, _)| at == "/")
        .context("no root mount")?;
    ensure!(
        root.2.split(',').any(|o| o == "ro") == spec.read_only_root,
        "{what}: root {root:?}"
    );
    for (_, at) in &spec.host_mounts {
        ensure!(
            mounts.iter().any(|(m, _, _)| m == at),
            "{what}: {at} not mounted: {mounts:?}"
        );
    }
    for at in &spec.scratch_mounts {
        ensure!(
            mounts.iter().any(|(m, t, _)| m == at && t == "tmpfs"),
            "{what}: no tmpfs at {at}: {mounts:?}"
        );
    }
    use std::os::unix::fs::MetadataExt as _;
    let inode = |path: String| std::fs::metadata(&path).map(|m| (m.dev(), m.ino()));
    ensure!(
        inode(format!("/proc/{pid}/ns/net"))? == inode(format!("/run/netns/{netns}"))?,
        "{what} is not in network namespace {netns}"
    );
    Ok(())
}

#[test]
fn nodes_and_allocator_run_from_the_image_as_deployed() -> anyhow::Result<()> {
    let node = deployed(DAEMONSET, "DaemonSet", "l3lb")?;
    let allocator = deployed(ALLOCATOR, "Deployment", "l3lb-allocator")?;
    let node_spec = node.container.clone().context("node container")?;
    let allocator_spec = allocator.container.clone().context("allocator container")?;
    // What the manifests say, so the rest of this test means something.
    ensure!(
        node_spec
            .host_mounts
            .iter()
            .any(|(_, at)| at == "/sys/fs/bpf")
            && node_spec.read_only_root
            && !node_spec.privileges.capabilities.contains("SYS_ADMIN"),
        "{node_spec:?}"
    );
    ensure!(
        allocator_spec.privileges.uid != 0 && allocator_spec.privileges.capabilities.is_empty(),
        "{allocator_spec:?}"
    );
    let setup = Setup {
        manifests: vec![NAMESPACE.into(), RBAC.into()],
        nodes: node.clone(),
        allocator: Some(allocator.clone()),
    };
    let mut c = Cluster::start_with(LabConfig::default(), setup)?;
    let (n1, n2) = (c.lab.node_ip(1), c.lab.node_ip(2));
    for i in [1, 2] {
        let pid = c.l3lb_process(c.daemon_pid(i).context("daemon not started")?)?;
        let what = format!("node{i}'s daemon");
        check_process(pid, &node_spec.privileges, &what)?;
        check_container(pid, c.lab.node_ns(i), &node_spec, &what)?;
    }
    let pid = c.l3lb_process(c.allocator_pid().context("allocator not started")?)?;
    check_process(pid, &allocator_spec.privileges, "the allocator")?;
    check_container(pid, c.lab.node_ns(1), &allocator_spec, "the allocator")?;

    // A Service without an address gets the pool's first; both nodes announce it, the router
    // has two equal-cost next hops, the pods see the client's own address.
    let vip = Ipv4Addr::new(198, 51, 100, 1);
    c.apply_lb_service("web", None, PORT)?;
    c.apply_endpoints("web", |_| true)?;
    wait_for("web allocated its address", CONVERGE, || {
        let got = c.ingress("web");
        if got == [IpAddr::V4(vip)] {
            Ok(Some(()))
        } else {
            bail!("status.loadBalancer.ingress {got:?}")
        }
    })
    .with_context(|| c.log_tails(20))?;
    ensure!(
        c.api
            .lease_holder("l3lb-system", "l3lb-allocator")
            .as_deref()
            == Some(ALLOCATOR_IDENTITY),
        "the allocator Lease: {:?}",
        c.api.lease_holder("l3lb-system", "l3lb-allocator")
    );
    c.wait_lo(1, vip.into(), true)?;
    c.wait_lo(2, vip.into(), true)?;
    c.wait_nexthops(vip, &[n1, n2])?;
    let per_pod = c.spread(vip, PORT, 24)?;
    for key in ["pod1/tcp", "pod2/tcp", "pod1/udp", "pod2/udp"] {
        ensure!(
            per_pod.contains_key(key),
            "no answer from {key}: {per_pod:?}"
        );
    }
    for i in [1, 2] {
        wait_for(&format!("node{i}'s /readyz = 200"), CONVERGE, || {
            let (code, body) = c.http_get(i, "/readyz")?;
            ensure!(code == 200, "{code} {body}");
            Ok(Some(()))
        })?;
    }

    // Failover: node2's pod turns not-Ready, node2 withdraws, traffic goes to pod1 only.
    c.apply_endpoints("web", |i| i == 1)?;
    c.wait_lo(2, vip.into(), false)?;
    c.wait_nexthops(vip, &[n1])?;
    let per_pod = c.spread(vip, PORT, 8)?;
    ensure!(
        per_pod.keys().all(|k| k.starts_with("pod1/")),
        "traffic reached a withdrawn node: {per_pod:?}"
    );

    // node1's container stops (SIGTERM, as the kubelet sends) and a new one starts: the VIP and
    // the pinned datapath stay in the host's bpffs meanwhile, traffic flows, the new container
    // reuses them.
    c.stop_daemon(1)?;
    c.spread(vip, PORT, 4)
        .context("requests while node1's container is gone")?;
    c.start_daemon(1)?;
    wait_for("node1's new container synced", CONVERGE, || {
        Ok(c.daemon_log(1).contains("watches synced").then_some(()))
    })?;
    ensure!(
        c.daemon_log(1).contains("reused pinned datapath state"),
        "{}",
        c.daemon_log(1)
    );
    c.apply_endpoints("web", |_| true)?;
    c.wait_lo(2, vip.into(), true)?;
    c.wait_nexthops(vip, &[n1, n2])?;
    c.spread(vip, PORT, 8)?;

    // Delete: withdrawn everywhere.
    c.delete_service("web")?;
    c.wait_lo(1, vip.into(), false)?;
    c.wait_lo(2, vip.into(), false)?;
    c.wait_nexthops(vip, &[])?;

    // Nothing was refused and every request carried a token.
    let audit = c.api.audit();
    let refused: Vec<_> = audit
        .iter()
        .filter(|a| a.code == 401 || a.code == 403)
        .collect();
    ensure!(refused.is_empty(), "refused requests: {refused:#?}");
    let anonymous = c.api.anonymous();
    ensure!(
        anonymous.is_empty(),
        "{} requests carried no token: {anonymous:#?}",
        anonymous.len()
    );
    for i in [1, 2] {
        let log = c.daemon_log(i);
        ensure!(
            !log.contains("does not forward") && !log.contains("re-attached"),
            "node{i}'s uplink checks failed:\n{log}"
        );
    }
    Ok(())
}
