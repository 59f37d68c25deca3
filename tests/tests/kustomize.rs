//! The shipped manifests as a cluster takes them (no root; needs kubectl): `kubectl kustomize`
//! renders deploy/base and every overlay under deploy/overlays/, and `kubectl apply --server-side
//! --dry-run=server` sends each rendered object to the test API server, which validates it as a
//! real one would (names, workloads' selectors, unknown fields: kubectl asks for strict field
//! validation) and stores nothing. Broken manifests fail: a typo'd field, a selector that misses
//! its pods, a kind no server has, a patch of nothing.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context as _, bail, ensure};
use l3lb_tests::apiserver::ApiServer;
use l3lb_tests::manifest::{documents, env, to_yaml};
use serde_json::{Value, json};

const HINT: &str =
    "kubectl (>= 1.27, with kustomize v5) not found: `sudo bash .ci/setup` checks for it";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The image `cargo xtask image` builds (podman names it `localhost/...`).
fn image() -> String {
    format!("localhost/l3lb:{}", env!("CARGO_PKG_VERSION"))
}

/// deploy/base, then every overlay.
fn kustomizations() -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs = vec![deploy_dir().join("base")];
    let overlays = deploy_dir().join("overlays");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&overlays)
        .with_context(|| format!("reading {}", overlays.display()))?
        .map(|e| Ok(e?.path()))
        .collect::<std::io::Result<_>>()?;
    found.sort();
    ensure!(
        found.iter().any(|d| d.ends_with("k3s"))
            && found.iter().any(|d| d.ends_with("single-stack-v6")),
        "overlays: {found:?}"
    );
    dirs.extend(found);
    Ok(dirs)
}

/// A test API server on loopback and kubectl pointed at it (with its own discovery cache).
struct Cluster {
    api: ApiServer,
    dir: PathBuf,
    // Serves the API until dropped.
    _runtime: tokio::runtime::Runtime,
}

impl Cluster {
    fn start(name: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let api = ApiServer::new();
        let addr = runtime.block_on(api.listen())?;
        let dir = std::env::temp_dir().join(format!(
            "l3lb-kustomize-{}-{name}-{}",
            std::process::id(),
            addr.port()
        ));
        std::fs::create_dir_all(&dir)?;
        ApiServer::write_kubeconfig(addr, &dir.join("kubeconfig"))?;
        Ok(Self {
            api,
            dir,
            _runtime: runtime,
        })
    }

    fn kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args)
            .output();
        match out {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{HINT}"),
            out => Ok(out?),
        }
    }

    /// `kubectl apply --server-side --dry-run=server` of `yaml` (written to `file`).
    fn dry_run(&self, file: &str, yaml: &str) -> anyhow::Result<Output> {
        let path = self.dir.join(file);
        std::fs::write(&path, yaml)?;
        let path = path.to_str().context("non-UTF-8 path")?;
        self.kubectl(&["apply", "--server-side", "--dry-run=server", "-f", path])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `kubectl kustomize dir`: the rendered YAML.
fn render(dir: &Path) -> anyhow::Result<String> {
    let out = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{HINT}"),
        out => out?,
    };
    ensure!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `(apiVersion, kind, namespace, name)` of each object.
fn ids(objects: &[Value]) -> Vec<(String, String, Option<String>, String)> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    objects
        .iter()
        .map(|o| {
            let ns = o["metadata"]["namespace"].as_str().map(str::to_owned);
            (
                s(&o["apiVersion"]),
                s(&o["kind"]),
                ns,
                s(&o["metadata"]["name"]),
            )
        })
        .collect()
}

