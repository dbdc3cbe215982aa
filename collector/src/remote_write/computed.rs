//! The series the collector computes itself, remote-written: `b24watch_agent_up`,
//! `b24watch_agent_last_seen_timestamp_seconds`, uptime, SLA targets and open incidents,
//! `b24watch_collector_*` (with `b24watch_collector_links`, which alert rules read), the
//! collector's `b24watch_build_info` line and its `process_*` metrics. None of them is a stored
//! sample, so the outbox never sees them: without this, the shipped AgentDown and SLA rules and
//! the dashboards' liveness, SLA and incident panels are empty on a remote store.
//!
//! ## What is sent
//! Every `computed_interval_secs` (default 15 s, the shipped scrape interval) a target's
//! producer renders `/metrics` without the agents' series ([`crate::http::render_metrics`]), so
//! names, labels and values are those of `/metrics` by construction, and turns it into samples
//! at the evaluation time, plus the target's external labels. The agents' series are left out:
//! they already go from their stored samples, with their own timestamps. `process_*` get
//! `job="b24watch"`, the label the shipped scrape job gives them and the fleet dashboard selects
//! them by. A series present in the last evaluation and gone from this one gets a staleness
//! marker, as a scrape would give it (e.g. the `agent_up` of a revoked agent ends at once).
//!
//! ## Durability (why a bounded queue in memory)
//! These are derived current-state gauges, recomputed at every evaluation from what the store
//! holds. Each evaluation goes into the target's queue and the target's sender sends it in
//! order, between reads of its stored samples, with the same retries, backoff and counting: a
//! target that is down gets the evaluations of its outage afterwards, in order, so `agent_up`
//! and the SLA series have no hole there either. The queue is bounded
//! (`computed_backlog_bytes` of encoded requests); past it the oldest evaluations are dropped
//! and counted (`..._samples_dropped_total{reason="backlog_full"}`), never silently.
//!
//! The queue is not persisted: writing every evaluation of every target into the database would
//! put a write every few seconds next to ingest's writer for values the collector can compute
//! again, and nothing is evaluated while the collector is down anyway. What a restart loses is
//! the evaluations still queued for a target that was down at that moment (counted nowhere but
//! bounded by that outage); the stored samples, which cannot be recomputed, keep their durable
//! cursor. Nothing here runs in the ingest path: rendering reads the same in-memory state a
//! scrape of `/metrics` reads.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::wire;
use crate::metrics::RemoteWriteStats;

/// Renders the computed part of `/metrics` into the string.
pub type Render = Arc<dyn Fn(&mut String) + Send + Sync>;

/// Prometheus' staleness marker: a NaN with this bit pattern ends a series.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Label added to `process_*` (what the shipped scrape job `b24watch` gives them).
const PROCESS_JOB: (&str, &str) = ("job", "b24watch");

/// One family of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Family name (`# TYPE` line).
    pub name: String,
    /// Metadata type number ([`wire::TYPE_GAUGE`], ...).
    pub kind: i32,
    /// Help text.
    pub help: String,
}

/// One sample line: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Labels, `__name__` included (last).
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

/// An exposition read back: its families (metadata) and sample lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Families in order.
    pub families: Vec<Family>,
    /// Sample lines in order.
    pub lines: Vec<Line>,
    /// Lines that did not parse (none from our own rendering; counted as `invalid_series`).
    pub invalid: u64,
}

fn kind_number(kind: &str) -> i32 {
    match kind {
        "counter" => wire::TYPE_COUNTER,
        "gauge" => wire::TYPE_GAUGE,
        "histogram" => 3,
        "summary" => 5,
        _ => wire::TYPE_UNKNOWN,
    }
}

