//! Bitrix health per site, read from its database (queries and their meaning: BITRIX.md §1.3).
//!
//! - `bitrix_db` (high): the site's database could not be read (ok again once it can).
//! - `bitrix_cron` (high): judged by the last agent run (`MAX(LAST_EXEC)`): agents are due but
//!   none has run for the grace period, or none has run for a day: cron (`cron_events.php`) has
//!   stopped. A stuck or slow agent while others run is not a stopped cron.
//! - `bitrix_agents_overdue` (medium): active agents past `NEXT_EXEC` by more than the grace
//!   period while cron runs: slow, stuck or failing agents.
//! - `bitrix_agents_stuck` (medium): active agents picked up (`RUNNING='Y'`) whose lease
//!   (`DATE_CHECK`) has expired: the run crashed.
//! - `bitrix_agents_disabled` (medium): agents Bitrix switched off after 3 failed retries.
//! - `bitrix_agents_failing` (low): active agents retrying after a failure.
//! - `bitrix_mail_queue` (medium): mail waiting too long or too much of it.
//! - `bitrix_mail_failed` (medium): messages that failed to send within `mail_failed_window`
//!   (`SUCCESS_EXEC` `F`, `E` or `0`): Bitrix never retries them.
//! - `bitrix_site_checker` (low): the last daily site check failed, from `b_option`
//!   (`main:site_checker_success`) or, when that is unset, from its latest `b_event_log` record.
//!
//! Sites are checked one after another on one connection at a time.

use std::time::Duration;

use b24watch_common::config::Problems;
use b24watch_proto::catalog::{
    BITRIX_AGENTS_DISABLED, BITRIX_AGENTS_FAILING, BITRIX_AGENTS_OVERDUE, BITRIX_AGENTS_STUCK,
    BITRIX_CRON_LAST_RUN_TIMESTAMP_SECONDS, BITRIX_MAIL_FAILED, BITRIX_MAIL_FAILED_LAST_HOUR,
    BITRIX_MAIL_FAILED_LAST_TIMESTAMP_SECONDS, BITRIX_MAIL_QUEUE_OLDEST_AGE_SECONDS, BITRIX_MAIL_QUEUE_PENDING,
    BITRIX_SITE_CHECKER_LAST_RUN_TIMESTAMP_SECONDS, BITRIX_SITE_CHECKER_OK, BITRIX_UP,
};
use serde::{Deserialize, Serialize};

use super::discover::Site;
use super::mysql::{self, DbError, MysqlConfig};
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
    /// Failed mail events still in `b_event`, whatever their age.
    pub mail_failed_total: u64,
    /// Failed mail events within the configured window.
    pub mail_failed_recent: u64,
    /// `DATE_EXEC` of the newest failed mail event.
    pub mail_failed_last: Option<f64>,
    /// `site_checker_success` option (`None`: not set).
    pub site_checker_ok: Option<bool>,
    /// Outcome of the newest site check in the audit log (`None`: none recorded).
    pub site_checker_logged_ok: Option<bool>,
    /// When the daily site check last wrote its result to the audit log (`b_event_log`).
    pub site_checker_last_run: Option<f64>,
}

impl BitrixChecker {
    /// A checker for the discovered sites.
    pub fn new(cfg: BitrixConfig, mysql: MysqlConfig, sites: Vec<Site>) -> Self {
        BitrixChecker { cfg, mysql, sites }
    }

    async fn read(&self, site: &Site) -> Result<SiteState, DbError> {
        let limit = self.cfg.timeout;
        let target = mysql::site_target(site, &self.mysql)?;
        let (mut conn, _) = mysql::connect(&target, limit).await?;
        let result = read_state(&mut conn, &self.cfg, limit).await;
        mysql::close(conn, limit).await;
        result
    }
}

