//! Read-side queries on a connection of their own; they never wait for the writer (WAL).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::Error;

/// [`Reader::window_evidence`]: the spans overlapping a window, `(signal, target, span)`, and the
/// end of the newest span before it, `(signal, target, to_ms)`.
pub type WindowEvidence = (Vec<(String, String, crate::sla::Span)>, Vec<(String, String, i64)>);

/// Serialises access to the read connection. Queries are short; the HTTP API bounds them.
#[derive(Debug)]
pub struct Reader {
    conn: Mutex<Connection>,
    history_rows: AtomicU64,
    /// Samples not yet in blocks, shared with the writer; `None` outside a running collector
    /// (the pending rows are then read from the database).
    head: Option<super::series::SharedHead>,
}

/// An enrolled agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRow {
    /// Agent id (the `host` label).
    pub id: String,
    /// Enrolment time.
    pub created_ms: i64,
    /// Revocation time, if revoked.
    pub revoked_ms: Option<i64>,
    /// Last batch received.
    pub last_seen_ms: Option<i64>,
    /// Agent version of the last batch.
    pub last_version: Option<String>,
    /// Client recorded at enrolment (`enroll --client`); the config's `[[client]]` lists win.
    pub client: Option<String>,
}

/// Points of one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoints {
    /// Canonical label text.
    pub labels: String,
    /// `(unix ms, value)` in time order.
    pub points: Vec<(i64, f64)>,
}

/// Errors of one fingerprint summed over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorGroup {
    /// Log name.
    pub log: String,
    /// Fingerprint.
    pub fingerprint: String,
    /// Highest severity seen (low, medium, high, critical).
    pub severity: &'static str,
    /// Occurrences.
    pub count: i64,
    /// First seen, unix ms.
    pub first_seen_ms: i64,
    /// Last seen, unix ms.
    pub last_seen_ms: i64,
    /// One example.
    pub example: String,
    /// The file that example was read from.
    pub file: String,
}

/// Label value of a wire severity number.
pub fn severity_name(value: i32) -> &'static str {
    match value {
        4 => "critical",
        3 => "high",
        2 => "medium",
        1 => "low",
        _ => "unspecified",
    }
}

/// The latest result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRow {
    /// Check name, e.g. `bitrix_cron`.
    pub check: String,
    /// What was checked (site, URL, service, `mysql`).
    pub target: String,
    /// `ok`, `failed` or `error` (could not run).
    pub status: &'static str,
    /// Severity of a failure: low, medium, high, critical.
    pub severity: &'static str,
    /// Machine-readable reason; empty when ok.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// Since when the check has had this status and reason, unix ms.
    pub since_ms: i64,
    /// When it was last reported, unix ms.
    pub at_ms: i64,
}

/// A stored check result: `(check, target, at_ms, verdict, severity, reason)`; the verdict is
/// `Some(true)` for failed, `Some(false)` for ok, `None` for a result without one (`error`).
pub type CheckHistoryRow = (String, String, i64, Option<bool>, i32, String);

/// Evidence of one signal: `(agent, signal, target, spans)`.
pub type EvidenceGroup = (String, String, String, Vec<crate::sla::Span>);

/// Acknowledgements: `(check, target, start_ms) -> (ack_ms, by)`.
pub type Acks = std::collections::HashMap<(String, String, i64), (i64, String)>;

/// A maintenance window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaintenanceRow {
    /// Id (API windows; 0 for windows from the config file).
    pub id: i64,
    /// Host, or "" for all hosts.
    pub host: String,
    /// Start, unix ms.
    pub from_ms: i64,
    /// End, unix ms.
    pub to_ms: i64,
    /// Why.
    pub reason: String,
    /// "config" or "api".
    pub source: &'static str,
    /// Who declared it over the API or the status page ("" for the config file's windows and for
    /// windows declared before this was recorded).
    pub declared_by: String,
}

/// An incident opened by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManualIncidentRow {
    /// Id.
    pub id: i64,
    /// critical, high, medium or low.
    pub priority: String,
    /// What the problem is.
    pub title: String,
    /// Opened, unix ms.
    pub opened_ms: i64,
    /// Who opened it.
    pub opened_by: String,
    /// Resolved, unix ms.
    pub resolved_ms: Option<i64>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
}

/// Label value of a wire check status number.
pub fn status_name(value: i32) -> &'static str {
    match value {
        1 => "ok",
        2 => "failed",
        3 => "error",
        _ => "unspecified",
    }
}

