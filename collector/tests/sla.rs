//! SLA figures through the real store (issue 14): evidence from batches delivered in any order,
//! incidents that belong to time and not to query windows, collector downtime never charged.

use std::sync::Arc;

use b24watch_collector::config::SlaConfig;
use b24watch_collector::sla::{Span, State};
use b24watch_collector::store::query::Reader;
use b24watch_collector::store::{self, CheckIn, GapIn, IngestBatch, SeriesIn, Store, WriterHandle};
use b24watch_collector::uptime::Uptime;
use proptest::prelude::*;

const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
/// Evidence span of the test stores (the agent timeout).
const SPAN: i64 = 10 * SEC;
const HOST: &str = "web-01";
const URL: &str = "https://portal.example/";

/// 2026-11-01T00:00:00Z: a month boundary in UTC.
fn november() -> i64 {
    jiff::civil::date(2026, 11, 1).to_zoned(jiff::tz::TimeZone::UTC).expect("date").timestamp().as_millisecond()
}

/// A store in a temporary directory with its writer running, and the runtime that feeds it.
struct TestStore {
    dir: tempfile::TempDir,
    store: Option<Store>,
    writer: Option<WriterHandle>,
    reader: Arc<Reader>,
    rt: tokio::runtime::Runtime,
    seq: u64,
}

impl TestStore {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, reader, writer) =
            Store::open(dir.path(), 10_000, None, SPAN, store::Retention::default()).expect("store");
        store::admin::Admin::open(dir.path()).expect("admin").enroll(HOST, false, 0).expect("enroll");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        TestStore { dir, store: Some(store), writer: Some(writer), reader: Arc::new(reader), rt, seq: 0 }
    }

    fn ingest(&mut self, batch: Batch) {
        self.seq += 1;
        let seq = self.seq;
        let mut all = Vec::new();
        if !batch.probe.is_empty() {
            let points = batch.probe.iter().map(|(at, up)| (*at, if *up { 1.0 } else { 0.0 })).collect();
            all.push(SeriesIn::new(0, "probe_success", format!("target=\"{URL}\""), 1, points));
        }
        let ingest = IngestBatch {
            gaps: batch.gaps,
            checks: batch.checks,
            ..IngestBatch::direct(HOST, seq, batch.created, all)
        };
        let store = self.store.as_ref().expect("store open");
        let outcome = self.rt.block_on(store.ingest(ingest)).expect("ingest");
        assert!(matches!(outcome, store::Outcome::Stored { .. }), "{outcome:?}");
    }

    /// The uptime service over this store; with `record_run`, a collector run started at `now`.
    fn uptime(&self, cfg: SlaConfig, record_run: bool, now: i64) -> Run {
        let admin = Arc::new(store::admin::Admin::open(self.dir.path()).expect("admin"));
        let run = record_run.then(|| admin.start_run(now).expect("run"));
        Run { uptime: Arc::new(Uptime::new(cfg, Arc::clone(&self.reader))), admin, run }
    }

    /// Every evidence interval of one signal.
    fn evidence(&self, signal: &str) -> Vec<Span> {
        self.reader
            .evidence(HOST, i64::MIN, i64::MAX)
            .expect("evidence")
            .into_iter()
            .filter(|(s, _, _)| s == signal)
            .map(|(_, _, span)| span)
            .collect()
    }
}

/// The uptime service and, as a running collector records it, its run.
struct Run {
    uptime: Arc<Uptime>,
    admin: Arc<store::admin::Admin>,
    run: Option<store::admin::RunId>,
}

impl std::ops::Deref for Run {
    type Target = Uptime;
    fn deref(&self) -> &Uptime {
        &self.uptime
    }
}

impl Run {
    fn heartbeat(&self, now: i64) -> Result<(), store::Error> {
        self.run.map_or(Ok(()), |run| self.admin.heartbeat(run, now))
    }

    fn stopped(&self, now: i64) -> Result<(), store::Error> {
        self.run.map_or(Ok(()), |run| self.admin.stop_run(run, now))
    }

    fn add_maintenance(&self, host: &str, from: i64, to: i64, reason: &str, now: i64) -> Result<i64, store::Error> {
        self.admin.add_maintenance(host, from, to, reason, "ops", now)
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        drop(self.store.take());
        if let Some(writer) = self.writer.take() {
            writer.join();
        }
    }
}

/// What one test batch carries.
#[derive(Debug, Clone, Default)]
struct Batch {
    created: i64,
    probe: Vec<(i64, bool)>,
    checks: Vec<CheckIn>,
    gaps: Vec<GapIn>,
}

fn check(at: i64, status: i32) -> CheckIn {
    CheckIn {
        check: "portal_probe".into(),
        target: URL.into(),
        status,
        severity: 4,
        reason: if status == 1 { String::new() } else { "http_status".into() },
        message: String::new(),
        at_ms: at,
    }
}

const OK: i32 = 1;
const FAILED: i32 = 2;
const ERROR: i32 = 3;

