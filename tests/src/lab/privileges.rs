//! Lab processes with less than the test's root: a uid and gid, a capability set and
//! `no_new_privs`, applied by `setpriv` (util-linux) right before the program starts, as a
//! container runtime applies a container's `securityContext`. Read from the shipped manifests
//! ([`Privileges::from_manifest`]), so what the tests prove is what gets deployed.
use std::{collections::BTreeSet, process::Command};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

/// Capability numbers (include/uapi/linux/capability.h), by the names Kubernetes uses.
const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

const HINT: &str = "`setpriv` (util-linux) not found; install it with `sudo bash .ci/setup`";

/// What a process may do, beyond its uid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Privileges {
    pub uid: u32,
    pub gid: u32,
    /// Its only capabilities (effective, permitted, inheritable, ambient and bounding), as
    /// Kubernetes spells them (`NET_ADMIN`).
    pub capabilities: BTreeSet<String>,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privs: bool,
}

/// The privileges of a running process, from `/proc/<pid>/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessPrivileges {
    pub uid: u32,
    pub effective: u64,
    pub permitted: u64,
    pub bounding: u64,
    pub no_new_privs: bool,
}

/// The bit of each named capability, OR-ed.
pub fn capability_mask<'a>(names: impl IntoIterator<Item = &'a String>) -> anyhow::Result<u64> {
    names.into_iter().try_fold(0u64, |mask, name| {
        let bit = CAPABILITIES
            .iter()
            .position(|c| c == name)
            .with_context(|| format!("unknown capability {name:?}"))?;
        Ok(mask | 1 << bit)
    })
}

/// Reads the uid, capability sets and `no_new_privs` of `pid`.
pub fn process_privileges(pid: u32) -> anyhow::Result<ProcessPrivileges> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    let hex = |name: &str| -> anyhow::Result<u64> { Ok(u64::from_str_radix(field(name)?, 16)?) };
    let uid = field("Uid")?.split_whitespace().nth(1).unwrap_or_default();
    Ok(ProcessPrivileges {
        uid: uid
            .parse()
            .with_context(|| format!("effective uid {uid:?}"))?,
        effective: hex("CapEff")?,
        permitted: hex("CapPrm")?,
        bounding: hex("CapBnd")?,
        no_new_privs: field("NoNewPrivs")? == "1",
    })
}

/// The ServiceAccount `(namespace, name)` the first `kind` in the manifest `yaml` runs as.
pub fn service_account(yaml: &str, kind: &str) -> anyhow::Result<(String, String)> {
    let v = crate::manifest::first_of_kind(yaml, kind)?;
    let field = |ptr: &str| {
        v.pointer(ptr)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("{kind} has no {ptr}"))
    };
    Ok((
        field("/metadata/namespace")?,
        field("/spec/template/spec/serviceAccountName")?,
    ))
}

/// Waits (up to 30 s) until `pid` runs the l3lb binary (past nsenter and setpriv) and checks
/// that it has exactly `want`: its uid, those capabilities in its effective, permitted and
/// bounding sets, and no_new_privs.
pub fn check_process(pid: u32, want: &Privileges, what: &str) -> anyhow::Result<()> {
    super::wait_for(
        &format!("{what} (pid {pid}) to exec l3lb"),
        std::time::Duration::from_secs(30),
        || {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
            Ok((comm.trim() == "l3lb").then_some(()))
        },
    )?;
    let seen = process_privileges(pid)?;
    let mask = capability_mask(&want.capabilities)?;
    ensure!(
        seen.uid == want.uid
            && seen.effective == mask
            && seen.permitted == mask
            && seen.bounding == mask
            && seen.no_new_privs == want.no_new_privs,
        "{what} runs with {seen:x?}, want uid {} and capabilities {:?} ({mask:#x})",
        want.uid,
        want.capabilities
    );
    Ok(())
}

