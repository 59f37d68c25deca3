//! Where the benchmark is: its step out of how many, how long it has run, and for timed loads
//! how long is left. Printed on stderr, so the table on stdout stays clean.
use std::{
    cell::Cell,
    time::{Duration, Instant},
};

pub struct Progress {
    start: Instant,
    step: Cell<usize>,
    steps: usize,
}

impl Progress {
    pub fn new(steps: usize) -> Self {
        Progress {
            start: Instant::now(),
            step: Cell::new(0),
            steps,
        }
    }

    /// Announces the next step.
    pub fn step(&self, what: &str) {
        let i = self.step.get() + 1;
        self.step.set(i);
        eprintln!(
            "[step {i}/{} at {:.1} s] {what}",
            self.steps,
            self.start.elapsed().as_secs_f64()
        );
    }

    /// A timed load `done` into its `total`.
    pub fn tick(&self, what: &str, done: Duration, total: Duration) {
        eprintln!(
            "    {what}: {:.1} of {:.1} s, {:.1} s left",
            done.as_secs_f64(),
            total.as_secs_f64(),
            total.saturating_sub(done).as_secs_f64()
        );
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}
