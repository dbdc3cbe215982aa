//! Agent configuration: the TOML file as written (`RawConfig`) and the validated form (`Config`).
//!
//! A missing file means all defaults. Unknown keys are rejected. Every problem in a file is reported
//! at once, with the key and the file it came from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the agent looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/b24watch/agent.toml";

/// The complete default config file, printed by `--print-default-config`.
///
/// A test checks that it parses to the same values as an empty file and that it names every key.
pub const DEFAULT_CONFIG: &str = r#"# b24watch-agent configuration.
# Every key is optional: the values shown are the defaults.
# Flags and B24WATCH_* environment variables override the file (see `b24watch-agent --help`).

[agent]
# Agent id as enrolled on the collector (`b24watch-collector enroll <id>`). Becomes the `host`
# label. Empty means: the id inside the token.
id = ""
# Collector gRPC endpoint.
collector_url = "http://127.0.0.1:10062"
# Agent token printed by `b24watch-collector enroll`. Prefer `token_file`, which can be mode 0600.
token = ""
# File whose first line is the token; used when `token` is empty.
token_file = "/etc/b24watch/agent.token"
# Directory for the spool (batches not yet acknowledged). Created if missing.
state_dir = "/var/lib/b24watch-agent"
# Seconds between samples (1..=3600).
interval_secs = 10
# Seconds a single sampler may take before its run is abandoned and counted as a timeout (1..=300).
sampler_timeout_secs = 5
# Seconds to keep sending pending batches after SIGTERM before exiting (0..=60).
# What is not acknowledged by then stays in the spool and is sent after the next start.
shutdown_grace_secs = 3

[tls]
# PEM CA bundle to verify the collector's certificate (https:// URLs). Empty: the system's roots.
ca_file = ""
# PEM client certificate and key, for a collector that requires mTLS. Set both or neither.
cert_file = ""
key_file = ""
# Name expected in the collector's certificate. Empty: the host of agent.collector_url.
server_name = ""

[spool]
# Upper bound of the spool's payload bytes. When full, the oldest batches are dropped, counted in
# agent_spool_dropped_batches_total{reason="full"} and reported to the collector as a gap.
max_bytes = 67108864
# Upper bound of batches in the spool (1 hour at 10 s is 360).
max_batches = 100000
# Free space to leave on the spool's filesystem for MySQL and PHP. Below it the spool keeps at most
# 8 batches (dropping the oldest, counted with reason="disk_reserve"). 0 disables the reserve.
min_free_bytes = 268435456

[logs]
# Error-log monitoring: tail the files below, classify lines by rules, send error groups.
enabled = true
# Where to start in a file seen for the first time at the agent's first start: "end" (do not
# report old history) or "beginning". Files that appear later, or replace a known file after a
# rotation, are always read from the beginning.
read_from = "end"
# Longer lines are delivered cut to this many bytes and counted (1024..=1048576).
max_line_bytes = 16384
# Bytes read per file per tick at most, so one huge backlog cannot stall the others.
max_read_bytes_per_tick = 67108864

# Logs to watch. Writing any [[logs.file]] replaces this whole list. Patterns may use * and ? in
# the last path component. preset: nginx, httpd, php, bitrix_exceptions, mysql or none.
# encoding: utf-8 (invalid bytes become U+FFFD) or windows-1251. Extra rules come first:
#   rules = [{ pattern = "CRM sync failed", severity = "high" }]
[[logs.file]]
name = "nginx_error"
paths = ["/var/log/nginx/error.log", "/var/log/nginx/*_error.log"]
preset = "nginx"
encoding = "utf-8"
rules = []

[[logs.file]]
name = "httpd_error"
paths = ["/var/log/httpd/error_log", "/var/log/httpd/*_error_log", "/var/log/apache2/error.log"]
preset = "httpd"
encoding = "utf-8"
rules = []

[[logs.file]]
name = "php_error"
paths = ["/var/log/php-fpm/error.log", "/var/log/php-fpm/www-error.log", "/var/log/php/error.log"]
preset = "php"
encoding = "utf-8"
rules = []

[[logs.file]]
name = "bitrix_exceptions"
paths = ["/var/log/php/exceptions.log", "/home/bitrix/www/bitrix/modules/error.log"]
preset = "bitrix_exceptions"
encoding = "utf-8"
rules = []

[[logs.file]]
name = "mysql_error"
paths = ["/var/log/mysql/error.log", "/var/log/mysqld.log", "/var/log/mariadb/mariadb.log"]
preset = "mysql"
encoding = "utf-8"
rules = []

