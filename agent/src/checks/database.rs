//! Database upkeep per site: size, the largest tables, reclaimable space, tables not on InnoDB and
//! Bitrix's fast-growing log tables; and the server's version against what Bitrix supports.
//!
//! One query per site, on the site's own database with the least-privilege monitoring login
//! (SELECT is enough for `information_schema.TABLES`):
//!
//! ```sql
//! SELECT TABLE_NAME, ENGINE, DATA_LENGTH + INDEX_LENGTH, DATA_FREE FROM information_schema.TABLES
//!  WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'
//! ```
//!
//! - `DATA_FREE` is space allocated to the table but unused (deleted rows): `OPTIMIZE TABLE` gives
//!   it back. With `innodb_file_per_table=OFF` every InnoDB table reports the shared tablespace's
//!   free space, so the figure only means something per table with file-per-table (the default
//!   since MySQL 5.6 and in BitrixVM's my.cnf).
//! - MySQL 8 caches these statistics for `information_schema_stats_expiry` (default 86400 s):
//!   figures may be up to a day old there; MariaDB reads them live.
//! - Log tables: the audit log `b_event_log` and the web statistics `b_stat*`, which Bitrix's own
//!   backup offers to skip because they only grow (`CBackup::SkipTableData`,
//!   `modules/main/classes/general/backup.php`), plus the performance monitor's `b_perf_*`
//!   (filled while the monitor runs); configurable.
//!
//! Checks (target: the site): `db_engine` (low), `db_reclaimable` (low), `db_log_tables` (low);
//! target `mysql`: `mysql_version` (medium) from `SELECT VERSION()` against [`super::version`].
//! Labels stay bounded: at most `top_tables` table names per site and series.

use std::time::Duration;

use b24watch_common::config::Problems;
use b24watch_proto::catalog::{
    DB_LOG_TABLE_SIZE_BYTES, DB_NON_INNODB_TABLES, DB_RECLAIMABLE_BYTES, DB_SIZE_BYTES, DB_TABLE_RECLAIMABLE_BYTES,
    DB_TABLE_SIZE_BYTES, DB_TABLES, MYSQL_VERSION_INFO,
};
use serde::{Deserialize, Serialize};

use super::discover::Site;
use super::mysql::{self, DbError, MysqlConfig};
use super::{Check, Checker, Findings, version};
use crate::observation::{Severity, UnixMs};

/// One table as `information_schema.TABLES` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Name.
    pub name: String,
    /// Storage engine (`None` for a broken table).
    pub engine: Option<String>,
    /// Data and index bytes.
    pub size: u64,
    /// Allocated but unused bytes.
    pub free: u64,
}

/// `[database]` section as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawDatabase {
    /// Whether database upkeep is checked.
    pub enabled: bool,
    /// Seconds between runs.
    pub interval_secs: u64,
    /// Seconds per connect or query.
    pub timeout_secs: u64,
    /// How many tables per site get their own series.
    pub top_tables: u64,
    /// Reclaimable bound per table, MiB.
    pub reclaimable_max_mib: u64,
    /// Log table patterns.
    pub log_tables: Vec<String>,
    /// Log table bound, MiB.
    pub log_table_max_mib: u64,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            enabled: true,
            interval_secs: 3600,
            timeout_secs: 30,
            top_tables: 10,
            reclaimable_max_mib: 1024,
            log_tables: ["b_event_log", "b_perf_*", "b_stat*"].map(String::from).to_vec(),
            log_table_max_mib: 1024,
        }
    }
}

/// Validated `[database]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// Whether database upkeep is checked.
    pub enabled: bool,
    /// Time between runs.
    pub interval: Duration,
    /// Bound of a connect or a query.
    pub timeout: Duration,
    /// Tables per site with their own series.
    pub top_tables: usize,
    /// A table with more reclaimable bytes than this fails `db_reclaimable`.
    pub reclaimable_max: u64,
    /// Log table names; a trailing `*` matches a prefix.
    pub log_tables: Vec<String>,
    /// A log table larger than this fails `db_log_tables`.
    pub log_table_max: u64,
}

