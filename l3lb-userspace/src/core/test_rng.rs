//! A seeded xorshift generator for the property tests: the same cases on every run, so a
//! failure reproduces, without a dependency for a few lines.
pub struct Rng(pub u64);

impl Rng {
    /// A value in `0..n`.
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// One of `from`.
    pub fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.next(from.len() as u64) as usize]
    }
}
