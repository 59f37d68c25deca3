//! Kube-client tier: the daemon's allocator (watches, Lease election, allocation, status writes,
//! Events) running in-process against the test API server, two "daemons" at a time.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use l3lb_tests::{apiserver::ApiServer, scenario::POOL_CRD};
use l3lb_userspace::{
    core::class::ClassFilter,
    k8s::{
        allocator::Allocator,
        events::announcements::VipEvents,
        leader::elector::{Elector, ElectorHandle},
        trigger::Trigger,
        watch::{self, AllocatorStores},
    },
    metrics::Metrics,
};
use serde_json::{Value, json};
use tokio::{sync::Notify, task::JoinHandle};

const LEASE_DURATION: Duration = Duration::from_secs(5);
const DEADLINE: Duration = Duration::from_secs(15);

/// One daemon's allocator half: its watches, its elector and its allocator task.
struct Daemon {
    elector: ElectorHandle,
    task: JoinHandle<()>,
    metrics: Metrics,
}

impl Daemon {
    fn start(client: &kube::Client, node: &str) -> Self {
        let trigger = Arc::new(Notify::new());
        let metrics = Metrics::default();
        let stores = AllocatorStores::start(client.clone(), trigger.clone(), metrics.clone());
        let (elector, leadership) = Elector::new(
            client.clone(),
            "default",
            "l3lb-allocator",
            node,
            LEASE_DURATION,
        );
        let task = tokio::spawn(
            Allocator {
                client: client.clone(),
                identity: node.to_owned(),
                prefixes: vec!["198.51.100.0/24".parse().unwrap()],
                class: ClassFilter {
                    default: true,
                    ..ClassFilter::default()
                },
                stores,
                trigger,
                leadership,
                resync: Duration::from_secs(2),
                events: VipEvents::start(client.clone(), node, metrics.clone()),
                metrics: metrics.clone(),
            }
            .run(),
        );
        Daemon {
            elector: elector.spawn(),
            task,
            metrics,
        }
    }

    /// Allocation passes this daemon ran as the leader.
    fn passes(&self) -> u64 {
        self.metrics.allocation_passes.get()
    }

    /// Waits until this daemon has run `n` more allocation passes.
    async fn wait_passes(&self, n: u64) {
        let from = self.passes();
        wait(&format!("{n} more allocation passes"), || {
            let done = self.passes() - from;
            (done >= n).then_some(()).ok_or(format!("{done}"))
        })
        .await
    }

    async fn stop(self) {
        self.elector.stop(Duration::from_secs(5)).await;
        self.task.abort();
    }
}

fn service(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["type"] = json!("LoadBalancer");
    spec["ports"] = json!([{"port": 80, "protocol": "TCP"}]);
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"namespace": "default", "name": name}, "spec": spec})
}

fn ingress(api: &ApiServer, name: &str) -> Vec<String> {
    api.ingress_ips("default", name)
}

fn holder(api: &ApiServer) -> Option<String> {
    api.lease_holder("default", "l3lb-allocator")
}

