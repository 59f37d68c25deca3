//! Tiny XDP programs loaded from raw instructions with the `bpf` system call: no eBPF object to
//! build. Used by the datapath bench's traffic generator and by the bridged lab, whose switch
//! ports need an XDP program so a node's XDP_TX reaches them (a veth schedules its peer's NAPI
//! for XDP frames only when the peer has an XDP program; a NIC needs nothing of the kind).
use std::{
    ffi::{CString, c_void},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use anyhow::{Context as _, bail};
use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_type::BPF_PROG_TYPE_XDP};

/// One BPF instruction, as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Insn {
    pub code: u8,
    /// dst register in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

pub fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | src << 4,
        off,
        imm,
    }
}

pub const MOV64_K: u8 = 0xb7; // dst = imm
pub const EXIT: u8 = 0x95;
const XDP_PASS: i32 = 2;

/// The `bpf` system call with `attr`; the new fd or the error.
pub fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> std::io::Result<i64> {
    // SAFETY: `attr` is a valid, fully initialised bpf_attr of the size passed; every pointer in
    // it points to memory that lives until the call returns.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr).cast::<c_void>(),
            size_of::<bpf_attr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Loads `insns` as an XDP program named `name` (at most 15 bytes); the verifier's log in the
/// error if it refuses.
pub fn load_xdp(insns: &[Insn], name: &[u8]) -> anyhow::Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    // SAFETY: bpf_attr is a union of plain integer structs: all-zero is valid.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing plain integers into the BPF_PROG_LOAD member of the zeroed union.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = BPF_PROG_TYPE_XDP as u32;
    load.insn_cnt = insns.len() as u32;
    load.insns = insns.as_ptr() as u64;
    load.license = license.as_ptr() as u64;
    load.log_level = 1;
    load.log_size = log.len() as u32;
    load.log_buf = log.as_mut_ptr() as u64;
    for (dst, src) in load.prog_name.iter_mut().zip(name.iter().take(15)) {
        *dst = *src as libc::c_char;
    }
    let fd = match bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => fd,
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            bail!(
                "loading XDP program {}: {e}\n{}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(&log[..end])
            );
        }
    };
    // SAFETY: a new fd the kernel just gave us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// An XDP program that passes every frame.
pub fn xdp_pass() -> anyhow::Result<OwnedFd> {
    load_xdp(
        &[insn(MOV64_K, 0, 0, 0, XDP_PASS), insn(EXIT, 0, 0, 0, 0)],
        b"l3lb_lab_pass",
    )
}

/// Pins `prog` at `path` (on a bpffs), so `ip link set ... xdp pinned PATH` can attach it.
pub fn pin(prog: &OwnedFd, path: &Path) -> anyhow::Result<()> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: as in `load_xdp`.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing plain integers into the BPF_OBJ_PIN member of the zeroed union.
    let obj = unsafe { &mut attr.__bindgen_anon_4 };
    obj.pathname = c.as_ptr() as u64;
    obj.bpf_fd = prog.as_raw_fd() as u32;
    bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr)
        .map(drop)
        .with_context(|| format!("pinning an XDP program at {}", path.display()))
}
