//! The latest value of every series per host, kept in memory for `/metrics`, and its rendering.
//!
//! Liveness uses the collector's receive time: an agent silent for longer than the timeout is
//! exposed as `b24watch_agent_up 0` and its other series are left out (DESIGN.md 5).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::RwLock;

use b24watch_proto::catalog;

use crate::store::{Kind, SeriesIn};

/// Latest point of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LivePoint {
    kind: Kind,
    ts_ms: i64,
    value: f64,
    received_ms: i64,
}

#[derive(Debug, Default)]
struct HostLive {
    last_seen_ms: Option<i64>,
    series: HashMap<(String, String), LivePoint>,
}

/// Shared latest-value view.
#[derive(Debug, Default)]
pub struct Live {
    hosts: RwLock<HashMap<String, HostLive>>,
    /// Enrolled, non-revoked agents (refreshed from the store).
    enrolled: RwLock<BTreeSet<String>>,
    /// Revoked agents (refreshed from the store); their streams are closed.
    revoked: RwLock<BTreeSet<String>>,
}

/// One host's liveness as shown by the API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostStatus {
    /// Agent id.
    pub host: String,
    /// Whether a batch arrived within the timeout.
    pub up: bool,
    /// Receive time of the last batch.
    pub last_seen_unix_ms: Option<i64>,
    /// Series currently exposed.
    pub series: usize,
}

impl Live {
    /// Records that a batch from `host` arrived and the latest points of its series.
    pub fn observe(&self, host: &str, received_ms: i64, series: &[SeriesIn]) {
        let mut hosts = self.hosts.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = hosts.entry(host.to_owned()).or_default();
        entry.last_seen_ms = Some(entry.last_seen_ms.map_or(received_ms, |seen| seen.max(received_ms)));
        for s in series {
            let Some(&(ts_ms, value)) = s.points.iter().max_by_key(|(ts, _)| *ts) else {
                continue;
            };
            let point = LivePoint { kind: s.kind, ts_ms, value, received_ms };
            match entry.series.get_mut(&(s.name.clone(), s.labels.clone())) {
                // A backfilled (older) point never replaces a newer one.
                Some(existing) if existing.ts_ms > ts_ms => existing.received_ms = received_ms,
                Some(existing) => *existing = point,
                None => {
                    entry.series.insert((s.name.clone(), s.labels.clone()), point);
                }
            }
        }
    }

    /// Replaces the enrolled and revoked sets and seeds last-seen times from the store.
    pub fn set_agents(&self, agents: &[crate::store::query::AgentRow]) {
        let enrolled = agents.iter().filter(|a| a.revoked_ms.is_none()).map(|a| a.id.clone()).collect();
        let revoked = agents.iter().filter(|a| a.revoked_ms.is_some()).map(|a| a.id.clone()).collect();
        *self.enrolled.write().unwrap_or_else(std::sync::PoisonError::into_inner) = enrolled;
        *self.revoked.write().unwrap_or_else(std::sync::PoisonError::into_inner) = revoked;
        let mut hosts = self.hosts.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for agent in agents {
            if let Some(seen) = agent.last_seen_ms {
                let entry = hosts.entry(agent.id.clone()).or_default();
                entry.last_seen_ms = Some(entry.last_seen_ms.map_or(seen, |s| s.max(seen)));
            }
        }
    }

    /// Whether the agent's token has been revoked.
    pub fn is_revoked(&self, host: &str) -> bool {
        self.revoked.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(host)
    }

    /// Liveness of every known host.
    pub fn statuses(&self, now_ms: i64, timeout_ms: i64) -> Vec<HostStatus> {
        let hosts = self.hosts.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let enrolled = self.enrolled.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let names: BTreeSet<&String> = enrolled.iter().chain(hosts.keys()).collect();
        names
            .into_iter()
            .filter(|name| !self.is_revoked(name))
            .map(|name| {
                let host = hosts.get(name.as_str());
                let last_seen = host.and_then(|h| h.last_seen_ms);
                let up = last_seen.is_some_and(|seen| now_ms - seen <= timeout_ms);
                let series = host
                    .filter(|_| up)
                    .map_or(0, |h| h.series.values().filter(|p| now_ms - p.received_ms <= timeout_ms).count());
                HostStatus { host: name.clone(), up, last_seen_unix_ms: last_seen, series }
            })
            .collect()
    }

