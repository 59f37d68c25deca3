//! Plan tables: ordering rules (maps before addresses, addresses before the drain), strays,
//! renewals, uplinks that do not forward, datapath settings.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use ipnet::IpNet;

use super::{Step, configure, plan, renewals};
use crate::core::model::{
    Backends, DatapathSettings, Desired, Endpoint, FrontendId, Frontends, Observed, Proto,
};

const DRAIN: Duration = Duration::from_secs(10);

fn prefixes() -> Vec<IpNet> {
    vec!["198.51.100.0/24".parse().unwrap()]
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn fe(vip: &str, port: u16) -> FrontendId {
    FrontendId {
        vip: ip(vip),
        port,
        proto: Proto::Tcp,
    }
}

fn eps(addrs: &[&str]) -> Backends {
    addrs
        .iter()
        .map(|a| Endpoint {
            addr: ip(a),
            port: 8080,
        })
        .collect::<BTreeSet<_>>()
        .into()
}

fn state(frontends: &[(FrontendId, &[&str])], addresses: &[&str]) -> (Frontends, BTreeSet<IpAddr>) {
    (
        frontends.iter().map(|(id, e)| (*id, eps(e))).collect(),
        addresses.iter().map(|a| ip(a)).collect(),
    )
}

fn desired(frontends: &[(FrontendId, &[&str])], addresses: &[&str]) -> Desired {
    let (frontends, addresses) = state(frontends, addresses);
    Desired {
        frontends,
        addresses,
        refusals: vec![],
    }
}

fn observed(frontends: &[(FrontendId, &[&str])], addresses: &[&str]) -> Observed {
    let (frontends, addresses) = state(frontends, addresses);
    Observed {
        frontends,
        addresses,
        ..Default::default()
    }
}

#[test]
fn new_vip_programs_maps_before_adding_the_address() {
    let d = desired(
        &[(fe("198.51.100.10", 80), &["10.244.1.2"])],
        &["198.51.100.10"],
    );
    let p = plan(
        &d,
        &Observed::default(),
        &prefixes(),
        &BTreeMap::new(),
        Instant::now(),
        DRAIN,
    );
    assert_eq!(
        p.steps,
        [
            Step::UpsertFrontend {
                id: fe("198.51.100.10", 80),
                endpoints: eps(&["10.244.1.2"]),
                missing: true,
            },
            Step::AddAddress(ip("198.51.100.10")),
        ]
    );
}

#[test]
fn converged_state_plans_nothing() {
    let d = desired(
        &[(fe("198.51.100.10", 80), &["10.244.1.2"])],
        &["198.51.100.10"],
    );
    let o = observed(
        &[(fe("198.51.100.10", 80), &["10.244.1.2"])],
        &["198.51.100.10"],
    );
    let p = plan(&d, &o, &prefixes(), &BTreeMap::new(), Instant::now(), DRAIN);
    assert!(p.steps.is_empty(), "{:?}", p.steps);
}

#[test]
fn backend_change_is_one_upsert_and_keeps_the_address() {
    let d = desired(
        &[(fe("198.51.100.10", 80), &["10.244.1.2", "10.244.1.3"])],
        &["198.51.100.10"],
    );
    let o = observed(
        &[(fe("198.51.100.10", 80), &["10.244.1.2"])],
        &["198.51.100.10"],
    );
    let p = plan(&d, &o, &prefixes(), &BTreeMap::new(), Instant::now(), DRAIN);
    assert_eq!(
        p.steps,
        [Step::UpsertFrontend {
            id: fe("198.51.100.10", 80),
            endpoints: eps(&["10.244.1.2", "10.244.1.3"]),
            missing: false,
        }]
    );
}

#[test]
fn removal_withdraws_the_address_first_and_the_maps_after_the_drain() {
    let o = observed(
        &[(fe("198.51.100.10", 80), &["10.244.1.2"])],
        &["198.51.100.10"],
    );
    let t0 = Instant::now();
    let p = plan(
        &Desired::default(),
        &o,
        &prefixes(),
        &BTreeMap::new(),
        t0,
        DRAIN,
    );
    assert_eq!(p.steps, [Step::RemoveAddress(ip("198.51.100.10"))]);
    assert_eq!(p.draining, BTreeMap::from([(fe("198.51.100.10", 80), t0)]));

    let o = observed(&[(fe("198.51.100.10", 80), &["10.244.1.2"])], &[]);
    let early = plan(
        &Desired::default(),
        &o,
        &prefixes(),
        &p.draining,
        t0 + DRAIN / 2,
        DRAIN,
    );
    assert!(early.steps.is_empty());
    assert_eq!(early.draining, p.draining, "drain start must not move");
    let late = plan(
        &Desired::default(),
        &o,
        &prefixes(),
        &early.draining,
        t0 + DRAIN,
        DRAIN,
    );
    assert_eq!(late.steps, [Step::RemoveFrontend(fe("198.51.100.10", 80))]);
    assert!(late.draining.is_empty());
}

#[test]
fn a_frontend_wanted_again_stops_draining() {
    let o = observed(&[(fe("198.51.100.10", 80), &["10.244.1.2"])], &[]);
    let d = desired(
        &[(fe("198.51.100.10", 80), &["10.244.1.2"])],
        &["198.51.100.10"],
    );
    let draining = BTreeMap::from([(fe("198.51.100.10", 80), Instant::now())]);
    let p = plan(&d, &o, &prefixes(), &draining, Instant::now(), DRAIN);
    assert_eq!(p.steps, [Step::AddAddress(ip("198.51.100.10"))]);
    assert!(p.draining.is_empty());
}

#[test]
fn strays_inside_the_prefix_go_and_addresses_outside_are_never_touched() {
    let d = Desired {
        addresses: [ip("203.0.113.5")].into(),
        ..Default::default()
    };
    let o = observed(&[], &["198.51.100.99", "203.0.113.6"]);
    let p = plan(&d, &o, &prefixes(), &BTreeMap::new(), Instant::now(), DRAIN);
    assert_eq!(p.steps, [Step::RemoveAddress(ip("198.51.100.99"))]);
}

#[test]
fn renewals_are_wanted_present_addresses_inside_the_prefix() {
    let mut d = desired(
        &[(fe("198.51.100.1", 80), &["10.0.0.1"])],
        &["198.51.100.1", "198.51.100.2", "203.0.113.1"],
    );
    d.addresses.insert(ip("198.51.100.3"));
    // .2 is wanted but not there yet (plan adds it); .9 is there but unwanted (plan removes it);
    // 203.0.113.1 is outside the prefix.
    let o = observed(
        &[],
        &[
            "198.51.100.1",
            "198.51.100.3",
            "198.51.100.9",
            "203.0.113.1",
        ],
    );
    assert_eq!(
        renewals(&d, &o, &prefixes()),
        [
            Step::RenewAddress(ip("198.51.100.1")),
            Step::RenewAddress(ip("198.51.100.3"))
        ]
    );
}

#[test]
fn an_uplink_that_does_not_forward_withdraws_every_vip_and_keeps_the_maps() {
    let d = desired(
        &[
            (fe("198.51.100.10", 80), &["10.244.1.2", "10.244.1.3"]),
            (fe("198.51.100.11", 80), &["10.244.1.2"]),
        ],
        &["198.51.100.10", "198.51.100.11"],
    );
    let mut o = observed(
        &[(fe("198.51.100.10", 80), &["10.244.1.2"])],
        &["198.51.100.10", "203.0.113.1"],
    );
    o.not_forwarding = [("eth0".to_owned(), "no XDP program".to_owned())].into();
    let p = plan(&d, &o, &prefixes(), &BTreeMap::new(), Instant::now(), DRAIN);
    assert_eq!(
        p.steps,
        [
            Step::UpsertFrontend {
                id: fe("198.51.100.10", 80),
                endpoints: eps(&["10.244.1.2", "10.244.1.3"]),
                missing: false,
            },
            Step::UpsertFrontend {
                id: fe("198.51.100.11", 80),
                endpoints: eps(&["10.244.1.2"]),
                missing: true,
            },
            Step::RemoveAddress(ip("198.51.100.10")),
        ],
        "maps kept up to date, the VIP withdrawn, nothing added, nothing outside the prefix"
    );
    assert!(p.draining.is_empty());
    assert!(renewals(&d, &o, &prefixes()).is_empty());

    o.not_forwarding.clear();
    let p = plan(&d, &o, &prefixes(), &BTreeMap::new(), Instant::now(), DRAIN);
    assert!(p.steps.contains(&Step::AddAddress(ip("198.51.100.11"))));
    assert!(!p.steps.contains(&Step::RemoveAddress(ip("198.51.100.10"))));
}

#[test]
fn the_datapath_is_configured_only_when_its_settings_differ() {
    let wanted = DatapathSettings {
        prefixes: prefixes().into_iter().collect(),
        redirect_targets: [4, 9].into(),
    };
    let mut o = observed(&[], &[]);
    assert_eq!(
        configure(&wanted, &o),
        Some(Step::Configure(wanted.clone()))
    );
    o.record(&[Step::Configure(wanted.clone())]);
    assert_eq!(o.settings, wanted, "recorded as applied");
    assert_eq!(configure(&wanted, &o), None);
    let fewer = DatapathSettings {
        redirect_targets: [4].into(),
        ..wanted.clone()
    };
    assert_eq!(configure(&fewer, &o), Some(Step::Configure(fewer)));
}

mod convergence;
mod incremental;
