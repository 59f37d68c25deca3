//! Leader election over a coordination.k8s.io Lease, as client-go does it: read the Lease, and
//! write it back with its resourceVersion (the API server's optimistic lock makes one writer win)
//! to acquire or renew. Whether another holder's Lease expired is judged by this process's own
//! clock, from when it last saw the record change, never by comparing clocks across nodes.
//!
//! This module is the pure part: the decision for one poll and the timings. [`elector`] does the
//! I/O.
use std::time::{Duration, Instant};

pub mod elector;

/// The fields of a Lease's spec that decide who holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// `None` or empty: free.
    pub holder: Option<String>,
    pub duration: Option<Duration>,
    /// As written (`renewTime`): a change of it is a renewal.
    pub renew_time: Option<String>,
    pub transitions: i32,
}

impl Record {
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref().filter(|h| !h.is_empty())
    }
}

/// What to do after reading the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, held by us.
    Create,
    /// Ours: write a new renewTime.
    Renew,
    /// Free, or its holder's Lease expired: write ourselves in.
    Acquire,
    /// Held by someone else until at least this instant.
    Wait(Instant),
}

/// The election's timings, all derived from the Lease duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Written into the Lease: how long a holder's last renewal keeps others out.
    pub duration: Duration,
}

impl Timing {
    /// How often the holder renews and the others look.
    pub fn retry(&self) -> Duration {
        self.duration / 5
    }

    /// How long after its last successful write the holder still acts as leader: well before
    /// anyone can take over (`duration` after they saw that write).
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 3 / 5
    }
}

/// Decides for `me`, given the record read (`None`: no Lease) and when it last changed as seen
/// by this process (`observed_at`).
pub fn decide(
    record: Option<&Record>,
    observed_at: Instant,
    now: Instant,
    me: &str,
    timing: Timing,
) -> Step {
    let Some(record) = record else {
        return Step::Create;
    };
    match record.holder() {
        None => Step::Acquire,
        Some(holder) if holder == me => Step::Renew,
        Some(_) => {
            let lasts = record.duration.unwrap_or(timing.duration);
            let until = observed_at + lasts;
            if now >= until {
                Step::Acquire
            } else {
                Step::Wait(until)
            }
        }
    }
}

/// When this process may act as leader: until its last successful write plus the renew deadline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    pub until: Option<Instant>,
}

impl Leadership {
    pub fn is_leader_at(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    pub fn is_leader(&self) -> bool {
        self.is_leader_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(holder: Option<&str>, secs: Option<u64>) -> Record {
        Record {
            holder: holder.map(str::to_owned),
            duration: secs.map(Duration::from_secs),
            renew_time: Some("2024-01-01T00:00:00.000000Z".into()),
            transitions: 1,
        }
    }

    #[test]
    fn decisions() {
        let t = Timing {
            duration: Duration::from_secs(15),
        };
        let seen = Instant::now();
        let s = Duration::from_secs;
        let cases = [
            (None, s(0), Step::Create),
            (Some(rec(None, Some(15))), s(0), Step::Acquire),
            (Some(rec(Some(""), Some(1))), s(0), Step::Acquire),
            (Some(rec(Some("me"), Some(15))), s(100), Step::Renew),
            (
                Some(rec(Some("other"), Some(15))),
                s(14),
                Step::Wait(seen + s(15)),
            ),
            (Some(rec(Some("other"), Some(15))), s(15), Step::Acquire),
            // The record's own duration counts (a holder may run with another setting)...
            (
                Some(rec(Some("other"), Some(30))),
                s(20),
                Step::Wait(seen + s(30)),
            ),
            // ...and ours when it has none.
            (Some(rec(Some("other"), None)), s(16), Step::Acquire),
        ];
        for (record, after, want) in cases {
            assert_eq!(
                decide(record.as_ref(), seen, seen + after, "me", t),
                want,
                "{record:?} after {after:?}"
            );
        }
    }

    #[test]
    fn a_holder_stops_before_anyone_may_take_over() {
        let t = Timing {
            duration: Duration::from_secs(15),
        };
        assert_eq!(t.retry(), Duration::from_secs(3));
        assert!(t.renew_deadline() + t.retry() < t.duration);
        let wrote = Instant::now();
        let l = Leadership {
            until: Some(wrote + t.renew_deadline()),
        };
        assert!(l.is_leader_at(wrote));
        assert!(!l.is_leader_at(wrote + t.renew_deadline()));
        assert!(!Leadership::default().is_leader_at(wrote));
    }
}
