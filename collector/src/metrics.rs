//! The collector's own metrics: every name in one place, atomics without a global registry (so
//! several collectors can run in one test process), rendered in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Outcome of one received batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchResult {
    /// Stored now.
    Stored,
    /// Already stored (resend after a lost ack).
    Duplicate,
    /// Key reused with different content.
    Conflict,
    /// Malformed, refused whole.
    Invalid,
    /// Store busy, full or failing; the agent retries.
    Unavailable,
}

const BATCH_RESULTS: [(BatchResult, &str); 5] = [
    (BatchResult::Stored, "stored"),
    (BatchResult::Duplicate, "duplicate"),
    (BatchResult::Conflict, "conflict"),
    (BatchResult::Invalid, "invalid"),
    (BatchResult::Unavailable, "unavailable"),
];

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `authorization` metadata.
    Missing,
    /// Not a `Bearer <id>.<secret>` token.
    Malformed,
    /// No such agent.
    UnknownAgent,
    /// Secret does not match.
    BadSecret,
    /// Token revoked.
    Revoked,
    /// Batch claims another agent's id.
    AgentMismatch,
    /// The token of an open stream was replaced (`enroll --rotate`) or the agent removed.
    Rotated,
}

const AUTH_FAILURES: [(AuthFailure, &str); 7] = [
    (AuthFailure::Missing, "missing"),
    (AuthFailure::Malformed, "malformed"),
    (AuthFailure::UnknownAgent, "unknown_agent"),
    (AuthFailure::BadSecret, "bad_secret"),
    (AuthFailure::Revoked, "revoked"),
    (AuthFailure::AgentMismatch, "agent_mismatch"),
    (AuthFailure::Rotated, "rotated"),
];

/// Reasons a point is rejected (label values of `b24watch_collector_points_rejected_total`): the
/// wire's `RejectReason` names without their prefix, lowercase. grpc.rs maps one to the other.
pub const REJECT_REASONS: [&str; 9] = [
    "non_finite_value",
    "too_far_in_future",
    "invalid_name",
    "label_too_long",
    "too_many_labels",
    "series_limit",
    "length_mismatch",
    "reserved_name",
    "too_old",
];

/// Free-text fields cut at ingest (label values of `b24watch_collector_fields_truncated_total`).
pub const TEXT_FIELDS: [&str; 10] = [
    "log_name",
    "log_fingerprint",
    "log_example",
    "log_file",
    "check_name",
    "check_target",
    "check_reason",
    "check_message",
    "gap_reason",
    "agent_version",
];

/// Records dropped whole at ingest because their time is out of bounds.
pub const TIMED_RECORDS: [&str; 2] = ["check", "log_group"];

/// Times the collector replaced because they were out of bounds.
pub const REPLACED_TIMES: [&str; 2] = ["batch_created", "gap"];

/// What validation changed in one batch besides rejecting points, for the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Corrections {
    /// Cuts per field, indexed like [`TEXT_FIELDS`].
    pub truncated: [u64; 10],
    /// Records dropped, indexed like [`TIMED_RECORDS`].
    pub dropped: [u64; 2],
    /// Times replaced, indexed like [`REPLACED_TIMES`].
    pub replaced: [u64; 2],
}

/// Upper bounds of the commit latency histogram, seconds.
const COMMIT_BUCKETS: [f64; 11] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Collector self-metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    batches: [AtomicU64; 5],
    points_stored: AtomicU64,
    points_rejected: [AtomicU64; 9],
    auth_failures: [AtomicU64; 7],
    truncated: [AtomicU64; 10],
    records_dropped: [AtomicU64; 2],
    times_replaced: [AtomicU64; 2],
    streams_active: AtomicI64,
    streams_refused: AtomicU64,
    gaps_points: AtomicU64,
    commit_buckets: [AtomicU64; 11],
    commit_count: AtomicU64,
    commit_sum_micros: AtomicU64,
    http_connections_active: AtomicI64,
    http_connections_refused: AtomicU64,
    ingest_held_bytes: AtomicU64,
    ingest_held_max_bytes: AtomicU64,
    ingest_waiting: AtomicI64,
    ingest_waits: AtomicU64,
    ingest_wait_micros: AtomicU64,
    /// Remote-write targets, set once at startup.
    remote_write: std::sync::OnceLock<Vec<std::sync::Arc<RemoteWriteStats>>>,
}

