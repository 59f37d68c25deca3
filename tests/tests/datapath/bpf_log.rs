//! The programs' own log (aya-log), forwarded to `tracing` only when asked: a rare event (here
//! a frontend table naming a backend that takes no new flows, made by hand in the pinned backend
//! map) writes nothing while logging is off, one record once it is on, and no more than one a
//! second however many packets hit it; a later pinned load turns it off again.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aya::maps::{Array, Map, MapData};
use l3lb_common::{
    BACKEND_DRAINING, BackendV4, CONFIG_LOG, Config, Counter, MAP_BACKENDS_V4, MAP_CONFIG,
    PROTO_TCP,
};
use l3lb_tests::{
    lab::wait_for,
    packets::{CLIENT, CLIENT_PORT, HTTP, POD, POD_HTTP, VIP, XDP_DROP, backends, ep, fe, tcp},
};
use l3lb_userspace::node::datapath::Datapath;
use tracing::{
    Event, Metadata, Subscriber,
    field::{Field, Visit},
    span,
};

use crate::{grown, pinning::PinDir, require_root};

/// The events a subscriber saw: (level, target, message).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(tracing::Level, String, String)>>>);

impl Capture {
    fn seen(&self) -> Vec<(tracing::Level, String, String)> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let meta = event.metadata();
        if let Ok(mut seen) = self.0.lock() {
            seen.push((*meta.level(), meta.target().to_owned(), message.0));
        }
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

fn config_flags(dir: &std::path::Path) -> u32 {
    let map = MapData::from_pin(dir.join(MAP_CONFIG)).expect("open the pinned config");
    let config: Array<MapData, Config> = Array::try_from(Map::Array(map)).expect("config array");
    config.get(&0, 0).expect("config").flags
}

#[test]
fn rare_events_are_logged_only_when_asked_and_at_most_once_a_second() {
    require_root();
    let dir = PinDir::new("log");
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.clone());
    let id = fe(VIP, HTTP, PROTO_TCP);
    let mut dp = Datapath::load_pinned(&dir.0).expect("pinned load");
    dp.set_frontend(id, &backends(&[(POD, POD_HTTP)]))
        .expect("upsert");
    let slot = dp.backend_slot(&id, &ep(POD, POD_HTTP)).expect("slot");
    // The table still names the endpoint, its slot says it drains: what a packet between the
    // daemon's two writes would see.
    let map = MapData::from_pin(dir.0.join(MAP_BACKENDS_V4)).expect("open the pinned backends");
    let mut slots: Array<MapData, BackendV4> =
        Array::try_from(Map::Array(map)).expect("backend array");
    let mut backend = slots.get(&slot, 0).expect("backend slot");
    backend.state = BACKEND_DRAINING;
    slots.set(slot, backend, 0).expect("drain by hand");

    let syn = tcp((CLIENT, CLIENT_PORT), (VIP, HTTP), &[], None);
    let before = dp.counters().expect("counters");
    let out = dp.test_run_xdp(&syn, 1).expect("run while logging is off");
    assert_eq!(out.verdict, XDP_DROP);
    assert_eq!(
        grown(&before, &dp.counters().expect("counters")),
        [(Counter::XdpNoBackend, 1)].into()
    );

    let forwarder = dp.forward_log().expect("forward the programs' log");
    assert_ne!(config_flags(&dir.0) & CONFIG_LOG, 0, "logging turned on");
    // The daemon's Configure steps rewrite the config: logging stays on.
    dp.set_prefixes(&[]).expect("configure");
    assert_ne!(
        config_flags(&dir.0) & CONFIG_LOG,
        0,
        "a config write kept logging"
    );
    let start = Instant::now();
    let out = dp.test_run_xdp(&syn, 1_000).expect("runs while logging");
    let elapsed = start.elapsed();
    assert_eq!(out.verdict, XDP_DROP);
    let want = format!("names backend slot {slot} in state {BACKEND_DRAINING}");
    wait_for(
        "the event's record, as a tracing event",
        Duration::from_secs(10),
        || {
            let seen = capture.seen();
            Ok(seen.iter().any(|(_, _, m)| m.contains(&want)).then_some(()))
        },
    )
    .expect("the record");
    drop(forwarder); // reads what is left, stops
    let seen = capture.seen();
    let records: Vec<_> = seen
        .iter()
        .filter(|(_, target, _)| target == "l3lb::datapath")
        .collect();
    // The event ran 1,001 times: none while off, then one record a second at most on the one
    // CPU a test run stays on.
    assert!(
        !records.is_empty() && records.len() as u64 <= 1 + elapsed.as_secs() + 1,
        "{} records in {elapsed:?}: {records:?}",
        records.len()
    );
    for (level, _, message) in &records {
        assert_eq!(*level, tracing::Level::WARN);
        assert!(message.contains(&want), "{message}");
    }
    drop(slots);
    drop(dp);

    // The next run did not ask: its pinned load turns the programs' logging off.
    let again = Datapath::load_pinned(&dir.0).expect("second pinned load");
    assert_eq!(config_flags(&dir.0) & CONFIG_LOG, 0, "logging still on");
    drop(again);
}
