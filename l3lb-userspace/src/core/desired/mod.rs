//! Desired state: which frontends and VIPs this node should serve. A pure function of the watched
//! Services and EndpointSlices and the [`Scope`]: the node's name and facts, the managed prefixes,
//! the class, the pools and the external IP policy.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use ipnet::IpNet;
use k8s_openapi::{
    api::{core::v1::Service, discovery::v1::EndpointSlice},
    jiff::Timestamp,
};

use crate::core::{
    annotations::sharing_key,
    class::ClassFilter,
    model::{Backends, Desired, Endpoint, FrontendId, Proto, ServiceKey},
    ownership::{Basis, Claimant, ExternalIps},
    pool::Pool,
};

pub mod cache;
mod merged;
pub mod slices;
pub mod trust;

use merged::Merged;
use slices::SliceIndex;
use trust::{NodeFacts, distrust};
pub mod node;

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What desired state is computed against, besides the Services and EndpointSlices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// This node's name, as in EndpointSlice endpoints' `nodeName`.
    pub node: String,
    pub prefixes: Vec<IpNet>,
    pub class: ClassFilter,
    /// Which `spec.externalIPs` are served.
    pub external_ips: ExternalIps,
    /// The validated L3lbPools (which externalIPs a Service may have).
    pub pools: Vec<Pool>,
    pub facts: NodeFacts,
    /// Why the node is excluded from load balancing, if it is: it then wants no VIP.
    pub exclusion: Option<node::Exclusion>,
}

impl Scope {
    /// No pools, nothing known of the node, externalIPs only from pools.
    pub fn new(node: &str, prefixes: &[IpNet], class: &ClassFilter) -> Self {
        Self {
            node: node.to_owned(),
            prefixes: prefixes.to_vec(),
            class: class.clone(),
            external_ips: ExternalIps::default(),
            pools: Vec::new(),
            facts: NodeFacts::default(),
            exclusion: None,
        }
    }
}

/// Computes what this node should serve from scratch (the daemon keeps it up to date
/// incrementally with [`cache::DesiredCache`], which gives the same result).
///
/// The Services are the LoadBalancer Services the class owns. A Service's VIPs are
/// `status.loadBalancer.ingress[].ip` (what the allocator granted; a requested address counts
/// once it is there) and the `spec.externalIPs` the policy allows, kept when inside a prefix;
/// who serves a VIP that several Services name is [`crate::core::ownership`]'s rule. A VIP is wanted
/// when at least one of its frontends has a Ready endpoint on the node; a frontend whose
/// endpoints there are all terminating (not Ready, still serving) is kept for its pinned flows,
/// without its VIP. Endpoints the node must not trust ([`trust`]) are left out. An excluded node
/// ([`node::exclusion`]) wants no VIP at all, but keeps its frontends so flows drain.
pub fn desired(services: &[&Service], slices: &[&EndpointSlice], scope: &Scope) -> Desired {
    let mut index = SliceIndex::new(&scope.node);
    for slice in slices {
        index.apply(slice);
    }
    let parts: BTreeMap<ServiceKey, ServiceDesired> = services
        .iter()
        .filter(|s| scope.class.owns(s))
        .filter_map(|s| {
            let key = ServiceKey::of(s)?;
            let own: Vec<&[Local]> = index.endpoints_of(&key).collect();
            let part = service_desired(s, &own, scope);
            Some((key, part))
        })
        .collect();
    let mut merged = Merged::default();
    merged.update(&parts, parts.keys().map(|k| (k.clone(), None)).collect());
    node::exclude(merged.desired(), scope.exclusion).into_owned()
}

/// One Service's share of the desired state, before frontends that several Services claim are
/// resolved (`merged`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceDesired {
    /// Every frontend the Service names, in order, with its local backends (maybe none).
    claims: Vec<(FrontendId, Backends)>,
    refusals: Vec<String>,
    /// The key under which it shares its VIPs, if it opts in.
    sharing: Option<String>,
    created: Option<Timestamp>,
    /// Its VIPs granted by the allocator (in its status); the others are externalIPs.
    granted: Vec<IpAddr>,
    /// Local endpoint addresses left out as untrusted.
    pub endpoints_refused: usize,
}