/// Reads a site's state from its database (the connection has the site's database selected).
///
/// # Errors
/// The first query that failed.
pub async fn read_state(
    conn: &mut mysql_async::Conn,
    cfg: &BitrixConfig,
    limit: Duration,
) -> Result<SiteState, DbError> {
    let grace = cfg.agents_overdue_grace.as_secs();
    let window = cfg.mail_failed_window.as_secs();
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
    let row = rows
        .first()
        .ok_or_else(|| DbError { reason: "error", message: "The database returned no agent figures.".into() })?;
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
    // Result codes (lib/mail/event.php): F error, E exception while sending, 0 no template.
    // Bitrix never sends these again; they stay until CEvent::CleanUpAgent removes them.
    let mail = mysql::query(
        conn,
        &format!(
            "SELECT COUNT(*), UNIX_TIMESTAMP(MIN(DATE_INSERT)), \
               (SELECT COUNT(*) FROM b_event WHERE SUCCESS_EXEC IN ('F', 'E', '0') \
                  AND DATE_EXEC > NOW() - INTERVAL 1 HOUR), \
               (SELECT COUNT(*) FROM b_event WHERE SUCCESS_EXEC IN ('F', 'E', '0')), \
               (SELECT COUNT(*) FROM b_event WHERE SUCCESS_EXEC IN ('F', 'E', '0') \
                  AND DATE_EXEC > NOW() - INTERVAL {window} SECOND), \
               (SELECT UNIX_TIMESTAMP(MAX(DATE_EXEC)) FROM b_event WHERE SUCCESS_EXEC IN ('F', 'E', '0')) \
             FROM b_event WHERE SUCCESS_EXEC = 'N'"
        ),
        limit,
    )
    .await?;
    if let Some(row) = mail.first() {
        let count = |idx| mysql::number(row, idx).unwrap_or(0.0) as u64;
        state.mail_pending = count(0);
        state.mail_oldest = mysql::number(row, 1);
        state.mail_failed = count(2);
        state.mail_failed_total = count(3);
        state.mail_failed_recent = count(4);
        state.mail_failed_last = mysql::number(row, 5);
    }
    let checker = mysql::query(
        conn,
        "SELECT VALUE FROM b_option WHERE MODULE_ID = 'main' AND NAME = 'site_checker_success' LIMIT 1",
        limit,
    )
    .await?;
    state.site_checker_ok = checker.first().and_then(|r| mysql::text(r, 0)).map(|v| v.trim() == "Y");
    // The audit log tells when the check last ran and how it ended (the option is not set on
    // every core, or was cleared). Cores without b_event_log, or a log that was cleaned, just
    // leave both unknown.
    if let Some(row) = match mysql::query(
        conn,
        "SELECT UNIX_TIMESTAMP(TIMESTAMP_X), AUDIT_TYPE_ID FROM b_event_log \
         WHERE AUDIT_TYPE_ID IN ('SITE_CHECKER_SUCCESS', 'SITE_CHECKER_ERROR') ORDER BY ID DESC LIMIT 1",
        limit,
    )
    .await
    {
        Ok(rows) => rows.into_iter().next(),
        Err(err) if err.reason == "error" => None,
        Err(err) => return Err(err),
    } {
        state.site_checker_last_run = mysql::number(&row, 0);
        state.site_checker_logged_ok = mysql::text(&row, 1).map(|t| t == "SITE_CHECKER_SUCCESS");
    }
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
    out.observe(BITRIX_MAIL_FAILED, label(), state.mail_failed_total as f64, at);
    if let Some(last) = state.mail_failed_last {
        out.observe(BITRIX_MAIL_FAILED_LAST_TIMESTAMP_SECONDS, label(), last, at);
    }
    // The option when set, else the newest audit log record of a site check.
    let site_checker_ok = state.site_checker_ok.or(state.site_checker_logged_ok);
    if let Some(ok) = site_checker_ok {
        out.observe(BITRIX_SITE_CHECKER_OK, label(), f64::from(u8::from(ok)), at);
    }
    if let Some(last) = state.site_checker_last_run {
        out.observe(BITRIX_SITE_CHECKER_LAST_RUN_TIMESTAMP_SECONDS, label(), last, at);
    }
    out.checks.push(Check::ok("bitrix_db", site, Severity::High, "The site's database answers.".into(), at));

    let ago = |secs: f64| duration_words(secs.max(0.0));
    let grace = cfg.agents_overdue_grace.as_secs_f64();
    let since_run = state.last_run.map(|last| state.db_now - last);
    // Cron is judged by its last run: due work with nothing run for the grace period, or
    // nothing run for a day, is a stopped cron; overdue agents while others run are not.
    let cron_stopped = match since_run {
        Some(since) => since > DAY || (state.overdue > 0 && since > grace),
        None => state.overdue > 0,
    };
    out.checks.push(if cron_stopped {
        let message = match since_run {
            Some(since) => format!(
                "No Bitrix agent has run for {}: cron_events.php is not running (check the cron entry and the PHP CLI).",
                ago(since)
            ),
            None => "Agents are due but none has ever run: cron_events.php is not running (check the cron entry and the PHP CLI).".to_owned(),
        };
        Check::failed("bitrix_cron", site, Severity::High, "cron_stopped", message, at)
    } else {
        let message = match since_run {
            Some(since) => format!("Bitrix agents last ran {} ago.", ago(since)),
            None => "No agent is due and none has run yet.".to_owned(),
        };
        Check::ok("bitrix_cron", site, Severity::High, message, at)
    });
    out.checks.push(if state.overdue > 0 {
        Check::failed(
            "bitrix_agents_overdue",
            site,
            Severity::Medium,
            "overdue",
            format!(
                "{} active {} overdue, the oldest by {}: {} slow, stuck or failing.",
                state.overdue,
                plural(state.overdue, "agent is", "agents are"),
                ago(state.oldest_overdue.map_or(0.0, |o| state.db_now - o)),
                plural(state.overdue, "it is", "they are")
            ),
            at,
        )
    } else {
        Check::ok("bitrix_agents_overdue", site, Severity::Medium, "No agent is overdue.".into(), at)
    });
    if let Some(stuck) = state.stuck {
        out.checks.push(if stuck > 0 {
            Check::failed(
                "bitrix_agents_stuck",
                site,
                Severity::Medium,
                "stuck",
                format!(
                    "{stuck} {} marked as running with an expired lease: {} run crashed.",
                    plural(stuck, "agent is", "agents are"),
                    plural(stuck, "its", "their")
                ),
                at,
            )
        } else {
            Check::ok("bitrix_agents_stuck", site, Severity::Medium, "No agent is stuck.".into(), at)
        });
    }
    out.checks.push(if state.disabled > 0 {
        Check::failed(
            "bitrix_agents_disabled",
            site,
            Severity::Medium,
            "auto_disabled",
            format!(
                "Bitrix switched off {} {} after 3 failed runs.",
                state.disabled,
                plural(state.disabled, "agent", "agents")
            ),
            at,
        )
    } else {
        Check::ok("bitrix_agents_disabled", site, Severity::Medium, "No agent was switched off by Bitrix.".into(), at)
    });
    out.checks.push(if state.failing > 0 {
        Check::failed(
            "bitrix_agents_failing",
            site,
            Severity::Low,
            "retrying",
            format!(
                "{} active {} retrying after a failure (Bitrix switches an agent off at 3).",
                state.failing,
                plural(state.failing, "agent is", "agents are")
            ),
            at,
        )
    } else {
        Check::ok("bitrix_agents_failing", site, Severity::Low, "No agent is retrying after a failure.".into(), at)
    });
    let max_age = cfg.mail_oldest_max.as_secs_f64();
    out.checks.push(if state.mail_pending > cfg.mail_pending_max || mail_age > max_age {
        Check::failed(
            "bitrix_mail_queue",
            site,
            Severity::Medium,
            "backlog",
            format!(
                "{} {} waiting to be sent, the oldest for {}.",
                state.mail_pending,
                plural(state.mail_pending, "message is", "messages are"),
                ago(mail_age)
            ),
            at,
        )
    } else {
        Check::ok(
            "bitrix_mail_queue",
            site,
            Severity::Medium,
            format!(
                "{} {} waiting to be sent.",
                state.mail_pending,
                plural(state.mail_pending, "message is", "messages are")
            ),
            at,
        )
    });
    let window = ago(cfg.mail_failed_window.as_secs_f64());
    out.checks.push(if state.mail_failed_recent > 0 {
        Check::failed(
            "bitrix_mail_failed",
            site,
            Severity::Medium,
            "send_failures",
            format!(
                "{} {} failed to send in the last {window}, the latest {} ago; Bitrix does not retry {} (see the mail log).",
                state.mail_failed_recent,
                plural(state.mail_failed_recent, "message", "messages"),
                ago(state.mail_failed_last.map_or(0.0, |last| state.db_now - last)),
                plural(state.mail_failed_recent, "it", "them")
            ),
            at,
        )
    } else {
        Check::ok("bitrix_mail_failed", site, Severity::Medium, format!("No message failed to send in the last {window}."), at)
    });
    match site_checker_ok {
        Some(false) => out.checks.push(Check::failed(
            "bitrix_site_checker",
            site,
            Severity::Low,
            "site_checker_failed",
            "The last system check (site_checker) failed: see /bitrix/admin/site_checker.php.".into(),
            at,
        )),
        Some(true) => {
            out.checks.push(Check::ok(
                "bitrix_site_checker",
                site,
                Severity::Low,
                "The last system check passed.".into(),
                at,
            ));
        }
        None => {}
    }
}

