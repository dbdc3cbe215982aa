//! Agent configuration: the TOML file as written (`RawConfig`) and the validated form (`Config`).
//!
//! A missing file means all defaults. Unknown keys are rejected. Every problem in a file is reported
//! at once, with the key and the file it came from.
//!
//! This file holds the `[agent]` section and the assembly; every other section's types and
//! validation live beside the code that uses them (`[host]` in `sampler`, `[logs]` in `logs`,
//! `[spool]` in `spool`, `[tls]` in `shipper`, each check's in its file under `checks`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use b24watch_common::config::Problems;
pub use b24watch_common::config::{ConfigError, ConfigErrors};
use serde::{Deserialize, Serialize};

use crate::checks::ChecksConfig;
use crate::checks::backup::RawBackup;
use crate::checks::bitrix::RawBitrix;
use crate::checks::database::RawDatabase;
use crate::checks::mysql::RawMysql;
use crate::checks::probe::RawProbe;
use crate::checks::push::RawPush;
use crate::checks::services::RawServices;
use crate::checks::version::RawVersions;
use crate::checks::workers::RawWorkers;
use crate::logs::{LogsConfig, RawLogs};
use crate::sampler::{HostConfig, RawHost};
use crate::shipper::{RawTls, TlsConfig};
use crate::spool::{RawSpool, SpoolConfig};

/// Where the agent looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/b24watch/agent.toml";

/// The complete default config file, printed by `--print-default-config`.
///
/// A test checks that it parses to the same values as an empty file and that it names every key.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// The config file as written. Mirrors the TOML; validated by [`Config::from_raw`].
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// `[agent]`
    pub agent: RawAgent,
    /// `[tls]`
    pub tls: RawTls,
    /// `[spool]`
    pub spool: RawSpool,
    /// `[logs]`
    pub logs: RawLogs,
    /// `[host]`
    pub host: RawHost,
    /// `[mysql]`
    pub mysql: RawMysql,
    /// `[bitrix]`
    pub bitrix: RawBitrix,
    /// `[probe]`
    pub probe: RawProbe,
    /// `[services]`
    pub services: RawServices,
    /// `[backup]`
    pub backup: RawBackup,
    /// `[database]`
    pub database: RawDatabase,
    /// `[versions]`
    pub versions: RawVersions,
    /// `[workers]`
    pub workers: RawWorkers,
    /// `[push]`
    pub push: RawPush,
}

/// `[agent]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawAgent {
    /// Agent id; empty means the id inside the token.
    pub id: String,
    /// Collector gRPC endpoint.
    pub collector_url: String,
    /// Token text.
    pub token: String,
    /// File with the token.
    pub token_file: PathBuf,
    /// Spool directory.
    pub state_dir: PathBuf,
    /// Seconds between samples.
    pub interval_secs: u64,
    /// Seconds per sampler run.
    pub sampler_timeout_secs: u64,
    /// Seconds of sending after SIGTERM.
    pub shutdown_grace_secs: u64,
}

impl Default for RawAgent {
    fn default() -> Self {
        RawAgent {
            id: String::new(),
            collector_url: "http://127.0.0.1:10062".into(),
            token: String::new(),
            token_file: "/etc/b24watch/agent.token".into(),
            state_dir: "/var/lib/b24watch-agent".into(),
            interval_secs: 10,
            sampler_timeout_secs: 5,
            shutdown_grace_secs: 3,
        }
    }
}

/// Where the token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Given inline in the config or by flag.
    Inline(String),
    /// Read from the first line of a file at startup.
    File(PathBuf),
}

/// Validated agent configuration. Code after loading never re-checks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Agent id; `None` means the id inside the token.
    pub id: Option<String>,
    /// Collector gRPC endpoint (`http://host:port`).
    pub collector_url: String,
    /// Where the token comes from.
    pub token: TokenSource,
    /// Spool directory.
    pub state_dir: PathBuf,
    /// Time between samples.
    pub interval: Duration,
    /// Time one sampler run may take.
    pub sampler_timeout: Duration,
    /// Time to keep sending after SIGTERM.
    pub shutdown_grace: Duration,
    /// TLS settings, used for https:// collector URLs.
    pub tls: TlsConfig,
    /// Spool bounds.
    pub spool: SpoolConfig,
    /// Error-log monitoring.
    pub logs: LogsConfig,
    /// Host samplers.
    pub host: HostConfig,
    /// MySQL, Bitrix, probe and service checks.
    pub checks: ChecksConfig,
}

