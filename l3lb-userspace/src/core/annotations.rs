//! The Service annotations l3lb reads: requested addresses and VIP sharing, in l3lb's own spelling
//! and MetalLB's (so Services migrate unchanged). Pure readers; what they mean is decided by
//! [`crate::core::allocate`] and [`crate::core::desired`].
use k8s_openapi::api::core::v1::Service;

/// Requested addresses, comma-separated (at most one per IP family).
pub const LOAD_BALANCER_IPS: &str = "l3lb.io/load-balancer-ips";
/// MetalLB's spelling of [`LOAD_BALANCER_IPS`] (older and newer API group).
pub const METALLB_LOAD_BALANCER_IPS: [&str; 2] = [
    "metallb.universe.tf/loadBalancerIPs",
    "metallb.io/loadBalancerIPs",
];
/// VIP sharing key: Services carrying the same value may share an address.
pub const ALLOW_SHARED_IP: &str = "l3lb.io/allow-shared-ip";
/// MetalLB's spelling of [`ALLOW_SHARED_IP`].
pub const METALLB_ALLOW_SHARED_IP: [&str; 2] = [
    "metallb.universe.tf/allow-shared-ip",
    "metallb.io/allow-shared-ip",
];

/// How many addresses (of each of the Service's IP families) to allocate from L2 pools, `1..=16`.
pub const L2_ADDRESS_COUNT: &str = "l3lb.io/l2-address-count";
/// The most addresses [`L2_ADDRESS_COUNT`] may ask for: a Service cannot drain a pool.
pub const MAX_L2_ADDRESS_COUNT: usize = 16;

/// Every annotation l3lb reads (the stores keep only these).
pub fn read_by_l3lb(name: &str) -> bool {
    name == LOAD_BALANCER_IPS
        || name == ALLOW_SHARED_IP
        || name == L2_ADDRESS_COUNT
        || METALLB_LOAD_BALANCER_IPS.contains(&name)
        || METALLB_ALLOW_SHARED_IP.contains(&name)
}

fn annotation<'a>(svc: &'a Service, name: &str) -> Option<&'a str> {
    svc.metadata
        .annotations
        .as_ref()?
        .get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

/// The Service's sharing key, if it opts in to sharing its VIP: l3lb's annotation, else
/// MetalLB's.
pub fn sharing_key(svc: &Service) -> Option<&str> {
    std::iter::once(ALLOW_SHARED_IP)
        .chain(METALLB_ALLOW_SHARED_IP)
        .find_map(|name| annotation(svc, name))
}

/// The number of L2 addresses the Service asks for per IP family: `None` when it does not
/// carry [`L2_ADDRESS_COUNT`], `Err` (a refusal's text) when the value is not `1..=16`.
pub fn l2_address_count(svc: &Service) -> Result<Option<usize>, String> {
    let Some(value) = annotation(svc, L2_ADDRESS_COUNT) else {
        return Ok(None);
    };
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_L2_ADDRESS_COUNT).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "annotation {L2_ADDRESS_COUNT} is {value:?}; it must be a whole number from 1 to \
             {MAX_L2_ADDRESS_COUNT}"
        )),
    }
}

/// Addresses a Service asks for, as written, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requested {
    /// The field or annotation, for messages.
    pub source: String,
    pub addresses: Vec<String>,
}

