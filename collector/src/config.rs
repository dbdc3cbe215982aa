//! Collector configuration: the TOML file as written (`RawConfig`) and the validated form (`Config`).
//!
//! A missing file means all defaults. Unknown keys are rejected. Every problem is reported at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use b24watch_common::config::Problems;
use serde::{Deserialize, Serialize};

/// Where the collector looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/b24watch/collector.toml";

/// The complete default config file, printed by `--print-default-config`. Tests keep it equal to
/// the defaults in code and check it names every key.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// The config file as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// `[collector]`
    pub collector: RawCollector,
    /// `[tls]`
    pub tls: RawTls,
    /// `[http]`
    pub http: RawHttp,
    /// `[limits]`
    pub limits: RawLimits,
    /// `[retention]`
    pub retention: RawRetention,
    /// `[sla]`
    pub sla: RawSla,
    /// `[[remote_write]]` targets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_write: Vec<crate::remote_write::RawRemoteWrite>,
    /// `[[plan]]`: named contract plans.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<crate::contract::RawPlan>,
    /// `[[client]]`: clients, each on a plan.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub client: Vec<crate::contract::RawClient>,
}

/// `[sla]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawSla {
    /// Default availability target.
    pub target: f64,
    /// Per-host targets.
    pub targets: std::collections::BTreeMap<String, f64>,
    /// Per-host probe URL the contract judges.
    pub contract_targets: std::collections::BTreeMap<String, String>,
    /// Silence grace.
    pub silence_grace_secs: u64,
    /// "down" or "unknown".
    pub silence_counts_as: String,
    /// Service hours spec.
    pub service_hours: String,
    /// Time zone.
    pub timezone: String,
    /// Language of the report and the status page: "en" or "ru".
    pub language: String,
    /// Declared maintenance windows.
    pub maintenance: Vec<RawMaintenance>,
}

