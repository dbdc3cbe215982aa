//! The agent's own health: the self-telemetry counters sent with every batch.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use b24watch_proto::catalog::{
    AGENT_CPU_SECONDS_TOTAL, AGENT_REJECTED_POINTS_TOTAL, AGENT_RESIDENT_MEMORY_BYTES, AGENT_SAMPLER_ERRORS_TOTAL,
    AGENT_SPOOL_BYTES, AGENT_SPOOL_DROPPED_BATCHES_TOTAL, AGENT_SPOOL_PENDING_BATCHES, BUILD_INFO,
};

use crate::observation::{Observation, UnixMs};

/// Counters shared by the scheduler and the shipper. Label sets are bounded (sampler names and
/// fixed reason strings). Every label set known in advance is reported from 0, so that a counter
/// restarted with the agent is seen at 0 before its first increment and `increase()` counts it.
/// It also reports `build_info`.
#[derive(Debug, Default)]
pub struct Telemetry {
    sampler_errors: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    rejected_points: Mutex<BTreeMap<String, u64>>,
    spool_dropped: Mutex<BTreeMap<&'static str, u64>>,
    spool_pending_batches: AtomicU64,
    spool_bytes: AtomicU64,
}

impl Telemetry {
    /// Declares the failure reasons a sampler or checker can count, so they are reported from 0.
    pub fn known_sampler_errors(&self, sampler: &'static str, reasons: &[&'static str]) {
        let mut errors = self.sampler_errors.lock().expect("telemetry lock is never poisoned");
        for reason in reasons {
            errors.entry((sampler, reason)).or_default();
        }
    }

    /// Declares the reasons the collector can reject points for, so they are reported from 0.
    pub fn known_rejections(&self, reasons: &[&str]) {
        let mut rejected = self.rejected_points.lock().expect("telemetry lock is never poisoned");
        for reason in reasons {
            rejected.entry((*reason).to_owned()).or_default();
        }
    }

    /// Counts a failed sampler run.
    pub fn sampler_error(&self, sampler: &'static str, reason: &'static str) {
        *self.sampler_errors.lock().expect("telemetry lock is never poisoned").entry((sampler, reason)).or_default() +=
            1;
    }

    /// Counts points the collector rejected.
    pub fn rejected(&self, reason: &str, points: u64) {
        *self
            .rejected_points
            .lock()
            .expect("telemetry lock is never poisoned")
            .entry(reason.to_owned())
            .or_default() += points;
    }

    /// Counts batches dropped from the spool, by reason (a fixed set: see `spool::REASON_*`).
    pub fn spool_dropped(&self, reason: &'static str, batches: u64) {
        *self.spool_dropped.lock().expect("telemetry lock is never poisoned").entry(reason).or_default() += batches;
    }

    /// Records the spool's current depth.
    pub fn spool_depth(&self, batches: u64, bytes: u64) {
        self.spool_pending_batches.store(batches, Ordering::Relaxed);
        self.spool_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Current values as observations.
    pub fn observe(&self, at: UnixMs) -> Vec<Observation> {
        let mut out = Vec::with_capacity(8);
        if let Some((rss, cpu)) = self_usage() {
            out.push(Observation::new(AGENT_RESIDENT_MEMORY_BYTES, rss, at));
            out.push(Observation::new(AGENT_CPU_SECONDS_TOTAL, cpu, at));
        }
        out.push(Observation::new(
            AGENT_SPOOL_PENDING_BATCHES,
            self.spool_pending_batches.load(Ordering::Relaxed) as f64,
            at,
        ));
        out.push(Observation::new(AGENT_SPOOL_BYTES, self.spool_bytes.load(Ordering::Relaxed) as f64, at));
        // Every reason is always reported, so each series exists (at 0) before the first drop.
        let dropped = self.spool_dropped.lock().expect("telemetry lock is never poisoned");
        for reason in crate::spool::REASONS {
            let count = dropped.get(reason).copied().unwrap_or(0);
            let label = reason.trim_start_matches("spool_").to_owned();
            out.push(Observation::labeled(
                AGENT_SPOOL_DROPPED_BATCHES_TOTAL,
                vec![("reason", label)],
                count as f64,
                at,
            ));
        }
        drop(dropped);
        out.push(Observation::labeled(
            BUILD_INFO,
            vec![
                ("component", "agent".to_owned()),
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
                ("commit", b24watch_common::COMMIT.to_owned()),
            ],
            1.0,
            at,
        ));
        for ((sampler, reason), count) in self.sampler_errors.lock().expect("telemetry lock is never poisoned").iter() {
            out.push(Observation::labeled(
                AGENT_SAMPLER_ERRORS_TOTAL,
                vec![("sampler", (*sampler).to_owned()), ("reason", (*reason).to_owned())],
                *count as f64,
                at,
            ));
        }
        for (reason, count) in self.rejected_points.lock().expect("telemetry lock is never poisoned").iter() {
            out.push(Observation::labeled(
                AGENT_REJECTED_POINTS_TOTAL,
                vec![("reason", reason.clone())],
                *count as f64,
                at,
            ));
        }
        out
    }
}

