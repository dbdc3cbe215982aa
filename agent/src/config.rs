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
# encoding: utf-8 (invalid bytes become U+FFFD) or windows-1251 (rules are still written in
# UTF-8, Cyrillic included: they are matched in windows-1251). Extra rules come first:
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

[mysql]
# MySQL/MariaDB health: up, connect latency, connections, threads, slow queries, InnoDB, replication.
# A server that is down, refuses the login or stalls is reported (mysql_up 0 and a check result
# with reason down, auth_failed or timeout), never an agent error.
enabled = true
# Unix sockets tried in order when `address` is empty: BitrixVM, Debian/Ubuntu, RHEL MariaDB.
sockets = ["/var/lib/mysqld/mysqld.sock", "/run/mysqld/mysqld.sock", "/var/lib/mysql/mysql.sock"]
# TCP address "host:port" to use instead of the sockets.
address = ""
# Monitoring user; see the README for its GRANT (PROCESS, REPLICATION CLIENT, SELECT).
# Empty: the login of the first Bitrix site found (read from its .settings.php).
user = ""
# File whose first line is the monitoring user's password (keep it mode 0600). Read at each
# connect, so a new password needs no restart.
password_file = ""
# Seconds between runs (1..=3600).
interval_secs = 10
# Seconds allowed for connecting and for each query (1..=60). A stall becomes reason="timeout".
timeout_secs = 5
# Replication lag in seconds above which the replication check fails.
replication_lag_max_secs = 300

[bitrix]
# Bitrix checks per site: cron and agents (b_agent), mail queue (b_event), site checker result,
# config drift. Sites are found under site_roots; their DB login is read from the settings files
# without executing PHP. Queries use the [mysql] user when it is set, else the site's own login.
enabled = true
# Document roots (* and ? in the last component). A root is a site when it has
# bitrix/.settings.php or bitrix/php_interface/dbconn.php. The `site` label is the directory
# name ("default" for .../www).
site_roots = ["/home/bitrix/www", "/home/bitrix/ext_www/*", "/var/www/html", "/var/www/*/data/www/*"]
# Seconds between runs (10..=3600).
interval_secs = 60
# Seconds allowed for connecting and for each query (1..=60).
timeout_secs = 10
# An active agent whose NEXT_EXEC is further in the past than this is overdue: cron has stopped
# or the agent is too slow. Short-interval agents are briefly late on a healthy portal.
agents_overdue_grace_secs = 600
# The mail check fails when more messages than this wait to be sent ...
mail_pending_max = 100
# ... or the oldest waiting message is older than this many seconds.
mail_oldest_max_secs = 1800
# The config check fails when the database clock differs from this server's by more seconds
# than this (Bitrix's site checker allows 1).
clock_skew_max_secs = 1

[probe]
# HTTP(S) probes of the portal: status, latency, a keyword, TLS certificate expiry.
# A failing portal probe is a critical check: the portal is unavailable.
# targets = [{ url = "https://portal.example.com/", keyword = "Bitrix24", verify_tls = true }]
targets = []
# Seconds between runs (5..=3600).
interval_secs = 30
# Seconds allowed for the whole request (1..=60).
timeout_secs = 10
# The TLS check fails (low) when the certificate expires within this many days.
tls_expiry_warn_days = 14

[services]
# Whether the daemons a portal needs are running (from /proc, on a slow interval). A service is
# watched when its process runs or its systemd unit is installed.
enabled = true
# Services to watch: nginx, httpd, php-fpm, mysqld, push-server, redis, memcached, searchd, crond.
watch = ["nginx", "httpd", "php-fpm", "mysqld", "push-server", "redis", "memcached", "searchd", "crond"]
# Seconds between runs (10..=3600).
interval_secs = 60
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
    /// `[mysql]`
    pub mysql: RawMysql,
    /// `[bitrix]`
    pub bitrix: RawBitrix,
    /// `[probe]`
    pub probe: RawProbe,
    /// `[services]`
    pub services: RawServices,
}

