//! The b24watch wire contract (`b24watch.v1`) and the catalog of series the agent sends.
//!
//! # Layout
//! - [`v1`]: prost/tonic code generated from `b24watch/v1/agent.proto` at build time with protox.
//! - [`catalog`]: name, type and help text of every series the agent emits; the collector uses it
//!   for `# HELP`/`# TYPE` lines, the docs list it.
#![warn(missing_docs)]

pub mod catalog;

/// Generated types and services of package `b24watch.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("b24watch.v1");
}

/// Metadata key carrying the agent's credential (`Bearer <token>`).
pub const AUTHORIZATION: &str = "authorization";