impl RawDatabase {
    /// The validated form; problems go to `problems`.
    pub fn validate(&self, problems: &mut Problems) -> DatabaseConfig {
        if self.log_tables.iter().any(|p| p.is_empty() || p[..p.len() - 1].contains('*')) {
            problems.bad(
                "database.log_tables",
                format!("{:?}: expected names, each with at most a trailing *", self.log_tables),
            );
        }
        DatabaseConfig {
            enabled: self.enabled,
            interval: problems.secs("database.interval_secs", self.interval_secs, 60, 86_400),
            timeout: problems.secs("database.timeout_secs", self.timeout_secs, 1, 300),
            top_tables: problems.range("database.top_tables", self.top_tables, 1, 50) as usize,
            reclaimable_max: problems.range("database.reclaimable_max_mib", self.reclaimable_max_mib, 1, 1 << 30) << 20,
            log_tables: self.log_tables.clone(),
            log_table_max: problems.range("database.log_table_max_mib", self.log_table_max_mib, 1, 1 << 30) << 20,
        }
    }
}

/// Whether `name` is one of the configured log tables. Pure.
pub fn is_log_table(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == p,
    })
}

const MIB: f64 = 1024.0 * 1024.0;

/// The `n` tables passing `filter` with the largest `key`, largest first (ties by name). Pure.
fn top_n<'a>(tables: &'a [Table], n: usize, key: fn(&Table) -> u64, filter: &dyn Fn(&Table) -> bool) -> Vec<&'a Table> {
    let mut picked: Vec<&Table> = tables.iter().filter(|t| filter(t)).collect();
    picked.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
    picked.truncate(n);
    picked
}

/// Turns a site's tables into observations and check results. Pure.
pub fn judge(cfg: &DatabaseConfig, site: &str, tables: &[Table], at: UnixMs, out: &mut Findings) {
    let label = || vec![("site", site.to_owned())];
    let table_label = |t: &Table| vec![("site", site.to_owned()), ("table", t.name.clone())];
    let total: u64 = tables.iter().map(|t| t.size).sum();
    let free: u64 = tables.iter().map(|t| t.free).sum();
    out.observe(DB_SIZE_BYTES, label(), total as f64, at);
    out.observe(DB_TABLES, label(), tables.len() as f64, at);
    out.observe(DB_RECLAIMABLE_BYTES, label(), free as f64, at);
    let top = |key: fn(&Table) -> u64, filter: &dyn Fn(&Table) -> bool| top_n(tables, cfg.top_tables, key, filter);
    for t in top(|t| t.size, &|_| true) {
        out.observe(DB_TABLE_SIZE_BYTES, table_label(t), t.size as f64, at);
    }
    for t in top(|t| t.free, &|t| t.free > 0) {
        out.observe(DB_TABLE_RECLAIMABLE_BYTES, table_label(t), t.free as f64, at);
    }
    let logs = top(|t| t.size, &|t| is_log_table(&cfg.log_tables, &t.name));
    for t in &logs {
        out.observe(DB_LOG_TABLE_SIZE_BYTES, table_label(t), t.size as f64, at);
    }
    let not_innodb: Vec<&Table> =
        tables.iter().filter(|t| t.engine.as_deref().is_some_and(|e| !e.eq_ignore_ascii_case("InnoDB"))).collect();
    out.observe(DB_NON_INNODB_TABLES, label(), not_innodb.len() as f64, at);

    let names = |list: &[&Table], what: &dyn Fn(&Table) -> String| -> String {
        let mut text: Vec<String> = list.iter().take(5).map(|t| what(t)).collect();
        if list.len() > 5 {
            text.push(format!("and {} more", list.len() - 5));
        }
        text.join(", ")
    };
    out.checks.push(if not_innodb.is_empty() {
        Check::ok("db_engine", site, Severity::Low, format!("All {} tables use InnoDB.", tables.len()), at)
    } else {
        Check::failed(
            "db_engine",
            site,
            Severity::Low,
            "not_innodb",
            format!(
                "{} tables do not use InnoDB ({}): they lock whole tables and are not crash-safe; convert them with ALTER TABLE ... ENGINE=InnoDB.",
                not_innodb.len(),
                names(&not_innodb, &|t| format!("{} {}", t.name, t.engine.as_deref().unwrap_or("?")))
            ),
            at,
        )
    });
    let bloated = top(|t| t.free, &|t| t.free > cfg.reclaimable_max);
    out.checks.push(if bloated.is_empty() {
        Check::ok(
            "db_reclaimable",
            site,
            Severity::Low,
            format!(
                "{:.0} MiB reclaimable in all, no table above {:.0} MiB.",
                free as f64 / MIB,
                cfg.reclaimable_max as f64 / MIB
            ),
            at,
        )
    } else {
        Check::failed(
            "db_reclaimable",
            site,
            Severity::Low,
            "reclaimable",
            format!(
                "Tables hold unused space that OPTIMIZE TABLE would give back: {}.",
                names(&bloated, &|t| format!("{} {:.0} MiB", t.name, t.free as f64 / MIB))
            ),
            at,
        )
    });
    let big_logs: Vec<&Table> = logs.iter().copied().filter(|t| t.size > cfg.log_table_max).collect();
    out.checks.push(if big_logs.is_empty() {
        Check::ok(
            "db_log_tables",
            site,
            Severity::Low,
            format!("No log table above {:.0} MiB.", cfg.log_table_max as f64 / MIB),
            at,
        )
    } else {
        Check::failed(
            "db_log_tables",
            site,
            Severity::Low,
            "log_table_large",
            format!(
                "Log tables have grown large: {}. Shorten their retention in the module settings (the event log keeps 7 days by default) and clean them.",
                names(&big_logs, &|t| format!("{} {:.0} MiB", t.name, t.size as f64 / MIB))
            ),
            at,
        )
    });
}