impl Privileges {
    /// The privileges of container `container` in the first `kind` object of the manifest
    /// `yaml` (its pod template's): uid and gid from `runAsUser`/`runAsGroup` (container over
    /// pod, default 0), `capabilities.add`, `allowPrivilegeEscalation: false`. Anything this
    /// cannot reproduce is refused: `privileged`, capabilities not starting from `drop: [ALL]`.
    pub fn from_manifest(yaml: &str, kind: &str, container: &str) -> anyhow::Result<Self> {
        let object = crate::manifest::first_of_kind(yaml, kind)?;
        let pod = &object["spec"]["template"]["spec"];
        let c = pod["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == container)
            .with_context(|| format!("no container {container:?} in the {kind}"))?;
        let sc = &c["securityContext"];
        ensure!(
            sc["privileged"] != true,
            "the {kind} runs privileged: nothing to restrict"
        );
        let caps = &sc["capabilities"];
        ensure!(
            caps["drop"] == serde_json::json!(["ALL"]),
            "the {kind}'s capabilities do not start from drop: [ALL]: {caps}"
        );
        let capabilities: BTreeSet<String> = caps["add"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                c.as_str()
                    .map(str::to_owned)
                    .context("a capability is not a string")
            })
            .collect::<anyhow::Result<_>>()?;
        capability_mask(&capabilities)?;
        let id = |field: &str| -> anyhow::Result<u32> {
            let v = [&sc[field], &pod["securityContext"][field]]
                .into_iter()
                .find(|v| !v.is_null());
            match v {
                None => Ok(0),
                Some(v) => Ok(u32::try_from(
                    v.as_u64().with_context(|| format!("{field}: {v}"))?,
                )?),
            }
        };
        Ok(Self {
            uid: id("runAsUser")?,
            gid: id("runAsGroup")?,
            capabilities,
            no_new_privs: sc["allowPrivilegeEscalation"] == false,
        })
    }

    /// The `setpriv` arguments that give a program exactly these privileges.
    pub fn setpriv_args(&self) -> Vec<String> {
        let caps: String = self
            .capabilities
            .iter()
            .map(|c| format!(",+{}", c.to_ascii_lowercase()))
            .collect();
        let mut args = vec![
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
            "--clear-groups".to_owned(),
            format!("--inh-caps=-all{caps}"),
            format!("--ambient-caps=-all{caps}"),
            format!("--bounding-set=-all{caps}"),
        ];
        if self.no_new_privs {
            args.push("--no-new-privs".to_owned());
        }
        args
    }

    /// `cmd` run through `setpriv` under these privileges (environment and working directory
    /// kept). setpriv execs the program, so the pid is the program's own.
    pub fn wrap(&self, cmd: &Command) -> anyhow::Result<Command> {
        let found = Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            bail!("{HINT}");
        }
        let mut wrapped = Command::new("setpriv");
        wrapped
            .args(self.setpriv_args())
            .arg("--")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        Ok(wrapped)
    }
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
        - name: side
        - name: main
          securityContext:
            allowPrivilegeEscalation: false
            capabilities: {drop: [ALL], add: [NET_ADMIN, BPF]}
";

    #[test]
    fn reads_a_containers_security_context() {
        let p = Privileges::from_manifest(DAEMONSET, "DaemonSet", "main").unwrap();
        assert_eq!((p.uid, p.gid, p.no_new_privs), (0, 0, true));
        assert_eq!(
            p.setpriv_args(),
            [
                "--reuid=0",
                "--regid=0",
                "--clear-groups",
                "--inh-caps=-all,+bpf,+net_admin",
                "--ambient-caps=-all,+bpf,+net_admin",
                "--bounding-set=-all,+bpf,+net_admin",
                "--no-new-privs",
            ]
        );
        assert_eq!(capability_mask(&p.capabilities).unwrap(), 1 << 12 | 1 << 39);

        let deployment = "
kind: Deployment
spec:
  template:
    spec:
      securityContext: {runAsUser: 65534, runAsGroup: 65534}
      containers:
        - name: a
          securityContext: {runAsGroup: 100, capabilities: {drop: [ALL]}}
";
        let p = Privileges::from_manifest(deployment, "Deployment", "a").unwrap();
        assert_eq!((p.uid, p.gid, p.no_new_privs), (65534, 100, false));
        assert!(p.capabilities.is_empty());
        assert!(p.setpriv_args().contains(&"--bounding-set=-all".to_owned()));
    }

    #[test]
    fn refuses_what_it_cannot_reproduce() {
        let privileged = DAEMONSET.replace("allowPrivilegeEscalation: false", "privileged: true");
        assert!(Privileges::from_manifest(&privileged, "DaemonSet", "main").is_err());
        let no_drop = DAEMONSET.replace("drop: [ALL], ", "");
        assert!(Privileges::from_manifest(&no_drop, "DaemonSet", "main").is_err());
        let unknown = DAEMONSET.replace("BPF", "BPFF");
        assert!(Privileges::from_manifest(&unknown, "DaemonSet", "main").is_err());
        assert!(Privileges::from_manifest(DAEMONSET, "Deployment", "main").is_err());
        assert!(Privileges::from_manifest(DAEMONSET, "DaemonSet", "other").is_err());
    }

    #[test]
    fn reads_this_process() {
        let me = process_privileges(std::process::id()).unwrap();
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(me.uid, std::fs::metadata("/proc/self").unwrap().uid());
        assert_eq!(
            me.effective & !me.permitted,
            0,
            "effective within permitted"
        );
    }
}