    /// Appends the exposition of every host to `out`.
    pub fn render(&self, now_ms: i64, timeout_ms: i64, out: &mut String) {
        let statuses = self.statuses(now_ms, timeout_ms);
        family_header(
            out,
            "b24watch_agent_up",
            "gauge",
            "1 when the agent's last batch arrived within the agent timeout, else 0.",
        );
        for status in &statuses {
            let _ = writeln!(out, "b24watch_agent_up{{host=\"{}\"}} {}", status.host, u8::from(status.up));
        }
        family_header(
            out,
            "b24watch_agent_last_seen_timestamp_seconds",
            "gauge",
            "Collector receive time of the agent's last batch, unix seconds.",
        );
        for status in &statuses {
            if let Some(seen) = status.last_seen_unix_ms {
                let _ = writeln!(
                    out,
                    "b24watch_agent_last_seen_timestamp_seconds{{host=\"{}\"}} {}",
                    status.host,
                    seen as f64 / 1000.0
                );
            }
        }
        let hosts = self.hosts.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut rows: Vec<(&str, &str, &str, &LivePoint)> = Vec::new();
        for status in statuses.iter().filter(|s| s.up) {
            let Some(host) = hosts.get(&status.host) else {
                continue;
            };
            for ((name, labels), point) in &host.series {
                if now_ms - point.received_ms <= timeout_ms {
                    rows.push((name, status.host.as_str(), labels, point));
                }
            }
        }
        rows.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        let mut current = "";
        for (name, host, labels, point) in rows {
            if name != current {
                let descriptor = catalog::lookup(name);
                let kind = match point.kind {
                    1 => "gauge",
                    2 if name.ends_with("_total") => "counter",
                    _ => "untyped",
                };
                let help = descriptor.map_or("Series reported by the agent.", |d| d.help);
                family_header(out, &format!("b24watch_{name}"), kind, help);
                current = name;
            }
            let sep = if labels.is_empty() { "" } else { "," };
            let _ = writeln!(out, "b24watch_{name}{{host=\"{host}\"{sep}{labels}}} {}", point.value);
        }
    }
}

fn family_header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, labels: &str, ts: i64, value: f64) -> SeriesIn {
        SeriesIn {
            name: name.into(),
            labels: labels.into(),
            kind: 1,
            points: vec![(ts, value)],
            index: 0,
            telemetry: false,
        }
    }

    #[test]
    fn silent_agent_keeps_only_agent_up_zero() {
        let live = Live::default();
        live.observe("web-1", 1_000, &[series("load1", "", 900, 0.5)]);
        let mut fresh = String::new();
        live.render(30_000, 60_000, &mut fresh);
        assert!(fresh.contains("b24watch_agent_up{host=\"web-1\"} 1\n"), "{fresh}");
        assert!(fresh.contains("b24watch_load1{host=\"web-1\"} 0.5\n"), "{fresh}");
        let mut stale = String::new();
        live.render(62_000, 60_000, &mut stale);
        assert!(stale.contains("b24watch_agent_up{host=\"web-1\"} 0\n"), "{stale}");
        assert!(!stale.contains("b24watch_load1"), "{stale}");
    }

    #[test]
    fn backfilled_older_point_does_not_replace_newer_value() {
        let live = Live::default();
        live.observe("web-1", 1_000, &[series("load1", "", 900, 0.5)]);
        live.observe("web-1", 2_000, &[series("load1", "", 100, 9.0)]);
        let mut out = String::new();
        live.render(2_000, 60_000, &mut out);
        assert!(out.contains("b24watch_load1{host=\"web-1\"} 0.5\n"), "{out}");
    }

    #[test]
    fn families_are_grouped_with_one_header_each() {
        let live = Live::default();
        live.observe("b", 1_000, &[series("filesystem_size_bytes", "mountpoint=\"/\"", 1, 1.0)]);
        live.observe("a", 1_000, &[series("filesystem_size_bytes", "mountpoint=\"/\"", 1, 2.0)]);
        let mut out = String::new();
        live.render(1_000, 60_000, &mut out);
        assert_eq!(out.matches("# TYPE b24watch_filesystem_size_bytes gauge").count(), 1, "{out}");
        let a = out.find("host=\"a\",mountpoint").expect("a rendered");
        let b = out.find("host=\"b\",mountpoint").expect("b rendered");
        assert!(a < b);
    }
}