#[test]
fn kustomize_base_and_overlays_pass_a_server_dry_run() -> anyhow::Result<()> {
    for dir in kustomizations()? {
        let label = dir.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let yaml = render(&dir)?;
        let objects = documents(&yaml)?;
        // What the base ships, in every overlay.
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        for want in [
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "DaemonSet",
            "Deployment",
        ] {
            ensure!(kinds.contains(&want), "{label}: no {want} in {kinds:?}");
        }
        ensure!(
            objects.len() == 15,
            "{label}: {} objects: {kinds:?}",
            objects.len()
        );
        for kind in ["DaemonSet", "Deployment"] {
            let o = objects.iter().find(|o| o["kind"] == kind).context(kind)?;
            let got = &o["spec"]["template"]["spec"]["containers"][0]["image"];
            ensure!(
                *got == json!(image()),
                "{label}: the {kind} runs {got}, not {}",
                image()
            );
        }
        let (node_prefix, allocator_prefix) = (
            env(&objects, "DaemonSet", "L3LB_PREFIX"),
            env(&objects, "Deployment", "L3LB_PREFIX"),
        );
        ensure!(
            node_prefix.is_some() && node_prefix == allocator_prefix,
            "{label}: nodes' prefix {node_prefix:?}, allocator's {allocator_prefix:?}"
        );
        match label {
            "k3s" => {
                // ServiceLB may still run: l3lb takes only Services of its class.
                for kind in ["DaemonSet", "Deployment"] {
                    let v = env(&objects, kind, "L3LB_DEFAULT_LOAD_BALANCER");
                    ensure!(v == Some("false"), "k3s {kind}: {v:?}");
                }
            }
            "single-stack-v6" => {
                for kind in ["DaemonSet", "Deployment"] {
                    let prefix: ipnet::IpNet = env(&objects, kind, "L3LB_PREFIX")
                        .context("prefix")?
                        .parse()?;
                    let listen: std::net::SocketAddr = env(&objects, kind, "L3LB_METRICS_ADDR")
                        .context("listen")?
                        .parse()?;
                    ensure!(
                        matches!(prefix, ipnet::IpNet::V6(_)) && listen.is_ipv6(),
                        "v6 {kind}: {prefix} {listen}"
                    );
                }
            }
            _ => {}
        }

        // Each object applied with a server-side dry run: accepted, nothing stored.
        let c = Cluster::start(label)?;
        let rv = c.api.resource_version();
        let out = c.dry_run("rendered.yaml", &yaml)?;
        ensure!(
            out.status.success(),
            "{label}: the dry run failed:\n{}",
            text(&out)
        );
        let applied = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.ends_with("serverside-applied (server dry run)"))
            .count();
        ensure!(
            applied == objects.len(),
            "{label}: {applied} applied:\n{}",
            text(&out)
        );
        let patches: Vec<String> = c
            .api
            .requests()
            .into_iter()
            .filter(|r| r.starts_with("PATCH "))
            .collect();
        ensure!(
            patches.len() == objects.len()
                && patches
                    .iter()
                    .all(|p| p.contains("dryRun=All") && p.contains("fieldValidation=Strict")),
            "{label}: requests {patches:#?}"
        );
        ensure!(
            c.api.resource_version() == rv,
            "{label}: the dry run changed the store"
        );
        for (api_version, kind, ns, name) in ids(&objects) {
            ensure!(
                c.api
                    .get(&api_version, &kind, ns.as_deref(), &name)
                    .is_none(),
                "{label}: the dry run stored {kind} {name}"
            );
        }
        // Applied for real, the same objects are stored.
        let path = c.dir.join("rendered.yaml");
        let out = c.kubectl(&[
            "apply",
            "--server-side",
            "-f",
            path.to_str().context("path")?,
        ])?;
        ensure!(
            out.status.success(),
            "{label}: apply failed:\n{}",
            text(&out)
        );
        for (api_version, kind, ns, name) in ids(&objects) {
            ensure!(
                c.api
                    .get(&api_version, &kind, ns.as_deref(), &name)
                    .is_some(),
                "{label}: {kind} {name} not stored"
            );
        }
    }

    // The systemd hosts' identity (applied with plain files, on top of the base's RBAC).
    let c = Cluster::start("systemd")?;
    let rbac = std::fs::read_to_string(deploy_dir().join("systemd/rbac.yaml"))?;
    let out = c.dry_run("systemd-rbac.yaml", &rbac)?;
    ensure!(out.status.success(), "systemd/rbac.yaml:\n{}", text(&out));
    Ok(())
}

