//! Kube-client tier: the allocator's leader election against the test API server, with two
//! electors on one Lease (the protocol is the daemon's own code, only the timings are short).
use std::time::{Duration, Instant};

use l3lb_tests::apiserver::ApiServer;
use l3lb_userspace::leader::{Leadership, elector::Elector};
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
    // Two Lease durations: b never leads while a renews.
    let until = Instant::now() + 2 * DURATION;
    while Instant::now() < until {
        assert!(
            a_rx.borrow().is_leader(),
            "a lost the Lease while renewing it"
        );
        assert!(!b_rx.borrow().is_leader(), "two leaders at once");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A clean stop releases the Lease: b takes over within a retry period or so.
    let stopped = Instant::now();
    a.stop(Duration::from_secs(5)).await;
    assert!(!a_rx.borrow().is_leader());
    let took_over = wait_leader(&mut b_rx, DURATION).await;
    let after_release = took_over - stopped;
    println!("takeover after a release: {after_release:?}");
    assert!(after_release < DURATION / 2, "{after_release:?}");
    assert_eq!(holder(&api).as_deref(), Some("node-b"));

    // A crash releases nothing. The crashed leader's own view lapses (renew deadline) before a
    // new candidate may take over, which it does about one Lease duration after the last renewal.
    let (c, mut c_rx) = Elector::new(client.clone(), "default", LEASE, "node-c", DURATION);
    let c = c.spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b_until = b_rx.borrow().until.expect("b leads");
    let crashed = Instant::now();
    b.abort();
    let took_over = wait_leader(&mut c_rx, 2 * DURATION).await;
    let after_crash = took_over - crashed;
    println!("takeover after a crash: {after_crash:?}");
    assert!(took_over > b_until, "c led while b still believed it led");
    assert!(
        after_crash <= DURATION + DURATION / 5 + Duration::from_millis(500),
        "{after_crash:?}"
    );
    assert_eq!(holder(&api).as_deref(), Some("node-c"));
    let lease = api
        .get("coordination.k8s.io/v1", "Lease", Some("default"), LEASE)
        .unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 2, "{lease}");
    c.stop(Duration::from_secs(5)).await;
    assert_eq!(holder(&api), None, "released on stop");
}
