//! Bitrix health per site, read from its database (queries and their meaning: BITRIX.md §1.3).
//!
//! - `bitrix_cron` (high): agents overdue past a grace period, or no agent run for a day: cron
//!   (`cron_events.php`) has stopped.
//! - `bitrix_agents_stuck` (medium): active agents picked up (`RUNNING='Y'`) whose lease
//!   (`DATE_CHECK`) has expired: the run crashed.
//! - `bitrix_agents_disabled` (medium): agents Bitrix switched off after 3 failed retries.
//! - `bitrix_agents_failing` (low): active agents retrying after a failure.
//! - `bitrix_mail_queue` (medium): mail waiting too long or too much of it, or sends failing.
//! - `bitrix_site_checker` (low): the last daily site check failed.
//!
//! Sites are checked one after another on one connection at a time.

use std::time::Duration;

use b24watch_common::config::Problems;
use b24watch_proto::catalog::{
    BITRIX_AGENTS_DISABLED, BITRIX_AGENTS_FAILING, BITRIX_AGENTS_OVERDUE, BITRIX_AGENTS_STUCK,
    BITRIX_CRON_LAST_RUN_TIMESTAMP_SECONDS, BITRIX_MAIL_FAILED_LAST_HOUR, BITRIX_MAIL_QUEUE_OLDEST_AGE_SECONDS,
    BITRIX_MAIL_QUEUE_PENDING, BITRIX_SITE_CHECKER_LAST_RUN_TIMESTAMP_SECONDS, BITRIX_SITE_CHECKER_OK, BITRIX_UP,
};
use serde::{Deserialize, Serialize};

use super::discover::{Endpoint, Site};
use super::mysql::{self, DbError, MysqlConfig, Target};
use super::{Check, Checker, Findings};
use crate::observation::{Severity, UnixMs};

/// The Bitrix checker.
#[derive(Debug)]
pub struct BitrixChecker {
    cfg: BitrixConfig,
    mysql: MysqlConfig,
    sites: Vec<Site>,
}

/// What the database says about one site.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SiteState {
    /// Database clock (unix seconds).
    pub db_now: f64,
    /// Newest `LAST_EXEC` of any agent.
    pub last_run: Option<f64>,
    /// Active agents overdue past the grace period.
    pub overdue: u64,
    /// Oldest `NEXT_EXEC` among them.
    pub oldest_overdue: Option<f64>,
    /// Active agents running with an expired lease (`None`: the core has no `RUNNING` column).
    pub stuck: Option<u64>,
    /// Agents auto-disabled after failures.
    pub disabled: u64,
    /// Active agents retrying.
    pub failing: u64,
    /// Mail events not sent yet.
    pub mail_pending: u64,
    /// `DATE_INSERT` of the oldest of them.
    pub mail_oldest: Option<f64>,
    /// Mail events failed in the last hour.
    pub mail_failed: u64,
    /// `site_checker_success` option (`None`: the checker never ran).
    pub site_checker_ok: Option<bool>,
    /// When the daily site check last wrote its result to the audit log (`b_event_log`).
    pub site_checker_last_run: Option<f64>,
}

impl BitrixChecker {
    /// A checker for the discovered sites.
    pub fn new(cfg: BitrixConfig, mysql: MysqlConfig, sites: Vec<Site>) -> Self {
        BitrixChecker { cfg, mysql, sites }
    }

    fn target(&self, site: &Site) -> Result<Target, DbError> {
        let Some(db) = &site.db else {
            let why = if site.problems.is_empty() {
                "no database connection in its settings".into()
            } else {
                site.problems.join("; ")
            };
            return Err(DbError { reason: "no_credentials", message: why });
        };
        let mut target = Target::from_site(db);
        if let Some((user, password)) = mysql::configured_login(&self.mysql)? {
            target = Target::with_login(target, user, password);
        }
        if target.endpoint == Endpoint::LocalDefault {
            target.endpoint = mysql::local_endpoint(&self.mysql)?;
        }
        Ok(target)
    }

    async fn read(&self, site: &Site) -> Result<SiteState, DbError> {
        let limit = self.cfg.timeout;
        let target = self.target(site)?;
        let (mut conn, _) = mysql::connect(&target, limit).await?;
        let result = read_state(&mut conn, self.cfg.agents_overdue_grace, limit).await;
        mysql::close(conn, limit).await;
        result
    }
}