/// Why samples failed to reach a remote-write target for now (retried): label values of
/// `b24watch_collector_remote_write_samples_failed_total`.
pub const RW_FAILED: [&str; 4] = ["network", "timeout", "server_error", "too_many_requests"];
/// Why samples will never reach a remote-write target: label values of
/// `b24watch_collector_remote_write_samples_dropped_total` (`backlog_full` is kept in the store).
pub const RW_DROPPED: [&str; 2] = ["rejected", "invalid_series"];

/// One remote-write target's figures (`crate::remote_write` updates them).
#[derive(Debug, Default)]
pub struct RemoteWriteStats {
    /// The target's name.
    pub name: String,
    /// Where it sends (no credentials).
    pub url: String,
    /// Samples the receiver accepted.
    pub sent: AtomicU64,
    /// Samples of failed attempts, indexed like [`RW_FAILED`].
    pub failed: [AtomicU64; 4],
    /// Samples dropped, indexed like [`RW_DROPPED`].
    pub dropped: [AtomicU64; 2],
    /// Samples dropped because the backlog passed `max_backlog_bytes` (persisted in the store).
    pub dropped_backlog: AtomicU64,
    /// Samples committed and not yet sent.
    pub pending: AtomicU64,
    /// When the oldest unsent row was first seen (unix ms; 0: nothing unsent).
    pub oldest_unsent_ms: AtomicI64,
    /// Last accepted request (unix ms; 0: none yet).
    pub last_success_ms: AtomicI64,
    /// The last failure, empty after a success.
    pub last_error: std::sync::Mutex<String>,
    /// Samples of computed series (liveness, uptime, the collector's own) dropped because their
    /// queue passed `computed_backlog_bytes` (counted with `backlog_full`).
    pub computed_dropped: AtomicU64,
}

impl RemoteWriteStats {
    /// A failed attempt of `samples` samples, `reason` one of [`RW_FAILED`].
    pub fn failed(&self, reason: &str, samples: u64, error: String) {
        if let Some(i) = RW_FAILED.iter().position(|r| *r == reason) {
            self.failed[i].fetch_add(samples, Ordering::Relaxed);
        }
        *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }

    /// Samples dropped, `reason` one of [`RW_DROPPED`].
    pub fn dropped(&self, reason: &str, samples: u64) {
        if let Some(i) = RW_DROPPED.iter().position(|r| *r == reason) {
            self.dropped[i].fetch_add(samples, Ordering::Relaxed);
        }
    }

