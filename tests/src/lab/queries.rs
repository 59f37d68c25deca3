//! [`Lab`] accessors and the questions tests ask it: routes, addresses, client requests.
use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use anyhow::{Context, anyhow};
use serde_json::Value;

use super::{Lab, client, frr, process::run_in, topology};

impl Lab {
    /// The lab's unique id, part of every namespace name (`l3lb-<id>-<role>`).
    pub fn id(&self) -> &str {
        &self.names.id
    }

    /// Namespace of node `i` (1-based).
    pub fn node_ns(&self, i: usize) -> &str {
        &self.names.nodes[i - 1]
    }

    /// The router's namespace, or in a bridged lab the switch's (its bridge joins the client
    /// and the nodes' uplinks).
    pub fn router_ns(&self) -> &str {
        &self.names.router
    }

    pub fn client_ns(&self) -> &str {
        &self.names.client
    }

    /// Namespace of the pod on node `i` (1-based).
    pub fn pod_ns(&self, i: usize) -> &str {
        &self.names.pods[i - 1]
    }

    /// 10.244.<i>.2, the pod on node `i`.
    pub fn pod_ip(&self, i: usize) -> Ipv4Addr {
        topology::pod_ip(i)
    }

    /// 10.100.<i>.2, node `i`'s uplink address (the router's next hop towards it); in a bridged
    /// lab 10.100.0.<100+i>.
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        self.cfg.shape.node_ip(i)
    }

    /// 10.100.<i>.1, the router's address on the link to node `i`.
    pub fn router_ip(&self, i: usize) -> Ipv4Addr {
        topology::router_ip(i)
    }

    /// 10.100.0.2, the client's address.
    pub fn client_ip(&self) -> Ipv4Addr {
        topology::CLIENT_IP
    }

    /// Node uplink name, the same in every node namespace.
    pub fn uplink(&self) -> &str {
        topology::UPLINK
    }

    /// Per-lab directory with configs and `<log_name>.log` files.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    pub fn config(&self) -> &super::LabConfig {
        &self.cfg
    }

    /// Runs `args` to completion inside `ns`; the error carries stderr.
    pub fn exec(&self, ns: &str, args: &[&str]) -> anyhow::Result<String> {
        run_in(ns, args)
    }

    /// One vtysh command against the FRR daemons of `ns` (router or node namespace).
    pub fn vtysh(&self, ns: &str, command: &str) -> anyhow::Result<String> {
        frr::vtysh(&self.frr_dir(ns), command)
    }

    /// Next hops (gateway IPs) of the selected, installed route for exactly `prefix`
    /// (e.g. "198.51.100.10/32") in the router, from FRR's JSON; empty when there is no route.
    pub fn router_nexthops(&self, prefix: &str) -> anyhow::Result<Vec<Ipv4Addr>> {
        let dir = self.frr_dir(&self.names.router);
        let json = frr::vtysh_json(&dir, &format!("show ip route {prefix} json"))?;
        frr::installed_nexthops(&json, prefix)
    }

    /// Next hops of the router's BGP paths for exactly `prefix` (selected or not), from FRR's
    /// BGP table: what the nodes advertise, whatever the router's RIB selected.
    pub fn router_bgp_nexthops(&self, prefix: &str) -> anyhow::Result<Vec<Ipv4Addr>> {
        let dir = self.frr_dir(&self.names.router);
        let json = frr::vtysh_json(&dir, &format!("show bgp ipv4 unicast {prefix} json"))?;
        let mut hops: Vec<Ipv4Addr> = json
            .get("paths")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|p| {
                p.get("nexthops")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .filter_map(|nh| nh.get("ip").and_then(Value::as_str)?.parse().ok())
            .collect();
        hops.sort();
        hops.dedup();
        Ok(hops)
    }

    /// Interfaces the router's selected, installed IPv6 route for exactly `prefix` leaves by
    /// (IPv6 BGP next hops are link-local: the interface says which node), from FRR's JSON.
    pub fn router_nexthops6(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let dir = self.frr_dir(&self.names.router);
        let json = frr::vtysh_json(&dir, &format!("show ipv6 route {prefix} json"))?;
        let mut out: Vec<String> = frr::fib_nexthops(&json, prefix)?
            .filter_map(|nh| nh.get("interfaceName").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The router's interface towards node `i` (`n<i>`).
    pub fn router_link(&self, i: usize) -> String {
        topology::router_link(i)
    }

    /// fd00:244:<i>::2, the pod on node `i` (IPv6).
    pub fn pod_ip6(&self, i: usize) -> std::net::Ipv6Addr {
        topology::ip6(i, true, 2)
    }

    /// Node `i`'s pod networks, as its Node's `spec.podCIDRs` lists them: 10.244.<i>.0/24 and
    /// fd00:244:<i>::/64.
    pub fn pod_cidrs(&self, i: usize) -> [String; 2] {
        [
            format!(
                "{}/24",
                topology::pod_gw(i) & std::net::Ipv4Addr::new(255, 255, 255, 0)
            ),
            format!("{}/64", topology::ip6(i, true, 0)),
        ]
    }

    /// fd00:100:<i>::2, node `i`'s uplink address (IPv6); in a bridged lab fd00:100::<100+i>.
    pub fn node_ip6(&self, i: usize) -> std::net::Ipv6Addr {
        self.cfg.shape.node_ip6(i)
    }

    /// fd00:100::2, the client's IPv6 address.
    pub fn client_ip6(&self) -> std::net::Ipv6Addr {
        topology::CLIENT_IP6
    }

    /// One TCP request from the client namespace; returns the echo line ("pod1 10.100.0.2:40000").
    pub fn tcp_request(&self, addr: impl Into<IpAddr>, port: u16) -> anyhow::Result<String> {
        client::tcp_request(&self.names.client, addr, port)
    }

    /// One UDP request from the client namespace; returns the echo line.
    pub fn udp_request(&self, addr: impl Into<IpAddr>, port: u16) -> anyhow::Result<String> {
        client::udp_request(&self.names.client, addr, port)
    }

    /// Addresses on `lo` in node `i`'s namespace.
    pub fn lo_addresses(&self, i: usize) -> anyhow::Result<Vec<IpAddr>> {
        let ns = self.node_ns(i);
        let out = run_in(ns, &["ip", "-j", "addr", "show", "dev", "lo"])?;
        parse_addresses(&out).with_context(|| format!("addresses on lo in {ns}"))
    }
}

/// Local addresses from `ip -j addr show` output.
fn parse_addresses(json: &str) -> anyhow::Result<Vec<IpAddr>> {
    let v: Value = serde_json::from_str(json)?;
    let mut out = Vec::new();
    for link in v.as_array().ok_or_else(|| anyhow!("not a list: {json}"))? {
        for a in link
            .get("addr_info")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(local) = a.get("local").and_then(Value::as_str) {
                out.push(local.parse().with_context(|| format!("address {local}"))?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_json_addresses() {
        let json = r#"[{"ifindex":1,"ifname":"lo","addr_info":[
            {"family":"inet","local":"127.0.0.1","prefixlen":8},
            {"family":"inet","local":"198.51.100.10","prefixlen":32},
            {"family":"inet6","local":"::1","prefixlen":128}]}]"#;
        let got = parse_addresses(json).unwrap();
        assert_eq!(
            got,
            vec![
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "198.51.100.10".parse().unwrap(),
                "::1".parse().unwrap()
            ]
        );
    }
}