fn sla_config() -> SlaConfig {
    SlaConfig {
        target: 0.995,
        targets: Default::default(),
        contract_targets: Default::default(),
        rules: b24watch_collector::sla::Rules::default(),
        calendar: None,
        timezone: jiff::tz::TimeZone::UTC,
        language: b24watch_collector::i18n::Lang::En,
        maintenance: Vec::new(),
        contracts: Default::default(),
    }
}

fn span(from: i64, to: i64, state: State) -> Span {
    Span { from, to, state }
}

/// Item 1: down@100 s, down@105 s, down@110 s, then a late up@106 s: down 16 s, up 4 s.
#[test]
fn a_late_sample_inside_a_down_run_keeps_the_evidence_of_the_later_samples() {
    let mut store = TestStore::new();
    let t = november();
    for at in [100, 105, 110] {
        store.ingest(Batch { created: t + at * SEC, probe: vec![(t + at * SEC, false)], ..Batch::default() });
    }
    store.ingest(Batch { created: t + 106 * SEC, probe: vec![(t + 106 * SEC, true)], ..Batch::default() });
    assert_eq!(
        store.evidence("portal"),
        vec![
            span(t + 100 * SEC, t + 106 * SEC, State::Down),
            span(t + 106 * SEC, t + 110 * SEC, State::Up),
            span(t + 110 * SEC, t + 120 * SEC, State::Down),
        ]
    );
}

/// Item 5: failed@0, error@60, failed@120, ok@180 is one incident of 180 s.
#[test]
fn an_error_result_does_not_end_an_incident() {
    let mut store = TestStore::new();
    let t = november();
    for (at, status) in [(0, FAILED), (60, ERROR), (120, FAILED), (180, OK)] {
        let at = t + at * SEC;
        store.ingest(Batch { created: at, checks: vec![check(at, status)], ..Batch::default() });
    }
    let uptime = store.uptime(sla_config(), false, t + HOUR);
    let incidents: Vec<_> = uptime
        .incidents(HOST, t - HOUR, t + HOUR, t + HOUR)
        .expect("incidents")
        .into_iter()
        .filter(|i| i.check == "portal_probe")
        .collect();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!((incidents[0].start_ms, incidents[0].end_ms), (t, Some(t + 180 * SEC)));
    assert_eq!(incidents[0].duration_ms, 180 * SEC);
}

/// Item 3: a check incident queried with `to` before its recovery keeps its true end and
/// duration; the part inside the window is stated separately.
#[test]
fn a_check_incident_keeps_its_true_end_whatever_the_window() {
    let mut store = TestStore::new();
    let t = november();
    for (at, status) in [(-60, OK), (0, FAILED), (120, OK)] {
        let at = t + at * SEC;
        store.ingest(Batch { created: at, checks: vec![check(at, status)], ..Batch::default() });
    }
    let now = t + 10 * MIN;
    let uptime = store.uptime(sla_config(), false, now);
    let cut = uptime.incidents(HOST, t - HOUR, t + MIN, now).expect("incidents");
    let probe: Vec<_> = cut.iter().filter(|i| i.check == "portal_probe").collect();
    assert_eq!(probe.len(), 1, "{cut:?}");
    assert_eq!((probe[0].start_ms, probe[0].end_ms, probe[0].duration_ms), (t, Some(t + 120 * SEC), 120 * SEC));
}

/// Item 3: a one-hour incident across a month boundary is listed in both months with its true
/// start, end and duration; each month's totals count only its own half.
#[test]
fn an_incident_across_months_is_whole_in_both_reports_and_counted_once() {
    let mut store = TestStore::new();
    let t = november();
    for (at, status) in [(-2 * HOUR, OK), (-30 * MIN, FAILED), (30 * MIN, OK)] {
        let at = t + at;
        store.ingest(Batch { created: at, checks: vec![check(at, status)], ..Batch::default() });
    }
    let now = t + 28 * 24 * HOUR;
    let uptime = store.uptime(sla_config(), false, now);
    let mut counted = 0;
    for month in ["2026-10", "2026-11"] {
        let report = b24watch_collector::report::build(&uptime, month, Some(HOST), now).expect("report");
        let host = &report.hosts[0];
        let probe: Vec<_> = host.incidents.iter().filter(|i| i.check == "portal_probe").collect();
        assert_eq!(probe.len(), 1, "{month}: {:?}", host.incidents);
        assert_eq!(
            (probe[0].start_ms, probe[0].end_ms, probe[0].duration_ms),
            (t - 30 * MIN, Some(t + 30 * MIN), HOUR)
        );
        assert_eq!(probe[0].in_window_ms, 30 * MIN, "{month}");
        counted += host.incidents_by_severity["critical"].duration_ms;
        let csv = b24watch_collector::report::csv(&report);
        let row = csv.lines().find(|l| l.starts_with("incident,")).expect("incident row");
        assert!(row.contains(&format!(",{HOUR},")) && row.contains(&format!(",{},", 30 * MIN)), "{row}");
    }
    assert_eq!(counted, HOUR, "the months' totals add up to the incident once");
}

