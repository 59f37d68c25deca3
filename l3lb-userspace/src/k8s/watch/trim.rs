//! What the stores keep of each object: only the fields [`crate::core::desired`] and the Node exclusion
//! read, plus the identity the reflector keys on; of the endpoints, only this node's. At 10,000 Services and 100,000 endpoints the
//! rest (managed fields, annotations, hints, target refs, zones, conditions) is most of the
//! memory.
use k8s_openapi::{
    api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, Node, NodeStatus, Service, ServicePort,
        ServiceSpec, ServiceStatus,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use crate::core::{annotations::read_by_l3lb, pool::L3lbPool};

fn identity(meta: &mut ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        ..ObjectMeta::default()
    }
}

/// Type, class, ports, the VIP fields, IP families and the load balancer ingress IPs; of the
/// metadata also what allocation reads: labels (pool selectors), l3lb's and MetalLB's
/// annotations, the creation time (older Services keep contested addresses).
pub fn service(svc: &mut Service) {
    let mut metadata = identity(&mut svc.metadata);
    metadata.labels = svc.metadata.labels.take();
    metadata.creation_timestamp = svc.metadata.creation_timestamp.take();
    metadata.annotations = svc.metadata.annotations.take().and_then(|mut a| {
        a.retain(|k, _| read_by_l3lb(k));
        (!a.is_empty()).then_some(a)
    });
    let spec = svc.spec.take().map(|s| ServiceSpec {
        type_: s.type_,
        load_balancer_class: s.load_balancer_class,
        load_balancer_ip: s.load_balancer_ip,
        external_ips: s.external_ips,
        ip_families: s.ip_families,
        ip_family_policy: s.ip_family_policy,
        session_affinity: s.session_affinity,
        session_affinity_config: s.session_affinity_config,
        ports: s.ports.map(|ports| {
            ports
                .into_iter()
                .map(|p| ServicePort {
                    name: p.name,
                    port: p.port,
                    protocol: p.protocol,
                    ..ServicePort::default()
                })
                .collect()
        }),
        ..ServiceSpec::default()
    });
    let status = svc.status.take().map(|s| ServiceStatus {
        load_balancer: s.load_balancer.map(|lb| LoadBalancerStatus {
            ingress: lb.ingress.map(|ingress| {
                ingress
                    .into_iter()
                    .map(|i| LoadBalancerIngress {
                        ip: i.ip,
                        ..LoadBalancerIngress::default()
                    })
                    .collect()
            }),
        }),
        ..ServiceStatus::default()
    });
    *svc = Service {
        metadata,
        spec,
        status,
    };
}

/// Pools are few: only the bulky metadata goes.
pub fn pool(pool: &mut L3lbPool) {
    pool.metadata.managed_fields = None;
    pool.metadata.annotations = None;
}

/// One object: only the bulky fields go. Of the status only the addresses stay (endpoints at the
/// node's own addresses are refused).
pub fn node(node: &mut Node) {
    node.metadata.managed_fields = None;
    node.metadata.annotations = None;
    node.status = node.status.take().map(|s| NodeStatus {
        addresses: s.addresses,
        ..NodeStatus::default()
    });
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
    use serde_json::json;

    use crate::core::{
        class::ClassFilter,
        desired::{Scope, desired},
        ownership::ExternalIps,
    };

    fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn trimmed_services_give_the_same_desired_state() {
        let svc: Service = from(json!({
            "metadata": {"namespace": "a", "name": "s",
                         "annotations": {"x": "y", "l3lb.io/allow-shared-ip": "k"},
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": "198.51.100.1",
                     "loadBalancerClass": "l3lb.io/l3lb",
                     "externalIPs": ["198.51.100.2"], "selector": {"app": "s"},
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.3", "ipMode": "VIP"}]},
                       "conditions": [{"type": "x", "status": "True", "reason": "r", "message": "m",
                                       "lastTransitionTime": "2024-01-01T00:00:00Z"}]}
        }));
        let slice: EndpointSlice = from(json!({
            "metadata": {"namespace": "a", "name": "s-1",
                         "labels": {"kubernetes.io/service-name": "s", "other": "x"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "nodeName": "n1", "zone": "z",
                 "conditions": {"ready": true, "serving": true},
                 "targetRef": {"kind": "Pod", "name": "p"}, "hints": {"forZones": [{"name": "z"}]}},
                {"addresses": ["10.0.0.2"], "nodeName": "n1", "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"], "nodeName": "n1"},
                {"addresses": ["10.0.0.4"], "nodeName": "n2"},
                {"addresses": ["10.0.0.5"]}
            ]
        }));
        let prefixes = ["198.51.100.0/24".parse().unwrap()];
        let class = ClassFilter::default();
        let scope = Scope {
            external_ips: ExternalIps::Prefix,
            ..Scope::new("n1", &prefixes, &class)
        };
        let full = desired(&[&svc], &[&slice], &scope);
        // status and externalIPs; loadBalancerIP only once granted into the status.
        assert_eq!(full.frontends.len(), 4);
        let mut small_svc = svc.clone();
        super::service(&mut small_svc);
        assert_eq!(desired(&[&small_svc], &[&slice], &scope), full);
        let annotations = small_svc.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["l3lb.io/allow-shared-ip"]
        );
    }
}
