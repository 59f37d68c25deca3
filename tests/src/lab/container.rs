//! Lab processes run from a container image, as a kubelet runs a pod's container: `podman run`
//! of the image in a node's network namespace (what `hostNetwork: true` gives a pod), with the
//! container's securityContext, hostPath volumes and environment read from the shipped
//! manifest ([`ContainerSpec::from_manifest`]), so what the tests run is what gets deployed.
//!
//! Runtime flags this machine needs, none of which changes what the container may do: runc
//! (crun 1.8 refuses hybrid cgroup v1/v2 hierarchies), and rlimits no higher than the test's
//! own (podman otherwise raises RLIMIT_NOFILE and RLIMIT_NPROC to its defaults, which a root
//! without CAP_SYS_RESOURCE, as in this sandbox, may not), RLIMIT_NPROC also no higher than
//! `kernel.pid_max` (podman's runtime cannot set more), which no process count can exceed.
use std::{collections::BTreeMap, process::Command};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

use super::Privileges;

const HINT: &str = "podman not found; install it (and runc) with `sudo bash .ci/setup`";

/// An environment variable of the container: a value, or the pod field it is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvValue {
    Value(String),
    /// `valueFrom.fieldRef.fieldPath` (`spec.nodeName`, `metadata.name`).
    Field(String),
}

/// One container of a manifest's pod template, as far as running it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    pub image: String,
    pub privileges: Privileges,
    /// `readOnlyRootFilesystem: true`.
    pub read_only_root: bool,
    /// `seccompProfile: {type: RuntimeDefault}` (container over pod); otherwise Unconfined,
    /// Kubernetes' default when the manifest names no profile.
    pub seccomp_runtime_default: bool,
    /// hostPath volumes: (host path, mount path).
    pub host_mounts: Vec<(String, String)>,
    /// emptyDir volumes' mount paths: a fresh tmpfs each, mode 1777 as a kubelet makes them.
    pub scratch_mounts: Vec<String>,
    pub env: Vec<(String, EnvValue)>,
}

impl ContainerSpec {
    /// Container `container` of the first `kind` in `yaml`. Refuses volumes it cannot
    /// reproduce (anything but hostPath and emptyDir).
    pub fn from_manifest(yaml: &str, kind: &str, container: &str) -> anyhow::Result<Self> {
        let privileges = Privileges::from_manifest(yaml, kind, container)?;
        let object = crate::manifest::first_of_kind(yaml, kind)?;
        let pod = &object["spec"]["template"]["spec"];
        let c = pod["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == container)
            .with_context(|| format!("no container {container:?} in the {kind}"))?;
        let image = c["image"].as_str().context("no image")?.to_owned();
        let profile = |sc: &Value| sc["seccompProfile"]["type"].as_str().map(str::to_owned);
        let seccomp = profile(&c["securityContext"]).or_else(|| profile(&pod["securityContext"]));
        let volumes: BTreeMap<&str, &Value> = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["name"].as_str()?, v)))
            .collect();
        let (mut host_mounts, mut scratch_mounts) = (Vec::new(), Vec::new());
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let name = m["name"].as_str().context("a volumeMount without a name")?;
            let volume = volumes
                .get(name)
                .with_context(|| format!("no volume {name:?}"))?;
            let at = m["mountPath"].as_str().context("no mountPath")?.to_owned();
            if let Some(host) = volume["hostPath"]["path"].as_str() {
                host_mounts.push((host.to_owned(), at));
            } else if volume["emptyDir"].is_object() {
                scratch_mounts.push(at);
            } else {
                bail!("volume {name:?} is neither a hostPath nor an emptyDir");
            }
        }
        let mut env = Vec::new();
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().context("an env var without a name")?;
            let value = match (
                e["value"].as_str(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            ) {
                (Some(v), _) => EnvValue::Value(v.to_owned()),
                (None, Some(f)) => EnvValue::Field(f.to_owned()),
                (None, None) => bail!("env var {name}: neither a value nor a fieldRef"),
            };
            env.push((name.to_owned(), value));
        }
        Ok(Self {
            image,
            privileges,
            read_only_root: c["securityContext"]["readOnlyRootFilesystem"] == true,
            seccomp_runtime_default: seccomp.as_deref() == Some("RuntimeDefault"),
            host_mounts,
            scratch_mounts,
            env,
        })
    }

    /// `podman run` of this container, in foreground (its output is podman's), as `name`, in
    /// network namespace `netns`, with `privileges` (this spec's, or fewer), `fields` giving the
    /// pod fields its env refers to, `files` bind-mounted read-only at their own paths (a
    /// kubeconfig), `extra_env` after the manifest's, and `args` after the image's entrypoint.
    #[allow(clippy::too_many_arguments)]
    pub fn podman_run(
        &self,
        name: &str,
        netns: &str,
        privileges: &Privileges,
        fields: &BTreeMap<&str, String>,
        files: &[&std::path::Path],
        extra_env: &[(&str, &str)],
        args: &[String],
    ) -> anyhow::Result<Command> {
        let mut cmd = Command::new("podman");
        cmd.args(["--runtime", "runc", "run", "--rm", "--name", name])
            .arg(format!("--network=ns:/run/netns/{netns}"))
            .arg(format!("--user={}:{}", privileges.uid, privileges.gid))
            .arg("--cap-drop=all");
        for cap in &privileges.capabilities {
            cmd.arg(format!("--cap-add=CAP_{cap}"));
        }
        if privileges.no_new_privs {
            cmd.arg("--security-opt=no-new-privileges");
        }
        if !self.seccomp_runtime_default {
            cmd.arg("--security-opt=seccomp=unconfined");
        }
        if self.read_only_root {
            // Only the root file system: no tmpfs on /tmp, /run, as a kubelet adds none.
            cmd.args(["--read-only", "--read-only-tmpfs=false"]);
        }
        let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")?
            .trim()
            .parse()?;
        for (resource, which, cap) in [
            (libc::RLIMIT_NOFILE, "nofile", u64::MAX),
            (libc::RLIMIT_NPROC, "nproc", pid_max),
        ] {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes into the struct we own.
            ensure!(
                unsafe { libc::getrlimit(resource, &mut limit) } == 0,
                "getrlimit {which}: {}",
                std::io::Error::last_os_error()
            );
            let (soft, hard) = (limit.rlim_cur.min(cap), limit.rlim_max.min(cap));
            cmd.arg(format!("--ulimit={which}={soft}:{hard}"));
        }
        for (host, at) in &self.host_mounts {
            cmd.arg(format!("--volume={host}:{at}"));
        }
        for at in &self.scratch_mounts {
            cmd.arg(format!(
                "--mount=type=tmpfs,destination={at},tmpfs-mode=1777"
            ));
        }
        for file in files {
            let file = file.to_str().context("non-UTF-8 path")?;
            cmd.arg(format!("--volume={file}:{file}:ro"));
        }
        for (key, value) in &self.env {
            let value = match value {
                EnvValue::Value(v) => v.clone(),
                EnvValue::Field(f) => fields
                    .get(f.as_str())
                    .with_context(|| format!("env {key}: no value for the field {f}"))?
                    .clone(),
            };
            cmd.arg(format!("--env={key}={value}"));
        }
        for (key, value) in extra_env {
            cmd.arg(format!("--env={key}={value}"));
        }
        cmd.arg(&self.image).args(args);
        Ok(cmd)
    }
}

