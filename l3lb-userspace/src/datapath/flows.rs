//! The flow tables: pins (client -> VIP:port flows to their backend slot) and the reply path's
//! translations. XDP fills both; reading them is for tests and diagnostics.
use std::collections::BTreeMap;

use l3lb_common::{
    ConnKeyV4, ConnKeyV6, FlowKeyV4, FlowKeyV6, FlowNatV4, FlowNatV6, MAP_CONNS_V4, MAP_CONNS_V6,
    MAP_FLOWS_V4, MAP_FLOWS_V6, Pin,
};

use super::{Datapath, DatapathError, family::Fam, map_err, remove_absent_ok};
use crate::core::model::Endpoint;

impl Datapath {
    /// Every translated flow (reply key -> VIP:port).
    pub fn flows(&self) -> Result<BTreeMap<FlowKeyV4, FlowNatV4>, DatapathError> {
        let map = self.hash::<FlowKeyV4, FlowNatV4>(MAP_FLOWS_V4)?;
        map.iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_FLOWS_V4, "iterate"))
    }

    /// Records a translated flow by hand (tests).
    pub fn insert_flow(&mut self, key: FlowKeyV4, nat: &FlowNatV4) -> Result<(), DatapathError> {
        self.hash_mut::<FlowKeyV4, FlowNatV4>(MAP_FLOWS_V4)?
            .insert(key, nat, 0)
            .map_err(map_err(MAP_FLOWS_V4, "insert"))
    }

    /// Forgets a translated flow; an absent one is fine.
    pub fn remove_flow(&mut self, key: &FlowKeyV4) -> Result<(), DatapathError> {
        let mut map = self.hash_mut::<FlowKeyV4, FlowNatV4>(MAP_FLOWS_V4)?;
        remove_absent_ok(&mut map, key).map_err(map_err(MAP_FLOWS_V4, "remove"))
    }

    /// Every pin as stored (flow -> backend slot and generation).
    pub fn pins(&self) -> Result<BTreeMap<ConnKeyV4, Pin>, DatapathError> {
        let map = self.hash::<ConnKeyV4, Pin>(MAP_CONNS_V4)?;
        map.iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_CONNS_V4, "iterate"))
    }

    /// Every IPv4 pin whose backend is still there, as the endpoint it goes to.
    pub fn pinned_flows(&self) -> Result<BTreeMap<ConnKeyV4, Endpoint>, DatapathError> {
        let mut out = BTreeMap::new();
        for (key, pin) in self.pins()? {
            let b = self.read_slot(Fam::V4, pin.backend)?;
            if b.in_use() && b.gen_ == pin.gen_ {
                out.insert(key, b.endpoint);
            }
        }
        Ok(out)
    }

    /// Every IPv6 pin whose backend is still there, as the endpoint it goes to.
    pub fn pinned_flows_v6(&self) -> Result<BTreeMap<ConnKeyV6, Endpoint>, DatapathError> {
        let map = self.hash::<ConnKeyV6, Pin>(MAP_CONNS_V6)?;
        let mut out = BTreeMap::new();
        for entry in map.iter() {
            let (key, pin) = entry.map_err(map_err(MAP_CONNS_V6, "iterate"))?;
            let b = self.read_slot(Fam::V6, pin.backend)?;
            if b.in_use() && b.gen_ == pin.gen_ {
                out.insert(key, b.endpoint);
            }
        }
        Ok(out)
    }

    /// Every IPv6 translated flow (reply key -> VIP:port).
    pub fn flows_v6(&self) -> Result<BTreeMap<FlowKeyV6, FlowNatV6>, DatapathError> {
        let map = self.hash::<FlowKeyV6, FlowNatV6>(MAP_FLOWS_V6)?;
        map.iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_FLOWS_V6, "iterate"))
    }
}
