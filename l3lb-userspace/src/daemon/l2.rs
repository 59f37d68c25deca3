//! L2 mode on the node, once per pass: choose the announcer of every L2 address
//! ([`crate::core::l2`]) from the Services' Ready nodes and the nodes' Leases, keep L2 addresses
//! off the host and FRR, and program where this node answers ARP/NDP. In the order BGP mode
//! keeps for addresses and maps: the answers this node gives up are withdrawn before the pass
//! removes their frontends ([`L2::withdraw`]); new answers are given, and announced with a
//! gratuitous ARP / unsolicited NA, only after the pass programmed the frontends
//! ([`L2::answer`]).
//!
//! Nothing runs (no Lease, no watch) until an L2 pool exists.
use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use kube::{Api, Client};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{
    core::{
        desired::explain::{Explanation, Line},
        desired::{cache::DesiredCache, slices::SliceIndex},
        l2::{
            Announcers, Changes, L2Service, View, Why, changes, l2_addresses, l2_desired,
            responder_entries, round, why,
        },
        model::{Desired, ServiceKey},
        pool::Pool,
    },
    k8s::{
        events::announcements::VipEvent,
        l2_lease::Renewer,
        trigger::Trigger,
        watch::leases::{self, NodeLeases},
    },
    metrics::Metrics,
    node::{
        announce::{SolicitedGroups, link},
        datapath::neigh::{Responder, ResponderTable},
    },
};

/// The Lease and its watch, from the first L2 pool on.
struct Running {
    leases: NodeLeases,
    excluded: Arc<AtomicBool>,
    _renewer: AbortOnDrop,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One round's decisions, between [`L2::withdraw`] and [`L2::answer`].
pub struct Round {
    changes: Changes,
    /// The addresses to announce (gratuitous ARP / unsolicited NA) once answered: those taken
    /// over, and on the first fresh round after a start all this node announces (it may have
    /// been replaced while it was down, and is taking them back).
    announce: BTreeSet<IpAddr>,
    /// Where this node answers after the round.
    responders: BTreeMap<Responder, [u8; 6]>,
    /// The Services of each L2 address (for Events).
    owners: BTreeMap<IpAddr, Vec<ServiceKey>>,
}

impl Round {
    /// The addresses whose announcer changed to or from this node: their frontends are planned
    /// again this pass, though nothing in their Services changed.
    pub fn moved(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.changes
            .taken
            .keys()
            .chain(self.changes.released.keys())
            .copied()
    }
}

pub struct L2 {
    node: String,
    uplinks: Vec<String>,
    client: Client,
    namespace: String,
    changed: Arc<Trigger>,
    metrics: Metrics,
    running: Option<Running>,
    /// The announcers as last decided.
    announcers: Announcers,
    /// Where this node answers, as last programmed.
    answering: BTreeMap<Responder, [u8; 6]>,
    /// Pool interfaces already warned about (not an uplink: no XDP program there).
    warned: BTreeSet<String>,
    /// What the last round decided from, for `l3lb explain`.
    inputs: Inputs,
    /// Whether a round has decided from a fresh view since the start.
    decided: bool,
    /// The multicast groups IPv6 Solicitations for the answered addresses are sent to.
    groups: SolicitedGroups,
}

/// A round's inputs: who was alive and excluded, and each address's Ready nodes.
#[derive(Default)]
struct Inputs {
    alive: BTreeSet<String>,
    excluded: BTreeSet<String>,
    ready: BTreeMap<IpAddr, BTreeSet<String>>,
}

impl L2 {
    /// `answering`: the responder entries the pinned maps hold from a previous run. Until this
    /// node's view is fresh, it keeps announcing those addresses (a restart loses no traffic).
    pub fn new(
        client: Client,
        namespace: String,
        config: &crate::core::config::Config,
        changed: Arc<Trigger>,
        metrics: Metrics,
        answering: BTreeMap<Responder, [u8; 6]>,
    ) -> Self {
        let announcers = answering
            .keys()
            .map(|r| (r.address, config.node_name.clone()))
            .collect();
        Self {
            node: config.node_name.clone(),
            uplinks: config.uplinks.clone(),
            client,
            namespace,
            changed,
            metrics,
            running: None,
            announcers,
            answering,
            warned: BTreeSet::new(),
            inputs: Inputs::default(),
            decided: false,
            groups: SolicitedGroups::default(),
        }
    }

    /// When the next live node turns dead unless its Lease changes: judge again then.
    pub fn next_expiry(&self) -> Option<Duration> {
        self.running.as_ref()?.leases.next_expiry()
    }

