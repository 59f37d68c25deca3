//! What the allocator says about the LoadBalancer Services it leaves alone: a log line with the
//! counts at its first pass and whenever they change, and, while no L3lbPool exists, a warning
//! once a minute saying what to create (each waiting Service also gets its Event).
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::{info, warn};

use crate::core::allocate::{LeftAlone, no_pool};

/// How often the missing-pool warning repeats.
const NO_POOL_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Summary {
    last: Option<LeftAlone>,
    warned: Option<Instant>,
}

impl Summary {
    /// Forgets what was said, so a new term says it again.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    pub fn report(&mut self, left: LeftAlone, prefixes: &[IpNet], now: Instant) {
        if self.last != Some(left) {
            info!(
                other_class = left.other_class,
                no_pool = left.no_pool,
                requested_outside_every_pool = left.outside_pools,
                "LoadBalancer Services left alone"
            );
            self.last = Some(left);
        }
        if left.no_pool == 0 {
            self.warned = None;
        } else if self
            .warned
            .is_none_or(|at| now.saturating_duration_since(at) >= NO_POOL_EVERY)
        {
            warn!(
                waiting = left.no_pool,
                "LoadBalancer Services wait for an address: {}",
                no_pool(prefixes)
            );
            self.warned = Some(now);
        }
    }
}