fn resource_version(api: &ApiServer, name: &str) -> String {
    let svc = api.get("v1", "Service", Some("default"), name).unwrap();
    svc["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn wait(what: &str, mut probe: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match probe() {
            Ok(()) => return,
            Err(seen) if Instant::now() > deadline => {
                panic!("timed out waiting for {what}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn wait_ingress(api: &ApiServer, name: &str, want: &[&str]) {
    wait(&format!("{name} ingress {want:?}"), || {
        let got = ingress(api, name);
        (got == want).then_some(()).ok_or(format!("{got:?}"))
    })
    .await
}

/// Events about Service `name` with `reason`.
fn events(api: &ApiServer, name: &str, reason: &str) -> Vec<Value> {
    api.events()
        .into_iter()
        .filter(|e| e["regarding"]["name"] == name && e["reason"] == reason)
        .collect()
}

async fn wait_one_event(api: &ApiServer, name: &str, reason: &str) {
    wait(&format!("one {reason} Event for {name}"), || {
        let e = events(api, name, reason);
        (e.len() == 1).then_some(()).ok_or(format!("{e:?}"))
    })
    .await
}

fn status_writes(api: &ApiServer) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.starts_with("PATCH ") && r.contains("/services/") && r.contains("/status"))
        .count()
}

#[tokio::test]
async fn the_leader_allocates_once_and_a_successor_keeps_every_address() {
    let api = ApiServer::new();
    let addr = api.listen().await.unwrap();
    let client = ApiServer::client(addr).unwrap();
    api.apply_yaml(POOL_CRD).unwrap();
    api.apply(json!({"apiVersion": "l3lb.io/v1alpha1", "kind": "L3lbPool",
        "metadata": {"name": "lab"}, "spec": {"addresses": ["198.51.100.0/24"]}}))
        .unwrap();
    api.apply(service("asks", json!({"loadBalancerIP": "198.51.100.1"})))
        .unwrap();
    api.apply(service("auto", json!({}))).unwrap();
    api.apply(service("outside", json!({"loadBalancerIP": "203.0.113.7"})))
        .unwrap();
    api.apply(service(
        "other-class",
        json!({"loadBalancerClass": "example.com/lb"}),
    ))
    .unwrap();

    // Two daemons at once: one wins the Lease and allocates; the refusal is reported once.
    let a = Daemon::start(&client, "node-a");
    let b = Daemon::start(&client, "node-b");
    wait_ingress(&api, "asks", &["198.51.100.1"]).await;
    wait_ingress(&api, "auto", &["198.51.100.2"]).await;
    wait_one_event(&api, "outside", "AllocationFailed").await;
    let note = events(&api, "outside", "AllocationFailed")[0]["note"].clone();
    assert!(
        note.as_str()
            .unwrap()
            .contains("203.0.113.7 is outside every address pool"),
        "{note}"
    );
    assert_eq!(events(&api, "auto", "AddressAssigned").len(), 1);
    // Two more passes of the leader later: still one Event, no status rewritten, other classes
    // untouched.
    let leader = holder(&api).expect("a leader");
    let leading = if leader == "node-a" { &a } else { &b };
    leading.wait_passes(2).await;
    assert_eq!(events(&api, "outside", "AllocationFailed").len(), 1);
    assert_eq!(status_writes(&api), 2, "{:#?}", api.requests());
    assert!(ingress(&api, "other-class").is_empty());
    assert!(events(&api, "other-class", "AllocationFailed").is_empty());

    // The leader stops (as on SIGTERM): the other takes over, keeps every address and gives a new
    // Service the next free one, not one that is on record.
    let (gone, survivor) = if leader == "node-a" { (a, b) } else { (b, a) };
    let versions = (
        resource_version(&api, "asks"),
        resource_version(&api, "auto"),
    );
    gone.stop().await;
    api.apply(service("later", json!({}))).unwrap();
    wait_ingress(&api, "later", &["198.51.100.3"]).await;
    assert_eq!(
        (
            resource_version(&api, "asks"),
            resource_version(&api, "auto")
        ),
        versions,
        "the new leader rewrote a Service it had no reason to touch"
    );
    assert_ne!(holder(&api), Some(leader));

    // Fixing the refused Service clears the refusal: it gets the address it now asks for.
    api.apply(service(
        "outside",
        json!({"loadBalancerIP": "198.51.100.200"}),
    ))
    .unwrap();
    wait_ingress(&api, "outside", &["198.51.100.200"]).await;

    // A request for an address on record is refused; the holder keeps it.
    api.apply(service("thief", json!({"loadBalancerIP": "198.51.100.2"})))
        .unwrap();
    wait_one_event(&api, "thief", "AllocationFailed").await;
    assert!(ingress(&api, "thief").is_empty());
    assert_eq!(ingress(&api, "auto"), ["198.51.100.2"]);

    // A restart of the survivor (nobody else running) allocates nothing anew.
    let writes = status_writes(&api);
    survivor.stop().await;
    let again = Daemon::start(&client, "node-c");
    wait("node-c holds the Lease", || {
        let h = holder(&api);
        (h.as_deref() == Some("node-c"))
            .then_some(())
            .ok_or(format!("{h:?}"))
    })
    .await;
    again.wait_passes(2).await;
    assert_eq!(status_writes(&api), writes, "{:#?}", api.requests());
    again.stop().await;
}

#[tokio::test]
async fn custom_resources_are_served_only_while_their_crd_exists() {
    let api = ApiServer::new();
    let addr = api.listen().await.unwrap();
    let client = ApiServer::client(addr).unwrap();
    let pools: kube::Api<l3lb_userspace::core::pool::L3lbPool> = kube::Api::all(client);
    let err = pools.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404),
        "{err}"
    );
    let pool = json!({"apiVersion": "l3lb.io/v1alpha1", "kind": "L3lbPool",
        "metadata": {"name": "p"}, "spec": {"addresses": ["198.51.100.0/24"], "autoAssign": false}});
    assert!(api.apply(pool.clone()).is_err(), "applied without its CRD");

    api.apply_yaml(POOL_CRD).unwrap();
    api.apply(pool).unwrap();
    let listed = pools.list(&Default::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].spec.addresses, ["198.51.100.0/24"]);
    assert!(!listed.items[0].spec.auto_assign);

    // Deleting the CRD deletes its objects and stops serving the type.
    api.delete(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        None,
        "l3lbpools.l3lb.io",
    )
    .unwrap();
    let err = pools.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404),
        "{err}"
    );
    assert!(api.get("l3lb.io/v1alpha1", "L3lbPool", None, "p").is_none());
}

