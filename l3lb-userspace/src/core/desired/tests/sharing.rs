//! VIPs several Services name: sharing keys, refusals of the later ones.
use super::*;

#[test]
fn a_vip_is_shared_only_by_services_with_the_same_sharing_key() {
    let shared = |name: &str, key: Option<&str>, ports: serde_json::Value| {
        let mut s = svc(name, "198.51.100.53", ports);
        s.metadata.annotations =
            key.map(|k| [("l3lb.io/allow-shared-ip".to_owned(), k.to_owned())].into());
        s
    };
    let tcp = json!([{"name": "dns", "port": 53, "protocol": "TCP"}]);
    let udp = json!([{"name": "dns", "port": 53, "protocol": "UDP"}]);
    let eps = |name: &str, ip: &str, proto: &str| {
        slice(
            name,
            &[(ip, NODE, Some(true))],
            json!([{"name": "dns", "port": 5353, "protocol": proto}]),
        )
    };
    let slices = [eps("a", "10.244.1.2", "TCP"), eps("b", "10.244.1.3", "UDP")];
    let cases = [
        (Some("dns"), Some("dns"), 2, None),
        (
            None,
            None,
            1,
            Some("share a VIP only when both carry the annotation"),
        ),
        (
            Some("dns"),
            None,
            1,
            Some("198.51.100.53 belongs to Service default/a"),
        ),
        (
            None,
            Some("dns"),
            1,
            Some("198.51.100.53 belongs to Service default/a"),
        ),
        (
            Some("x"),
            Some("y"),
            1,
            Some("198.51.100.53 belongs to Service default/a"),
        ),
    ];
    for (key_a, key_b, frontends, refusal) in cases {
        let d = run(
            &[
                shared("a", key_a, tcp.clone()),
                shared("b", key_b, udp.clone()),
            ],
            &slices,
        );
        assert_eq!(d.frontends.len(), frontends, "{key_a:?} {key_b:?}");
        assert!(
            d.frontends
                .contains_key(&fe("198.51.100.53", 53, Proto::Tcp))
        );
        match refusal {
            None => assert!(d.refusals.is_empty(), "{:?}", d.refusals),
            Some(part) => {
                assert_eq!(d.refusals.len(), 1, "{:?}", d.refusals);
                assert_eq!(d.refusals[0].service.name, "b");
                assert!(
                    d.refusals[0].reason.contains(part),
                    "{}",
                    d.refusals[0].reason
                );
            }
        }
    }
    // Same key and the same port: the second is refused for that frontend only.
    let d = run(
        &[
            shared("a", Some("k"), tcp.clone()),
            shared("b", Some("k"), tcp),
        ],
        &slices,
    );
    assert_eq!(d.refusals.len(), 1);
    assert!(
        d.refusals[0]
            .reason
            .contains("already served for Service default/a")
    );
}

#[test]
fn second_service_on_the_same_vip_without_sharing_is_refused() {
    let d = run(
        &[
            svc("a", "198.51.100.10", http()),
            svc("b", "198.51.100.10", http()),
        ],
        &[
            slice("a", &[("10.244.1.2", NODE, Some(true))], web_ports()),
            slice("b", &[("10.244.1.3", NODE, Some(true))], web_ports()),
        ],
    );
    assert_eq!(
        d.frontends[&fe("198.51.100.10", 80, Proto::Tcp)],
        Backends::from([ep("10.244.1.2", 8080)])
    );
    assert_eq!(d.refusals.len(), 1);
    assert_eq!(d.refusals[0].service.name, "b");
    assert!(
        d.refusals[0]
            .reason
            .contains("198.51.100.10 belongs to Service default/a"),
        "{}",
        d.refusals[0].reason
    );
}
