//! Which LoadBalancer Services l3lb leaves alone, and why: another implementation's (their
//! class), waiting for a pool to exist, or requesting an address no pool holds. What an operator
//! needs to see when "nothing happens". Pure.
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use crate::core::{annotations::requested, class::ClassFilter, pool::Pool};

/// Counts of the LoadBalancer Services l3lb does not serve, by why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeftAlone {
    /// Of another `loadBalancerClass` (or classless while l3lb is not the default).
    pub other_class: usize,
    /// Of l3lb's class, but no L3lbPool exists.
    pub no_pool: usize,
    /// Requesting an address that lies in no pool.
    pub outside_pools: usize,
}

impl LeftAlone {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Counts the LoadBalancer Services among `services` l3lb leaves alone.
pub fn left_alone(services: &[&Service], pools: &[Pool], class: &ClassFilter) -> LeftAlone {
    let mut out = LeftAlone::default();
    let is_lb =
        |s: &Service| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    for svc in services.iter().copied().filter(|s| is_lb(s)) {
        if !class.owns(svc) {
            out.other_class += 1;
        } else if pools.is_empty() {
            out.no_pool += 1;
        } else if let Ok(Some(req)) = requested(svc) {
            let outside = req
                .addresses
                .iter()
                .filter_map(|a| a.parse::<IpAddr>().ok())
                .any(|ip| !pools.iter().any(|p| p.contains(&ip)));
            if outside {
                out.outside_pools += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn svc(class: Option<&str>, lb_ip: Option<&str>) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": "a", "name": "s"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": class, "loadBalancerIP": lb_ip},
        }))
        .unwrap()
    }

    #[test]
    fn counts_each_reason_once() {
        let class = ClassFilter {
            default: true,
            ..ClassFilter::default()
        };
        let services = [
            svc(Some("metallb.io/metallb"), None),
            svc(None, Some("203.0.113.9")),
            svc(None, Some("198.51.100.9")),
            svc(None, None),
        ];
        let refs: Vec<&Service> = services.iter().collect();
        let pools = [Pool::new("p", &["198.51.100.0/24".parse().unwrap()], true)];
        assert_eq!(
            left_alone(&refs, &pools, &class),
            LeftAlone {
                other_class: 1,
                no_pool: 0,
                outside_pools: 1
            }
        );
        assert_eq!(
            left_alone(&refs, &[], &class),
            LeftAlone {
                other_class: 1,
                no_pool: 3,
                outside_pools: 0
            }
        );
        let not_default = ClassFilter::default();
        assert_eq!(left_alone(&refs, &pools, &not_default).other_class, 4);
    }
}
