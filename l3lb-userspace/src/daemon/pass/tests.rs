//! Reconcile passes against in-memory maps and addresses: restarts that change nothing,
//! lifetime renewals, per-frontend counters in chunks.
use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    net::IpAddr,
    ops::Bound,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use l3lb_common::Stat;
use prometheus_client::{encoding::text::encode, registry::Registry};

use super::{FRONTEND_STATS_CHUNK, Reconciler, renew_due};
use crate::{
    core::{
        class::ClassFilter,
        config::{Config, LeaseConfig},
        model::{Backends, DatapathSettings, Desired, Endpoint, FrontendId, Frontends, Proto},
        ownership::ExternalIps,
    },
    metrics::Metrics,
    node::{
        executor::{AddressTable, FrontendTable},
        observe::{AddressObserver, FrontendObserver},
    },
};

#[derive(Default)]
struct Maps(Frontends);

impl FrontendTable for Maps {
    type Error = Infallible;
    fn upsert(&mut self, id: FrontendId, eps: &Backends) -> Result<(), Infallible> {
        self.0.insert(id, eps.clone());
        Ok(())
    }
    fn remove(&mut self, id: FrontendId) -> Result<(), Infallible> {
        self.0.remove(&id);
        Ok(())
    }
    fn configure(&mut self, _: &DatapathSettings) -> Result<(), Infallible> {
        Ok(())
    }
}

impl FrontendObserver for Maps {
    type Error = Infallible;
    fn frontends(&self) -> Result<Frontends, Infallible> {
        Ok(self.0.clone())
    }
    /// Each frontend has counted its port number in packets.
    fn frontend_stats(
        &self,
        after: Option<FrontendId>,
        limit: usize,
    ) -> Result<BTreeMap<FrontendId, Stat>, Infallible> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let stat = |id: &FrontendId| Stat {
            packets: id.port.into(),
            bytes: 0,
        };
        Ok(self
            .0
            .range((lower, Bound::Unbounded))
            .take(limit)
            .map(|(id, _)| (*id, stat(id)))
            .collect())
    }
}

/// Addresses, and every add (adds and renewals alike) in order.
#[derive(Clone, Default)]
struct Addrs {
    present: Arc<Mutex<BTreeSet<IpAddr>>>,
    adds: Arc<Mutex<Vec<IpAddr>>>,
}

impl AddressObserver for Addrs {
    type Error = Infallible;
    async fn addresses(&self) -> Result<BTreeSet<IpAddr>, Infallible> {
        Ok(self.present.lock().unwrap().clone())
    }
}

impl AddressTable for Addrs {
    type Error = Infallible;
    async fn add(&self, ip: IpAddr) -> Result<(), Infallible> {
        self.adds.lock().unwrap().push(ip);
        self.present.lock().unwrap().insert(ip);
        Ok(())
    }
    async fn remove(&self, ip: IpAddr) -> Result<(), Infallible> {
        self.present.lock().unwrap().remove(&ip);
        Ok(())
    }
}

const MINUTE: Option<Duration> = Some(Duration::from_secs(60));

/// A node's settings with VIP lifetime `lifetime` (`None`: forever) and a 2 s resync.
fn config(lifetime: Option<Duration>) -> Config {
    Config {
        node_name: "n1".into(),
        prefixes: vec!["198.51.100.0/24".parse().unwrap()],
        interface: "lo".into(),
        metrics_addr: None,
        address_lifetime: lifetime,
        uplinks: vec!["eth0".into()],
        drain_timeout: Duration::from_secs(10),
        resync_interval: Duration::from_secs(2),
        bpffs_dir: "/sys/fs/bpf/l3lb".into(),
        class: ClassFilter::default(),
        lease: LeaseConfig {
            name: "l3lb-allocator".into(),
            namespace: None,
            duration: Duration::from_secs(15),
        },
        external_ips: ExternalIps::default(),
        pod_cidrs: vec![],
        allocator: true,
        xdp_redirect: false,
        bpf_log: false,
        control_socket: "/run/l3lb/test.sock".into(),
        l2_lease_namespace: None,
    }
}

/// A VIP already on the interface and its frontend already programmed, as a restart finds them.
fn restarted(lifetime: Option<Duration>) -> (Reconciler<Maps, Addrs>, Addrs, Desired) {
    let vip: IpAddr = "198.51.100.1".parse().unwrap();
    let id = FrontendId {
        vip,
        port: 80,
        proto: Proto::Tcp,
    };
    let eps: Backends = [Endpoint {
        addr: "10.0.0.1".parse().unwrap(),
        port: 8080,
    }]
    .into();
    let want = Desired {
        frontends: [(id, eps.clone())].into(),
        addresses: [vip].into(),
        refusals: vec![],
    };
    let addrs = Addrs::default();
    addrs.present.lock().unwrap().insert(vip);
    let maps = Maps([(id, eps)].into());
    let r = Reconciler::new(config(lifetime), maps, addrs.clone(), Metrics::default());
    (r, addrs, want)
}

