//! An in-process Kubernetes API server for tests and the demo.
//!
//! It speaks the real list/watch protocol over plain HTTP (no TLS), so the daemon's kube-rs
//! client runs unchanged against it: lists with `limit`/`continue`, watches from a
//! resourceVersion with BOOKMARKs and 410 Gone after [`ApiServer::compact`], label and field
//! selectors, create/replace/patch (merge, JSON, strategic and apply approximated as merge) and
//! the `/status` subresource. Events posted by clients are kept for [`ApiServer::events`].
//! Clients given a ServiceAccount token ([`ApiServer::token_for`]) are held to the RBAC objects
//! applied to it ([`auth`], [`rbac`]); clients without credentials may do anything. Clients'
//! writes are validated ([`validate`]: names, workloads' selectors, and with
//! `fieldValidation=Strict` unknown fields); `dryRun=All` validates and answers as if applied,
//! and stores nothing. Enough of OpenAPI v3 is served ([`openapi`]) for
//! `kubectl apply --server-side --dry-run=server` to leave field validation to the server.
//!
//! Not modelled: client certificates, admission (a namespace need not exist), defaulting
//! (clusterIP allocation etc.), finalizers (DELETE removes at once), deletecollection,
//! managedFields and apply's field ownership, schemas of custom resources.
mod auth;
mod discovery;
mod http;
mod meta;
mod openapi;
mod outage;
mod patch;
pub mod rbac;
mod request;
mod resources;
mod selector;
mod status;
mod store;
#[cfg(test)]
mod store_tests;
mod validate;
mod watch;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
};

use anyhow::{Context, anyhow};
use serde_json::Value;

use resources::{RESOURCES, ResourceType};
use store::{Key, Store};

/// A self-signed CA certificate whose key was never kept: the CA the kubeconfigs name.
pub const TEST_CA: &str = include_str!("test-ca.pem");

/// State shared by the handle and the HTTP handlers.
struct Shared {
    store: Mutex<Store>,
    /// Carries the store's resourceVersion after every write; watches wait on it.
    changed: tokio::sync::watch::Sender<u64>,
    requests: Mutex<Vec<String>>,
    served: Mutex<Vec<outage::Served>>,
    /// Bearer token -> the ServiceAccount (namespace, name) it was minted for.
    tokens: Mutex<HashMap<String, (String, String)>>,
    audit: Mutex<Vec<Audited>>,
    /// Requests that carried no bearer token (served with full access), as they arrived.
    anonymous: Mutex<Vec<String>>,
}

/// One request that carried a bearer token, and how it was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audited {
    /// The authenticated user; `None`: the token was refused (401).
    pub user: Option<String>,
    /// `METHOD path?query`.
    pub request: String,
    /// The response's status code (a watch's is its first).
    pub code: u16,
}