/// Item 3: a silent agent's incident is not clipped to the window: its start is when the
/// silence began, even when the window starts later.
#[test]
fn a_silent_agent_incident_keeps_its_true_start_whatever_the_window() {
    let mut store = TestStore::new();
    let t = november();
    let collector_started = t - 2 * HOUR;
    for at in (0..=60).step_by(10) {
        store.ingest(Batch { created: t - HOUR + at * SEC, ..Batch::default() });
    }
    // Silent for an hour, then back.
    for at in (0..=60).step_by(10) {
        store.ingest(Batch { created: t + at * SEC, ..Batch::default() });
    }
    let now = t + 10 * MIN;
    let running = store.uptime(sla_config(), true, collector_started);
    running.heartbeat(now).expect("heartbeat");
    let silence_start = t - HOUR + 60 * SEC + SPAN;
    let whole = running.incidents(HOST, t - 2 * HOUR, now, now).expect("incidents");
    let agent: Vec<_> = whole.iter().filter(|i| i.check == "agent").collect();
    assert_eq!(agent.len(), 1, "{whole:?}");
    assert_eq!((agent[0].start_ms, agent[0].end_ms), (silence_start, Some(t)));
    let window = running.incidents(HOST, t - 30 * MIN, t - 20 * MIN, now).expect("incidents");
    let agent: Vec<_> = window.iter().filter(|i| i.check == "agent").collect();
    assert_eq!(agent.len(), 1, "{window:?}");
    assert_eq!((agent[0].start_ms, agent[0].end_ms), (silence_start, Some(t)), "clipped to the window");
}

/// Item 2: a report made while the collector is stopped charges nothing for the time since the
/// collector's last heartbeat and opens no silent-agent incident.
#[test]
fn a_report_while_the_collector_is_stopped_charges_nothing_after_its_last_heartbeat() {
    let mut store = TestStore::new();
    let t = november();
    let run = store.uptime(sla_config(), true, t);
    for at in (0..=60).step_by(10) {
        store.ingest(Batch { created: t + at * SEC, ..Batch::default() });
    }
    run.heartbeat(t + 62 * SEC).expect("heartbeat");
    drop(run);
    // An hour later the collector is still stopped; an operator runs `report`.
    let now = t + HOUR;
    let report = store.uptime(sla_config(), false, now);
    let agent = report
        .host_uptime(HOST, t - HOUR, now, now, false)
        .expect("uptime")
        .into_iter()
        .find(|s| s.signal == "agent")
        .expect("agent signal");
    assert_eq!(agent.summary.down_ms, 0, "{agent:?}");
    let incidents = report.incidents(HOST, t - HOUR, now, now).expect("incidents");
    assert!(incidents.iter().all(|i| i.check != "agent"), "{incidents:?}");
}

/// Serves the HTTP API of `store` on a free port; the runtime keeps it alive.
fn serve(store: &TestStore, now: i64) -> (std::net::SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let run = store.uptime(sla_config(), true, now - 4 * HOUR);
    run.heartbeat(now).expect("heartbeat");
    let state = b24watch_collector::http::AppState {
        links: Arc::new(b24watch_collector::http::Links {
            external_url: "http://127.0.0.1".into(),
            runbook_url: "http://127.0.0.1/runbooks".into(),
        }),
        live: Arc::default(),
        metrics: Arc::default(),
        reader: Arc::clone(&store.reader),
        store: store.store.clone().expect("store open"),
        agent_timeout: std::time::Duration::from_millis(SPAN as u64),
        shutdown: tokio_util::sync::CancellationToken::new(),
        uptime: Arc::clone(&run.uptime),
        admin: Arc::clone(&run.admin),
    };
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move { axum::serve(listener, b24watch_collector::http::router(state)).await });
    (addr, rt)
}

