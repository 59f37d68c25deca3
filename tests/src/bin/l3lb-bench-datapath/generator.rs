//! A traffic generator that feeds a link as a NIC driver does: `BPF_PROG_RUN` in live-frames
//! mode (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux >= 5.18) runs a tiny XDP program over frames the
//! kernel allocates from a page pool, and acts on its verdict as a driver would. The program
//! writes the whole prepared frame into the page and returns `bpf_redirect(ifindex)`: each frame
//! leaves through `ifindex`'s `ndo_xdp_xmit` as an `xdp_frame`. Redirected into one end of a veth,
//! the other end receives them in its NAPI poll, as from a NIC ring.
//!
//! Why the program writes the whole frame: the kernel copies the frame into a page only when the
//! page pool first allocates it; pages come back recycled with whatever the receiver left in them
//! (a DNATed destination, a decremented TTL). Writing all of it each time makes every frame the
//! prepared one.
//!
//! The program is 20-odd raw BPF instructions loaded with the `bpf` system call: no eBPF object
//! to build. `ifindex` is resolved in the network namespace of the thread that calls [`send`]
//! (its loopback device is the frames' ingress device), so callers run that in the namespace of
//! the link.
//!
//! [`send`]: Generator::send
use std::os::fd::{AsRawFd as _, OwnedFd};

use anyhow::ensure;
use aya_obj::generated::{BPF_F_TEST_XDP_LIVE_FRAMES, bpf_attr, bpf_cmd};
use l3lb_tests::raw_bpf::{EXIT, Insn, MOV64_K, bpf, insn, load_xdp};

/// Frames per batch: the kernel's NAPI budget, as a driver polls its ring.
pub const BATCH: u32 = 64;
/// Largest frame the program writes (a few instructions per 8 bytes).
const MAX_FRAME: usize = 128;
/// `bpf_redirect`'s helper number.
const BPF_FUNC_REDIRECT: i32 = 23;
const XDP_DROP: i32 = 1;

// Opcodes used (class | size/op | source).
const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const MOV64_X: u8 = 0xbf; // dst = src
const ADD64_K: u8 = 0x07; // dst += imm
const JGT_X: u8 = 0x2d; // if dst > src goto +off
const LD_DW: u8 = 0x18; // dst = imm64 (two slots)
const STX_DW: u8 = 0x7b; // *(u64 *)(dst + off) = src
const ST_W: u8 = 0x62; // *(u32 *)(dst + off) = imm
const ST_H: u8 = 0x6a; // *(u16 *)(dst + off) = imm
const ST_B: u8 = 0x72; // *(u8 *)(dst + off) = imm
const CALL: u8 = 0x85;

/// The program: if the page holds `frame.len()` bytes, write `frame` into it and redirect it into
/// `ifindex`; else drop it (cannot happen: the kernel sizes frames from the input).
fn program(frame: &[u8], ifindex: u32) -> Vec<Insn> {
    let len = frame.len() as i32;
    let mut body = Vec::new();
    let mut at = 0usize;
    for chunk in frame.chunks(8) {
        let off = at as i16;
        match *chunk {
            [a, b, c, d, e, f, g, h] => {
                let word = u64::from_le_bytes([a, b, c, d, e, f, g, h]);
                body.push(insn(LD_DW, 5, 0, 0, word as u32 as i32));
                body.push(insn(0, 0, 0, 0, (word >> 32) as u32 as i32));
                body.push(insn(STX_DW, 2, 5, off, 0));
            }
            _ => {
                // The tail: a 4-, 2- and 1-byte store as needed.
                let mut rest = chunk;
                let mut off = off;
                while !rest.is_empty() {
                    let (code, n) = match rest.len() {
                        4.. => (ST_W, 4),
                        2..=3 => (ST_H, 2),
                        _ => (ST_B, 1),
                    };
                    let mut bytes = [0u8; 4];
                    bytes[..n].copy_from_slice(&rest[..n]);
                    body.push(insn(code, 2, 0, off, u32::from_le_bytes(bytes) as i32));
                    rest = &rest[n..];
                    off += n as i16;
                }
            }
        }
        at += chunk.len();
    }
    body.push(insn(MOV64_K, 1, 0, 0, ifindex as i32));
    body.push(insn(MOV64_K, 2, 0, 0, 0));
    body.push(insn(CALL, 0, 0, 0, BPF_FUNC_REDIRECT));
    body.push(insn(EXIT, 0, 0, 0, 0));
    let mut prog = vec![
        insn(LDX_W, 2, 1, 0, 0), // r2 = ctx->data
        insn(LDX_W, 3, 1, 4, 0), // r3 = ctx->data_end
        insn(MOV64_X, 4, 2, 0, 0),
        insn(ADD64_K, 4, 0, 0, len),
        insn(JGT_X, 4, 3, body.len() as i16, 0), // too short: drop
    ];
    prog.extend(body);
    prog.push(insn(MOV64_K, 0, 0, 0, XDP_DROP));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    prog
}

