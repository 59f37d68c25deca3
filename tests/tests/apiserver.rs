//! Kube-client tier: a real `kube::Client` (built from the kubeconfig the test API server writes)
//! and kube-runtime's watcher, reflector and event Recorder against the in-process API server.
use std::{
    fmt::Debug,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{Stream, StreamExt};
use k8s_openapi::api::{
    core::v1::{ObjectReference, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::{ApiResource, DynamicObject},
    runtime::{
        events::{Event as RecorderEvent, EventType, Recorder, Reporter},
        reflector, watcher,
    },
};
use l3lb_tests::apiserver::ApiServer;
use serde_json::{Value, json};
use tokio::{task::JoinHandle, time::Instant};

const DEADLINE: Duration = Duration::from_secs(10);

/// A served ApiServer and a kube Client built from the kubeconfig it wrote.
struct Fixture {
    server: ApiServer,
    client: Client,
    kubeconfig: PathBuf,
    addr: std::net::SocketAddr,
}

impl Fixture {
    async fn new() -> Self {
        let server = ApiServer::new();
        let addr = server.listen().await.expect("serving the test API server");
        let kubeconfig = std::env::temp_dir().join(format!(
            "l3lb-apiserver-{}-{}.kubeconfig",
            std::process::id(),
            addr.port()
        ));
        ApiServer::write_kubeconfig(addr, &kubeconfig).expect("writing the kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig).expect("reading the written kubeconfig"),
            &KubeConfigOptions::default(),
        )
        .await
        .expect("a kube Config from the written kubeconfig");
        let client = Client::try_from(config).expect("a kube Client over plain http");
        Self {
            server,
            client,
            kubeconfig,
            addr,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

/// Polls `probe` until it returns `Ok` or [`DEADLINE`] passes; then fails with what was seen.
async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(seen) if Instant::now() >= deadline => {
                panic!("timed out after {DEADLINE:?} waiting for {what}\n  last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The next item of `stream` that `pick` accepts, within [`DEADLINE`]; fails listing what passed by.
async fn next_matching<S, I, T>(
    what: &str,
    stream: &mut S,
    mut pick: impl FnMut(&I) -> Option<T>,
) -> T
where
    S: Stream<Item = I> + Unpin,
    I: Debug,
{
    let mut seen = Vec::new();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(item) = stream.next().await {
            if let Some(v) = pick(&item) {
                return Some(v);
            }
            seen.push(format!("{item:?}"));
        }
        None
    })
    .await;
    match found {
        Ok(Some(v)) => v,
        Ok(None) => panic!("stream ended before {what}; seen: {seen:#?}"),
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}; seen: {seen:#?}"),
    }
}

/// Drives a watcher stream in the background, logging each event as a short line.
struct WatchLog {
    log: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl WatchLog {
    fn start<K, S>(stream: S) -> Self
    where
        K: ResourceExt + Send + 'static,
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let line = match item {
                    Ok(watcher::Event::Init) => "Init".to_string(),
                    Ok(watcher::Event::InitApply(o)) => format!("InitApply {}", o.name_any()),
                    Ok(watcher::Event::InitDone) => "InitDone".to_string(),
                    Ok(watcher::Event::Apply(o)) => {
                        format!("Apply {} {:?}", o.name_any(), o.labels())
                    }
                    Ok(watcher::Event::Delete(o)) => format!("Delete {}", o.name_any()),
                    Err(e) => format!("Error {e}"),
                };
                sink.lock().unwrap().push(line);
            }
        });
        Self { log, task }
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.lines().iter().filter(|l| pred(l)).count()
    }

    /// Waits until some line (after the first `skip`) satisfies `pred`.
    async fn wait_line(&self, what: &str, skip: usize, pred: impl Fn(&str) -> bool) {
        wait_for(what, async || {
            let lines = self.lines();
            match lines.iter().skip(skip).any(|l| pred(l)) {
                true => Ok(()),
                false => Err(format!("{lines:#?}")),
            }
        })
        .await;
    }
}

impl Drop for WatchLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn service(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
    })
}

fn slice(name: &str, service: &str) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.1"], "conditions": {"ready": true}}],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    })
}

