//! Least privilege, proven (root, FRR): l3lb split as deployed, under exactly the privileges and
//! RBAC the manifests ship. Every node runs `l3lb run --allocator=false` as root with only the
//! capabilities of deploy/base/daemonset.yaml (read from it, with no_new_privs) and the token
//! of ServiceAccount l3lb-node; `l3lb allocate` runs as deploy/base/allocator.yaml says (uid
//! 65534, no capability) with the token of l3lb-allocator. The API server enforces
//! deploy/base/rbac.yaml. The main scenario passes, nobody is refused anything they try, the
//! node's identity cannot write a Service's status, and without any one of its capabilities
//! the node daemon cannot start.
use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::core::v1::Service;
use kube::{
    Api,
    api::{Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use l3lb_tests::{
    lab::{
        LabConfig, Privileges,
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

/// Node and allocator as the manifests deploy them.
fn deployed() -> anyhow::Result<(Identity, Identity)> {
    let node = Identity {
        service_account: Some(service_account(DAEMONSET, "DaemonSet")?),
        privileges: Some(Privileges::from_manifest(DAEMONSET, "DaemonSet", "l3lb")?),
        ..Default::default()
    };
    let allocator = Identity {
        service_account: Some(service_account(ALLOCATOR, "Deployment")?),
        privileges: Some(Privileges::from_manifest(
            ALLOCATOR,
            "Deployment",
            "l3lb-allocator",
        )?),
        ..Default::default()
    };
    Ok((node, allocator))
}

fn user(identity: &Identity) -> String {
    let (ns, name) = identity.service_account.clone().unwrap_or_default();
    format!("system:serviceaccount:{ns}:{name}")
}

/// With node `i`'s own kubeconfig (its token), inside its network namespace: patch a Service's
/// status, as only the allocator may.
fn node_writes_status(c: &Cluster, i: usize, service: &str) -> anyhow::Result<kube::Error> {
    let path: PathBuf = c.kubeconfig(i).context("no kubeconfig")?.to_owned();
    let service = service.to_owned();
    l3lb_tests::netns::in_netns(c.lab.node_ns(i), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let kubeconfig = Kubeconfig::read_from(&path)?;
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await?;
            let services: Api<Service> = Api::namespaced(kube::Client::try_from(config)?, "default");
            let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.77"}]}}});
            match services
                .patch_status(&service, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => bail!("the node's identity wrote Service {service}'s status"),
                Err(e) => Ok(e),
            }
        })
    })?
}

#[test]
fn split_and_unprivileged_as_deployed() -> anyhow::Result<()> {
    let (node, allocator) = deployed()?;
    let node_privileges = node.privileges.clone().context("node privileges")?;
    let allocator_privileges = allocator
        .privileges
        .clone()
        .context("allocator privileges")?;
    // What the shipped manifests say, so the rest of this test means something.
    ensure!(
        !node_privileges.capabilities.contains("SYS_ADMIN") && node_privileges.no_new_privs,
        "{node_privileges:?}"
    );
    ensure!(
        allocator_privileges.uid != 0 && allocator_privileges.capabilities.is_empty(),
        "{allocator_privileges:?}"
    );
    let setup = Setup {
        manifests: vec![NAMESPACE.into(), RBAC.into()],
        nodes: node.clone(),
        allocator: Some(allocator.clone()),
    };
    let mut c = Cluster::start_with(LabConfig::default(), setup)?;
    let (n1, n2) = (c.lab.node_ip(1), c.lab.node_ip(2));
    for i in [1, 2] {
        let pid = c.daemon_pid(i).context("daemon not started")?;
        check_process(pid, &node_privileges, &format!("node{i}'s daemon"))?;
    }
    let pid = c.allocator_pid().context("allocator not started")?;
    check_process(pid, &allocator_privileges, "the allocator")?;

    // A Service without an address: the allocator gives it the pool's first, both nodes
    // announce it, the router has two equal-cost next hops, the pods see the client.
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
    .with_context(|| c.allocator_log())?;
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
    ensure!(
        c.api
            .lease_holder("l3lb-system", "l3lb-allocator")
            .as_deref()
            == Some(ALLOCATOR_IDENTITY),
        "the allocator Lease: {:?}",
        c.api.lease_holder("l3lb-system", "l3lb-allocator")
    );
    ensure!(
        c.api.lease_holder("default", "l3lb-allocator").is_none(),
        "a node stood for the Lease"
    );
    wait_for("the allocator's /readyz = 200", CONVERGE, || {
        let (code, body) = c.allocator_http_get("/readyz")?;
        ensure!(code == 200, "{code} {body}");
        Ok(Some(()))
    })?;

    // The node's identity may not write a Service's status: a 403, the address unchanged.
    match node_writes_status(&c, 1, "web")? {
        kube::Error::Api(s) if s.code == 403 && s.reason == "Forbidden" => {}
        other => bail!("the node's status write was not forbidden: {other:?}"),
    }
    ensure!(
        c.ingress("web") == [IpAddr::V4(vip)],
        "{:?}",
        c.ingress("web")
    );

    // Failover: node2's pod turns not-Ready, node2 withdraws, traffic goes to pod1 only.
    c.apply_endpoints("web", |i| i == 1)?;
    c.wait_lo(2, vip.into(), false)?;
    c.wait_nexthops(vip, &[n1])?;
    let per_pod = c.spread(vip, PORT, 8)?;
    ensure!(
        per_pod.keys().all(|k| k.starts_with("pod1/")),
        "traffic reached a withdrawn node: {per_pod:?}"
    );

    // From here on the daemons run with the DaemonSet's L2 Lease namespace too.
    let daemonset = l3lb_tests::manifest::documents(DAEMONSET)?;
    let l2_namespace =
        l3lb_tests::manifest::env(&daemonset, "DaemonSet", "L3LB_L2_LEASE_NAMESPACE")
            .context("the DaemonSet's L3LB_L2_LEASE_NAMESPACE")?
            .to_owned();
    c.daemon_args = vec!["--l2-lease-namespace".into(), l2_namespace.clone()];

    // Each capability is needed: without any one of them node2's daemon cannot set up its
    // datapath and exits. (Its VIP is withdrawn meanwhile, so nothing is disturbed.)
    c.stop_daemon(2)?;
    for cap in &node_privileges.capabilities {
        let mut fewer = node_privileges.clone();
        fewer.capabilities.remove(cap);
        let pid = c.start_daemon_as(2, Some(&fewer))?;
        wait_for(
            &format!("node2's daemon without {cap} to exit"),
            CONVERGE,
            || Ok((!c.lab.is_running(pid)?).then_some(())),
        )?;
        let log = c.daemon_log(2);
        ensure!(
            log.contains("cannot set up the datapath"),
            "without {cap} node2's daemon failed otherwise:\n{log}"
        );
    }
    // Restarted with the manifest's capabilities: the pinned datapath is reused (the programs
    // replaced in their links), node2 serves again when its pod is Ready.
    c.start_daemon(2)?;
    wait_for("restarted node2 daemon synced", CONVERGE, || {
        Ok(c.daemon_log(2).contains("watches synced").then_some(()))
    })?;
    ensure!(
        c.daemon_log(2).contains("reused pinned datapath state"),
        "{}",
        c.daemon_log(2)
    );
    c.apply_endpoints("web", |_| true)?;
    c.wait_lo(2, vip.into(), true)?;
    c.wait_nexthops(vip, &[n1, n2])?;
    c.spread(vip, PORT, 8)?;
    c.stop_daemon(1)?;
    c.start_daemon(1)?;
    c.wait_lo(1, vip.into(), true)?;

    // An L2 pool: each node renews its liveness Lease in the L2 Lease namespace and watches the
    // others' (the Role l3lb-node-lease), refused nothing (checked with the audit below).
    c.api.apply(
        serde_json::json!({"apiVersion": "l3lb.io/v1alpha1", "kind": "L3lbPool",
        "metadata": {"name": "lan"},
        "spec": {"addresses": ["198.51.100.240/29"], "advertisement": "l2"}}),
    )?;
    for i in [1, 2] {
        let node = l3lb_tests::scenario::node_name(i);
        let lease = format!("l3lb-node-{node}");
        wait_for(&format!("{node} holds its Lease"), CONVERGE, || {
            Ok((c.api.lease_holder(&l2_namespace, &lease) == Some(node.clone())).then_some(()))
        })
        .with_context(|| c.daemon_log(i))?;
    }

    // Delete: withdrawn everywhere.
    c.delete_service("web")?;
    c.wait_lo(1, vip.into(), false)?;
    c.wait_lo(2, vip.into(), false)?;
    c.wait_nexthops(vip, &[])?;

    // Nobody was refused anything but that one status write, nobody's uplink check failed
    // for want of a capability, and every request to the API server carried a token: nothing
    // ran with the unauthenticated full access.
    let audit = c.api.audit();
    let (node_user, allocator_user) = (user(&node), user(&allocator));
    let refused: Vec<_> = audit
        .iter()
        .filter(|a| a.code == 401 || a.code == 403)
        .collect();
    ensure!(
        refused.len() == 1
            && refused[0].user.as_deref() == Some(node_user.as_str())
            && refused[0]
                .request
                .starts_with("PATCH /api/v1/namespaces/default/services/web/status"),
        "refused requests: {refused:#?}"
    );
    let anonymous = c.api.anonymous();
    ensure!(
        anonymous.is_empty(),
        "{} requests carried no token: {anonymous:#?}",
        anonymous.len()
    );
    let by = |who: &str, what: &str| {
        audit
            .iter()
            .any(|a| a.user.as_deref() == Some(who) && a.request.starts_with(what) && a.code < 300)
    };
    ensure!(
        by(&node_user, "GET /apis/discovery.k8s.io/v1/endpointslices")
            && by(
                &allocator_user,
                "PATCH /api/v1/namespaces/default/services/web/status"
            )
            && by(
                &allocator_user,
                "POST /apis/coordination.k8s.io/v1/namespaces/l3lb-system/leases"
            ),
        "the daemons' requests: {audit:#?}"
    );
    // A clean stop hands the Lease back, so a standby replica takes over at once.
    c.stop_allocator()?;
    ensure!(
        c.api
            .lease_holder("l3lb-system", "l3lb-allocator")
            .is_none(),
        "the Lease was not released on SIGTERM:\n{}",
        c.allocator_log()
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