    /// This round's announcers and `want` as this node serves it. `excluded`: whether this node
    /// is excluded from load balancing now.
    pub fn decide<'a>(
        &mut self,
        want: &'a Desired,
        pools: &[Pool],
        cache: &DesiredCache,
        slices: &SliceIndex,
        excluded: bool,
    ) -> (Cow<'a, Desired>, Option<Round>) {
        let any_l2 = pools.iter().any(Pool::is_l2);
        if !any_l2 && self.answering.is_empty() && self.announcers.is_empty() {
            return (Cow::Borrowed(want), None);
        }
        // With no L2 pool left nothing is announced: a fresh, empty view withdraws it all.
        let (view, excluded_nodes) = match any_l2 {
            true => self.judge(excluded),
            false => (
                View {
                    alive: BTreeSet::new(),
                    fresh: true,
                },
                BTreeSet::new(),
            ),
        };
        let (services, owners) = l2_services(cache, slices, pools);
        let before = std::mem::take(&mut self.announcers);
        self.announcers = round(&before, &services, &excluded_nodes, &view);
        self.inputs = Inputs {
            ready: services
                .iter()
                .flat_map(|s| s.addresses.iter().map(|a| (*a, s.ready_nodes.clone())))
                .collect(),
            alive: view.alive,
            excluded: excluded_nodes,
        };
        let changes = changes(&before, &self.announcers, &self.node);
        let first_fresh = view.fresh && !self.decided;
        self.decided |= view.fresh;
        let announce = match first_fresh {
            true => self
                .announcers
                .iter()
                .filter(|(_, n)| **n == self.node)
                .map(|(a, _)| *a)
                .collect(),
            false => changes.taken.keys().copied().collect(),
        };
        let l2 = l2_addresses(
            want.addresses
                .iter()
                .chain(want.frontends.keys().map(|f| &f.vip))
                .chain(self.announcers.keys()),
            pools,
        );
        let responders = self.responders(pools);
        let desired = Cow::Owned(l2_desired(want, &l2, &self.announcers, &self.node));
        (
            desired,
            Some(Round {
                changes,
                announce,
                responders,
                owners,
            }),
        )
    }

    /// Starts this node's Lease and the watch on the others' (once), and judges who is alive
    /// and who excluded now.
    fn judge(&mut self, excluded: bool) -> (View, BTreeSet<String>) {
        let running = self.running.get_or_insert_with(|| {
            info!(namespace = %self.namespace, "an L2 pool exists: renewing this node's Lease and watching the others'");
            let excluded = Arc::new(AtomicBool::new(false));
            let renewer = Renewer::new(
                self.client.clone(),
                &self.namespace,
                &self.node,
                excluded.clone(),
            );
            Running {
                leases: leases::spawn(
                    Api::namespaced(self.client.clone(), &self.namespace),
                    self.changed.clone(),
                    self.metrics.clone(),
                ),
                excluded,
                _renewer: AbortOnDrop(renewer.spawn()),
            }
        });
        running.excluded.store(excluded, Ordering::Relaxed);
        let (view, mut excluded_nodes) = running.leases.judge(&self.node);
        if excluded {
            excluded_nodes.insert(self.node.clone());
        }
        (view, excluded_nodes)
    }

    /// Before the pass: stop answering where this node no longer announces.
    pub fn withdraw(&mut self, round: &Round, datapath: &mut impl ResponderTable) {
        let gone: Vec<Responder> = self
            .answering
            .keys()
            .filter(|r| !round.responders.contains_key(r))
            .copied()
            .collect();
        for r in gone {
            match datapath.remove_responder(r) {
                Ok(()) => {
                    self.answering.remove(&r);
                }
                Err(error) => {
                    warn!(address = %r.address, ifindex = r.ifindex, %error, "cannot stop answering ARP/NDP; retrying next pass")
                }
            }
        }
        self.join_groups();
    }

    /// After the pass: answer where this node now announces, announce each address taken over
    /// with a gratuitous ARP / unsolicited NA, and return the Events.
    pub fn answer(&mut self, round: Round, datapath: &mut impl ResponderTable) -> Vec<VipEvent> {
        for (r, mac) in &round.responders {
            if self.answering.get(r) == Some(mac) {
                continue;
            }
            match datapath.set_responder(*r, *mac) {
                Ok(()) => {
                    self.answering.insert(*r, *mac);
                }
                Err(error) => {
                    warn!(address = %r.address, ifindex = r.ifindex, %error, "cannot answer ARP/NDP; retrying next pass")
                }
            }
        }
        for (r, mac) in self
            .answering
            .iter()
            .filter(|(r, _)| round.announce.contains(&r.address))
        {
            if let Err(error) = datapath.announce(*r, *mac) {
                warn!(address = %r.address, ifindex = r.ifindex, %error, "cannot send the takeover announcement (gratuitous ARP / unsolicited NA; needs CAP_NET_RAW); neighbours move when their entry goes stale");
            }
        }
        self.join_groups();
        let mine = self
            .answering
            .keys()
            .map(|r| r.address)
            .collect::<BTreeSet<_>>();
        self.metrics.l2_addresses_announced.set(mine.len() as i64);
        for (address, from) in &round.changes.taken {
            info!(%address, from = from.as_deref().unwrap_or("-"), "L2 address taken: answering ARP/NDP for it and forwarding it");
        }
        for (address, to) in &round.changes.released {
            info!(%address, to = to.as_deref().unwrap_or("-"), "L2 address released: no longer answering or forwarding it");
        }
        events(&self.node, &round)
    }

