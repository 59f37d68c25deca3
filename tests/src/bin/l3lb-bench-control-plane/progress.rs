//! What the benchmark is doing and how long is left: numbered steps with the time since start,
//! and for the long loops (seeding, first sync, changes) a line every few seconds with the count
//! done and the time left at the rate so far. On stderr, so the results stay apart.
use std::time::{Duration, Instant};

/// How often a loop reports.
const EVERY: Duration = Duration::from_secs(3);

pub struct Progress {
    started: Instant,
    steps: u32,
}

impl Progress {
    pub fn new(steps: u32) -> Self {
        Self {
            started: Instant::now(),
            steps,
        }
    }

    /// Step `n` begins.
    pub fn step(&self, n: u32, text: &str) {
        eprintln!(
            "[{n}/{}] {text}   (t+{:.1}s)",
            self.steps,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// A loop over `total` items, reporting as it goes.
    pub fn count(&self, what: &'static str, total: usize) -> Counter {
        Counter {
            what,
            total,
            started: Instant::now(),
            last: Instant::now(),
        }
    }
}

pub struct Counter {
    what: &'static str,
    total: usize,
    started: Instant,
    last: Instant,
}

impl Counter {
    /// `done` of the items are done; prints a line if the last one is a while ago.
    pub fn at(&mut self, done: usize) {
        if self.last.elapsed() < EVERY {
            return;
        }
        self.last = Instant::now();
        eprintln!(
            "      {}",
            line(self.what, done, self.total, self.started.elapsed())
        );
    }
}

/// "what done/total (elapsed; about N s left)": the time left at the rate so far.
fn line(what: &str, done: usize, total: usize, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let left = match done {
        0 => "time left unknown yet".to_owned(),
        _ => format!(
            "about {:.0} s left",
            secs / done as f64 * total.saturating_sub(done) as f64
        ),
    };
    format!("{what} {done}/{total} ({secs:.0} s; {left})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_is_at_the_rate_so_far() {
        assert_eq!(
            line("seeded", 250, 1_000, Duration::from_secs(10)),
            "seeded 250/1000 (10 s; about 30 s left)"
        );
        assert_eq!(
            line("VIPs up", 0, 10, Duration::from_secs(4)),
            "VIPs up 0/10 (4 s; time left unknown yet)"
        );
    }
}