impl Default for RawSla {
    fn default() -> Self {
        RawSla {
            target: 0.995,
            targets: std::collections::BTreeMap::new(),
            contract_targets: std::collections::BTreeMap::new(),
            silence_grace_secs: 900,
            silence_counts_as: "down".into(),
            service_hours: String::new(),
            timezone: "UTC".into(),
            language: "en".into(),
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
    /// Per-host probe URL the contract judges (else the first alphabetically).
    pub contract_targets: std::collections::BTreeMap<String, String>,
    /// Silence rule.
    pub rules: crate::sla::Rules,
    /// Service hours; `None`: all the time.
    pub calendar: Option<crate::sla::Calendar>,
    /// Time zone of months, service hours and every time printed for people.
    pub timezone: jiff::tz::TimeZone,
    /// Language of the report and the status page when the URL does not ask for one.
    pub language: crate::i18n::Lang,
    /// Declared windows: (host or "", from ms, to ms, reason).
    pub maintenance: Vec<(String, i64, i64, String)>,
    /// Plans and clients (`[[plan]]`, `[[client]]`); their defaults are the values above.
    pub contracts: crate::contract::Contracts,
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

fn validate_sla(raw: &RawSla, problems: &mut Problems) -> SlaConfig {
    let ratio_ok = |v: f64| (0.0..=1.0).contains(&v);
    if !ratio_ok(raw.target) {
        problems.bad("sla.target", format!("{}: expected a ratio from 0 to 1, e.g. 0.995", raw.target));
    }
    for (host, target) in &raw.targets {
        if !ratio_ok(*target) {
            problems.bad(format!("sla.targets.{host}"), format!("{target}: expected a ratio from 0 to 1"));
        }
    }
    for (host, url) in &raw.contract_targets {
        if url.trim().is_empty() {
            problems.bad(format!("sla.contract_targets.{host}"), "expected the probe URL the contract judges");
        }
    }
    let silence_counts_as = match raw.silence_counts_as.as_str() {
        "down" => crate::sla::State::Down,
        "unknown" => crate::sla::State::Unknown,
        other => {
            problems.bad("sla.silence_counts_as", format!("{other:?}: expected \"down\" or \"unknown\""));
            crate::sla::State::Down
        }
    };
    let timezone = jiff::tz::TimeZone::get(&raw.timezone).unwrap_or_else(|err| {
        problems.bad("sla.timezone", format!("{:?}: {err}", raw.timezone));
        jiff::tz::TimeZone::UTC
    });
    let language = crate::i18n::Lang::parse(&raw.language).unwrap_or_else(|err| {
        problems.bad("sla.language", err);
        crate::i18n::Lang::En
    });
    let calendar = if raw.service_hours.is_empty() {
        None
    } else {
        match crate::sla::Calendar::parse(&raw.service_hours, &raw.timezone) {
            Ok(cal) => Some(cal),
            Err(err) => {
                problems.bad("sla.service_hours", err);
                None
            }
        }
    };
    let mut maintenance = Vec::new();
    for (idx, m) in raw.maintenance.iter().enumerate() {
        match (parse_time(&m.from), parse_time(&m.to)) {
            (Some(from), Some(to)) if to > from => maintenance.push((m.host.clone(), from, to, m.reason.clone())),
            (Some(_), Some(_)) => problems.bad(format!("sla.maintenance[{idx}].to"), "must be after `from`"),
            _ => problems.bad(
                format!("sla.maintenance[{idx}]"),
                format!("{:?} .. {:?}: expected RFC 3339 times such as 2026-12-05T22:00:00+03:00", m.from, m.to),
            ),
        }
    }
    SlaConfig {
        target: raw.target,
        targets: raw.targets.clone(),
        contract_targets: raw.contract_targets.clone(),
        rules: crate::sla::Rules {
            silence_grace: i64::try_from(raw.silence_grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            silence_counts_as,
        },
        calendar,
        timezone,
        language,
        maintenance,
        contracts: crate::contract::Contracts::default(),
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

/// `[http]` section: access and TLS of the HTTP listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    /// GET requests need no credential.
    pub anonymous_read: bool,
    /// Server certificate chain (PEM).
    pub tls_cert_file: PathBuf,
    /// Server private key (PEM).
    pub tls_key_file: PathBuf,
    /// CA for client certificates (PEM); set means clients must present one.
    pub tls_client_ca_file: PathBuf,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            anonymous_read: true,
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
            tls_client_ca_file: PathBuf::new(),
        }
    }
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
    /// HTTP connections open at once.
    pub http_max_connections: u64,
    /// Seconds to send request headers.
    pub http_header_timeout_secs: u64,
    /// Seconds of silence before an HTTP connection is closed.
    pub http_idle_timeout_secs: u64,
    /// The collector's URL as people open it (alert links), empty for one derived from http_listen.
    pub external_url: String,
    /// Where the runbooks are, empty for `<external_url>/runbooks`.
    pub runbook_url: String,
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
            http_max_connections: 128,
            http_header_timeout_secs: 10,
            http_idle_timeout_secs: 60,
            external_url: String::new(),
            runbook_url: String::new(),
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
    /// Seconds into the past.
    pub max_past_secs: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_message_bytes: 4 << 20,
            max_series_per_agent: 10_000,
            max_labels_per_series: 16,
            max_label_value_bytes: 2048,
            max_future_secs: 600,
            max_past_secs: 7 * 86_400,
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
    /// The HTTP listener: TLS and anonymous reads.
    pub http: HttpConfig,
    /// Input limits.
    pub limits: Limits,
    /// Limits of the HTTP listener.
    pub http_limits: HttpLimits,
    /// History kept per tier and table.
    pub retention: crate::store::Retention,
    /// `collector.external_url` as set (no trailing `/`), `None` for one derived from the bound
    /// HTTP address ([`external_url`]).
    pub external_url: Option<String>,
    /// `collector.runbook_url` as set (no trailing `/`), `None` for `<external_url>/runbooks`.
    pub runbook_url: Option<String>,
    /// Remote-write targets.
    pub remote_write: Vec<crate::remote_write::Target>,
}

/// The collector's external URL: the configured one, else derived from the HTTP address it
/// listens on (the machine's host name for an unspecified address such as 0.0.0.0).
pub fn external_url(configured: Option<&str>, http: SocketAddr, https: bool) -> String {
    if let Some(url) = configured {
        return url.to_owned();
    }
    let scheme = if https { "https" } else { "http" };
    let host = if http.ip().is_unspecified() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    } else if http.is_ipv6() {
        format!("[{}]", http.ip())
    } else {
        http.ip().to_string()
    };
    format!("{scheme}://{host}:{}", http.port())
}

/// An absolute http(s) URL setting, trailing `/` removed; `None` when empty.
fn url_setting(key: &str, text: &str, problems: &mut Problems) -> Option<String> {
    let url = text.trim().trim_end_matches('/');
    if url.is_empty() {
        return None;
    }
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    if rest.is_none_or(|r| r.is_empty() || r.contains(|c: char| c.is_whitespace() || c == '"' || c == '#')) {
        problems.bad(
            key,
            format!("{text:?}: expected an absolute http:// or https:// URL such as \"https://b24watch.example.com\""),
        );
        return None;
    }
    Some(url.to_owned())
}

/// Limits of the HTTP listener (see [`crate::listener`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once; past it new ones are closed at once.
    pub max_connections: usize,
    /// Time to send a request's headers (and to start the next request on a kept-alive connection).
    pub header_timeout: Duration,
    /// Time without traffic, while no request is being answered, before a connection is closed;
    /// also the time allowed to send a request body.
    pub idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Config::from_raw(RawConfig::default(), Path::new("<defaults>"))
            .expect("defaults are valid (tested)")
            .http_limits
    }
}

