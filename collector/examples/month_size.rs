//! A time-compressed month through the real store: H hosts × S series written with past timestamps, then the database size with retention applied, per host and month, checked against `max_db_bytes`.
//!
//! Writes `DAYS` days (default 30) ending now for `HOSTS` hosts (default 200) × `SERIES` series
//! (default 300), one point per series every `STEP_S` seconds (default 600: the month is
//! compressed in points, not in series), in hourly batches per host through `Store::ingest`
//! (group commits, as the gRPC service feeds it). Retention is the collector's default unless
//! `RAW_DAYS` / `MINUTE_DAYS` are set; `MAX_DB_MB` (default 4096) is the store's `max_db_bytes`.
//! After the writes the store is stopped (sealing the head), reopened and left to run its
//! retention until the file's used pages stop shrinking. Prints `samples=`, `db_file_bytes=`,
//! `db_used_bytes=` before and after retention, `bytes_per_host_month=` and `kept_bytes_per_host=`;
//! fails when a write was refused as full, when raw samples older than the raw retention remain,
//! or when the file is larger than `max_db_bytes`.
//!
//!   cargo run --release -p b24watch-collector --example month_size
//!   HOSTS=20 SERIES=100 STEP_S=60 cargo run --release -p b24watch-collector --example month_size

use std::time::{Duration, Instant};

use b24watch_collector::store::{self, IngestBatch, Retention, SeriesIn, Store};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The value of series `s` at `t`: gauges with two decimals, counters, near-constant values.
fn value(s: usize, t: i64, host: usize) -> f64 {
    let x = (t / 1000) as f64;
    match s % 4 {
        0 => ((x / 600.0 + s as f64 + host as f64).sin() * 5000.0).round() / 100.0,
        1 => (x * (s + 1) as f64 * 3.0).floor(),
        2 => 1.0e11 + ((x / 86_400.0) as i64 * 1_000_000) as f64,
        _ => ((x as i64 / 3600 + s as i64) % 7) as f64,
    }
}

fn used_bytes(data: &std::path::Path) -> (u64, u64) {
    let conn = store::open_connection(data).expect("open");
    let (pages, free, size): (i64, i64, i64) = conn
        .query_row("SELECT * FROM pragma_page_count, pragma_freelist_count, pragma_page_size", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("pages");
    drop(conn);
    let file = std::fs::metadata(data.join(store::DB_FILE)).map_or(0, |m| m.len());
    (file, ((pages - free) * size) as u64)
}

fn main() {
    let hosts = env_num("HOSTS", 200) as usize;
    let series = env_num("SERIES", 300) as usize;
    let days = env_num("DAYS", 30) as i64;
    let step = env_num("STEP_S", 600) as i64 * 1000;
    let max_db_bytes = env_num("MAX_DB_MB", 4096) * 1024 * 1024;
    let defaults = Retention::default();
    let retention = Retention {
        raw_ms: std::env::var("RAW_DAYS").ok().and_then(|v| v.parse::<i64>().ok()).map_or(defaults.raw_ms, |d| d * DAY),
        minute_ms: std::env::var("MINUTE_DAYS")
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(defaults.minute_ms, |d| d * DAY),
        ..defaults
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let admin = store::admin::Admin::open(&data).expect("database");
    for h in 0..hosts {
        admin.enroll(&format!("host-{h:04}"), false, 0).expect("enroll");
    }
    drop(admin);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let end = now / HOUR * HOUR;
    let start = end - days * DAY;
    let (store, reader, writer) =
        Store::open(&data, series.max(1000), Some(max_db_bytes), 10_000, retention).expect("store");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let began = Instant::now();
    let mut samples = 0u64;
    let mut full = 0u64;
    // Hour by hour, every host's batch of the hour in flight together (group commits).
    for (seq, hour) in (1u64..).zip((start..end).step_by(HOUR as usize)) {
        let ts: Vec<i64> = (hour..hour + HOUR).step_by(step as usize).collect();
        let tasks: Vec<_> = (0..hosts)
            .map(|h| {
                let batch = IngestBatch {
                    agent_id: format!("host-{h:04}"),
                    epoch: 1,
                    seq,
                    payload_hash: [0; 32],
                    received_ms: hour,
                    created_ms: hour,
                    agent_version: "month".into(),
                    series: (0..series)
                        .map(|s| SeriesIn {
                            name: format!("m{:02}", s % 40),
                            labels: format!("i=\"{s}\""),
                            kind: if s % 4 == 1 { 2 } else { 1 },
                            points: ts.iter().map(|t| (*t, value(s, *t, h))).collect(),
                            index: s as u32,
                            telemetry: false,
                        })
                        .collect(),
                    gaps: Vec::new(),
                    log_groups: Vec::new(),
                    checks: Vec::new(),
                };
                let store = store.clone();
                rt.spawn(async move {
                    loop {
                        match store.ingest(batch.clone()).await {
                            Err(store::Error::Busy) => tokio::time::sleep(Duration::from_millis(5)).await,
                            other => return other,
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            match rt.block_on(task).expect("task") {
                Ok(store::Outcome::Stored { points, .. }) => samples += points,
                Ok(other) => panic!("unexpected {other:?}"),
                Err(store::Error::Full) => full += 1,
                Err(err) => panic!("ingest: {err}"),
            }
        }
    }
    let ingest_s = began.elapsed().as_secs_f64();
    drop(store);
    drop(reader);
    writer.join();
    let (file_written, used_written) = used_bytes(&data);
    // Reopen: retention runs between (absent) batches; wait until the used pages stop shrinking.
    let (store, reader, writer) =
        Store::open(&data, series.max(1000), Some(max_db_bytes), 10_000, retention).expect("reopen");
    let mut last = u64::MAX;
    loop {
        std::thread::sleep(Duration::from_secs(3));
        let used = used_bytes(&data).1;
        if used >= last {
            break;
        }
        last = used;
    }
    let raw_cut = now - retention.raw_ms - HOUR;
    let (old_raw, _) = reader.series_points("host-0000", "m00", start, raw_cut - HOUR, 1).expect("raw");
    drop(store);
    drop(reader);
    writer.join();
    let (file, used) = used_bytes(&data);
    println!(
        "hosts={hosts} series_per_host={series} days={days} step_s={} raw_days={} minute_days={} max_db_bytes={max_db_bytes}",
        step / 1000,
        retention.raw_ms / DAY,
        retention.minute_ms / DAY
    );
    println!(
        "samples={samples} refused_full={full} ingest_s={ingest_s:.1} samples_per_s={:.0}",
        samples as f64 / ingest_s
    );
    println!("before_retention: db_file_bytes={file_written} db_used_bytes={used_written}");
    println!("db_file_bytes={file} db_used_bytes={used}");
    println!(
        "bytes_per_host_month={:.0} (used bytes before retention / hosts, scaled to 30 days: every tier kept)",
        used_written as f64 / hosts as f64 * 30.0 / days as f64
    );
    println!("kept_bytes_per_host={:.0} (used bytes after retention / hosts)", used as f64 / hosts as f64);
    assert_eq!(full, 0, "writes refused as full");
    assert!(old_raw.is_empty(), "raw samples older than the raw retention remain");
    assert!(file <= max_db_bytes, "database file {file} B over max_db_bytes {max_db_bytes} B");
}