/// The daemon loop and the allocator both wait for the first lists. kube's
/// `Store::wait_until_ready` wakes only the last task that polled it (at 5,000 Services one of two
/// raw waiters never woke); [`watch::Stores`] and [`AllocatorStores`] have one task wait per
/// store and everyone else wait on its flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_waiting_for_the_first_lists_wakes() {
    let api = ApiServer::new();
    api.apply_yaml(POOL_CRD).unwrap();
    for i in 0..5_000 {
        api.apply(service(&format!("svc-{i}"), json!({}))).unwrap();
    }
    let addr = api.listen().await.unwrap();
    let client = ApiServer::client(addr).unwrap();
    let allocate = Arc::new(Notify::new());
    let stores = watch::start(
        client.clone(),
        "node-a",
        Arc::new(Trigger::default()),
        allocate.clone(),
        Metrics::default(),
    );
    let pools = stores.for_allocator();
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let (stores, pools) = (stores.clone(), pools.clone());
            tokio::spawn(async move {
                if i == 0 {
                    pools.wait_until_ready().await
                } else {
                    stores.wait_until_ready().await
                }
            })
        })
        .collect();
    for (i, w) in waiters.into_iter().enumerate() {
        let done = tokio::time::timeout(DEADLINE, w).await;
        assert!(
            matches!(done, Ok(Ok(Ok(())))),
            "waiter {i} never woke: {done:?}"
        );
    }
    assert_eq!(stores.services.len(), 5_000);
}

/// A new user's first Service, before any L3lbPool exists: it waits, and its Event says what to
/// create (a pool over the allocator's prefixes); once the pool exists it gets an address.
#[tokio::test]
async fn without_a_pool_every_waiting_service_is_told_what_to_create() {
    let api = ApiServer::new();
    api.apply_yaml(POOL_CRD).unwrap();
    let addr = api.listen().await.unwrap();
    let client = ApiServer::client(addr).unwrap();
    api.apply(service("first", json!({}))).unwrap();
    api.apply(service("asks", json!({"loadBalancerIP": "198.51.100.7"})))
        .unwrap();
    let daemon = Daemon::start(&client, "node-a");
    for name in ["first", "asks"] {
        wait_one_event(&api, name, "AllocationFailed").await;
        let note = events(&api, name, "AllocationFailed")[0]["note"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            note.contains("no L3lbPool exists; create one, e.g. kubectl apply")
                && note.contains("spec: {addresses: [198.51.100.0/24]}"),
            "{name}: {note}"
        );
    }
    assert!(ingress(&api, "first").is_empty());
    api.apply(json!({"apiVersion": "l3lb.io/v1alpha1", "kind": "L3lbPool",
        "metadata": {"name": "default"}, "spec": {"addresses": ["198.51.100.0/24"]}}))
        .unwrap();
    wait_ingress(&api, "asks", &["198.51.100.7"]).await;
    wait_ingress(&api, "first", &["198.51.100.1"]).await;
    // The pool's status says how full it is and who holds it (`kubectl get l3lbpools`).
    wait("the pool's status", || {
        let pool = api
            .get("l3lb.io/v1alpha1", "L3lbPool", None, "default")
            .ok_or("no pool")?;
        let want = json!({"total": 254, "used": 2, "free": 252, "serviceCount": 2,
                          "services": ["default/asks", "default/first"]});
        (pool["status"] == want)
            .then_some(())
            .ok_or(format!("{}", pool["status"]))
    })
    .await;
    daemon.stop().await;
}

/// L2 mode: a Service asking for several addresses gets them all from the L2 pool, listed in
/// its status (the annotation survives the store's trimming); a bad count is refused with an
/// Event, as the other annotations are.
#[tokio::test]
async fn an_l2_address_count_gets_every_address_from_the_l2_pool() {
    let api = ApiServer::new();
    let addr = api.listen().await.unwrap();
    let client = ApiServer::client(addr).unwrap();
    api.apply_yaml(POOL_CRD).unwrap();
    api.apply(json!({"apiVersion": "l3lb.io/v1alpha1", "kind": "L3lbPool",
        "metadata": {"name": "a-bgp"}, "spec": {"addresses": ["198.51.100.0/25"]}}))
        .unwrap();
    api.apply(json!({"apiVersion": "l3lb.io/v1alpha1", "kind": "L3lbPool",
        "metadata": {"name": "b-lan"},
        "spec": {"addresses": ["198.51.100.128/25"], "advertisement": "l2"}}))
        .unwrap();
    let mut three = service("three", json!({}));
    three["metadata"]["annotations"] = json!({"l3lb.io/l2-address-count": "3"});
    api.apply(three).unwrap();
    let mut bad = service("bad", json!({}));
    bad["metadata"]["annotations"] = json!({"l3lb.io/l2-address-count": "40"});
    api.apply(bad).unwrap();
    api.apply(service("plain", json!({}))).unwrap();

    let daemon = Daemon::start(&client, "node-a");
    wait_ingress(
        &api,
        "three",
        &["198.51.100.129", "198.51.100.130", "198.51.100.131"],
    )
    .await;
    wait_ingress(&api, "plain", &["198.51.100.1"]).await;
    wait_one_event(&api, "bad", "AllocationFailed").await;
    let note = events(&api, "bad", "AllocationFailed")[0]["note"].clone();
    assert!(note.as_str().unwrap().contains("from 1 to 16"), "{note}");
    assert!(ingress(&api, "bad").is_empty());
    daemon.stop().await;
}
