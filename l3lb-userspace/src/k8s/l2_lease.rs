//! L2 mode's liveness Leases: each node holds `l3lb-node-<node>` in l3lb's namespace and renews
//! it every [`RENEW`]; every node watches them all and judges a node alive while its Lease keeps
//! changing ([`crate::core::l2::liveness`], on the judging node's own clock). Faster than the Node
//! Ready condition (tens of seconds), and needing nothing but the API server.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// How often a node renews its Lease.
pub const RENEW: Duration = Duration::from_secs(1);
/// How long after its last observed change a Lease's node counts as dead.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Name prefix of the per-node Leases.
pub const PREFIX: &str = "l3lb-node-";
/// The label on every node's Lease (the watch selects on it).
pub const LABEL: &str = "l3lb.io/node-lease=true";
/// Set on a node's Lease while the node is excluded from load balancing (cordoned, or labelled
/// `node.kubernetes.io/exclude-from-external-load-balancers`): its Lease still shows it alive
/// (so its own view stays fresh), and no node chooses it.
pub const EXCLUDED: &str = "l3lb.io/excluded";
/// A Lease name is a DNS subdomain: at most 253 characters.
const MAX_NAME: usize = 253;

/// The Lease of `node` (a long node name is cut and made unique again with a hash of it).
pub fn lease_name(node: &str) -> String {
    let name = format!("{PREFIX}{node}");
    if name.len() <= MAX_NAME {
        return name;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let keep = MAX_NAME - 17;
    let cut = (0..=keep)
        .rev()
        .find(|i| name.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}-{h:016x}", &name[..cut])
}

/// The node a Lease stands for (its holder), if it is one of these Leases.
pub fn node_of(lease: &Lease) -> Option<&str> {
    let name = lease.metadata.name.as_deref()?;
    let holder = lease.spec.as_ref()?.holder_identity.as_deref()?;
    (name.starts_with(PREFIX) && lease_name(holder) == name).then_some(holder)
}

/// Whether the Lease says its node is excluded.
pub fn is_excluded(lease: &Lease) -> bool {
    lease
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.get(EXCLUDED).is_some_and(|v| v == "true"))
}

/// What changes on every renewal: the renew time and the object's version.
pub fn marker(lease: &Lease) -> String {
    let renew = lease
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let version = lease.metadata.resource_version.as_deref().unwrap_or("");
    format!("{renew}/{version}")
}

/// `current` (or a new Lease) renewed by `node` at `now`, saying whether it is `excluded`.
pub fn renewed(current: Option<Lease>, node: &str, now: Timestamp, excluded: bool) -> Lease {
    let mut lease = current.unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(node)),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let (key, value) = LABEL.split_once('=').unwrap_or((LABEL, ""));
    lease
        .metadata
        .labels
        .get_or_insert_default()
        .insert(key.to_owned(), value.to_owned());
    let annotations = lease.metadata.annotations.get_or_insert_default();
    match excluded {
        true => annotations.insert(EXCLUDED.to_owned(), "true".to_owned()),
        false => annotations.remove(EXCLUDED),
    };
    let spec = lease.spec.take().unwrap_or_default();
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(node.to_owned()),
        lease_duration_seconds: Some(TIMEOUT.as_secs() as i32),
        acquire_time: spec.acquire_time.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        ..spec
    });
    lease
}

/// Renews one node's Lease.
pub struct Renewer {
    api: Api<Lease>,
    node: String,
    /// The Lease as last written (its resourceVersion makes the next write a checked update).
    last: Option<Lease>,
    /// Whether the node is excluded from load balancing now (set by the reconciler).
    excluded: Arc<AtomicBool>,
}

impl Renewer {
    pub fn new(client: Client, namespace: &str, node: &str, excluded: Arc<AtomicBool>) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            node: node.to_owned(),
            last: None,
            excluded,
        }
    }

    /// One renewal: update the Lease last written, or read (create) it when there is none or
    /// the write conflicted.
    pub async fn renew_once(&mut self) -> Result<(), kube::Error> {
        let name = lease_name(&self.node);
        let now = Timestamp::now();
        let excluded = self.excluded.load(Ordering::Relaxed);
        let current = match self.last.take() {
            Some(l) => Some(l),
            None => self.api.get_opt(&name).await?,
        };
        let result = match current {
            None => {
                let lease = renewed(None, &self.node, now, excluded);
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(current) => {
                let lease = renewed(Some(current), &self.node, now, excluded);
                self.api
                    .replace(&name, &PostParams::default(), &lease)
                    .await
            }
        };
        self.last = Some(result?);
        Ok(())
    }

    /// Renews every [`RENEW`] until aborted; a failed renewal is logged and retried.
    pub fn spawn(mut self) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RENEW);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                match self.renew_once().await {
                    Ok(()) if failing => {
                        debug!(node = %self.node, "L2 Lease renewed again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(error) => {
                        if !failing {
                            warn!(node = %self.node, %error, "cannot renew the L2 Lease; other nodes will take over this node's L2 addresses");
                        }
                        failing = true;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_records() {
        assert_eq!(lease_name("node-a"), "l3lb-node-node-a");
        let long = "n".repeat(253);
        let name = lease_name(&long);
        assert_eq!(name.len(), 253);
        assert_ne!(name, lease_name(&"n".repeat(252)), "still unique");
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:00:01Z".parse().unwrap();
        let first = renewed(None, &long, t0, false);
        assert_eq!(node_of(&first), Some(long.as_str()));
        let second = renewed(Some(first.clone()), &long, t1, true);
        assert_ne!(
            marker(&first),
            marker(&second),
            "a renewal changes the marker"
        );
        let spec = second.spec.as_ref().unwrap();
        assert_eq!(spec.acquire_time, first.spec.as_ref().unwrap().acquire_time);
        // Another name, or a holder that does not match its name, is not a node's Lease.
        assert!(!is_excluded(&first) && is_excluded(&second));
        assert!(!is_excluded(&renewed(
            Some(second.clone()),
            &long,
            t1,
            false
        )));
        assert_eq!(
            first.metadata.labels.as_ref().unwrap()["l3lb.io/node-lease"],
            "true"
        );
        let mut other = renewed(None, "node-a", t0, false);
        other.metadata.name = Some("l3lb-allocator".into());
        assert_eq!(node_of(&other), None);
        let mut forged = renewed(None, "node-a", t0, false);
        forged.spec.as_mut().unwrap().holder_identity = Some("node-b".into());
        assert_eq!(node_of(&forged), None);
    }
}