impl Shared {
    fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.store.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs a write and wakes every watch.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let (out, rv) = {
            let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
            let out = f(&mut store);
            (out, store.rv())
        };
        self.changed.send_replace(rv);
        out
    }

    fn log_request(&self, line: String) {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    /// The ServiceAccount `token` was minted for, if it was.
    fn token_account(&self, token: &str) -> Option<(String, String)> {
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.get(token).cloned()
    }

    fn log_anonymous(&self, line: String) {
        self.anonymous
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    fn log_audit(&self, entry: Audited) {
        self.audit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
    }
}

/// A cheap, cloneable handle to one test API server's state; serve it with [`ApiServer::listen`].
#[derive(Clone)]
pub struct ApiServer {
    shared: Arc<Shared>,
}

impl Default for ApiServer {
    fn default() -> Self {
        Self::new()
    }
}

fn resource(api_version: &str, kind: &str) -> anyhow::Result<(usize, &'static ResourceType)> {
    let res = resources::by_kind(api_version, kind)
        .ok_or_else(|| anyhow!("the test API server does not serve {api_version} {kind}"))?;
    Ok((res, &RESOURCES[res]))
}

impl ApiServer {
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                store: Mutex::new(Store::default()),
                changed: tokio::sync::watch::channel(0).0,
                requests: Mutex::new(Vec::new()),
                served: Mutex::new(Vec::new()),
                tokens: Mutex::new(HashMap::new()),
                audit: Mutex::new(Vec::new()),
                anonymous: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Serve on 127.0.0.1:0 in the current network namespace; returns the bound address.
    /// Needs a tokio runtime; the server runs until that runtime shuts down (or [`Self::stop`]).
    pub async fn listen(&self) -> anyhow::Result<SocketAddr> {
        let listener = outage::bind(None, SocketAddr::from(([127, 0, 0, 1], 0)))?;
        self.serve(tokio::net::TcpListener::from_std(listener)?, None)
    }

    /// Serve on 127.0.0.1:0 inside network namespace `ns` (the listening socket is created
    /// there; the server runs on the current runtime). Daemons running in `ns` can use it.
    pub async fn listen_in_netns(&self, ns: &str) -> anyhow::Result<SocketAddr> {
        let name = ns.to_string();
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener =
            tokio::task::spawn_blocking(move || outage::bind(Some(&name), any)).await??;
        self.serve(tokio::net::TcpListener::from_std(listener)?, Some(ns))
    }

    /// A kube client for a server listening at `addr` (plain http, namespace `default`).
    pub fn client(addr: SocketAddr) -> anyhow::Result<kube::Client> {
        let url = format!("http://{addr}").parse()?;
        Ok(kube::Client::try_from(kube::Config::new(url))?)
    }

    /// Writes a kubeconfig (plain http, no credentials, namespace `default`) pointing at `addr`.
    pub fn write_kubeconfig(addr: SocketAddr, path: &Path) -> anyhow::Result<()> {
        Self::write_kubeconfig_as(addr, path, "default", None)
    }

    /// Writes a kubeconfig pointing at `addr` with context namespace `namespace` (a pod's own)
    /// and, if given, a bearer token (see [`ApiServer::token_for`]). It names a CA, as every
    /// real cluster's does ([`TEST_CA`]; nothing is served over TLS): kube-rs then needs no
    /// system trust store, which a `FROM scratch` image does not have.
    pub fn write_kubeconfig_as(
        addr: SocketAddr,
        path: &Path,
        namespace: &str,
        token: Option<&str>,
    ) -> anyhow::Result<()> {
        let user = match token {
            Some(token) => format!("\n    token: {token}"),
            None => " {}".to_owned(),
        };
        let ca = serde_json::to_value(k8s_openapi::ByteString(TEST_CA.as_bytes().to_vec()))?;
        let ca = ca.as_str().context("base64 of the test CA")?.to_owned();
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: l3lb-test\n  cluster:\n    server: http://{addr}\n    \
             certificate-authority-data: {ca}\n\
             users:\n- name: l3lb-test\n  user:{user}\ncontexts:\n- name: l3lb-test\n  context:\n    \
             cluster: l3lb-test\n    user: l3lb-test\n    namespace: {namespace}\ncurrent-context: l3lb-test\n"
        );
        std::fs::write(path, config)
            .with_context(|| format!("writing kubeconfig {}", path.display()))
    }

    /// A bearer token that authenticates as ServiceAccount `namespace/name`
    /// (`system:serviceaccount:<namespace>:<name>`) for as long as that ServiceAccount exists.
    /// Requests with it are authorized by the RBAC objects applied to this server.
    pub fn token_for(&self, namespace: &str, name: &str) -> String {
        let mut tokens = self
            .shared
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let token = format!("l3lb-test.{namespace}.{name}.{}", tokens.len() + 1);
        tokens.insert(token.clone(), (namespace.to_owned(), name.to_owned()));
        token
    }

    /// Every request that carried a bearer token so far, oldest first.
    pub fn audit(&self) -> Vec<Audited> {
        self.shared
            .audit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every request that carried no bearer token so far (full access), oldest first: recorded
    /// when it arrives, so a test can check it while clients keep talking.
    pub fn anonymous(&self) -> Vec<String> {
        self.shared
            .anonymous
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Create-or-replace every object of a (multi-document) YAML manifest; `List` kinds are expanded.
    pub fn apply_yaml(&self, yaml: &str) -> anyhow::Result<()> {
        for obj in crate::manifest::documents(yaml)? {
            self.apply(obj)?;
        }
        Ok(())
    }

    /// Create-or-replace one object (any kind it serves), taken as given (status included).
    /// Namespaced objects without a namespace go to `default`.
    pub fn apply(&self, obj: Value) -> anyhow::Result<()> {
        let str_field = |ptr: &str| {
            obj.pointer(ptr)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (api_version, kind) = (str_field("/apiVersion"), str_field("/kind"));
        if kind.ends_with("List")
            && let Some(items) = obj.get("items").and_then(Value::as_array)
        {
            return items.iter().try_for_each(|item| self.apply(item.clone()));
        }
        let (res, _) = resource(&api_version, &kind)?;
        anyhow::ensure!(
            self.shared.read(|s| s.serves(res)),
            "no matches for kind {kind:?} in version {api_version:?} (apply its CustomResourceDefinition first)"
        );
        let ns = match str_field("/metadata/namespace") {
            ns if ns.is_empty() => "default".to_string(),
            ns => ns,
        };
        let name = str_field("/metadata/name");
        self.shared
            .write(|s| s.upsert(res, &ns, obj))
            .with_context(|| format!("applying {api_version} {kind} {ns}/{name}"))?;
        Ok(())
    }

    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> anyhow::Result<()> {
        let key = Self::key(api_version, kind, namespace, name)?;
        self.shared.write(|s| s.delete(&key))?;
        Ok(())
    }

    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = Self::key(api_version, kind, namespace, name).ok()?;
        self.shared.read(|s| s.get(&key).cloned())
    }

    fn key(
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> anyhow::Result<Key> {
        let (res, rt) = resource(api_version, kind)?;
        let ns = if rt.namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        Ok(Key {
            res,
            ns: ns.to_string(),
            name: name.to_string(),
        })
    }

    /// The IPs in Service `namespace/name`'s `status.loadBalancer.ingress` (none if it is absent).
    pub fn ingress_ips(&self, namespace: &str, name: &str) -> Vec<String> {
        let svc = self
            .get("v1", "Service", Some(namespace), name)
            .unwrap_or_default();
        svc["status"]["loadBalancer"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["ip"].as_str().map(str::to_owned))
            .collect()
    }

    /// `spec.holderIdentity` of Lease `namespace/name`, if it exists and is held.
    pub fn lease_holder(&self, namespace: &str, name: &str) -> Option<String> {
        let lease = self.get("coordination.k8s.io/v1", "Lease", Some(namespace), name)?;
        let holder = lease["spec"]["holderIdentity"].as_str()?;
        (!holder.is_empty()).then(|| holder.to_owned())
    }

    /// Every Event created so far (core v1 and events.k8s.io/v1), oldest first, each in its
    /// latest version (a Recorder patching a series updates its entry).
    pub fn events(&self) -> Vec<Value> {
        self.shared.read(Store::events)
    }

    /// Drop watch history so older resourceVersions get 410 Gone (and end open watches so
    /// clients come back).
    pub fn compact(&self) {
        self.shared.write(Store::compact);
    }

    /// How many watches were answered with 410 Gone.
    pub fn gone_served(&self) -> usize {
        self.shared.read(Store::gone_served)
    }

    /// Every request served so far, as `METHOD path?query`, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current (newest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.read(Store::rv)
    }
}