fn names<K: ResourceExt>(items: impl IntoIterator<Item = K>) -> Vec<String> {
    let mut names: Vec<String> = items.into_iter().map(|o| o.name_any()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn initial_list_and_pagination_see_seeded_objects() {
    let fx = Fixture::new().await;
    fx.server
        .apply_yaml(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {type: LoadBalancer}\n\
             ---\napiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: prod}\nspec: {type: ClusterIP}\n\
             ---\napiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n",
        )
        .unwrap();

    let services: Api<Service> = Api::all(fx.client.clone());
    let (store, writer) = reflector::store();
    let log = WatchLog::start(reflector(
        writer,
        watcher(services.clone(), watcher::Config::default()),
    ));
    wait_for(
        "the reflector to hold both seeded services",
        async || match names(store.state().iter().map(|s| (**s).clone())) {
            n if n == ["db", "web"] => Ok(()),
            n => Err(format!("store {n:?}, watcher {:?}", log.lines())),
        },
    )
    .await;

    let web = services.get_metadata("web").await;
    assert!(
        web.is_err(),
        "an all-namespaces Api cannot get a namespaced object by name"
    );
    let web = Api::<Service>::default_namespaced(fx.client.clone())
        .get("web")
        .await
        .unwrap();
    let meta = &web.metadata;
    assert!(
        meta.uid.is_some() && meta.creation_timestamp.is_some(),
        "uid and creationTimestamp filled: {meta:?}"
    );
    let rv: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
    assert!(
        rv >= 1 && rv <= fx.server.resource_version(),
        "object rv {rv} within the global counter"
    );

    // Pagination: one item per page, following continue tokens.
    let mut pages = Vec::new();
    let mut lp = ListParams::default().limit(1);
    loop {
        let page = services.list(&lp).await.unwrap();
        pages.push(names(page.items));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp = lp.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(
        pages,
        [vec!["web".to_string()], vec!["db".to_string()]],
        "pages of one, default/ before prod/"
    );

    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(fx.client.clone());
    assert_eq!(
        names(nodes.list(&ListParams::default()).await.unwrap().items),
        ["node-a"]
    );
}

#[tokio::test]
async fn apply_modify_delete_arrive_as_watch_events() {
    let fx = Fixture::new().await;
    fx.server.apply(service("old", json!({}))).unwrap();
    let services: Api<Service> = Api::default_namespaced(fx.client.clone());
    let log = WatchLog::start(watcher(services, watcher::Config::default()));
    log.wait_line("the initial list to finish", 0, |l| l == "InitDone")
        .await;
    assert_eq!(log.lines(), ["Init", "InitApply old", "InitDone"]);

    fx.server.apply(service("web", json!({"v": "1"}))).unwrap();
    log.wait_line("web added", 0, |l| {
        l.starts_with("Apply web") && l.contains("\"1\"")
    })
    .await;
    fx.server.apply(service("web", json!({"v": "2"}))).unwrap();
    log.wait_line("web modified", 0, |l| {
        l.starts_with("Apply web") && l.contains("\"2\"")
    })
    .await;
    fx.server
        .delete("v1", "Service", Some("default"), "old")
        .unwrap();
    log.wait_line("old deleted", 0, |l| l == "Delete old").await;

    // Re-applying an identical object is a no-op: no new resourceVersion, no event.
    let rv = fx.server.resource_version();
    fx.server.apply(service("web", json!({"v": "2"}))).unwrap();
    assert_eq!(
        fx.server.resource_version(),
        rv,
        "an unchanged apply must not bump the resourceVersion"
    );
    assert_eq!(
        log.count(|l| l.starts_with("Error")),
        0,
        "no watch errors: {:?}",
        log.lines()
    );
}

#[tokio::test]
async fn bookmarks_streaming_lists_and_watch_timeouts() {
    let fx = Fixture::new().await;
    fx.server.apply(service("web", json!({}))).unwrap();
    let services: Api<Service> = Api::default_namespaced(fx.client.clone());

    // A raw watch from "0": the existing object as ADDED, then periodic BOOKMARKs at the current rv.
    let mut stream = services
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let added = next_matching("ADDED web", &mut stream, |e| match e {
        Ok(WatchEvent::Added(s)) => Some(s.name_any()),
        _ => None,
    })
    .await;
    assert_eq!(added, "web");
    let bookmark_rv = next_matching("a BOOKMARK", &mut stream, |e| match e {
        Ok(WatchEvent::Bookmark(b)) => Some(b.metadata.resource_version.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        bookmark_rv,
        fx.server.resource_version().to_string(),
        "bookmark carries the current rv"
    );

    // Streaming lists: the watcher only reports InitDone after the initial-events-end bookmark.
    let log = WatchLog::start(watcher(
        services.clone(),
        watcher::Config::default().streaming_lists(),
    ));
    log.wait_line("InitDone from a streaming list", 0, |l| l == "InitDone")
        .await;
    assert_eq!(log.lines(), ["Init", "InitApply web", "InitDone"]);
    let lists_before = fx
        .server
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET") && !r.contains("watch"))
        .count();
    fx.server.apply(service("api", json!({}))).unwrap();
    log.wait_line("api applied via the streaming watch", 0, |l| {
        l.starts_with("Apply api")
    })
    .await;
    let lists_after = fx
        .server
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET") && !r.contains("watch"))
        .count();
    assert_eq!(
        lists_before, lists_after,
        "a streaming-list watcher never lists"
    );

    // timeoutSeconds ends the stream (bookmarks disabled: nothing but the initial ADDED arrives).
    let started = Instant::now();
    let mut short = services
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    let items: Vec<_> = tokio::time::timeout(DEADLINE, (&mut short).collect::<Vec<_>>())
        .await
        .expect("a watch with timeoutSeconds=1 must end");
    assert_eq!(items.len(), 2, "ADDED web and api only: {items:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "ended early: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn compaction_forces_a_relist_that_converges() {
    let fx = Fixture::new().await;
    fx.server.apply(service("keep", json!({}))).unwrap();
    fx.server.apply(service("gone", json!({}))).unwrap();
    let services: Api<Service> = Api::default_namespaced(fx.client.clone());
    let (store, writer) = reflector::store();
    let log = WatchLog::start(reflector(
        writer,
        watcher(services, watcher::Config::default()),
    ));
    log.wait_line("the initial list to finish", 0, |l| l == "InitDone")
        .await;
    let before = log.lines().len();
    assert_eq!(fx.server.gone_served(), 0);

    fx.server.compact();
    fx.server.apply(service("new", json!({}))).unwrap();
    fx.server
        .delete("v1", "Service", Some("default"), "gone")
        .unwrap();

    wait_for(
        "the reflector to converge on keep+new after compaction",
        async || match names(store.state().iter().map(|s| (**s).clone())) {
            n if n == ["keep", "new"] => Ok(()),
            n => Err(format!("store {n:?}, watcher {:#?}", log.lines())),
        },
    )
    .await;
    assert!(
        fx.server.gone_served() >= 1,
        "the server must have answered a watch with 410 Gone"
    );
    log.wait_line("a relist (Init) after the 410", before, |l| l == "Init")
        .await;
    let errors: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("Error"))
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("410") || e.contains("xpired")),
        "the watcher saw the 410 Expired error: {errors:?}"
    );
}

#[tokio::test]
async fn label_selectors_filter_endpointslices() {
    let fx = Fixture::new().await;
    for (name, svc) in [("web-1", "web"), ("web-2", "web"), ("db-1", "db")] {
        fx.server.apply(slice(name, svc)).unwrap();
    }
    let slices: Api<EndpointSlice> = Api::default_namespaced(fx.client.clone());
    let web = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap();
    assert_eq!(names(web.items), ["web-1", "web-2"]);
    let not_web = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name!=web"))
        .await
        .unwrap();
    assert_eq!(names(not_web.items), ["db-1"]);
    let by_name = slices
        .list(&ListParams::default().fields("metadata.name=db-1"))
        .await
        .unwrap();
    assert_eq!(names(by_name.items), ["db-1"]);

    // A selected watch sees a slice leave the selection as a deletion, and one joining as an add.
    let cfg = watcher::Config::default().labels("kubernetes.io/service-name=web");
    let log = WatchLog::start(watcher(slices, cfg));
    log.wait_line("the initial list", 0, |l| l == "InitDone")
        .await;
    assert_eq!(
        log.lines(),
        ["Init", "InitApply web-1", "InitApply web-2", "InitDone"]
    );
    fx.server.apply(slice("web-2", "db")).unwrap();
    fx.server.apply(slice("db-1", "web")).unwrap();
    log.wait_line("web-2 leaving", 0, |l| l == "Delete web-2")
        .await;
    log.wait_line("db-1 joining", 0, |l| l.starts_with("Apply db-1"))
        .await;
}

#[tokio::test]
async fn status_writes_are_visible_and_kept_apart_from_spec_writes() {
    let fx = Fixture::new().await;
    fx.server.apply(service("web", json!({}))).unwrap();
    let services: Api<Service> = Api::default_namespaced(fx.client.clone());
    let ingress = |s: &Service| {
        let lb = s.status.as_ref().and_then(|st| st.load_balancer.as_ref());
        lb.and_then(|lb| lb.ingress.as_ref())
            .map(|i| i.iter().filter_map(|i| i.ip.clone()).collect::<Vec<_>>())
    };

    let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}});
    services
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(
        ingress(&services.get("web").await.unwrap()),
        Some(vec!["192.0.2.10".to_string()])
    );
    let stored = fx
        .server
        .get("v1", "Service", Some("default"), "web")
        .unwrap();
    assert_eq!(
        stored["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.10"
    );

    // Server-side-apply style and strategic patches to /status are accepted too.
    let ssa = PatchParams::apply("l3lb").force();
    let applied = json!({"apiVersion": "v1", "kind": "Service", "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.11"}]}}});
    services
        .patch_status("web", &ssa, &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(
        ingress(&services.get("web").await.unwrap()),
        Some(vec!["192.0.2.11".to_string()])
    );
    let strategic = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.12"}]}}});
    services
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(&strategic),
        )
        .await
        .unwrap();

    // A spec write through the main resource keeps the status; a status write ignores the spec.
    let mut svc = services.get("web").await.unwrap();
    svc.spec.as_mut().unwrap().load_balancer_ip = Some("192.0.2.99".into());
    svc.status = None;
    let replaced = services
        .replace("web", &PostParams::default(), &svc)
        .await
        .unwrap();
    assert_eq!(
        ingress(&replaced),
        Some(vec!["192.0.2.12".to_string()]),
        "main-resource PUT kept the status"
    );
    assert_eq!(
        replaced.metadata.generation,
        Some(2),
        "a spec change bumps generation"
    );
    let mut stale = svc.clone();
    stale.spec.as_mut().unwrap().load_balancer_ip = Some("192.0.2.98".into());
    let err = services
        .replace("web", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409),
        "stale resourceVersion must conflict: {err:?}"
    );

    let mut with_status = services.get("web").await.unwrap();
    with_status.spec.as_mut().unwrap().load_balancer_ip = Some("ignored".into());
    with_status
        .status
        .as_mut()
        .unwrap()
        .load_balancer
        .as_mut()
        .unwrap()
        .ingress = None;
    let put = services
        .replace_status("web", &PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(ingress(&put), None, "PUT /status replaced the status");
    assert_eq!(
        put.spec.unwrap().load_balancer_ip.as_deref(),
        Some("192.0.2.99"),
        "PUT /status kept the spec"
    );

    let missing = services
        .patch_status("nope", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, kube::Error::Api(s) if s.code == 404),
        "patching a missing service: {missing:?}"
    );
}