[host]
# CPU, load, memory, swap, filesystems and disk IO of this server.
enabled = true
# Filesystem types never reported (pseudo and virtual filesystems).
exclude_fstypes = ["autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "overlay", "proc", "pstore", "ramfs", "rpc_pipefs", "securityfs", "squashfs", "sysfs", "tmpfs", "tracefs", "fuse.lxcfs", "fuse.gvfsd-fuse", "fuse.portal", "nfsd"]
# Mount point prefixes never reported.
exclude_mountpoint_prefixes = ["/proc", "/sys", "/dev", "/run", "/var/lib/docker", "/snap"]
# Block device name prefixes never reported for disk IO (partitions are always skipped).
exclude_device_prefixes = ["loop", "ram", "zram", "fd", "sr"]
"#;

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
}

/// `[logs]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogs {
    /// Whether logs are tailed.
    pub enabled: bool,
    /// "end" or "beginning".
    pub read_from: String,
    /// Line length bound.
    pub max_line_bytes: u64,
    /// Read budget per file per tick.
    pub max_read_bytes_per_tick: u64,
    /// The logs.
    pub file: Vec<RawLogFile>,
}

/// One `[[logs.file]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLogFile {
    /// Name (the `log` label).
    pub name: String,
    /// Path patterns.
    pub paths: Vec<String>,
    /// Preset name.
    #[serde(default = "default_preset")]
    pub preset: String,
    /// Encoding name.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// Extra rules.
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// One extra rule.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Regex.
    pub pattern: String,
    /// low, medium, high or critical.
    pub severity: String,
}

fn default_preset() -> String {
    "none".into()
}

fn default_encoding() -> String {
    "utf-8".into()
}

impl Default for RawLogs {
    fn default() -> Self {
        let file = |name: &str, paths: &[&str], preset: &str| RawLogFile {
            name: name.into(),
            paths: strings(paths),
            preset: preset.into(),
            encoding: "utf-8".into(),
            rules: Vec::new(),
        };
        RawLogs {
            enabled: true,
            read_from: "end".into(),
            max_line_bytes: 16384,
            max_read_bytes_per_tick: 64 << 20,
            file: vec![
                file("nginx_error", &["/var/log/nginx/error.log", "/var/log/nginx/*_error.log"], "nginx"),
                file(
                    "httpd_error",
                    &["/var/log/httpd/error_log", "/var/log/httpd/*_error_log", "/var/log/apache2/error.log"],
                    "httpd",
                ),
                file(
                    "php_error",
                    &["/var/log/php-fpm/error.log", "/var/log/php-fpm/www-error.log", "/var/log/php/error.log"],
                    "php",
                ),
                file(
                    "bitrix_exceptions",
                    &["/var/log/php/exceptions.log", "/home/bitrix/www/bitrix/modules/error.log"],
                    "bitrix_exceptions",
                ),
                file(
                    "mysql_error",
                    &["/var/log/mysql/error.log", "/var/log/mysqld.log", "/var/log/mariadb/mariadb.log"],
                    "mysql",
                ),
            ],
        }
    }
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

/// `[tls]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// CA bundle for the collector's certificate.
    pub ca_file: PathBuf,
    /// Client certificate.
    pub cert_file: PathBuf,
    /// Client key.
    pub key_file: PathBuf,
    /// Expected server name.
    pub server_name: String,
}

/// `[spool]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawSpool {
    /// Payload byte cap.
    pub max_bytes: u64,
    /// Batch count cap.
    pub max_batches: u64,
    /// Free-space reserve.
    pub min_free_bytes: u64,
}

/// `[host]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawHost {
    /// Whether the host samplers run.
    pub enabled: bool,
    /// Filesystem types never reported.
    pub exclude_fstypes: Vec<String>,
    /// Mount point prefixes never reported.
    pub exclude_mountpoint_prefixes: Vec<String>,
    /// Block device prefixes never reported.
    pub exclude_device_prefixes: Vec<String>,
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