const DAY: f64 = 86_400.0;

/// `one` for 1, else `many`.
fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// A duration in words: `45 s`, `12 min`, `3 h`, `2 days`.
fn duration_words(secs: f64) -> String {
    let secs = secs.round() as u64;
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", (secs + 30) / 60),
        7200..172_800 => format!("{} h", (secs + 1800) / 3600),
        _ => format!("{} days", (secs + 43_200) / 86_400),
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
                    let message = if err.reason == "no_credentials" {
                        format!("The site's database login could not be found ({}).", err.message.trim_end_matches('.'))
                    } else {
                        err.message
                    };
                    out.checks.push(check("bitrix_db", &site.name, Severity::High, err.reason, message, at));
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
    /// How far back a failed mail fails `bitrix_mail_failed`.
    pub mail_failed_window_secs: u64,
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
            mail_failed_window_secs: 86_400,
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
    /// How far back a failed mail fails `bitrix_mail_failed`.
    pub mail_failed_window: Duration,
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
            mail_failed_window: problems.secs(
                "bitrix.mail_failed_window_secs",
                self.mail_failed_window_secs,
                3600,
                30 * 86_400,
            ),
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
            mail_failed_window: Duration::from_secs(86_400),
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
        assert_eq!(out.checks.len(), 9);
        for check in &out.checks {
            let first = check.message.chars().next().unwrap_or(' ');
            assert!(check.message.ends_with('.') && (first.is_uppercase() || first.is_ascii_digit()), "{check:?}");
        }
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
            mail_failed_total: 2,
            mail_failed_recent: 1,
            mail_failed_last: Some(995_000.0),
            site_checker_ok: Some(false),
            site_checker_logged_ok: Some(true),
            site_checker_last_run: None,
        };
        let mut out = Findings::default();
        judge(&cfg(), "default", &state, UnixMs(0), &mut out);
        assert_eq!(
            failed(&out),
            [
                ("bitrix_cron", "cron_stopped", Severity::High),
                ("bitrix_agents_overdue", "overdue", Severity::Medium),
                ("bitrix_agents_stuck", "stuck", Severity::Medium),
                ("bitrix_agents_disabled", "auto_disabled", Severity::Medium),
                ("bitrix_agents_failing", "retrying", Severity::Low),
                ("bitrix_mail_queue", "backlog", Severity::Medium),
                ("bitrix_mail_failed", "send_failures", Severity::Medium),
                ("bitrix_site_checker", "site_checker_failed", Severity::Low),
            ]
        );
        let overdue = out.checks.iter().find(|c| c.check == "bitrix_agents_overdue").expect("overdue");
        assert!(overdue.message.contains("the oldest by 60 min"), "{}", overdue.message);
    }

    #[test]
    fn cron_silent_for_a_day_is_stopped_even_without_overdue_agents() {
        let state = SiteState { db_now: 1_000_000.0, last_run: Some(900_000.0), ..SiteState::default() };
        let mut out = Findings::default();
        judge(&cfg(), "s1", &state, UnixMs(0), &mut out);
        assert_eq!(failed(&out)[0], ("bitrix_cron", "cron_stopped", Severity::High));
    }

    #[test]
    fn overdue_agents_while_cron_runs_are_not_a_stopped_cron() {
        let state = SiteState {
            db_now: 1_000_000.0,
            last_run: Some(999_995.0),
            overdue: 1,
            oldest_overdue: Some(998_200.0),
            stuck: Some(1),
            ..SiteState::default()
        };
        let mut out = Findings::default();
        judge(&cfg(), "s1", &state, UnixMs(0), &mut out);
        assert_eq!(
            failed(&out),
            [
                ("bitrix_agents_overdue", "overdue", Severity::Medium),
                ("bitrix_agents_stuck", "stuck", Severity::Medium)
            ]
        );
    }

    #[test]
    fn the_audit_log_decides_the_site_check_when_the_option_is_unset() {
        let state = SiteState { db_now: 1.0, site_checker_logged_ok: Some(false), ..SiteState::default() };
        let mut out = Findings::default();
        judge(&cfg(), "s1", &state, UnixMs(0), &mut out);
        assert_eq!(failed(&out), [("bitrix_site_checker", "site_checker_failed", Severity::Low)]);
    }
}