#[tokio::test]
async fn recorder_events_are_stored_for_inspection() {
    let fx = Fixture::new().await;
    fx.server.apply(service("web", json!({}))).unwrap();
    let reporter = Reporter {
        controller: "l3lb".into(),
        instance: Some("node-a".into()),
    };
    let recorder = Recorder::new(fx.client.clone(), reporter);
    let svc = fx
        .server
        .get("v1", "Service", Some("default"), "web")
        .unwrap();
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        name: Some("web".into()),
        namespace: Some("default".into()),
        uid: svc["metadata"]["uid"].as_str().map(String::from),
        ..Default::default()
    };
    let event = RecorderEvent {
        type_: EventType::Warning,
        reason: "Refused".into(),
        note: Some("address outside the prefix".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.unwrap();
    let events = fx.server.events();
    assert_eq!(events.len(), 1, "one event stored: {events:#?}");
    let stored = &events[0];
    assert_eq!(stored["apiVersion"], "events.k8s.io/v1");
    assert_eq!(stored["reason"], "Refused");
    assert_eq!(stored["type"], "Warning");
    assert_eq!(stored["regarding"]["name"], "web");
    assert_eq!(stored["reportingController"], "l3lb");

    // The same event again is a series: the Recorder patches the stored event.
    recorder.publish(&event, &reference).await.unwrap();
    let events = fx.server.events();
    assert_eq!(
        events.len(),
        1,
        "a repeat patches, not creates: {events:#?}"
    );
    assert_eq!(
        events[0]["series"]["count"], 2,
        "series count after a repeat: {:#?}",
        events[0]
    );

    // Core v1 Events are recorded as well.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(fx.client.clone());
    let ev: k8s_openapi::api::core::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "web.core"}, "involvedObject": {"kind": "Service", "name": "web"},
        "reason": "Announced", "type": "Normal",
    }))
    .unwrap();
    core.create(&PostParams::default(), &ev).await.unwrap();
    let events = fx.server.events();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (
            events[1]["apiVersion"].as_str(),
            events[1]["reason"].as_str()
        ),
        (Some("v1"), Some("Announced"))
    );
}

