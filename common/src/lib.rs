//! What both b24watch binaries share: config errors and file loading, logging setup, shutdown
//! signals and systemd readiness.
//!
//! # Layout
//! - [`config`] has `ConfigError`/`ConfigErrors` (every problem of a file at once, with key and file),
//!   `Problems` that collects them while sections are validated,
//!   and loads TOML, where a missing file means all defaults.
//! - [`logging`] sets up the tracing subscriber (journald-friendly under systemd).
//! - [`signal`] waits for SIGTERM/SIGINT.
//! - [`systemd`] sends `Type=notify` messages.
#![warn(missing_docs)]

/// The git commit the binaries were built from (12 hex digits, or `B24WATCH_COMMIT` as set at
/// build time, or `unknown` outside a git checkout): the `commit` label of `b24watch_build_info`.
pub const COMMIT: &str = env!("B24WATCH_COMMIT");

pub mod config;
pub mod logging;
pub mod signal;
pub mod systemd;
