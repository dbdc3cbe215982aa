//! The latest value of every series per host, kept in memory for `/metrics`, and its rendering.
//!
//! Liveness uses the collector's receive time: an agent silent for longer than the timeout is
//! exposed as `b24watch_agent_up 0`. Its other series keep their last values (the host as it was
//! last seen: the series that were current when its last batch arrived) until it reports again or
//! is revoked, so a dead agent never resolves its host's alerts; the shipped Alertmanager inhibit
//! rule lets its agent-down alert hold them (docs/operations.md "When an agent dies").
//!
//! The rendering trusts nothing it holds: a series whose name is reserved or not a valid metric
//! name, or whose labels do not parse, carry an invalid, reserved (`__*`) or repeated name, is
//! left out and counted (`b24watch_collector_exposition_skipped_series`); host names and label
//! values are escaped. No stored content can make Prometheus reject the scrape.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::RwLock;

use b24watch_proto::catalog;

use crate::store::{Kind, SeriesIn};

/// Series names (without the `b24watch_` prefix) the collector exposes itself, or that would
/// collide with what it exposes; agents may not use them.
pub const RESERVED_NAMES: [&str; 6] = [
    "agent_up",
    "agent_last_seen_timestamp_seconds",
    "uptime_ratio",
    "uptime_down_seconds",
    "sla_target_ratio",
    "incidents_open",
];

/// Whether an agent's series name is reserved: one of [`RESERVED_NAMES`], anything under
/// `collector_` (the collector's own metrics), or starting with `__` (reserved by Prometheus).
pub fn reserved(name: &str) -> bool {
    name.starts_with("__") || name.starts_with("collector_") || RESERVED_NAMES.contains(&name)
}

/// A metric or label name as the exposition format allows it (colons aside).
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Escapes a label value for the exposition format.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Parses canonical label text (`a="x",b="y"`, values escaped) into unescaped pairs; `None` when
/// it does not parse.
pub(crate) fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        out.push((name.to_owned(), value));
        rest = &after[end + 1..];
        if !rest.is_empty() {
            rest = rest.strip_prefix(',')?;
        }
    }
    Some(out)
}

/// The label text of an agent series as exposed: every name valid, none reserved or repeated,
/// `host` first; values escaped. `None` when it cannot be exposed safely.
fn exposed_labels(host: &str, labels: &str) -> Option<String> {
    let pairs = parse_labels(labels)?;
    let mut out = format!("host=\"{}\"", escape(host));
    let mut seen: Vec<&str> = Vec::with_capacity(pairs.len());
    for (name, value) in &pairs {
        if !valid_name(name) || name.starts_with("__") || name == "host" || seen.contains(&name.as_str()) {
            return None;
        }
        seen.push(name);
        let _ = write!(out, ",{name}=\"{}\"", escape(value));
    }
    Some(out)
}

/// The labels of an agent series as `/metrics` exposes them, unescaped, for remote write:
/// `__name__` (`b24watch_<name>`), `host`, then the series' own labels. `None` when `/metrics`
/// would leave the series out (invalid or reserved name, labels that do not parse, an invalid,
/// reserved or repeated label name).
pub fn exposed_pairs(host: &str, name: &str, labels: &str) -> Option<Vec<(String, String)>> {
    if !valid_name(name) || reserved(name) {
        return None;
    }
    let pairs = parse_labels(labels)?;
    let mut out = Vec::with_capacity(pairs.len() + 2);
    out.push(("__name__".to_owned(), format!("b24watch_{name}")));
    out.push(("host".to_owned(), host.to_owned()));
    for (label, value) in pairs {
        if !valid_name(&label) || label.starts_with("__") || out.iter().any(|(n, _)| *n == label) {
            return None;
        }
        out.push((label, value));
    }
    Some(out)
}

/// A sample value as the exposition format spells it.
fn value_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        value.to_string()
    }
}

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
    /// The last return after a silence longer than the agent timeout: (first batch back, last
    /// batch before the silence).
    resumed: Option<(i64, i64)>,
}

impl HostLive {
    /// Whether a series is exposed: it arrived within the timeout of the host's last batch. While
    /// the agent reports, that drops a series it stopped sending; once it is silent, it keeps the
    /// host as last seen (measured from now instead, a series sent less often than batches, such
    /// as a probe result, would vanish for a moment between the two and resolve its alert).
    ///
    /// For one timeout after the agent comes back from a silence, the values held through it
    /// stay too, until the new process sends them again: a portal still down does not resolve
    /// and fire again because the first batches back lack its probe result.
    fn current(&self, point: &LivePoint, timeout_ms: i64) -> bool {
        let Some(seen) = self.last_seen_ms else { return false };
        if seen.saturating_sub(point.received_ms) <= timeout_ms {
            return true;
        }
        self.resumed.is_some_and(|(back, before)| {
            seen.saturating_sub(back) <= timeout_ms && before.saturating_sub(point.received_ms) <= timeout_ms
        })
    }
}

