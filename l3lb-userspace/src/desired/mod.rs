//! Desired state: which frontends and VIPs this node should serve. A pure function of the watched
//! Services and EndpointSlices, the node's name and the managed prefixes.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use ipnet::IpNet;
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};

use crate::{
    annotations::{ALLOW_SHARED_IP, sharing_key},
    class::ClassFilter,
    model::{Backends, Desired, Endpoint, FrontendId, Proto, Refusal, ServiceKey},
};

pub mod cache;
mod merged;
pub mod slices;

use slices::SliceIndex;
pub mod node;

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Computes what this node should serve.
///
/// The Services are the LoadBalancer Services `class` owns. A Service's VIPs are
/// `status.loadBalancer.ingress[].ip` (what the allocator granted; a requested address counts
/// once it is there) and `spec.externalIPs`, kept when inside a prefix. A VIP is wanted when at
/// least one of its frontends has a Ready endpoint on `node`; a frontend whose endpoints there
/// are all terminating (not Ready, still serving) is kept for its pinned flows, without its VIP.
pub fn desired(
    services: &[&Service],
    slices: &[&EndpointSlice],
    node: &str,
    prefixes: &[IpNet],
    class: &ClassFilter,
) -> Desired {
    let mut index = SliceIndex::new(node);
    for slice in slices {
        index.apply(slice);
    }
    let mut parts: Vec<(ServiceKey, ServiceDesired)> = services
        .iter()
        .filter(|s| class.owns(s))
        .filter_map(|s| {
            let key = service_key(s)?;
            let own: Vec<&[Local]> = index.endpoints_of(&key).collect();
            let part = service_desired(s, &own, prefixes);
            Some((key, part))
        })
        .collect();
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    merge(parts.iter().map(|(k, p)| (k, p)))
}

/// One Service's share of the desired state, before frontends that two Services claim are
/// resolved by [`merge`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceDesired {
    /// Every frontend the Service names, in order, with its local backends (maybe none).
    claims: Vec<(FrontendId, Backends)>,
    refusals: Vec<String>,
    /// The key under which it shares its VIPs, if it opts in.
    sharing: Option<String>,
}

/// What one LoadBalancer Service wants, given its own EndpointSlices' local endpoints.
pub fn service_desired(svc: &Service, slices: &[&[Local]], prefixes: &[IpNet]) -> ServiceDesired {
    let mut out = ServiceDesired {
        sharing: sharing_key(svc).map(str::to_owned),
        ..ServiceDesired::default()
    };
    let mut vips = BTreeSet::new();
    for (ip, source) in candidate_vips(svc) {
        match ip.parse::<IpAddr>() {
            Err(_) => out
                .refusals
                .push(format!("{source} {ip:?} is not an IP address")),
            Ok(ip) if !prefixes.iter().any(|p| p.contains(&ip)) => out.refusals.push(format!(
                "{source} {ip} is outside every prefix this node manages ({})",
                list(prefixes)
            )),
            Ok(ip) => {
                vips.insert(ip);
            }
        }
    }
    if vips.is_empty() {
        return out;
    }
    let endpoints = slices.iter().copied().flatten();
    let affinity_timeout_s = client_ip_affinity(svc);
    for port in svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
    {
        let proto = match parse_proto(port.protocol.as_deref().unwrap_or("TCP")) {
            Some(proto) => proto,
            None => {
                let other = port.protocol.as_deref().unwrap_or_default();
                out.refusals.push(format!(
                    "port {}: protocol {other} is not supported",
                    port.port
                ));
                continue;
            }
        };
        let Ok(svc_port) = u16::try_from(port.port) else {
            out.refusals
                .push(format!("port {} is not a valid port number", port.port));
            continue;
        };
        let name = port.name.clone().unwrap_or_default();
        let mut backends = Backends {
            affinity_timeout_s,
            ..Backends::default()
        };
        for local in endpoints
            .clone()
            .filter(|l| l.port_name == name && l.proto == proto)
        {
            match local.ready {
                true => backends.ready.insert(local.endpoint),
                false => backends.terminating.insert(local.endpoint),
            };
        }
        if proto == Proto::Sctp {
            sctp_own_port(&mut backends, svc_port, &mut out.refusals);
        }
        // Named both ways (two slices disagreeing while they update): ready wins.
        let ready = backends.ready.clone();
        backends.terminating.retain(|e| !ready.contains(e));
        for &vip in &vips {
            let id = FrontendId {
                vip,
                port: svc_port,
                proto,
            };
            // A VIP is served by the endpoints of its own family (no NAT46/64).
            let family = |e: &Endpoint| e.addr.is_ipv4() == vip.is_ipv4();
            let own = Backends {
                ready: backends.ready.iter().copied().filter(family).collect(),
                terminating: backends
                    .terminating
                    .iter()
                    .copied()
                    .filter(family)
                    .collect(),
                affinity_timeout_s,
            };
            out.claims.push((id, own));
        }
    }
    // Kept for every Service until it changes: no spare capacity.
    out.claims.shrink_to_fit();
    out
}

