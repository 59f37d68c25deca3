//! The elector's I/O: polls the Lease, writes it when [`decide`] says so, and publishes
//! [`Leadership`] on a watch channel. Stopping it releases a held Lease, so a successor takes
//! over within one retry period instead of a whole Lease duration.
use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};
use tokio::{sync::watch, task::JoinHandle};
use tracing::{debug, info, warn};

use super::{Leadership, Record, Step, Timing, decide};

/// One candidate for one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// The record last read or written, and when it last changed as this process saw it.
    observed: Option<(Option<Record>, Instant)>,
    leadership: watch::Sender<Leadership>,
}

/// A running elector; [`ElectorHandle::stop`] releases the Lease if held.
pub struct ElectorHandle {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
    leadership: watch::Receiver<Leadership>,
}

impl ElectorHandle {
    /// Whether this process holds the Lease now.
    pub fn is_leader(&self) -> bool {
        self.leadership.borrow().is_leader()
    }

    /// Ends the task without releasing anything, as a crash would (tests).
    pub fn abort(self) {
        self.task.abort();
    }

    /// Stops polling and releases a held Lease (bounded by `timeout`).
    pub async fn stop(self, timeout: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            warn!(
                "releasing the allocator Lease timed out; the next allocator waits for it to expire"
            );
        }
    }
}

fn record(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        holder: spec.holder_identity,
        duration: spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
        renew_time: spec.renew_time.map(|t| t.0.to_string()),
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> (Self, watch::Receiver<Leadership>) {
        let (tx, rx) = watch::channel(Leadership::default());
        let elector = Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing: Timing { duration },
            observed: None,
            leadership: tx,
        };
        (elector, rx)
    }

    /// Runs on the current runtime until stopped through the handle.
    pub fn spawn(mut self) -> ElectorHandle {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let leadership = self.leadership.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let wait = self.poll().await;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = &mut stopped => break,
                }
            }
            self.release().await;
        });
        ElectorHandle {
            stop,
            task,
            leadership,
        }
    }

    fn leading(&self) -> bool {
        self.leadership.borrow().is_leader()
    }

    /// Records how long we lead. Receivers are woken only when that flips, not on every
    /// renewal (they read the deadline when they look).
    fn set(&self, until: Option<Instant>) {
        let was = self.leading();
        self.leadership.send_if_modified(|l| {
            l.until = until;
            l.is_leader() != was
        });
        let is = self.leading();
        if is && !was {
            info!(lease = %self.name, identity = %self.identity, "acquired the allocator Lease: this daemon allocates addresses");
        } else if was && !is {
            warn!(lease = %self.name, identity = %self.identity, "lost the allocator Lease: this daemon stops allocating");
        }
    }

    /// One look at the Lease, and a write if due; returns how long to wait before the next.
    async fn poll(&mut self) -> Duration {
        let retry = self.timing.retry();
        let lease = match self.api.get_opt(&self.name).await {
            Ok(lease) => lease,
            Err(error) => {
                warn!(lease = %self.name, %error, "cannot read the allocator Lease; retrying");
                self.expire_if_due();
                return retry;
            }
        };
        let now = Instant::now();
        let seen = lease.as_ref().map(record);
        if self.observed.as_ref().is_none_or(|(r, _)| *r != seen) {
            self.observed = Some((seen.clone(), now));
        }
        let observed_at = self.observed.as_ref().map_or(now, |(_, at)| *at);
        match decide(seen.as_ref(), observed_at, now, &self.identity, self.timing) {
            Step::Create => self.write(None).await,
            Step::Renew | Step::Acquire => self.write(lease).await,
            Step::Wait(until) => {
                if self.leading() {
                    // Someone else holds it now: whatever we thought, we are not the leader.
                    self.set(None);
                }
                let holder = seen.as_ref().and_then(Record::holder).unwrap_or_default();
                debug!(lease = %self.name, %holder, "allocator Lease held elsewhere");
                // Look again right when it would expire, if that is sooner.
                return until
                    .saturating_duration_since(now)
                    .clamp(Duration::from_millis(50), retry);
            }
        }
        retry
    }

    /// Writes us in as holder: renews what we hold, or acquires it (creating the Lease if absent).
    async fn write(&mut self, current: Option<Lease>) {
        let sent = Instant::now();
        let now = MicroTime(Timestamp::now());
        let old = current.as_ref().map(record).unwrap_or_default();
        let acquiring = old.holder() != Some(self.identity.as_str());
        let old_spec = current
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let spec = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: i32::try_from(self.timing.duration.as_secs()).ok(),
            acquire_time: if acquiring {
                Some(now.clone())
            } else {
                old_spec.acquire_time.clone()
            },
            renew_time: Some(now),
            lease_transitions: Some(old.transitions + i32::from(acquiring && current.is_some())),
            ..old_spec
        };
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // Carries the resourceVersion read: a write by anyone since then fails with 409.
                lease.spec = Some(spec);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(lease) => {
                self.observed = Some((Some(record(&lease)), Instant::now()));
                self.set(Some(sent + self.timing.renew_deadline()));
            }
            Err(error) if is_conflict(&error) => {
                debug!(lease = %self.name, "another daemon wrote the allocator Lease first");
                self.set(None);
            }
            Err(error) => {
                warn!(lease = %self.name, %error, "cannot write the allocator Lease; retrying");
                self.expire_if_due();
            }
        }
    }

    /// Tells the others when the leadership lapsed without a successful renewal.
    fn expire_if_due(&self) {
        let lapsed = self
            .leadership
            .borrow()
            .until
            .is_some_and(|u| Instant::now() >= u);
        if lapsed {
            self.set(None);
        }
    }

    /// Hands a held Lease back (holder cleared), so the next candidate need not wait for expiry.
    async fn release(&mut self) {
        let held = self.leading();
        self.leadership.send_replace(Leadership::default());
        if !held {
            return;
        }
        let mut lease = match self.api.get_opt(&self.name).await {
            Ok(Some(lease)) if record(&lease).holder() == Some(self.identity.as_str()) => lease,
            Ok(_) => return,
            Err(error) => {
                warn!(lease = %self.name, %error, "cannot read the allocator Lease to release it");
                return;
            }
        };
        let now = MicroTime(Timestamp::now());
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.name, "released the allocator Lease"),
            Err(error) => warn!(lease = %self.name, %error, "cannot release the allocator Lease"),
        }
    }
}
