//! The executor against in-memory fakes: step order, a failed step never stopping the others,
//! and nothing advertised that does not forward.
use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet, HashSet},
    net::IpAddr,
    sync::Mutex,
};

use super::{AddressTable, FrontendTable, apply};
use crate::core::{
    model::{Backends, DatapathSettings, Endpoint, FrontendId, Frontends, Proto},
    plan::Step,
};

#[derive(Debug, thiserror::Error)]
#[error("injected failure")]
struct Injected;

/// In-memory maps and addresses that record every call, and fail on request.
#[derive(Default)]
struct Fake {
    frontends: Frontends,
    fail_upsert: HashSet<FrontendId>,
    log: RefCell<Vec<String>>,
}

#[derive(Default)]
struct FakeAddrs {
    addrs: Mutex<BTreeSet<IpAddr>>,
    fail: HashSet<IpAddr>,
    log: Mutex<Vec<String>>,
}

impl FrontendTable for Fake {
    type Error = Injected;
    fn upsert(&mut self, id: FrontendId, endpoints: &Backends) -> Result<(), Injected> {
        self.log.borrow_mut().push(format!("upsert {id}"));
        if self.fail_upsert.contains(&id) {
            return Err(Injected);
        }
        self.frontends.insert(id, endpoints.clone());
        Ok(())
    }
    fn remove(&mut self, id: FrontendId) -> Result<(), Injected> {
        self.log.borrow_mut().push(format!("remove {id}"));
        self.frontends.remove(&id);
        Ok(())
    }
    fn configure(&mut self, settings: &DatapathSettings) -> Result<(), Injected> {
        let targets = settings.redirect_targets.len();
        self.log.borrow_mut().push(format!("configure {targets}"));
        Ok(())
    }
}

impl AddressTable for FakeAddrs {
    type Error = Injected;
    async fn add(&self, ip: IpAddr) -> Result<(), Injected> {
        self.log.lock().unwrap().push(format!("add {ip}"));
        if self.fail.contains(&ip) {
            return Err(Injected);
        }
        self.addrs.lock().unwrap().insert(ip);
        Ok(())
    }
    async fn remove(&self, ip: IpAddr) -> Result<(), Injected> {
        self.log.lock().unwrap().push(format!("del {ip}"));
        self.addrs.lock().unwrap().remove(&ip);
        Ok(())
    }
}

fn fe(vip: &str, port: u16) -> FrontendId {
    FrontendId {
        vip: vip.parse().unwrap(),
        port,
        proto: Proto::Tcp,
    }
}

fn upsert(id: FrontendId) -> Step {
    Step::UpsertFrontend {
        id,
        endpoints: [Endpoint {
            addr: "10.244.1.2".parse().unwrap(),
            port: 8080,
        }]
        .into(),
        missing: false,
    }
}

