//! Pinning under a bpffs directory: maps keep their contents across a reload, a map of another
//! layout is recreated, links survive the process and get their program replaced in place, and
//! cleanup detaches and unpins everything.
use std::path::{Path, PathBuf};

use l3lb_common::{MAP_FLOWS_V4, MAP_FRONTENDS_V4, MAP_VIPS_V4, PROTO_TCP};
use l3lb_tests::packets::{
    CLIENT, CLIENT_PORT, HTTP, POD, POD_HTTP, VIP, backends, conn, ep, fe, flow, tcp, tcp_ack,
};
use l3lb_userspace::node::datapath::{Attachment, Datapath, cleanup, pinned_map_names};

use crate::{
    attach::{ScratchNetns, ip},
    require_root,
};

/// A pin directory on the host's bpffs, cleaned up (links, maps, directory) on drop.
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new(tag: &str) -> Self {
        let bpffs = Path::new("/sys/fs/bpf");
        assert!(
            bpffs.is_dir(),
            "no bpffs at /sys/fs/bpf: mount it with `mount -t bpf bpf /sys/fs/bpf`"
        );
        Self(bpffs.join(format!("l3lb-test-{tag}-{}", std::process::id())))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = cleanup(&self.0, &[]) {
            eprintln!("cleaning up {}: {e}", self.0.display());
        }
    }
}

#[test]
fn pinned_maps_keep_their_contents_across_reloads() {
    require_root();
    let dir = PinDir::new("maps");
    let id = fe(VIP, HTTP, PROTO_TCP);
    let value = backends(&[(POD, POD_HTTP)]);
    let (flow_key, flow_nat) = flow((POD, POD_HTTP), PROTO_TCP, (VIP, HTTP));
    let client = (CLIENT, CLIENT_PORT);
    let all: Vec<&str> = pinned_map_names().collect();

    let mut first = Datapath::load_pinned(&dir.0).expect("first pinned load");
    assert!(
        first.pinned().maps_reused.is_empty(),
        "{:?}",
        first.pinned()
    );
    first.set_frontend(id, &value).expect("upsert");
    first.insert_flow(flow_key, &flow_nat).expect("insert flow");
    first
        .test_run_xdp(&tcp(client, (VIP, HTTP), &[], None), 1)
        .expect("a new flow through the program");
    // Another client's SYN and ACK: an established flow.
    let other = (CLIENT, CLIENT_PORT + 1);
    for packet in [
        tcp(other, (VIP, HTTP), &[], None),
        tcp_ack(other, (VIP, HTTP)),
    ] {
        first.test_run_xdp(&packet, 1).expect("an established flow");
    }
    drop(first);

    let mut second = Datapath::load_pinned(&dir.0).expect("second pinned load");
    assert_eq!(second.pinned().maps_reused, all);
    assert_eq!(
        second.frontends().expect("frontends"),
        [(id, value.clone())].into_iter().collect()
    );
    // The slots in use were rebuilt: the pinned flows (new and established) still resolve to
    // their endpoint, and a new endpoint gets a slot of its own.
    let pin = conn(client, (VIP, HTTP), PROTO_TCP);
    let other_pin = conn(other, (VIP, HTTP), PROTO_TCP);
    assert_eq!(
        second.pinned_flows().expect("pins"),
        [(other_pin, ep(POD, POD_HTTP))].into()
    );
    assert_eq!(
        second.new_pinned_flows().expect("new pins"),
        [(pin, ep(POD, POD_HTTP)), (other_pin, ep(POD, POD_HTTP))].into()
    );
    let two = backends(&[(POD, POD_HTTP), ([10, 244, 1, 6], POD_HTTP)]);
    second.set_frontend(id, &two).expect("upsert after reload");
    assert_eq!(second.frontends().expect("frontends")[&id], two);
    second.set_frontend(id, &value).expect("back to one");
    // The flow recorded by hand and the established one.
    let other_key = l3lb_common::FlowKeyV4 {
        client_port_be: other.1.to_be(),
        ..flow_key
    };
    assert_eq!(
        second.flows().expect("flows"),
        [(flow_key, flow_nat), (other_key, flow_nat)]
            .into_iter()
            .collect()
    );
    assert_eq!(second.vips().expect("vips").len(), 1);
    drop(second);

    // Upgrading from a version without a VIP set: the reused frontends' VIPs are put in the
    // fresh set before any program could run on it.
    std::fs::remove_file(dir.0.join(MAP_VIPS_V4)).expect("unpin the VIP set");
    let upgraded = Datapath::load_pinned(&dir.0).expect("load without a VIP set");
    assert!(!upgraded.pinned().maps_reused.contains(&MAP_VIPS_V4));
    let vips: Vec<std::net::IpAddr> = upgraded.vips().expect("vips").into_iter().collect();
    assert_eq!(vips, vec![l3lb_tests::packets::ip4(VIP)]);
    drop(upgraded);

    // A pinned "frontends" map of another layout (here: the flow map, renamed over it) is not
    // reused: the load succeeds with a fresh, empty frontend map.
    std::fs::rename(dir.0.join(MAP_FLOWS_V4), dir.0.join(MAP_FRONTENDS_V4)).expect("rename pin");
    let third = Datapath::load_pinned(&dir.0).expect("load over a stale map");
    let rest: Vec<&str> = all
        .iter()
        .copied()
        .filter(|m| ![MAP_FRONTENDS_V4, MAP_FLOWS_V4].contains(m))
        .collect();
    assert_eq!(third.pinned().maps_reused, rest);
    assert!(third.frontends().expect("frontends").is_empty());
    // The reused VIP set follows the (fresh, empty) frontend map: the VIP left it.
    assert!(third.vips().expect("vips").is_empty());
    assert!(third.flows().expect("flows").is_empty());
}

