//! Normal Events on a Service when this node assumes (announces) or forfeits (withdraws) one of
//! its VIPs, so `kubectl describe service` shows which nodes carry it. Published by a background
//! task: a burst (thousands of VIPs on a node's first start) never holds up a reconcile pass;
//! beyond the queue's capacity Events are dropped and counted, they are informational.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};
use tokio::sync::mpsc;
use tracing::debug;

use crate::{core::model::ServiceKey, metrics::Metrics};

/// Events waiting to be published at most; more are dropped.
const QUEUE: usize = 4096;

/// Why this node withdrew its VIPs in a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forfeit {
    /// No Ready local endpoint left (or the Service is gone).
    NoLocalEndpoint,
    /// The node is cordoned or excluded from load balancers.
    NodeExcluded,
    /// An uplink does not forward.
    NotForwarding,
}

/// One Event for one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipEvent {
    pub service: ServiceKey,
    pub reason: &'static str,
    pub note: String,
}

/// Remembers which Services each announced VIP serves, so a withdrawal is reported to them even
/// once they are gone from the desired state.
#[derive(Default)]
pub struct Owners(BTreeMap<IpAddr, Vec<ServiceKey>>);

impl Owners {
    /// The Events for one pass's announcements and withdrawals. `services_of` gives the
    /// Services a VIP is wanted for now.
    pub fn events(
        &mut self,
        node: &str,
        assumed: &[IpAddr],
        forfeited: &[IpAddr],
        why: Forfeit,
        services_of: impl Fn(IpAddr) -> BTreeSet<ServiceKey>,
    ) -> Vec<VipEvent> {
        let mut out = Vec::new();
        for &vip in forfeited {
            let owners = self
                .0
                .remove(&vip)
                .unwrap_or_else(|| services_of(vip).into_iter().collect());
            let cause = match why {
                Forfeit::NoLocalEndpoint => "no Ready endpoint of it is left on this node",
                Forfeit::NodeExcluded => "the node is excluded from load balancing",
                Forfeit::NotForwarding => "an uplink of the node does not forward",
            };
            out.extend(owners.into_iter().map(|service| VipEvent {
                service,
                reason: "VIPForfeited",
                note: format!("node {node} withdrew {vip}: {cause}"),
            }));
        }
        for &vip in assumed {
            let owners = services_of(vip);
            out.extend(owners.iter().cloned().map(|service| VipEvent {
                service,
                reason: "VIPAssumed",
                note: format!("node {node} announces {vip}: it has a Ready endpoint here"),
            }));
            self.0.insert(vip, owners.into_iter().collect());
        }
        out
    }
}

/// The queue to the publishing task.
#[derive(Clone)]
pub struct VipEvents {
    tx: mpsc::Sender<VipEvent>,
    metrics: Metrics,
}

impl VipEvents {
    /// Starts the publishing task on the current runtime. Events are created one by one, without
    /// kube's Recorder: its cache (for series of repeated Events) would hold every VIP's Event
    /// for minutes, and announcements do not repeat.
    pub fn start(client: Client, node: &str, metrics: Metrics) -> Self {
        let (tx, mut rx) = mpsc::channel::<VipEvent>(QUEUE);
        let node = node.to_owned();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                let api: Api<Event> = Api::namespaced(client.clone(), &e.service.namespace);
                let event = to_event(&node, &e);
                if let Err(error) = api.create(&PostParams::default(), &event).await {
                    debug!(service = %e.service, %error, "could not publish a VIP event");
                }
            }
        });
        Self { tx, metrics }
    }

    pub fn send(&self, events: Vec<VipEvent>) {
        for e in events {
            if self.tx.try_send(e).is_err() {
                self.metrics.events_dropped.inc();
            }
        }
    }
}

/// The events.k8s.io/v1 Event for `e`, reported by l3lb on `node`.
fn to_event(node: &str, e: &VipEvent) -> Event {
    service_event(node, &e.service, "Normal", e.reason, "Announce", &e.note)
}

/// A new events.k8s.io/v1 Event (`type_` Normal or Warning) about Service `service`, reported by
/// l3lb on `node`. Created one by one rather than through kube's Recorder, whose series key
/// leaves out the note: two different refusals of one Service would show as one.
pub(crate) fn service_event(
    node: &str,
    service: &ServiceKey,
    type_: &str,
    reason: &str,
    action: &str,
    note: &str,
) -> Event {
    let now = Timestamp::now();
    Event {
        metadata: ObjectMeta {
            namespace: Some(service.namespace.clone()),
            name: Some(format!("{}.{:x}", service.name, now.as_nanosecond())),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(type_.into()),
        reason: Some(reason.into()),
        action: Some(action.into()),
        note: Some(note.to_owned()),
        regarding: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(service.namespace.clone()),
            name: Some(service.name.clone()),
            ..ObjectReference::default()
        }),
        reporting_controller: Some("l3lb".into()),
        reporting_instance: Some(node.to_owned()),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ServiceKey {
        ServiceKey {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn withdrawals_reach_the_services_the_vip_was_announced_for() {
        let mut owners = Owners::default();
        let now: BTreeMap<IpAddr, BTreeSet<ServiceKey>> = [
            (ip("198.51.100.1"), [key("web"), key("dns")].into()),
            (ip("198.51.100.2"), [key("db")].into()),
        ]
        .into();
        let of = |vip| now.get(&vip).cloned().unwrap_or_default();
        let assumed = owners.events(
            "n1",
            &[ip("198.51.100.1")],
            &[],
            Forfeit::NoLocalEndpoint,
            of,
        );
        assert_eq!(
            assumed
                .iter()
                .map(|e| (e.service.name.as_str(), e.reason))
                .collect::<Vec<_>>(),
            [("dns", "VIPAssumed"), ("web", "VIPAssumed")]
        );
        assert_eq!(
            assumed[0].note,
            "node n1 announces 198.51.100.1: it has a Ready endpoint here"
        );
        // The Services are gone from the desired state by the time the VIP is withdrawn; a VIP
        // announced by an earlier run (.2) is reported to its current Services.
        let nothing = |_| BTreeSet::new();
        let forfeited = owners.events(
            "n1",
            &[],
            &[ip("198.51.100.1"), ip("198.51.100.3")],
            Forfeit::NodeExcluded,
            nothing,
        );
        assert_eq!(forfeited.len(), 2);
        assert!(forfeited.iter().all(|e| e.reason == "VIPForfeited"
            && e.note
                == "node n1 withdrew 198.51.100.1: the node is excluded from load balancing"));
        let earlier = owners.events("n1", &[], &[ip("198.51.100.2")], Forfeit::NotForwarding, of);
        assert_eq!(earlier.len(), 1);
        assert_eq!(earlier[0].service, key("db"));
        assert!(
            earlier[0]
                .note
                .ends_with("an uplink of the node does not forward")
        );
    }
}