/// Applies `objects` changed by `change` with a server-side dry run: it must fail, saying `why`,
/// and store nothing.
fn refused(
    base: &[Value],
    what: &str,
    why: &str,
    change: impl FnOnce(&mut Vec<Value>),
) -> anyhow::Result<()> {
    let mut objects = base.to_vec();
    change(&mut objects);
    let c = Cluster::start(what)?;
    let out = c.dry_run("broken.yaml", &to_yaml(&objects)?)?;
    let said = text(&out);
    ensure!(
        !out.status.success(),
        "{what}: the dry run succeeded:\n{said}"
    );
    ensure!(
        said.contains(why),
        "{what}: failed without {why:?}:\n{said}"
    );
    ensure!(c.api.resource_version() == 1, "{what}: stored something");
    Ok(())
}

#[test]
fn kustomize_broken_manifests_fail_the_dry_run() -> anyhow::Result<()> {
    let base = documents(&render(&deploy_dir().join("base"))?)?;
    let daemonset = |objects: &mut Vec<Value>| -> usize {
        objects
            .iter()
            .position(|o| o["kind"] == "DaemonSet")
            .unwrap_or_default()
    };
    // A field the type does not have (a typo): the server's strict decoding refuses it.
    refused(
        &base,
        "typo",
        "unknown field \"spec.template.spec.containers[0].imagePullPolicyy\"",
        |o| {
            let i = daemonset(o);
            o[i]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Never");
        },
    )?;
    // A value of the wrong type.
    refused(
        &base,
        "wrong-type",
        "cannot be handled as a DaemonSet",
        |o| {
            let i = daemonset(o);
            o[i]["spec"]["minReadySeconds"] = json!("soon");
        },
    )?;
    // A selector that selects none of the DaemonSet's pods.
    refused(
        &base,
        "selector",
        "`selector` does not match template `labels`",
        |o| {
            let i = daemonset(o);
            o[i]["spec"]["template"]["metadata"]["labels"] =
                json!({"app.kubernetes.io/name": "other"});
        },
    )?;
    // A name no Kubernetes object may have.
    refused(&base, "name", "metadata.name: Invalid value", |o| {
        o.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": {"name": "L3LB_Node", "namespace": "l3lb-system"}}));
    })?;
    // A kind no server serves (an API group that does not exist).
    refused(
        &base,
        "kind",
        "no matches for kind \"DaemonSet\" in version \"apps/v2\"",
        |o| {
            let i = daemonset(o);
            o[i]["apiVersion"] = json!("apps/v2");
        },
    )?;

    // An overlay that patches an object the base does not have fails to render. (Beside a copy
    // of the base: kustomize loads no base by absolute path.)
    let dir = std::env::temp_dir().join(format!("l3lb-kustomize-{}-broken", std::process::id()));
    let (copy, overlay) = (dir.join("base"), dir.join("overlay"));
    std::fs::create_dir_all(&copy)?;
    std::fs::create_dir_all(&overlay)?;
    for file in std::fs::read_dir(deploy_dir().join("base"))? {
        let file = file?;
        std::fs::copy(file.path(), copy.join(file.file_name()))?;
    }
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources: [../base]\npatches: [{path: patch.yaml}]\n",
    )?;
    std::fs::write(
        overlay.join("patch.yaml"),
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: l3lb-typo, namespace: l3lb-system}\nspec: {}\n",
    )?;
    let rendered = render(&overlay);
    let _ = std::fs::remove_dir_all(&dir);
    match rendered {
        Ok(yaml) => bail!("a patch of a missing DaemonSet rendered:\n{yaml}"),
        Err(e) => ensure!(format!("{e:#}").contains("l3lb-typo"), "{e:#}"),
    }
    Ok(())
}