impl ServiceDesired {
    /// This Service's claim on `vip`, for [`crate::core::ownership`].
    fn claimant<'a>(&'a self, key: &'a ServiceKey, vip: IpAddr) -> Claimant<'a> {
        Claimant {
            key,
            basis: match self.granted.contains(&vip) {
                true => Basis::Granted,
                false => Basis::External,
            },
            created: self.created,
            sharing: self.sharing.as_deref(),
        }
    }
}

/// What one LoadBalancer Service wants, given its own EndpointSlices' local endpoints.
pub fn service_desired(svc: &Service, slices: &[&[Local]], scope: &Scope) -> ServiceDesired {
    let prefixes = &scope.prefixes[..];
    let mut out = ServiceDesired {
        sharing: sharing_key(svc).map(str::to_owned),
        created: svc.metadata.creation_timestamp.as_ref().map(|t| t.0),
        ..ServiceDesired::default()
    };
    let mut vips = BTreeSet::new();
    for (ip, basis) in candidate_vips(svc) {
        match ip.parse::<IpAddr>() {
            Err(_) => out
                .refusals
                .push(format!("{basis} {ip:?} is not an IP address")),
            Ok(ip) if !prefixes.iter().any(|p| p.contains(&ip)) => out.refusals.push(format!(
                "{basis} {ip} is outside every prefix this node manages ({})",
                list(prefixes)
            )),
            Ok(ip) if basis == Basis::External => match external_allowed(svc, ip, scope) {
                Ok(()) => {
                    vips.insert(ip);
                }
                Err(reason) => out.refusals.push(reason),
            },
            Ok(ip) => {
                vips.insert(ip);
                out.granted.push(ip);
            }
        }
    }
    if vips.is_empty() {
        return out;
    }
    let mut distrusted = BTreeMap::new();
    let trusted: Vec<&Local> = slices
        .iter()
        .copied()
        .flatten()
        .filter(
            |l| match distrust(l.endpoint.addr, &scope.facts, prefixes) {
                None => true,
                Some(why) => {
                    distrusted.insert(l.endpoint.addr, why);
                    false
                }
            },
        )
        .collect();
    out.endpoints_refused = distrusted.len();
    out.refusals
        .extend(trust::refusals(&distrusted, &scope.facts));
    let endpoints = trusted.iter().copied();
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

/// The addresses a Service names as VIPs, with what each claim rests on. An address in both its
/// status and its externalIPs is a grant.
fn candidate_vips(svc: &Service) -> Vec<(String, Basis)> {
    let mut out = Vec::new();
    let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref());
    for ing in ingress
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some(ip) = &ing.ip {
            out.push((ip.clone(), Basis::Granted));
        }
    }
    // spec.loadBalancerIP and the request annotations count only once the allocator granted
    // them into the status.
    if let Some(spec) = &svc.spec {
        for ip in spec.external_ips.iter().flatten() {
            out.push((ip.clone(), Basis::External));
        }
    }
    // The same address named twice is one VIP.
    let mut seen = BTreeSet::new();
    out.retain(|(ip, _)| seen.insert(ip.clone()));
    out
}

/// Whether the external IP policy lets `svc` have `ip` (inside a prefix) from its externalIPs.
fn external_allowed(svc: &Service, ip: IpAddr, scope: &Scope) -> Result<(), String> {
    let what = format!("{} {ip}", Basis::External);
    match scope.external_ips {
        ExternalIps::Prefix => Ok(()),
        ExternalIps::None => Err(format!(
            "{what} is not served: this l3lb serves no externalIPs (--external-ips=none)"
        )),
        ExternalIps::Pool => {
            let namespace = svc.metadata.namespace.as_deref().unwrap_or_default();
            let labels = svc.metadata.labels.clone().unwrap_or_default();
            let containing: Vec<&Pool> = scope.pools.iter().filter(|p| p.contains(&ip)).collect();
            if containing.iter().any(|p| p.allows(namespace, &labels)) {
                return Ok(());
            }
            let names: Vec<&str> = containing.iter().map(|p| p.name.as_str()).collect();
            Err(match names.is_empty() {
                true => format!(
                    "{what} is in no L3lbPool; l3lb serves an external IP only inside a pool that \
                     allows the Service (--external-ips=pool)"
                ),
                false => format!(
                    "{what} is in pool {}, which does not allow this Service (namespaces or \
                     serviceSelector)",
                    names.join(", ")
                ),
            })
        }
    }
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

#[cfg(test)]
mod ownership_tests;