impl Default for RawSpool {
    fn default() -> Self {
        RawSpool { max_bytes: 64 << 20, max_batches: 100_000, min_free_bytes: 256 << 20 }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl Default for RawHost {
    fn default() -> Self {
        RawHost {
            enabled: true,
            exclude_fstypes: strings(&[
                "autofs",
                "binfmt_misc",
                "bpf",
                "cgroup",
                "cgroup2",
                "configfs",
                "debugfs",
                "devpts",
                "devtmpfs",
                "efivarfs",
                "fusectl",
                "hugetlbfs",
                "mqueue",
                "nsfs",
                "overlay",
                "proc",
                "pstore",
                "ramfs",
                "rpc_pipefs",
                "securityfs",
                "squashfs",
                "sysfs",
                "tmpfs",
                "tracefs",
                "fuse.lxcfs",
                "fuse.gvfsd-fuse",
                "fuse.portal",
                "nfsd",
            ]),
            exclude_mountpoint_prefixes: strings(&["/proc", "/sys", "/dev", "/run", "/var/lib/docker", "/snap"]),
            exclude_device_prefixes: strings(&["loop", "ram", "zram", "fd", "sr"]),
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
}

/// Validated `[logs]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    /// Whether logs are tailed.
    pub enabled: bool,
    /// Start new files at their end on the first start.
    pub read_from_end: bool,
    /// Line length bound.
    pub max_line_bytes: usize,
    /// Read budget per file per tick.
    pub max_read_bytes_per_tick: u64,
    /// The logs.
    pub files: Vec<LogFileConfig>,
}

/// One validated log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileConfig {
    /// Name.
    pub name: String,
    /// Path patterns.
    pub paths: Vec<String>,
    /// Preset.
    pub preset: crate::logs::classify::Preset,
    /// Encoding.
    pub encoding: crate::logs::lines::Encoding,
    /// Extra rules (checked to compile).
    pub rules: Vec<(String, crate::logs::classify::Severity)>,
}

impl LogFileConfig {
    /// The runtime form.
    pub fn spec(&self) -> crate::logs::LogSpec {
        crate::logs::LogSpec::new(&self.name, self.paths.clone(), self.preset, &self.rules, self.encoding)
    }
}

/// TLS settings of the connection to the collector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// CA bundle; `None` means the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Expected server name.
    pub server_name: Option<String>,
}

/// Bounds of the on-disk spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Payload byte cap.
    pub max_bytes: u64,
    /// Batch count cap.
    pub max_batches: u64,
    /// Free space to leave on the spool's filesystem.
    pub min_free_bytes: u64,
}

/// Host sampler settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Whether the host samplers run.
    pub enabled: bool,
    /// Filesystem types never reported.
    pub exclude_fstypes: Vec<String>,
    /// Mount point prefixes never reported.
    pub exclude_mountpoint_prefixes: Vec<String>,
    /// Block device prefixes never reported.
    pub exclude_device_prefixes: Vec<String>,
}

pub use b24watch_common::config::{ConfigError, ConfigErrors};

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
        let mut errors = Vec::new();
        let mut bad = |key: &str, message: String| {
            errors.push(ConfigError { origin: origin.to_path_buf(), key: key.to_owned(), message });
        };
        let a = &raw.agent;
        if !a.id.is_empty() && !valid_agent_id(&a.id) {
            bad("agent.id", format!("{:?}: expected 1..=128 characters of [A-Za-z0-9._-]", a.id));
        }
        if !(a.collector_url.starts_with("http://") || a.collector_url.starts_with("https://")) {
            bad(
                "agent.collector_url",
                format!("{:?}: expected a URL starting with http:// or https://", a.collector_url),
            );
        }
        if a.token.is_empty() && a.token_file.as_os_str().is_empty() {
            bad("agent.token_file", "empty while agent.token is empty too: set one of them".to_owned());
        }
        if a.state_dir.as_os_str().is_empty() {
            bad("agent.state_dir", "empty: expected a directory path".to_owned());
        }
        let mut secs = |key: &str, value: u64, min: u64, max: u64| {
            if !(min..=max).contains(&value) {
                bad(key, format!("{value}: expected an integer from {min} to {max}"));
            }
            Duration::from_secs(value)
        };
        let interval = secs("agent.interval_secs", a.interval_secs, 1, 3600);
        let sampler_timeout = secs("agent.sampler_timeout_secs", a.sampler_timeout_secs, 1, 300);
        let shutdown_grace = secs("agent.shutdown_grace_secs", a.shutdown_grace_secs, 0, 60);
        if raw.spool.max_bytes < 1 << 20 {
            errors.push(ConfigError {
                origin: origin.to_path_buf(),
                key: "spool.max_bytes".into(),
                message: format!("{}: expected at least 1048576 (1 MiB)", raw.spool.max_bytes),
            });
        }
        if raw.spool.max_batches < 1 {
            errors.push(ConfigError {
                origin: origin.to_path_buf(),
                key: "spool.max_batches".into(),
                message: "0: expected at least 1".into(),
            });
        }
        let t = &raw.tls;
        let set = |p: &PathBuf| !p.as_os_str().is_empty();
        let identity = match (set(&t.cert_file), set(&t.key_file)) {
            (true, true) => Some((t.cert_file.clone(), t.key_file.clone())),
            (false, false) => None,
            (cert, _) => {
                let (key, other) =
                    if cert { ("tls.key_file", "tls.cert_file") } else { ("tls.cert_file", "tls.key_file") };
                errors.push(ConfigError {
                    origin: origin.to_path_buf(),
                    key: key.into(),
                    message: format!("empty while {other} is set: set both or neither"),
                });
                None
            }
        };
        let logs = validate_logs(&raw.logs, origin, &mut errors);
        let tls = TlsConfig {
            ca_file: set(&t.ca_file).then(|| t.ca_file.clone()),
            identity,
            server_name: (!t.server_name.is_empty()).then(|| t.server_name.clone()),
        };
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Config {
            logs,
            tls,
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
            spool: SpoolConfig {
                max_bytes: raw.spool.max_bytes,
                max_batches: raw.spool.max_batches,
                min_free_bytes: raw.spool.min_free_bytes,
            },
            host: HostConfig {
                enabled: raw.host.enabled,
                exclude_fstypes: raw.host.exclude_fstypes,
                exclude_mountpoint_prefixes: raw.host.exclude_mountpoint_prefixes,
                exclude_device_prefixes: raw.host.exclude_device_prefixes,
            },
        })
    }
}