/// The database upkeep checker.
#[derive(Debug)]
pub struct DatabaseChecker {
    cfg: DatabaseConfig,
    mysql: MysqlConfig,
    sites: Vec<Site>,
}

impl DatabaseChecker {
    /// A checker for the discovered sites.
    pub fn new(cfg: DatabaseConfig, mysql: MysqlConfig, sites: Vec<Site>) -> Self {
        DatabaseChecker { cfg, mysql, sites }
    }

    async fn read(&self, site: &Site, want_version: bool) -> Result<(Vec<Table>, Option<String>), DbError> {
        let limit = self.cfg.timeout;
        let (mut conn, _) = mysql::connect(&mysql::site_target(site, &self.mysql)?, limit).await?;
        let result = async {
            let rows = mysql::query(
                &mut conn,
                "SELECT TABLE_NAME, ENGINE, COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0), COALESCE(DATA_FREE, 0) \
                 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'",
                limit,
            )
            .await?;
            let tables = rows
                .iter()
                .filter_map(|row| {
                    Some(Table {
                        name: mysql::text(row, 0)?,
                        engine: mysql::text(row, 1),
                        size: mysql::number(row, 2).unwrap_or(0.0) as u64,
                        free: mysql::number(row, 3).unwrap_or(0.0) as u64,
                    })
                })
                .collect();
            let server = if want_version {
                mysql::query(&mut conn, "SELECT VERSION()", limit).await?.first().and_then(|r| mysql::text(r, 0))
            } else {
                None
            };
            Ok::<_, DbError>((tables, server))
        }
        .await;
        mysql::close(conn, limit).await;
        result
    }
}

