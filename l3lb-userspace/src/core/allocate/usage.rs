//! What each pool has: how many addresses it hands out (inside --prefix), how many are held and
//! by which Services — the L3lbPool status `kubectl get l3lbpools` shows. Pure.
use std::collections::BTreeMap;

use ipnet::IpNet;

use super::{
    Allocation,
    space::{clip, host_count},
};
use crate::core::pool::{NAMED_SERVICES, Pool, PoolStatus};

/// The status of every pool after `allocation`.
pub fn usage(
    allocation: &Allocation,
    pools: &[Pool],
    prefixes: &[IpNet],
) -> BTreeMap<String, PoolStatus> {
    let mut out = BTreeMap::new();
    for pool in pools {
        let cidrs: Vec<IpNet> = pool.cidrs.iter().flat_map(|c| clip(c, prefixes)).collect();
        let total: u128 = cidrs.iter().map(host_count).fold(0, u128::saturating_add);
        let mut used = 0u128;
        let mut services = Vec::new();
        for (key, ips) in &allocation.assigned {
            let held = ips.iter().filter(|ip| pool.contains(ip)).count() as u128;
            if held > 0 {
                used += held;
                services.push(key.to_string());
            }
        }
        let clamp = |n: u128| i64::try_from(n).unwrap_or(i64::MAX);
        let count = services.len();
        services.truncate(NAMED_SERVICES);
        out.insert(
            pool.name.clone(),
            PoolStatus {
                total: clamp(total),
                used: clamp(used),
                free: clamp(total.saturating_sub(used)),
                service_count: count as i64,
                services,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::ServiceKey;

    fn key(name: &str) -> ServiceKey {
        ServiceKey {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn counts_what_each_pool_hands_out_and_who_holds_it() {
        let pools = [
            Pool::new("v4", &["198.51.100.0/24".parse().unwrap()], true),
            Pool::new("v6", &["2001:db8::/64".parse().unwrap()], true),
            Pool::new("clipped", &["203.0.113.0/24".parse().unwrap()], true),
        ];
        let prefixes: Vec<IpNet> = vec![
            "198.51.100.0/24".parse().unwrap(),
            "2001:db8::/64".parse().unwrap(),
            "203.0.113.0/28".parse().unwrap(),
        ];
        let allocation = Allocation {
            assigned: [
                (
                    key("a"),
                    vec![
                        "198.51.100.1".parse().unwrap(),
                        "2001:db8::1".parse().unwrap(),
                    ],
                ),
                (key("b"), vec!["198.51.100.2".parse().unwrap()]),
                (key("refused"), vec![]),
            ]
            .into(),
            refusals: vec![],
        };
        let u = usage(&allocation, &pools, &prefixes);
        assert_eq!(
            u["v4"],
            PoolStatus {
                total: 254,
                used: 2,
                free: 252,
                service_count: 2,
                services: vec!["default/a".into(), "default/b".into()],
            }
        );
        assert_eq!(
            (u["v6"].total, u["v6"].used),
            (i64::MAX, 1),
            "2^64 - 1 hosts, clamped"
        );
        assert_eq!(
            (u["clipped"].total, u["clipped"].used),
            (14, 0),
            "only inside --prefix"
        );
    }
}
