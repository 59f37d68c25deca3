//! The object store: current objects, a global resourceVersion counter and the change history
//! that watches replay. Plain data; locking and notification live in [`super::Shared`].
use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};

use super::meta::{self, WriteMode, ensure_metadata, meta_str, now_rfc3339};
use super::resources::{CRD_KIND, RESOURCES, by_kind};
use super::selector::Selector;
use super::status::ApiError;

/// Changes kept for watches; older resourceVersions get 410 Gone.
const HISTORY_LIMIT: usize = 50_000;

/// Identifies one object: type (index into [`RESOURCES`]), namespace ("" if cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub res: usize,
    pub ns: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One committed change. For deletions `new` is the deleted object stamped with the deletion's rv.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub key: Key,
    pub kind: ChangeType,
    pub old: Option<Value>,
    pub new: Value,
}

/// Which objects a list or watch sees.
#[derive(Debug, Clone)]
pub struct Filter {
    pub res: usize,
    pub ns: Option<String>,
    pub labels: Selector,
    pub fields: Selector,
}

impl Filter {
    pub fn matches(&self, key: &Key, obj: &Value) -> bool {
        key.res == self.res
            && self.ns.as_ref().is_none_or(|ns| *ns == key.ns)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }
}

#[derive(Debug)]
pub struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    /// Every change with `rv > oldest_rv`, oldest first.
    history: VecDeque<Change>,
    oldest_rv: u64,
    epoch: u64,
    events: Vec<(Key, Value)>,
    uid_seq: u64,
    gone_served: usize,
}

impl Default for Store {
    /// An empty store at resourceVersion 1: "0" means "any version" to clients, so a list never
    /// hands it out.
    fn default() -> Self {
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            oldest_rv: 0,
            epoch: 0,
            events: Vec::new(),
            uid_seq: 0,
            gone_served: 0,
        }
    }
}