/// Where a sample line's label block ends: the `}` outside a quoted value.
fn label_block_end(text: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Reads the text exposition format as the collector writes it (`# HELP`, `# TYPE`, then
/// `name{labels} value` lines without timestamps), labels unescaped.
pub fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    let mut helps: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            helps.insert(name.to_owned(), help.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            out.families.push(Family {
                name: name.to_owned(),
                kind: kind_number(kind.trim()),
                help: helps.get(name).cloned().unwrap_or_default(),
            });
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let parsed = (|| {
            let name_end = line.find(['{', ' '])?;
            let name = &line[..name_end];
            let (labels, rest) = if line[name_end..].starts_with('{') {
                let body = &line[name_end + 1..];
                let end = label_block_end(body)?;
                (crate::live::parse_labels(&body[..end])?, &body[end + 1..])
            } else {
                (Vec::new(), &line[name_end..])
            };
            let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
            let mut labels = labels;
            labels.push(("__name__".to_owned(), name.to_owned()));
            Some(Line { labels, value })
        })();
        match parsed {
            Some(l) => out.lines.push(l),
            None => out.invalid += 1,
        }
    }
    out
}

/// One queued evaluation part: an encoded request.
#[derive(Debug, Clone)]
pub struct Queued {
    /// Position in the queue (never reused).
    pub seq: u64,
    /// Evaluation time, unix ms.
    pub at_ms: i64,
    /// Snappy-compressed `WriteRequest`.
    pub body: Bytes,
    /// Samples in it.
    pub samples: u64,
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Queued>,
    bytes: usize,
    next_seq: u64,
}

/// A target's queue of computed evaluations, bounded in bytes.
#[derive(Debug)]
pub struct Queue {
    inner: Mutex<Inner>,
    max_bytes: usize,
    /// Woken when something is queued.
    pub ready: tokio::sync::Notify,
}

impl Queue {
    /// An empty queue holding at most `max_bytes` of encoded requests (the newest evaluation is
    /// always kept, whatever its size).
    pub fn new(max_bytes: usize) -> Self {
        Queue { inner: Mutex::new(Inner::default()), max_bytes, ready: tokio::sync::Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one evaluation's requests; drops the oldest queued ones past the bound. Returns
    /// the samples dropped.
    pub fn push(&self, at_ms: i64, requests: Vec<(Bytes, u64)>) -> u64 {
        let mut inner = self.lock();
        let newest = requests.len();
        for (body, samples) in requests {
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.bytes += body.len();
            inner.items.push_back(Queued { seq, at_ms, body, samples });
        }
        let mut dropped = 0;
        while inner.bytes > self.max_bytes && inner.items.len() > newest {
            let Some(old) = inner.items.pop_front() else { break };
            inner.bytes -= old.body.len();
            dropped += old.samples;
        }
        drop(inner);
        self.ready.notify_one();
        dropped
    }

    /// The oldest queued request.
    pub fn front(&self) -> Option<Queued> {
        self.lock().items.front().cloned()
    }

    /// Removes the request `seq` once sent (unless the bound dropped it meanwhile).
    pub fn sent(&self, seq: u64) {
        let mut inner = self.lock();
        if inner.items.front().is_some_and(|q| q.seq == seq)
            && let Some(q) = inner.items.pop_front()
        {
            inner.bytes -= q.body.len();
        }
    }

    /// Samples queued and the evaluation time of the oldest (0: empty).
    pub fn pending(&self) -> (u64, i64) {
        let inner = self.lock();
        (inner.items.iter().map(|q| q.samples).sum(), inner.items.front().map_or(0, |q| q.at_ms))
    }
}

/// Turns evaluations into requests for one target; remembers the last one's series for the
/// staleness markers and when metadata was last sent.
#[derive(Debug)]
pub struct Snapshotter {
    external_labels: Vec<(String, String)>,
    max_samples: usize,
    previous: HashSet<Vec<(String, String)>>,
    metadata_sent: Option<Instant>,
}

impl Snapshotter {
    /// For a target with these external labels and request size.
    pub fn new(external_labels: Vec<(String, String)>, max_samples: usize) -> Self {
        Snapshotter { external_labels, max_samples: max_samples.max(1), previous: HashSet::new(), metadata_sent: None }
    }

    /// The requests of one evaluation (`text` rendered at `at_ms`), unencoded, with their sample
    /// counts; and the lines that did not parse.
    pub fn requests(&mut self, text: &str, at_ms: i64, now: Instant) -> (Vec<(wire::WriteRequest, u64)>, u64) {
        let exposition = parse(text);
        let mut series: Vec<(Vec<(String, String)>, f64)> = Vec::with_capacity(exposition.lines.len());
        let mut current = HashSet::with_capacity(exposition.lines.len());
        for line in exposition.lines {
            let mut labels = line.labels;
            let name = labels.iter().find(|(n, _)| n == "__name__").map(|(_, v)| v.clone()).unwrap_or_default();
            if name.starts_with("process_") && !labels.iter().any(|(n, _)| n == PROCESS_JOB.0) {
                labels.push((PROCESS_JOB.0.to_owned(), PROCESS_JOB.1.to_owned()));
            }
            for (n, v) in &self.external_labels {
                if !labels.iter().any(|(have, _)| have == n) {
                    labels.push((n.clone(), v.clone()));
                }
            }
            labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            // A repeated series (none in our rendering) is sent once.
            if current.insert(labels.clone()) {
                series.push((labels, line.value));
            }
        }
        let stale = f64::from_bits(STALE_NAN);
        let mut gone: Vec<Vec<(String, String)>> =
            self.previous.iter().filter(|labels| !current.contains(*labels)).cloned().collect();
        gone.sort();
        series.extend(gone.into_iter().map(|labels| (labels, stale)));
        self.previous = current;
        let due = self.metadata_sent.is_none_or(|at| now.duration_since(at) > super::METADATA_EVERY);
        let mut out = Vec::new();
        let mut request = wire::WriteRequest::default();
        if due {
            self.metadata_sent = Some(now);
            request.metadata = exposition
                .families
                .into_iter()
                .map(|f| wire::MetricMetadata {
                    r#type: f.kind,
                    metric_family_name: f.name,
                    help: f.help,
                    unit: String::new(),
                })
                .collect();
        }
        for (labels, value) in series {
            request.timeseries.push(wire::TimeSeries {
                labels: labels.into_iter().map(|(name, value)| wire::Label { name, value }).collect(),
                samples: vec![wire::Sample { value, timestamp: at_ms }],
            });
            if request.timeseries.len() >= self.max_samples {
                let n = request.timeseries.len() as u64;
                out.push((std::mem::take(&mut request), n));
            }
        }
        if !request.timeseries.is_empty() || !request.metadata.is_empty() {
            let n = request.timeseries.len() as u64;
            out.push((request, n));
        }
        (out, exposition.invalid)
    }
}

/// Evaluates the computed series every `interval` into `queue` until shutdown.
pub async fn produce(
    render: Render,
    mut snapshotter: Snapshotter,
    queue: Arc<Queue>,
    stats: Arc<RemoteWriteStats>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let render = Arc::clone(&render);
        let rendered = tokio::task::spawn_blocking(move || {
            let mut text = String::with_capacity(16 * 1024);
            let at_ms = crate::now_ms();
            render(&mut text);
            (text, at_ms)
        })
        .await;
        let Ok((text, at_ms)) = rendered else { continue };
        let (requests, invalid) = snapshotter.requests(&text, at_ms, Instant::now());
        if invalid > 0 {
            stats.dropped("invalid_series", invalid);
        }
        let mut bodies = Vec::with_capacity(requests.len());
        for (request, samples) in requests {
            match wire::encode(&request) {
                Ok(body) => bodies.push((body, samples)),
                Err(err) => {
                    warn!(target_name = %stats.name, error = %err, samples, "remote write: encoding computed series failed; dropped");
                    stats.dropped("rejected", samples);
                }
            }
        }
        let dropped = queue.push(at_ms, bodies);
        if dropped > 0 {
            stats.computed_dropped.fetch_add(dropped, Ordering::Relaxed);
            warn!(
                target_name = %stats.name,
                dropped_samples = dropped,
                "remote write: the computed series' queue passed computed_backlog_bytes; the oldest evaluations were dropped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP b24watch_agent_up 1 when the agent's last batch arrived within the agent timeout, else 0.\n\
# TYPE b24watch_agent_up gauge\n\
b24watch_agent_up{host=\"web-1\"} 1\n\
b24watch_agent_up{host=\"web \\\"2\\\"}\"} 0\n\
# HELP b24watch_collector_store_commit_seconds Time.\n\
# TYPE b24watch_collector_store_commit_seconds histogram\n\
b24watch_collector_store_commit_seconds_bucket{le=\"+Inf\"} 3\n\
b24watch_collector_store_commit_seconds_sum 0.5\n\
# HELP b24watch_collector_links Links.\n\
# TYPE b24watch_collector_links gauge\n\
b24watch_collector_links{external_url=\"https://c.example\",runbook_url=\"https://c.example/runbooks\"} 1\n\
# HELP process_open_fds Number of open file descriptors.\n\
# TYPE process_open_fds gauge\n\
process_open_fds 12\n\
b24watch_uptime_ratio{host=\"web-1\",window=\"1d\"} NaN\n";

    fn labels(pairs: &[(&str, &str)]) -> Vec<wire::Label> {
        let mut v: Vec<wire::Label> =
            pairs.iter().map(|(n, v)| wire::Label { name: (*n).into(), value: (*v).into() }).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    #[test]
    fn the_exposition_is_read_back_with_unescaped_labels_types_and_help() {
        let e = parse(TEXT);
        assert_eq!(e.invalid, 0);
        assert_eq!(e.lines.len(), 7);
        assert!(e.lines[1].labels.contains(&("host".into(), "web \"2\"}".into())), "{:?}", e.lines[1]);
        assert!(e.lines[6].value.is_nan());
        let kinds: Vec<(&str, i32)> = e.families.iter().map(|f| (f.name.as_str(), f.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("b24watch_agent_up", wire::TYPE_GAUGE),
                ("b24watch_collector_store_commit_seconds", 3),
                ("b24watch_collector_links", wire::TYPE_GAUGE),
                ("process_open_fds", wire::TYPE_GAUGE)
            ]
        );
        assert_eq!(e.families[2].help, "Links.");
        assert_eq!(parse("b24watch_x{host=\"a} 1\nb24watch_y abc\n").invalid, 2);
    }

    #[test]
    fn an_evaluation_becomes_samples_at_its_time_named_as_on_metrics_with_external_labels() {
        let mut s = Snapshotter::new(vec![("cluster".into(), "msk".into()), ("job".into(), "other".into())], 1000);
        let now = Instant::now();
        let (requests, invalid) = s.requests(TEXT, 1_800_000_000_000, now);
        assert_eq!(invalid, 0);
        assert_eq!(requests.len(), 1);
        let (request, samples) = &requests[0];
        assert_eq!(*samples, 7);
        assert_eq!(request.metadata.len(), 4, "type and help with the first evaluation");
        let up = &request.timeseries[0];
        assert_eq!(
            up.labels,
            labels(&[("__name__", "b24watch_agent_up"), ("host", "web-1"), ("cluster", "msk"), ("job", "other")]),
        );
        assert_eq!(up.samples, vec![wire::Sample { value: 1.0, timestamp: 1_800_000_000_000 }]);
        let links = request.timeseries.iter().find(|t| t.labels.iter().any(|l| l.value == "b24watch_collector_links"));
        assert!(
            links.is_some_and(|t| t.labels.iter().any(|l| l.name == "runbook_url" && l.value.ends_with("/runbooks"))),
            "b24watch_collector_links, which alert rules read, is sent"
        );
        let fds = request.timeseries.iter().find(|t| t.labels.iter().any(|l| l.value == "process_open_fds"));
        assert_eq!(
            fds.map(|t| t.labels.clone()),
            Some(labels(&[("__name__", "process_open_fds"), ("job", "b24watch"), ("cluster", "msk")])),
            "process_* carry the shipped scrape job's label, which wins over an external label"
        );
        for t in &request.timeseries {
            assert!(t.labels.windows(2).all(|w| w[0].name < w[1].name), "labels sorted: {:?}", t.labels);
        }
    }

    #[test]
    fn a_series_gone_from_one_evaluation_to_the_next_gets_a_staleness_marker() {
        let mut s = Snapshotter::new(Vec::new(), 1000);
        let now = Instant::now();
        s.requests(TEXT, 1000, now);
        let without_web2 = TEXT.replace("b24watch_agent_up{host=\"web \\\"2\\\"}\"} 0\n", "");
        let (requests, _) = s.requests(&without_web2, 16_000, now);
        assert!(requests[0].0.metadata.is_empty(), "metadata again only after METADATA_EVERY");
        let stale: Vec<&wire::TimeSeries> =
            requests[0].0.timeseries.iter().filter(|t| t.samples[0].value.to_bits() == STALE_NAN).collect();
        assert_eq!(stale.len(), 1);
        assert!(stale[0].labels.iter().any(|l| l.value == "web \"2\"}"));
        assert_eq!(stale[0].samples[0].timestamp, 16_000);
        // Sent once: the third evaluation has no marker.
        let (requests, _) = s.requests(&without_web2, 31_000, now);
        assert!(requests[0].0.timeseries.iter().all(|t| t.samples[0].value.to_bits() != STALE_NAN));
    }

    #[test]
    fn a_large_evaluation_is_split_at_max_samples_per_send() {
        let mut s = Snapshotter::new(Vec::new(), 3);
        let (requests, _) = s.requests(TEXT, 1000, Instant::now());
        assert_eq!(requests.iter().map(|r| r.1).collect::<Vec<_>>(), [3, 3, 1]);
        assert_eq!(requests.iter().map(|r| r.0.timeseries.len() as u64).sum::<u64>(), 7);
    }

    #[test]
    fn the_queue_keeps_order_drops_the_oldest_past_its_bound_and_counts_them() {
        let q = Queue::new(10);
        let body = |n: usize| Bytes::from(vec![0u8; n]);
        assert_eq!(q.push(1, vec![(body(4), 2)]), 0);
        assert_eq!(q.push(2, vec![(body(4), 3)]), 0);
        let first = q.front().expect("queued");
        assert_eq!((first.at_ms, first.samples), (1, 2));
        // Past 10 bytes: the oldest evaluation goes, counted.
        assert_eq!(q.push(3, vec![(body(4), 5)]), 2);
        assert_eq!(q.pending(), (8, 2));
        // The request being sent was dropped meanwhile: its ack removes nothing else.
        q.sent(first.seq);
        assert_eq!(q.pending(), (8, 2));
        let next = q.front().expect("queued");
        q.sent(next.seq);
        assert_eq!(q.pending(), (5, 3));
        // An evaluation larger than the bound is kept alone.
        assert_eq!(q.push(4, vec![(body(30), 1)]), 5);
        assert_eq!(q.pending(), (1, 4));
    }
}