/// One HTTP/1.1 request: (status, body).
fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("response");
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    (status, answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// Item 4: an acknowledgement names an incident the API listed; a start time that is no
/// incident's start is refused with 404 and acknowledges nothing.
#[test]
fn an_acknowledgement_must_name_a_listed_incident() {
    let mut store = TestStore::new();
    let now = b24watch_collector::now_ms();
    let t = now - 3 * HOUR;
    for at in (0..=60).step_by(10) {
        store.ingest(Batch { created: t + at * SEC, ..Batch::default() });
    }
    let (addr, _server) = serve(&store, now);
    let silence_start = t + 60 * SEC + SPAN;
    let bogus = format!(
        "{{\"host\":\"{HOST}\",\"check\":\"agent\",\"target\":\"\",\"start_ms\":{},\"by\":\"duty\"}}",
        silence_start + 10 * MIN
    );
    let (status, body) = http(addr, "POST", "/api/v1/incidents/ack", &bogus);
    assert_eq!(status, 404, "{body}");
    let (status, body) = http(addr, "GET", &format!("/api/v1/incidents?host={HOST}&from={t}"), "");
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).expect("json");
    let incident = listed["incidents"].as_array().expect("incidents")[0].clone();
    assert_eq!(incident["start_ms"], silence_start, "{listed}");
    assert!(incident["ack_ms"].is_null(), "nothing acknowledged by the refused request: {listed}");
    let (status, body) =
        http(addr, "POST", "/api/v1/incidents/ack", &format!("{{\"id\":{},\"by\":\"duty\"}}", incident["id"]));
    assert_eq!(status, 200, "{body}");
    let (_, body) = http(addr, "GET", &format!("/api/v1/incidents?host={HOST}&from={t}"), "");
    let listed: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(listed["incidents"][0]["ack_by"], "duty", "{listed}");
    let (status, body) = http(addr, "POST", "/api/v1/incidents/ack", "{\"id\":\"no-such-incident\",\"by\":\"duty\"}");
    assert_eq!(status, 404, "{body}");
}

