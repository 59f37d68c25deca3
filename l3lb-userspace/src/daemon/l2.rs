//! L2 mode on the node, as far as it is wired so far: the addresses of L2 pools are kept off the
//! BGP path. They never go on the host interface (so FRR never announces them) and their
//! frontends are programmed only where this node announces them. Choosing the announcer needs
//! every node's Lease and the Ready nodes of each Service ([`crate::core::l2`]); until those are
//! watched here, no node announces, so an L2 pool's addresses are allocated but not served.
use std::{
    borrow::Cow,
    sync::atomic::{AtomicBool, Ordering},
};

use tracing::warn;

use crate::core::{
    l2::{Announcers, l2_addresses, l2_desired},
    model::Desired,
    pool::Pool,
};

static WARNED: AtomicBool = AtomicBool::new(false);

/// `want` without what the BGP path must not serve of L2 addresses; borrowed when there is no
/// L2 pool (the common case costs nothing).
pub fn node_desired<'a>(
    want: &'a Desired,
    pools: &[Pool],
    announcers: &Announcers,
    node: &str,
) -> Cow<'a, Desired> {
    if !pools.iter().any(Pool::is_l2) {
        return Cow::Borrowed(want);
    }
    let l2 = l2_addresses(
        want.addresses
            .iter()
            .chain(want.frontends.keys().map(|f| &f.vip)),
        pools,
    );
    if l2.is_empty() {
        return Cow::Borrowed(want);
    }
    if announcers.is_empty() && !WARNED.swap(true, Ordering::Relaxed) {
        warn!(
            addresses = l2.len(),
            "addresses of L2 pools (advertisement: l2) are not served by this version: no node announces them yet"
        );
    }
    Cow::Owned(l2_desired(want, &l2, announcers, node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{Backends, FrontendId, Proto};

    #[test]
    fn l2_addresses_stay_off_the_bgp_path() {
        let vip = |s: &str| s.parse().unwrap();
        let want = Desired {
            frontends: ["198.51.100.1", "198.51.100.200"]
                .iter()
                .map(|v| {
                    let id = FrontendId {
                        vip: vip(v),
                        port: 80,
                        proto: Proto::Tcp,
                    };
                    (id, Backends::default())
                })
                .collect(),
            addresses: [vip("198.51.100.1"), vip("198.51.100.200")].into(),
            refusals: vec![],
        };
        let bgp = Pool::new("bgp", &["198.51.100.0/25".parse().unwrap()], true);
        let l2 = Pool::new("l2", &["198.51.100.128/25".parse().unwrap()], true).l2(&[]);
        let none = Announcers::new();
        assert!(matches!(
            node_desired(&want, std::slice::from_ref(&bgp), &none, "a"),
            Cow::Borrowed(_)
        ));
        let got = node_desired(&want, &[bgp.clone(), l2.clone()], &none, "a");
        assert_eq!(got.addresses, [vip("198.51.100.1")].into());
        assert_eq!(got.frontends.len(), 1);
        let mine: Announcers = [(vip("198.51.100.200"), "a".to_owned())].into();
        let got = node_desired(&want, &[bgp, l2], &mine, "a");
        assert_eq!(
            got.addresses,
            [vip("198.51.100.1")].into(),
            "never on the host"
        );
        assert_eq!(got.frontends.len(), 2, "forwarded where announced");
    }
}
