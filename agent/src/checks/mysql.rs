//! MySQL/MariaDB health, and the database access shared with the Bitrix checks.
//!
//! One connection per run, opened and closed within it (at most one attempt per interval; the
//! connect time is the `mysql_connect_seconds` measurement). Every wait is bounded by
//! `mysql.timeout_secs`. "down", "auth_failed" and "timeout" are distinct reasons.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use b24watch_common::config::Problems;
use b24watch_proto::catalog::{
    MYSQL_ABORTED_CONNECTS_TOTAL, MYSQL_CHECK_FAILURES_TOTAL, MYSQL_CLOCK_SKEW_SECONDS, MYSQL_CONNECT_SECONDS,
    MYSQL_DEADLOCKS_TOTAL, MYSQL_INNODB_BUFFER_POOL_HIT_RATIO, MYSQL_MAX_CONNECTIONS, MYSQL_QUERIES_TOTAL,
    MYSQL_REPLICATION_IO_RUNNING, MYSQL_REPLICATION_LAG_SECONDS, MYSQL_REPLICATION_SQL_RUNNING,
    MYSQL_SLOW_QUERIES_TOTAL, MYSQL_THREADS_CONNECTED, MYSQL_THREADS_RUNNING, MYSQL_UP, MYSQL_UPTIME_SECONDS,
};
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};
use tokio::time::timeout;

use super::discover::{DbCredentials, Endpoint, Site};
use super::{Check, Checker, Findings};
use crate::observation::{Severity, UnixMs};

/// Why the database could not be used. `message` never holds a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    /// `down`, `auth_failed`, `timeout`, `too_many_connections`, `access_denied`, `no_credentials`
    /// or `error`.
    pub reason: &'static str,
    /// What happened.
    pub message: String,
}

/// Every [`DbError::reason`]: the label values of `mysql_check_failures_total`, reported from 0.
pub const FAILURE_REASONS: [&str; 7] =
    ["down", "auth_failed", "timeout", "too_many_connections", "access_denied", "no_credentials", "error"];

impl DbError {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        DbError { reason, message: message.into() }
    }
}

/// Maps a driver error to a reason.
pub fn classify(err: &mysql_async::Error) -> DbError {
    use mysql_async::Error;
    let reason = match err {
        // ER_ACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_NO_PASSWORD_ERROR,
        // ER_NOT_SUPPORTED_AUTH_MODE, account locked, password expired.
        Error::Server(e) if matches!(e.code, 1044 | 1045 | 1698 | 1251 | 3118 | 1820 | 1862) => "auth_failed",
        // ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS, ER_USER_LIMIT_REACHED.
        Error::Server(e) if matches!(e.code, 1040 | 1203 | 1226) => "too_many_connections",
        // ER_TABLEACCESS_DENIED_ERROR, ER_SPECIFIC_ACCESS_DENIED_ERROR, ER_COLUMNACCESS_DENIED_ERROR.
        Error::Server(e) if matches!(e.code, 1142 | 1143 | 1227) => "access_denied",
        // ER_SERVER_SHUTDOWN, ER_NORMAL_SHUTDOWN, query interrupted by shutdown.
        Error::Server(e) if matches!(e.code, 1053 | 1077 | 1317) => "down",
        Error::Server(_) => "error",
        Error::Io(_) => "down",
        Error::Driver(mysql_async::DriverError::ConnectionClosed) => "down",
        _ => "error",
    };
    DbError { reason, message: sentence(reason, err) }
}