#[async_trait::async_trait]
impl Checker for DatabaseChecker {
    fn name(&self) -> &'static str {
        "database"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    async fn run(&mut self, at: UnixMs, out: &mut Findings) {
        let mut server: Option<String> = None;
        for site in &self.sites {
            match self.read(site, server.is_none()).await {
                Ok((tables, version)) => {
                    judge(&self.cfg, &site.name, &tables, at, out);
                    server = server.or(version);
                }
                Err(err) => {
                    // The Bitrix checker reports the site's database as down (bitrix_db); here
                    // the upkeep checks just cannot run.
                    let message = format!("The database could not be read: {}.", err.message);
                    for check in ["db_engine", "db_reclaimable", "db_log_tables"] {
                        out.checks.push(Check::error(
                            check,
                            &site.name,
                            Severity::Low,
                            err.reason,
                            message.clone(),
                            at,
                        ));
                    }
                }
            }
        }
        if let Some(text) = server {
            let check = version::judge_mysql(&text, at);
            let supported = version::supported_label(&check);
            out.observe(MYSQL_VERSION_INFO, vec![("version", text.clone()), ("supported", supported)], 1.0, at);
            out.checks.push(check);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    fn table(name: &str, engine: &str, size_mib: u64, free_mib: u64) -> Table {
        Table { name: name.into(), engine: Some(engine.into()), size: size_mib << 20, free: free_mib << 20 }
    }

    fn cfg() -> DatabaseConfig {
        let mut problems = Problems::new(std::path::Path::new("agent.toml"));
        let cfg = RawDatabase { top_tables: 3, ..RawDatabase::default() }.validate(&mut problems);
        problems.finish(cfg).expect("valid")
    }

    #[test]
    fn each_upkeep_problem_is_found_and_labels_stay_bounded() {
        let mut tables: Vec<Table> = (0..40).map(|i| table(&format!("b_crm_{i}"), "InnoDB", 10 + i, 0)).collect();
        tables.push(table("b_event_log", "InnoDB", 3000, 0));
        tables.push(table("b_stat_hit", "InnoDB", 20, 0));
        tables.push(table("b_search_content", "MyISAM", 200, 0));
        tables.push(table("b_iblock_element", "InnoDB", 900, 2048));
        tables.push(Table { name: "b_broken".into(), engine: None, size: 0, free: 0 });
        let mut out = Findings::default();
        judge(&cfg(), "default", &tables, UnixMs(0), &mut out);
        let result = |check: &str| {
            let c = out.checks.iter().find(|c| c.check == check).expect("check present");
            (c.status, c.reason, c.severity)
        };
        assert_eq!(result("db_engine"), (Status::Failed, "not_innodb", Severity::Low));
        assert_eq!(result("db_reclaimable"), (Status::Failed, "reclaimable", Severity::Low));
        assert_eq!(result("db_log_tables"), (Status::Failed, "log_table_large", Severity::Low));
        let tables_of = |name: &str| -> Vec<String> {
            out.observations.iter().filter(|o| o.name == name).map(|o| o.labels[1].1.clone()).collect()
        };
        assert_eq!(tables_of(DB_TABLE_SIZE_BYTES), ["b_event_log", "b_iblock_element", "b_search_content"]);
        assert_eq!(tables_of(DB_LOG_TABLE_SIZE_BYTES), ["b_event_log", "b_stat_hit"]);
        assert_eq!(tables_of(DB_TABLE_RECLAIMABLE_BYTES), ["b_iblock_element"]);
        let size = out.observations.iter().find(|o| o.name == DB_SIZE_BYTES).expect("size").value;
        assert_eq!(size, ((10..50).sum::<u64>() + 3000 + 20 + 200 + 900) as f64 * MIB);
        let message = &out.checks.iter().find(|c| c.check == "db_engine").expect("engine").message;
        assert!(message.starts_with("1 tables do not use InnoDB (b_search_content MyISAM)"), "{message}");

        let healthy = [table("b_user", "InnoDB", 5, 1), table("b_event_log", "InnoDB", 10, 0)];
        let mut out = Findings::default();
        judge(&cfg(), "default", &healthy, UnixMs(0), &mut out);
        assert!(out.checks.iter().all(|c| c.status == Status::Ok), "{:?}", out.checks);
    }

    #[test]
    fn log_table_patterns_match_names_and_prefixes() {
        let patterns = RawDatabase::default().log_tables;
        for (name, want) in [
            ("b_event_log", true),
            ("b_event_log_x", false),
            ("b_perf_hit", true),
            ("b_stat_guest", true),
            ("b_search_content", false),
            ("b_user", false),
        ] {
            assert_eq!(is_log_table(&patterns, name), want, "{name}");
        }
    }
}
