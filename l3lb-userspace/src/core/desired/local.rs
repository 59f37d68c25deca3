//! One EndpointSlice's endpoints on this node, as desired state reads them: per port and
//! protocol, Ready or terminating but still serving, in the slice's address family. Pure.
use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::core::model::{Endpoint, Proto};

/// One port of one endpoint on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    pub(super) port_name: String,
    pub(super) proto: Proto,
    pub(super) endpoint: Endpoint,
    /// Ready (new flows) or terminating but still serving (pinned flows only).
    pub(super) ready: bool,
}

/// The endpoints of `slice` on `node` that are Ready, or terminating but still serving, for
/// every port of the slice, in the slice's address family (a Service's IPv4 and IPv6 slices both
/// count).
pub(super) fn local_endpoints(slice: &EndpointSlice, node: &str) -> Vec<Local> {
    let mut out = Vec::new();
    let v6 = match slice.address_type.as_str() {
        "IPv4" => false,
        "IPv6" => true,
        _ => return out,
    };
    for ep in slice.endpoints.iter().flatten() {
        if ep.node_name.as_deref() != Some(node) {
            continue;
        }
        let conditions = ep.conditions.as_ref();
        // Per the EndpointSlice API, an unset `ready` means ready, an unset `serving` means
        // as ready.
        let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
        let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
        if !ready && !serving {
            continue;
        }
        for port in slice.ports.iter().flatten() {
            let (Some(p), proto) = (port.port, port.protocol.as_deref().unwrap_or("TCP")) else {
                continue;
            };
            let (Ok(p), Some(proto)) = (u16::try_from(p), parse_proto(proto)) else {
                continue;
            };
            for addr in &ep.addresses {
                let Ok(addr) = addr.parse::<IpAddr>() else {
                    continue;
                };
                if addr.is_ipv6() != v6 {
                    continue;
                }
                out.push(Local {
                    port_name: port.name.clone().unwrap_or_default(),
                    proto,
                    endpoint: Endpoint { addr, port: p },
                    ready,
                });
            }
        }
    }
    out
}

pub(super) fn parse_proto(p: &str) -> Option<Proto> {
    match p {
        "TCP" => Some(Proto::Tcp),
        "UDP" => Some(Proto::Udp),
        "SCTP" => Some(Proto::Sctp),
        _ => None,
    }
}