/// Samples on a coarse grid (so that several fall on the same instant) with random states.
fn arb_samples() -> impl Strategy<Value = Vec<(i64, bool)>> {
    proptest::collection::vec((0i64..120, any::<bool>()), 1..25)
        .prop_map(|v| v.into_iter().map(|(at, up)| (at * 3 * SEC, up)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Item 1: the evidence is a function of the set of samples, whatever the delivery order and
    /// batching.
    #[test]
    fn evidence_does_not_depend_on_delivery_order_or_batching(
        samples in arb_samples(),
        order in any::<u64>(),
        cuts in proptest::collection::vec(any::<bool>(), 25),
    ) {
        let t = november();
        let deliver = |samples: &[(i64, bool)], cuts: &[bool]| {
            let mut store = TestStore::new();
            let mut batch: Vec<(i64, bool)> = Vec::new();
            for (idx, (at, up)) in samples.iter().enumerate() {
                batch.push((t + at, *up));
                if cuts.get(idx).copied().unwrap_or(true) || idx + 1 == samples.len() {
                    let created = batch.iter().map(|p| p.0).max().unwrap_or(t);
                    store.ingest(Batch { created, probe: std::mem::take(&mut batch), ..Batch::default() });
                }
            }
            store.evidence("portal")
        };
        let mut sorted = samples.clone();
        sorted.sort_unstable();
        let in_order = deliver(&sorted, &[]);
        let mut shuffled = samples.clone();
        let mut state = order | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let any_order = deliver(&shuffled, &cuts);
        prop_assert_eq!(&in_order, &any_order);
        let points: Vec<(i64, bool)> = samples.iter().map(|(at, up)| (t + at, *up)).collect();
        prop_assert_eq!(in_order, b24watch_collector::sla::point_evidence(&points, SPAN));
    }
}

/// A random timeline: agent ticks (10 s apart, with silences), probe samples and check results
/// (each at its own instant), collector runs (stopped cleanly or crashed), a maintenance window
/// and maybe service hours. Times relative to the November boundary.
#[derive(Debug, Clone)]
struct Timeline {
    ticks: Vec<i64>,
    probes: Vec<(i64, bool)>,
    checks: Vec<(i64, i32)>,
    /// `(start, last heartbeat, clean stop)`; the last run is alive at `now`.
    runs: Vec<(i64, i64, Option<i64>)>,
    maintenance: Option<(i64, i64)>,
    service_hours: bool,
}

const NOW: i64 = 2 * HOUR;

fn arb_timeline() -> impl Strategy<Value = Timeline> {
    let ticks = proptest::collection::vec((any::<bool>(), 0i64..4), 20..60).prop_map(|steps| {
        // Steps of 10 s, or a silence of up to ~20 min.
        let mut t = -90 * MIN;
        let mut out = Vec::new();
        for (silent, len) in steps {
            t += if silent { (len * 6 + 1) * MIN } else { 10 * SEC };
            if t < NOW {
                out.push(t);
            }
        }
        out
    });
    let probes = proptest::collection::vec((0i64..1000, any::<bool>()), 0..40)
        .prop_map(|v| v.into_iter().map(|(at, up)| (-90 * MIN + at * 10 * SEC, up)).collect::<Vec<_>>());
    let checks = proptest::collection::btree_map(0i64..1000, prop_oneof![Just(OK), Just(FAILED), Just(ERROR)], 0..20)
        .prop_map(|m| m.into_iter().map(|(at, status)| (-90 * MIN + at * 10 * SEC + 5 * SEC, status)).collect());
    let runs = (0i64..150, 1i64..40, any::<bool>()).prop_map(|(stop, down, clean)| {
        let stop = -100 * MIN + stop * MIN;
        let alive = stop - if clean { 0 } else { 7 * SEC };
        let restart = (stop + down * MIN).min(NOW - MIN);
        vec![(-110 * MIN, alive, clean.then_some(stop)), (restart.max(stop + SEC), NOW, None)]
    });
    let maintenance = proptest::option::of((0i64..180, 1i64..40))
        .prop_map(|m| m.map(|(a, len)| (-90 * MIN + a * MIN, -90 * MIN + (a + len) * MIN)));
    (ticks, probes, checks, runs, maintenance, any::<bool>()).prop_map(
        |(ticks, probes, checks, runs, maintenance, service_hours)| Timeline {
            ticks,
            probes,
            checks,
            runs,
            maintenance,
            service_hours,
        },
    )
}

/// One month's report: availability, totals, and (severity, count, duration) of incidents.
type MonthFigures = (Option<f64>, b24watch_collector::sla::Summary, Vec<(String, usize, i64)>);

/// Everything a client is shown, from one store.
#[derive(Debug, PartialEq)]
struct Figures {
    signals: Vec<(String, String, b24watch_collector::sla::Summary)>,
    incidents: Vec<(String, String, i64, Option<i64>, i64, i64)>,
    months: Vec<MonthFigures>,
}

/// Delivers the timeline in one order and batching, then computes every figure.
fn figures(timeline: &Timeline, seed: u64, cfg: &SlaConfig) -> (Figures, Vec<i64>) {
    let t = november();
    let mut store = TestStore::new();
    for (start, alive, stopped) in &timeline.runs {
        let run = store.uptime(cfg.clone(), true, t + start);
        run.heartbeat(t + alive).expect("heartbeat");
        if let Some(stopped) = stopped {
            run.stopped(t + stopped).expect("stopped");
        }
    }
    if let Some((a, b)) = timeline.maintenance {
        store.uptime(cfg.clone(), false, t).add_maintenance(HOST, t + a, t + b, "planned", t).expect("maintenance");
    }
    // Each sample and result rides on a tick chosen by the seed; ticks arrive in an order chosen
    // by the seed too (seed 0: in time order, each on the nearest tick).
    let mut rng = seed | 1;
    let mut next = |below: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % below.max(1) as u64) as usize
    };
    let mut batches: Vec<Batch> =
        timeline.ticks.iter().map(|tick| Batch { created: t + tick, ..Batch::default() }).collect();
    if batches.is_empty() {
        batches.push(Batch { created: t, ..Batch::default() });
    }
    let n = batches.len();
    for (idx, (at, up)) in timeline.probes.iter().enumerate() {
        let slot = if seed == 0 { idx % n } else { next(n) };
        batches[slot].probe.push((t + at, *up));
    }
    for (idx, (at, status)) in timeline.checks.iter().enumerate() {
        let slot = if seed == 0 { idx % n } else { next(n) };
        batches[slot].checks.push(check(t + at, *status));
    }
    if seed != 0 {
        for i in (1..n).rev() {
            let j = next(i + 1);
            batches.swap(i, j);
        }
    }
    for batch in batches {
        store.ingest(batch);
    }
    let now = t + NOW;
    let uptime = store.uptime(cfg.clone(), false, now);
    let (oct, _) = uptime.month_bounds("2026-10").expect("october");
    let signals = uptime
        .host_uptime(HOST, oct, now, now, false)
        .expect("uptime")
        .into_iter()
        .map(|s| (s.signal, s.target, s.summary))
        .collect();
    let incidents: Vec<(String, String, i64, Option<i64>, i64, i64)> = uptime
        .incidents(HOST, oct, now, now)
        .expect("incidents")
        .into_iter()
        .map(|i| (i.id, i.check, i.start_ms, i.end_ms, i.duration_ms, i.in_window_ms))
        .collect();
    let mut months = Vec::new();
    let mut in_months = Vec::new();
    for month in ["2026-10", "2026-11"] {
        let report = b24watch_collector::report::build(&uptime, month, Some(HOST), now).expect("report");
        let host = &report.hosts[0];
        let by_severity =
            host.incidents_by_severity.iter().map(|(s, v)| ((*s).to_owned(), v.count, v.duration_ms)).collect();
        months.push((host.availability, host.totals, by_severity));
        in_months.push(host.incidents.iter().map(|i| i.in_window_ms).sum::<i64>());
    }
    (Figures { signals, incidents, months }, in_months)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Acceptance 2: availability, incident lists and report totals are the same whatever the
    /// delivery order and batching, and splitting the period into months adds up to the whole.
    #[test]
    fn figures_do_not_depend_on_delivery_order_and_months_add_up(timeline in arb_timeline(), seed in 1u64..u64::MAX) {
        let mut cfg = sla_config();
        cfg.rules.silence_grace = 5 * MIN;
        if timeline.service_hours {
            cfg.calendar = Some(b24watch_collector::sla::Calendar::parse("Mon-Sun 00:20-23:40", "UTC").expect("hours"));
        }
        let (in_order, in_order_months) = figures(&timeline, 0, &cfg);
        let (shuffled, _) = figures(&timeline, seed, &cfg);
        prop_assert_eq!(&in_order, &shuffled);
        // Months add up: the judged signal's totals over October and November equal the whole.
        let judged = if in_order.signals.iter().any(|s| s.0 == "portal") { "portal" } else { "agent" };
        let whole = in_order.signals.iter().find(|s| s.0 == judged).map(|s| s.2).unwrap_or_default();
        let mut parts = in_order.months[0].1;
        parts.add(&in_order.months[1].1);
        prop_assert_eq!(whole, parts);
        // Every incident counted once: its parts inside the months add up to its part in the whole.
        let whole_in: i64 = in_order.incidents.iter().map(|i| i.5).sum();
        prop_assert_eq!(whole_in, in_order_months.iter().sum::<i64>());
    }
}