/// Reads a site's state from its database (the connection has the site's database selected).
///
/// # Errors
/// The first query that failed.
pub async fn read_state(conn: &mut mysql_async::Conn, grace: Duration, limit: Duration) -> Result<SiteState, DbError> {
    let grace = grace.as_secs();
    let rows = mysql::query(
        conn,
        &format!(
            "SELECT UNIX_TIMESTAMP(NOW()), \
               (SELECT UNIX_TIMESTAMP(MAX(LAST_EXEC)) FROM b_agent), \
               (SELECT COUNT(*) FROM b_agent WHERE ACTIVE = 'Y' AND NEXT_EXEC < NOW() - INTERVAL {grace} SECOND), \
               (SELECT UNIX_TIMESTAMP(MIN(NEXT_EXEC)) FROM b_agent \
                  WHERE ACTIVE = 'Y' AND NEXT_EXEC < NOW() - INTERVAL {grace} SECOND), \
               (SELECT COUNT(*) FROM b_agent WHERE ACTIVE = 'N' AND RETRY_COUNT >= 3), \
               (SELECT COUNT(*) FROM b_agent WHERE ACTIVE = 'Y' AND RETRY_COUNT > 0)"
        ),
        limit,
    )
    .await?;
    let row = rows.first().ok_or_else(|| DbError { reason: "error", message: "empty result".into() })?;
    let count = |idx| mysql::number(row, idx).unwrap_or(0.0) as u64;
    let mut state = SiteState {
        db_now: mysql::number(row, 0).unwrap_or(0.0),
        last_run: mysql::number(row, 1),
        overdue: count(2),
        oldest_overdue: mysql::number(row, 3),
        disabled: count(4),
        failing: count(5),
        ..SiteState::default()
    };
    // Older cores have no RUNNING column: "stuck" is then unknown, not zero.
    state.stuck = match mysql::query(
        conn,
        "SELECT COUNT(*) FROM b_agent WHERE ACTIVE = 'Y' AND RUNNING = 'Y' AND DATE_CHECK < NOW()",
        limit,
    )
    .await
    {
        Ok(rows) => rows.first().and_then(|r| mysql::number(r, 0)).map(|v| v as u64),
        Err(err) if err.reason == "error" => None,
        Err(err) => return Err(err),
    };
    let mail = mysql::query(
        conn,
        "SELECT COUNT(*), UNIX_TIMESTAMP(MIN(DATE_INSERT)), \
           (SELECT COUNT(*) FROM b_event WHERE SUCCESS_EXEC IN ('F', 'E', '0') \
              AND DATE_EXEC > NOW() - INTERVAL 1 HOUR) \
         FROM b_event WHERE SUCCESS_EXEC = 'N'",
        limit,
    )
    .await?;
    if let Some(row) = mail.first() {
        state.mail_pending = mysql::number(row, 0).unwrap_or(0.0) as u64;
        state.mail_oldest = mysql::number(row, 1);
        state.mail_failed = mysql::number(row, 2).unwrap_or(0.0) as u64;
    }
    let checker = mysql::query(
        conn,
        "SELECT VALUE FROM b_option WHERE MODULE_ID = 'main' AND NAME = 'site_checker_success' LIMIT 1",
        limit,
    )
    .await?;
    state.site_checker_ok = checker.first().and_then(|r| mysql::text(r, 0)).map(|v| v.trim() == "Y");
    // The audit log tells when the check last ran (the option only keeps its outcome). Cores
    // without b_event_log, or a log that was cleaned, just leave it unknown.
    state.site_checker_last_run = match mysql::query(
        conn,
        "SELECT UNIX_TIMESTAMP(TIMESTAMP_X) FROM b_event_log \
         WHERE AUDIT_TYPE_ID IN ('SITE_CHECKER_SUCCESS', 'SITE_CHECKER_ERROR') ORDER BY ID DESC LIMIT 1",
        limit,
    )
    .await
    {
        Ok(rows) => rows.first().and_then(|r| mysql::number(r, 0)),
        Err(err) if err.reason == "error" => None,
        Err(err) => return Err(err),
    };
    Ok(state)
}

