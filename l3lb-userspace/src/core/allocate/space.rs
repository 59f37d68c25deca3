//! Address arithmetic for allocation: which addresses of a CIDR are handed out, pools clipped to
//! the `--prefix`es, and a first-free search that does not rescan what one run already used.
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::IpNet;

/// IP family of an address, a pool CIDR or a Service's `spec.ipFamilies` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn of_net(net: &IpNet) -> Self {
        Self::of(&net.addr())
    }

    /// `spec.ipFamilies` spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(family: Family, n: u128) -> IpAddr {
    match family {
        // Only called with values taken from an IPv4 range.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX))),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// First and last address auto-assignment hands out: never the network address (nor IPv4's
/// broadcast address) of a CIDR that has more than two addresses.
fn host_range(net: &IpNet) -> (u128, u128) {
    let (first, last) = (to_u128(net.network()), to_u128(net.broadcast()));
    let max_len = net.max_prefix_len();
    match net {
        IpNet::V4(_) if net.prefix_len() + 1 < max_len => (first + 1, last - 1),
        IpNet::V6(_) if net.prefix_len() + 1 < max_len => (first + 1, last),
        _ => (first, last),
    }
}

/// How many addresses of `net` auto-assignment may hand out.
pub fn host_count(net: &IpNet) -> u128 {
    let (first, last) = host_range(net);
    last.saturating_sub(first).saturating_add(1)
}

/// The parts of `cidr` inside the prefixes.
pub fn clip(cidr: &IpNet, prefixes: &[IpNet]) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = prefixes
        .iter()
        .filter_map(|p| {
            if p.contains(cidr) {
                Some(*cidr)
            } else if cidr.contains(p) {
                Some(*p)
            } else {
                None
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Where the next free-address search in each CIDR starts: within one run addresses are taken,
/// and released only when a Service is refused ([`Cursors::rewind`]), so what a search passed
/// over stays taken.
#[derive(Default)]
pub struct Cursors(HashMap<IpNet, u128>);

impl Cursors {
    /// The lowest address of `net` that `taken` says is free.
    pub fn first_free<T>(
        &mut self,
        net: &IpNet,
        taken: &BTreeMap<IpAddr, Vec<T>>,
    ) -> Option<IpAddr> {
        let family = Family::of_net(net);
        let (first, last) = host_range(net);
        let start = self.0.get(net).copied().unwrap_or(first).max(first);
        let mut n = start;
        while n <= last {
            let ip = from_u128(family, n);
            if taken.get(&ip).is_none_or(Vec::is_empty) {
                self.0.insert(*net, n);
                return Some(ip);
            }
            n = n.checked_add(1)?;
        }
        self.0.insert(*net, n);
        None
    }

    /// `ip` was released: searches in CIDRs holding it start no later than it again.
    pub fn rewind(&mut self, ip: IpAddr) {
        let n = to_u128(ip);
        for (net, cursor) in self.0.iter_mut() {
            if net.contains(&ip) && n < *cursor {
                *cursor = n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn host_ranges_skip_network_and_broadcast() {
        let cases = [
            ("198.51.100.0/24", "198.51.100.1", "198.51.100.254"),
            ("198.51.100.4/31", "198.51.100.4", "198.51.100.5"),
            ("198.51.100.7/32", "198.51.100.7", "198.51.100.7"),
            ("2001:db8::/120", "2001:db8::1", "2001:db8::ff"),
            ("2001:db8::5/128", "2001:db8::5", "2001:db8::5"),
        ];
        for (n, first, last) in cases {
            let (f, l) = host_range(&net(n));
            let fam = Family::of_net(&net(n));
            assert_eq!(
                (from_u128(fam, f), from_u128(fam, l)),
                (ip(first), ip(last)),
                "{n}"
            );
        }
    }

    #[test]
    fn clipping_to_prefixes() {
        let prefixes = [net("198.51.100.0/24"), net("203.0.113.128/25")];
        assert_eq!(
            clip(&net("198.51.100.16/28"), &prefixes),
            [net("198.51.100.16/28")]
        );
        assert_eq!(
            clip(&net("203.0.113.0/24"), &prefixes),
            [net("203.0.113.128/25")]
        );
        assert!(clip(&net("192.0.2.0/24"), &prefixes).is_empty());
        assert!(clip(&net("2001:db8::/64"), &prefixes).is_empty());
    }

    #[test]
    fn first_free_skips_taken_and_ends_when_full() {
        let n = net("192.0.2.0/30"); // hosts .1 and .2
        let mut taken: BTreeMap<IpAddr, Vec<()>> = BTreeMap::new();
        let mut c = Cursors::default();
        assert_eq!(c.first_free(&n, &taken), Some(ip("192.0.2.1")));
        taken.insert(ip("192.0.2.1"), vec![()]);
        assert_eq!(c.first_free(&n, &taken), Some(ip("192.0.2.2")));
        taken.insert(ip("192.0.2.2"), vec![()]);
        assert_eq!(c.first_free(&n, &taken), None);
        // An emptied holder list is free again (for a fresh run).
        taken.insert(ip("192.0.2.1"), vec![]);
        assert_eq!(
            Cursors::default().first_free(&n, &taken),
            Some(ip("192.0.2.1"))
        );
    }
}
