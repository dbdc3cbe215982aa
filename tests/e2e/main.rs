//! End-to-end tests: the real `b24watch-collector` and `b24watch-agent` binaries over loopback.
//!
//! Run `cargo build --workspace --bins` first (`make test` does). One module per subject; tests that
//! need root (installing the packages) are in the `e2e_root` target (`tests/e2e_root/`).

mod access;
mod agent_faults;
mod auth;
mod client_links;
mod config;
mod contracts;
mod delivery;
mod deploy;
mod findings;
mod health;
mod history;
mod http_limits;
mod i18n;
mod ingest_guard;
mod logs;
mod paging;
mod preventive;
mod probe;
mod remote_write;
mod shutdown;
mod sla;
mod soak;
mod tls;
