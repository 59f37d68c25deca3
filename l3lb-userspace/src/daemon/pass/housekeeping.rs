//! Between passes: checking (and repairing) the uplinks, listing the interfaces that take
//! redirected frames, and copying the datapath's counters into the metrics. Each says whether a
//! pass is due.
use tracing::{debug, info, warn};

use super::{FRONTEND_STATS_CHUNK, Reconciler};
use crate::node::{
    executor::{AddressTable, FrontendTable},
    observe::{AddressObserver, FrontendObserver},
};

impl<F: FrontendTable + FrontendObserver, A: AddressTable + AddressObserver> Reconciler<F, A> {
    /// Checks (and repairs where it can) the programs on every uplink; logs each change once.
    /// Returns whether the set of uplinks that do not forward changed, so the caller runs a pass.
    pub async fn check_uplinks(&mut self) -> bool {
        let now = self.frontends.check_uplinks().await;
        if now == self.not_forwarding {
            return false;
        }
        for (uplink, reason) in &now {
            if self.not_forwarding.get(uplink) != Some(reason) {
                warn!(uplink, %reason, "uplink does not forward; withdrawing every VIP of this node");
            }
        }
        for uplink in self.not_forwarding.keys() {
            if !now.contains_key(uplink) {
                info!(uplink, "uplink forwards again; announcing VIPs");
            }
        }
        self.metrics.uplinks_not_forwarding.set(now.len() as i64);
        self.not_forwarding = now;
        true
    }

    /// Lists the interfaces that take redirected frames again (with `--xdp-redirect`; pods come
    /// and go with their veths). Returns whether the list changed, so the caller runs a pass.
    pub async fn refresh_redirect_targets(&mut self) -> bool {
        if !self.config.xdp_redirect {
            return false;
        }
        match self.frontends.redirect_capable().await {
            Ok(now) => {
                self.redirect_warned = false;
                let changed = now != self.redirect_capable;
                self.redirect_capable = now;
                changed
            }
            Err(error) => {
                if !std::mem::replace(&mut self.redirect_warned, true) {
                    warn!(%error, "cannot list XDP redirect targets; keeping the last known ones");
                }
                false
            }
        }
    }

    /// Mirrors the datapath's verdict counters into the metrics.
    pub fn refresh_counters(&self) {
        match self.frontends.counters() {
            Ok(counters) => self.metrics.record_counters(&counters),
            Err(error) => debug!(%error, "cannot read the datapath counters"),
        }
    }

    /// Mirrors the next chunk of per-frontend counters into the metrics. One map read per
    /// frontend, so only on the housekeeping tick, and at most [`FRONTEND_STATS_CHUNK`] at a
    /// time: a node with 10,000 frontends refreshes them over 10 ticks instead of stalling a
    /// watch change behind 10,000 reads.
    pub fn refresh_frontend_stats(&mut self) {
        let after = self.stats_cursor;
        match self.frontends.frontend_stats(after, FRONTEND_STATS_CHUNK) {
            Ok(read) => {
                // A short chunk reached the end: the next tick starts again from the first.
                let upto = match read.len() < FRONTEND_STATS_CHUNK {
                    true => None,
                    false => read.keys().next_back().copied(),
                };
                self.metrics.frontend_stats.replace_range(after, upto, read);
                self.stats_cursor = upto;
            }
            Err(error) => debug!(%error, "cannot read the per-frontend counters"),
        }
    }
}
