//! Per-frontend packet and byte counters, mirrored from the datapath. Kept as one snapshot and
//! encoded on each scrape (a [`Collector`]), not as a metric object per frontend: at 10,000
//! frontends a `Family` of two counters each cost megabytes of the daemon's memory.
use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    net::IpAddr,
    ops::Bound,
    sync::{Arc, Mutex, PoisonError},
};

use l3lb_common::Stat;
use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric as _, LabelValueEncoder,
    },
    metrics::{MetricType, counter::ConstCounter},
};

use crate::core::model::FrontendId;

/// A metric drawn from the snapshot: name, help, and its value of a frontend's counters.
type Kind = (&'static str, &'static str, fn(&Stat) -> u64);

/// The snapshot; cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct FrontendStats(Arc<Mutex<BTreeMap<FrontendId, Stat>>>);

#[derive(Debug, EncodeLabelSet)]
struct Labels {
    vip: Ip,
    port: u16,
    proto: &'static str,
}

#[derive(Debug)]
struct Ip(IpAddr);

impl EncodeLabelValue for Ip {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        write!(encoder, "{}", self.0)
    }
}

impl FrontendStats {
    /// Replaces what the snapshot holds for the frontends after `after` up to and including
    /// `upto` (None: no bound) by `read`: the refresh goes through the frontends a chunk at a
    /// time, and a frontend in the range that `read` lacks is no longer programmed.
    pub fn replace_range(
        &self,
        after: Option<FrontendId>,
        upto: Option<FrontendId>,
        read: BTreeMap<FrontendId, Stat>,
    ) {
        let mut stats = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let upper = upto.map_or(Bound::Unbounded, Bound::Included);
        let gone: Vec<FrontendId> = stats
            .range((lower, upper))
            .map(|(id, _)| *id)
            .filter(|id| !read.contains_key(id))
            .collect();
        for id in gone {
            stats.remove(&id);
        }
        stats.extend(read);
    }
}

impl Collector for FrontendStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let stats = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let kinds: [Kind; 2] = [
            (
                "frontend_packets",
                "Packets DNATed per frontend (VIP:port/proto), summed over CPUs; from 0 again \
                 when the frontend is programmed anew",
                |s| s.packets,
            ),
            (
                "frontend_bytes",
                "Bytes DNATed per frontend, summed over CPUs",
                |s| s.bytes,
            ),
        ];
        for (name, help, value) in kinds {
            if stats.is_empty() {
                continue;
            }
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (id, stat) in stats.iter() {
                let labels = Labels {
                    vip: Ip(id.vip),
                    port: id.port,
                    proto: id.proto.name(),
                };
                ConstCounter::new(value(stat)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
