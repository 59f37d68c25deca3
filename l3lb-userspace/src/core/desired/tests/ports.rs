//! Ports and protocols: SCTP on its own port, TCP/UDP matched by name, ports without endpoints.
use super::*;

#[test]
fn sctp_is_served_on_its_own_port_only() {
    let ports = json!([
        {"name": "sig", "port": 3868, "protocol": "SCTP"},
        {"name": "m3ua", "port": 2905, "protocol": "SCTP"},
    ]);
    let slice_ports = json!([
        {"name": "sig", "port": 3868, "protocol": "SCTP"},
        {"name": "m3ua", "port": 12905, "protocol": "SCTP"},
    ]);
    let d = run(
        &[svc("diameter", "198.51.100.38", ports)],
        &[slice(
            "diameter",
            &[("10.244.1.9", NODE, Some(true))],
            slice_ports,
        )],
    );
    assert_eq!(
        d.frontends.keys().copied().collect::<Vec<_>>(),
        vec![fe("198.51.100.38", 3868, Proto::Sctp)],
        "the port whose endpoints listen elsewhere is not served"
    );
    assert_eq!(
        d.frontends[&fe("198.51.100.38", 3868, Proto::Sctp)],
        Backends::from([ep("10.244.1.9", 3868)])
    );
    assert_eq!(d.refusals.len(), 1, "{:?}", d.refusals);
    assert!(
        d.refusals[0].reason.contains("port 2905/SCTP")
            && d.refusals[0].reason.contains("set targetPort to 2905"),
        "{}",
        d.refusals[0].reason
    );
}

#[test]
fn tcp_and_udp_ports_match_slice_ports_by_name_and_protocol() {
    let ports = json!([
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
    ]);
    let slice_ports = json!([
        {"name": "dns", "port": 5353, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 5354, "protocol": "TCP"},
    ]);
    let d = run(
        &[svc("dns", "198.51.100.53", ports)],
        &[slice(
            "dns",
            &[("10.244.1.9", NODE, Some(true))],
            slice_ports,
        )],
    );
    assert_eq!(
        d.frontends[&fe("198.51.100.53", 53, Proto::Udp)],
        Backends::from([ep("10.244.1.9", 5353)])
    );
    assert_eq!(
        d.frontends[&fe("198.51.100.53", 53, Proto::Tcp)],
        Backends::from([ep("10.244.1.9", 5354)])
    );
}

#[test]
fn a_port_without_local_endpoints_is_not_programmed() {
    let ports = json!([{"name": "a", "port": 80}, {"name": "b", "port": 81}]);
    let d = run(
        &[svc("web", "198.51.100.10", ports)],
        &[slice(
            "web",
            &[("10.244.1.2", NODE, Some(true))],
            json!([{"name": "a", "port": 8080}]),
        )],
    );
    assert_eq!(
        d.frontends.keys().copied().collect::<Vec<_>>(),
        [fe("198.51.100.10", 80, Proto::Tcp)]
    );
}
