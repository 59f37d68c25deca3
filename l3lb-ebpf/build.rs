//! Rebuild the eBPF object when bpf-linker changes (an LLVM upgrade changes the generated code).
use which::which;

fn main() {
    match which("bpf-linker") {
        Ok(bpf_linker) => println!("cargo:rerun-if-changed={}", bpf_linker.display()),
        Err(err) => println!(
            "cargo:warning=bpf-linker not found ({err}); install it with `cargo install bpf-linker`"
        ),
    }
}