#[tokio::test]
async fn unknown_paths_and_missing_objects_get_status_404() {
    let fx = Fixture::new().await;
    let widgets = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let api: Api<DynamicObject> = Api::all_with(fx.client.clone(), &widgets);
    let err = api.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"),
        "unknown type: {err:?}"
    );

    let services: Api<Service> = Api::default_namespaced(fx.client.clone());
    let err = services.get("nope").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"),
        "missing object: {err:?}"
    );
    assert!(services.get_opt("nope").await.unwrap().is_none());

    // Create conflicts with an existing name; leases support create/replace with generateName.
    let svc: Service = serde_json::from_value(service("web", json!({}))).unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let err = services
        .create(&PostParams::default(), &svc)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err:?}"
    );

    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::default_namespaced(fx.client.clone());
    let lease = serde_json::from_value(
        json!({"metadata": {"name": "l3lb"}, "spec": {"holderIdentity": "node-a"}}),
    )
    .unwrap();
    let mut lease = leases.create(&PostParams::default(), &lease).await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("node-b".into());
    let lease = leases
        .replace("l3lb", &PostParams::default(), &lease)
        .await
        .unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("node-b")
    );
    let patched = leases
        .patch(
            "l3lb",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"leaseDurationSeconds": 15}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().lease_duration_seconds, Some(15));
    let all: Vec<_> = leases.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(names(all), ["l3lb"]);
}

