//! One round of L2 decisions on a node: the announcers from the current view, or the previous
//! ones when this node's view is stale, and what changed for this node (the addresses it takes
//! over, to announce with a gratuitous ARP / unsolicited NA and an `L2AddressTaken` Event, and
//! those it releases, `L2AddressReleased`).
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::{Announcers, L2Service, View, announcers};

/// The announcers for this round. A node that does not see its own Lease renewing cannot tell
/// dead nodes from a dead API connection: every Lease would look stale and every address would
/// be released at once. It keeps the previous decisions until its view is fresh again (if it
/// really is cut off, the others have judged it dead and took its addresses over).
pub fn round(
    previous: &Announcers,
    services: &[L2Service],
    excluded: &BTreeSet<String>,
    view: &View,
) -> Announcers {
    match view.fresh {
        true => announcers(services, excluded, &view.alive),
        false => previous.clone(),
    }
}

/// What changed for `node` between two rounds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Addresses `node` announces now and did not before, with their previous announcer.
    pub taken: BTreeMap<IpAddr, Option<String>>,
    /// Addresses `node` announced and no longer does, with their new announcer.
    pub released: BTreeMap<IpAddr, Option<String>>,
}

pub fn changes(before: &Announcers, after: &Announcers, node: &str) -> Changes {
    let mine = |a: &Announcers| -> BTreeSet<IpAddr> {
        a.iter()
            .filter(|(_, n)| *n == node)
            .map(|(ip, _)| *ip)
            .collect()
    };
    let (was, is) = (mine(before), mine(after));
    Changes {
        taken: is
            .difference(&was)
            .map(|ip| (*ip, before.get(ip).cloned()))
            .collect(),
        released: was
            .difference(&is)
            .map(|ip| (*ip, after.get(ip).cloned()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::ServiceKey;

    fn names(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_stale_view_keeps_the_previous_decisions() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let svc = L2Service {
            key: ServiceKey {
                namespace: "ns".into(),
                name: "web".into(),
            },
            addresses: vec![ip],
            ready_nodes: names(&["node-a", "node-b"]),
        };
        let previous: Announcers = [(ip, "node-b".to_owned())].into();
        let everyone_stale = View {
            alive: names(&[]),
            fresh: false,
        };
        assert_eq!(
            round(
                &previous,
                std::slice::from_ref(&svc),
                &names(&[]),
                &everyone_stale
            ),
            previous
        );
        let only_a = View {
            alive: names(&["node-a"]),
            fresh: true,
        };
        let now = round(&previous, &[svc], &names(&[]), &only_a);
        assert_eq!(now, [(ip, "node-a".to_owned())].into());

        let c = changes(&previous, &now, "node-a");
        assert_eq!(c.taken, [(ip, Some("node-b".to_owned()))].into());
        assert!(c.released.is_empty());
        let c = changes(&previous, &now, "node-b");
        assert_eq!(c.released, [(ip, Some("node-a".to_owned()))].into());
        assert!(c.taken.is_empty());
        assert_eq!(changes(&now, &now, "node-a"), Changes::default());
        let c = changes(&now, &Announcers::new(), "node-a");
        assert_eq!(c.released, [(ip, None)].into(), "nobody eligible any more");
    }
}
