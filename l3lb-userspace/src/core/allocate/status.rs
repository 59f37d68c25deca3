//! From an [`Allocation`] to the status writes it takes: which Services'
//! `status.loadBalancer.ingress` differ from their allocation, and the merge patch for each. Pure.
use std::{collections::BTreeSet, net::IpAddr};

use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

use super::Allocation;
use crate::core::model::ServiceKey;

/// One Service whose status must change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    pub key: ServiceKey,
    /// The version the decision was made on: the write fails (409) if the Service changed since,
    /// and the next run decides again on the new version.
    pub resource_version: Option<String>,
    pub from: Vec<String>,
    pub to: Vec<IpAddr>,
}

impl StatusChange {
    /// A JSON merge patch for the `/status` subresource (the list is replaced whole).
    pub fn patch(&self) -> Value {
        let ingress: Vec<Value> = self
            .to
            .iter()
            .map(|ip| json!({"ip": ip.to_string()}))
            .collect();
        let ingress = if ingress.is_empty() {
            Value::Null
        } else {
            json!(ingress)
        };
        json!({
            "metadata": {"resourceVersion": self.resource_version},
            "status": {"loadBalancer": {"ingress": ingress}},
        })
    }
}

/// The ingress IPs as written (an entry without an IP counts as an empty string, so it is
/// rewritten).
fn ingress_ips(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .map(|i| i.ip.clone().unwrap_or_default())
        .collect()
}

/// The status writes that make `services` show `allocation`; Services it does not cover (not
/// l3lb's) are left alone.
pub fn changes(services: &[&Service], allocation: &Allocation) -> Vec<StatusChange> {
    let mut out = Vec::new();
    for svc in services {
        let Some(key) = ServiceKey::of(svc) else {
            continue;
        };
        let Some(to) = allocation.assigned.get(&key) else {
            continue;
        };
        let from = ingress_ips(svc);
        let have: BTreeSet<&str> = from.iter().map(String::as_str).collect();
        let want: Vec<String> = to.iter().map(ToString::to_string).collect();
        let same = from.len() == want.len() && want.iter().all(|w| have.contains(w.as_str()));
        if !same {
            out.push(StatusChange {
                key,
                resource_version: svc.metadata.resource_version.clone(),
                from,
                to: to.clone(),
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn svc(name: &str, ingress: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": "a", "name": name, "resourceVersion": "7"},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": ingress}},
        }))
        .unwrap()
    }

    fn key(name: &str) -> ServiceKey {
        ServiceKey {
            namespace: "a".into(),
            name: name.into(),
        }
    }

    #[test]
    fn only_differing_statuses_are_written() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let services = [
            svc("same", json!([{"ip": "192.0.2.1"}])),
            svc(
                "reordered",
                json!([{"ip": "2001:db8::1"}, {"ip": "192.0.2.2"}]),
            ),
            svc("new", Value::Null),
            svc("moved", json!([{"ip": "192.0.2.9"}])),
            svc("cleared", json!([{"ip": "192.0.2.4"}])),
            svc("hostname", json!([{"hostname": "lb.example"}])),
            svc("not-ours", json!([{"ip": "192.0.2.5"}])),
        ];
        let allocation = Allocation {
            assigned: [
                (key("same"), vec![ip("192.0.2.1")]),
                (key("reordered"), vec![ip("192.0.2.2"), ip("2001:db8::1")]),
                (key("new"), vec![ip("192.0.2.3")]),
                (key("moved"), vec![ip("192.0.2.6")]),
                (key("cleared"), vec![]),
                (key("hostname"), vec![ip("192.0.2.7")]),
            ]
            .into(),
            refusals: vec![],
        };
        let refs: Vec<&Service> = services.iter().collect();
        let got = changes(&refs, &allocation);
        let names: Vec<&str> = got.iter().map(|c| c.key.name.as_str()).collect();
        assert_eq!(names, ["cleared", "hostname", "moved", "new"]);
        let cleared = &got[0];
        assert_eq!(
            cleared.patch(),
            json!({"metadata": {"resourceVersion": "7"}, "status": {"loadBalancer": {"ingress": null}}})
        );
        assert_eq!(
            got[3].patch()["status"]["loadBalancer"]["ingress"],
            json!([{"ip": "192.0.2.3"}])
        );
    }
}