/// The agent signal of `HOST` over `[from, now)`.
fn agent_summary(uptime: &Uptime, from: i64, now: i64) -> b24watch_collector::sla::Summary {
    uptime
        .host_uptime(HOST, from, now, now, false)
        .expect("uptime")
        .into_iter()
        .find(|s| s.signal == "agent")
        .expect("agent signal")
        .summary
}

/// Semantics: a gap record ("dropped batches from A to B") proves the agent ran from A to B.
#[test]
fn a_gap_record_proves_the_agent_ran() {
    let mut store = TestStore::new();
    let t = november();
    let run = store.uptime(sla_config(), true, t - HOUR);
    for at in (0..=60).step_by(10) {
        store.ingest(Batch { created: t + at * SEC, ..Batch::default() });
    }
    let gap = GapIn {
        reason: "spool_full".into(),
        from_ms: t + 70 * SEC,
        to_ms: t + 39 * MIN + 50 * SEC,
        dropped_batches: 230,
        dropped_points: 2300,
    };
    store.ingest(Batch { created: t + 40 * MIN, gaps: vec![gap], ..Batch::default() });
    let now = t + 40 * MIN + 5 * SEC;
    run.heartbeat(now).expect("heartbeat");
    let s = agent_summary(&run, t, now);
    assert_eq!((s.down_ms, s.unknown_ms), (0, 0), "{s:?}");
    assert!(run.incidents(HOST, t, now, now).expect("incidents").is_empty());
}

/// Semantics: time before the collector's first run is unknown; a silence that began then is
/// judged, and charged, from the first run on.
#[test]
fn time_before_the_collectors_first_run_is_unknown() {
    let mut store = TestStore::new();
    let t = november();
    for at in (0..=60).step_by(10) {
        store.ingest(Batch { created: t - 2 * HOUR + at * SEC, ..Batch::default() });
    }
    let run = store.uptime(sla_config(), true, t - 30 * MIN);
    run.heartbeat(t).expect("heartbeat");
    let s = agent_summary(&run, t - 3 * HOUR, t);
    assert_eq!(s.down_ms, 30 * MIN, "{s:?}");
    let incidents = run.incidents(HOST, t - 3 * HOUR, t, t).expect("incidents");
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!((incidents[0].start_ms, incidents[0].end_ms), (t - 30 * MIN, None));
}

/// Semantics: a clean stop is recorded: collector downtime starts there, not at the last
/// heartbeat; after a crash it starts at the last heartbeat.
#[test]
fn a_clean_stop_is_where_collector_downtime_starts() {
    let store = TestStore::new();
    let t = november();
    let first = store.uptime(sla_config(), true, t - HOUR);
    first.heartbeat(t - 20 * MIN).expect("heartbeat");
    first.stopped(t - 20 * MIN + 7 * SEC).expect("stopped");
    let second = store.uptime(sla_config(), true, t - 10 * MIN);
    second.heartbeat(t - 5 * MIN).expect("heartbeat");
    // The second run crashed: no beat for 5 minutes.
    let down = store.reader.collector_down(t, b24watch_collector::uptime::RUN_STALE_MS).expect("runs");
    assert_eq!(down, vec![(i64::MIN, t - HOUR), (t - 20 * MIN + 7 * SEC, t - 10 * MIN), (t - 5 * MIN, i64::MAX)]);
}

/// Semantics: collector downtime does not push an agent's silence past the grace: only time
/// the collector was running counts towards it.
#[test]
fn collector_downtime_does_not_lengthen_a_silence() {
    let mut store = TestStore::new();
    let t = november();
    let first = store.uptime(sla_config(), true, t - HOUR);
    for at in (0..=60).step_by(10) {
        store.ingest(Batch { created: t - 11 * MIN + at * SEC, ..Batch::default() });
    }
    first.stopped(t - 9 * MIN).expect("stopped");
    let second = store.uptime(sla_config(), true, t + 5 * MIN);
    // The agent does not spool: it is heard again a minute after the restart, 16 minutes after
    // its last batch, 2 of them while the collector ran.
    for at in (0..=60).step_by(10) {
        store.ingest(Batch { created: t + 6 * MIN + at * SEC, ..Batch::default() });
    }
    let now = t + 8 * MIN;
    second.heartbeat(now).expect("heartbeat");
    let s = agent_summary(&second, t - HOUR, now);
    assert_eq!(s.down_ms, 0, "{s:?}");
    assert!(second.incidents(HOST, t - HOUR, now, now).expect("incidents").is_empty());
}

