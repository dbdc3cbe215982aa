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

[retention]
# Days of history kept per tier. Raw samples answer queries at any step; minute and hour rollups
# (min, max, sum, count, last; counters also as increases) answer coarser steps and outlive them.
raw_days = 15
minute_days = 90
hour_days = 730
# Days a batch's dedup key is kept: longer than an agent can hold a batch in its spool (a batch
# resent later is stored again, but its samples only once: the same timestamp is stored once).
batch_key_days = 35
# Days of gaps, log error groups, check history, uptime evidence and audit records (reports of
# past months read them).
events_days = 400

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

[sla]
# Availability target of every host (0..1), unless `targets` names the host.
target = 0.995
# Per-host targets, e.g. targets = { "bx-01" = 0.999 }.
targets = {}
# Time without data (agent silent, nothing backfilled) up to this many seconds is "unknown" and
# excluded; longer silence counts as `silence_counts_as`. The agent's spool backfills outages up to
# its bound, and backfilled time is computed from the real samples. Time the collector itself was
# not running is always unknown, never down.
silence_grace_secs = 900
# "down" (a host gone silent for good is an outage) or "unknown" (excluded from availability).
silence_counts_as = "down"
# Service hours that count for availability, e.g. "Mon-Fri 09:00-20:00"; empty: all the time.
service_hours = ""
# Time zone of service_hours and of calendar months in reports (IANA name, e.g. Europe/Moscow).
timezone = "UTC"
# Maintenance windows excluded from availability; more can be added over the HTTP API. host = ""
# means every host. Times in RFC 3339, e.g.
#   maintenance = [{ host = "bx-01", from = "2026-12-05T22:00:00+03:00", to = "2026-12-06T02:00:00+03:00", reason = "upgrade" }]
maintenance = []
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
    /// `[retention]`
    pub retention: RawRetention,
    /// `[sla]`
    pub sla: RawSla,
}

/// `[sla]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawSla {
    /// Default availability target.
    pub target: f64,
    /// Per-host targets.
    pub targets: std::collections::BTreeMap<String, f64>,
    /// Silence grace.
    pub silence_grace_secs: u64,
    /// "down" or "unknown".
    pub silence_counts_as: String,
    /// Service hours spec.
    pub service_hours: String,
    /// Time zone.
    pub timezone: String,
    /// Declared maintenance windows.
    pub maintenance: Vec<RawMaintenance>,
}

impl Default for RawSla {
    fn default() -> Self {
        RawSla {
            target: 0.995,
            targets: std::collections::BTreeMap::new(),
            silence_grace_secs: 900,
            silence_counts_as: "down".into(),
            service_hours: String::new(),
            timezone: "UTC".into(),
            maintenance: Vec::new(),
        }
    }
}

/// One maintenance window in the config.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    /// Host, or "" for all.
    #[serde(default)]
    pub host: String,
    /// RFC 3339 start.
    pub from: String,
    /// RFC 3339 end.
    pub to: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// Validated `[sla]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaConfig {
    /// Default target.
    pub target: f64,
    /// Per-host targets.
    pub targets: std::collections::BTreeMap<String, f64>,
    /// Silence rule.
    pub rules: crate::sla::Rules,
    /// Service hours; `None`: all the time.
    pub calendar: Option<crate::sla::Calendar>,
    /// Time zone of months and service hours.
    pub timezone: jiff::tz::TimeZone,
    /// Declared windows: (host or "", from ms, to ms, reason).
    pub maintenance: Vec<(String, i64, i64, String)>,
}

impl SlaConfig {
    /// The target of `host`.
    pub fn target_of(&self, host: &str) -> f64 {
        self.targets.get(host).copied().unwrap_or(self.target)
    }
}

