//! Links the optimised agent as a position-dependent executable (`-no-pie`) on Linux/glibc.
//!
//! A PIE binary carries a dynamic relocation for every pointer in its static data (vtables,
//! `&'static str` in tables, panic locations): 438 KB of `.rela.dyn` that the loader reads at
//! every start, and 313 KB of `.data.rel.ro` it writes (copy-on-write, private to the process).
//! Both stay resident: about 0.7 MiB of the 8 MiB budget (`make bench-agent`, smaps breakdown
//! `agent_rss_binary_data_kib`). Linked at a fixed address, the pointers are final in the file
//! and only the pages used are faulted in. What is given up: the agent's own code and data are
//! not placed at a random address (libraries, heap and stacks still are); the agent is memory-safe
//! Rust, opens no port and runs under the hardened unit. Debug builds stay PIE.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|v| v == "linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|v| v == "gnu");
    if release && linux_gnu {
        println!("cargo:rustc-link-arg-bin=b24watch-agent=-no-pie");
    }
}
