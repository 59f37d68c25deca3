//! FRR (zebra + bgpd) per namespace, with every path under the lab's own directory.
//!
//! Findings for Debian's FRR 8.4: the daemons drop privileges to a user that must be in the vty
//! group `frrvty`, which root is not, so `-u root -g root` fails at start ("user(root) is not part
//! of vty group specified(frrvty)"). They therefore run as the packaged `frr` user, and each
//! namespace gets a directory owned by `frr` holding the config, pid file, zebra API socket (`-z`)
//! and vty sockets (`--vty_socket`). Nothing under /etc/frr or /var/run/frr is used, unlike the
//! `-N <pathspace>` alternative, which still lives in those system directories. The TCP vty is off
//! (`-P 0`); `vtysh --vty_socket <dir>` (as root) talks to the daemons.
use std::{
    fs,
    net::{IpAddr, Ipv4Addr},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, anyhow, bail};
use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::Value;

use l3lb_userspace::cli::frr_config::{FrrConfigArgs, Neighbor, ROUTE_MAP, render};

use super::{prereq::FRR_DIR, process::run, topology};

/// Router AS; node `i` is `ROUTER_AS + i`.
pub const ROUTER_AS: u32 = 65000;
/// Route-map and prefix-list name on the nodes: `l3lb frr-config`'s.
pub const VIP_POLICY: &str = ROUTE_MAP;

/// Per-namespace FRR runtime directory, owned by the `frr` user.
pub(crate) fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    run(&["chown", "frr:frr", &dir.display().to_string()])?;
    // Unix socket paths are limited to 108 bytes; zserv.api is the longest name used.
    if dir.join("zserv.api").as_os_str().len() >= 100 {
        bail!(
            "FRR socket directory {} is too long for unix sockets; set TMPDIR shorter",
            dir.display()
        );
    }
    Ok(())
}

fn common_header(hostname: &str) -> String {
    format!("frr defaults traditional\nhostname {hostname}\nno log unique-id\n!\n")
}

pub(crate) fn zebra_config(hostname: &str) -> String {
    common_header(hostname)
}

/// Shared neighbor tuning: fast timers and immediate updates so labs converge in seconds.
fn neighbor_tuning(peer: IpAddr) -> String {
    format!(
        " neighbor {peer} timers 1 3\n \
         neighbor {peer} timers connect 1\n \
         neighbor {peer} advertisement-interval 0\n"
    )
}

fn neighbor_lines(peer: IpAddr, remote_as: u32) -> String {
    format!(" neighbor {peer} remote-as {remote_as}\n") + &neighbor_tuning(peer)
}

/// The router: eBGP to every node over IPv4 (IPv4 routes) and IPv6 (IPv6 routes), ECMP across
/// them, sends the nodes nothing.
pub(crate) fn router_bgpd_config(hostname: &str, nodes: usize) -> String {
    let mut s = common_header(hostname);
    s += "route-map ACCEPT-ALL permit 10\nexit\n!\nroute-map SEND-NOTHING deny 10\nexit\n!\n";
    s += &format!(
        "router bgp {ROUTER_AS}\n bgp router-id {}\n no bgp ebgp-requires-policy\n bgp log-neighbor-changes\n \
         bgp bestpath as-path multipath-relax\n",
        topology::ROUTER_CLIENT_IP
    );
    for i in 1..=nodes {
        s += &neighbor_lines(topology::node_ip(i).into(), ROUTER_AS + i as u32);
        s += &neighbor_lines(topology::ip6(i, false, 2).into(), ROUTER_AS + i as u32);
    }
    s += " !\n address-family ipv4 unicast\n  maximum-paths 16\n";
    for i in 1..=nodes {
        let peer = topology::node_ip(i);
        s += &format!(
            "  neighbor {peer} route-map ACCEPT-ALL in\n  neighbor {peer} route-map SEND-NOTHING out\n"
        );
        s += &format!("  no neighbor {} activate\n", topology::ip6(i, false, 2));
    }
    s += " exit-address-family\n !\n address-family ipv6 unicast\n  maximum-paths 16\n";
    for i in 1..=nodes {
        let peer = topology::ip6(i, false, 2);
        s += &format!(
            "  neighbor {peer} activate\n  neighbor {peer} route-map ACCEPT-ALL in\n  \
             neighbor {peer} route-map SEND-NOTHING out\n"
        );
    }
    s += " exit-address-family\nexit\n!\n";
    s
}