/// A gap record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GapRow {
    /// Why.
    pub reason: String,
    /// First dropped timestamp.
    pub from_ms: i64,
    /// Last dropped timestamp.
    pub to_ms: i64,
    /// Batches dropped.
    pub dropped_batches: i64,
    /// Points dropped.
    pub dropped_points: i64,
}

/// Column `idx` of a row as text, borrowed from the row.
fn text<'r>(row: &'r rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<&'r str> {
    row.get_ref(idx)?.as_str().map_err(rusqlite::Error::from)
}

/// Series `name` of an agent: `(id, labels)` sorted by labels.
fn series_of(conn: &Connection, agent_id: &str, name: &str) -> Result<Vec<(i64, String)>, Error> {
    let mut stmt =
        conn.prepare_cached("SELECT id, labels FROM series WHERE agent_id = ?1 AND name = ?2 ORDER BY labels")?;
    let rows = stmt.query_map(params![agent_id, name], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Reader {
    /// A reader over its own connection, outside a running collector (samples not yet in
    /// blocks are read from their pending rows).
    pub fn new(conn: Connection) -> Self {
        Reader { conn: Mutex::new(conn), history_rows: AtomicU64::new(0), head: None }
    }

    /// A reader over a new connection to the database in `data_dir` (created and migrated if
    /// needed).
    ///
    /// # Errors
    /// When the directory or database cannot be opened or migrated.
    pub fn open(data_dir: &std::path::Path) -> Result<Self, Error> {
        Ok(Reader::new(super::open_connection(data_dir)?))
    }

    /// The writer's head, or one read from the pending rows now.
    pub(super) fn head(&self, conn: &Connection) -> Result<super::series::SharedHead, Error> {
        Ok(match &self.head {
            Some(head) => std::sync::Arc::clone(head),
            None => std::sync::Arc::new(std::sync::RwLock::new(super::series::load_head(conn)?.0)),
        })
    }

    /// A reader sharing the writer's head.
    pub fn with_head(conn: Connection, head: super::series::SharedHead) -> Self {
        Reader { conn: Mutex::new(conn), history_rows: AtomicU64::new(0), head: Some(head) }
    }

    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Holds the read connection as a slow query would (tests of code that must not wait for it).
    #[cfg(test)]
    pub(crate) fn hold(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn()
    }

    /// Stored token hash and whether it is revoked.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn credential(&self, agent_id: &str) -> Result<Option<(Vec<u8>, bool)>, Error> {
        Ok(self
            .conn()
            .prepare_cached("SELECT token_hash, revoked_ms IS NOT NULL FROM agent WHERE id = ?1")?
            .query_row([agent_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Every enrolled agent.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn agents(&self) -> Result<Vec<AgentRow>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, created_ms, revoked_ms, last_seen_ms, last_version, client FROM agent ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AgentRow {
                id: r.get(0)?,
                created_ms: r.get(1)?,
                revoked_ms: r.get(2)?,
                last_seen_ms: r.get(3)?,
                last_version: r.get(4)?,
                client: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Points of every series `name` of `agent_id` in `[from_ms, to_ms]`, at most `max_points`
    /// in all; the flag says whether the limit cut the answer.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn series_points(
        &self,
        agent_id: &str,
        name: &str,
        from_ms: i64,
        to_ms: i64,
        max_points: usize,
    ) -> Result<(Vec<SeriesPoints>, bool), Error> {
        let conn = self.conn();
        let mut out: Vec<SeriesPoints> = Vec::new();
        let mut n_points = 0;
        let head = self.head(&conn)?;
        for (series_id, labels) in series_of(&conn, agent_id, name)? {
            let mut points = super::series::series_points(&conn, &head, series_id, from_ms, to_ms)?;
            if points.is_empty() {
                continue;
            }
            let room = max_points - n_points;
            let cut = points.len() > room;
            points.truncate(room);
            n_points += points.len();
            if !points.is_empty() {
                out.push(SeriesPoints { labels, points });
            }
            if cut {
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }

    /// The error groups of an agent last seen at or after `since_ms`, most frequent first.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn error_groups(&self, agent_id: &str, since_ms: i64, limit: usize) -> Result<Vec<ErrorGroup>, Error> {
        let conn = self.conn();
        // Bare columns next to several aggregates come from one of the group's rows (SQLite):
        // the example and its file always belong together.
        let mut stmt = conn.prepare_cached(
            "SELECT log, fingerprint, MAX(severity), SUM(count), MIN(first_ms), MAX(last_ms), example, file
             FROM log_group WHERE agent_id = ?1 AND last_ms >= ?2
             GROUP BY log, fingerprint ORDER BY SUM(count) DESC, MAX(last_ms) DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![agent_id, since_ms, limit as i64], |r| {
            Ok(ErrorGroup {
                log: r.get(0)?,
                fingerprint: r.get(1)?,
                severity: severity_name(r.get(2)?),
                count: r.get(3)?,
                first_seen_ms: r.get(4)?,
                last_seen_ms: r.get(5)?,
                example: r.get(6)?,
                file: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest result of every check of an agent: problems first (by severity), then the rest.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn checks(&self, agent_id: &str) -> Result<Vec<CheckRow>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT check_name, target, status, severity, reason, message, since_ms, at_ms FROM check_state
             WHERE agent_id = ?1 ORDER BY status = 1, severity DESC, check_name, target",
        )?;
        let rows = stmt.query_map([agent_id], |r| {
            Ok(CheckRow {
                check: r.get(0)?,
                target: r.get(1)?,
                status: status_name(r.get(2)?),
                severity: severity_name(r.get(3)?),
                reason: r.get(4)?,
                message: r.get(5)?,
                since_ms: r.get(6)?,
                at_ms: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Uptime evidence of an agent overlapping `[from, to)`: `(signal, target, span)` sorted by
    /// signal, target and start.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn evidence(
        &self,
        agent_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, String, crate::sla::Span)>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT signal, target, up, from_ms, to_ms FROM evidence
             WHERE agent_id = ?1 AND to_ms > ?2 AND from_ms < ?3 ORDER BY signal, target, from_ms",
        )?;
        let rows = stmt.query_map(params![agent_id, from, to], |r| {
            let up: bool = r.get(2)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                crate::sla::Span { from: r.get(3)?, to: r.get(4)?, state: crate::sla::State::of_up(up) },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Uptime evidence of every agent overlapping `[from, to)`, grouped by (agent, signal,
    /// target) with spans sorted by start. One scan for a whole fleet; names are allocated once
    /// per group, not per row.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn evidence_all(&self, from: i64, to: i64) -> Result<Vec<EvidenceGroup>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT agent_id, signal, target, up, from_ms, to_ms FROM evidence
             WHERE to_ms > ?1 AND from_ms < ?2 ORDER BY agent_id, signal, target, from_ms",
        )?;
        let mut rows = stmt.query(params![from, to])?;
        let mut out: Vec<EvidenceGroup> = Vec::new();
        while let Some(r) = rows.next()? {
            let text = |idx: usize| r.get_ref(idx).map(|v| v.as_str().unwrap_or_default());
            let (agent, signal, target) = (text(0)?, text(1)?, text(2)?);
            let same = out.last().is_some_and(|g| g.0 == agent && g.1 == signal && g.2 == target);
            if !same {
                out.push((agent.to_owned(), signal.to_owned(), target.to_owned(), Vec::new()));
            }
            let up: bool = r.get(3)?;
            let span = crate::sla::Span { from: r.get(4)?, to: r.get(5)?, state: crate::sla::State::of_up(up) };
            out.last_mut().expect("pushed above").3.push(span);
        }
        Ok(out)
    }

    /// End of the last evidence interval of one signal that starts before `before`, if any
    /// (an index seek).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn last_end_before(
        &self,
        agent_id: &str,
        signal: &str,
        target: &str,
        before: i64,
    ) -> Result<Option<i64>, Error> {
        let conn = self.conn();
        Ok(conn
            .prepare_cached(
                "SELECT to_ms FROM evidence WHERE agent_id = ?1 AND signal = ?2 AND target = ?3 AND from_ms < ?4
                 ORDER BY from_ms DESC LIMIT 1",
            )?
            .query_row(params![agent_id, signal, target, before], |r| r.get(0))
            .optional()?)
    }

    /// A host's evidence for its uptime from `from` to `to`, in one scan of its part of the
    /// index: the spans overlapping `[from, to)`, by signal, target and start, and for each
    /// signal and target the end of the newest span that ended at or before `from` (where a
    /// silence at the window's start began): `(signal, target, to_ms)`. One query instead of
    /// [`Reader::evidence`] and a second one for the ends (`make bench-sla`).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn window_evidence(&self, agent_id: &str, from: i64, to: i64) -> Result<WindowEvidence, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT signal, target, up, from_ms, to_ms FROM evidence
             WHERE agent_id = ?1 AND from_ms < ?2 ORDER BY signal, target, from_ms",
        )?;
        let (mut spans, mut ends): WindowEvidence = (Vec::new(), Vec::new());
        let mut rows = stmt.query(params![agent_id, to])?;
        while let Some(row) = rows.next()? {
            let end: i64 = row.get(4)?;
            if end > from {
                let state = crate::sla::State::of_up(row.get(2)?);
                spans.push((row.get(0)?, row.get(1)?, crate::sla::Span { from: row.get(3)?, to: end, state }));
                continue;
            }
            // Spans before the window (most of a long history): names allocated once per signal.
            let (signal, target) = (text(row, 0)?, text(row, 1)?);
            match ends.last_mut() {
                Some(last) if last.0 == signal && last.1 == target => last.2 = last.2.max(end),
                _ => ends.push((signal.to_owned(), target.to_owned(), end)),
            }
        }
        Ok((spans, ends))
    }

    /// Intervals when the collector was not running at `now`, from its run records, sorted:
    /// everything before its first run; between runs, from a run's clean stop (or, after a
    /// crash, its last heartbeat) to the next start; and after the last run when it is not
    /// running now (stopped cleanly, or no heartbeat for `stale_ms`): to `i64::MAX`. No run
    /// at all: all time.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn collector_down(&self, now: i64, stale_ms: i64) -> Result<Vec<(i64, i64)>, Error> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT started_ms, alive_ms, stopped_ms FROM collector_run ORDER BY started_ms")?;
        let runs: Vec<(i64, i64, Option<i64>)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        Ok(crate::sla::collector_down(&runs, now, stale_ms))
    }

    /// Maintenance windows stored through the API overlapping `[from, to)`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn maintenance(&self, from: i64, to: i64) -> Result<Vec<MaintenanceRow>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, host, from_ms, to_ms, reason, declared_by FROM maintenance WHERE to_ms > ?1 AND from_ms < ?2 ORDER BY from_ms",
        )?;
        let rows = stmt.query_map(params![from, to], |r| {
            Ok(MaintenanceRow {
                id: r.get(0)?,
                host: r.get(1)?,
                from_ms: r.get(2)?,
                to_ms: r.get(3)?,
                reason: r.get(4)?,
                source: "api",
                declared_by: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Check results stored as history (transitions) of an agent in `[from, to)`, by check,
    /// target and time: `(check, target, at, verdict, severity, reason)` with verdict `Some(true)`
    /// failed, `Some(false)` ok, `None` error (an error neither starts nor ends an incident).
    /// A failing run in progress at `from` comes first as one row (its first failure, with the
    /// run's highest severity), and a run still failing at `to` is followed by the ok result that
    /// ended it, if any, so incidents keep their true start and end. Reads only the window and
    /// those two edges, never the whole history.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn check_history(&self, agent_id: &str, from: i64, to: i64) -> Result<Vec<CheckHistoryRow>, Error> {
        let conn = self.conn();
        let checks: Vec<(String, String)> = conn
            .prepare_cached(
                "SELECT check_name, target FROM check_state WHERE agent_id = ?1 ORDER BY check_name, target",
            )?
            .query_map([agent_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let verdict_of = |status: i32| match status {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        };
        let mut out: Vec<CheckHistoryRow> = Vec::new();
        for (check, target) in checks {
            let key = params![agent_id, check, target, from];
            // The last verdict before the window (error results carry none).
            let last: Option<i32> = conn
                .prepare_cached(
                    "SELECT status FROM check_result
                     WHERE agent_id = ?1 AND check_name = ?2 AND target = ?3 AND at_ms < ?4 AND status IN (1, 2)
                     ORDER BY at_ms DESC, id DESC LIMIT 1",
                )?
                .query_row(key, |r| r.get(0))
                .optional()?;
            let mut failing = false;
            if last == Some(2) {
                // The run started at the first failure after the last ok result.
                let ok: (i64, i64) = conn
                    .prepare_cached(
                        "SELECT at_ms, id FROM check_result
                         WHERE agent_id = ?1 AND check_name = ?2 AND target = ?3 AND at_ms < ?4 AND status = 1
                         ORDER BY at_ms DESC, id DESC LIMIT 1",
                    )?
                    .query_row(key, |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
                    .unwrap_or((i64::MIN, i64::MIN));
                let run = params![agent_id, check, target, from, ok.0, ok.1];
                let (at, reason): (i64, String) = conn
                    .prepare_cached(
                        "SELECT at_ms, reason FROM check_result
                         WHERE agent_id = ?1 AND check_name = ?2 AND target = ?3 AND at_ms < ?4 AND (at_ms, id) > (?5, ?6)
                           AND status = 2
                         ORDER BY at_ms, id LIMIT 1",
                    )?
                    .query_row(run, |r| Ok((r.get(0)?, r.get(1)?)))?;
                let severity: i32 = conn
                    .prepare_cached(
                        "SELECT MAX(severity) FROM check_result
                         WHERE agent_id = ?1 AND check_name = ?2 AND target = ?3 AND at_ms < ?4 AND (at_ms, id) > (?5, ?6)
                           AND status = 2",
                    )?
                    .query_row(run, |r| r.get(0))?;
                out.push((check.clone(), target.clone(), at, Some(true), severity, reason));
                failing = true;
            }
            let mut stmt = conn.prepare_cached(
                "SELECT at_ms, status, severity, reason FROM check_result
                 WHERE agent_id = ?1 AND check_name = ?2 AND target = ?3 AND at_ms >= ?4 AND at_ms < ?5
                 ORDER BY at_ms, id",
            )?;
            let rows = stmt.query_map(params![agent_id, check, target, from, to], |r| {
                Ok((check.clone(), target.clone(), r.get(0)?, verdict_of(r.get(1)?), r.get(2)?, r.get(3)?))
            })?;
            for row in rows {
                let row: CheckHistoryRow = row?;
                if let Some(failed) = row.3 {
                    failing = failed;
                }
                out.push(row);
            }
            if failing && to < i64::MAX {
                // Still failing at `to`: the ok result that ended the run, for its true end.
                let end: Option<(i64, i32, String)> = conn
                    .prepare_cached(
                        "SELECT at_ms, severity, reason FROM check_result
                         WHERE agent_id = ?1 AND check_name = ?2 AND target = ?3 AND at_ms >= ?4 AND status = 1
                         ORDER BY at_ms, id LIMIT 1",
                    )?
                    .query_row(params![agent_id, check, target, to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                if let Some((at, severity, reason)) = end {
                    out.push((check.clone(), target.clone(), at, Some(false), severity, reason));
                }
            }
        }
        self.history_rows.fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(out)
    }

    /// Check history rows [`Reader::check_history`] has returned so far (what views cost).
    pub fn history_rows_read(&self) -> u64 {
        self.history_rows.load(Ordering::Relaxed)
    }

    /// Acknowledgements of an agent's incidents: `(check, target, start_ms) -> (ack_ms, by)`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn acks(&self, agent_id: &str) -> Result<Acks, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT check_name, target, start_ms, ack_ms, by FROM incident_ack WHERE agent_id = ?1")?;
        let rows = stmt.query_map([agent_id], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), (r.get(3)?, r.get(4)?))))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Incidents opened by hand on `host` overlapping `[from, to)`: (id, priority, title,
    /// opened, opened by, resolved, resolved by).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn manual_incidents(&self, host: &str, from: i64, to: i64) -> Result<Vec<ManualIncidentRow>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, priority, title, opened_ms, opened_by, resolved_ms, resolved_by FROM manual_incident
             WHERE host = ?1 AND opened_ms < ?3 AND (resolved_ms IS NULL OR resolved_ms > ?2) ORDER BY opened_ms, id",
        )?;
        let rows = stmt.query_map(params![host, from, to], |r| {
            Ok(ManualIncidentRow {
                id: r.get(0)?,
                priority: r.get(1)?,
                title: r.get(2)?,
                opened_ms: r.get(3)?,
                opened_by: r.get(4)?,
                resolved_ms: r.get(5)?,
                resolved_by: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The host of the incident opened by hand with this id.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn manual_incident_host(&self, id: i64) -> Result<Option<String>, Error> {
        Ok(self.conn().query_row("SELECT host FROM manual_incident WHERE id = ?1", [id], |r| r.get(0)).optional()?)
    }

    /// Critical log lines of an agent in `[from, to)` (sum of group counts).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn critical_log_lines(&self, agent_id: &str, from: i64, to: i64) -> Result<i64, Error> {
        let conn = self.conn();
        Ok(conn
            .prepare_cached(
                "SELECT COALESCE(SUM(count), 0) FROM log_group WHERE agent_id = ?1 AND severity = 4
                 AND last_ms >= ?2 AND first_ms < ?3",
            )?
            .query_row(params![agent_id, from, to], |r| r.get(0))?)
    }

    /// Gap records of an agent, oldest first.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn gaps(&self, agent_id: &str) -> Result<Vec<GapRow>, Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT reason, from_ms, to_ms, dropped_batches, dropped_points FROM gap WHERE agent_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([agent_id], |r| {
            Ok(GapRow {
                reason: r.get(0)?,
                from_ms: r.get(1)?,
                to_ms: r.get(2)?,
                dropped_batches: r.get(3)?,
                dropped_points: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