/// What a driver error means, as a sentence a client can read: no error codes, no OS error
/// numbers (the server's own text is kept where it says what was refused).
fn sentence(reason: &str, err: &mysql_async::Error) -> String {
    use mysql_async::Error;
    match err {
        Error::Server(e) => {
            let detail = e.message.trim().trim_end_matches('.');
            match reason {
                "auth_failed" => format!("MySQL refused the login: {detail}."),
                "too_many_connections" => format!("MySQL refused the connection, it has too many: {detail}."),
                "access_denied" => format!("MySQL refused a query for lack of privileges: {detail}."),
                "down" => "MySQL is shutting down or was restarted during the check.".to_owned(),
                _ => format!("MySQL answered with an error: {detail}."),
            }
        }
        Error::Io(mysql_async::IoError::Io(e)) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "MySQL is not running: the connection was refused.".to_owned(),
            std::io::ErrorKind::NotFound => "MySQL is not running: its socket does not exist.".to_owned(),
            std::io::ErrorKind::PermissionDenied => {
                "MySQL could not be reached: the agent may not open its socket (permission denied).".to_owned()
            }
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => "MySQL closed the connection during the check.".to_owned(),
            kind => format!("MySQL could not be reached ({kind})."),
        },
        Error::Io(_) => "MySQL could not be reached: the TLS connection failed.".to_owned(),
        Error::Driver(mysql_async::DriverError::ConnectionClosed) => {
            "MySQL closed the connection during the check.".to_owned()
        }
        _ => "MySQL could not be read: the driver reported an unexpected answer.".to_owned(),
    }
}

/// Where and how to log in: resolved per run (the password file is re-read each time). `Debug`
/// hides the password.
#[derive(Clone)]
pub struct Target {
    /// Socket or TCP address.
    pub endpoint: Endpoint,
    /// Credentials.
    pub user: String,
    /// Password; never logged.
    password: String,
    /// Database to select, if any.
    pub database: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("endpoint", &self.endpoint)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("database", &self.database)
            .finish()
    }
}

impl Target {
    /// The same server and database with another login.
    pub fn with_login(self, user: String, password: String) -> Target {
        Target { user, password, ..self }
    }

    /// A target from discovered site credentials.
    pub fn from_site(db: &DbCredentials) -> Target {
        Target {
            endpoint: db.endpoint.clone(),
            user: db.user.clone(),
            password: db.password.clone(),
            database: Some(db.database.clone()),
        }
    }
}

/// Picks the local server's address: `[mysql] address`, else the first socket that exists.
pub fn local_endpoint(cfg: &MysqlConfig) -> Result<Endpoint, DbError> {
    if let Some((host, port)) = &cfg.address {
        return Ok(Endpoint::Tcp(host.clone(), *port));
    }
    cfg.sockets.iter().find(|p| p.exists()).map(|p| Endpoint::Socket(p.clone())).ok_or_else(|| {
        let tried: Vec<String> = cfg.sockets.iter().map(|p| p.display().to_string()).collect();
        DbError::new("down", format!("MySQL is not running: none of its sockets exists ({}).", tried.join(", ")))
    })
}

/// The monitoring login from `[mysql]`, or `None` when no user is configured.
pub fn configured_login(cfg: &MysqlConfig) -> Result<Option<(String, String)>, DbError> {
    let Some(user) = &cfg.user else { return Ok(None) };
    let password = match &cfg.password_file {
        Some(path) => {
            std::fs::read_to_string(path).map(|text| text.lines().next().unwrap_or("").to_owned()).map_err(|err| {
                DbError::new(
                    "no_credentials",
                    format!("The monitoring password could not be read from {} ({}).", path.display(), err.kind()),
                )
            })?
        }
        None => String::new(),
    };
    Ok(Some((user.clone(), password)))
}

/// Where to read a site's own database: its server and database from the site's settings, logged
/// in as the monitoring user of `[mysql]` when one is configured (least privilege), else with
/// the site's own login; the local server's address when the settings name none. Shared by the
/// Bitrix and database upkeep checkers.
///
/// # Errors
/// `no_credentials` (no connection in the site's settings, with the problems discovery found,
/// or an unreadable password file) or `down` (no local socket exists).
pub fn site_target(site: &Site, cfg: &MysqlConfig) -> Result<Target, DbError> {
    let Some(db) = &site.db else {
        let why = if site.problems.is_empty() {
            "no database connection in its settings".into()
        } else {
            site.problems.join("; ")
        };
        return Err(DbError { reason: "no_credentials", message: why });
    };
    let mut target = Target::from_site(db);
    if let Some((user, password)) = configured_login(cfg)? {
        target = Target::with_login(target, user, password);
    }
    if target.endpoint == Endpoint::LocalDefault {
        target.endpoint = local_endpoint(cfg)?;
    }
    Ok(target)
}