/// `[mysql]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawMysql {
    /// Whether MySQL is checked.
    pub enabled: bool,
    /// Sockets tried in order.
    pub sockets: Vec<PathBuf>,
    /// TCP address instead of the sockets.
    pub address: String,
    /// Monitoring user.
    pub user: String,
    /// File with the password.
    pub password_file: PathBuf,
    /// Seconds between runs.
    pub interval_secs: u64,
    /// Seconds per connect or query.
    pub timeout_secs: u64,
    /// Replication lag bound.
    pub replication_lag_max_secs: u64,
}

impl Default for RawMysql {
    fn default() -> Self {
        RawMysql {
            enabled: true,
            sockets: ["/var/lib/mysqld/mysqld.sock", "/run/mysqld/mysqld.sock", "/var/lib/mysql/mysql.sock"]
                .map(PathBuf::from)
                .to_vec(),
            address: String::new(),
            user: String::new(),
            password_file: PathBuf::new(),
            interval_secs: 10,
            timeout_secs: 5,
            replication_lag_max_secs: 300,
        }
    }
}

/// `[bitrix]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawBitrix {
    /// Whether Bitrix checks run.
    pub enabled: bool,
    /// Document root patterns.
    pub site_roots: Vec<String>,
    /// Seconds between runs.
    pub interval_secs: u64,
    /// Seconds per connect or query.
    pub timeout_secs: u64,
    /// Overdue grace.
    pub agents_overdue_grace_secs: u64,
    /// Mail backlog bound.
    pub mail_pending_max: u64,
    /// Oldest pending mail bound.
    pub mail_oldest_max_secs: u64,
    /// Clock skew bound.
    pub clock_skew_max_secs: u64,
}

impl Default for RawBitrix {
    fn default() -> Self {
        RawBitrix {
            enabled: true,
            site_roots: strings(&[
                "/home/bitrix/www",
                "/home/bitrix/ext_www/*",
                "/var/www/html",
                "/var/www/*/data/www/*",
            ]),
            interval_secs: 60,
            timeout_secs: 10,
            agents_overdue_grace_secs: 600,
            mail_pending_max: 100,
            mail_oldest_max_secs: 1800,
            clock_skew_max_secs: 1,
        }
    }
}

/// `[probe]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawProbe {
    /// Targets.
    pub targets: Vec<RawProbeTarget>,
    /// Seconds between runs.
    pub interval_secs: u64,
    /// Seconds per request.
    pub timeout_secs: u64,
    /// Days before expiry that fail the TLS check.
    pub tls_expiry_warn_days: u64,
}

impl Default for RawProbe {
    fn default() -> Self {
        RawProbe { targets: Vec::new(), interval_secs: 30, timeout_secs: 10, tls_expiry_warn_days: 14 }
    }
}

/// One probe target.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawProbeTarget {
    /// URL.
    pub url: String,
    /// Text the body must contain.
    #[serde(default)]
    pub keyword: String,
    /// Whether the certificate must verify.
    #[serde(default = "yes")]
    pub verify_tls: bool,
}

fn yes() -> bool {
    true
}

/// `[services]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawServices {
    /// Whether services are checked.
    pub enabled: bool,
    /// Services to watch.
    pub watch: Vec<String>,
    /// Seconds between runs.
    pub interval_secs: u64,
}

impl Default for RawServices {
    fn default() -> Self {
        RawServices {
            enabled: true,
            watch: strings(&[
                "nginx",
                "httpd",
                "php-fpm",
                "mysqld",
                "push-server",
                "redis",
                "memcached",
                "searchd",
                "crond",
            ]),
            interval_secs: 60,
        }
    }
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
    /// MySQL checks.
    pub mysql: MysqlConfig,
    /// Bitrix checks.
    pub bitrix: BitrixConfig,
    /// Portal probes.
    pub probes: Vec<ProbeConfig>,
    /// Service presence.
    pub services: ServicesConfig,
}

