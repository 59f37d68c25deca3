//! The VIP set: every VIP with at least one frontend. XDP drops what reaches a VIP on no
//! frontend, so host sockets listening on all addresses are not reachable through a VIP.
//!
//! Kept in step with the frontend map here, below the executor, so its ordering holds: a VIP
//! joins the set before its first frontend is inserted and leaves it after its last one is
//! removed (so never before its /32 is withdrawn). Which frontends each VIP has is remembered
//! in memory (the daemon is the maps' only writer), rebuilt from the frontend map on a pinned
//! load: a removal costs no scan of the map.
use std::collections::{BTreeMap, BTreeSet};

use l3lb_common::{Frontend, FrontendKeyV4, MAP_FRONTENDS_V4, MAP_VIPS_V4, VipKeyV4, VipV4};
use tracing::info;

use super::{Datapath, DatapathError, map_err, remove_absent_ok};

/// The frontends in the frontend map, by VIP.
#[derive(Debug, Default)]
pub(super) struct VipRefs(BTreeMap<u32, BTreeSet<FrontendKeyV4>>);

impl VipRefs {
    /// Records that `key` is in the frontend map.
    pub(super) fn insert(&mut self, key: FrontendKeyV4) {
        self.0.entry(key.vip_be).or_default().insert(key);
    }

    /// Forgets `key`; true if its VIP has no frontend left.
    fn remove(&mut self, key: &FrontendKeyV4) -> bool {
        let Some(keys) = self.0.get_mut(&key.vip_be) else {
            return true;
        };
        keys.remove(key);
        if !keys.is_empty() {
            return false;
        }
        self.0.remove(&key.vip_be);
        true
    }
}

impl Datapath {
    /// Every VIP in the VIP set.
    pub fn vips(&self) -> Result<BTreeMap<VipKeyV4, VipV4>, DatapathError> {
        let map = self.hash::<VipKeyV4, VipV4>(MAP_VIPS_V4)?;
        map.iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(MAP_VIPS_V4, "iterate"))
    }

    /// Before `key` is inserted: its VIP joins the set. Written every time (idempotent), so an
    /// entry lost some other way comes back with the next update of any of its frontends.
    pub(super) fn vip_before_upsert(&mut self, key: &FrontendKeyV4) -> Result<(), DatapathError> {
        self.add_vip(key.vip_be)
    }

    /// After `key` was removed: its VIP leaves the set if it has no frontend left.
    pub(super) fn vip_after_remove(&mut self, key: &FrontendKeyV4) -> Result<(), DatapathError> {
        if !self.vip_refs.remove(key) {
            return Ok(());
        }
        let mut map = self.hash_mut::<VipKeyV4, VipV4>(MAP_VIPS_V4)?;
        remove_absent_ok(&mut map, &VipKeyV4 { vip_be: key.vip_be })
            .map_err(map_err(MAP_VIPS_V4, "remove"))
    }

    /// Makes the VIP set exactly the VIPs of the frontend map (adding missing ones first, then
    /// removing those without a frontend) and rebuilds the in-memory record. Run on a pinned
    /// load, before any program is attached.
    pub(super) fn sync_vips(&mut self) -> Result<(), DatapathError> {
        let mut refs = VipRefs::default();
        let frontends = self.hash::<FrontendKeyV4, Frontend>(MAP_FRONTENDS_V4)?;
        for key in frontends.keys() {
            refs.insert(key.map_err(map_err(MAP_FRONTENDS_V4, "iterate"))?);
        }
        let want: BTreeSet<u32> = refs.0.keys().copied().collect();
        let have: BTreeSet<u32> = self.vips()?.keys().map(|k| k.vip_be).collect();
        for vip_be in want.difference(&have) {
            self.add_vip(*vip_be)?;
        }
        let mut map = self.hash_mut::<VipKeyV4, VipV4>(MAP_VIPS_V4)?;
        for vip_be in have.difference(&want) {
            remove_absent_ok(&mut map, &VipKeyV4 { vip_be: *vip_be })
                .map_err(map_err(MAP_VIPS_V4, "remove"))?;
        }
        let (added, removed) = (
            want.difference(&have).count(),
            have.difference(&want).count(),
        );
        if added + removed > 0 {
            info!(
                added,
                removed, "VIP set brought in line with the frontend map"
            );
        }
        self.vip_refs = refs;
        Ok(())
    }

    fn add_vip(&mut self, vip_be: u32) -> Result<(), DatapathError> {
        self.hash_mut::<VipKeyV4, VipV4>(MAP_VIPS_V4)?
            .insert(VipKeyV4 { vip_be }, VipV4::default(), 0)
            .map_err(map_err(MAP_VIPS_V4, "insert"))
    }
}