/// Parses an RFC 3339 time to unix ms.
pub fn parse_time(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

fn validate_sla(raw: &RawSla, origin: &Path, errors: &mut Vec<ConfigError>) -> SlaConfig {
    let mut bad =
        |key: String, message: String| errors.push(ConfigError { origin: origin.to_path_buf(), key, message });
    let ratio_ok = |v: f64| (0.0..=1.0).contains(&v);
    if !ratio_ok(raw.target) {
        bad("sla.target".into(), format!("{}: expected a ratio from 0 to 1, e.g. 0.995", raw.target));
    }
    for (host, target) in &raw.targets {
        if !ratio_ok(*target) {
            bad(format!("sla.targets.{host}"), format!("{target}: expected a ratio from 0 to 1"));
        }
    }
    let silence_counts_as = match raw.silence_counts_as.as_str() {
        "down" => crate::sla::State::Down,
        "unknown" => crate::sla::State::Unknown,
        other => {
            bad("sla.silence_counts_as".into(), format!("{other:?}: expected \"down\" or \"unknown\""));
            crate::sla::State::Down
        }
    };
    let timezone = jiff::tz::TimeZone::get(&raw.timezone).unwrap_or_else(|err| {
        bad("sla.timezone".into(), format!("{:?}: {err}", raw.timezone));
        jiff::tz::TimeZone::UTC
    });
    let calendar = if raw.service_hours.is_empty() {
        None
    } else {
        match crate::sla::Calendar::parse(&raw.service_hours, &raw.timezone) {
            Ok(cal) => Some(cal),
            Err(err) => {
                bad("sla.service_hours".into(), err);
                None
            }
        }
    };
    let mut maintenance = Vec::new();
    for (idx, m) in raw.maintenance.iter().enumerate() {
        match (parse_time(&m.from), parse_time(&m.to)) {
            (Some(from), Some(to)) if to > from => maintenance.push((m.host.clone(), from, to, m.reason.clone())),
            (Some(_), Some(_)) => bad(format!("sla.maintenance[{idx}].to"), "must be after `from`".into()),
            _ => bad(
                format!("sla.maintenance[{idx}]"),
                format!("{:?} .. {:?}: expected RFC 3339 times such as 2026-12-05T22:00:00+03:00", m.from, m.to),
            ),
        }
    }
    SlaConfig {
        target: raw.target,
        targets: raw.targets.clone(),
        rules: crate::sla::Rules {
            silence_grace: i64::try_from(raw.silence_grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            silence_counts_as,
        },
        calendar,
        timezone,
        maintenance,
    }
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

/// `[retention]` section (days).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetention {
    /// Raw samples.
    pub raw_days: u64,
    /// Minute rollups.
    pub minute_days: u64,
    /// Hour rollups.
    pub hour_days: u64,
    /// Batch dedup keys.
    pub batch_key_days: u64,
    /// Gaps, log groups, check history, evidence, audit.
    pub events_days: u64,
}

impl Default for RawRetention {
    fn default() -> Self {
        RawRetention { raw_days: 15, minute_days: 90, hour_days: 730, batch_key_days: 35, events_days: 400 }
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
    /// SLA settings.
    pub sla: SlaConfig,
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
    /// History kept per tier and table.
    pub retention: crate::store::Retention,
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
        let rt = &raw.retention;
        let day = |days: u64| i64::try_from(days).unwrap_or(i64::MAX / 86_400_000) * 86_400_000;
        let retention = crate::store::Retention {
            raw_ms: day(range("retention.raw_days", rt.raw_days, 1, 3650)),
            minute_ms: day(range("retention.minute_days", rt.minute_days, 1, 3650)),
            hour_ms: day(range("retention.hour_days", rt.hour_days, 1, 36_500)),
            batch_key_ms: day(range("retention.batch_key_days", rt.batch_key_days, 1, 3650)),
            events_ms: day(range("retention.events_days", rt.events_days, 31, 36_500)),
        };
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
        let sla = validate_sla(&raw.sla, origin, &mut errors);
        match (grpc_listen, http_listen) {
            (Some(grpc_listen), Some(http_listen)) if errors.is_empty() => Ok(Config {
                sla,
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
                retention,
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