impl Config {
    /// Parses config text. Pure: `origin` only names the file in errors.
    ///
    /// # Errors
    /// Every problem found, each naming its key and `origin`.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = b24watch_common::config::parse_toml(text, origin)?;
        Config::from_raw(raw, origin)
    }

    /// Validates a raw config, reporting every problem at once.
    ///
    /// # Errors
    /// Every problem found.
    pub fn from_raw(raw: RawConfig, origin: &Path) -> Result<Config, ConfigErrors> {
        let mut problems = Problems::new(origin);
        let a = &raw.agent;
        if !a.id.is_empty() && !valid_agent_id(&a.id) {
            problems.bad("agent.id", format!("{:?}: expected 1..=128 characters of [A-Za-z0-9._-]", a.id));
        }
        if !(a.collector_url.starts_with("http://") || a.collector_url.starts_with("https://")) {
            problems.bad(
                "agent.collector_url",
                format!("{:?}: expected a URL starting with http:// or https://", a.collector_url),
            );
        }
        if a.token.is_empty() && a.token_file.as_os_str().is_empty() {
            problems.bad("agent.token_file", "empty while agent.token is empty too: set one of them");
        }
        if a.state_dir.as_os_str().is_empty() {
            problems.bad("agent.state_dir", "empty: expected a directory path");
        }
        let interval = problems.secs("agent.interval_secs", a.interval_secs, 1, 3600);
        let sampler_timeout = problems.secs("agent.sampler_timeout_secs", a.sampler_timeout_secs, 1, 300);
        let shutdown_grace = problems.secs("agent.shutdown_grace_secs", a.shutdown_grace_secs, 0, 60);
        let spool = raw.spool.validate(&mut problems);
        let tls = raw.tls.validate(&mut problems);
        let logs = raw.logs.validate(&mut problems);
        let checks = ChecksConfig {
            mysql: raw.mysql.validate(&mut problems),
            bitrix: raw.bitrix.validate(&mut problems),
            probes: raw.probe.validate(&mut problems),
            probe_derive: raw.probe.derive(&mut problems),
            services: raw.services.validate(&mut problems),
            backup: raw.backup.validate(&mut problems),
            database: raw.database.validate(&mut problems),
            versions: raw.versions.validate(&mut problems),
            workers: raw.workers.validate(&mut problems),
            push: raw.push.validate(&mut problems),
        };
        problems.finish(Config {
            id: (!a.id.is_empty()).then(|| a.id.clone()),
            collector_url: a.collector_url.clone(),
            token: if a.token.is_empty() {
                TokenSource::File(a.token_file.clone())
            } else {
                TokenSource::Inline(a.token.clone())
            },
            state_dir: a.state_dir.clone(),
            interval,
            sampler_timeout,
            shutdown_grace,
            tls,
            spool,
            logs,
            host: raw.host.validate(),
            checks,
        })
    }
}

/// Whether `id` is acceptable as an agent id (and so as a `host` label value).
pub fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> &'static Path {
        Path::new("/etc/b24watch/agent.toml")
    }

    #[test]
    fn empty_file_means_all_defaults() {
        let empty = Config::parse("", origin()).expect("empty config is valid");
        let full = Config::parse(DEFAULT_CONFIG, origin()).expect("default config is valid");
        assert_eq!(empty, full);
        assert_eq!(empty.interval, Duration::from_secs(10));
        assert_eq!(empty.token, TokenSource::File("/etc/b24watch/agent.token".into()));
    }

    #[test]
    fn default_config_text_matches_the_code_defaults() {
        let parsed: RawConfig = toml::from_str(DEFAULT_CONFIG).expect("valid TOML");
        assert_eq!(parsed, RawConfig::default());
    }

    #[test]
    fn default_config_names_every_key() {
        let raw = toml::to_string(&RawConfig::default()).expect("serializable");
        let table: toml::Table = toml::from_str(&raw).expect("round trip");
        for (section, keys) in &table {
            for (key, value) in keys.as_table().expect("sections are tables") {
                let needle = match value.as_array().and_then(|a| a.first()).and_then(toml::Value::as_table) {
                    Some(first) => {
                        for inner in first.keys() {
                            assert!(
                                DEFAULT_CONFIG.contains(&format!("\n{inner} = ")),
                                "DEFAULT_CONFIG lacks [[{section}.{key}]] {inner}"
                            );
                        }
                        format!("[[{section}.{key}]]")
                    }
                    None => format!("\n{key} = "),
                };
                assert!(DEFAULT_CONFIG.contains(&needle), "DEFAULT_CONFIG lacks [{section}] {key}");
            }
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_file_name() {
        let err = Config::parse("[agent]\nintervall_secs = 5\n", origin()).expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("/etc/b24watch/agent.toml"), "{text}");
        assert!(text.contains("intervall_secs"), "{text}");
    }

    #[test]
    fn every_invalid_value_is_reported_at_once() {
        let text = "[agent]\ninterval_secs = 0\ncollector_url = \"127.0.0.1:10062\"\nid = \"bad id\"\n[spool]\nmax_bytes = 10\n";
        let err = Config::parse(text, origin()).expect_err("invalid values");
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["agent.id", "agent.collector_url", "agent.interval_secs", "spool.max_bytes"]);
        assert!(err.to_string().contains(
            "invalid value for agent.interval_secs in /etc/b24watch/agent.toml: 0: expected an integer from 1 to 3600"
        ));
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = Config::parse("[agent]\ninterval_secs = \"15x\"\n", origin()).expect_err("wrong type");
        assert!(err.to_string().contains("interval_secs"), "{err}");
    }

    #[test]
    fn bad_log_entries_are_reported_with_their_index() {
        let text = "[[logs.file]]\nname = \"Bad Name\"\npaths = [\"relative.log\"]\npreset = \"iis\"\nrules = [{ pattern = \"(\", severity = \"urgent\" }, { pattern = \"(\", severity = \"high\" }]\n";
        let err = Config::parse(text, origin()).expect_err("invalid");
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "logs.file[0].name",
                "logs.file[0].paths",
                "logs.file[0].preset",
                "logs.file[0].rules[0].severity",
                "logs.file[0].rules[1].pattern"
            ]
        );
    }

    #[test]
    fn inline_token_wins_over_token_file() {
        let cfg = Config::parse("[agent]\ntoken = \"web-1.abc\"\n", origin()).expect("valid");
        assert_eq!(cfg.token, TokenSource::Inline("web-1.abc".into()));
    }
}