impl Store {
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Bumped by [`Store::compact`]; open watches end when it changes.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Whether type `res` is served: built-in types always, custom ones while a
    /// CustomResourceDefinition naming their group, version (served), plural, kind and scope is
    /// stored.
    pub fn serves(&self, res: usize) -> bool {
        let rt = &RESOURCES[res];
        if !rt.custom {
            return true;
        }
        let Some(crd_res) = by_kind(CRD_KIND.0, CRD_KIND.1) else {
            return false;
        };
        let key = Key {
            res: crd_res,
            ns: String::new(),
            name: rt.crd_name(),
        };
        let Some(crd) = self.objects.get(&key) else {
            return false;
        };
        let spec = &crd["spec"];
        let scope = if rt.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        };
        let version_served = spec["versions"].as_array().is_some_and(|versions| {
            versions
                .iter()
                .any(|v| v["name"] == rt.version && v["served"] != false)
        });
        spec["group"] == rt.group
            && spec["names"]["plural"] == rt.plural
            && spec["names"]["kind"] == rt.kind
            && spec["scope"] == scope
            && version_served
    }

    /// Matching objects of `filter.res` after `(ns, name)`, at most `limit`; also whether more remain.
    pub fn list(
        &self,
        filter: &Filter,
        after: Option<(&str, &str)>,
        limit: Option<usize>,
    ) -> (Vec<Value>, bool) {
        let start = Key {
            res: filter.res,
            ns: String::new(),
            name: String::new(),
        };
        let mut matching = self
            .objects
            .range(start..)
            .take_while(|(k, _)| k.res == filter.res)
            .filter(|(k, _)| {
                after.is_none_or(|(ns, name)| (k.ns.as_str(), k.name.as_str()) > (ns, name))
            })
            .filter(|(k, v)| filter.matches(k, v))
            .map(|(_, v)| v.clone());
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let items: Vec<Value> = matching.by_ref().take(limit).collect();
        let more = matching.next().is_some();
        (items, more)
    }

    fn next_uid(&mut self) -> String {
        self.uid_seq += 1;
        let salt = std::process::id();
        format!("{salt:08x}-0000-4000-8000-{:012x}", self.uid_seq)
    }

    /// Stamps `obj` with the next resourceVersion and records the change.
    fn commit(&mut self, key: Key, mut obj: Value, kind: ChangeType, old: Option<Value>) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if RESOURCES[key.res].is_event() {
            match self.events.iter_mut().rev().find(|(k, _)| *k == key) {
                Some(entry) if kind != ChangeType::Added => entry.1 = obj.clone(),
                _ if kind == ChangeType::Added => self.events.push((key.clone(), obj.clone())),
                _ => {}
            }
        }
        if kind == ChangeType::Deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), obj.clone());
        }
        self.history.push_back(Change {
            rv: self.rv,
            key,
            kind,
            old,
            new: obj.clone(),
        });
        while self.history.len() > HISTORY_LIMIT {
            if let Some(dropped) = self.history.pop_front() {
                self.oldest_rv = dropped.rv;
            }
        }
        obj
    }

    /// The key and object [`Store::create`] would store, before its uid and resourceVersion;
    /// changes nothing.
    fn prepare_create(
        &self,
        res: usize,
        ns: &str,
        mut obj: Value,
    ) -> Result<(Key, Value), ApiError> {
        let rt = &RESOURCES[res];
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        ensure_metadata(&mut obj);
        if rt.namespaced {
            if meta_str(&obj, "namespace").is_some_and(|n| n != ns) {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            obj["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let name = match (meta_str(&obj, "name"), meta_str(&obj, "generateName")) {
            (Some(name), _) => name.to_string(),
            (None, Some(prefix)) => format!("{prefix}{:05x}", self.uid_seq + 1),
            (None, None) => return Err(ApiError::invalid(rt, "", "metadata.name: Required value")),
        };
        let key = Key {
            res,
            ns: if rt.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name: name.clone(),
        };
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(rt, &name));
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let meta = &mut obj["metadata"];
        meta["name"] = json!(name);
        meta["creationTimestamp"] = json!(now_rfc3339());
        meta["generation"] = json!(1);
        Ok((key, obj))
    }

    /// Creates an object in namespace `ns` (ignored for cluster-scoped types).
    pub fn create(&mut self, res: usize, ns: &str, obj: Value) -> Result<Value, ApiError> {
        let (key, mut obj) = self.prepare_create(res, ns, obj)?;
        obj["metadata"]["uid"] = json!(self.next_uid());
        Ok(self.commit(key, obj, ChangeType::Added, None))
    }

    /// What [`Store::create`] would answer, stored nowhere (a dry run): no resourceVersion.
    pub fn create_dry_run(&self, res: usize, ns: &str, obj: Value) -> Result<Value, ApiError> {
        let (_, mut obj) = self.prepare_create(res, ns, obj)?;
        let salt = std::process::id();
        obj["metadata"]["uid"] = json!(format!(
            "{salt:08x}-0000-4000-9000-{:012x}",
            self.uid_seq + 1
        ));
        Ok(obj)
    }

    /// The stored object at `key` and what [`Store::update`] would make of it; changes nothing.
    fn prepare_update(
        &self,
        key: &Key,
        obj: Value,
        mode: WriteMode,
        check_rv: bool,
    ) -> Result<(Value, Value), ApiError> {
        let rt = &RESOURCES[key.res];
        let old = self
            .objects
            .get(key)
            .ok_or_else(|| ApiError::not_found(rt, &key.name))?
            .clone();
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if check_rv
            && let Some(rv) = meta_str(&obj, "resourceVersion")
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(rt, &key.name));
        }
        if meta_str(&obj, "name").is_some_and(|n| n != key.name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let new = meta::updated(rt, &old, obj, mode);
        Ok((old, new))
    }

    /// Replaces an existing object; with `check_rv`, a non-empty `metadata.resourceVersion` in
    /// `obj` must match the stored one (optimistic concurrency).
    pub fn update(
        &mut self,
        key: &Key,
        obj: Value,
        mode: WriteMode,
        check_rv: bool,
    ) -> Result<Value, ApiError> {
        let (old, new) = self.prepare_update(key, obj, mode, check_rv)?;
        if new == old {
            return Ok(old);
        }
        Ok(self.commit(key.clone(), new, ChangeType::Modified, Some(old)))
    }

    /// What [`Store::update`] would answer, stored nowhere (a dry run).
    pub fn update_dry_run(
        &self,
        key: &Key,
        obj: Value,
        mode: WriteMode,
        check_rv: bool,
    ) -> Result<Value, ApiError> {
        Ok(self.prepare_update(key, obj, mode, check_rv)?.1)
    }

    /// Creates or replaces `obj` as given (test-harness writes).
    pub fn upsert(&mut self, res: usize, ns: &str, obj: Value) -> Result<Value, ApiError> {
        let rt = &RESOURCES[res];
        let key = Key {
            res,
            ns: if rt.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name: meta_str(&obj, "name").unwrap_or_default().to_string(),
        };
        if self.objects.contains_key(&key) {
            self.update(&key, obj, WriteMode::Force, false)
        } else {
            self.create(res, ns, obj)
        }
    }

    pub fn delete(&mut self, key: &Key) -> Result<Value, ApiError> {
        let old = self
            .objects
            .get(key)
            .ok_or_else(|| ApiError::not_found(&RESOURCES[key.res], &key.name))?
            .clone();
        let served_before: Vec<usize> = (0..RESOURCES.len()).filter(|r| self.serves(*r)).collect();
        let deleted = self.commit(key.clone(), old.clone(), ChangeType::Deleted, Some(old));
        // A deleted CustomResourceDefinition takes its objects with it.
        let unserved: Vec<usize> = served_before
            .into_iter()
            .filter(|r| !self.serves(*r))
            .collect();
        for res in unserved {
            let gone: Vec<(Key, Value)> = self
                .objects
                .iter()
                .filter(|(k, _)| k.res == res)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in gone {
                self.commit(k, v.clone(), ChangeType::Deleted, Some(v));
            }
        }
        Ok(deleted)
    }

    /// Watch events (`type`, object) for changes after `rv` that `filter` sees, or 410 Gone when
    /// `rv` is outside the retained history.
    /// An object moving into the filter reads as ADDED, moving out as DELETED, as real watches do.
    pub fn changes_since(
        &self,
        rv: u64,
        filter: &Filter,
    ) -> Result<Vec<(&'static str, Value)>, ApiError> {
        // Newer than anything served (e.g. a client of an earlier server): also make it relist.
        if rv < self.oldest_rv || rv > self.rv {
            return Err(ApiError::gone(rv, self.oldest_rv));
        }
        let start = self.history.partition_point(|c| c.rv <= rv);
        let seen =
            |obj: &Option<Value>, key: &Key| obj.as_ref().is_some_and(|o| filter.matches(key, o));
        Ok(self
            .history
            .range(start..)
            .filter_map(|c| {
                let (was, is) = (seen(&c.old, &c.key), filter.matches(&c.key, &c.new));
                let ty = match c.kind {
                    ChangeType::Added if is => "ADDED",
                    ChangeType::Modified if was && is => "MODIFIED",
                    ChangeType::Modified if is => "ADDED",
                    ChangeType::Modified | ChangeType::Deleted if was => "DELETED",
                    _ => return None,
                };
                Some((ty, c.new.clone()))
            })
            .collect())
    }

    /// Forgets all history: every resourceVersion handed out so far becomes too old to watch from.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.oldest_rv = self.rv;
        self.history.clear();
        self.epoch += 1;
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.iter().map(|(_, v)| v.clone()).collect()
    }

    pub fn note_gone(&mut self) {
        self.gone_served += 1;
    }

    pub fn gone_served(&self) -> usize {
        self.gone_served
    }
}