/// Validated `[mysql]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlConfig {
    /// Whether MySQL is checked.
    pub enabled: bool,
    /// Sockets tried in order.
    pub sockets: Vec<PathBuf>,
    /// TCP address used instead of the sockets.
    pub address: Option<(String, u16)>,
    /// Monitoring user; `None` means a discovered site's login.
    pub user: Option<String>,
    /// File holding the monitoring user's password.
    pub password_file: Option<PathBuf>,
    /// Time between runs.
    pub interval: Duration,
    /// Bound of a connect or a query.
    pub timeout: Duration,
    /// Replication lag bound.
    pub replication_lag_max: Duration,
}

/// Validated `[bitrix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitrixConfig {
    /// Whether Bitrix checks run.
    pub enabled: bool,
    /// Document root patterns.
    pub site_roots: Vec<String>,
    /// Time between runs.
    pub interval: Duration,
    /// Bound of a connect or a query.
    pub timeout: Duration,
    /// Overdue grace.
    pub agents_overdue_grace: Duration,
    /// Mail backlog bound.
    pub mail_pending_max: u64,
    /// Oldest pending mail bound.
    pub mail_oldest_max: Duration,
    /// Clock skew bound.
    pub clock_skew_max: Duration,
}

/// One validated probe target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    /// URL as written (`target` label).
    pub url: String,
    /// https?
    pub tls: bool,
    /// Host name from the URL.
    pub host: String,
    /// Port from the URL (or 80/443).
    pub port: u16,
    /// Path and query (`/` when empty).
    pub path: String,
    /// Text the body must contain; empty: none.
    pub keyword: String,
    /// Whether the certificate must verify.
    pub verify_tls: bool,
    /// Time between runs.
    pub interval: Duration,
    /// Bound of the request.
    pub timeout: Duration,
    /// Days before expiry that fail the TLS check.
    pub tls_expiry_warn_days: u64,
}

/// Validated `[services]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicesConfig {
    /// Whether services are checked.
    pub enabled: bool,
    /// Services to watch.
    pub watch: Vec<String>,
    /// Time between runs.
    pub interval: Duration,
}

/// Service names `[services] watch` accepts.
pub const KNOWN_SERVICES: &[&str] =
    &["nginx", "httpd", "php-fpm", "mysqld", "push-server", "redis", "memcached", "searchd", "crond"];

/// Splits `http(s)://host[:port][/path]` into (tls, host, port, path).
pub fn parse_url(url: &str) -> Option<(bool, String, u16, String)> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        (false, url.strip_prefix("http://")?)
    };
    let (authority, path) = match rest.find('/') {
        Some(idx) => (&rest[..idx], &rest[idx..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => {
                if tls {
                    443
                } else {
                    80
                }
            }
            None => return None,
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().ok()?),
            None => (authority.to_owned(), if tls { 443 } else { 80 }),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((tls, host, port, path.to_owned()))
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
    pub rules: Vec<(String, crate::observation::Severity)>,
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
        let (mysql, bitrix, probes, services) = validate_checks(&raw, origin, &mut errors);
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
            mysql,
            bitrix,
            probes,
            services,
            host: HostConfig {
                enabled: raw.host.enabled,
                exclude_fstypes: raw.host.exclude_fstypes,
                exclude_mountpoint_prefixes: raw.host.exclude_mountpoint_prefixes,
                exclude_device_prefixes: raw.host.exclude_device_prefixes,
            },
        })
    }
}

