//! Errors of the datapath (loading, attaching, map access, test runs).
use std::path::PathBuf;

use aya::{EbpfError, maps::MapError, pin::PinError, programs::ProgramError};

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(
        "cannot open a raw packet socket for L2 mode's takeover announcements (gratuitous ARP, \
         unsolicited NA): it needs CAP_NET_RAW"
    )]
    PacketSocket(#[source] std::io::Error),
    #[error("cannot list the interfaces that take redirected XDP frames (netdev netlink family)")]
    RedirectTargets(#[source] std::io::Error),
    #[error("cannot make interface {ifindex} an XDP redirect target")]
    RedirectTarget {
        ifindex: u32,
        #[source]
        source: aya::maps::xdp::XdpMapError,
    },
    #[error(
        "loading the embedded eBPF object failed: it needs root with CAP_BPF, CAP_NET_ADMIN and \
         CAP_PERFMON, and a kernel with BTF (Linux >= 6.6, /sys/kernel/btf/vmlinux)"
    )]
    Load {
        #[source]
        source: Box<EbpfError>,
    },
    #[error("the eBPF object has no program {name}")]
    MissingProgram { name: &'static str },
    #[error("program {name} has an unexpected type")]
    ProgramType {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error(
        "loading program {name} into the kernel failed: the verifier refused it or a capability \
         is missing (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON); Linux >= 6.6 with BTF is needed"
    )]
    ProgramLoad {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error(
        "attaching XDP to uplink {uplink} in native (driver) mode failed: its driver must \
         support native XDP (generic/skb mode is not used) and no other XDP program may hold it"
    )]
    XdpAttach {
        uplink: String,
        #[source]
        source: ProgramError,
    },
    #[error("attaching the TC egress program to uplink {uplink} failed")]
    TcAttach {
        uplink: String,
        #[source]
        source: ProgramError,
    },
    #[error("reading a loaded program's id failed")]
    ProgramInfo {
        #[source]
        source: ProgramError,
    },
    #[error("the datapath is not pinned, so it cannot re-attach its programs")]
    NotPinned,
    #[error("listing the TC egress programs of {uplink} failed")]
    TcQuery {
        uplink: String,
        #[source]
        source: ProgramError,
    },
    #[error("reading the ids of the TC egress programs of {uplink} failed")]
    TcIds {
        uplink: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the eBPF object has no map {name}")]
    MissingMap { name: &'static str },
    #[error("map {name}: {op} failed")]
    Map {
        name: &'static str,
        op: &'static str,
        #[source]
        source: MapError,
    },
    #[error("endpoint {endpoint} is not of its backend slot's address family")]
    WrongFamily {
        endpoint: crate::core::model::Endpoint,
    },
    #[error("no free {what} left")]
    Full { what: &'static str },
    #[error("more than {max} VIP prefixes of one family")]
    TooManyPrefixes { max: usize },
    #[error("cannot read the number of possible CPUs")]
    Cpus {
        #[source]
        source: std::io::Error,
    },
    #[error("BPF_PROG_TEST_RUN of {name} failed")]
    TestRun {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error(
        "cannot create the pin directory {dir}; is a bpffs mounted above it \
         (`mount -t bpf bpf /sys/fs/bpf`)? see --bpffs-dir"
    )]
    BpffsDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{dir} is not on a bpffs and mounting one there failed; mount it \
         (`mount -t bpf bpf /sys/fs/bpf`) or pick another --bpffs-dir"
    )]
    BpffsMount {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("removing the pin {path} failed")]
    Unpin {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pinning the link at {path} failed")]
    LinkPin {
        path: PathBuf,
        #[source]
        source: PinError,
    },
    #[error("program {name} on {uplink}: {op} of its link failed")]
    Link {
        name: &'static str,
        uplink: String,
        op: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error(
        "program {name} was attached to {uplink} without a bpf_link (kernel too old?), so it \
         cannot be pinned to survive restarts"
    )]
    NotALink { name: &'static str, uplink: String },
}