/// Semantics: a dead agent is the agent's outage: the portal it could not probe is unknown, not
/// down, and the agent's downtime is explained by its listed incident.
#[test]
fn a_dead_agent_is_the_agents_outage_not_the_portals() {
    let mut store = TestStore::new();
    let t = november();
    let run = store.uptime(sla_config(), true, t - HOUR);
    for at in (0..=60).step_by(10) {
        let at = t + at * SEC;
        store.ingest(Batch { created: at, probe: vec![(at, true)], ..Batch::default() });
    }
    let now = t + HOUR;
    run.heartbeat(now).expect("heartbeat");
    let signals = run.host_uptime(HOST, t, now, now, false).expect("uptime");
    let portal = signals.iter().find(|s| s.signal == "portal").expect("portal");
    assert_eq!(portal.summary.down_ms, 0, "{portal:?}");
    let agent = signals.iter().find(|s| s.signal == "agent").expect("agent");
    assert!(agent.summary.down_ms > 50 * MIN, "{agent:?}");
    let incidents = run.incidents(HOST, t, now, now).expect("incidents");
    let explained: i64 = incidents.iter().filter(|i| i.check == "agent").map(|i| i.in_window_ms).sum();
    assert_eq!(explained, agent.summary.down_ms, "{incidents:?}");
}

/// Semantics: a host revoked later stays in the reports of the months it was monitored in.
#[test]
fn a_revoked_host_stays_in_past_reports() {
    let mut store = TestStore::new();
    let t = november();
    let run = store.uptime(sla_config(), true, t - 40 * 24 * HOUR);
    store.ingest(Batch { created: t - 24 * HOUR, ..Batch::default() });
    run.admin.revoke(HOST, t + 14 * 24 * HOUR).expect("revoke");
    let now = t + 40 * 24 * HOUR;
    run.heartbeat(now).expect("heartbeat");
    let october = b24watch_collector::report::build(&run, "2026-10", None, now).expect("october");
    assert_eq!(october.hosts.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), [HOST]);
    assert_eq!(october.hosts[0].enrolled_ms, 0);
    let november = b24watch_collector::report::build(&run, "2026-11", Some(HOST), now).expect("november");
    assert_eq!(november.hosts[0].revoked_ms, Some(t + 14 * 24 * HOUR));
    let december = b24watch_collector::report::build(&run, "2026-12", None, now).expect("december");
    assert!(december.hosts.is_empty(), "revoked before December");
}

/// Semantics: displayed figures never contradict the decision, durations keep their seconds,
/// and HTML times are in the configured time zone.
#[test]
fn display_rounds_down_keeps_seconds_and_uses_the_time_zone() {
    use b24watch_collector::report::{human, percent};
    assert_eq!(percent(Some(0.994_999_6)), "99.499 %");
    assert_eq!(percent(Some(0.995)), "99.500 %");
    assert_eq!(percent(Some(1.0)), "100.000 %");
    assert_eq!(human(HOUR + 2 * MIN + 3 * SEC), "1h 2m 3s");
    assert_eq!(human(2 * 24 * HOUR + 5 * SEC), "2d 0h 0m 5s");
    let mut store = TestStore::new();
    let t = november();
    store.ingest(Batch { created: t, ..Batch::default() });
    let mut cfg = sla_config();
    cfg.timezone = jiff::tz::TimeZone::get("Europe/Moscow").expect("tz");
    let uptime = store.uptime(cfg, false, t + HOUR);
    let report = b24watch_collector::report::build(&uptime, "2026-11", None, t + HOUR).expect("report");
    let html = b24watch_collector::report::html(&report, b24watch_collector::i18n::Lang::En);
    assert!(html.contains("2026-11-01 00:00:00 MSK"), "the month starts at Moscow midnight: {html}");
}

/// Semantics: the contract's probe URL is configurable; without it the first URL alphabetically
/// is judged.
#[test]
fn the_contracts_probe_target_is_the_judged_one() {
    let mut store = TestStore::new();
    let t = november();
    let run = store.uptime(sla_config(), true, t - HOUR);
    for at in (0..=60).step_by(10) {
        let at = t + at * SEC;
        store.ingest(Batch { created: at, probe: vec![(at, true)], ..Batch::default() });
    }
    let now = t + 70 * SEC;
    run.heartbeat(now).expect("heartbeat");
    let mut cfg = sla_config();
    cfg.contract_targets.insert(HOST.into(), "https://elsewhere.example/".into());
    let configured = store.uptime(cfg, false, now);
    let report = b24watch_collector::report::build(&configured, "2026-11", Some(HOST), now).expect("report");
    assert_eq!((report.hosts[0].sla_signal.as_str(), report.hosts[0].availability), ("portal", None));
    let default = b24watch_collector::report::build(&run, "2026-11", Some(HOST), now).expect("report");
    assert_eq!((default.hosts[0].sla_signal.as_str(), default.hosts[0].availability), ("portal", Some(1.0)));
    let mut cfg = sla_config();
    cfg.contract_targets.insert(HOST.into(), URL.into());
    let named = store.uptime(cfg, false, now);
    let report = b24watch_collector::report::build(&named, "2026-11", Some(HOST), now).expect("report");
    assert_eq!(report.hosts[0].availability, Some(1.0));
}