/// A client authenticating with `token`, built from a kubeconfig as the daemons' are (context
/// namespace `namespace`).
async fn client_with_token(fx: &Fixture, token: &str, namespace: &str) -> Client {
    let path = std::env::temp_dir().join(format!(
        "l3lb-apiserver-{}-{}-{token}.kubeconfig",
        std::process::id(),
        fx.addr.port()
    ));
    ApiServer::write_kubeconfig_as(fx.addr, &path, namespace, Some(token))
        .expect("writing the kubeconfig");
    let kubeconfig = Kubeconfig::read_from(&path).expect("reading the written kubeconfig");
    let _ = std::fs::remove_file(&path);
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a kube Config from the written kubeconfig");
    Client::try_from(config).expect("a kube Client")
}

/// The HTTP status a call ended with: 200 for success, the API error's code otherwise.
fn code<T>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(kube::Error::Api(status)) => status.code,
        Err(other) => panic!("not an API answer: {other}"),
    }
}

/// What l3lb's identities ask of the API, each as one call (the status code it got).
async fn l3lb_calls(client: &Client) -> Vec<(&'static str, u16)> {
    use k8s_openapi::api::{coordination::v1::Lease, core::v1::Node, events::v1::Event};
    let services: Api<Service> = Api::all(client.clone());
    let web: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let pools: Api<l3lb_userspace::core::pool::L3lbPool> = Api::all(client.clone());
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "l3lb-system");
    let other_leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let node_leases: Api<Lease> = Api::namespaced(client.clone(), "l3lb-l2");
    let status =
        Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}}}));
    let lease = |name: &str| {
        serde_json::from_value::<Lease>(json!({"metadata": {"name": name}, "spec": {}})).unwrap()
    };
    let event = serde_json::from_value::<Event>(json!({
        "metadata": {"generateName": "web."}, "eventTime": "2025-01-01T00:00:00.000000Z",
        "reason": "Test", "action": "Test", "type": "Normal", "reportingController": "l3lb",
        "reportingInstance": "test", "regarding": {"kind": "Service", "namespace": "default", "name": "web"},
    }))
    .unwrap();
    let pp = PostParams::default();
    let own_node = ListParams::default().fields("metadata.name=node1");
    vec![
        (
            "list services",
            code(services.list(&ListParams::default()).await),
        ),
        (
            "watch services",
            code(
                services
                    .watch(&WatchParams::default().timeout(1), "0")
                    .await,
            ),
        ),
        (
            "list endpointslices",
            code(slices.list(&ListParams::default()).await),
        ),
        ("list own node", code(nodes.list(&own_node).await)),
        (
            "list l3lbpools",
            code(pools.list(&ListParams::default()).await),
        ),
        ("create event", code(events.create(&pp, &event).await)),
        (
            "patch service status",
            code(
                web.patch_status("web", &PatchParams::default(), &status)
                    .await,
            ),
        ),
        (
            "patch service",
            code(
                web.patch(
                    "web",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
                )
                .await,
            ),
        ),
        (
            "create lease",
            code(leases.create(&pp, &lease("l3lb-allocator")).await),
        ),
        ("get lease", code(leases.get("l3lb-allocator").await)),
        (
            "update lease",
            code(
                leases
                    .replace("l3lb-allocator", &pp, &lease("l3lb-allocator"))
                    .await,
            ),
        ),
        ("get another lease", code(leases.get("other").await)),
        (
            "create node lease",
            code(node_leases.create(&pp, &lease("l3lb-node-node1")).await),
        ),
        (
            "update node lease",
            code(
                node_leases
                    .replace("l3lb-node-node1", &pp, &lease("l3lb-node-node1"))
                    .await,
            ),
        ),
        (
            "list node leases",
            code(node_leases.list(&ListParams::default()).await),
        ),
        (
            "create lease elsewhere",
            code(other_leases.create(&pp, &lease("l3lb-allocator")).await),
        ),
        (
            "delete service",
            code(web.delete("web", &Default::default()).await),
        ),
    ]
}