#[test]
fn pinned_links_survive_the_process_and_are_replaced_in_place() {
    require_root();
    let dir = PinDir::new("links");
    let ns = ScratchNetns::new("pin");
    ip(&[
        "-n", &ns.0, "link", "add", "up0", "type", "veth", "peer", "name", "peer0",
    ]);
    for link in ["up0", "peer0"] {
        ip(&["-n", &ns.0, "link", "set", link, "up"]);
    }
    let (name, path) = (ns.0.clone(), dir.0.clone());
    let steps = l3lb_tests::netns::in_netns(&ns.0, move || {
        let show = || ip(&["-n", &name, "-d", "link", "show", "up0"]);
        let tc = || Datapath::tc_egress_programs("up0").map_err(|e| format!("{e:?}"));
        let uplinks = ["up0".to_owned()];
        let first = Datapath::attach_pinned(&uplinks, &path).map_err(|e| format!("{e:?}"))?;
        let first_how = first.pinned().uplinks.clone();
        drop(first);
        let after_drop = (show(), tc()?);
        let second = Datapath::attach_pinned(&uplinks, &path).map_err(|e| format!("{e:?}"))?;
        let second_how = second.pinned().uplinks.clone();
        drop(second);
        let after_replace = (show(), tc()?);
        let removed = cleanup(&path, &uplinks).map_err(|e| format!("{e:?}"))?;
        let after_cleanup = (show(), tc()?, path.exists());
        Ok::<_, String>((
            first_how,
            after_drop,
            second_how,
            after_replace,
            removed,
            after_cleanup,
        ))
    })
    .expect("entering the scratch namespace")
    .expect("pinned attach");
    let (first_how, after_drop, second_how, after_replace, removed, after_cleanup) = steps;
    let up0 = |a, t| vec![("up0".to_owned(), a, t)];
    assert_eq!(first_how, up0(Attachment::Attached, Attachment::Attached));
    assert!(after_drop.0.contains("xdp"), "XDP gone:\n{}", after_drop.0);
    assert_eq!(after_drop.1, vec!["l3lb_tc_egress".to_owned()]);
    assert_eq!(second_how, up0(Attachment::Replaced, Attachment::Replaced));
    assert!(after_replace.0.contains("xdp"), "{}", after_replace.0);
    // Replaced, not added: still exactly one TC program.
    assert_eq!(after_replace.1, vec!["l3lb_tc_egress".to_owned()]);
    assert_eq!(
        removed.removed.len(),
        2 + pinned_map_names().count(),
        "two links and every map: {removed:?}"
    );
    assert!(!after_cleanup.0.contains("xdp"), "{}", after_cleanup.0);
    assert!(after_cleanup.1.is_empty(), "{:?}", after_cleanup.1);
    assert!(!after_cleanup.2, "pin directory left behind");
}