/// Opens a connection within `limit`; returns it with the time connecting took.
pub async fn connect(target: &Target, limit: Duration) -> Result<(mysql_async::Conn, Duration), DbError> {
    let mut opts = mysql_async::OptsBuilder::default()
        .user(Some(target.user.clone()))
        .pass(Some(target.password.clone()))
        .db_name(target.database.clone())
        .prefer_socket(false)
        .stmt_cache_size(0);
    opts = match &target.endpoint {
        Endpoint::Socket(path) => opts.socket(Some(path.display().to_string())),
        Endpoint::Tcp(host, port) => opts.ip_or_hostname(host.clone()).tcp_port(*port),
        Endpoint::LocalDefault => return Err(DbError::new("error", "No address is known for the local MySQL server.")),
    };
    let started = Instant::now();
    match timeout(limit, mysql_async::Conn::new(opts)).await {
        Ok(Ok(conn)) => Ok((conn, started.elapsed())),
        Ok(Err(err)) => Err(classify(&err)),
        Err(_) => {
            Err(DbError::new("timeout", format!("MySQL did not accept the connection within {} s.", limit.as_secs())))
        }
    }
}

/// Runs a query within `limit`, returning its rows.
pub async fn query(conn: &mut mysql_async::Conn, sql: &str, limit: Duration) -> Result<Vec<mysql_async::Row>, DbError> {
    match timeout(limit, conn.query::<mysql_async::Row, _>(sql)).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(err)) => Err(classify(&err)),
        Err(_) => Err(DbError::new("timeout", format!("MySQL did not answer within {} s.", limit.as_secs()))),
    }
}

/// Closes a connection politely, within `limit` (a stalled server gets the socket dropped).
pub async fn close(conn: mysql_async::Conn, limit: Duration) {
    let _ = timeout(limit, conn.disconnect()).await;
}

