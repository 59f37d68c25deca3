//! Value parsers for flags: durations, address lifetimes and listen addresses as operators write
//! them.
use std::{net::SocketAddr, time::Duration};

/// An address lifetime, or none (`forever`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime(pub Option<Duration>);

/// Parses a duration (see [`parse_duration`]), or `0` / `forever` for none.
pub fn parse_lifetime(s: &str) -> Result<Lifetime, String> {
    match s.trim() {
        "forever" => Ok(Lifetime(None)),
        s => parse_duration(s).map(|d| Lifetime(Some(d).filter(|d| !d.is_zero()))),
    }
}

/// A listen address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub Option<SocketAddr>);

/// Parses `ADDR:PORT` (`[v6]:PORT`) or `off`.
pub fn parse_listen_addr(s: &str) -> Result<ListenAddr, String> {
    match s.trim() {
        "off" | "" => Ok(ListenAddr(None)),
        s => s
            .parse()
            .map(|a| ListenAddr(Some(a)))
            .map_err(|_| format!("{s:?} is not an address like 0.0.0.0:9465 or `off`")),
    }
}

/// Parses `250ms`, `10s`, `5m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s, 500ms or 5m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: unknown unit {unit:?}; use ms, s or m")),
    }
}
