//! Planning only the VIPs that changed gives the whole plan, on a node that matched its
//! desired state everywhere else (the executor's record after a pass).
use super::*;
use crate::core::plan::plan_vips;

use crate::core::test_rng::Rng;

const VIPS: [&str; 4] = [
    "198.51.100.1",
    "198.51.100.2",
    "198.51.100.3",
    "203.0.113.1",
];

/// Some frontends of `vip` (maybe none): ready, or all terminating (kept for their flows).
fn frontends_of(r: &mut Rng, vip: &str) -> Frontends {
    let mut out = Frontends::new();
    for port in [80, 81] {
        let backends = match r.next(4) {
            0 => continue,
            1 => eps(&["10.0.0.1"]),
            2 => eps(&["10.0.0.1", "10.0.0.2"]),
            _ => Backends {
                terminating: eps(&["10.0.0.3"]).ready,
                ..Backends::default()
            },
        };
        out.insert(fe(vip, port), backends);
    }
    out
}

/// Addresses as desired state wants them: VIPs with a frontend that has a ready endpoint.
fn wanted_addresses(frontends: &Frontends) -> BTreeSet<IpAddr> {
    frontends
        .iter()
        .filter(|(_, b)| !b.ready.is_empty())
        .map(|(id, _)| id.vip)
        .collect()
}

fn random_desired(r: &mut Rng) -> Desired {
    let frontends: Frontends = VIPS.iter().flat_map(|v| frontends_of(r, v)).collect();
    Desired {
        addresses: wanted_addresses(&frontends),
        frontends,
        refusals: vec![],
    }
}

#[test]
fn planning_the_changed_vips_gives_the_whole_plan() {
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let start = Instant::now();
    for _ in 0..2_000 {
        // A node in any state, brought to the desired state by a whole plan.
        let mut d = random_desired(&mut r);
        let mut o = Observed {
            not_forwarding: match r.next(6) {
                0 => [("up0".to_owned(), "detached".to_owned())].into(),
                _ => BTreeMap::new(),
            },
            ..node_with(random_desired(&mut r), &mut r)
        };
        let mut now = start;
        let mut p = plan(&d, &o, &prefixes(), &BTreeMap::new(), now, DRAIN);
        o.record(&p.steps);
        // Then a few rounds of changes to some VIPs, planned both ways.
        for _ in 0..4 {
            let changed: BTreeSet<IpAddr> = VIPS
                .iter()
                .filter(|_| r.next(3) == 0)
                .map(|v| ip(v))
                .collect();
            for vip in &changed {
                d.frontends.retain(|id, _| id.vip != *vip);
                let fresh = frontends_of(&mut r, &vip.to_string());
                d.frontends.extend(fresh);
            }
            d.addresses = wanted_addresses(&d.frontends);
            now += Duration::from_secs([0, 4, 11][r.next(3) as usize]);
            let whole = plan(&d, &o, &prefixes(), &p.draining, now, DRAIN);
            let part = plan_vips(&d, &o, &changed, &prefixes(), &p.draining, now, DRAIN);
            assert_eq!(
                part, whole,
                "changed {changed:?}\ndesired {d:?}\nobserved {o:?}"
            );
            o.record(&whole.steps);
            p = whole;
        }
    }
}

/// A node as it could be: these frontends, and some VIPs as addresses.
fn node_with(d: Desired, r: &mut Rng) -> Observed {
    Observed {
        addresses: VIPS
            .iter()
            .filter(|_| r.next(2) == 0)
            .map(|v| ip(v))
            .collect(),
        frontends: d.frontends,
        ..Observed::default()
    }
}
