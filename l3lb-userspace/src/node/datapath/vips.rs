//! The VIP sets (one per family): every VIP with at least one frontend. XDP drops what reaches a
//! VIP on no frontend, so host sockets listening on all addresses are not reachable through a
//! VIP.
//!
//! Kept in step with the frontend maps here, below the executor, so its ordering holds: a VIP
//! joins the set before its first frontend is inserted and leaves it after its last one is
//! removed (so never before its address is withdrawn). Which frontends each VIP has is
//! remembered in memory (the daemon is the maps' only writer), rebuilt from the frontend maps
//! on a pinned load: a removal costs no scan of the maps.
use std::{collections::BTreeSet, net::IpAddr};

use l3lb_common::{MAP_VIPS_V4, MAP_VIPS_V6, VipKeyV4, VipKeyV6, VipV4, ip6, ip6_octets};
use tracing::info;

use super::{Datapath, DatapathError, map_err, remove_absent_ok};
use crate::core::model::FrontendId;

/// The frontends in the frontend maps; a VIP's are a range of them (ids order by VIP first).
/// One set, not a set per VIP: that cost a tree node per VIP.
#[derive(Debug, Default)]
pub(super) struct VipRefs(BTreeSet<FrontendId>);

impl VipRefs {
    /// Records that `id` is in its frontend map.
    pub(super) fn insert(&mut self, id: FrontendId) {
        self.0.insert(id);
    }

    /// Forgets `id`; true if its VIP has no frontend left.
    fn remove(&mut self, id: &FrontendId) -> bool {
        self.0.remove(id);
        self.0.range(FrontendId::vip_range(id.vip)).next().is_none()
    }
}

impl Datapath {
    /// Every VIP in the VIP sets.
    pub fn vips(&self) -> Result<BTreeSet<IpAddr>, DatapathError> {
        let v4 = self.hash::<VipKeyV4, VipV4>(MAP_VIPS_V4)?;
        let v6 = self.hash::<VipKeyV6, VipV4>(MAP_VIPS_V6)?;
        let mut out = BTreeSet::new();
        for key in v4.keys() {
            let key = key.map_err(map_err(MAP_VIPS_V4, "iterate"))?;
            out.insert(IpAddr::from(u32::from_be(key.vip_be).to_be_bytes()));
        }
        for key in v6.keys() {
            let key = key.map_err(map_err(MAP_VIPS_V6, "iterate"))?;
            out.insert(IpAddr::from(ip6_octets(key.vip)));
        }
        Ok(out)
    }

    /// Before `id` is inserted: its VIP joins the set. Written every time (idempotent), so an
    /// entry lost some other way comes back with the next update of any of its frontends.
    pub(super) fn vip_before_upsert(&mut self, id: &FrontendId) -> Result<(), DatapathError> {
        self.add_vip(id.vip)
    }

    /// After `id` was removed: its VIP leaves the set if it has no frontend left.
    pub(super) fn vip_after_remove(&mut self, id: &FrontendId) -> Result<(), DatapathError> {
        if !self.vip_refs.remove(id) {
            return Ok(());
        }
        self.remove_vip(id.vip)
    }

    /// Makes the VIP sets exactly the VIPs of the frontend maps (adding missing ones first, then
    /// removing those without a frontend) and rebuilds the in-memory record. Run on a pinned
    /// load, before any program is attached.
    pub(super) fn sync_vips(&mut self) -> Result<(), DatapathError> {
        let mut refs = VipRefs::default();
        for id in self.frontend_ids()? {
            refs.insert(id);
        }
        let want: BTreeSet<IpAddr> = refs.0.iter().map(|id| id.vip).collect();
        let have = self.vips()?;
        for vip in want.difference(&have) {
            self.add_vip(*vip)?;
        }
        for vip in have.difference(&want) {
            self.remove_vip(*vip)?;
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

    fn add_vip(&mut self, vip: IpAddr) -> Result<(), DatapathError> {
        match vip {
            IpAddr::V4(v4) => self
                .hash_mut::<VipKeyV4, VipV4>(MAP_VIPS_V4)?
                .insert(
                    VipKeyV4 {
                        vip_be: u32::from(v4).to_be(),
                    },
                    VipV4::default(),
                    0,
                )
                .map_err(map_err(MAP_VIPS_V4, "insert")),
            IpAddr::V6(v6) => self
                .hash_mut::<VipKeyV6, VipV4>(MAP_VIPS_V6)?
                .insert(
                    VipKeyV6 {
                        vip: ip6(v6.octets()),
                    },
                    VipV4::default(),
                    0,
                )
                .map_err(map_err(MAP_VIPS_V6, "insert")),
        }
    }

    fn remove_vip(&mut self, vip: IpAddr) -> Result<(), DatapathError> {
        match vip {
            IpAddr::V4(v4) => {
                let mut map = self.hash_mut::<VipKeyV4, VipV4>(MAP_VIPS_V4)?;
                let key = VipKeyV4 {
                    vip_be: u32::from(v4).to_be(),
                };
                remove_absent_ok(&mut map, &key).map_err(map_err(MAP_VIPS_V4, "remove"))
            }
            IpAddr::V6(v6) => {
                let mut map = self.hash_mut::<VipKeyV6, VipV4>(MAP_VIPS_V6)?;
                let key = VipKeyV6 {
                    vip: ip6(v6.octets()),
                };
                remove_absent_ok(&mut map, &key).map_err(map_err(MAP_VIPS_V6, "remove"))
            }
        }
    }
}
