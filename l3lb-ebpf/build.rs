//! Rebuild the eBPF object when bpf-linker changes (an LLVM upgrade changes the generated code),
//! and let bpf-linker generate misaligned loads.
use which::which;

fn main() {
    match which("bpf-linker") {
        Ok(bpf_linker) => println!("cargo:rerun-if-changed={}", bpf_linker.display()),
        Err(err) => println!(
            "cargo:warning=bpf-linker not found ({err}); install it with `cargo install bpf-linker`"
        ),
    }
    // Misaligned loads: packet headers sit at any offset; the kernel allows misaligned packet
    // access where the CPU does (x86-64, arm64), so a 4-byte address is one load, not four.
    println!("cargo:rustc-link-arg-bins=--cpu-features=+allows-misaligned-mem-access");
}