/// Whether podman runs, and holds `image`; an error with the fix otherwise.
pub fn require_image(image: &str) -> anyhow::Result<()> {
    let found = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        bail!("{HINT}");
    }
    let exists = Command::new("podman")
        .args(["image", "exists", image])
        .status()
        .context("running podman image exists")?;
    if !exists.success() {
        bail!(
            "image {image} is not in podman's storage: build it with `cargo xtask image` (as root)"
        );
    }
    Ok(())
}

/// The host pid of container `name`'s first process, once it runs.
pub fn pid(name: &str) -> anyhow::Result<Option<u32>> {
    let out = Command::new("podman")
        .args(["container", "inspect", "--format", "{{.State.Pid}}", name])
        .output()
        .context("running podman container inspect")?;
    if !out.status.success() {
        return Ok(None);
    }
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    Ok((pid != 0).then_some(pid))
}

/// Removes container `name` (stopping it at once) if it still exists.
pub fn remove(name: &str) -> anyhow::Result<()> {
    let out = Command::new("podman")
        .args(["rm", "--force", "--ignore", "--time", "0", name])
        .output()
        .context("running podman rm")?;
    ensure!(
        out.status.success(),
        "podman rm {name}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAEMONSET: &str = "
kind: DaemonSet
spec:
  template:
    spec:
      containers:
        - name: main
          image: localhost/x:1
          env:
            - {name: A, value: \"1\"}
            - name: NODE_NAME
              valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL], add: [BPF]}
          volumeMounts:
            - {name: bpffs, mountPath: /sys/fs/bpf}
            - {name: run, mountPath: /run/x}
      volumes:
        - name: bpffs
          hostPath: {path: /sys/fs/bpf}
        - name: run
          emptyDir: {medium: Memory}
";

    #[test]
    fn reads_and_runs_a_manifests_container() {
        let spec = ContainerSpec::from_manifest(DAEMONSET, "DaemonSet", "main").unwrap();
        assert_eq!(spec.image, "localhost/x:1");
        assert!(spec.read_only_root && !spec.seccomp_runtime_default);
        assert_eq!(
            spec.host_mounts,
            [("/sys/fs/bpf".into(), "/sys/fs/bpf".into())]
        );
        assert_eq!(spec.scratch_mounts, ["/run/x"]);
        let fields = BTreeMap::from([("spec.nodeName", "node1".to_owned())]);
        let cmd = spec
            .podman_run(
                "c1",
                "ns1",
                &spec.privileges,
                &fields,
                &[],
                &[],
                &["run".into()],
            )
            .unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for want in [
            "--network=ns:/run/netns/ns1",
            "--user=0:0",
            "--cap-drop=all",
            "--cap-add=CAP_BPF",
            "--security-opt=no-new-privileges",
            "--security-opt=seccomp=unconfined",
            "--read-only",
            "--volume=/sys/fs/bpf:/sys/fs/bpf",
            "--mount=type=tmpfs,destination=/run/x,tmpfs-mode=1777",
            "--env=A=1",
            "--env=NODE_NAME=node1",
        ] {
            assert!(args.iter().any(|a| a == want), "no {want} in {args:?}");
        }
        assert_eq!(args[args.len() - 2..], ["localhost/x:1", "run"]);
        let with_cm = DAEMONSET.replace("hostPath: {path: /sys/fs/bpf}", "configMap: {name: x}");
        assert!(ContainerSpec::from_manifest(&with_cm, "DaemonSet", "main").is_err());
    }
}