/// Turns a site's state into check results and observations. Pure.
pub fn judge(cfg: &BitrixConfig, site: &str, state: &SiteState, at: UnixMs, out: &mut Findings) {
    let label = || vec![("site", site.to_owned())];
    out.observe(BITRIX_UP, label(), 1.0, at);
    if let Some(last) = state.last_run {
        out.observe(BITRIX_CRON_LAST_RUN_TIMESTAMP_SECONDS, label(), last, at);
    }
    out.observe(BITRIX_AGENTS_OVERDUE, label(), state.overdue as f64, at);
    if let Some(stuck) = state.stuck {
        out.observe(BITRIX_AGENTS_STUCK, label(), stuck as f64, at);
    }
    out.observe(BITRIX_AGENTS_DISABLED, label(), state.disabled as f64, at);
    out.observe(BITRIX_AGENTS_FAILING, label(), state.failing as f64, at);
    out.observe(BITRIX_MAIL_QUEUE_PENDING, label(), state.mail_pending as f64, at);
    let mail_age = state.mail_oldest.map_or(0.0, |oldest| (state.db_now - oldest).max(0.0));
    out.observe(BITRIX_MAIL_QUEUE_OLDEST_AGE_SECONDS, label(), mail_age, at);
    out.observe(BITRIX_MAIL_FAILED_LAST_HOUR, label(), state.mail_failed as f64, at);
    if let Some(ok) = state.site_checker_ok {
        out.observe(BITRIX_SITE_CHECKER_OK, label(), f64::from(u8::from(ok)), at);
    }
    if let Some(last) = state.site_checker_last_run {
        out.observe(BITRIX_SITE_CHECKER_LAST_RUN_TIMESTAMP_SECONDS, label(), last, at);
    }

    let minutes = |secs: f64| (secs / 60.0).round() as i64;
    let day = 86_400.0;
    out.checks.push(match (state.overdue, state.last_run) {
        (0, Some(last)) if state.db_now - last > day => Check::failed(
            "bitrix_cron",
            site,
            Severity::High,
            "cron_stopped",
            format!("no agent has run for {} min: cron_events.php is not running", minutes(state.db_now - last)),
            at,
        ),
        (0, _) => Check::ok("bitrix_cron", site, Severity::High, "no overdue agents".into(), at),
        (n, _) => Check::failed(
            "bitrix_cron",
            site,
            Severity::High,
            "overdue",
            format!(
                "{n} active agents overdue, the oldest by {} min: cron_events.php is not running or agents are too slow",
                minutes(state.oldest_overdue.map_or(0.0, |o| state.db_now - o))
            ),
            at,
        ),
    });
    if let Some(stuck) = state.stuck {
        out.checks.push(if stuck > 0 {
            Check::failed(
                "bitrix_agents_stuck",
                site,
                Severity::Medium,
                "stuck",
                format!("{stuck} agents marked running with an expired lease: their run crashed"),
                at,
            )
        } else {
            Check::ok("bitrix_agents_stuck", site, Severity::Medium, "no stuck agents".into(), at)
        });
    }
    out.checks.push(if state.disabled > 0 {
        Check::failed(
            "bitrix_agents_disabled",
            site,
            Severity::Medium,
            "auto_disabled",
            format!("{} agents switched off by Bitrix after 3 failed runs", state.disabled),
            at,
        )
    } else {
        Check::ok("bitrix_agents_disabled", site, Severity::Medium, "no auto-disabled agents".into(), at)
    });
    out.checks.push(if state.failing > 0 {
        Check::failed(
            "bitrix_agents_failing",
            site,
            Severity::Low,
            "retrying",
            format!("{} active agents retrying after a failure (switched off at 3)", state.failing),
            at,
        )
    } else {
        Check::ok("bitrix_agents_failing", site, Severity::Low, "no failing agents".into(), at)
    });
    let max_age = cfg.mail_oldest_max.as_secs_f64();
    out.checks.push(if state.mail_pending > cfg.mail_pending_max || mail_age > max_age {
        Check::failed(
            "bitrix_mail_queue",
            site,
            Severity::Medium,
            "backlog",
            format!("{} messages waiting, the oldest for {} min", state.mail_pending, minutes(mail_age)),
            at,
        )
    } else if state.mail_failed > 0 {
        Check::failed(
            "bitrix_mail_queue",
            site,
            Severity::Medium,
            "send_failures",
            format!("{} messages failed to send in the last hour", state.mail_failed),
            at,
        )
    } else {
        Check::ok("bitrix_mail_queue", site, Severity::Medium, format!("{} messages waiting", state.mail_pending), at)
    });
    match state.site_checker_ok {
        Some(false) => out.checks.push(Check::failed(
            "bitrix_site_checker",
            site,
            Severity::Low,
            "site_checker_failed",
            "the last system check (site_checker) failed: see /bitrix/admin/site_checker.php".into(),
            at,
        )),
        Some(true) => {
            out.checks.push(Check::ok(
                "bitrix_site_checker",
                site,
                Severity::Low,
                "last system check passed".into(),
                at,
            ));
        }
        None => {}
    }
}

