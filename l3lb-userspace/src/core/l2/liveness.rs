//! Which nodes are alive, from their Leases as this node sees them. Each node renews its own
//! Lease about every second; a node is alive while its Lease keeps changing (a new renewTime or
//! resourceVersion) within the timeout, measured on the judging node's own monotonic clock.
//! Nothing compares one node's clock with another's, so clock skew cannot kill or revive anyone.
//!
//! Pure: the caller passes `now` as the time since any fixed origin of its monotonic clock.
use std::{collections::BTreeMap, collections::BTreeSet, time::Duration};

/// A node's Lease as last observed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    /// What changes on every renewal (renewTime and resourceVersion, joined).
    marker: String,
    /// When this node saw `marker` change.
    changed: Duration,
}

/// The Leases seen so far, and when each last changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Liveness {
    timeout: Duration,
    seen: BTreeMap<String, Seen>,
}

/// A judgement at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub alive: BTreeSet<String>,
    /// Whether this node sees its own renewals. When it does not, its view of the API is stale
    /// (the API or the watch is down, or it cannot renew): every Lease would look dead, so the
    /// caller keeps its last decisions instead of releasing every address at once.
    pub fresh: bool,
}

impl Liveness {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            seen: BTreeMap::new(),
        }
    }

    /// Records `node`'s Lease as seen at `now`. A Lease seen for the first time counts as just
    /// renewed: after a restart, nodes are alive until they fail to renew for a timeout.
    pub fn observe(&mut self, node: &str, marker: &str, now: Duration) {
        match self.seen.get_mut(node) {
            Some(s) if s.marker == marker => {}
            Some(s) => {
                s.marker = marker.to_owned();
                s.changed = now;
            }
            None => {
                self.seen.insert(
                    node.to_owned(),
                    Seen {
                        marker: marker.to_owned(),
                        changed: now,
                    },
                );
            }
        }
    }

    /// Every node whose Lease has been seen (alive or not).
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.seen.keys().map(String::as_str)
    }

    /// A deleted Lease: its node is dead from now on.
    pub fn forget(&mut self, node: &str) {
        self.seen.remove(node);
    }

    pub fn is_alive(&self, node: &str, now: Duration) -> bool {
        self.seen
            .get(node)
            .is_some_and(|s| now.saturating_sub(s.changed) <= self.timeout)
    }

    /// Who is alive at `now`, judged by `own` node.
    pub fn judge(&self, own: &str, now: Duration) -> View {
        View {
            alive: self
                .seen
                .keys()
                .filter(|n| self.is_alive(n, now))
                .cloned()
                .collect(),
            fresh: self.is_alive(own, now),
        }
    }

    /// How long after `now` the next alive node turns dead if its Lease does not change: when
    /// to judge again.
    pub fn next_expiry(&self, now: Duration) -> Option<Duration> {
        self.seen
            .values()
            .map(|s| s.changed + self.timeout)
            .filter(|deadline| *deadline >= now)
            .min()
            .map(|deadline| deadline - now + Duration::from_millis(1))
    }
}
