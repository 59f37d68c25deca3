//! Plain data shared by the pure control-plane stages (desired, plan) and the executor.
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
};

/// Transport protocol of a frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    /// Forwarded to the Service's own port only (see `desired`).
    Sctp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => l3lb_common::PROTO_TCP,
            Proto::Udp => l3lb_common::PROTO_UDP,
            Proto::Sctp => l3lb_common::PROTO_SCTP,
        }
    }

    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            l3lb_common::PROTO_TCP => Some(Proto::Tcp),
            l3lb_common::PROTO_UDP => Some(Proto::Udp),
            l3lb_common::PROTO_SCTP => Some(Proto::Sctp),
            _ => None,
        }
    }
}

impl Proto {
    /// Lower-case name, as in `l3lb stats` and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// VIP:port/proto as clients address it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrontendId {
    pub vip: IpAddr,
    pub port: u16,
    pub proto: Proto,
}

impl FrontendId {
    /// Every frontend of `vip`, as a range (ids order by VIP first).
    pub fn vip_range(vip: IpAddr) -> std::ops::RangeInclusive<FrontendId> {
        let at = |port, proto| FrontendId { vip, port, proto };
        at(0, Proto::Tcp)..=at(u16::MAX, Proto::Sctp)
    }
}

impl fmt::Display for FrontendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.vip {
            IpAddr::V4(v) => write!(f, "{v}:{}/{}", self.port, self.proto),
            IpAddr::V6(v) => write!(f, "[{v}]:{}/{}", self.port, self.proto),
        }
    }
}

/// A local endpoint: pod address and (resolved) target port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(v) => write!(f, "{v}:{}", self.port),
            IpAddr::V6(v) => write!(f, "[{v}]:{}", self.port),
        }
    }
}

/// A sorted set of endpoints, as a Vec sized to fit. A frontend has few local endpoints, and a
/// BTreeSet allocates a node of about 240 bytes for even one; the daemon holds several copies of
/// every frontend's set (desired state, the executor's record of the node), so at 10,000
/// frontends that was megabytes per copy.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointSet(Vec<Endpoint>);

impl EndpointSet {
    /// Adds `e`; false if it was there.
    pub fn insert(&mut self, e: Endpoint) -> bool {
        match self.0.binary_search(&e) {
            Ok(_) => false,
            Err(at) => {
                self.0.reserve_exact(1);
                self.0.insert(at, e);
                true
            }
        }
    }

    pub fn contains(&self, e: &Endpoint) -> bool {
        self.0.binary_search(e).is_ok()
    }

    pub fn retain(&mut self, keep: impl FnMut(&Endpoint) -> bool) {
        self.0.retain(keep);
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Endpoint> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Endpoint> for EndpointSet {
    fn from_iter<I: IntoIterator<Item = Endpoint>>(iter: I) -> Self {
        let mut v: Vec<Endpoint> = iter.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        v.shrink_to_fit();
        Self(v)
    }
}

impl<'a> IntoIterator for &'a EndpointSet {
    type Item = &'a Endpoint;
    type IntoIter = std::slice::Iter<'a, Endpoint>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for EndpointSet {
    type Item = Endpoint;
    type IntoIter = std::vec::IntoIter<Endpoint>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<const N: usize> From<[Endpoint; N]> for EndpointSet {
    fn from(endpoints: [Endpoint; N]) -> Self {
        endpoints.into_iter().collect()
    }
}

impl From<BTreeSet<Endpoint>> for EndpointSet {
    fn from(set: BTreeSet<Endpoint>) -> Self {
        set.into_iter().collect()
    }
}

/// A frontend's local endpoints as the datapath serves them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backends {
    /// Ready: new flows go to these.
    pub ready: EndpointSet,
    /// Terminating but still serving: their pinned flows go on, they get no new ones.
    pub terminating: EndpointSet,
    /// `sessionAffinity: ClientIP` with this timeout (seconds); `None`: no affinity.
    pub affinity_timeout_s: Option<u32>,
}

impl Backends {
    /// No endpoint at all, ready or terminating.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.terminating.is_empty()
    }

    /// Endpoints, ready and terminating.
    pub fn len(&self) -> usize {
        self.ready.len() + self.terminating.len()
    }
}

/// Every endpoint ready, no affinity.
impl From<BTreeSet<Endpoint>> for Backends {
    fn from(ready: BTreeSet<Endpoint>) -> Self {
        Backends {
            ready: ready.into(),
            ..Backends::default()
        }
    }
}

impl<const N: usize> From<[Endpoint; N]> for Backends {
    fn from(ready: [Endpoint; N]) -> Self {
        BTreeSet::from(ready).into()
    }
}

impl fmt::Display for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (e, note) in self
            .ready
            .iter()
            .map(|e| (e, ""))
            .chain(self.terminating.iter().map(|e| (e, " (terminating)")))
        {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{e}{note}")?;
        }
        if let Some(t) = self.affinity_timeout_s {
            write!(f, " affinity ClientIP {t}s")?;
        }
        Ok(())
    }
}

/// Backend sets per frontend; the same shape is desired and observed.
pub type Frontends = BTreeMap<FrontendId, Backends>;

/// Namespace/name of a Service, ordered so passes are deterministic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    /// The key of `svc`, if it has a namespace and a name.
    pub fn of(svc: &k8s_openapi::api::core::v1::Service) -> Option<Self> {
        Some(Self {
            namespace: svc.metadata.namespace.clone()?,
            name: svc.metadata.name.clone()?,
        })
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why (part of) a Service is not served by this node. Reported once as a Warning Event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    pub service: ServiceKey,
    pub reason: String,
}

/// What this node should have: frontends in the maps and VIPs on the interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub frontends: Frontends,
    pub addresses: BTreeSet<IpAddr>,
    pub refusals: Vec<Refusal>,
}

/// What this node has: frontends in the maps and addresses inside the managed prefixes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub frontends: Frontends,
    pub addresses: BTreeSet<IpAddr>,
    /// Uplinks whose programs are gone or replaced (and could not be re-attached), with why.
    pub not_forwarding: BTreeMap<String, String>,
    pub settings: DatapathSettings,
}

/// The datapath's settings besides its frontends: the prefixes VIPs come from (XDP passes
/// anything else untouched, without a lookup) and the interfaces (by index) translated frames
/// may be redirected into (none: every translated packet takes the kernel's forwarding path).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatapathSettings {
    pub prefixes: BTreeSet<ipnet::IpNet>,
    pub redirect_targets: BTreeSet<u32>,
}