#[async_trait::async_trait]
impl Checker for BitrixChecker {
    fn name(&self) -> &'static str {
        "bitrix"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    async fn run(&mut self, at: UnixMs, out: &mut Findings) {
        for site in &self.sites {
            match self.read(site).await {
                Ok(state) => judge(&self.cfg, &site.name, &state, at, out),
                Err(err) => {
                    out.observe(BITRIX_UP, vec![("site", site.name.clone())], 0.0, at);
                    let check = if err.reason == "no_credentials" { Check::error } else { Check::failed };
                    out.checks.push(check("bitrix_db", &site.name, Severity::High, err.reason, err.message, at));
                }
            }
        }
    }
}

/// `[bitrix]` section as written.
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
            site_roots: ["/home/bitrix/www", "/home/bitrix/ext_www/*", "/var/www/html", "/var/www/*/data/www/*"]
                .map(String::from)
                .to_vec(),
            interval_secs: 60,
            timeout_secs: 10,
            agents_overdue_grace_secs: 600,
            mail_pending_max: 100,
            mail_oldest_max_secs: 1800,
            clock_skew_max_secs: 1,
        }
    }
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

impl RawBitrix {
    /// The validated form; problems go to `problems`.
    pub fn validate(&self, problems: &mut Problems) -> BitrixConfig {
        if self.site_roots.iter().any(|p| !p.starts_with('/')) {
            problems.bad("bitrix.site_roots", format!("{:?}: expected absolute paths", self.site_roots));
        }
        BitrixConfig {
            enabled: self.enabled,
            site_roots: self.site_roots.clone(),
            interval: problems.secs("bitrix.interval_secs", self.interval_secs, 10, 3600),
            timeout: problems.secs("bitrix.timeout_secs", self.timeout_secs, 1, 60),
            agents_overdue_grace: Duration::from_secs(self.agents_overdue_grace_secs),
            mail_pending_max: self.mail_pending_max,
            mail_oldest_max: Duration::from_secs(self.mail_oldest_max_secs),
            clock_skew_max: Duration::from_secs(self.clock_skew_max_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BitrixConfig {
        BitrixConfig {
            enabled: true,
            site_roots: Vec::new(),
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            agents_overdue_grace: Duration::from_secs(600),
            mail_pending_max: 100,
            mail_oldest_max: Duration::from_secs(1800),
            clock_skew_max: Duration::from_secs(1),
        }
    }

    fn failed(out: &Findings) -> Vec<(&'static str, &'static str, Severity)> {
        out.checks
            .iter()
            .filter(|c| c.status != super::super::Status::Ok)
            .map(|c| (c.check, c.reason, c.severity))
            .collect()
    }

    #[test]
    fn healthy_site_passes_every_check() {
        let state = SiteState {
            db_now: 1_000_000.0,
            last_run: Some(999_990.0),
            stuck: Some(0),
            site_checker_ok: Some(true),
            ..SiteState::default()
        };
        let mut out = Findings::default();
        judge(&cfg(), "default", &state, UnixMs(0), &mut out);
        assert!(failed(&out).is_empty(), "{:?}", out.checks);
        assert_eq!(out.checks.len(), 6);
    }

    #[test]
    fn each_problem_gets_its_severity() {
        let state = SiteState {
            db_now: 1_000_000.0,
            last_run: Some(990_000.0),
            overdue: 4,
            oldest_overdue: Some(996_400.0),
            stuck: Some(1),
            disabled: 2,
            failing: 1,
            mail_pending: 3,
            mail_oldest: Some(990_000.0),
            mail_failed: 0,
            site_checker_ok: Some(false),
            site_checker_last_run: None,
        };
        let mut out = Findings::default();
        judge(&cfg(), "default", &state, UnixMs(0), &mut out);
        assert_eq!(
            failed(&out),
            [
                ("bitrix_cron", "overdue", Severity::High),
                ("bitrix_agents_stuck", "stuck", Severity::Medium),
                ("bitrix_agents_disabled", "auto_disabled", Severity::Medium),
                ("bitrix_agents_failing", "retrying", Severity::Low),
                ("bitrix_mail_queue", "backlog", Severity::Medium),
                ("bitrix_site_checker", "site_checker_failed", Severity::Low),
            ]
        );
        assert!(out.checks[0].message.contains("oldest by 60 min"), "{}", out.checks[0].message);
    }

    #[test]
    fn cron_silent_for_a_day_is_stopped_even_without_overdue_agents() {
        let state = SiteState { db_now: 1_000_000.0, last_run: Some(900_000.0), ..SiteState::default() };
        let mut out = Findings::default();
        judge(&cfg(), "s1", &state, UnixMs(0), &mut out);
        assert_eq!(failed(&out)[0], ("bitrix_cron", "cron_stopped", Severity::High));
    }
}