/// Issue 19 item 9: a host enrolled mid-month is judged from its enrolment: the time before it is
/// neither counted nor "unknown".
#[test]
fn time_before_a_host_was_enrolled_is_not_unknown() {
    let mut store = TestStore::new();
    let t = november();
    let enrolled = t + 19 * 24 * HOUR;
    store::admin::Admin::open(store.dir.path()).expect("admin").enroll("late-01", false, enrolled).expect("enroll");
    store.ingest(Batch { created: t, ..Batch::default() });
    let now = t + 25 * 24 * HOUR;
    let run = store.uptime(sla_config(), true, enrolled);
    run.heartbeat(now).expect("heartbeat");
    let report = b24watch_collector::report::build(&run, "2026-11", Some("late-01"), now).expect("report");
    let host = &report.hosts[0];
    let counted = host.totals.up_ms + host.totals.down_ms + host.totals.unknown_ms + host.totals.maintenance_ms;
    assert!(counted <= now - enrolled, "only the monitored time is counted: {:?}", host.totals);
    assert_eq!((host.monitored_from_ms, host.monitored_to_ms), (enrolled, now));
    let html = b24watch_collector::report::html(&report, b24watch_collector::i18n::Lang::En);
    assert!(html.contains("monitored since 2026-11-20 00:00:00 UTC"), "{html}");
}

/// Issue 19 items 7 and 8: an incident across Berlin's change to summer time (2026-03-29 01:00
/// UTC) prints local times with the zone named on both sides, lasts one hour (not two, as the
/// wall clock says), and the CSV gives ISO 8601 times with the offsets.
#[test]
fn an_incident_across_a_dst_change_prints_local_times_with_the_zone() {
    let mut store = TestStore::new();
    let switch = jiff::Timestamp::from_second(1_774_746_000).expect("ts").as_millisecond();
    for (at, status) in [(-HOUR, OK), (-30 * MIN, FAILED), (30 * MIN, OK)] {
        let at = switch + at;
        store.ingest(Batch { created: at, checks: vec![check(at, status)], ..Batch::default() });
    }
    let mut cfg = sla_config();
    cfg.timezone = jiff::tz::TimeZone::get("Europe/Berlin").expect("tzdb");
    let now = switch + 40 * 24 * HOUR;
    let uptime = store.uptime(cfg, false, now);
    let report = b24watch_collector::report::build(&uptime, "2026-03", Some(HOST), now).expect("report");
    use b24watch_collector::i18n::Lang;
    let ru = b24watch_collector::report::html(&report, Lang::Ru);
    for text in [
        "<html lang=\"ru\">",
        "Период с 01.03.2026 00:00:00 CET по 01.04.2026 00:00:00 CEST.",
        "<td class=\"start\">29.03.2026 01:30:00 CET</td><td class=\"end\">29.03.2026 03:30:00 CEST</td>\
         <td>1\u{a0}ч 0\u{a0}мин 0\u{a0}с</td>",
        "Доступность портала",
    ] {
        assert!(ru.contains(text), "{text:?} in {ru}");
    }
    let en = b24watch_collector::report::html(&report, Lang::En);
    for text in [
        "<html lang=\"en\">",
        "Period from 2026-03-01 00:00:00 CET to 2026-04-01 00:00:00 CEST.",
        "<td class=\"start\">2026-03-29 01:30:00 CET</td><td class=\"end\">2026-03-29 03:30:00 CEST</td><td>1h 0m 0s</td>",
    ] {
        assert!(en.contains(text), "{text:?} in {en}");
    }
    let csv = b24watch_collector::report::csv(&report);
    let row = csv.lines().find(|l| l.starts_with("incident,")).expect("incident row");
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let cells: Vec<&str> = row.split(',').collect();
    assert_eq!(cells.len(), header.len(), "{row}");
    let cell = |name: &str| cells[header.iter().position(|h| *h == name).expect(name)];
    assert_eq!(
        (cell("start_at"), cell("end_at"), cell("ack_at")),
        ("2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00", ""),
        "{row}"
    );
    assert_eq!(report.period.from_iso, "2026-03-01T00:00:00+01:00");
    assert_eq!(report.period.to_iso, "2026-04-01T00:00:00+02:00");
}
