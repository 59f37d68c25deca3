//! Attaching to real links: native XDP and tcx egress on a veth in a scratch namespace.
use l3lb_userspace::node::datapath::Datapath;

use crate::require_root;

/// A scratch network namespace, deleted (with its links) on drop.
pub(crate) struct ScratchNetns(pub(crate) String);

impl ScratchNetns {
    pub(crate) fn new(tag: &str) -> Self {
        let name = format!("l3lb-dp-{tag}-{}", std::process::id());
        ip(&["netns", "add", &name]);
        Self(name)
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

pub(crate) fn ip(args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("running `ip` (iproute2) failed: install iproute2");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `Datapath::attach` puts native XDP and TC egress on a veth; dropping it detaches both; an
/// uplink without native XDP (lo) is refused with a clear error.
#[test]
fn attach_to_veth_and_detach_on_drop() {
    require_root();
    let ns = ScratchNetns::new("attach");
    ip(&[
        "-n", &ns.0, "link", "add", "up0", "type", "veth", "peer", "name", "peer0",
    ]);
    for link in ["up0", "peer0", "lo"] {
        ip(&["-n", &ns.0, "link", "set", link, "up"]);
    }
    let name = ns.0.clone();
    let (attached, detached, refused) = l3lb_tests::netns::in_netns(&ns.0, move || {
        let show = || ip(&["-n", &name, "-d", "link", "show", "up0"]);
        let tc = || Datapath::tc_egress_programs("up0").map_err(|e| format!("{e:?}"));
        let dp = Datapath::attach(&["up0".to_owned()]).map_err(|e| format!("{e:?}"))?;
        let attached = (show(), tc()?, dp.uplinks().to_vec());
        drop(dp);
        let detached = (show(), tc()?);
        // The loopback device has no native XDP.
        let refused = Datapath::attach(&["lo".to_owned()]).err();
        Ok::<_, String>((attached, detached, refused.map(|e| e.to_string())))
    })
    .expect("entering the scratch namespace")
    .expect("attach to veth");
    assert!(
        attached.0.contains("xdp"),
        "no XDP on up0 after attach:\n{}",
        attached.0
    );
    assert_eq!(
        attached.1,
        vec!["l3lb_tc_egress".to_owned()],
        "tcx egress on up0 after attach"
    );
    assert_eq!(attached.2, vec!["up0".to_owned()]);
    assert!(
        !detached.0.contains("xdp"),
        "XDP still on up0 after drop:\n{}",
        detached.0
    );
    assert!(
        detached.1.is_empty(),
        "tcx egress still on up0 after drop: {:?}",
        detached.1
    );
    let refused = refused.expect("attaching native XDP to lo must fail");
    assert!(refused.contains("native (driver) mode"), "{refused}");
}
