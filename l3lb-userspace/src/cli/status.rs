//! `l3lb status`: what this node serves now, one row per frontend — VIP:port/proto, Services,
//! local endpoints (Ready / terminating), the address on the interface with its remaining
//! lifetime, whether the frontend is in the maps, packets and bytes — and the node-level state:
//! uplinks, exclusion, allocator. The daemon's view comes over its control socket; addresses and
//! counters are read from the kernel (the interface, the programs attached to the uplink), so
//! they show even while the daemon is down.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::PathBuf,
    time::Duration,
};

use clap::Args;
use l3lb_common::Stat;
use serde::Serialize;

use super::OutputFormat;
use crate::{
    core::model::{FrontendId, Proto},
    daemon::{
        control::{Answer, DEFAULT_CONTROL_SOCKET, Request, ask},
        status::Snapshot,
    },
    node::{addresses::Netlink, datapath::attached},
};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's control socket (`l3lb run --control-socket`).
    #[arg(long, env = "L3LB_CONTROL_SOCKET", default_value = DEFAULT_CONTROL_SOCKET)]
    pub control_socket: PathBuf,
    /// The uplink whose programs' counters to read; default: the daemon's first.
    #[arg(long = "uplink", env = "L3LB_UPLINK", value_delimiter = ',')]
    pub uplinks: Vec<String>,
    /// The interface VIPs are on; default: the daemon's (else lo).
    #[arg(long, env = "L3LB_INTERFACE")]
    pub interface: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Everything `status` shows.
#[derive(Debug, Default, Serialize)]
pub struct View {
    pub node: Option<String>,
    /// Why the daemon's view is missing, if it is.
    pub daemon_error: Option<String>,
    pub allocator_leader: Option<bool>,
    pub excluded: Option<String>,
    pub uplinks: Vec<(String, Option<String>)>,
    pub rows: Vec<Row>,
    pub refusals: Vec<(String, String)>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Row {
    pub vip: IpAddr,
    pub port: u16,
    pub proto: String,
    pub services: Vec<String>,
    pub ready: usize,
    pub terminating: usize,
    pub wanted: bool,
    pub on_interface: bool,
    /// Remaining valid lifetime in seconds; `None`: forever or not on the interface.
    pub lifetime_s: Option<u64>,
    pub in_maps: bool,
    pub draining: bool,
    pub packets: u64,
    pub bytes: u64,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let snapshot = match ask(&args.control_socket, &Request::Status).await {
        Ok(Answer::Status(s)) => Ok(*s),
        Ok(Answer::Error(e)) => Err(e),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(format!("{e:#}")),
    };
    let interface = args
        .interface
        .clone()
        .or_else(|| snapshot.as_ref().ok().map(|s| s.interface.clone()))
        .unwrap_or_else(|| "lo".to_owned());
    let uplink = args.uplinks.first().cloned().or_else(|| {
        snapshot
            .as_ref()
            .ok()?
            .uplinks
            .first()
            .map(|u| u.name.clone())
    });
    let lifetimes = Netlink::new(&interface, None)?.lifetimes().await?;
    let stats = match &uplink {
        Some(u) => attached::attached_frontend_stats(u).await?,
        None => BTreeMap::new(),
    };
    let view = view(snapshot, &lifetimes, &stats);
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&view)?),
        OutputFormat::Table => print!("{}", render(&view)),
    }
    Ok(())
}

/// Joins the daemon's view (or the reason it is missing) with the kernel's.
pub fn view(
    snapshot: Result<Snapshot, String>,
    lifetimes: &BTreeMap<IpAddr, Option<Duration>>,
    stats: &BTreeMap<FrontendId, Stat>,
) -> View {
    let mut out = View::default();
    let mut seen: BTreeSet<FrontendId> = BTreeSet::new();
    let lifetime = |vip: &IpAddr| lifetimes.get(vip).copied().flatten().map(|d| d.as_secs());
    match snapshot {
        Ok(s) => {
            out.node = Some(s.node);
            out.allocator_leader = s.allocator_leader;
            out.excluded = s.excluded;
            out.uplinks = s.uplinks.into_iter().map(|u| (u.name, u.reason)).collect();
            out.refusals = s.refusals;
            for v in s.vips {
                for f in v.frontends {
                    let proto = f.proto.clone();
                    let id = frontend_id(v.vip, f.port, &proto);
                    let stat = id
                        .and_then(|id| stats.get(&id))
                        .copied()
                        .unwrap_or_default();
                    seen.extend(id);
                    out.rows.push(Row {
                        vip: v.vip,
                        port: f.port,
                        proto,
                        services: v.services.clone(),
                        ready: f.ready,
                        terminating: f.terminating,
                        wanted: v.wanted,
                        on_interface: lifetimes.contains_key(&v.vip),
                        lifetime_s: lifetime(&v.vip),
                        in_maps: id.is_some_and(|id| stats.contains_key(&id)),
                        draining: f.draining,
                        packets: stat.packets,
                        bytes: stat.bytes,
                    });
                }
            }
        }
        Err(e) => out.daemon_error = Some(e),
    }
    // What the kernel has that the daemon did not mention (or all of it, without the daemon).
    for (id, stat) in stats.iter().filter(|(id, _)| !seen.contains(id)) {
        out.rows.push(Row {
            vip: id.vip,
            port: id.port,
            proto: id.proto.to_string(),
            services: Vec::new(),
            ready: 0,
            terminating: 0,
            wanted: false,
            on_interface: lifetimes.contains_key(&id.vip),
            lifetime_s: lifetime(&id.vip),
            in_maps: true,
            draining: false,
            packets: stat.packets,
            bytes: stat.bytes,
        });
    }
    out
}

