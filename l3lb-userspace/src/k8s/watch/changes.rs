//! Which Services changed since the reconciler last looked, so its desired state recomputes
//! those only. A relist replaces the store whole and counts as every Service.
use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, PoisonError},
};

use k8s_openapi::api::core::v1::Service;
use kube::runtime::watcher::Event;

use crate::core::model::ServiceKey;

/// Changes not taken yet.
#[derive(Debug, PartialEq, Eq)]
pub enum Pending {
    /// Every Service may have changed (nothing was taken yet, or a list completed).
    All,
    /// Only these (changed, added or deleted).
    Keys(BTreeSet<ServiceKey>),
}

/// Shared between the Service watch, which records, and the reconciler, which takes.
#[derive(Clone, Debug)]
pub struct ServiceChanges(Arc<Mutex<Pending>>);

impl Default for ServiceChanges {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Pending::All)))
    }
}

impl ServiceChanges {
    /// Notes what `event` changed; called once the store has it.
    pub(super) fn record(&self, event: &Event<Service>) {
        let mut pending = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::Apply(svc) | Event::Delete(svc) => {
                if let (Pending::Keys(keys), Some(key)) = (&mut *pending, ServiceKey::of(svc)) {
                    keys.insert(key);
                }
            }
            // The store was replaced by the list's objects.
            Event::InitDone => *pending = Pending::All,
            Event::Init | Event::InitApply(_) => {}
        }
    }

    /// What changed since the last call.
    pub fn take(&self) -> Pending {
        let mut pending = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *pending, Pending::Keys(BTreeSet::new()))
    }
}