/// Shared latest-value view.
#[derive(Debug, Default)]
pub struct Live {
    hosts: RwLock<HashMap<String, HostLive>>,
    /// Enrolled, non-revoked agents (refreshed from the store).
    enrolled: RwLock<BTreeSet<String>>,
    /// Revoked agents (refreshed from the store); their streams are closed.
    revoked: RwLock<BTreeSet<String>>,
    /// The agent timeout, ms (0 until [`Live::set_agent_timeout`]): tells a return after a
    /// silence from an ordinary batch.
    timeout_ms: std::sync::atomic::AtomicI64,
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
    /// Series currently exposed (while the agent is down: its last values, held).
    pub series: usize,
}

impl Live {
    /// Sets the agent timeout (`[collector] agent_timeout_secs`), as [`Live::render`] gets it.
    pub fn set_agent_timeout(&self, timeout_ms: i64) {
        self.timeout_ms.store(timeout_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records that a batch from `host` arrived and the latest points of its series.
    pub fn observe(&self, host: &str, received_ms: i64, series: &[SeriesIn]) {
        let timeout_ms = self.timeout_ms.load(std::sync::atomic::Ordering::Relaxed);
        let mut hosts = self.hosts.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = hosts.entry(host.to_owned()).or_default();
        if let Some(before) = entry.last_seen_ms
            && timeout_ms > 0
            && received_ms - before > timeout_ms
        {
            entry.resumed = Some((received_ms, before));
        }
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
                let series = host.map_or(0, |h| h.series.values().filter(|p| h.current(p, timeout_ms)).count());
                HostStatus { host: name.clone(), up, last_seen_unix_ms: last_seen, series }
            })
            .collect()
    }

    /// Appends the exposition of every host to `out`. `own_build_info` is the label text of the
    /// collector's own `b24watch_build_info` line, written in the same family as the agents' lines.
    pub fn render(&self, now_ms: i64, timeout_ms: i64, own_build_info: &str, out: &mut String) {
        self.render_parts(now_ms, timeout_ms, own_build_info, true, out);
    }

    /// What [`Live::render`] writes minus the agents' own series: liveness, the collector's
    /// `b24watch_build_info` line and the skipped-series count. Remote write sends these as
    /// computed series; the agents' series go from their stored samples.
    pub fn render_computed(&self, now_ms: i64, timeout_ms: i64, own_build_info: &str, out: &mut String) {
        self.render_parts(now_ms, timeout_ms, own_build_info, false, out);
    }

