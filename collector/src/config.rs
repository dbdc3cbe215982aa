//! Collector configuration: the TOML file as written (`RawConfig`) and the validated form (`Config`).
//!
//! A missing file means all defaults. Unknown keys are rejected. Every problem is reported at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the collector looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/b24watch/collector.toml";

/// The complete default config file, printed by `--print-default-config`. Tests keep it equal to
/// the defaults in code and check it names every key.
pub const DEFAULT_CONFIG: &str = r#"# b24watch-collector configuration.
# Every key is optional: the values shown are the defaults.
# Flags and B24WATCH_* environment variables override the file (see `b24watch-collector --help`).

[collector]
# gRPC ingest address for agents. Loopback by default: set "0.0.0.0:10062" (or a specific
# address) so agents on other servers can connect.
grpc_listen = "127.0.0.1:10062"
# HTTP address for /metrics, /-/healthy, /-/ready and /api/v1.
http_listen = "127.0.0.1:10061"
# Directory holding b24watch.db (SQLite). Created if missing.
data_dir = "/var/lib/b24watch"
# An agent silent for longer than this many seconds is reported with b24watch_agent_up 0 and its
# other series disappear from /metrics (10..=86400). Three agent intervals is a good value.
agent_timeout_secs = 60
# Seconds given to open streams to finish their current batch on SIGTERM (0..=120).
shutdown_grace_secs = 5
# Upper bound of the database size in bytes; 0 means no bound but the disk. When reached, batches
# are refused with UNAVAILABLE (agents keep them in their spools) until space is made.
max_db_bytes = 0

[tls]
# PEM certificate chain and private key for the gRPC listener. Both empty: plain HTTP/2, for
# loopback or trusted networks only (agent tokens would cross the network in clear text).
cert_file = ""
key_file = ""
# PEM CA bundle. When set, agents must present a client certificate signed by it (mTLS); the
# token still decides which agent is talking.
client_ca_file = ""

[limits]
# Largest accepted gRPC message after decompression, in bytes (65536..=67108864).
max_message_bytes = 4194304
# Distinct series one agent may create; points of further series are rejected with
# SERIES_LIMIT (1..=1000000).
max_series_per_agent = 10000
# Labels per series (0..=64).
max_labels_per_series = 16
# Bytes per label value (1..=65536).
max_label_value_bytes = 2048
# Points stamped further than this many seconds ahead of the collector's clock are rejected
# with TOO_FAR_IN_FUTURE (1..=86400).
max_future_secs = 600
"#;

/// The config file as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// `[collector]`
    pub collector: RawCollector,
    /// `[tls]`
    pub tls: RawTls,
    /// `[limits]`
    pub limits: RawLimits,
}

/// `[tls]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// Server certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Server private key (PEM).
    pub key_file: PathBuf,
    /// CA for client certificates (PEM); set means mTLS.
    pub client_ca_file: PathBuf,
}

/// `[collector]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawCollector {
    /// gRPC listen address.
    pub grpc_listen: String,
    /// HTTP listen address.
    pub http_listen: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Seconds of silence before an agent counts as down.
    pub agent_timeout_secs: u64,
    /// Seconds for streams to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Database size bound, 0 for none.
    pub max_db_bytes: u64,
}

impl Default for RawCollector {
    fn default() -> Self {
        RawCollector {
            grpc_listen: "127.0.0.1:10062".into(),
            http_listen: "127.0.0.1:10061".into(),
            data_dir: "/var/lib/b24watch".into(),
            agent_timeout_secs: 60,
            shutdown_grace_secs: 5,
            max_db_bytes: 0,
        }
    }
}

/// `[limits]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Largest decoded message.
    pub max_message_bytes: u64,
    /// Series per agent.
    pub max_series_per_agent: u64,
    /// Labels per series.
    pub max_labels_per_series: u64,
    /// Bytes per label value.
    pub max_label_value_bytes: u64,
    /// Seconds into the future.
    pub max_future_secs: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_message_bytes: 4 << 20,
            max_series_per_agent: 10_000,
            max_labels_per_series: 16,
            max_label_value_bytes: 2048,
            max_future_secs: 600,
        }
    }
}

/// Validated collector configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// gRPC listen address.
    pub grpc_listen: SocketAddr,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Silence after which an agent is down.
    pub agent_timeout: Duration,
    /// Time for streams to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Database size bound.
    pub max_db_bytes: Option<u64>,
    /// TLS for the gRPC listener.
    pub tls: Option<TlsFiles>,
    /// Input limits.
    pub limits: Limits,
}

/// PEM files for the gRPC listener's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert_file: PathBuf,
    /// Private key.
    pub key_file: PathBuf,
    /// CA for client certificates; `Some` means clients must present one.
    pub client_ca_file: Option<PathBuf>,
}

/// Input limits applied to every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest decoded message.
    pub max_message_bytes: usize,
    /// Series per agent.
    pub max_series_per_agent: usize,
    /// Labels per series.
    pub max_labels_per_series: usize,
    /// Bytes per label value.
    pub max_label_value_bytes: usize,
    /// Milliseconds into the future.
    pub max_future_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Config::from_raw(RawConfig::default(), Path::new("<defaults>")).expect("defaults are valid (tested)").limits
    }
}

pub use b24watch_common::config::{ConfigError, ConfigErrors};