fn validate_checks(
    raw: &RawConfig,
    origin: &Path,
    errors: &mut Vec<ConfigError>,
) -> (MysqlConfig, BitrixConfig, Vec<ProbeConfig>, ServicesConfig) {
    let mut bad =
        |key: String, message: String| errors.push(ConfigError { origin: origin.to_path_buf(), key, message });
    let secs = |bad: &mut dyn FnMut(String, String), key: &str, value: u64, min: u64, max: u64| {
        if !(min..=max).contains(&value) {
            bad(key.to_owned(), format!("{value}: expected an integer from {min} to {max}"));
        }
        Duration::from_secs(value)
    };
    let m = &raw.mysql;
    let address = if m.address.is_empty() {
        None
    } else {
        match m
            .address
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?)))
        {
            Some((host, port)) if !host.is_empty() => Some((host, port)),
            _ => {
                bad("mysql.address".into(), format!("{:?}: expected host:port, e.g. 127.0.0.1:3306", m.address));
                None
            }
        }
    };
    if m.sockets.iter().any(|p| !p.is_absolute()) {
        bad("mysql.sockets".into(), format!("{:?}: expected absolute paths", m.sockets));
    }
    if m.user.is_empty() && !m.password_file.as_os_str().is_empty() {
        bad("mysql.user".into(), "empty while mysql.password_file is set: set the user too".into());
    }
    let mysql = MysqlConfig {
        enabled: m.enabled,
        sockets: m.sockets.clone(),
        address,
        user: (!m.user.is_empty()).then(|| m.user.clone()),
        password_file: (!m.password_file.as_os_str().is_empty()).then(|| m.password_file.clone()),
        interval: secs(&mut bad, "mysql.interval_secs", m.interval_secs, 1, 3600),
        timeout: secs(&mut bad, "mysql.timeout_secs", m.timeout_secs, 1, 60),
        replication_lag_max: Duration::from_secs(m.replication_lag_max_secs),
    };
    let b = &raw.bitrix;
    if b.site_roots.iter().any(|p| !p.starts_with('/')) {
        bad("bitrix.site_roots".into(), format!("{:?}: expected absolute paths", b.site_roots));
    }
    let bitrix = BitrixConfig {
        enabled: b.enabled,
        site_roots: b.site_roots.clone(),
        interval: secs(&mut bad, "bitrix.interval_secs", b.interval_secs, 10, 3600),
        timeout: secs(&mut bad, "bitrix.timeout_secs", b.timeout_secs, 1, 60),
        agents_overdue_grace: Duration::from_secs(b.agents_overdue_grace_secs),
        mail_pending_max: b.mail_pending_max,
        mail_oldest_max: Duration::from_secs(b.mail_oldest_max_secs),
        clock_skew_max: Duration::from_secs(b.clock_skew_max_secs),
    };
    let p = &raw.probe;
    let interval = secs(&mut bad, "probe.interval_secs", p.interval_secs, 5, 3600);
    let timeout = secs(&mut bad, "probe.timeout_secs", p.timeout_secs, 1, 60);
    let mut probes = Vec::new();
    for (idx, target) in p.targets.iter().enumerate() {
        match parse_url(&target.url) {
            Some((tls, host, port, path)) => probes.push(ProbeConfig {
                url: target.url.clone(),
                tls,
                host,
                port,
                path,
                keyword: target.keyword.clone(),
                verify_tls: target.verify_tls,
                interval,
                timeout,
                tls_expiry_warn_days: p.tls_expiry_warn_days,
            }),
            None => bad(
                format!("probe.targets[{idx}].url"),
                format!("{:?}: expected http://host[:port]/path or https://...", target.url),
            ),
        }
    }
    let sv = &raw.services;
    for name in sv.watch.iter().filter(|n| !KNOWN_SERVICES.contains(&n.as_str())) {
        bad("services.watch".into(), format!("{name:?}: expected some of {}", KNOWN_SERVICES.join(", ")));
    }
    let services = ServicesConfig {
        enabled: sv.enabled,
        watch: sv.watch.clone(),
        interval: secs(&mut bad, "services.interval_secs", sv.interval_secs, 10, 3600),
    };
    (mysql, bitrix, probes, services)
}

fn validate_logs(raw: &RawLogs, origin: &Path, errors: &mut Vec<ConfigError>) -> LogsConfig {
    use crate::logs::classify::Preset;
    use crate::logs::lines::Encoding;
    use crate::observation::Severity;
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
        // Each rule compiles alone; the agent searches them together with the preset's.
        if rules.len() == f.rules.len()
            && let Err(err) = crate::logs::classify::Classifier::new(&crate::logs::rules_of(preset, &rules, encoding))
        {
            bad(key("rules"), format!("the rules do not compile together with the {:?} preset: {err}", f.preset));
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