/// What the Service requests: `None` when nothing (an address is allocated), `Err` when two
/// places request different addresses.
pub fn requested(svc: &Service) -> Result<Option<Requested>, String> {
    let mut found: Vec<Requested> = Vec::new();
    for name in std::iter::once(LOAD_BALANCER_IPS).chain(METALLB_LOAD_BALANCER_IPS) {
        if let Some(value) = annotation(svc, name) {
            found.push(Requested {
                source: format!("annotation {name}"),
                addresses: value
                    .split(',')
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty())
                    .collect(),
            });
        }
    }
    let spec_ip = svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref());
    if let Some(ip) = spec_ip.map(str::trim).filter(|ip| !ip.is_empty()) {
        found.push(Requested {
            source: "spec.loadBalancerIP".to_owned(),
            addresses: vec![ip.to_owned()],
        });
    }
    let mut found = found.into_iter();
    let Some(first) = found.next() else {
        return Ok(None);
    };
    let sorted = |r: &Requested| {
        let mut a = r.addresses.clone();
        a.sort();
        a
    };
    if let Some(other) = found.find(|r| sorted(r) != sorted(&first)) {
        return Err(format!(
            "{} ({}) and {} ({}) request different addresses",
            first.source,
            first.addresses.join(","),
            other.source,
            other.addresses.join(",")
        ));
    }
    Ok(Some(first))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn svc(annotations: Value, lb_ip: Option<&str>) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": "a", "name": "s", "annotations": annotations},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": lb_ip},
        }))
        .unwrap()
    }

    #[test]
    fn requested_addresses_from_each_source() {
        let r = |source: &str, addresses: &[&str]| {
            Ok(Some(Requested {
                source: source.to_owned(),
                addresses: addresses.iter().map(|a| a.to_string()).collect(),
            }))
        };
        let cases = [
            (json!({}), None, Ok(None)),
            (json!({}), Some(""), Ok(None)),
            (
                json!({}),
                Some("192.0.2.1"),
                r("spec.loadBalancerIP", &["192.0.2.1"]),
            ),
            (
                json!({LOAD_BALANCER_IPS: "192.0.2.1, 2001:db8::1"}),
                None,
                r(
                    "annotation l3lb.io/load-balancer-ips",
                    &["192.0.2.1", "2001:db8::1"],
                ),
            ),
            (
                json!({"metallb.universe.tf/loadBalancerIPs": "192.0.2.2"}),
                None,
                r(
                    "annotation metallb.universe.tf/loadBalancerIPs",
                    &["192.0.2.2"],
                ),
            ),
            (
                json!({"metallb.io/loadBalancerIPs": "192.0.2.2"}),
                None,
                r("annotation metallb.io/loadBalancerIPs", &["192.0.2.2"]),
            ),
            // The same addresses in two places (in any order) are one request.
            (
                json!({LOAD_BALANCER_IPS: "192.0.2.1"}),
                Some("192.0.2.1"),
                r("annotation l3lb.io/load-balancer-ips", &["192.0.2.1"]),
            ),
        ];
        for (annotations, lb_ip, want) in cases {
            assert_eq!(
                requested(&svc(annotations.clone(), lb_ip)),
                want,
                "{annotations} {lb_ip:?}"
            );
        }
        let conflict = requested(&svc(
            json!({"metallb.universe.tf/loadBalancerIPs": "192.0.2.2"}),
            Some("192.0.2.1"),
        ));
        let err = conflict.unwrap_err();
        assert!(
            err.contains("192.0.2.2") && err.contains("spec.loadBalancerIP"),
            "{err}"
        );
    }

    #[test]
    fn l2_address_count_accepts_one_to_sixteen() {
        let cases = [
            (json!({}), Ok(None)),
            (json!({L2_ADDRESS_COUNT: " "}), Ok(None)),
            (json!({L2_ADDRESS_COUNT: "1"}), Ok(Some(1))),
            (json!({L2_ADDRESS_COUNT: " 16 "}), Ok(Some(16))),
            (json!({L2_ADDRESS_COUNT: "0"}), Err(())),
            (json!({L2_ADDRESS_COUNT: "17"}), Err(())),
            (json!({L2_ADDRESS_COUNT: "-2"}), Err(())),
            (json!({L2_ADDRESS_COUNT: "two"}), Err(())),
            (
                json!({L2_ADDRESS_COUNT: "99999999999999999999999"}),
                Err(()),
            ),
        ];
        for (annotations, want) in cases {
            let got = l2_address_count(&svc(annotations.clone(), None));
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{annotations}"),
                (Err(e), Err(())) => {
                    assert!(e.contains(L2_ADDRESS_COUNT) && e.contains("1 to 16"), "{e}")
                }
                (got, _) => panic!("{annotations}: {got:?}"),
            }
        }
        assert!(read_by_l3lb(L2_ADDRESS_COUNT));
    }

    #[test]
    fn sharing_key_prefers_l3lbs_annotation() {
        let cases = [
            (json!({}), None),
            (json!({ALLOW_SHARED_IP: " "}), None),
            (json!({ALLOW_SHARED_IP: "dns"}), Some("dns")),
            (
                json!({"metallb.universe.tf/allow-shared-ip": "dns"}),
                Some("dns"),
            ),
            (json!({"metallb.io/allow-shared-ip": "k"}), Some("k")),
            (
                json!({ALLOW_SHARED_IP: "a", "metallb.universe.tf/allow-shared-ip": "b"}),
                Some("a"),
            ),
        ];
        for (annotations, want) in cases {
            assert_eq!(
                sharing_key(&svc(annotations.clone(), None)),
                want,
                "{annotations}"
            );
        }
        assert!(
            read_by_l3lb(ALLOW_SHARED_IP)
                && !read_by_l3lb("kubectl.kubernetes.io/last-applied-configuration")
        );
    }
}