/// Validated `[http]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// GET requests (pages, reports, read API, `/metrics`) need no credential.
    pub anonymous_read: bool,
    /// TLS for the HTTP listener.
    pub tls: Option<TlsFiles>,
}

/// Validates a certificate, key and client CA triple (`[tls]` or `[http]`): both or neither of
/// certificate and key; a client CA only with them. Keys name the fields in errors.
fn tls_files(files: [(&PathBuf, &str); 3], problems: &mut Problems) -> Option<TlsFiles> {
    let [(cert, cert_key), (key, key_key), (ca, ca_key)] = files;
    let set = |p: &PathBuf| !p.as_os_str().is_empty();
    match problems.both_or_neither((cert_key, set(cert)), (key_key, set(key))) {
        Some(true) => Some(TlsFiles {
            cert_file: cert.clone(),
            key_file: key.clone(),
            client_ca_file: set(ca).then(|| ca.clone()),
        }),
        Some(false) if set(ca) => {
            problems.bad(ca_key, format!("set without {cert_key} and {key_key}: mTLS needs TLS"));
            None
        }
        _ => None,
    }
}

/// PEM files for a listener's TLS (gRPC `[tls]`, HTTP `[http]`).
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
    /// Milliseconds into the past.
    pub max_past_ms: i64,
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
        let mut problems = Problems::new(origin);
        let c = &raw.collector;
        let mut addr = |key: &str, text: &str| {
            text.parse::<SocketAddr>().unwrap_or_else(|_| {
                problems.bad(
                    key,
                    format!("{text:?}: expected an address and port such as \"127.0.0.1:10062\" or \"[::]:10062\""),
                );
                SocketAddr::from(([127, 0, 0, 1], 0))
            })
        };
        let grpc_listen = addr("collector.grpc_listen", &c.grpc_listen);
        let http_listen = addr("collector.http_listen", &c.http_listen);
        let agent_timeout = problems.secs("collector.agent_timeout_secs", c.agent_timeout_secs, 10, 86_400);
        let shutdown_grace = problems.secs("collector.shutdown_grace_secs", c.shutdown_grace_secs, 0, 120);
        let l = &raw.limits;
        let max_message_bytes = problems.range("limits.max_message_bytes", l.max_message_bytes, 65_536, 64 << 20);
        let max_series = problems.range("limits.max_series_per_agent", l.max_series_per_agent, 1, 1_000_000);
        let max_labels = problems.range("limits.max_labels_per_series", l.max_labels_per_series, 0, 64);
        let max_label_value = problems.range("limits.max_label_value_bytes", l.max_label_value_bytes, 1, 65_536);
        let max_future = problems.range("limits.max_future_secs", l.max_future_secs, 1, 86_400);
        let max_past = problems.range("limits.max_past_secs", l.max_past_secs, 3600, 31_536_000);
        let http_max_connections = problems.range("collector.http_max_connections", c.http_max_connections, 1, 65_536);
        let http_header_timeout =
            problems.range("collector.http_header_timeout_secs", c.http_header_timeout_secs, 1, 300);
        let http_idle_timeout = problems.range("collector.http_idle_timeout_secs", c.http_idle_timeout_secs, 1, 3600);
        let rt = &raw.retention;
        let day = |days: u64| i64::try_from(days).unwrap_or(i64::MAX / 86_400_000) * 86_400_000;
        let retention = crate::store::Retention {
            raw_ms: day(problems.range("retention.raw_days", rt.raw_days, 1, 3650)),
            minute_ms: day(problems.range("retention.minute_days", rt.minute_days, 1, 3650)),
            hour_ms: day(problems.range("retention.hour_days", rt.hour_days, 1, 36_500)),
            batch_key_ms: day(problems.range("retention.batch_key_days", rt.batch_key_days, 1, 3650)),
            events_ms: day(problems.range("retention.events_days", rt.events_days, 31, 36_500)),
        };
        if c.max_db_bytes != 0 && c.max_db_bytes < 1 << 20 {
            problems.bad(
                "collector.max_db_bytes",
                format!("{}: expected 0 (no bound) or at least 1048576", c.max_db_bytes),
            );
        }
        let t = &raw.tls;
        let tls = tls_files(
            [(&t.cert_file, "tls.cert_file"), (&t.key_file, "tls.key_file"), (&t.client_ca_file, "tls.client_ca_file")],
            &mut problems,
        );
        let h = &raw.http;
        let http_tls = tls_files(
            [
                (&h.tls_cert_file, "http.tls_cert_file"),
                (&h.tls_key_file, "http.tls_key_file"),
                (&h.tls_client_ca_file, "http.tls_client_ca_file"),
            ],
            &mut problems,
        );
        if c.data_dir.as_os_str().is_empty() {
            problems.bad("collector.data_dir", "empty: expected a directory path");
        }
        let mut sla = validate_sla(&raw.sla, &mut problems);
        let defaults = crate::contract::Defaults {
            target: raw.sla.target,
            service_hours: &raw.sla.service_hours,
            timezone: &raw.sla.timezone,
        };
        sla.contracts = crate::contract::validate(&raw.plan, &raw.client, &defaults, &mut problems);
        let external_url = url_setting("collector.external_url", &c.external_url, &mut problems);
        let runbook_url = url_setting("collector.runbook_url", &c.runbook_url, &mut problems);
        let remote_write = crate::remote_write::validate(&raw.remote_write, &mut problems);
        problems.finish(Config {
            external_url,
            runbook_url,
            remote_write,
            sla,
            grpc_listen,
            http_listen,
            data_dir: c.data_dir.clone(),
            agent_timeout,
            shutdown_grace,
            max_db_bytes: (c.max_db_bytes > 0).then_some(c.max_db_bytes),
            tls,
            limits: Limits {
                max_message_bytes: max_message_bytes as usize,
                max_series_per_agent: max_series as usize,
                max_labels_per_series: max_labels as usize,
                max_label_value_bytes: max_label_value as usize,
                max_future_ms: (max_future * 1000) as i64,
                max_past_ms: (max_past * 1000) as i64,
            },
            http: HttpConfig { anonymous_read: h.anonymous_read, tls: http_tls },
            http_limits: HttpLimits {
                max_connections: http_max_connections as usize,
                header_timeout: Duration::from_secs(http_header_timeout),
                idle_timeout: Duration::from_secs(http_idle_timeout),
            },
            retention,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> &'static Path {
        Path::new("/etc/b24watch/collector.toml")
    }

    #[test]
    fn external_and_runbook_urls_must_be_absolute() {
        let cfg = Config::parse(
            "[collector]\nexternal_url = \"https://mon.example.com/\"\nrunbook_url = \"https://wiki.example.com/b24\"\n",
            origin(),
        )
        .expect("valid");
        assert_eq!(cfg.external_url.as_deref(), Some("https://mon.example.com"));
        assert_eq!(cfg.runbook_url.as_deref(), Some("https://wiki.example.com/b24"));
        let err = Config::parse("[collector]\nexternal_url = \"/b24watch\"\nrunbook_url = \"file:///x\"\n", origin())
            .expect_err("relative URLs refused");
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["collector.external_url", "collector.runbook_url"]);
        let derived = external_url(None, "127.0.0.1:10061".parse().expect("addr"), false);
        assert_eq!(derived, "http://127.0.0.1:10061");
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
    fn http_tls_is_validated_like_the_grpc_tls() {
        let err = Config::parse("[http]\ntls_cert_file = \"/c.pem\"\ntls_client_ca_file = \"/ca.pem\"\n", origin())
            .expect_err("key missing");
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["http.tls_key_file"]);
        let cfg = Config::parse(
            "[http]\nanonymous_read = false\ntls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"\n",
            origin(),
        )
        .expect("valid");
        assert!(!cfg.http.anonymous_read);
        assert_eq!(cfg.http.tls.expect("tls").key_file, PathBuf::from("/k.pem"));
        assert!(cfg.tls.is_none(), "gRPC TLS untouched");
        let err = Config::parse("[http]\ntls_client_ca_file = \"/ca.pem\"\n", origin()).expect_err("ca alone");
        assert!(err.to_string().contains("http.tls_client_ca_file"), "{err}");
    }

    #[test]
    fn the_language_is_en_or_ru() {
        assert_eq!(Config::parse("", origin()).expect("defaults").sla.language, crate::i18n::Lang::En);
        let cfg = Config::parse("[sla]\nlanguage = \"ru\"\n", origin()).expect("ru");
        assert_eq!(cfg.sla.language, crate::i18n::Lang::Ru);
        let err = Config::parse("[sla]\nlanguage = \"de\"\n", origin()).expect_err("de");
        assert!(err.to_string().contains("sla.language") && err.to_string().contains("\"en\" or \"ru\""), "{err}");
    }

    #[test]
    fn unknown_section_is_rejected() {
        let err = Config::parse("[colector]\n", origin()).expect_err("unknown");
        assert!(err.to_string().contains("colector"), "{err}");
    }
}
