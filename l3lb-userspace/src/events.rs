//! Refusals become Kubernetes Events: one Warning per (Service, reason) while it lasts.
use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use tracing::warn;

use crate::model::Refusal;

pub struct RefusalEvents {
    recorder: Recorder,
    node: String,
    /// Refusals already reported; one that goes away and comes back is reported again.
    reported: BTreeSet<Refusal>,
}

impl RefusalEvents {
    pub fn new(client: Client, node: &str) -> Self {
        let reporter = Reporter {
            controller: "l3lb".into(),
            instance: Some(node.to_owned()),
        };
        Self {
            recorder: Recorder::new(client, reporter),
            node: node.to_owned(),
            reported: BTreeSet::new(),
        }
    }

    /// Logs and publishes the refusals not reported yet. A failed publish is retried next pass.
    pub async fn report(&mut self, current: &[Refusal]) {
        let current: BTreeSet<Refusal> = current.iter().cloned().collect();
        self.reported.retain(|r| current.contains(r));
        for refusal in current.difference(&self.reported.clone()) {
            warn!(service = %refusal.service, node = %self.node, reason = %refusal.reason, "service refused");
            let reference = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Service".into()),
                namespace: Some(refusal.service.namespace.clone()),
                name: Some(refusal.service.name.clone()),
                ..Default::default()
            };
            let event = Event {
                type_: EventType::Warning,
                reason: "AddressRefused".into(),
                note: Some(format!("l3lb on node {}: {}", self.node, refusal.reason)),
                action: "Assign".into(),
                secondary: None,
            };
            match self.recorder.publish(&event, &reference).await {
                Ok(()) => {
                    self.reported.insert(refusal.clone());
                }
                Err(error) => {
                    warn!(service = %refusal.service, %error, "could not publish event; retrying next pass")
                }
            }
        }
    }
}