/// Node `i`: what `l3lb frr-config` prints for the lab's prefixes, AS and peers (IPv4 routes over
/// the IPv4 session, IPv6 over the IPv6 one), then the lab's timers, in a second visit of the
/// same `router bgp` (FRR enters the running instance).
pub(crate) fn node_bgpd_config(
    hostname: &str,
    i: usize,
    vip_prefix: Ipv4Net,
    vip_prefix6: Ipv6Net,
) -> String {
    let asn = ROUTER_AS + i as u32;
    let peer = topology::router_ip(i).into();
    let peer6 = topology::ip6(i, false, 1).into();
    let neighbor = |addr| Neighbor {
        addr,
        remote_as: ROUTER_AS,
    };
    let args = FrrConfigArgs {
        prefixes: vec![vip_prefix.into(), vip_prefix6.into()],
        asn: Some(asn),
        router_id: Some(topology::node_ip(i)),
        neighbors: vec![neighbor(peer), neighbor(peer6)],
    };
    let mut s = common_header(hostname);
    s += &render(&args);
    s += &format!("router bgp {asn}\n bgp log-neighbor-changes\n");
    s += &neighbor_tuning(peer);
    s += &neighbor_tuning(peer6);
    s += "exit\n!\n";
    s
}

/// Command line of `daemon` ("zebra" or "bgpd") with everything under `dir`; not daemonised, so
/// the pid the lab tracks is the daemon's. Logs go to stdout (the lab's log file).
pub(crate) fn daemon_command(daemon: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(Path::new(FRR_DIR).join(daemon));
    cmd.arg("-f")
        .arg(dir.join(format!("{daemon}.conf")))
        .arg("-i")
        .arg(dir.join(format!("{daemon}.pid")))
        .arg("-z")
        .arg(dir.join("zserv.api"))
        .arg("--vty_socket")
        .arg(dir)
        .args(["-P", "0", "--log", "stdout", "--log-level", "info"]);
    cmd
}

/// Where `daemon` (pid `pid`) keeps its crash buffers; removed here after a stop that left it.
pub(crate) fn crash_dir(daemon: &str, pid: u32) -> PathBuf {
    PathBuf::from(format!("/var/tmp/frr/{daemon}.{pid}"))
}

/// Runs one vtysh command against the daemons whose sockets are in `dir`.
pub(crate) fn vtysh(dir: &Path, command: &str) -> anyhow::Result<String> {
    run(&[
        "vtysh",
        "--vty_socket",
        &dir.display().to_string(),
        "-c",
        command,
    ])
}

pub(crate) fn vtysh_json(dir: &Path, command: &str) -> anyhow::Result<Value> {
    let out = vtysh(dir, command)?;
    serde_json::from_str(&out).with_context(|| format!("`{command}` gave no JSON: {out}"))
}

/// Peer address -> BGP state, from `show bgp summary json`.
pub(crate) fn peer_states(summary: &Value) -> Vec<(String, String)> {
    let Some(peers) = summary
        .pointer("/ipv4Unicast/peers")
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    peers
        .iter()
        .map(|(ip, p)| {
            let state = p.get("state").and_then(Value::as_str).unwrap_or("?");
            (ip.clone(), state.to_string())
        })
        .collect()
}

