//! Checks of the services a Bitrix24 portal needs: MySQL, Bitrix (cron agents, mail queue, site
//! checker, config drift), the portal over HTTP(S), and whether the daemons run.
//!
//! Unlike host samplers, checks talk to things that can hang (a stalled MySQL, a portal that never
//! answers). Each checker therefore runs in its own task on its own interval and under its own
//! timeout, and leaves what it found in an [`Inbox`] that the scheduler empties into the next batch:
//! a stuck check never delays host sampling. A target that is down is a result (status `failed`
//! with a reason), never an error that stops anything.
//!
//! Adding a check: a file here with `impl Checker` and its config section (`Raw…` with the
//! defaults, the validated form, `validate` into `b24watch_common::config::Problems`), its field in
//! [`ChecksConfig`] and `config::RawConfig`, and one line in [`build_checkers`].

pub mod backup;
pub mod bitrix;
pub mod database;
pub mod discover;
pub mod mysql;
pub mod php;
pub mod probe;
pub mod push;
pub mod services;
pub mod version;
pub mod workers;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::observation::{Observation, Severity, UnixMs};
use crate::telemetry::Telemetry;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Healthy.
    Ok,
    /// The check ran and found a problem.
    Failed,
    /// The check could not run (no credentials, query refused): the state is unknown.
    Error,
}

/// One check result, as sent to the collector.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Check name, e.g. `bitrix_cron`.
    pub check: &'static str,
    /// What was checked: a site, a URL, a service, `mysql`.
    pub target: String,
    /// Outcome.
    pub status: Status,
    /// How bad a failure is, in the SLA vocabulary.
    pub severity: Severity,
    /// Short machine-readable reason (`down`, `auth_failed`, `timeout`, `overdue`, ...); empty when ok.
    pub reason: &'static str,
    /// One human sentence. Never holds a secret.
    pub message: String,
    /// When it was taken.
    pub at: UnixMs,
}

impl Check {
    /// A passing check.
    pub fn ok(check: &'static str, target: &str, severity: Severity, message: String, at: UnixMs) -> Self {
        Check { check, target: target.to_owned(), status: Status::Ok, severity, reason: "", message, at }
    }

    /// A failed check.
    pub fn failed(
        check: &'static str,
        target: &str,
        severity: Severity,
        reason: &'static str,
        message: String,
        at: UnixMs,
    ) -> Self {
        Check { check, target: target.to_owned(), status: Status::Failed, severity, reason, message, at }
    }

    /// A check that could not run.
    pub fn error(
        check: &'static str,
        target: &str,
        severity: Severity,
        reason: &'static str,
        message: String,
        at: UnixMs,
    ) -> Self {
        Check { check, target: target.to_owned(), status: Status::Error, severity, reason, message, at }
    }
}

/// What one run of a checker produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Findings {
    /// Measured values.
    pub observations: Vec<Observation>,
    /// Check results.
    pub checks: Vec<Check>,
}

impl Findings {
    /// Adds an observation.
    pub fn observe(&mut self, name: &'static str, labels: Vec<(&'static str, String)>, value: f64, at: UnixMs) {
        self.observations.push(Observation::labeled(name, labels, value, at));
    }
}

/// A periodic check of something outside the agent.
#[async_trait::async_trait]
pub trait Checker: Send {
    /// Stable lowercase name (`sampler` label of `agent_sampler_errors_total`).
    fn name(&self) -> &'static str;

    /// Time between runs.
    fn interval(&self) -> Duration;

    /// Runs once. Must finish well within [`Checker::interval`]: every wait inside is bounded by
    /// the checker's own timeouts, which turn into results with reason `timeout`.
    async fn run(&mut self, at: UnixMs, out: &mut Findings);
}

/// Results waiting for the next batch. Bounded: beyond the caps new findings are dropped and
/// counted (the scheduler empties it every tick, so this only bites if the scheduler stalls).
#[derive(Debug, Default)]
pub struct Inbox {
    pending: Mutex<Findings>,
}

/// Caps of the inbox.
const MAX_PENDING_OBSERVATIONS: usize = 50_000;
const MAX_PENDING_CHECKS: usize = 5_000;

impl Inbox {
    /// Adds a run's findings; returns how many items did not fit.
    pub fn put(&self, findings: Findings) -> usize {
        let mut pending = self.pending.lock().expect("inbox lock is never poisoned");
        let room_obs = MAX_PENDING_OBSERVATIONS.saturating_sub(pending.observations.len());
        let room_checks = MAX_PENDING_CHECKS.saturating_sub(pending.checks.len());
        let dropped =
            findings.observations.len().saturating_sub(room_obs) + findings.checks.len().saturating_sub(room_checks);
        pending.observations.extend(findings.observations.into_iter().take(room_obs));
        pending.checks.extend(findings.checks.into_iter().take(room_checks));
        dropped
    }

