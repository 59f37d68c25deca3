//! The flow tables: pins (client -> VIP:port flows to their backend slot) and the reply path's
//! translations, each for established flows and for new ones (one client packet so far). XDP
//! fills them; reading them is for tests and diagnostics.
use std::collections::BTreeMap;

use l3lb_common::{
    ConnKeyV4, ConnKeyV6, FlowKeyV4, FlowKeyV6, FlowNatV4, FlowNatV6, MAP_CONNS_V4, MAP_CONNS_V6,
    MAP_FLOWS_V4, MAP_FLOWS_V6, MAP_NEW_CONNS_V4, MAP_NEW_CONNS_V6, MAP_NEW_FLOWS_V4,
    MAP_NEW_FLOWS_V6, Pin,
};

use super::{Datapath, DatapathError, family::Fam, map_err, remove_absent_ok};
use crate::core::model::Endpoint;

impl Datapath {
    /// Every entry of hash map `name`.
    fn entries<K: aya::Pod + Ord, V: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<BTreeMap<K, V>, DatapathError> {
        self.hash::<K, V>(name)?
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(name, "iterate"))
    }

    /// The pins of map `name` whose backend is still there, as the endpoints they go to.
    fn live_pins<K: aya::Pod + Ord>(
        &self,
        name: &'static str,
        fam: Fam,
    ) -> Result<BTreeMap<K, Endpoint>, DatapathError> {
        let mut out = BTreeMap::new();
        for (key, pin) in self.entries::<K, Pin>(name)? {
            let b = self.read_slot(fam, pin.backend)?;
            if b.in_use() && b.gen_ == pin.gen_ {
                out.insert(key, b.endpoint);
            }
        }
        Ok(out)
    }

    /// Every established translated flow (reply key -> VIP:port).
    pub fn flows(&self) -> Result<BTreeMap<FlowKeyV4, FlowNatV4>, DatapathError> {
        self.entries(MAP_FLOWS_V4)
    }

    /// Every new flow's reply translation (reply key -> VIP:port).
    pub fn new_flows(&self) -> Result<BTreeMap<FlowKeyV4, FlowNatV4>, DatapathError> {
        self.entries(MAP_NEW_FLOWS_V4)
    }

    /// Records an established translated flow by hand (tests).
    pub fn insert_flow(&mut self, key: FlowKeyV4, nat: &FlowNatV4) -> Result<(), DatapathError> {
        self.hash_mut::<FlowKeyV4, FlowNatV4>(MAP_FLOWS_V4)?
            .insert(key, nat, 0)
            .map_err(map_err(MAP_FLOWS_V4, "insert"))
    }

    /// Forgets an established translated flow; an absent one is fine.
    pub fn remove_flow(&mut self, key: &FlowKeyV4) -> Result<(), DatapathError> {
        let mut map = self.hash_mut::<FlowKeyV4, FlowNatV4>(MAP_FLOWS_V4)?;
        remove_absent_ok(&mut map, key).map_err(map_err(MAP_FLOWS_V4, "remove"))
    }

    /// Every established pin as stored (flow -> backend slot and generation).
    pub fn pins(&self) -> Result<BTreeMap<ConnKeyV4, Pin>, DatapathError> {
        self.entries(MAP_CONNS_V4)
    }

    /// Every established IPv4 pin whose backend is still there, as the endpoint it goes to.
    pub fn pinned_flows(&self) -> Result<BTreeMap<ConnKeyV4, Endpoint>, DatapathError> {
        self.live_pins(MAP_CONNS_V4, Fam::V4)
    }

    /// Every new IPv4 flow's pin whose backend is still there, as the endpoint it goes to.
    pub fn new_pinned_flows(&self) -> Result<BTreeMap<ConnKeyV4, Endpoint>, DatapathError> {
        self.live_pins(MAP_NEW_CONNS_V4, Fam::V4)
    }

    /// Every established IPv6 pin whose backend is still there, as the endpoint it goes to.
    pub fn pinned_flows_v6(&self) -> Result<BTreeMap<ConnKeyV6, Endpoint>, DatapathError> {
        self.live_pins(MAP_CONNS_V6, Fam::V6)
    }

    /// Every new IPv6 flow's pin whose backend is still there, as the endpoint it goes to.
    pub fn new_pinned_flows_v6(&self) -> Result<BTreeMap<ConnKeyV6, Endpoint>, DatapathError> {
        self.live_pins(MAP_NEW_CONNS_V6, Fam::V6)
    }

    /// Every established IPv6 translated flow (reply key -> VIP:port).
    pub fn flows_v6(&self) -> Result<BTreeMap<FlowKeyV6, FlowNatV6>, DatapathError> {
        self.entries(MAP_FLOWS_V6)
    }

    /// Every new IPv6 flow's reply translation (reply key -> VIP:port).
    pub fn new_flows_v6(&self) -> Result<BTreeMap<FlowKeyV6, FlowNatV6>, DatapathError> {
        self.entries(MAP_NEW_FLOWS_V6)
    }
}
