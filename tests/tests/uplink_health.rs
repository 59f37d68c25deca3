//! Advertise only what forwards (root): the daemon's check of its programs on the uplinks. A link
//! detached by hand is re-attached; when another XDP program holds the uplink, the check reports
//! it (the reconciler then withdraws every VIP) until the uplink is free again.
use std::{os::unix::fs::MetadataExt as _, path::PathBuf, process::Command};

use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use l3lb_common::PROG_XDP_NOOP;
use l3lb_userspace::node::datapath::{Datapath, EBPF_OBJECT, attached_xdp_id, cleanup};

fn require_root() {
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    assert_eq!(euid, 0, "loads eBPF programs: run as root");
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e} (install it: bash .ci/setup)"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A namespace with a veth `up0` and a pin directory, both removed on drop.
struct Scratch {
    ns: String,
    dir: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = cleanup(&self.dir, &[]) {
            eprintln!("cleaning up {}: {e}", self.dir.display());
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn detached_or_displaced_programs_are_repaired_or_reported() {
    require_root();
    let id = std::process::id();
    let s = Scratch {
        ns: format!("l3lb-health-{id}"),
        dir: PathBuf::from(format!("/sys/fs/bpf/l3lb-test-health-{id}")),
    };
    run("ip", &["netns", "add", &s.ns]);
    run(
        "ip",
        &[
            "-n", &s.ns, "link", "add", "up0", "type", "veth", "peer", "name", "peer0",
        ],
    );
    for link in ["up0", "peer0"] {
        run("ip", &["-n", &s.ns, "link", "set", link, "up"]);
    }
    let dir = s.dir.clone();
    let link_pin = s.dir.join("link_xdp_up0");
    let tc_pin = s.dir.join("link_tc_egress_up0");
    let steps = l3lb_tests::netns::in_netns(&s.ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let mut dp =
                Datapath::attach_pinned(&["up0".to_owned()], &dir).map_err(|e| format!("{e:?}"))?;
            let healthy = dp.check_uplinks().await;
            let ours = attached_xdp_id("up0").await.map_err(|e| e.to_string())?;

            // By hand: the XDP link goes away.
            run(
                "bpftool",
                &["link", "detach", "pinned", &link_pin.to_string_lossy()],
            );
            let gone = attached_xdp_id("up0").await.map_err(|e| e.to_string())?;
            let repaired = dp.check_uplinks().await;
            let back = attached_xdp_id("up0").await.map_err(|e| e.to_string())?;
            // The TC egress link too: noticed by program id, re-attached.
            run(
                "bpftool",
                &["link", "detach", "pinned", &tc_pin.to_string_lossy()],
            );
            let tc_programs = || Datapath::tc_egress_programs("up0").map_err(|e| e.to_string());
            let tc_gone = tc_programs()?;
            let tc_repaired = dp.check_uplinks().await;
            let tc_back = tc_programs()?;

            // Another program takes the uplink while ours is off it.
            run(
                "bpftool",
                &["link", "detach", "pinned", &link_pin.to_string_lossy()],
            );
            let mut foreign = Ebpf::load(EBPF_OBJECT).map_err(|e| e.to_string())?;
            let noop: &mut Xdp = foreign
                .program_mut(PROG_XDP_NOOP)
                .ok_or("no noop program")?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| e.to_string())?;
            noop.load().map_err(|e| e.to_string())?;
            noop.attach("up0", XdpMode::Driver)
                .map_err(|e| e.to_string())?;
            let displaced = dp.check_uplinks().await;
            let still_broken = dp.check_uplinks().await;

            // The other program leaves: the next check re-attaches ours.
            drop(foreign);
            let freed = dp.check_uplinks().await;
            let last = attached_xdp_id("up0").await.map_err(|e| e.to_string())?;
            Ok::<_, String>((
                healthy,
                ours,
                gone,
                repaired,
                back,
                (tc_gone, tc_repaired, tc_back),
                displaced,
                still_broken,
                freed,
                last,
            ))
        })
    })
    .expect("entering the scratch namespace")
    .expect("the checks ran");
    let (healthy, ours, gone, repaired, back, tc, displaced, still_broken, freed, last) = steps;
    assert!(
        healthy.is_empty(),
        "fresh attach reported broken: {healthy:?}"
    );
    assert!(ours.is_some(), "no XDP program on up0 after attach");
    assert_eq!(gone, None, "bpftool link detach left a program on up0");
    assert!(
        repaired.is_empty(),
        "a detached link was not repaired: {repaired:?}"
    );
    assert_eq!(back, ours, "after the repair up0 runs l3lb's program again");
    let (tc_gone, tc_repaired, tc_back) = tc;
    assert!(
        tc_gone.is_empty(),
        "TC egress after the detach: {tc_gone:?}"
    );
    assert!(
        tc_repaired.is_empty(),
        "a detached TC link was not repaired: {tc_repaired:?}"
    );
    assert_eq!(
        tc_back,
        [l3lb_common::PROG_TC_EGRESS],
        "TC egress re-attached"
    );
    let reason = displaced
        .get("up0")
        .unwrap_or_else(|| panic!("a foreign XDP program went unreported: {displaced:?}"));
    assert!(
        reason.contains("not l3lb's") && reason.contains("re-attaching failed"),
        "{reason}"
    );
    assert_eq!(
        displaced, still_broken,
        "the report holds while the cause does"
    );
    assert!(freed.is_empty(), "not re-attached once free: {freed:?}");
    assert_eq!(
        last, ours,
        "after the other program left, up0 runs l3lb's again"
    );
}
