//! `l3lb frr-config`: the FRR snippet for this node's `--prefix` values: prefix-lists and
//! route-maps per family that let only the VIPs l3lb puts on the interface out, and
//! `redistribute connected` through them in both address families; with `--asn` (and
//! `--neighbor`s) a complete `router bgp` block. l3lb never speaks BGP itself; this is what the
//! node's FRR needs to announce what l3lb adds. The lab's FRR nodes run on this output, and
//! `deploy/frr.conf` is it (tests check both).
use std::net::{IpAddr, Ipv4Addr};

use clap::Args;
use ipnet::IpNet;

/// The route-map (and prefix-list) names, IPv4; IPv6 adds a `6`.
pub const ROUTE_MAP: &str = "L3LB-VIPS";

#[derive(Debug, Args)]
pub struct FrrConfigArgs {
    /// VIP prefix (repeatable; comma-separated in the env var): the daemon's --prefix.
    #[arg(
        long = "prefix",
        env = "L3LB_PREFIX",
        value_delimiter = ',',
        required = true
    )]
    pub prefixes: Vec<IpNet>,
    /// The node's AS number: emit a complete `router bgp` block (else only the policy, and the
    /// lines to add to your own `router bgp`).
    #[arg(long)]
    pub asn: Option<u32>,
    /// The BGP router id (with --asn).
    #[arg(long)]
    pub router_id: Option<Ipv4Addr>,
    /// A BGP peer as ADDRESS=REMOTE_AS (repeatable, with --asn); IPv4 peers carry the IPv4
    /// VIPs, IPv6 peers the IPv6 ones.
    #[arg(long = "neighbor", value_parser = parse_neighbor)]
    pub neighbors: Vec<Neighbor>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbor {
    pub addr: IpAddr,
    pub remote_as: u32,
}

fn parse_neighbor(s: &str) -> Result<Neighbor, String> {
    let (addr, asn) = s.rsplit_once('=').ok_or_else(|| {
        format!("{s:?}: write a neighbor as ADDRESS=REMOTE_AS, e.g. 10.0.0.1=65000")
    })?;
    Ok(Neighbor {
        addr: addr
            .trim()
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?,
        remote_as: asn
            .trim()
            .parse()
            .map_err(|_| format!("{asn:?} is not an AS number"))?,
    })
}

pub fn run(args: FrrConfigArgs) -> anyhow::Result<()> {
    if args.asn.is_none() && (!args.neighbors.is_empty() || args.router_id.is_some()) {
        anyhow::bail!("--neighbor and --router-id need --asn (the node's AS number)");
    }
    print!("{}", render(&args));
    Ok(())
}

/// The snippet.
pub fn render(args: &FrrConfigArgs) -> String {
    let (v4, v6): (Vec<&IpNet>, Vec<&IpNet>) =
        args.prefixes.iter().partition(|p| p.addr().is_ipv4());
    let mut out = String::from(
        "! FRR for an l3lb node: advertise the VIPs l3lb puts on its interface (inside --prefix),\n\
         ! and nothing else.\n",
    );
    for (i, p) in v4.iter().enumerate() {
        out += &format!(
            "ip prefix-list {ROUTE_MAP} seq {} permit {p} le 32\n",
            (i + 1) * 10
        );
    }
    for (i, p) in v6.iter().enumerate() {
        out += &format!(
            "ipv6 prefix-list {ROUTE_MAP}6 seq {} permit {p} le 128\n",
            (i + 1) * 10
        );
    }
    out += "!\n";
    let families = [(&v4, "ip", "", "ipv4"), (&v6, "ipv6", "6", "ipv6")];
    for (nets, kw, suffix, _) in families {
        if !nets.is_empty() {
            out += &format!(
                "route-map {ROUTE_MAP}{suffix} permit 10\n match {kw} address prefix-list \
                 {ROUTE_MAP}{suffix}\nexit\n!\n"
            );
        }
    }
    let Some(asn) = args.asn else {
        out += "! Under your `router bgp`, in each address family:\n";
        for (nets, _, suffix, af) in families {
            if !nets.is_empty() {
                out += &format!(
                    "!  address-family {af} unicast\n!   redistribute connected route-map \
                     {ROUTE_MAP}{suffix}\n"
                );
            }
        }
        return out + ROUTER_HINT;
    };
    out += &format!("router bgp {asn}\n");
    if let Some(id) = args.router_id {
        out += &format!(" bgp router-id {id}\n");
    }
    out += " no bgp ebgp-requires-policy\n";
    for n in &args.neighbors {
        out += &format!(" neighbor {} remote-as {}\n", n.addr, n.remote_as);
    }
    for (nets, _, suffix, af) in families {
        let v6 = af == "ipv6";
        let peers: Vec<&Neighbor> = args.neighbors.iter().collect();
        if nets.is_empty() && !peers.iter().any(|n| n.addr.is_ipv6() == v6) {
            continue;
        }
        out += &format!(" address-family {af} unicast\n");
        if !nets.is_empty() {
            out += &format!("  redistribute connected route-map {ROUTE_MAP}{suffix}\n");
        }
        // A peer carries its own family's VIPs: v4 over v4 sessions, v6 over v6 ones.
        for n in peers {
            match (n.addr.is_ipv6(), v6) {
                (true, true) => out += &format!("  neighbor {} activate\n", n.addr),
                (false, true) => {}
                (true, false) => out += &format!("  no neighbor {} activate\n", n.addr),
                (false, false) => {}
            }
        }
        out += " exit-address-family\n";
    }
    out += "exit\n!\n";
    out + ROUTER_HINT
}

