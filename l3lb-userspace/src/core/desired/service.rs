//! One LoadBalancer Service's share of the desired state: its VIPs (grants, and the externalIPs
//! the policy allows), its ports and, for each, the local endpoints the node trusts, with the
//! refusals of whatever it cannot serve. Pure.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;

use super::{
    Scope, ServiceDesired,
    local::{Local, parse_proto},
    trust::{self, distrust},
};
use crate::core::{
    annotations::sharing_key,
    model::{Backends, Endpoint, FrontendId, Proto},
    ownership::{Basis, ExternalIps},
    pool::Pool,
};

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