/// Combines per-Service results, given in Service order. The first Service to name a VIP has
/// it; a later one shares it only when both carry the same sharing key, and is refused for that
/// VIP otherwise. Of the Services on a VIP, the first to claim a frontend serves it, later ones
/// are refused for it. A frontend is wanted while it has endpoints, ready or terminating; its
/// VIP only while one of its frontends has a ready one.
pub fn merge<'a>(parts: impl IntoIterator<Item = (&'a ServiceKey, &'a ServiceDesired)>) -> Desired {
    let mut out = Desired::default();
    let mut owner: BTreeMap<FrontendId, &ServiceKey> = BTreeMap::new();
    let mut vip_owner: BTreeMap<IpAddr, (&ServiceKey, Option<&str>)> = BTreeMap::new();
    for (key, part) in parts {
        let refuse = |reason: String| Refusal {
            service: key.clone(),
            reason,
        };
        out.refusals
            .extend(part.refusals.iter().cloned().map(refuse));
        for (id, backends) in &part.claims {
            let (first, first_sharing) = *vip_owner
                .entry(id.vip)
                .or_insert((key, part.sharing.as_deref()));
            if !may_share(first, first_sharing, key, part) {
                out.refusals.push(refuse(not_shared(id.vip, first)));
                continue;
            }
            if let Some(other) = owner.get(id) {
                if *other != key {
                    out.refusals.push(refuse(format!(
                        "{id} is already served for Service {other}"
                    )));
                }
                continue;
            }
            owner.insert(*id, key);
            if !backends.is_empty() {
                out.frontends.insert(*id, backends.clone());
            }
            // Advertised only while a frontend has a Ready endpoint: terminating ones drain.
            if !backends.ready.is_empty() {
                out.addresses.insert(id.vip);
            }
        }
    }
    out.refusals.sort();
    out.refusals.dedup();
    out
}

/// Whether Service `key` may serve frontends of a VIP that `first` (with sharing key
/// `first_sharing`) named before it.
pub(crate) fn may_share(
    first: &ServiceKey,
    first_sharing: Option<&str>,
    key: &ServiceKey,
    part: &ServiceDesired,
) -> bool {
    first == key || (first_sharing.is_some() && part.sharing.as_deref() == first_sharing)
}

pub(crate) fn not_shared(vip: IpAddr, first: &ServiceKey) -> String {
    format!(
        "{vip} is used by Service {first}; Services share a VIP only when both carry the annotation {ALLOW_SHARED_IP} with the same value"
    )
}

pub(crate) fn service_key(svc: &Service) -> Option<ServiceKey> {
    Some(ServiceKey {
        namespace: svc.metadata.namespace.clone()?,
        name: svc.metadata.name.clone()?,
    })
}

fn candidate_vips(svc: &Service) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref());
    for ing in ingress
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some(ip) = &ing.ip {
            out.push((ip.clone(), "status.loadBalancer.ingress ip"));
        }
    }
    // spec.loadBalancerIP and the request annotations count only once the allocator granted
    // them into the status.
    if let Some(spec) = &svc.spec {
        for ip in spec.external_ips.iter().flatten() {
            out.push((ip.clone(), "spec.externalIPs"));
        }
    }
    // The same address named twice is one VIP.
    let mut seen = BTreeSet::new();
    out.retain(|(ip, _)| seen.insert(ip.clone()));
    out
}

/// Default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours), as in Kubernetes.
const DEFAULT_AFFINITY_TIMEOUT_S: u32 = 10_800;

/// The affinity timeout of a Service with `sessionAffinity: ClientIP`.
fn client_ip_affinity(svc: &Service) -> Option<u32> {
    let spec = svc.spec.as_ref()?;
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return None;
    }
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
        .and_then(|t| u32::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_S);
    Some(timeout)
}

/// One port of one endpoint on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    port_name: String,
    proto: Proto,
    endpoint: Endpoint,
    /// Ready (new flows) or terminating but still serving (pinned flows only).
    ready: bool,
}

/// The endpoints of `slice` on `node` that are Ready, or terminating but still serving, for
/// every port of the slice, in the slice's address family (a Service's IPv4 and IPv6 slices both
/// count).
fn local_endpoints(slice: &EndpointSlice, node: &str) -> Vec<Local> {
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

fn parse_proto(p: &str) -> Option<Proto> {
    match p {
        "TCP" => Some(Proto::Tcp),
        "UDP" => Some(Proto::Udp),
        "SCTP" => Some(Proto::Sctp),
        _ => None,
    }
}

/// SCTP is forwarded to the Service's own port only: its CRC32c covers the ports, and XDP
/// cannot afford to recompute it over the whole packet after a port rewrite. Endpoints on
/// another port are left out, with a refusal that says how to fix the Service.
fn sctp_own_port(backends: &mut Backends, port: u16, refusals: &mut Vec<String>) {
    let mut other = None;
    for set in [&mut backends.ready, &mut backends.terminating] {
        set.retain(|e| {
            let keep = e.port == port;
            if !keep {
                other.get_or_insert(e.port);
            }
            keep
        });
    }
    if let Some(other) = other {
        refusals.push(format!(
            "port {port}/SCTP: endpoints listen on port {other}; l3lb forwards SCTP without \
             changing the port (it cannot recompute SCTP's CRC32c), so set targetPort to {port}"
        ));
    }
}

fn list(prefixes: &[IpNet]) -> String {
    prefixes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod endpoint_tests;