/// An upsert of a frontend that is not in the maps at all.
fn upsert_missing(id: FrontendId) -> Step {
    match upsert(id) {
        Step::UpsertFrontend { id, endpoints, .. } => Step::UpsertFrontend {
            id,
            endpoints,
            missing: true,
        },
        other => other,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn failed_upsert_blocks_only_its_own_address_and_the_rest_goes_on() {
    let (a, b) = (fe("198.51.100.1", 80), fe("198.51.100.2", 80));
    let mut maps = Fake {
        fail_upsert: [a].into(),
        ..Default::default()
    };
    let addrs = FakeAddrs::default();
    let steps = [
        upsert_missing(a),
        upsert_missing(b),
        Step::AddAddress(a.vip),
        Step::AddAddress(b.vip),
    ];
    let out = apply(&steps, &mut maps, &addrs).await;
    assert_eq!((out.applied, out.failed), (2, 2));
    assert_eq!(
        out.failed_steps,
        BTreeMap::from([("add_address", 1), ("upsert_frontend", 1)]),
        "failures counted by step kind"
    );
    assert_eq!(*addrs.addrs.lock().unwrap(), BTreeSet::from([b.vip]));
    assert_eq!(
        *addrs.log.lock().unwrap(),
        ["add 198.51.100.2"],
        "no add attempted for the unprogrammed VIP"
    );
}

#[tokio::test]
async fn failed_address_step_does_not_abort_later_steps() {
    let mut maps = Fake {
        frontends: [(fe("198.51.100.3", 80), Backends::default())].into(),
        ..Default::default()
    };
    let addrs = FakeAddrs {
        fail: [ip("198.51.100.1")].into(),
        ..Default::default()
    };
    let steps = [
        Step::AddAddress(ip("198.51.100.1")),
        Step::AddAddress(ip("198.51.100.2")),
        Step::RemoveFrontend(fe("198.51.100.3", 80)),
    ];
    let out = apply(&steps, &mut maps, &addrs).await;
    assert_eq!((out.applied, out.failed), (2, 1));
    assert!(maps.frontends.is_empty());
    assert_eq!(
        *addrs.addrs.lock().unwrap(),
        BTreeSet::from([ip("198.51.100.2")])
    );
}

#[tokio::test]
async fn steps_run_in_plan_order() {
    let mut maps = Fake::default();
    let addrs = FakeAddrs::default();
    let a = fe("198.51.100.1", 80);
    let steps = [
        upsert(a),
        Step::AddAddress(a.vip),
        Step::RemoveAddress(ip("198.51.100.9")),
        Step::RemoveFrontend(fe("198.51.100.9", 80)),
    ];
    apply(&steps, &mut maps, &addrs).await;
    assert_eq!(
        *maps.log.borrow(),
        ["upsert 198.51.100.1:80/tcp", "remove 198.51.100.9:80/tcp"]
    );
    assert_eq!(
        *addrs.log.lock().unwrap(),
        ["add 198.51.100.1", "del 198.51.100.9"]
    );
}

#[tokio::test]
async fn renewal_re_adds_a_present_address_even_when_its_frontend_failed() {
    let a = fe("198.51.100.1", 80);
    let mut maps = Fake {
        fail_upsert: [a].into(),
        ..Default::default()
    };
    let addrs = FakeAddrs {
        addrs: Mutex::new([a.vip, ip("198.51.100.2")].into()),
        fail: [ip("198.51.100.2")].into(),
        ..Default::default()
    };
    // The old backend set still forwards: a failed update must not let the VIP expire.
    let steps = [
        upsert(a),
        Step::RenewAddress(a.vip),
        Step::RenewAddress(ip("198.51.100.2")),
    ];
    let out = apply(&steps, &mut maps, &addrs).await;
    assert_eq!((out.applied, out.failed), (1, 2));
    assert_eq!(
        out.failed_steps,
        BTreeMap::from([("renew_address", 1), ("upsert_frontend", 1)])
    );
    assert_eq!(
        *addrs.log.lock().unwrap(),
        ["add 198.51.100.1", "add 198.51.100.2"]
    );
    assert_eq!(
        *addrs.addrs.lock().unwrap(),
        BTreeSet::from([a.vip, ip("198.51.100.2")]),
        "a failed renewal removes nothing"
    );
}

#[tokio::test]
async fn a_missing_frontend_that_fails_to_program_withdraws_its_advertised_vip() {
    // 198.51.100.1:443 is new on a VIP already announced for :80; .2 lost its only frontend from
    // the maps (drift); .3 fails an update of a frontend still in the maps.
    let (new, lost, updated) = (
        fe("198.51.100.1", 443),
        fe("198.51.100.2", 80),
        fe("198.51.100.3", 80),
    );
    let mut maps = Fake {
        fail_upsert: [new, lost, updated].into(),
        ..Default::default()
    };
    let addrs = FakeAddrs {
        addrs: Mutex::new([new.vip, lost.vip, updated.vip, ip("198.51.100.4")].into()),
        ..Default::default()
    };
    let other = fe("198.51.100.4", 80);
    let steps = [
        upsert_missing(new),
        upsert_missing(lost),
        upsert(updated),
        upsert_missing(other),
        Step::RenewAddress(new.vip),
    ];
    let out = apply(&steps, &mut maps, &addrs).await;
    assert_eq!(
        out.failed_steps,
        BTreeMap::from([("renew_address", 1), ("upsert_frontend", 3)])
    );
    assert_eq!(
        *addrs.addrs.lock().unwrap(),
        BTreeSet::from([updated.vip, other.vip]),
        "VIPs whose frontend is not in the maps are withdrawn; the updated one still forwards"
    );
    assert_eq!(
        *addrs.log.lock().unwrap(),
        ["del 198.51.100.1", "del 198.51.100.2"],
        "withdrawn at once, and not renewed back in the same pass"
    );
}