fn validate_logs(raw: &RawLogs, origin: &Path, errors: &mut Vec<ConfigError>) -> LogsConfig {
    use crate::logs::classify::{Preset, Severity};
    use crate::logs::lines::Encoding;
    let mut bad =
        |key: String, message: String| errors.push(ConfigError { origin: origin.to_path_buf(), key, message });
    let read_from_end = match raw.read_from.as_str() {
        "end" => true,
        "beginning" => false,
        other => {
            bad("logs.read_from".into(), format!("{other:?}: expected \"end\" or \"beginning\""));
            true
        }
    };
    if !(1024..=1 << 20).contains(&raw.max_line_bytes) {
        bad("logs.max_line_bytes".into(), format!("{}: expected an integer from 1024 to 1048576", raw.max_line_bytes));
    }
    if raw.max_read_bytes_per_tick < 1 << 20 {
        bad(
            "logs.max_read_bytes_per_tick".into(),
            format!("{}: expected at least 1048576", raw.max_read_bytes_per_tick),
        );
    }
    let mut files = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (idx, f) in raw.file.iter().enumerate() {
        let key = |field: &str| format!("logs.file[{idx}].{field}");
        if f.name.is_empty() || !f.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            bad(key("name"), format!("{:?}: expected lowercase letters, digits and _", f.name));
        } else if !names.insert(f.name.clone()) {
            bad(key("name"), format!("{:?} is used twice", f.name));
        }
        if f.paths.is_empty() || f.paths.iter().any(|p| !p.starts_with('/')) {
            bad(key("paths"), format!("{:?}: expected one or more absolute paths", f.paths));
        }
        let preset = Preset::parse(&f.preset).unwrap_or_else(|| {
            bad(key("preset"), format!("{:?}: expected nginx, httpd, php, bitrix_exceptions, mysql or none", f.preset));
            Preset::None
        });
        let encoding = Encoding::parse(&f.encoding).unwrap_or_else(|| {
            bad(key("encoding"), format!("{:?}: expected utf-8 or windows-1251", f.encoding));
            Encoding::Utf8
        });
        let mut rules = Vec::new();
        for (rule_idx, rule) in f.rules.iter().enumerate() {
            let Some(severity) = Severity::parse(&rule.severity) else {
                bad(
                    key(&format!("rules[{rule_idx}].severity")),
                    format!("{:?}: expected low, medium, high or critical", rule.severity),
                );
                continue;
            };
            if let Err(err) = regex::bytes::Regex::new(&rule.pattern) {
                bad(key(&format!("rules[{rule_idx}].pattern")), format!("{:?}: {err}", rule.pattern));
                continue;
            }
            rules.push((rule.pattern.clone(), severity));
        }
        files.push(LogFileConfig { name: f.name.clone(), paths: f.paths.clone(), preset, encoding, rules });
    }
    LogsConfig {
        enabled: raw.enabled,
        read_from_end,
        max_line_bytes: raw.max_line_bytes as usize,
        max_read_bytes_per_tick: raw.max_read_bytes_per_tick,
        files,
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
