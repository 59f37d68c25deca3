//! Graceful drain: a frontend whose endpoints are all terminating keeps serving pinned flows
//! with its VIP withdrawn, and goes after the drain timeout (or when its endpoints do).
use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use ipnet::IpNet;

use super::{Step, plan};
use crate::core::model::{Backends, Desired, Endpoint, FrontendId, Observed, Proto};

const DRAIN: Duration = Duration::from_secs(10);

fn prefixes() -> Vec<IpNet> {
    vec!["198.51.100.0/24".parse().unwrap()]
}

fn vip() -> IpAddr {
    "198.51.100.10".parse().unwrap()
}

fn fe() -> FrontendId {
    FrontendId {
        vip: vip(),
        port: 80,
        proto: Proto::Tcp,
    }
}

fn ep(last: u8) -> Endpoint {
    Endpoint {
        addr: IpAddr::from([10, 244, 1, last]),
        port: 8080,
    }
}

fn terminating(eps: &[u8]) -> Backends {
    Backends {
        terminating: eps.iter().map(|i| ep(*i)).collect(),
        ..Backends::default()
    }
}

/// The pod on this node turned terminating: desired keeps its frontend, not its VIP.
fn only_terminating() -> Desired {
    Desired {
        frontends: [(fe(), terminating(&[2]))].into(),
        ..Desired::default()
    }
}

fn serving() -> Observed {
    Observed {
        frontends: [(fe(), Backends::from([ep(2)]))].into(),
        addresses: [vip()].into(),
        ..Observed::default()
    }
}

#[test]
fn only_terminating_endpoints_withdraw_the_vip_first_and_keep_serving_until_the_drain_ends() {
    let t0 = Instant::now();
    let p = plan(
        &only_terminating(),
        &serving(),
        &prefixes(),
        &BTreeMap::new(),
        t0,
        DRAIN,
    );
    // The endpoint is reprogrammed as terminating (pinned flows go on, no new ones) and the
    // route withdrawn; nothing is removed yet.
    assert_eq!(
        p.steps,
        [
            Step::UpsertFrontend {
                id: fe(),
                endpoints: terminating(&[2]),
                missing: false,
            },
            Step::RemoveAddress(vip()),
        ]
    );
    assert_eq!(p.draining, [(fe(), t0)].into());

    let mut o = serving();
    o.record(&p.steps);
    let half = plan(
        &only_terminating(),
        &o,
        &prefixes(),
        &p.draining,
        t0 + DRAIN / 2,
        DRAIN,
    );
    assert!(half.steps.is_empty(), "{:?}", half.steps);

    let done = plan(
        &only_terminating(),
        &o,
        &prefixes(),
        &half.draining,
        t0 + DRAIN,
        DRAIN,
    );
    assert_eq!(done.steps, [Step::RemoveFrontend(fe())]);
    o.record(&done.steps);
    // Drained, the endpoint still terminating: it is not programmed again.
    let later = plan(
        &only_terminating(),
        &o,
        &prefixes(),
        &done.draining,
        t0 + DRAIN * 3,
        DRAIN,
    );
    assert!(later.steps.is_empty(), "{:?}", later.steps);
}

#[test]
fn a_ready_endpoint_again_ends_the_drain_and_the_vip_returns() {
    let t0 = Instant::now();
    let mut o = serving();
    let p = plan(
        &only_terminating(),
        &o,
        &prefixes(),
        &BTreeMap::new(),
        t0,
        DRAIN,
    );
    o.record(&p.steps);
    let ready = Desired {
        frontends: [(fe(), Backends::from([ep(3)]))].into(),
        addresses: [vip()].into(),
        ..Desired::default()
    };
    let back = plan(&ready, &o, &prefixes(), &p.draining, t0 + DRAIN * 2, DRAIN);
    assert_eq!(
        back.steps,
        [
            Step::UpsertFrontend {
                id: fe(),
                endpoints: Backends::from([ep(3)]),
                missing: false,
            },
            Step::AddAddress(vip()),
        ]
    );
    assert!(back.draining.is_empty());
}

#[test]
fn terminating_beside_ready_endpoints_drain_without_withdrawing() {
    let mut both = Backends::from([ep(3)]);
    both.terminating.insert(ep(2));
    let d = Desired {
        frontends: [(fe(), both.clone())].into(),
        addresses: [vip()].into(),
        ..Desired::default()
    };
    let p = plan(
        &d,
        &serving(),
        &prefixes(),
        &BTreeMap::new(),
        Instant::now(),
        DRAIN,
    );
    assert_eq!(
        p.steps,
        [Step::UpsertFrontend {
            id: fe(),
            endpoints: both,
            missing: false,
        }]
    );
    assert!(p.draining.is_empty());
}

#[test]
fn terminating_endpoints_that_disappear_remove_the_frontend_after_the_drain_began() {
    let t0 = Instant::now();
    let mut o = serving();
    let p = plan(
        &only_terminating(),
        &o,
        &prefixes(),
        &BTreeMap::new(),
        t0,
        DRAIN,
    );
    o.record(&p.steps);
    // The pod is gone: its endpoint leaves the slice. The drain started when it turned
    // terminating, so it ends at t0 + DRAIN, not later.
    let gone = plan(
        &Desired::default(),
        &o,
        &prefixes(),
        &p.draining,
        t0 + DRAIN / 2,
        DRAIN,
    );
    assert!(gone.steps.is_empty(), "{:?}", gone.steps);
    let end = plan(
        &Desired::default(),
        &o,
        &prefixes(),
        &gone.draining,
        t0 + DRAIN,
        DRAIN,
    );
    assert_eq!(end.steps, [Step::RemoveFrontend(fe())]);
}