    /// Takes everything pending.
    pub fn take(&self) -> Findings {
        std::mem::take(&mut *self.pending.lock().expect("inbox lock is never poisoned"))
    }
}

/// Runs one checker until `shutdown`: first run right away, then every interval.
pub async fn run_checker(
    mut checker: Box<dyn Checker>,
    inbox: Arc<Inbox>,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) {
    let name = checker.name();
    let mut ticker = tokio::time::interval(checker.interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let mut findings = Findings::default();
        let at = crate::observation::now();
        // A checker bounds its own waits; this outer bound only catches a bug in one.
        let bound = checker.interval().max(Duration::from_secs(1)) * 2;
        tokio::select! {
            () = shutdown.cancelled() => break,
            result = tokio::time::timeout(bound, checker.run(at, &mut findings)) => {
                if result.is_err() {
                    telemetry.sampler_error(name, "timeout");
                    warn!(checker = name, "checker overran twice its interval; its run was abandoned");
                }
            }
        }
        let bad = findings.checks.iter().filter(|c| c.status != Status::Ok).count();
        match (bad > 0, failing) {
            (true, false) => {
                for c in findings.checks.iter().filter(|c| c.status != Status::Ok) {
                    warn!(check = c.check, target = %c.target, reason = c.reason, message = %c.message, "check failing");
                }
            }
            (false, true) => info!(checker = name, "all checks pass again"),
            _ => {}
        }
        failing = bad > 0;
        let dropped = inbox.put(findings);
        if dropped > 0 {
            telemetry.sampler_error(name, "inbox_full");
            debug!(checker = name, dropped, "inbox full: findings dropped");
        }
    }
}

/// Validated settings of every check, one field per check's section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksConfig {
    /// `[mysql]`
    pub mysql: mysql::MysqlConfig,
    /// `[bitrix]`
    pub bitrix: bitrix::BitrixConfig,
    /// `[probe]`: one per target.
    pub probes: Vec<probe::ProbeConfig>,
    /// `[probe]`: targets derived from the discovered sites when none is configured.
    pub probe_derive: probe::DeriveConfig,
    /// `[services]`
    pub services: services::ServicesConfig,
    /// `[backup]`
    pub backup: backup::BackupConfig,
    /// `[database]`
    pub database: database::DatabaseConfig,
    /// `[versions]`
    pub versions: version::VersionsConfig,
    /// `[workers]`
    pub workers: workers::WorkersConfig,
    /// `[push]`
    pub push: push::PushConfig,
}

/// Builds every enabled checker. The only place that knows the list.
pub fn build_checkers(cfg: &ChecksConfig, sites: &[discover::Site]) -> Vec<Box<dyn Checker>> {
    let mut checkers: Vec<Box<dyn Checker>> = Vec::new();
    if cfg.mysql.enabled {
        if mysql::MysqlChecker::has_target(&cfg.mysql, sites) {
            checkers.push(Box::new(mysql::MysqlChecker::new(cfg.mysql.clone(), sites)));
        } else {
            info!("no MySQL socket, address, user or Bitrix site login found: MySQL checks are off");
        }
    }
    if cfg.bitrix.enabled && !sites.is_empty() {
        checkers.push(Box::new(bitrix::BitrixChecker::new(cfg.bitrix.clone(), cfg.mysql.clone(), sites.to_vec())));
    }
    // Configured targets replace the derived ones.
    let derived = if cfg.probes.is_empty() { probe::derive_targets(&cfg.probe_derive, sites) } else { Vec::new() };
    for target in cfg.probes.iter().chain(&derived) {
        checkers.push(Box::new(probe::Probe::new(target.clone())));
    }
    if cfg.services.enabled {
        checkers.push(Box::new(services::ServiceChecker::new(cfg.services.clone())));
    }
    if cfg.backup.enabled && !sites.is_empty() {
        checkers.push(Box::new(backup::BackupChecker::new(cfg.backup.clone(), sites.to_vec())));
    }
    if cfg.database.enabled && cfg.mysql.enabled && !sites.is_empty() {
        checkers.push(Box::new(database::DatabaseChecker::new(
            cfg.database.clone(),
            cfg.mysql.clone(),
            sites.to_vec(),
        )));
    }
    if cfg.versions.enabled && !sites.is_empty() {
        checkers.push(Box::new(version::VersionChecker::new(cfg.versions.clone(), sites.to_vec())));
    }
    if cfg.workers.enabled {
        checkers.push(Box::new(workers::WorkerChecker::new(cfg.workers.clone())));
    }
    if cfg.push.enabled {
        checkers.push(Box::new(push::PushChecker::new(cfg.push.clone())));
    }
    checkers
}
