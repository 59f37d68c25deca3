//! Refusals become Kubernetes Events: one Warning per (Service, reason) while it lasts, from each
//! node for what it cannot serve (`AddressRefused`) and from the allocator alone for addresses it
//! cannot give (`AllocationFailed`). A change of this node's exclusion from load balancing is
//! logged once and becomes an Event on the Node.
use std::collections::BTreeSet;

use k8s_openapi::api::{core::v1::ObjectReference, events::v1::Event as ServiceEvent};
use kube::{
    Api, Client,
    api::PostParams,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use tracing::{info, warn};

use crate::core::{desired::node::Exclusion, model::Refusal};

pub struct RefusalEvents {
    client: Client,
    /// For the Node's Events.
    recorder: Recorder,
    node: String,
    /// Event reason and log message of the refusals.
    reason: &'static str,
    what: &'static str,
    /// Refusals already reported; one that goes away and comes back is reported again.
    reported: BTreeSet<Refusal>,
    /// The exclusion last logged; `None`: the node serves.
    exclusion: Option<Exclusion>,
    /// A Node Event not published yet (retried next pass).
    node_event: Option<Event>,
}

impl RefusalEvents {
    pub fn new(client: Client, node: &str) -> Self {
        let reporter = Reporter {
            controller: "l3lb".into(),
            instance: Some(node.to_owned()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            node: node.to_owned(),
            reason: "AddressRefused",
            what: "service refused",
            reported: BTreeSet::new(),
            exclusion: None,
            node_event: None,
        }
    }

    /// The allocator's refusals: Services that get no address (only the Lease holder reports).
    pub fn allocator(client: Client, node: &str) -> Self {
        Self {
            reason: "AllocationFailed",
            what: "address allocation refused",
            ..Self::new(client, node)
        }
    }

    /// Forgets what was reported, so a new term reports every refusal once again.
    pub fn reset(&mut self) {
        self.reported.clear();
    }

    /// Logs a change of this node's exclusion (once per change) and queues its Node Event.
    pub fn exclusion(&mut self, now: Option<Exclusion>) {
        if self.exclusion == now {
            return;
        }
        let (reason, note) = match now {
            Some(why) => {
                warn!(node = %self.node, reason = %why, "node excluded from load balancing: withdrawing every VIP, frontends stay so flows drain");
                (
                    "VIPsWithdrawn",
                    format!("l3lb withdraws every VIP of this node: {why}"),
                )
            }
            None => {
                info!(node = %self.node, "node no longer excluded from load balancing: announcing its VIPs again");
                (
                    "VIPsRestored",
                    "l3lb announces this node's VIPs again".to_owned(),
                )
            }
        };
        self.exclusion = now;
        self.node_event = Some(Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note),
            action: "Announce".into(),
            secondary: None,
        });
    }

    /// Logs and publishes the refusals not reported yet. A failed publish is retried next pass.
    pub async fn report(&mut self, current: &[Refusal]) {
        if let Some(event) = &self.node_event {
            let reference = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(self.node.clone()),
                ..Default::default()
            };
            match self.recorder.publish(event, &reference).await {
                Ok(()) => self.node_event = None,
                Err(error) => {
                    warn!(node = %self.node, %error, "could not publish event; retrying next pass")
                }
            }
        }
        let current: BTreeSet<Refusal> = current.iter().cloned().collect();
        self.reported.retain(|r| current.contains(r));
        for refusal in current.difference(&self.reported.clone()) {
            warn!(service = %refusal.service, node = %self.node, reason = %refusal.reason, "{}", self.what);
            let event = crate::k8s::events::announcements::service_event(
                &self.node,
                &refusal.service,
                "Warning",
                self.reason,
                "Assign",
                &format!("l3lb on node {}: {}", self.node, refusal.reason),
            );
            let api: Api<ServiceEvent> =
                Api::namespaced(self.client.clone(), &refusal.service.namespace);
            match api.create(&PostParams::default(), &event).await {
                Ok(_) => {
                    self.reported.insert(refusal.clone());
                }
                Err(error) => {
                    warn!(service = %refusal.service, %error, "could not publish event; retrying next pass")
                }
            }
        }
    }
}