    fn join_groups(&mut self) {
        if let Err(error) = self
            .groups
            .set(self.answering.keys().map(|r| (r.ifindex, r.address)))
        {
            warn!(%error, "cannot join the solicited-node multicast group of an answered IPv6 address; a NIC that filters multicast may not pass its Solicitations");
        }
    }

    /// Rewrites the explanation's lines about L2 addresses: they are never on the interface;
    /// what counts is who announces them, and whether this node answers for them.
    pub fn explain(&self, explanation: &mut Explanation) {
        for vip in &mut explanation.vips {
            let Some(ready) = self.inputs.ready.get(&vip.vip) else {
                continue;
            };
            let why = why(
                &self.node,
                vip.vip,
                &self.announcers,
                ready,
                &self.inputs.excluded,
                &self.inputs.alive,
            );
            let answering = self.answering.keys().any(|r| r.address == vip.vip);
            vip.lines.retain(|l| l.check != "address");
            vip.lines.push(Line {
                check: "l2".to_owned(),
                ok: (why == Why::Announces) == answering,
                text: format!(
                    "L2 pool address: {why}{}",
                    match (why == Why::Announces, answering) {
                        (true, false) => "; not answering ARP/NDP yet, the next pass does",
                        (false, true) => "; still answering ARP/NDP, the next pass stops",
                        _ => "",
                    }
                ),
            });
            vip.announced = answering && why == Why::Announces;
        }
    }

    /// This node's responder entries for the current announcers: each address it announces on
    /// each of its pool's interfaces that carries l3lb's XDP program (an uplink).
    fn responders(&mut self, pools: &[Pool]) -> BTreeMap<Responder, [u8; 6]> {
        let mut out = BTreeMap::new();
        for (interface, addresses) in
            responder_entries(&self.announcers, &self.node, pools, &self.uplinks)
        {
            if !self.uplinks.contains(&interface) {
                if self.warned.insert(interface.clone()) {
                    warn!(%interface, uplinks = ?self.uplinks, "an L2 pool names an interface that is not an uplink (--uplink): l3lb's XDP program is not attached there, so it cannot answer there");
                }
                continue;
            }
            let (ifindex, mac) = match link(&interface) {
                Ok(l) => l,
                Err(error) => {
                    warn!(%interface, %error, "cannot read the interface's index and MAC address; not answering there this pass");
                    continue;
                }
            };
            for address in addresses {
                out.insert(Responder { ifindex, address }, mac);
            }
        }
        out
    }
}

/// The L2 Services, one per Service and family: the granted addresses inside L2 pools, and the
/// nodes with a Ready endpoint in that family; with the Services of each address.
fn l2_services(
    cache: &DesiredCache,
    slices: &SliceIndex,
    pools: &[Pool],
) -> (Vec<L2Service>, BTreeMap<IpAddr, Vec<ServiceKey>>) {
    let mut services = Vec::new();
    let mut owners: BTreeMap<IpAddr, Vec<ServiceKey>> = BTreeMap::new();
    for (key, granted) in cache.granted() {
        let l2 = l2_addresses(&granted, pools);
        for v6 in [false, true] {
            let addresses: Vec<IpAddr> = l2.iter().filter(|a| a.is_ipv6() == v6).copied().collect();
            if addresses.is_empty() {
                continue;
            }
            for a in &addresses {
                owners.entry(*a).or_default().push(key.clone());
            }
            services.push(L2Service {
                key: key.clone(),
                addresses,
                ready_nodes: slices.ready_nodes(key, v6),
            });
        }
    }
    (services, owners)
}

/// `L2AddressTaken` / `L2AddressReleased` on each Service of each address this node took over
/// or gave up in `round`.
fn events(node: &str, round: &Round) -> Vec<VipEvent> {
    let name = |n: &Option<String>| n.clone().unwrap_or_else(|| "no node".to_owned());
    let mut out = Vec::new();
    for (address, before) in &round.changes.taken {
        for service in round.owners.get(address).into_iter().flatten() {
            out.push(VipEvent {
                service: service.clone(),
                reason: "L2AddressTaken",
                note: format!(
                    "node {node} announces {address} (answers ARP/NDP and forwards it), taking over from {}",
                    name(before)
                ),
            });
        }
    }
    for (address, after) in &round.changes.released {
        for service in round.owners.get(address).into_iter().flatten() {
            out.push(VipEvent {
                service: service.clone(),
                reason: "L2AddressReleased",
                note: format!(
                    "node {node} no longer announces {address}; now announced by {}",
                    name(after)
                ),
            });
        }
    }
    out
}