/// What the routers need so every announcing node gets traffic.
const ROUTER_HINT: &str = "\
! On the routers, accept several equal-cost paths so every node with a replica gets traffic:
!   router bgp <ASN>
!    bgp bestpath as-path multipath-relax
!    address-family ipv4 unicast
!     maximum-paths 16
";

#[cfg(test)]
mod tests {
    use super::*;

    fn args(prefixes: &[&str], asn: Option<u32>, neighbors: &[&str]) -> FrrConfigArgs {
        FrrConfigArgs {
            prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            asn,
            router_id: asn.map(|_| Ipv4Addr::new(10, 0, 0, 11)),
            neighbors: neighbors
                .iter()
                .map(|n| parse_neighbor(n).unwrap())
                .collect(),
        }
    }

    #[test]
    fn deploy_frr_conf_is_this_output() {
        let want = include_str!("../../../deploy/frr.conf");
        let got = render(&args(
            &["198.51.100.0/24"],
            Some(65001),
            &["10.0.0.1=65000"],
        ));
        assert_eq!(
            got, want,
            "regenerate deploy/frr.conf with `l3lb frr-config --prefix \
            198.51.100.0/24 --asn 65001 --router-id 10.0.0.11 --neighbor 10.0.0.1=65000`"
        );
    }

    #[test]
    fn both_families_each_over_its_own_sessions() {
        let got = render(&args(
            &["198.51.100.0/24", "2001:db8:100::/64", "203.0.113.0/28"],
            Some(65001),
            &["10.0.0.1=65000", "fd00::1=65000"],
        ));
        for line in [
            "ip prefix-list L3LB-VIPS seq 10 permit 198.51.100.0/24 le 32",
            "ip prefix-list L3LB-VIPS seq 20 permit 203.0.113.0/28 le 32",
            "ipv6 prefix-list L3LB-VIPS6 seq 10 permit 2001:db8:100::/64 le 128",
            " match ipv6 address prefix-list L3LB-VIPS6",
            " neighbor fd00::1 remote-as 65000",
            " address-family ipv4 unicast\n  redistribute connected route-map L3LB-VIPS\n  no neighbor fd00::1 activate\n exit-address-family",
            " address-family ipv6 unicast\n  redistribute connected route-map L3LB-VIPS6\n  neighbor fd00::1 activate\n exit-address-family",
        ] {
            assert!(got.contains(line), "{line:?} missing from:\n{got}");
        }
        let policy_only = render(&args(&["2001:db8:100::/64"], None, &[]));
        assert!(!policy_only.contains("router bgp 6"), "{policy_only}");
        assert!(policy_only.contains("!   redistribute connected route-map L3LB-VIPS6"));
        assert!(
            !policy_only.contains("ip prefix-list"),
            "no IPv4 prefix, no IPv4 policy"
        );
        assert!(parse_neighbor("10.0.0.1").is_err());
        assert_eq!(parse_neighbor("fd00::1=64512").unwrap().remote_as, 64512);
    }
}