/// The rules of deploy/base/rbac.yaml (and deploy/systemd/rbac.yaml), applied to the API server as
/// shipped: each identity may do what its process calls and nothing else.
#[tokio::test]
async fn service_account_tokens_are_held_to_the_shipped_rbac() {
    let fx = Fixture::new().await;
    for manifest in [
        include_str!("../../deploy/base/namespace.yaml"),
        include_str!("../../deploy/base/crd.yaml"),
        include_str!("../../deploy/base/rbac.yaml"),
        include_str!("../../deploy/systemd/rbac.yaml"),
    ] {
        fx.server.apply_yaml(manifest).unwrap();
    }
    let (node, allocator, host) = (
        fx.server.token_for("l3lb-system", "l3lb-node"),
        fx.server.token_for("l3lb-system", "l3lb-allocator"),
        fx.server.token_for("l3lb-system", "l3lb-host"),
    );
    // Each call succeeds where allowed (update after create: the Lease exists by then).
    let allowed_node = [
        "list services",
        "watch services",
        "list endpointslices",
        "list own node",
        "list l3lbpools",
        "create event",
        "create node lease",
        "update node lease",
        "list node leases",
    ];
    let allowed_allocator = [
        "list services",
        "watch services",
        "list l3lbpools",
        "create event",
        "patch service status",
        "create lease",
        "get lease",
        "update lease",
    ];
    for (token, allowed) in [
        (&node, allowed_node.to_vec()),
        (&allocator, allowed_allocator.to_vec()),
        // Systemd hosts: both, one process.
        (
            &host,
            [allowed_node.to_vec(), allowed_allocator.to_vec()].concat(),
        ),
    ] {
        fx.server.apply(service("web", json!({}))).unwrap();
        for (ns, name) in [
            ("l3lb-system", "l3lb-allocator"),
            ("l3lb-l2", "l3lb-node-node1"),
        ] {
            let _ = fx
                .server
                .delete("coordination.k8s.io/v1", "Lease", Some(ns), name);
        }
        let client = client_with_token(&fx, token, "l3lb-system").await;
        for (call, got) in l3lb_calls(&client).await {
            let want = if allowed.contains(&call) { 200 } else { 403 };
            assert_eq!(got, want, "{token}: {call}");
        }
    }
    // A 403 is a Status saying who may not do what, as the real server words it.
    let client = client_with_token(&fx, &node, "l3lb-system").await;
    let web: Api<Service> = Api::namespaced(client, "default");
    let patch =
        Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.9"}]}}}));
    match web
        .patch_status("web", &PatchParams::default(), &patch)
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"), "{s:?}");
            assert_eq!(
                s.message,
                "services \"web\" is forbidden: User \"system:serviceaccount:l3lb-system:l3lb-node\" \
                 cannot patch resource \"services/status\" in API group \"\" in the namespace \"default\""
            );
        }
        other => panic!("the node's status write was not refused: {other:?}"),
    }
    assert_eq!(fx.server.ingress_ips("default", "web"), ["198.51.100.1"]);
    let audit = fx.server.audit();
    assert!(
        audit.iter().any(|a| a.code == 403
            && a.user.as_deref() == Some("system:serviceaccount:l3lb-system:l3lb-node")
            && a.request
                .starts_with("PATCH /api/v1/namespaces/default/services/web/status")),
        "{audit:#?}"
    );
}

