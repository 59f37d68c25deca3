//! Kube-client tier: the allocator's leader election against the test API server, with two
//! electors on one Lease (the protocol is the daemon's own code, only the timings are short).
use std::time::{Duration, Instant};

use l3lb_tests::apiserver::ApiServer;
use l3lb_userspace::k8s::leader::{Leadership, elector::Elector};
use tokio::sync::watch;

const LEASE: &str = "l3lb-allocator";
/// The shortest the daemon accepts: retry 1 s, renew deadline 3 s.
const DURATION: Duration = Duration::from_secs(5);

async fn wait_leader(rx: &mut watch::Receiver<Leadership>, within: Duration) -> Instant {
    let started = Instant::now();
    tokio::time::timeout(within, async {
        loop {
            if rx.borrow_and_update().is_leader() {
                return Instant::now();
            }
            rx.changed().await.expect("elector gone");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no leadership within {within:?} (waited since {started:?})"))
}

fn holder(api: &ApiServer) -> Option<String> {
    api.lease_holder("default", LEASE)
}

/// Requests the API server has seen on the Lease with `method`.
fn lease_requests(api: &ApiServer, method: &str) -> usize {
    let path = format!("/leases/{LEASE}");
    api.requests()
        .iter()
        .filter(|r| r.starts_with(method) && r.contains(&path))
        .count()
}

fn lease_writes(api: &ApiServer) -> usize {
    lease_requests(api, "PUT ")
}

fn lease_reads(api: &ApiServer) -> usize {
    lease_requests(api, "GET ")
}

/// Waits (up to two Lease durations) until `probe` says yes.
async fn wait(what: &str, mut probe: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + 2 * DURATION;
    loop {
        match probe() {
            Ok(()) => return,
            Err(seen) if Instant::now() > deadline => {
                panic!("timed out waiting for {what}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test]
async fn one_leader_at_a_time_and_takeover_after_release_and_after_a_crash() {
    let api = ApiServer::new();
    let addr = api.listen().await.unwrap();
    let client = ApiServer::client(addr).unwrap();

    let (a, mut a_rx) = Elector::new(client.clone(), "default", LEASE, "node-a", DURATION);
    let a = a.spawn();
    wait_leader(&mut a_rx, Duration::from_secs(5)).await;
    assert_eq!(
        holder(&api).as_deref(),
        Some("node-a"),
        "the Lease names the leader"
    );

    let (b, mut b_rx) = Elector::new(client.clone(), "default", LEASE, "node-b", DURATION);
    let b = b.spawn();
    // b never leads while a renews: through three of a's renewals (each a PUT of the Lease), b's
    // leadership never flipped, not even for a moment.
    let renewals = lease_writes(&api);
    wait("three renewals by node-a", || {
        let n = lease_writes(&api) - renewals;
        (n >= 3).then_some(()).ok_or(format!("{n} renewals"))
    })
    .await;
    assert!(
        a_rx.borrow().is_leader(),
        "a lost the Lease while renewing it"
    );
    assert!(
        !b_rx.has_changed().unwrap_or(true) && !b_rx.borrow().is_leader(),
        "two leaders at once"
    );
    assert_eq!(holder(&api).as_deref(), Some("node-a"));

    // A clean stop releases the Lease: b takes over before a's term would have run out, so it
    // did not wait for the Lease to expire.
    let a_until = a_rx.borrow().until.expect("a leads");
    let stopped = Instant::now();
    a.stop(Duration::from_secs(5)).await;
    assert!(!a_rx.borrow().is_leader());
    let took_over = wait_leader(&mut b_rx, DURATION).await;
    println!("takeover after a release: {:?}", took_over - stopped);
    assert!(
        took_over < a_until,
        "b waited for the released Lease to run out"
    );
    assert_eq!(holder(&api).as_deref(), Some("node-b"));

    // A crash releases nothing. The crashed leader's own view lapses (renew deadline) before a
    // new candidate may take over, which it does about one Lease duration after the last renewal.
    let (c, mut c_rx) = Elector::new(client.clone(), "default", LEASE, "node-c", DURATION);
    let looks = lease_reads(&api);
    let c = c.spawn();
    // c has looked at the Lease (b's renewals read it only once a second).
    wait("node-c's first look at the Lease", || {
        (lease_reads(&api) > looks)
            .then_some(())
            .ok_or("none".into())
    })
    .await;
    let b_until = b_rx.borrow().until.expect("b leads");
    let crashed = Instant::now();
    b.abort();
    let took_over = wait_leader(&mut c_rx, 2 * DURATION).await;
    println!("takeover after a crash: {:?}", took_over - crashed);
    assert!(took_over > b_until, "c led while b still believed it led");
    assert_eq!(holder(&api).as_deref(), Some("node-c"));
    let lease = api
        .get("coordination.k8s.io/v1", "Lease", Some("default"), LEASE)
        .unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 2, "{lease}");
    c.stop(Duration::from_secs(5)).await;
    assert_eq!(holder(&api), None, "released on stop");
}