fn frontend_id(vip: IpAddr, port: u16, proto: &str) -> Option<FrontendId> {
    let proto = [Proto::Tcp, Proto::Udp, Proto::Sctp]
        .into_iter()
        .find(|p| p.name() == proto)?;
    Some(FrontendId { vip, port, proto })
}

/// The table for people.
pub fn render(v: &View) -> String {
    let mut out = String::new();
    let node = v.node.as_deref().unwrap_or("?");
    let allocator = match v.allocator_leader {
        None => "not in this process",
        Some(true) => "leader",
        Some(false) => "standby",
    };
    out += &format!(
        "node {node}   allocator: {allocator}   excluded: {}\n",
        v.excluded.as_deref().unwrap_or("no")
    );
    if let Some(e) = &v.daemon_error {
        out += &format!("daemon: not reachable ({e}); showing the kernel's view only\n");
    }
    for (uplink, reason) in &v.uplinks {
        match reason {
            None => out += &format!("uplink {uplink}: forwards\n"),
            Some(r) => out += &format!("uplink {uplink}: does not forward ({r})\n"),
        }
    }
    out += &format!(
        "{:<30} {:<24} {:>5} {:>11} {:<16} {:<5} {:>12} {:>14}\n",
        "FRONTEND", "SERVICE", "READY", "TERMINATING", "ADDRESS", "MAPS", "PACKETS", "BYTES"
    );
    for r in &v.rows {
        let frontend = match r.vip {
            IpAddr::V4(a) => format!("{a}:{}/{}", r.port, r.proto),
            IpAddr::V6(a) => format!("[{a}]:{}/{}", r.port, r.proto),
        };
        let service = if r.services.is_empty() {
            "-".to_owned()
        } else {
            r.services.join(",")
        };
        let address = match (r.on_interface, r.lifetime_s, r.wanted) {
            (true, Some(s), _) => format!("on ({s}s left)"),
            (true, None, _) => "on (forever)".to_owned(),
            (false, _, true) => "off (adding)".to_owned(),
            (false, _, false) => "off".to_owned(),
        };
        let maps = match (r.in_maps, r.draining) {
            (true, true) => "drain",
            (true, false) => "yes",
            (false, _) => "no",
        };
        out += &format!(
            "{frontend:<30} {service:<24} {:>5} {:>11} {address:<16} {maps:<5} {:>12} {:>14}\n",
            r.ready, r.terminating, r.packets, r.bytes
        );
    }
    for (service, reason) in &v.refusals {
        out += &format!("refused {service}: {reason}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status::{FrontendState, UplinkState, VipState};

    #[test]
    fn rows_join_the_daemon_and_the_kernel_and_render_one_line_each() {
        let vip: IpAddr = "198.51.100.10".parse().unwrap();
        let snapshot = Snapshot {
            node: "node1".into(),
            interface: "lo".into(),
            uplinks: vec![UplinkState {
                name: "up0".into(),
                forwarding: true,
                reason: None,
            }],
            excluded: None,
            allocator_leader: Some(true),
            vips: vec![VipState {
                vip,
                wanted: true,
                on_interface: true,
                services: vec!["default/web".into()],
                frontends: vec![FrontendState {
                    port: 80,
                    proto: "tcp".into(),
                    ready: 1,
                    terminating: 0,
                    programmed: true,
                    draining: false,
                }],
            }],
            refusals: vec![("evil/grab".into(), "198.51.100.10 belongs to ...".into())],
        };
        let tcp = FrontendId {
            vip,
            port: 80,
            proto: Proto::Tcp,
        };
        let stray = FrontendId {
            vip: "198.51.100.99".parse().unwrap(),
            port: 53,
            proto: Proto::Udp,
        };
        let stats = [
            (
                tcp,
                Stat {
                    packets: 48,
                    bytes: 3312,
                },
            ),
            (
                stray,
                Stat {
                    packets: 1,
                    bytes: 60,
                },
            ),
        ]
        .into();
        let lifetimes = [(vip, Some(Duration::from_secs(52)))].into();
        let v = view(Ok(snapshot), &lifetimes, &stats);
        assert_eq!(
            v.rows.len(),
            2,
            "the daemon's frontend and the kernel's stray"
        );
        assert_eq!((v.rows[0].packets, v.rows[0].lifetime_s), (48, Some(52)));
        assert!(v.rows[1].services.is_empty() && v.rows[1].in_maps);
        let text = render(&v);
        assert!(
            text.starts_with("node node1   allocator: leader   excluded: no\n"),
            "{text}"
        );
        assert!(text.contains("uplink up0: forwards"), "{text}");
        let line = text
            .lines()
            .find(|l| l.starts_with("198.51.100.10:80/tcp"))
            .unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "198.51.100.10:80/tcp",
                "default/web",
                "1",
                "0",
                "on",
                "(52s",
                "left)",
                "yes",
                "48",
                "3312"
            ]
        );
        assert!(text.contains("refused evil/grab: "), "{text}");

        let down = view(Err("no socket".into()), &lifetimes, &stats);
        assert_eq!(down.rows.len(), 2, "the kernel's view alone");
        assert!(render(&down).contains("daemon: not reachable (no socket)"));
    }
}
