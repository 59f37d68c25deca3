//! The slots the daemon hands out, remembered in memory (the daemon is the maps' only writer,
//! and rebuilds them from the maps on a pinned load): a counter slot per frontend and a backend
//! slot per (frontend, endpoint).
use std::collections::BTreeMap;

use l3lb_common::{MAP_BACKEND_STATS_V4, MAP_BACKEND_STATS_V6, MAX_BACKEND_SLOTS, MAX_FRONTENDS};

use super::{family::Fam, ids::Ids};
use crate::core::model::{Endpoint, FrontendId};

/// What is programmed for one frontend: its counter slot and its endpoints' backend slots.
#[derive(Debug, Clone, Default)]
pub(super) struct Programmed {
    pub(super) slot: u32,
    pub(super) backends: BackendSlots,
}

/// Endpoint -> backend slot, sorted by endpoint. A frontend has few endpoints; a BTreeMap node
/// is about 280 bytes even for one (3 MB over 10,000 frontends).
#[derive(Debug, Clone, Default)]
pub(super) struct BackendSlots(Vec<(Endpoint, u32)>);

impl BackendSlots {
    pub(super) fn get(&self, endpoint: &Endpoint) -> Option<&u32> {
        let at = self.0.binary_search_by_key(endpoint, |(e, _)| *e).ok()?;
        Some(&self.0[at].1)
    }

    pub(super) fn insert(&mut self, endpoint: Endpoint, slot: u32) {
        match self
            .0
            .binary_search_by_key(&endpoint, |(e, _)| e.to_owned())
        {
            Ok(at) => self.0[at].1 = slot,
            Err(at) => {
                self.0.reserve_exact(1);
                self.0.insert(at, (endpoint, slot));
            }
        }
    }

    pub(super) fn remove(&mut self, endpoint: &Endpoint) -> Option<u32> {
        let at = self.0.binary_search_by_key(endpoint, |(e, _)| *e).ok()?;
        Some(self.0.remove(at).1)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Endpoint, &u32)> {
        self.0.iter().map(|(e, s)| (e, s))
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &Endpoint> {
        self.0.iter().map(|(e, _)| e)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &u32> {
        self.0.iter().map(|(_, s)| s)
    }
}

impl<'a> IntoIterator for &'a BackendSlots {
    type Item = (&'a Endpoint, &'a u32);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Endpoint, u32)>,
        fn(&'a (Endpoint, u32)) -> (&'a Endpoint, &'a u32),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(e, s)| (e, s))
    }
}

/// Ids in use, by frontend.
#[derive(Debug)]
pub(super) struct Slots {
    pub(super) frontends: Ids,
    pub(super) backends: [Ids; 2],
    pub(super) programmed: BTreeMap<FrontendId, Programmed>,
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            frontends: Ids::new(MAX_FRONTENDS),
            backends: [Ids::new(MAX_BACKEND_SLOTS), Ids::new(MAX_BACKEND_SLOTS)],
            programmed: BTreeMap::new(),
        }
    }
}

impl Slots {
    pub(super) fn backends(&mut self, fam: Fam) -> &mut Ids {
        &mut self.backends[fam as usize]
    }
}

pub(super) fn backend_stats_map(fam: Fam) -> &'static str {
    match fam {
        Fam::V4 => MAP_BACKEND_STATS_V4,
        Fam::V6 => MAP_BACKEND_STATS_V6,
    }
}