/// The loaded generator program and the frame it sends.
pub struct Generator {
    prog: OwnedFd,
    frame: Vec<u8>,
}

impl Generator {
    /// Loads the program that sends `frame` (a whole Ethernet frame, without FCS) into `ifindex`.
    pub fn load(frame: &[u8], ifindex: u32) -> anyhow::Result<Self> {
        ensure!(
            (14..=MAX_FRAME).contains(&frame.len()),
            "a generator frame is 14 to {MAX_FRAME} bytes, not {}",
            frame.len()
        );
        let prog = load_xdp(&program(frame, ifindex), b"l3lb_trafficgen")?;
        Ok(Generator {
            prog,
            frame: frame.to_vec(),
        })
    }

    /// Sends `count` frames, [`BATCH`] per batch, from the calling thread; returns the kernel's
    /// mean time per frame in ns (the program, the redirect and what the receiving NAPI poll
    /// does on this CPU when each batch is flushed).
    pub fn send(&self, count: u32) -> anyhow::Result<u32> {
        self.run(count).map_err(failed)
    }

    fn run(&self, count: u32) -> std::io::Result<u32> {
        // SAFETY: as in `load`.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        // SAFETY: writing plain integers into the BPF_PROG_TEST_RUN member of the zeroed union.
        let test = unsafe { &mut attr.test };
        test.prog_fd = self.prog.as_raw_fd() as u32;
        test.data_in = self.frame.as_ptr() as u64;
        test.data_size_in = self.frame.len() as u32;
        test.repeat = count;
        test.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
        test.batch_size = BATCH;
        bpf(bpf_cmd::BPF_PROG_TEST_RUN, &mut attr)?;
        // SAFETY: the kernel wrote the result into the same member.
        Ok(unsafe { attr.test.duration })
    }
}

/// Why live frames are unavailable, if `e` is the kernel refusing them outright (the rows fed by
/// the generator cannot be measured here) rather than a fault of ours.
pub fn refused(e: &std::io::Error) -> Option<&'static str> {
    match e.raw_os_error() {
        Some(libc::EPERM) => Some(
            "EPERM: the kernel refused BPF_PROG_RUN with live frames, even for root (seen on \
             6.18 Firecracker guests; non-live runs work)",
        ),
        _ => None,
    }
}

fn failed(e: std::io::Error) -> anyhow::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EINVAL) => "(Linux >= 5.18 needed)",
        _ => refused(&e).unwrap_or(""),
    };
    anyhow::anyhow!("BPF_PROG_RUN in live-frames mode: {e} {hint}")
}

/// Whether this kernel runs live frames: one frame through the generator program, redirected
/// into loopback of the calling thread's namespace (no `ndo_xdp_xmit`: the kernel drops it).
/// `Ok(Some(reason))` if the kernel refuses them; any other failure is an error.
pub fn probe() -> anyhow::Result<Option<&'static str>> {
    const LOOPBACK: u32 = 1;
    let g = Generator::load(&[0; 14], LOOPBACK)?;
    match g.run(1) {
        Ok(_) => Ok(None),
        Err(e) => refused(&e).map(Some).ok_or_else(|| failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_eperm_means_live_frames_are_unavailable() {
        let refused_with = |errno| refused(&std::io::Error::from_raw_os_error(errno));
        assert!(refused_with(libc::EPERM).is_some_and(|r| r.starts_with("EPERM")));
        for errno in [libc::EINVAL, libc::ENOMEM, libc::E2BIG, libc::EFAULT] {
            assert_eq!(refused_with(errno), None, "errno {errno}");
        }
    }

    #[test]
    fn the_program_stores_every_byte_of_the_frame_once() {
        let frame: Vec<u8> = (1..=61).collect();
        let prog = program(&frame, 7);
        // Replay the stores on a zeroed buffer.
        let mut page = vec![0u8; frame.len()];
        let mut i = 0;
        let mut r5 = 0u64;
        while i < prog.len() {
            let p = prog[i];
            let off = p.off as usize;
            match p.code {
                LD_DW => {
                    r5 = u64::from(p.imm as u32) | u64::from(prog[i + 1].imm as u32) << 32;
                    i += 1;
                }
                STX_DW => page[off..off + 8].copy_from_slice(&r5.to_le_bytes()),
                ST_W => page[off..off + 4].copy_from_slice(&(p.imm as u32).to_le_bytes()),
                ST_H => page[off..off + 2].copy_from_slice(&(p.imm as u16).to_le_bytes()),
                ST_B => page[off] = p.imm as u8,
                _ => {}
            }
            i += 1;
        }
        assert_eq!(page, frame);
        // The bounds check jumps over the body to the drop.
        assert_eq!(prog[4].code, JGT_X);
        let drop = 5 + prog[4].off as usize;
        assert_eq!((prog[drop].code, prog[drop].imm), (MOV64_K, XDP_DROP));
        assert_eq!(prog[drop - 2].imm, BPF_FUNC_REDIRECT);
    }
}
