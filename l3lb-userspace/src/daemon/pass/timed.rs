//! The frontend maps, timed: how long a pass spent writing them. The rest of `apply` is address
//! requests (and their logs), so the pass's netlink time is what is left.
use std::time::{Duration, Instant};

use crate::{
    core::model::{Backends, DatapathSettings, FrontendId},
    node::executor::FrontendTable,
};

pub(super) struct TimedFrontends<'a, F> {
    pub(super) inner: &'a mut F,
    pub(super) spent: Duration,
}

impl<F> TimedFrontends<'_, F> {
    fn timed<T>(&mut self, f: impl FnOnce(&mut F) -> T) -> T {
        let started = Instant::now();
        let out = f(self.inner);
        self.spent += started.elapsed();
        out
    }
}

impl<F: FrontendTable> FrontendTable for TimedFrontends<'_, F> {
    type Error = F::Error;

    fn upsert(&mut self, id: FrontendId, endpoints: &Backends) -> Result<(), F::Error> {
        self.timed(|f| f.upsert(id, endpoints))
    }

    fn remove(&mut self, id: FrontendId) -> Result<(), F::Error> {
        self.timed(|f| f.remove(id))
    }

    fn configure(&mut self, settings: &DatapathSettings) -> Result<(), F::Error> {
        self.timed(|f| f.configure(settings))
    }
}