    /// The target's last error, empty when its last request succeeded.
    pub fn last_error(&self) -> String {
        self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl Metrics {
    /// Registers the remote-write targets (once, at startup).
    pub fn set_remote_write(&self, targets: Vec<std::sync::Arc<RemoteWriteStats>>) {
        let _ = self.remote_write.set(targets);
    }

    /// The remote-write targets' figures.
    pub fn remote_write(&self) -> &[std::sync::Arc<RemoteWriteStats>] {
        self.remote_write.get().map_or(&[], Vec::as_slice)
    }

    /// Counts a batch by outcome.
    pub fn batch(&self, result: BatchResult) {
        let idx = BATCH_RESULTS.iter().position(|(r, _)| *r == result).expect("every result is listed");
        self.batches[idx].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts stored points.
    pub fn points_stored(&self, n: u64) {
        self.points_stored.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts rejected points.
    pub fn points_rejected(&self, reason: &str, n: u64) {
        if let Some(idx) = REJECT_REASONS.iter().position(|r| *r == reason) {
            self.points_rejected[idx].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts what validation cut, dropped or replaced.
    pub fn corrections(&self, c: &Corrections) {
        for (counter, n) in self.truncated.iter().zip(c.truncated) {
            counter.fetch_add(n, Ordering::Relaxed);
        }
        for (counter, n) in self.records_dropped.iter().zip(c.dropped) {
            counter.fetch_add(n, Ordering::Relaxed);
        }
        for (counter, n) in self.times_replaced.iter().zip(c.replaced) {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts a refused credential.
    pub fn auth_failure(&self, failure: AuthFailure) {
        let idx = AUTH_FAILURES.iter().position(|(f, _)| *f == failure).expect("every failure is listed");
        self.auth_failures[idx].fetch_add(1, Ordering::Relaxed);
    }

    /// Tracks open agent streams.
    pub fn stream_opened(&self) {
        self.streams_active.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a stream refused because its agent had too many open.
    pub fn stream_refused(&self) {
        self.streams_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Tracks open agent streams.
    pub fn stream_closed(&self) {
        self.streams_active.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts points agents reported as dropped.
    pub fn agent_dropped_points(&self, n: u64) {
        self.gaps_points.fetch_add(n, Ordering::Relaxed);
    }

    /// Tracks open HTTP connections.
    pub fn http_connection_opened(&self) {
        self.http_connections_active.fetch_add(1, Ordering::Relaxed);
    }

    /// Tracks open HTTP connections.
    pub fn http_connection_closed(&self) {
        self.http_connections_active.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts an HTTP connection closed at once because the cap was reached.
    pub fn http_connection_refused(&self) {
        self.http_connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Tracks bytes of the ingest budget taken by a batch.
    pub fn ingest_held(&self, bytes: u64) {
        let held = self.ingest_held_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.ingest_held_max_bytes.fetch_max(held, Ordering::Relaxed);
    }

    /// Tracks bytes of the ingest budget given back.
    pub fn ingest_released(&self, bytes: u64) {
        self.ingest_held_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Tracks batches waiting for the ingest budget (`+1` when one starts, `-1` when it ends).
    pub fn ingest_waiting(&self, delta: i64) {
        self.ingest_waiting.fetch_add(delta, Ordering::Relaxed);
    }

    /// Counts a batch that waited for the ingest budget, and for how long.
    pub fn ingest_waited(&self, elapsed: Duration) {
        self.ingest_waits.fetch_add(1, Ordering::Relaxed);
        self.ingest_wait_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// `(bytes held now, most bytes held at once since start, batches waiting now)` of the ingest budget.
    pub fn ingest_budget(&self) -> (u64, u64, i64) {
        (
            self.ingest_held_bytes.load(Ordering::Relaxed),
            self.ingest_held_max_bytes.load(Ordering::Relaxed),
            self.ingest_waiting.load(Ordering::Relaxed),
        )
    }

    /// Records one store round trip (queue + commit).
    pub fn commit_latency(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (idx, bound) in COMMIT_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.commit_buckets[idx].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.commit_count.fetch_add(1, Ordering::Relaxed);
        self.commit_sum_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Appends the exposition to `out`. `db_bytes` and `wal_bytes` are the current file sizes;
    /// `results_dropped` counts check transitions the store refused (per-agent rate cap).
    pub fn render(&self, out: &mut String, db_bytes: u64, wal_bytes: u64, results_dropped: u64, ready: bool) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        header(out, "b24watch_collector_http_connections_active", "gauge", "Open HTTP connections.");
        let _ = writeln!(
            out,
            "b24watch_collector_http_connections_active {}",
            self.http_connections_active.load(Ordering::Relaxed)
        );
        header(
            out,
            "b24watch_collector_http_connections_refused_total",
            "counter",
            "HTTP connections closed at once because collector.http_max_connections were open.",
        );
        let _ =
            writeln!(out, "b24watch_collector_http_connections_refused_total {}", load(&self.http_connections_refused));
        header(
            out,
            "b24watch_collector_check_results_dropped_total",
            "counter",
            "Check results left out of the history because their agent passed the per-minute cap (the latest state is kept).",
        );
        let _ = writeln!(out, "b24watch_collector_check_results_dropped_total {results_dropped}");
        header(out, "b24watch_collector_batches_total", "counter", "Batches received from agents, by result.");
        for ((_, label), value) in BATCH_RESULTS.iter().zip(&self.batches) {
            let _ = writeln!(out, "b24watch_collector_batches_total{{result=\"{label}\"}} {}", load(value));
        }
        header(out, "b24watch_collector_points_stored_total", "counter", "Points committed to the store.");
        let _ = writeln!(out, "b24watch_collector_points_stored_total {}", load(&self.points_stored));
        header(out, "b24watch_collector_points_rejected_total", "counter", "Points rejected one by one, by reason.");
        for (label, value) in REJECT_REASONS.iter().zip(&self.points_rejected) {
            let _ = writeln!(out, "b24watch_collector_points_rejected_total{{reason=\"{label}\"}} {}", load(value));
        }
        header(
            out,
            "b24watch_collector_fields_truncated_total",
            "counter",
            "Free-text fields cut at their byte bound at ingest, by field.",
        );
        for (field, value) in TEXT_FIELDS.iter().zip(&self.truncated) {
            let _ = writeln!(out, "b24watch_collector_fields_truncated_total{{field=\"{field}\"}} {}", load(value));
        }
        header(
            out,
            "b24watch_collector_records_rejected_total",
            "counter",
            "Check results and log groups dropped at ingest because their time is out of bounds.",
        );
        for (record, value) in TIMED_RECORDS.iter().zip(&self.records_dropped) {
            let _ = writeln!(out, "b24watch_collector_records_rejected_total{{record=\"{record}\"}} {}", load(value));
        }
        header(
            out,
            "b24watch_collector_times_replaced_total",
            "counter",
            "Out-of-bounds times the collector replaced: a batch's creation time by the receive time, gap bounds by the nearest bound.",
        );
        for (field, value) in REPLACED_TIMES.iter().zip(&self.times_replaced) {
            let _ = writeln!(out, "b24watch_collector_times_replaced_total{{field=\"{field}\"}} {}", load(value));
        }
        header(out, "b24watch_collector_auth_failures_total", "counter", "Refused agent credentials, by reason.");
        for ((_, label), value) in AUTH_FAILURES.iter().zip(&self.auth_failures) {
            let _ = writeln!(out, "b24watch_collector_auth_failures_total{{reason=\"{label}\"}} {}", load(value));
        }
        header(out, "b24watch_collector_streams_active", "gauge", "Open agent streams.");
        let _ = writeln!(out, "b24watch_collector_streams_active {}", self.streams_active.load(Ordering::Relaxed));
        header(
            out,
            "b24watch_collector_streams_refused_total",
            "counter",
            "Agent streams refused because the agent already had the maximum open.",
        );
        let _ = writeln!(out, "b24watch_collector_streams_refused_total {}", load(&self.streams_refused));
        header(
            out,
            "b24watch_collector_agent_dropped_points_total",
            "counter",
            "Points agents reported as dropped (gap records), e.g. because their spool was full.",
        );
        let _ = writeln!(out, "b24watch_collector_agent_dropped_points_total {}", load(&self.gaps_points));
        header(
            out,
            "b24watch_collector_store_commit_seconds",
            "histogram",
            "Time from handing a batch to the store until its commit returned.",
        );
        for (bound, value) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            let _ = writeln!(out, "b24watch_collector_store_commit_seconds_bucket{{le=\"{bound}\"}} {}", load(value));
        }
        let count = load(&self.commit_count);
        let _ = writeln!(out, "b24watch_collector_store_commit_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ =
            writeln!(out, "b24watch_collector_store_commit_seconds_sum {}", load(&self.commit_sum_micros) as f64 / 1e6);
        let _ = writeln!(out, "b24watch_collector_store_commit_seconds_count {count}");
        let (held, held_max, waiting) = self.ingest_budget();
        header(
            out,
            "b24watch_collector_ingest_inflight_bytes",
            "gauge",
            "Bytes (encoded) of agent batches received and not yet acked, held against the ingest budget.",
        );
        let _ = writeln!(out, "b24watch_collector_ingest_inflight_bytes {held}");
        header(
            out,
            "b24watch_collector_ingest_inflight_max_bytes",
            "gauge",
            "Most bytes of agent batches held against the ingest budget at once since start.",
        );
        let _ = writeln!(out, "b24watch_collector_ingest_inflight_max_bytes {held_max}");
        header(
            out,
            "b24watch_collector_ingest_budget_waiting",
            "gauge",
            "Agent batches waiting now for the ingest budget (their streams read nothing meanwhile).",
        );
        let _ = writeln!(out, "b24watch_collector_ingest_budget_waiting {waiting}");
        header(
            out,
            "b24watch_collector_ingest_budget_waits_total",
            "counter",
            "Agent batches that waited for the ingest budget before being stored.",
        );
        let _ = writeln!(out, "b24watch_collector_ingest_budget_waits_total {}", load(&self.ingest_waits));
        header(
            out,
            "b24watch_collector_ingest_budget_wait_seconds_total",
            "counter",
            "Time agent batches spent waiting for the ingest budget, summed.",
        );
        let _ = writeln!(
            out,
            "b24watch_collector_ingest_budget_wait_seconds_total {}",
            load(&self.ingest_wait_micros) as f64 / 1e6
        );
        header(out, "b24watch_collector_db_size_bytes", "gauge", "Size of the SQLite database file.");
        let _ = writeln!(out, "b24watch_collector_db_size_bytes {db_bytes}");
        header(out, "b24watch_collector_wal_size_bytes", "gauge", "Size of the SQLite write-ahead log.");
        let _ = writeln!(out, "b24watch_collector_wal_size_bytes {wal_bytes}");
        header(
            out,
            "b24watch_collector_ready",
            "gauge",
            "1 when the collector accepts batches (store healthy, not stopping).",
        );
        let _ = writeln!(out, "b24watch_collector_ready {}", u8::from(ready));
        self.render_remote_write(out);
    }

    fn render_remote_write(&self, out: &mut String) {
        let targets = self.remote_write();
        if targets.is_empty() {
            return;
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let esc = |s: &str| crate::live::escape(s);
        header(
            out,
            "b24watch_collector_remote_write_samples_sent_total",
            "counter",
            "Samples a remote-write target accepted.",
        );
        for t in targets {
            let _ = writeln!(
                out,
                "b24watch_collector_remote_write_samples_sent_total{{target=\"{}\"}} {}",
                esc(&t.name),
                load(&t.sent)
            );
        }
        header(
            out,
            "b24watch_collector_remote_write_samples_failed_total",
            "counter",
            "Samples of remote-write requests that failed and are retried, by reason.",
        );
        for t in targets {
            for (reason, value) in RW_FAILED.iter().zip(&t.failed) {
                let _ = writeln!(
                    out,
                    "b24watch_collector_remote_write_samples_failed_total{{target=\"{}\",reason=\"{reason}\"}} {}",
                    esc(&t.name),
                    load(value)
                );
            }
        }
        header(
            out,
            "b24watch_collector_remote_write_samples_dropped_total",
            "counter",
            "Samples that will never reach a remote-write target, by reason (rejected: a 4xx answer; invalid_series: a name or labels that cannot be sent; backlog_full: the target fell further behind than max_backlog_bytes, or computed_backlog_bytes for the computed series).",
        );
        for t in targets {
            for (reason, value) in RW_DROPPED.iter().zip(&t.dropped) {
                let _ = writeln!(
                    out,
                    "b24watch_collector_remote_write_samples_dropped_total{{target=\"{}\",reason=\"{reason}\"}} {}",
                    esc(&t.name),
                    load(value)
                );
            }
            let _ = writeln!(
                out,
                "b24watch_collector_remote_write_samples_dropped_total{{target=\"{}\",reason=\"backlog_full\"}} {}",
                esc(&t.name),
                load(&t.dropped_backlog) + load(&t.computed_dropped)
            );
        }
        header(
            out,
            "b24watch_collector_remote_write_pending_samples",
            "gauge",
            "Samples committed to the store, and computed samples queued, not yet sent to a remote-write target.",
        );
        for t in targets {
            let _ = writeln!(
                out,
                "b24watch_collector_remote_write_pending_samples{{target=\"{}\"}} {}",
                esc(&t.name),
                load(&t.pending)
            );
        }
        let now = crate::now_ms();
        header(
            out,
            "b24watch_collector_remote_write_oldest_unsent_age_seconds",
            "gauge",
            "How long the oldest unsent samples of a remote-write target have waited since their commit (0: nothing unsent).",
        );
        for t in targets {
            let since = t.oldest_unsent_ms.load(Ordering::Relaxed);
            let age = if since > 0 { (now - since).max(0) as f64 / 1000.0 } else { 0.0 };
            let _ = writeln!(
                out,
                "b24watch_collector_remote_write_oldest_unsent_age_seconds{{target=\"{}\"}} {age}",
                esc(&t.name)
            );
        }
        header(
            out,
            "b24watch_collector_remote_write_last_success_timestamp_seconds",
            "gauge",
            "When a remote-write target last accepted a request (0: not since the collector started).",
        );
        for t in targets {
            let _ = writeln!(
                out,
                "b24watch_collector_remote_write_last_success_timestamp_seconds{{target=\"{}\"}} {}",
                esc(&t.name),
                t.last_success_ms.load(Ordering::Relaxed) as f64 / 1000.0
            );
        }
    }
}

/// Appends the longest run and the total time of each kind of the store writer's work
/// (`(step, longest, total)` in seconds).
pub fn render_store_steps(
    out: &mut String,
    steps: &[crate::store::StepTime],
    (head_points, head_bytes): (usize, usize),
) {
    header(
        out,
        "b24watch_collector_store_head_points",
        "gauge",
        "Committed points held in memory until they are sealed into blocks (sealing starts at 8 M points or 24 MiB; at twice either ingest waits).",
    );
    let _ = writeln!(out, "b24watch_collector_store_head_points {head_points}");
    header(out, "b24watch_collector_store_head_bytes", "gauge", "Memory the head's points take, encoded.");
    let _ = writeln!(out, "b24watch_collector_store_head_bytes {head_bytes}");
    header(
        out,
        "b24watch_collector_store_step_max_seconds",
        "gauge",
        "Longest run since start of one store writer step (seal, rollup, retention, conversion, commit); ingest waits behind it.",
    );
    for (step, max, _) in steps {
        let _ = writeln!(out, "b24watch_collector_store_step_max_seconds{{step=\"{step}\"}} {max}");
    }
    header(
        out,
        "b24watch_collector_store_step_seconds_total",
        "counter",
        "Time the store writer spent on each kind of step.",
    );
    for (step, _, total) in steps {
        let _ = writeln!(out, "b24watch_collector_store_step_seconds_total{{step=\"{step}\"}} {total}");
    }
}

/// Appends whether the store refuses ingest at its disk bound (`max_db_bytes` less the upkeep
/// reserve), whether expired raw hours wait for room for their minute rollups (the retention
/// keeps more than the bound holds), and the batches refused as full.
pub fn render_store_full(out: &mut String, state: crate::store::FullState) {
    header(
        out,
        "b24watch_collector_store_full",
        "gauge",
        "1 while batches are refused because the database reached max_db_bytes less the reserve kept for sealing and retention.",
    );
    let _ = writeln!(out, "b24watch_collector_store_full {}", u8::from(state.full));
    header(
        out,
        "b24watch_collector_store_retention_blocked",
        "gauge",
        "1 while expired raw hours wait for room for their minute rollups: the retention keeps more than max_db_bytes holds.",
    );
    let _ = writeln!(out, "b24watch_collector_store_retention_blocked {}", u8::from(state.retention_blocked));
    header(
        out,
        "b24watch_collector_store_full_refused_batches_total",
        "counter",
        "Batches refused because the database was full (their agents keep them and resend).",
    );
    let _ = writeln!(out, "b24watch_collector_store_full_refused_batches_total {}", state.refused_batches);
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The label text of the collector's own `b24watch_build_info` line.
pub fn own_build_info() -> String {
    format!(
        "component=\"collector\",version=\"{}\",commit=\"{}\"",
        crate::live::escape(env!("CARGO_PKG_VERSION")),
        crate::live::escape(b24watch_common::COMMIT)
    )
}

/// Appends `b24watch_collector_links`: the absolute URLs alert rules put in their pages (the
/// collector's external URL and the runbooks' URL), as labels of a constant 1.
pub fn render_links(out: &mut String, external_url: &str, runbook_url: &str) {
    header(
        out,
        "b24watch_collector_links",
        "gauge",
        "Absolute URLs alert rules link to: the collector's external_url and the runbooks' runbook_url ([collector] settings).",
    );
    let _ = writeln!(
        out,
        "b24watch_collector_links{{external_url=\"{}\",runbook_url=\"{}\"}} 1",
        crate::live::escape(external_url),
        crate::live::escape(runbook_url)
    );
}

/// What `/proc/self` says about this process, named as Prometheus client libraries name it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub resident_bytes: f64,
    /// Virtual memory, bytes.
    pub virtual_bytes: f64,
    /// Start time, unix seconds.
    pub start_time_seconds: f64,
}

/// Parses `/proc/self/stat` (utime, stime: fields 14–15; starttime: 22, in ticks after boot;
/// vsize: 23, bytes; rss: 24, pages) with the boot time (`btime` of `/proc/stat`).
pub fn parse_process_stat(stat: &str, boot_time_seconds: f64, page_size: u64, ticks: u64) -> Option<ProcessStats> {
    // The command name (field 2) may hold spaces and parentheses; fields resume after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let ticks = ticks.max(1) as f64;
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        start_time_seconds: boot_time_seconds + field(22)? as f64 / ticks,
        virtual_bytes: field(23)? as f64,
        resident_bytes: (field(24)? * page_size) as f64,
    })
}

/// The soft limit of open files from `/proc/self/limits` (`None` when unlimited or unreadable).
fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_ascii_whitespace().next()?.parse().ok()
}

/// Appends the standard `process_*` metrics of the collector (CPU, memory, descriptors, start
/// time) as Prometheus client libraries expose them, read from `/proc/self`. A file that cannot
/// be read leaves its metrics out.
pub fn render_process(out: &mut String) {
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<f64>().ok()));
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let page_size = rustix::param::page_size() as u64;
    let ticks = rustix::param::clock_ticks_per_second();
    if let Some(p) = boot.zip(stat).and_then(|(boot, stat)| parse_process_stat(&stat, boot, page_size, ticks)) {
        header(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        let _ = writeln!(out, "process_cpu_seconds_total {}", p.cpu_seconds);
        header(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        let _ = writeln!(out, "process_resident_memory_bytes {}", p.resident_bytes);
        header(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        let _ = writeln!(out, "process_virtual_memory_bytes {}", p.virtual_bytes);
        header(out, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
        let _ = writeln!(out, "process_start_time_seconds {}", p.start_time_seconds);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle read here is one of them.
        let open = dir.count().saturating_sub(1);
        header(out, "process_open_fds", "gauge", "Number of open file descriptors.");
        let _ = writeln!(out, "process_open_fds {open}");
    }
    if let Some(max) = std::fs::read_to_string("/proc/self/limits").ok().as_deref().and_then(parse_max_fds) {
        header(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        let _ = writeln!(out, "process_max_fds {max}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stat_fields_are_read_after_the_command_name() {
        let stat = "4242 (b24 (watch) x) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 50 0 0 20 0 3 0 1000 9000000 1500 18446744073709551615";
        let p = parse_process_stat(stat, 1_700_000_000.0, 4096, 100).expect("parses");
        assert_eq!(p.cpu_seconds, 2.0);
        assert_eq!(p.start_time_seconds, 1_700_000_010.0);
        assert_eq!(p.virtual_bytes, 9_000_000.0);
        assert_eq!(p.resident_bytes, 1500.0 * 4096.0);
        assert_eq!(parse_process_stat("garbage", 0.0, 4096, 100), None);
    }

    #[test]
    fn max_fds_is_the_soft_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(parse_max_fds("Max open files            unlimited            unlimited            files\n"), None);
    }

    #[test]
    fn own_process_metrics_render_from_proc() {
        let mut out = String::new();
        render_process(&mut out);
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(out.contains(name), "{name} missing:\n{out}");
        }
    }
}