    fn render_parts(&self, now_ms: i64, timeout_ms: i64, own_build_info: &str, agent_series: bool, out: &mut String) {
        let statuses = self.statuses(now_ms, timeout_ms);
        family_header(
            out,
            "b24watch_agent_up",
            "gauge",
            "1 when the agent's last batch arrived within the agent timeout, else 0.",
        );
        for status in &statuses {
            let _ = writeln!(out, "b24watch_agent_up{{host=\"{}\"}} {}", escape(&status.host), u8::from(status.up));
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
                    escape(&status.host),
                    seen as f64 / 1000.0
                );
            }
        }
        let hosts = self.hosts.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut rows: Vec<(&str, &str, &str, &LivePoint)> = Vec::new();
        for status in &statuses {
            let Some(host) = hosts.get(&status.host) else {
                continue;
            };
            for ((name, labels), point) in &host.series {
                if host.current(point, timeout_ms) {
                    rows.push((name, status.host.as_str(), labels, point));
                }
            }
        }
        rows.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        let mut current = "";
        let mut skipped = 0u64;
        let mut build_info_written = false;
        let mut written: std::collections::HashSet<String> = std::collections::HashSet::new();
        for (name, host, labels, point) in rows {
            let Some(label_text) =
                (valid_name(name) && !reserved(name)).then(|| exposed_labels(host, labels)).flatten()
            else {
                skipped += 1;
                continue;
            };
            // Two stored label texts may expose the same series (e.g. differently escaped).
            if !written.insert(format!("{name}{{{label_text}}}")) {
                skipped += 1;
                continue;
            }
            if !agent_series {
                continue;
            }
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
                if name == catalog::BUILD_INFO {
                    let _ = writeln!(out, "b24watch_build_info{{{own_build_info}}} 1");
                    build_info_written = true;
                }
            }
            let _ = writeln!(out, "b24watch_{name}{{{label_text}}} {}", value_text(point.value));
        }
        if !build_info_written {
            let help = catalog::lookup(catalog::BUILD_INFO).map_or("", |d| d.help);
            family_header(out, "b24watch_build_info", "gauge", help);
            let _ = writeln!(out, "b24watch_build_info{{{own_build_info}}} 1");
        }
        family_header(
            out,
            "b24watch_collector_exposition_skipped_series",
            "gauge",
            "Agent series left out of this exposition because their name or labels cannot be exposed safely.",
        );
        let _ = writeln!(out, "b24watch_collector_exposition_skipped_series {skipped}");
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
    fn silent_agent_holds_its_last_snapshot_with_agent_up_zero() {
        let live = Live::default();
        live.observe(
            "web-1",
            1_000,
            &[series("load1", "", 900, 0.5), series("probe_success", "target=\"a\"", 900, 0.0)],
        );
        // A series the agent stopped sending while it still reported is gone as before.
        live.observe("web-1", 50_000, &[series("load1", "", 49_000, 0.7)]);
        let mut fresh = String::new();
        live.render(60_000, 30_000, "", &mut fresh);
        assert!(fresh.contains("b24watch_agent_up{host=\"web-1\"} 1\n"), "{fresh}");
        assert!(fresh.contains("b24watch_load1{host=\"web-1\"} 0.7\n"), "{fresh}");
        assert!(!fresh.contains("b24watch_probe_success"), "{fresh}");
        // Silent for an hour: agent_up 0, and the host as last seen, so its alerts do not resolve.
        let mut stale = String::new();
        live.render(3_650_000, 30_000, "", &mut stale);
        assert!(stale.contains("b24watch_agent_up{host=\"web-1\"} 0\n"), "{stale}");
        assert!(stale.contains("b24watch_load1{host=\"web-1\"} 0.7\n"), "{stale}");
        assert!(!stale.contains("b24watch_probe_success"), "{stale}");
        assert_eq!(live.statuses(3_650_000, 30_000)[0].series, 1);
    }

    /// A series sent less often than batches (a probe every 5 s, batches every second) stays
    /// exposed through the moment the agent dies: no gap that would resolve its alert.
    #[test]
    fn a_less_frequent_series_has_no_gap_when_the_agent_dies() {
        let live = Live::default();
        live.observe("web-1", 1_000, &[series("probe_success", "target=\"a\"", 1_000, 0.0)]);
        for t in (2_000..=5_000).step_by(1_000) {
            live.observe("web-1", t, &[series("load1", "", t, 0.5)]);
        }
        for now in (5_000..=30_000).step_by(500) {
            let mut out = String::new();
            live.render(now, 10_000, "", &mut out);
            assert!(out.contains("b24watch_probe_success{host=\"web-1\",target=\"a\"} 0\n"), "at {now}: {out}");
        }
    }

    /// An agent back from a silence: what was held stays until the new process sends it again
    /// (or one timeout passes), so a portal still down does not resolve and fire again.
    #[test]
    fn held_values_bridge_the_return_of_the_agent() {
        let live = Live::default();
        live.set_agent_timeout(10_000);
        live.observe("web-1", 1_000, &[series("probe_success", "target=\"a\"", 1_000, 0.0)]);
        live.observe("web-1", 2_000, &[series("load1", "", 2_000, 0.5)]);
        // Back after 40 s of silence; the first batches carry no probe result yet.
        for t in (42_000..=52_000).step_by(1_000) {
            live.observe("web-1", t, &[series("load1", "", t, 0.5)]);
            let mut out = String::new();
            live.render(t, 10_000, "", &mut out);
            assert!(out.contains("b24watch_probe_success{host=\"web-1\",target=\"a\"} 0\n"), "at {t}: {out}");
        }
        // Not sent again within a timeout of the return: gone, as for any series an agent stops sending.
        live.observe("web-1", 53_000, &[series("load1", "", 53_000, 0.5)]);
        let mut out = String::new();
        live.render(53_000, 10_000, "", &mut out);
        assert!(!out.contains("b24watch_probe_success"), "{out}");
    }

    #[test]
    fn backfilled_older_point_does_not_replace_newer_value() {
        let live = Live::default();
        live.observe("web-1", 1_000, &[series("load1", "", 900, 0.5)]);
        live.observe("web-1", 2_000, &[series("load1", "", 100, 9.0)]);
        let mut out = String::new();
        live.render(2_000, 60_000, "", &mut out);
        assert!(out.contains("b24watch_load1{host=\"web-1\"} 0.5\n"), "{out}");
    }

    #[test]
    fn hostile_held_content_is_escaped_or_left_out() {
        let live = Live::default();
        live.observe(
            "x\"} 1\nevil",
            1_000,
            &[
                series("load1", "", 1, 1.0),
                series("agent_up", "", 1, 1.0),
                series("collector_ready", "", 1, 1.0),
                series("load5", "__name__=\"x\"", 1, 1.0),
                series("load5", "a=\"1\",a=\"2\"", 1, 1.0),
                series("load5", "bad-name=\"1\"", 1, 1.0),
                series("load5", "a=\"unterminated", 1, 1.0),
                series("bad name", "", 1, 1.0),
                series("load15", "a=\"q\\\"\\n\"", 1, f64::INFINITY),
            ],
        );
        let mut out = String::new();
        live.render(1_000, 60_000, "", &mut out);
        assert!(out.contains("b24watch_agent_up{host=\"x\\\"} 1\\nevil\"} 1\n"), "{out}");
        assert!(out.contains("b24watch_load1{host=\"x\\\"} 1\\nevil\"} 1\n"), "{out}");
        assert!(out.contains("b24watch_load15{host=\"x\\\"} 1\\nevil\",a=\"q\\\"\\n\"} +Inf\n"), "{out}");
        assert_eq!(out.matches("b24watch_agent_up{").count(), 1, "{out}");
        assert!(!out.contains("collector_ready") && !out.contains("load5") && !out.contains("__name__"), "{out}");
        assert!(out.contains("b24watch_collector_exposition_skipped_series 7\n"), "{out}");
    }

    #[test]
    fn build_info_is_one_family_for_the_collector_and_its_agents() {
        let live = Live::default();
        let own = "component=\"collector\",version=\"1\",commit=\"c\"";
        let mut alone = String::new();
        live.render(1_000, 60_000, own, &mut alone);
        assert!(alone.contains(&format!("b24watch_build_info{{{own}}} 1\n")), "{alone}");
        live.observe("a", 1_000, &[series("build_info", "component=\"agent\",version=\"1\",commit=\"c\"", 1, 1.0)]);
        let mut both = String::new();
        live.render(1_000, 60_000, own, &mut both);
        assert_eq!(both.matches("# TYPE b24watch_build_info gauge").count(), 1, "{both}");
        assert!(both.contains(&format!("b24watch_build_info{{{own}}} 1\n")), "{both}");
        assert!(both.contains("b24watch_build_info{host=\"a\",component=\"agent\""), "{both}");
    }

    #[test]
    fn families_are_grouped_with_one_header_each() {
        let live = Live::default();
        live.observe("b", 1_000, &[series("filesystem_size_bytes", "mountpoint=\"/\"", 1, 1.0)]);
        live.observe("a", 1_000, &[series("filesystem_size_bytes", "mountpoint=\"/\"", 1, 2.0)]);
        let mut out = String::new();
        live.render(1_000, 60_000, "", &mut out);
        assert_eq!(out.matches("# TYPE b24watch_filesystem_size_bytes gauge").count(), 1, "{out}");
        let a = out.find("host=\"a\",mountpoint").expect("a rendered");
        let b = out.find("host=\"b\",mountpoint").expect("b rendered");
        assert!(a < b);
    }

    /// Remote write sends the computed part; the agents' series go from their stored samples,
    /// so the computed part is the full exposition minus exactly those.
    #[test]
    fn the_computed_part_is_the_exposition_without_the_agents_series() {
        let live = Live::default();
        live.observe(
            "web-1",
            1_000,
            &[
                series("load1", "", 900, 0.5),
                series("build_info", "component=\"agent\",version=\"1\"", 900, 1.0),
                series("agent_up", "", 900, 1.0),
            ],
        );
        let (mut full, mut computed) = (String::new(), String::new());
        live.render(2_000, 30_000, "component=\"collector\"", &mut full);
        live.render_computed(2_000, 30_000, "component=\"collector\"", &mut computed);
        for line in ["b24watch_agent_up{host=\"web-1\"} 1", "b24watch_build_info{component=\"collector\"} 1"] {
            assert!(computed.lines().any(|l| l == line), "{line} in:\n{computed}");
        }
        assert!(computed.contains("b24watch_agent_last_seen_timestamp_seconds{host=\"web-1\"} 1\n"));
        assert!(computed.contains("b24watch_collector_exposition_skipped_series 1\n"), "the reserved name is counted");
        let samples =
            |text: &str| -> Vec<String> { text.lines().filter(|l| !l.starts_with('#')).map(str::to_owned).collect() };
        let agents: Vec<String> = samples(&full).into_iter().filter(|l| !samples(&computed).contains(l)).collect();
        assert_eq!(
            agents,
            [
                "b24watch_build_info{host=\"web-1\",component=\"agent\",version=\"1\"} 1",
                "b24watch_load1{host=\"web-1\"} 0.5"
            ]
        );
    }
}