#[tokio::test]
async fn unknown_tokens_get_401_and_requests_without_one_may_do_anything() {
    let fx = Fixture::new().await;
    fx.server.apply(service("web", json!({}))).unwrap();
    fx.server
        .apply_yaml(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: reader, namespace: default}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: node1}\n\
             rules: [{apiGroups: [''], resources: [nodes], resourceNames: [node1], verbs: [list, watch]}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: reader}\n\
             roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node1}\n\
             subjects: [{kind: ServiceAccount, name: reader, namespace: default}]\n",
        )
        .unwrap();
    let services = |c: &Client| Api::<Service>::all(c.clone());

    let stranger = client_with_token(&fx, "not-a-token", "default").await;
    match services(&stranger).list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized"), "{s:?}")
        }
        other => panic!("an unknown token was let in: {other:?}"),
    }

    // A list or watch naming one object (field selector on metadata.name) is authorized as a
    // request for that object: `resourceNames` rules allow exactly it.
    let token = fx.server.token_for("default", "reader");
    let n = client_with_token(&fx, &token, "default").await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(n.clone());
    let by_name = |name: &str| ListParams::default().fields(&format!("metadata.name={name}"));
    assert_eq!(code(nodes.list(&by_name("node1")).await), 200);
    assert_eq!(
        code(
            nodes
                .watch(
                    &WatchParams::default()
                        .fields("metadata.name=node1")
                        .timeout(1),
                    "0"
                )
                .await
        ),
        200
    );
    assert_eq!(code(nodes.list(&by_name("node2")).await), 403);
    assert_eq!(code(nodes.list(&ListParams::default()).await), 403);
    assert_eq!(code(services(&n).list(&ListParams::default()).await), 403);
    // Discovery is open to every authenticated user (system:discovery).
    assert!(n.list_api_groups().await.is_ok());

    // A token outlives nothing: its ServiceAccount deleted, it is refused.
    fx.server
        .delete("v1", "ServiceAccount", Some("default"), "reader")
        .unwrap();
    assert_eq!(code(nodes.list(&by_name("node1")).await), 401);

    // No credentials: anything goes (the harness and the tests that predate RBAC).
    let web: Api<Service> = Api::namespaced(fx.client.clone(), "default");
    web.delete("web", &Default::default()).await.unwrap();
    let audit = fx.server.audit();
    assert!(
        audit.iter().all(|a| !a.request.starts_with("DELETE")),
        "{audit:#?}"
    );
    assert_eq!(
        audit.iter().filter(|a| a.code == 401).count(),
        2,
        "{audit:#?}"
    );
}
