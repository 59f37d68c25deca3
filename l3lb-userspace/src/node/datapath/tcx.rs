//! The ids of the programs on an interface's tcx egress hook, from `BPF_PROG_QUERY` alone.
//! aya's `SchedClassifier::query_tcx` also opens every program by id (`BPF_PROG_GET_FD_BY_ID`),
//! which needs CAP_SYS_ADMIN; the uplink check compares ids only, so the daemon runs without it.
use std::io;

/// `BPF_PROG_QUERY` in `enum bpf_cmd` (include/uapi/linux/bpf.h).
const BPF_PROG_QUERY: libc::c_long = 16;
/// `BPF_TCX_EGRESS` in `enum bpf_attach_type`.
const BPF_TCX_EGRESS: u32 = 47;
/// Ids read at most (more attached programs: `ENOSPC`).
const MAX_PROGS: usize = 256;

/// The `query` member of `union bpf_attr`, up to `revision` (the kernel zero-extends the rest).
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_ifindex: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// The ids of the programs attached to `interface`'s tcx egress, in order.
pub(super) fn egress_prog_ids(interface: &str) -> io::Result<Vec<u32>> {
    let ifindex = nix::net::if_::if_nametoindex(interface)?;
    let mut ids = vec![0u32; MAX_PROGS];
    let mut attr = QueryAttr {
        target_ifindex: ifindex,
        attach_type: BPF_TCX_EGRESS,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: MAX_PROGS as u32,
        ..QueryAttr::default()
    };
    // SAFETY: `attr` is a `bpf_attr` prefix of the size passed, and `prog_ids` points at
    // `prog_cnt` writable u32s that outlive the call; the kernel writes nothing else.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &raw mut attr,
            std::mem::size_of::<QueryAttr>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    ids.truncate((attr.prog_cnt as usize).min(MAX_PROGS));
    Ok(ids)
}