#[tokio::test]
async fn with_a_lifetime_the_first_pass_renews_and_a_burst_of_passes_does_not() {
    let (mut r, addrs, want) = restarted(MINUTE);
    for _ in 0..3 {
        let out = r.pass(&want).await;
        assert_eq!(out.failed, 0);
    }
    assert_eq!(addrs.adds.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn without_a_lifetime_the_first_pass_makes_present_vips_permanent_once() {
    let (mut r, addrs, want) = restarted(None);
    for _ in 0..3 {
        r.pass(&want).await;
    }
    assert_eq!(
        addrs.adds.lock().unwrap().len(),
        1,
        "one re-add clears a lifetime an earlier run set; then the steady state is silent"
    );
}

#[test]
fn renewals_are_due_at_start_then_every_half_resync_with_a_lifetime() {
    let t0 = Instant::now();
    let (minute, resync) = (Some(Duration::from_secs(60)), Duration::from_secs(20));
    let at = |s: u64| t0 + Duration::from_secs(s);
    let cases = [
        (minute, None, at(0), true),
        (minute, Some(at(0)), at(5), false),
        (minute, Some(at(0)), at(10), true),
        (minute, Some(at(0)), at(20), true),
        // A clock that went backwards (it cannot, but never panic): not due yet.
        (minute, Some(at(20)), at(0), false),
        (None, None, at(0), true),
        (None, Some(at(0)), at(3600), false),
    ];
    for (lifetime, last, now, want) in cases {
        assert_eq!(
            renew_due(lifetime, resync, last, now),
            want,
            "{lifetime:?} {last:?} {now:?}"
        );
    }
}

#[tokio::test]
async fn quick_passes_trust_the_record_and_a_full_pass_heals_drift() {
    let (mut r, addrs, want) = restarted(None);
    let vip = *want.addresses.first().unwrap();
    assert_eq!(r.pass(&want).await.failed, 0);
    addrs.present.lock().unwrap().remove(&vip);
    let adds = addrs.adds.lock().unwrap().len();
    r.quick_pass(&want).await;
    assert_eq!(
        addrs.adds.lock().unwrap().len(),
        adds,
        "no observe, no step"
    );
    r.pass(&want).await;
    assert!(
        addrs.present.lock().unwrap().contains(&vip),
        "resync re-adds it"
    );
}

#[tokio::test]
async fn quick_passes_apply_changes_from_the_record() {
    let (mut r, addrs, want) = restarted(None);
    r.pass(&want).await;
    let vip = *want.addresses.first().unwrap();
    r.quick_pass(&Desired::default()).await;
    assert!(!addrs.present.lock().unwrap().contains(&vip), "withdrawn");
    r.quick_pass(&want).await;
    assert!(
        addrs.present.lock().unwrap().contains(&vip),
        "advertised again"
    );
}

/// The `l3lb_frontend_packets_total` series in the metrics, as port -> value.
fn frontend_series(metrics: &Metrics) -> BTreeMap<u16, u64> {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut out = String::new();
    encode(&mut out, &registry).unwrap();
    out.lines()
        .filter_map(|l| l.strip_prefix("l3lb_frontend_packets_total{"))
        .map(|l| {
            let port = l
                .split("port=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let value = l.rsplit(' ').next().unwrap();
            (port.parse().unwrap(), value.parse().unwrap())
        })
        .collect()
}

#[test]
fn frontend_counters_are_refreshed_a_chunk_per_tick_and_leave_with_their_frontend() {
    let n = 2 * FRONTEND_STATS_CHUNK + 100;
    let id = |port: usize| FrontendId {
        vip: "198.51.100.1".parse().unwrap(),
        port: port as u16,
        proto: Proto::Tcp,
    };
    let maps = Maps((1..=n).map(|p| (id(p), Backends::default())).collect());
    let metrics = Metrics::default();
    let mut r = Reconciler::new(config(MINUTE), maps, Addrs::default(), metrics.clone());
    r.refresh_frontend_stats();
    assert_eq!(frontend_series(&metrics).len(), FRONTEND_STATS_CHUNK);
    r.refresh_frontend_stats();
    r.refresh_frontend_stats();
    let all = frontend_series(&metrics);
    assert_eq!(all.len(), n);
    assert!(
        all.iter()
            .all(|(port, packets)| u64::from(*port) == *packets)
    );

    // Every other frontend goes; one round of ticks later their series are gone, the rest kept.
    for p in (2..=n).step_by(2) {
        r.frontends.0.remove(&id(p));
    }
    // The next tick starts over from the first frontend.
    for _ in 0..2 {
        r.refresh_frontend_stats();
    }
    let left = frontend_series(&metrics);
    assert_eq!(left.len(), n.div_ceil(2), "{} series left", left.len());
    assert!(left.keys().all(|p| p % 2 == 1));
}
