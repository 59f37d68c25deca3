//! What the metrics show after a pass, and their exposition.
use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use l3lb_common::{Counter as Verdict, Stat};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Health, Metrics, http::router};
use crate::core::model::{Backends, Desired, Endpoint, FrontendId, Observed, Proto};

fn fe(vip: &str, port: u16) -> FrontendId {
    FrontendId {
        vip: vip.parse().unwrap(),
        port,
        proto: Proto::Tcp,
    }
}

fn eps(addrs: &[&str]) -> Backends {
    addrs
        .iter()
        .map(|a| Endpoint {
            addr: a.parse().unwrap(),
            port: 8080,
        })
        .collect::<BTreeSet<_>>()
        .into()
}

fn text(metrics: &Metrics) -> String {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut out = String::new();
    encode(&mut out, &registry).unwrap();
    out
}

#[test]
fn state_counts_only_frontends_programmed_as_wanted() {
    let (a, b, c) = (
        fe("198.51.100.1", 80),
        fe("198.51.100.2", 80),
        fe("198.51.100.3", 80),
    );
    let desired = Desired {
        frontends: [(a, eps(&["10.0.0.1"])), (b, eps(&["10.0.0.2"]))].into(),
        addresses: ["198.51.100.1".parse().unwrap()].into(),
        refusals: vec![],
    };
    // b's upsert failed (old backends still in the map); c is draining.
    let after = Observed {
        not_forwarding: Default::default(),
        frontends: [
            (a, eps(&["10.0.0.1"])),
            (b, eps(&["10.0.0.9"])),
            (c, eps(&["10.0.0.3", "10.0.0.4"])),
        ]
        .into(),
        addresses: ["198.51.100.1".parse().unwrap()].into(),
        settings: Default::default(),
    };
    let m = Metrics::default();
    m.record_state(&desired, &after, 1);
    assert_eq!(m.frontends.get(), 1);
    assert_eq!(m.frontends_draining.get(), 1);
    assert_eq!(m.vips.get(), 1);
    assert_eq!(m.backends.get(), 4);
    let out = text(&m);
    assert!(
        out.contains("l3lb_map_entries{map=\"L3LB_FRONTENDS_V4\"} 3"),
        "{out}"
    );
    assert!(out.contains("l3lb_vips_assumed 1"), "{out}");
}

#[test]
fn datapath_counters_mirror_the_kernel_values() {
    let m = Metrics::default();
    let stat = |packets, bytes| Stat { packets, bytes };
    m.record_counters(&BTreeMap::from([(Verdict::XdpDnatPass, stat(5, 300))]));
    // Absolute values, not increments: a second read replaces the first.
    m.record_counters(&BTreeMap::from([
        (Verdict::XdpDnatPass, stat(7, 420)),
        (Verdict::TcRevNat, stat(2, 100)),
    ]));
    let out = text(&m);
    for line in [
        "l3lb_datapath_packets_total{verdict=\"xdp_dnat_pass\"} 7",
        "l3lb_datapath_bytes_total{verdict=\"xdp_dnat_pass\"} 420",
        "l3lb_datapath_packets_total{verdict=\"tc_rev_nat\"} 2",
    ] {
        assert!(out.contains(line), "no {line:?} in\n{out}");
    }
}

#[test]
fn failures_are_counted_by_kind_and_passes_timed() {
    let m = Metrics::default();
    m.record_pass(
        Duration::from_millis(3),
        &BTreeMap::from([("add_address", 2)]),
    );
    m.record_pass(Duration::from_millis(5), &BTreeMap::new());
    m.watch_error("Service");
    let out = text(&m);
    for line in [
        "l3lb_step_failures_total{step=\"add_address\"} 2",
        "l3lb_watch_errors_total{resource=\"Service\"} 1",
        "l3lb_reconcile_duration_seconds_count 2",
    ] {
        assert!(out.contains(line), "no {line:?} in\n{out}");
    }
}

#[test]
fn ready_only_after_sync_and_a_clean_pass() {
    let h = Health::default();
    h.pass_done(0);
    assert!(h.readiness().is_err(), "a pass before the first list");
    h.set_synced();
    h.pass_done(1);
    assert!(h.readiness().is_err(), "a pass with a failure");
    h.pass_done(0);
    assert_eq!(h.readiness(), Ok(()));
    h.pass_done(3);
    assert_eq!(h.readiness(), Ok(()), "stays ready");
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn http_serves_metrics_health_and_readiness() {
    let m = Metrics::default();
    let mut registry = Registry::default();
    m.register(&mut registry);
    m.vips.set(2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(registry, m.health.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    let r = get(addr, "/readyz").await;
    assert!(
        r.starts_with("HTTP/1.1 503") && r.contains("first list"),
        "{r}"
    );
    m.health.set_synced();
    m.health.pass_done(0);
    assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
    let r = get(addr, "/metrics").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("application/openmetrics-text"), "{r}");
    assert!(r.contains("l3lb_vips_assumed 2"), "{r}");
    assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
}

#[test]
fn frontend_counters_mirror_the_kernel_chunk_by_chunk_and_leave_with_their_frontend() {
    let m = Metrics::default();
    let id = |vip: &str, port, proto| FrontendId {
        vip: vip.parse().unwrap(),
        port,
        proto,
    };
    let web = id("198.51.100.10", 80, Proto::Tcp);
    let dns = id("2001:db8::53", 53, Proto::Udp);
    let stat = |packets, bytes| Stat { packets, bytes };
    // Two chunks: up to web, then the rest.
    m.frontend_stats
        .replace_range(None, Some(web), BTreeMap::from([(web, stat(3, 180))]));
    m.frontend_stats
        .replace_range(Some(web), None, BTreeMap::from([(dns, stat(1, 90))]));
    let out = text(&m);
    for line in [
        "l3lb_frontend_packets_total{vip=\"198.51.100.10\",port=\"80\",proto=\"tcp\"} 3",
        "l3lb_frontend_bytes_total{vip=\"198.51.100.10\",port=\"80\",proto=\"tcp\"} 180",
        "l3lb_frontend_packets_total{vip=\"2001:db8::53\",port=\"53\",proto=\"udp\"} 1",
    ] {
        assert!(out.contains(line), "no {line:?} in\n{out}");
    }
    // A whole pass in one chunk: web's value replaced (not added), dns no longer programmed.
    m.frontend_stats
        .replace_range(None, None, BTreeMap::from([(web, stat(5, 300))]));
    let out = text(&m);
    assert!(
        out.contains(
            "l3lb_frontend_packets_total{vip=\"198.51.100.10\",port=\"80\",proto=\"tcp\"} 5"
        ),
        "{out}"
    );
    assert!(!out.contains("2001:db8::53"), "{out}");
    // A chunk before dns leaves dns alone.
    m.frontend_stats
        .replace_range(None, Some(web), BTreeMap::from([(web, stat(6, 360))]));
    m.frontend_stats
        .replace_range(Some(web), None, BTreeMap::from([(dns, stat(2, 180))]));
    m.frontend_stats
        .replace_range(None, Some(web), BTreeMap::new());
    let out = text(&m);
    assert!(!out.contains("198.51.100.10"), "{out}");
    assert!(
        out.contains(
            "l3lb_frontend_bytes_total{vip=\"2001:db8::53\",port=\"53\",proto=\"udp\"} 180"
        ),
        "{out}"
    );
}
