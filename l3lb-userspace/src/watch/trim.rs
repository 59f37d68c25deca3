//! What the stores keep of each object: only the fields [`crate::desired`] and the Node exclusion
//! read, plus the identity the reflector keys on; of the endpoints, only this node's. At 10,000 Services and 100,000 endpoints the
//! rest (managed fields, annotations, hints, target refs, zones, conditions) is most of the
//! memory.
use k8s_openapi::{
    api::{
        core::v1::{
            LoadBalancerIngress, LoadBalancerStatus, Node, Service, ServicePort, ServiceSpec,
            ServiceStatus,
        },
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use crate::{allocate::pool::L3lbPool, annotations::read_by_l3lb, desired::SERVICE_NAME_LABEL};

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

/// The Service label, address type, ports, and of the endpoints on `node` (desired() reads no
/// other) their addresses, readiness and node.
pub fn slice(node: String) -> impl FnMut(&mut EndpointSlice) + Send + 'static {
    move |slice| trim_slice(slice, &node)
}

fn trim_slice(slice: &mut EndpointSlice, node: &str) {
    let mut metadata = identity(&mut slice.metadata);
    metadata.labels = slice.metadata.labels.take().map(|mut labels| {
        labels.retain(|k, _| k == SERVICE_NAME_LABEL);
        labels
    });
    let endpoints = slice.endpoints.take().map(|endpoints| {
        endpoints
            .into_iter()
            .filter(|e| e.node_name.as_deref() == Some(node))
            .map(|e| Endpoint {
                addresses: e.addresses,
                conditions: e.conditions.map(|c| EndpointConditions {
                    ready: c.ready,
                    serving: c.serving,
                    terminating: c.terminating,
                }),
                node_name: e.node_name,
                ..Endpoint::default()
            })
            .collect()
    });
    let ports = slice.ports.take().map(|ports| {
        ports
            .into_iter()
            .map(|p| EndpointPort {
                name: p.name,
                port: p.port,
                protocol: p.protocol,
                ..EndpointPort::default()
            })
            .collect()
    });
    *slice = EndpointSlice {
        metadata,
        address_type: std::mem::take(&mut slice.address_type),
        endpoints,
        ports,
    };
}

/// Pools are few: only the bulky metadata goes.
pub fn pool(pool: &mut L3lbPool) {
    pool.metadata.managed_fields = None;
    pool.metadata.annotations = None;
}

/// One object: only the bulky fields go.
pub fn node(node: &mut Node) {
    node.metadata.managed_fields = None;
    node.metadata.annotations = None;
    node.status = None;
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
    use serde_json::json;

    use crate::{class::ClassFilter, desired::desired};

    fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn trimmed_objects_give_the_same_desired_state() {
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
        let full = desired(&[&svc], &[&slice], "n1", &prefixes, &class);
        // status and externalIPs; loadBalancerIP only once granted into the status.
        assert_eq!(full.frontends.len(), 4);
        let (mut small_svc, mut small_slice) = (svc.clone(), slice.clone());
        super::service(&mut small_svc);
        super::slice("n1".into())(&mut small_slice);
        assert_eq!(
            desired(&[&small_svc], &[&small_slice], "n1", &prefixes, &class),
            full
        );
        let annotations = small_svc.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["l3lb.io/allow-shared-ip"]
        );
        assert!(
            small_slice.endpoints.as_ref().unwrap()[0]
                .target_ref
                .is_none()
        );
        assert_eq!(
            small_slice.metadata.labels.as_ref().map(|l| l.len()),
            Some(1)
        );
    }
}
