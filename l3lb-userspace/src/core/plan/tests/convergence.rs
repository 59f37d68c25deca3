//! Random plans converge and keep their ordering rules.
use super::*;

/// Model check over many generated states: applying a plan to the observed state and planning
/// again gives nothing (after the drain), no address is added without its frontends programmed
/// before it, and nothing outside the prefix is ever touched.
#[test]
fn plans_converge_and_keep_their_ordering_rules() {
    let vips = ["198.51.100.1", "198.51.100.2", "203.0.113.1"];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..5_000 {
        let mut pick = |vip: &str| -> Option<(FrontendId, &'static [&'static str])> {
            let backends: &[&[&str]] = &[&["10.0.0.1"], &["10.0.0.1", "10.0.0.2"], &["10.0.0.3"]];
            (next() % 3 != 0).then(|| {
                (
                    fe(vip, 80 + (next() % 2) as u16),
                    backends[(next() % 3) as usize],
                )
            })
        };
        let d_fe: Vec<_> = vips.iter().filter_map(|v| pick(v)).collect();
        let o_fe: Vec<_> = vips.iter().filter_map(|v| pick(v)).collect();
        let o_addr: Vec<&str> = vips.iter().copied().filter(|_| next() % 2 == 0).collect();
        let mut d = desired(&d_fe, &[]);
        // Desired addresses outside the prefix too: plan must still never touch them.
        d.addresses = d.frontends.keys().map(|id| id.vip).collect();
        let mut o = observed(&o_fe, &o_addr);

        let now = Instant::now();
        let p = plan(&d, &o, &prefixes(), &BTreeMap::new(), now, Duration::ZERO);
        let mut recorded = o.clone();
        recorded.record(&p.steps);
        let mut programmed = BTreeSet::new();
        for step in &p.steps {
            match step {
                Step::UpsertFrontend {
                    id,
                    endpoints,
                    missing,
                } => {
                    assert_eq!(*missing, !o.frontends.contains_key(id));
                    programmed.insert(id.vip);
                    o.frontends.insert(*id, endpoints.clone());
                }
                Step::AddAddress(a) => {
                    assert!(prefixes()[0].contains(a), "{a} is outside the prefix");
                    let needed = d.frontends.keys().filter(|id| id.vip == *a);
                    for id in needed {
                        assert_eq!(
                            o.frontends.get(id),
                            d.frontends.get(id),
                            "address {a} added before {id}"
                        );
                    }
                    o.addresses.insert(*a);
                }
                Step::RemoveAddress(a) => {
                    assert!(prefixes()[0].contains(a), "{a} is outside the prefix");
                    o.addresses.remove(a);
                }
                Step::RemoveFrontend(id) => {
                    let advertised =
                        prefixes()[0].contains(&id.vip) && o.addresses.contains(&id.vip);
                    assert!(
                        !advertised || d.addresses.contains(&id.vip),
                        "{id} removed while advertised"
                    );
                    o.frontends.remove(id);
                }
                Step::RenewAddress(a) => panic!("plan renewed {a}; only renewals() does"),
                Step::Configure(s) => panic!("plan configured {s:?}; only configure() does"),
            }
        }
        // Once converged, the renewals are exactly the wanted VIPs inside the prefix.
        let renewed: BTreeSet<IpAddr> = renewals(&d, &o, &prefixes())
            .iter()
            .map(|s| match s {
                Step::RenewAddress(a) => *a,
                other => panic!("renewals() returned {other:?}"),
            })
            .collect();
        let managed: BTreeSet<IpAddr> = d
            .addresses
            .iter()
            .copied()
            .filter(|a| prefixes()[0].contains(a))
            .collect();
        assert_eq!(renewed, managed);
        assert_eq!(recorded, o, "the executor's record matches the node");
        let again = plan(&d, &o, &prefixes(), &p.draining, now, Duration::ZERO);
        assert!(again.steps.is_empty(), "not converged: {:?}", again.steps);
    }
}