/// Column `idx` of a row as text.
pub fn text(row: &mysql_async::Row, idx: usize) -> Option<String> {
    match row.as_ref(idx)? {
        mysql_async::Value::NULL => None,
        mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

/// Column `idx` of a row as a number.
pub fn number(row: &mysql_async::Row, idx: usize) -> Option<f64> {
    text(row, idx)?.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The MySQL health checker.
#[derive(Debug)]
pub struct MysqlChecker {
    cfg: MysqlConfig,
    /// Login of the first discovered site, used when `[mysql] user` is empty.
    site_login: Option<DbCredentials>,
    /// Whether Bitrix sites are present (then Bitrix's config requirements are checked).
    bitrix: bool,
    /// Failed runs by reason since the agent started.
    failures: std::collections::BTreeMap<&'static str, u64>,
}

/// Target name of MySQL checks.
const TARGET: &str = "mysql";

impl MysqlChecker {
    /// A checker for the local server.
    pub fn new(cfg: MysqlConfig, sites: &[Site]) -> Self {
        let site_login = sites.iter().find_map(|s| s.db.clone());
        // Every reason from 0, so that a first failure after a restart is an increase.
        let failures = FAILURE_REASONS.iter().map(|r| (*r, 0)).collect();
        MysqlChecker { cfg, site_login, bitrix: !sites.is_empty(), failures }
    }

    /// Whether there is anything to check: an address, a socket, a user or a site login.
    pub fn has_target(cfg: &MysqlConfig, sites: &[Site]) -> bool {
        cfg.address.is_some()
            || cfg.user.is_some()
            || cfg.sockets.iter().any(|p| p.exists())
            || sites.iter().any(|s| s.db.is_some())
    }

    fn target(&self) -> Result<Target, DbError> {
        let (user, password) = match configured_login(&self.cfg)? {
            Some(login) => login,
            None => match &self.site_login {
                Some(db) => (db.user.clone(), db.password.clone()),
                None => {
                    return Err(DbError::new(
                        "no_credentials",
                        "No [mysql] user is configured and no Bitrix site login was found.",
                    ));
                }
            },
        };
        let endpoint = match (&self.cfg.user, &self.site_login) {
            // A site's login goes to the site's server unless that is "localhost".
            (None, Some(db)) if db.endpoint != Endpoint::LocalDefault && self.cfg.address.is_none() => {
                db.endpoint.clone()
            }
            _ => local_endpoint(&self.cfg)?,
        };
        Ok(Target { endpoint, user, password, database: None })
    }

    async fn collect(&self, at: UnixMs, out: &mut Findings) -> Result<(), DbError> {
        let limit = self.cfg.timeout;
        let target = self.target()?;
        let (mut conn, took) = connect(&target, limit).await?;
        let result = self.collect_on(&mut conn, took, at, out).await;
        close(conn, limit).await;
        result
    }

    async fn collect_on(
        &self,
        conn: &mut mysql_async::Conn,
        took: Duration,
        at: UnixMs,
        out: &mut Findings,
    ) -> Result<(), DbError> {
        let limit = self.cfg.timeout;
        let status = query(
            conn,
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('Uptime', 'Threads_connected', 'Threads_running', \
             'Slow_queries', 'Aborted_connects', 'Questions', 'Innodb_buffer_pool_read_requests', \
             'Innodb_buffer_pool_reads', 'Innodb_deadlocks')",
            limit,
        )
        .await?;
        let sent = crate::observation::now().0;
        let clock = query(conn, "SELECT UNIX_TIMESTAMP(NOW(6))", limit).await?;
        let local_mid = (sent + crate::observation::now().0) as f64 / 2000.0;
        let variables = query(
            conn,
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('max_connections', 'sql_mode', 'innodb_strict_mode')",
            limit,
        )
        .await?;
        let pairs = |rows: &[mysql_async::Row]| -> Vec<(String, String)> {
            rows.iter()
                .filter_map(|r| Some((text(r, 0)?.to_ascii_lowercase(), text(r, 1).unwrap_or_default())))
                .collect()
        };
        let status = pairs(&status);
        let variables = pairs(&variables);
        let get = |list: &[(String, String)], name: &str| {
            list.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.trim().parse::<f64>().ok())
        };
        let none = Vec::new;
        out.observe(MYSQL_UP, none(), 1.0, at);
        out.observe(MYSQL_CONNECT_SECONDS, none(), took.as_secs_f64(), at);
        for (name, metric) in [
            ("uptime", MYSQL_UPTIME_SECONDS),
            ("threads_connected", MYSQL_THREADS_CONNECTED),
            ("threads_running", MYSQL_THREADS_RUNNING),
            ("slow_queries", MYSQL_SLOW_QUERIES_TOTAL),
            ("aborted_connects", MYSQL_ABORTED_CONNECTS_TOTAL),
            ("questions", MYSQL_QUERIES_TOTAL),
            ("innodb_deadlocks", MYSQL_DEADLOCKS_TOTAL),
        ] {
            if let Some(value) = get(&status, name) {
                out.observe(metric, none(), value, at);
            }
        }
        if let (Some(requests), Some(reads)) =
            (get(&status, "innodb_buffer_pool_read_requests"), get(&status, "innodb_buffer_pool_reads"))
            && requests > 0.0
        {
            out.observe(MYSQL_INNODB_BUFFER_POOL_HIT_RATIO, none(), (1.0 - reads / requests).clamp(0.0, 1.0), at);
        }
        let max_connections = get(&variables, "max_connections");
        if let Some(max) = max_connections {
            out.observe(MYSQL_MAX_CONNECTIONS, none(), max, at);
        }
        out.checks.push(Check::ok(
            MYSQL_UP_CHECK,
            TARGET,
            Severity::High,
            format!("MySQL answers (connected in {:.1} ms).", took.as_secs_f64() * 1000.0),
            at,
        ));
        if let (Some(connected), Some(max)) = (get(&status, "threads_connected"), max_connections)
            && max > 0.0
        {
            let share = connected / max;
            out.checks.push(if share >= 0.9 {
                Check::failed(
                    "mysql_connections",
                    TARGET,
                    Severity::Medium,
                    "near_limit",
                    format!("{connected} of {max} connections in use"),
                    at,
                )
            } else {
                Check::ok(
                    "mysql_connections",
                    TARGET,
                    Severity::Medium,
                    format!("{connected} of {max} connections"),
                    at,
                )
            });
        }
        // Clock skew: the database's clock against the middle of the round trip.
        let skew = clock.first().and_then(|r| number(r, 0)).map(|db_now| db_now - local_mid);
        if let Some(skew) = skew {
            out.observe(MYSQL_CLOCK_SKEW_SECONDS, none(), skew, at);
        }
        self.replication(conn, at, out).await?;
        if self.bitrix {
            out.checks.push(bitrix_config_check(&variables, skew, at));
        }
        Ok(())
    }

    async fn replication(&self, conn: &mut mysql_async::Conn, at: UnixMs, out: &mut Findings) -> Result<(), DbError> {
        let limit = self.cfg.timeout;
        let rows = match query(conn, "SHOW REPLICA STATUS", limit).await {
            Err(err) if err.reason == "error" => query(conn, "SHOW SLAVE STATUS", limit).await,
            other => other,
        };
        let rows = match rows {
            Ok(rows) => rows,
            // MariaDB >= 10.5 wants REPLICA MONITOR for the replication status, beyond the
            // least-privilege grants. Status variables anyone may read tell whether this server
            // replicates at all: only then is the unknown state worth reporting.
            Err(err) if err.reason == "access_denied" => {
                if looks_like_replica(conn, limit).await? {
                    out.checks.push(Check::error(
                        "mysql_replication",
                        TARGET,
                        Severity::High,
                        "access_denied",
                        "this server replicates but the monitoring user may not read the replication status \
                         (MariaDB: GRANT REPLICA MONITOR; MySQL: GRANT REPLICATION CLIENT)"
                            .into(),
                        at,
                    ));
                }
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        let Some(row) = rows.first() else { return Ok(()) };
        let column = |names: &[&str]| -> Option<String> {
            let columns = row.columns_ref();
            let idx = columns.iter().position(|c| names.iter().any(|n| c.name_str().eq_ignore_ascii_case(n)))?;
            text(row, idx)
        };
        let running = |v: Option<String>| v.is_some_and(|s| s.eq_ignore_ascii_case("yes"));
        let io = running(column(&["Replica_IO_Running", "Slave_IO_Running"]));
        let sql = running(column(&["Replica_SQL_Running", "Slave_SQL_Running"]));
        let lag = column(&["Seconds_Behind_Source", "Seconds_Behind_Master"]).and_then(|s| s.parse::<f64>().ok());
        out.observe(MYSQL_REPLICATION_IO_RUNNING, Vec::new(), f64::from(u8::from(io)), at);
        out.observe(MYSQL_REPLICATION_SQL_RUNNING, Vec::new(), f64::from(u8::from(sql)), at);
        if let Some(lag) = lag {
            out.observe(MYSQL_REPLICATION_LAG_SECONDS, Vec::new(), lag, at);
        }
        let max = self.cfg.replication_lag_max.as_secs_f64();
        out.checks.push(match (io && sql, lag) {
            (false, _) => Check::failed(
                "mysql_replication",
                TARGET,
                Severity::High,
                "replication_stopped",
                format!("replication threads: IO {}, SQL {}", yes_no(io), yes_no(sql)),
                at,
            ),
            (true, Some(lag)) if lag > max => Check::failed(
                "mysql_replication",
                TARGET,
                Severity::Medium,
                "replication_lag",
                format!("replica is {lag} s behind (limit {max} s)"),
                at,
            ),
            (true, _) => Check::ok("mysql_replication", TARGET, Severity::High, "replicating".into(), at),
        });
        Ok(())
    }
}

/// Whether the server is a replica, from what needs no privilege: MariaDB's `Slaves_running`,
/// `Slave_running` and `read_only`.
async fn looks_like_replica(conn: &mut mysql_async::Conn, limit: Duration) -> Result<bool, DbError> {
    let rows =
        query(conn, "SHOW GLOBAL STATUS WHERE Variable_name IN ('Slaves_running', 'Slave_running')", limit).await?;
    let running = rows.iter().any(|r| text(r, 1).is_some_and(|v| v == "ON" || v.parse::<u64>().is_ok_and(|n| n > 0)));
    let read_only = query(conn, "SELECT @@global.read_only", limit).await?;
    Ok(running || read_only.first().and_then(|r| number(r, 0)).is_some_and(|v| v > 0.0))
}

fn yes_no(value: bool) -> &'static str {
    if value { "running" } else { "stopped" }
}

/// Check name of the MySQL up check.
pub const MYSQL_UP_CHECK: &str = "mysql_up";

/// What Bitrix requires of the server (its site checker's MySQL group): empty `sql_mode`,
/// `innodb_strict_mode` off, clocks within a second.
fn bitrix_config_check(variables: &[(String, String)], skew: Option<f64>, at: UnixMs) -> Check {
    let value = |name: &str| variables.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let mut drift = Vec::new();
    if let Some(mode) = value("sql_mode").filter(|m| !m.trim().is_empty()) {
        drift.push(format!("sql_mode is {mode:?}, Bitrix needs it empty"));
    }
    if value("innodb_strict_mode").is_some_and(|v| v.eq_ignore_ascii_case("on") || v == "1") {
        drift.push("innodb_strict_mode is ON, Bitrix needs OFF".to_owned());
    }
    if let Some(skew) = skew.filter(|s| s.abs() > 1.0) {
        drift.push(format!("database clock differs from this server's by {skew:.1} s"));
    }
    if drift.is_empty() {
        Check::ok(
            "bitrix_db_config",
            TARGET,
            Severity::Low,
            "sql_mode, innodb_strict_mode and clock as Bitrix needs".into(),
            at,
        )
    } else {
        Check::failed("bitrix_db_config", TARGET, Severity::Low, "config_drift", drift.join("; "), at)
    }
}

#[async_trait::async_trait]
impl Checker for MysqlChecker {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    async fn run(&mut self, at: UnixMs, out: &mut Findings) {
        let result = self.collect(at, out).await;
        if let Err(err) = result {
            // Whatever was measured before the failure is dropped: a half-read server is reported
            // as not up, with the reason.
            out.observations.clear();
            out.checks.clear();
            let known = err.reason != "no_credentials";
            if known {
                out.observe(MYSQL_UP, Vec::new(), 0.0, at);
            }
            *self.failures.entry(err.reason).or_default() += 1;
            let check = if known {
                Check::failed(MYSQL_UP_CHECK, TARGET, Severity::High, err.reason, err.message, at)
            } else {
                Check::error(MYSQL_UP_CHECK, TARGET, Severity::High, err.reason, err.message, at)
            };
            out.checks.push(check);
        }
        for (reason, count) in &self.failures {
            out.observe(MYSQL_CHECK_FAILURES_TOTAL, vec![("reason", (*reason).to_owned())], *count as f64, at);
        }
    }
}

/// `[mysql]` section as written.
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

impl RawMysql {
    /// The validated form; problems go to `problems`.
    pub fn validate(&self, problems: &mut Problems) -> MysqlConfig {
        let address = if self.address.is_empty() {
            None
        } else {
            match self
                .address
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?)))
            {
                Some((host, port)) if !host.is_empty() => Some((host, port)),
                _ => {
                    problems
                        .bad("mysql.address", format!("{:?}: expected host:port, e.g. 127.0.0.1:3306", self.address));
                    None
                }
            }
        };
        if self.sockets.iter().any(|p| !p.is_absolute()) {
            problems.bad("mysql.sockets", format!("{:?}: expected absolute paths", self.sockets));
        }
        if self.user.is_empty() && !self.password_file.as_os_str().is_empty() {
            problems.bad("mysql.user", "empty while mysql.password_file is set: set the user too");
        }
        MysqlConfig {
            enabled: self.enabled,
            sockets: self.sockets.clone(),
            address,
            user: (!self.user.is_empty()).then(|| self.user.clone()),
            password_file: (!self.password_file.as_os_str().is_empty()).then(|| self.password_file.clone()),
            interval: problems.secs("mysql.interval_secs", self.interval_secs, 1, 3600),
            timeout: problems.secs("mysql.timeout_secs", self.timeout_secs, 1, 60),
            replication_lag_max: Duration::from_secs(self.replication_lag_max_secs),
        }
    }
}