/// Resident bytes and CPU seconds of this process, from `/proc/self/stat`.
fn self_usage() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_self_stat(&stat, page_size(), clock_ticks())
}

/// Parses `/proc/<pid>/stat`: utime and stime are fields 14 and 15, rss (pages) field 24.
fn parse_self_stat(stat: &str, page_size: u64, ticks_per_sec: u64) -> Option<(f64, f64)> {
    // The command name (field 2) may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    Some(((rss_pages * page_size) as f64, (utime + stime) as f64 / ticks_per_sec as f64))
}

fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_stat_with_parentheses_in_name_parses() {
        let stat = "4242 (b24 (watch) x) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 50 0 0 20 0 3 0 100 9000000 1500 18446744073709551615";
        let (rss, cpu) = parse_self_stat(stat, 4096, 100).expect("parses");
        assert_eq!(rss, 1500.0 * 4096.0);
        assert_eq!(cpu, 2.0);
    }

    #[test]
    fn observe_reports_counters_with_bounded_labels() {
        let telemetry = Telemetry::default();
        telemetry.sampler_error("cpu", "parse");
        telemetry.sampler_error("cpu", "parse");
        telemetry.spool_dropped(crate::spool::REASON_FULL, 3);
        let obs = telemetry.observe(UnixMs(1));
        let errors = obs.iter().find(|o| o.name == AGENT_SAMPLER_ERRORS_TOTAL).expect("errors reported");
        assert_eq!(errors.value, 2.0);
        let dropped = obs.iter().find(|o| o.name == AGENT_SPOOL_DROPPED_BATCHES_TOTAL).expect("drops reported");
        assert_eq!(dropped.value, 3.0);
    }

    /// Issue 19 item 2: a counter born at its first increment is missed by `increase()`.
    #[test]
    fn every_known_counter_is_reported_from_zero_before_anything_happened() {
        let telemetry = Telemetry::default();
        telemetry.known_sampler_errors("cpu", &["unavailable", "parse", "timeout"]);
        telemetry.known_rejections(&["REJECT_REASON_TOO_OLD"]);
        let obs = telemetry.observe(UnixMs(1));
        let zero = |name: &str, label: (&str, &str)| {
            obs.iter().any(|o| {
                o.name == name && o.value == 0.0 && o.labels.iter().any(|(k, v)| *k == label.0 && v == label.1)
            })
        };
        for reason in ["full", "disk_reserve", "rejected_by_collector", "too_large"] {
            assert!(zero(AGENT_SPOOL_DROPPED_BATCHES_TOTAL, ("reason", reason)), "drop reason {reason}: {obs:?}");
        }
        for reason in ["unavailable", "parse", "timeout"] {
            assert!(zero(AGENT_SAMPLER_ERRORS_TOTAL, ("reason", reason)), "sampler reason {reason}: {obs:?}");
        }
        assert!(zero(AGENT_REJECTED_POINTS_TOTAL, ("reason", "REJECT_REASON_TOO_OLD")), "{obs:?}");
        let build = obs.iter().find(|o| o.name == BUILD_INFO).expect("build_info reported");
        assert!(build.labels.iter().any(|(k, v)| *k == "commit" && !v.is_empty()), "{build:?}");
    }
}