/// The next hops in the FIB of the selected, installed route for exactly `prefix`, from FRR's
/// `show ip[v6] route <prefix> json`. An absent prefix gives none.
pub(crate) fn fib_nexthops<'a>(
    route: &'a Value,
    prefix: &str,
) -> anyhow::Result<impl Iterator<Item = &'a Value>> {
    let entries = match route.get(prefix) {
        None => &[][..],
        Some(entries) => entries
            .as_array()
            .ok_or_else(|| anyhow!("route entry for {prefix} is not a list: {entries}"))?,
    };
    let flag = |v: &Value, k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    Ok(entries
        .iter()
        .filter(move |e| flag(e, "selected") && flag(e, "installed"))
        .flat_map(|e| {
            e.get("nexthops")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter(move |nh| flag(nh, "fib")))
}

/// Gateways of the selected, installed route for exactly `prefix`, from `show ip route <prefix> json`.
/// An absent prefix gives an empty list.
pub(crate) fn installed_nexthops(route: &Value, prefix: &str) -> anyhow::Result<Vec<Ipv4Addr>> {
    let mut hops = fib_nexthops(route, prefix)?
        .filter_map(|nh| nh.get("ip").and_then(Value::as_str))
        .map(|ip| ip.parse().with_context(|| format!("next hop {ip}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    hops.sort();
    hops.dedup();
    Ok(hops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_config_redistributes_only_the_vip_prefix() {
        let cfg = node_bgpd_config(
            "n1",
            1,
            "198.51.100.0/24".parse().unwrap(),
            "2001:db8:100::/64".parse().unwrap(),
        );
        assert!(cfg.contains("ip prefix-list L3LB-VIPS seq 10 permit 198.51.100.0/24 le 32\n"));
        assert!(
            cfg.contains(
                "route-map L3LB-VIPS permit 10\n match ip address prefix-list L3LB-VIPS\n"
            )
        );
        assert!(cfg.contains("router bgp 65001\n"));
        assert!(cfg.contains(" neighbor 10.100.1.1 remote-as 65000\n"));
        assert!(cfg.contains("  redistribute connected route-map L3LB-VIPS\n"));
    }

    #[test]
    fn router_config_peers_every_node_with_ecmp() {
        let cfg = router_bgpd_config("r", 2);
        for (ip, asn) in [("10.100.1.2", 65001), ("10.100.2.2", 65002)] {
            assert!(
                cfg.contains(&format!(" neighbor {ip} remote-as {asn}\n")),
                "{cfg}"
            );
            assert!(cfg.contains(&format!("  neighbor {ip} route-map SEND-NOTHING out\n")));
        }
        assert!(cfg.contains(" bgp bestpath as-path multipath-relax\n"));
        assert!(cfg.contains("  maximum-paths 16\n"));
    }

    #[test]
    fn nexthops_only_from_the_selected_installed_route_in_fib() {
        let route = json!({"198.51.100.10/32": [
            {"protocol": "bgp", "selected": true, "installed": true, "nexthops": [
                {"fib": true, "ip": "10.100.2.2", "afi": "ipv4", "active": true},
                {"fib": true, "ip": "10.100.1.2", "afi": "ipv4", "active": true},
                {"ip": "10.100.3.2", "afi": "ipv4"}]},
            {"protocol": "static", "nexthops": [{"fib": true, "ip": "10.9.9.9"}]}
        ]});
        let got = installed_nexthops(&route, "198.51.100.10/32").unwrap();
        assert_eq!(
            got,
            [
                "10.100.1.2".parse::<Ipv4Addr>().unwrap(),
                "10.100.2.2".parse().unwrap()
            ]
        );
        assert!(
            installed_nexthops(&json!({}), "198.51.100.10/32")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn peer_states_from_summary() {
        let summary = json!({"ipv4Unicast": {"peers": {
            "10.100.1.2": {"remoteAs": 65001, "state": "Established"},
            "10.100.2.2": {"remoteAs": 65002, "state": "Active"}}}});
        assert_eq!(
            peer_states(&summary),
            [
                ("10.100.1.2".to_string(), "Established".to_string()),
                ("10.100.2.2".to_string(), "Active".to_string())
            ]
        );
        assert!(peer_states(&json!({})).is_empty());
    }
}