impl Config {
    /// Parses config text. Pure: `origin` only names the file in errors.
    ///
    /// # Errors
    /// Every problem found.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = b24watch_common::config::parse_toml(text, origin)?;
        Config::from_raw(raw, origin)
    }

    /// Validates a raw config, reporting every problem at once.
    ///
    /// # Errors
    /// Every problem found.
    pub fn from_raw(raw: RawConfig, origin: &Path) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut bad = |key: &str, message: String| {
            errors.push(ConfigError { origin: origin.to_path_buf(), key: key.to_owned(), message });
        };
        let c = &raw.collector;
        let mut addr = |key: &str, text: &str| match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                bad(
                    key,
                    format!("{text:?}: expected an address and port such as \"127.0.0.1:10062\" or \"[::]:10062\""),
                );
                None
            }
        };
        let grpc_listen = addr("collector.grpc_listen", &c.grpc_listen);
        let http_listen = addr("collector.http_listen", &c.http_listen);
        let mut range = |key: &str, value: u64, min: u64, max: u64| {
            if !(min..=max).contains(&value) {
                bad(key, format!("{value}: expected an integer from {min} to {max}"));
            }
            value
        };
        let agent_timeout = range("collector.agent_timeout_secs", c.agent_timeout_secs, 10, 86_400);
        let shutdown_grace = range("collector.shutdown_grace_secs", c.shutdown_grace_secs, 0, 120);
        let l = &raw.limits;
        let max_message_bytes = range("limits.max_message_bytes", l.max_message_bytes, 65_536, 64 << 20);
        let max_series = range("limits.max_series_per_agent", l.max_series_per_agent, 1, 1_000_000);
        let max_labels = range("limits.max_labels_per_series", l.max_labels_per_series, 0, 64);
        let max_label_value = range("limits.max_label_value_bytes", l.max_label_value_bytes, 1, 65_536);
        let max_future = range("limits.max_future_secs", l.max_future_secs, 1, 86_400);
        if c.max_db_bytes != 0 && c.max_db_bytes < 1 << 20 {
            bad("collector.max_db_bytes", format!("{}: expected 0 (no bound) or at least 1048576", c.max_db_bytes));
        }
        let t = &raw.tls;
        let set = |p: &PathBuf| !p.as_os_str().is_empty();
        let tls = match (set(&t.cert_file), set(&t.key_file)) {
            (true, true) => Some(TlsFiles {
                cert_file: t.cert_file.clone(),
                key_file: t.key_file.clone(),
                client_ca_file: set(&t.client_ca_file).then(|| t.client_ca_file.clone()),
            }),
            (false, false) => {
                if set(&t.client_ca_file) {
                    bad("tls.client_ca_file", "set without tls.cert_file and tls.key_file: mTLS needs TLS".into());
                }
                None
            }
            (true, false) => {
                bad("tls.key_file", "empty while tls.cert_file is set: set both or neither".into());
                None
            }
            (false, true) => {
                bad("tls.cert_file", "empty while tls.key_file is set: set both or neither".into());
                None
            }
        };
        if c.data_dir.as_os_str().is_empty() {
            bad("collector.data_dir", "empty: expected a directory path".into());
        }
        match (grpc_listen, http_listen) {
            (Some(grpc_listen), Some(http_listen)) if errors.is_empty() => Ok(Config {
                grpc_listen,
                http_listen,
                data_dir: c.data_dir.clone(),
                agent_timeout: Duration::from_secs(agent_timeout),
                shutdown_grace: Duration::from_secs(shutdown_grace),
                max_db_bytes: (c.max_db_bytes > 0).then_some(c.max_db_bytes),
                tls,
                limits: Limits {
                    max_message_bytes: max_message_bytes as usize,
                    max_series_per_agent: max_series as usize,
                    max_labels_per_series: max_labels as usize,
                    max_label_value_bytes: max_label_value as usize,
                    max_future_ms: (max_future * 1000) as i64,
                },
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> &'static Path {
        Path::new("/etc/b24watch/collector.toml")
    }

    #[test]
    fn default_config_text_matches_the_code_defaults() {
        let parsed: RawConfig = toml::from_str(DEFAULT_CONFIG).expect("valid TOML");
        assert_eq!(parsed, RawConfig::default());
        assert_eq!(Config::parse("", origin()), Config::parse(DEFAULT_CONFIG, origin()));
    }

    #[test]
    fn default_config_names_every_key() {
        let raw = toml::to_string(&RawConfig::default()).expect("serializable");
        let table: toml::Table = toml::from_str(&raw).expect("round trip");
        for (section, keys) in &table {
            for key in keys.as_table().expect("sections are tables").keys() {
                assert!(DEFAULT_CONFIG.contains(&format!("\n{key} = ")), "DEFAULT_CONFIG lacks [{section}] {key}");
            }
        }
    }

    #[test]
    fn every_invalid_value_is_reported_at_once() {
        let text =
            "[collector]\ngrpc_listen = \"localhost\"\nagent_timeout_secs = 1\n[limits]\nmax_message_bytes = 10\n";
        let err = Config::parse(text, origin()).expect_err("invalid");
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["collector.grpc_listen", "collector.agent_timeout_secs", "limits.max_message_bytes"]);
        assert!(err.to_string().contains("/etc/b24watch/collector.toml"));
    }

    #[test]
    fn unknown_section_is_rejected() {
        let err = Config::parse("[colector]\n", origin()).expect_err("unknown");
        assert!(err.to_string().contains("colector"), "{err}");
    }
}
