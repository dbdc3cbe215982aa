//! Views read only what they show: the status page, the metrics refresh and a report read a bounded slice of check history, and the check results one agent keeps as history are capped per minute.

use std::path::Path;
use std::sync::Arc;

use b24watch_collector::config::Config;
use b24watch_collector::report;
use b24watch_collector::store::admin::Admin;
use b24watch_collector::store::query::Reader;
use b24watch_collector::store::{CheckIn, IngestBatch, Store, WriterHandle};
use b24watch_collector::uptime::Uptime;

const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;

struct Fixture {
    store: Store,
    reader: Arc<Reader>,
    uptime: Uptime,
    _writer: WriterHandle,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reader, writer) =
        Store::open(dir.path(), 10_000, None, 60_000, b24watch_collector::store::Retention::default()).expect("store");
    Admin::open(dir.path()).expect("admin").enroll("web-01", false, 1).expect("enroll");
    let reader = Arc::new(reader);
    let sla = Config::parse("", Path::new("test.toml")).expect("defaults").sla;
    let uptime = Uptime::new(sla, Arc::clone(&reader));
    Fixture { store, reader, uptime, _writer: writer, _dir: dir }
}

/// A flapping portal check: failed, ok, failed, ... `step` apart from `start`.
fn flaps(n: i64, start: i64, step: i64) -> Vec<CheckIn> {
    (0..n)
        .map(|i| CheckIn {
            check: "portal_probe".into(),
            target: "https://portal.example".into(),
            status: if i % 2 == 0 { 2 } else { 1 },
            severity: 4,
            reason: if i % 2 == 0 { "http_500".into() } else { String::new() },
            message: String::new(),
            at_ms: start + i * step,
        })
        .collect()
}

fn batch(seq: u64, now: i64, checks: Vec<CheckIn>) -> IngestBatch {
    IngestBatch { checks, ..IngestBatch::direct("web-01", seq, now, Vec::new()) }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

#[test]
fn status_page_metrics_and_report_read_only_their_window_of_check_history() {
    let f = fixture();
    let now = b24watch_collector::now_ms();
    let old_start = now - 90 * DAY;
    runtime().block_on(async {
        // 4,000 transitions (2,000 incidents) 90 to 62 days ago, then one failure an hour ago.
        f.store.ingest(batch(1, now, flaps(4000, old_start, 10 * MIN))).await.expect("stored");
        f.store.ingest(batch(2, now, flaps(1, now - 3_600_000, 1))).await.expect("stored");
    });
    let old = f.uptime.incidents("web-01", old_start, old_start + 30 * DAY, now).expect("incidents");
    assert_eq!(old.len(), 2000, "history inside a window is read in full");

    let read = |what: &dyn Fn()| {
        let before = f.reader.history_rows_read();
        what();
        f.reader.history_rows_read() - before
    };
    let rows = read(&|| {
        let status = report::status_rows(&f.uptime, &|_| true, now).expect("status page");
        assert_eq!(status[0].open.len(), 1, "the open incident is shown");
    });
    assert!(rows <= 2, "status page read {rows} rows of check history");
    let rows = read(&|| f.uptime.refresh_metrics(&["web-01".to_owned()], now).expect("metrics"));
    assert!(rows <= 2, "metrics refresh read {rows} rows of check history");
    let month = jiff::Timestamp::from_millisecond(now).expect("now").strftime("%Y-%m").to_string();
    let rows = read(&|| {
        let built = report::build(&f.uptime, &month, None, now).expect("report");
        assert_eq!(built.hosts[0].incidents.len(), 1, "{month}: the failure of the last hour");
    });
    assert!(rows <= 2, "month report read {rows} rows of check history");
}

#[test]
fn one_agent_keeps_at_most_600_check_results_per_minute_and_counts_the_rest() {
    let f = fixture();
    let now = b24watch_collector::now_ms();
    let minute = now.div_euclid(MIN) * MIN - 10 * MIN;
    runtime().block_on(async {
        // 1,201 results in one minute, each a transition (the last a failure), then a recovery in
        // the next minute.
        f.store.ingest(batch(1, now, flaps(1201, minute, 40))).await.expect("stored");
        let mut recovered = flaps(2, minute + MIN, 1);
        recovered.remove(0);
        f.store.ingest(batch(2, now, recovered)).await.expect("stored");
    });
    let incidents = f.uptime.incidents("web-01", minute - MIN, now, now).expect("incidents");
    assert_eq!(incidents.len(), 300, "600 results kept in that minute: 300 incidents");
    assert!(incidents.iter().all(|i| i.end_ms.is_some()), "the next minute's recovery was stored");
    assert_eq!(f.store.check_results_dropped(), 601);
    let checks = f.reader.checks("web-01").expect("checks");
    assert_eq!((checks[0].status, checks[0].at_ms), ("ok", minute + MIN + 1), "the latest state is kept");
}
