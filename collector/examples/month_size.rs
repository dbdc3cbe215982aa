//! A time-compressed month through the real store: H hosts × S series written with past timestamps, then the database size with retention applied, per tier, per host and month, checked against `max_db_bytes` and each tier's retention.
//!
//! Writes `DAYS` days (default 30) ending now for `HOSTS` hosts (default 200) × `SERIES` series
//! (default 300), one point per series every `STEP_S` seconds (default 600: the month is
//! compressed in points, not in series), in hourly batches per host through `Store::ingest`
//! (group commits, as the gRPC service feeds it). Retention is the collector's default unless
//! `RAW_DAYS` / `MINUTE_DAYS` / `HOUR_DAYS` are set; `MAX_DB_MB` (default 4096) is the store's
//! `max_db_bytes`; `DATA_DIR` keeps the database (a temporary directory otherwise). Retention also
//! runs between the batches while they are written (at this rate sealing takes nearly every
//! background step, so compaction and retention mostly run after the writes). After the writes the store is stopped
//! (sealing the head), reopened and left to run its retention until nothing older than a tier's
//! retention is left and the used pages stop changing (or `MAX_WAIT_S`, default 3600, or no
//! progress for `STALL_S`, default 180); one keep-alive point is sent every 5 s as an agent would.
//! `REOPEN_ONLY=1` skips the writes and only runs the retention wait on the database in `DATA_DIR`.
//!
//! Prints `samples=`, `db_file_bytes=` and `db_used_bytes=` when written and after retention,
//! each tier's rows and data bytes (raw blocks, minute rollups, hour rollups) and the pages of
//! every table over 1 MB (dbstat), then the page bytes per tier, `per_host_day_bytes` and
//! `bytes_per_host_month` per tier, `steady_state_bytes_per_host` (every tier full at this
//! retention) and `kept_bytes_per_host=`; with the retention wait, whether the last keep-alive
//! was stored (`last_keepalive_stored=`: ingest resumed after refusals as full) and the store's
//! `store_full=` and `retention_blocked=` (expired raw hours waiting for room for their minute
//! rollups: the retention keeps more than `max_db_bytes` holds). Fails when a write was refused as full, when the file
//! is larger than `max_db_bytes`, when a raw block, minute rollup or hour rollup older than its
//! tier's retention remains, when rows newer than it were deleted, or when hours whose raw block
//! expired inside the minute retention have no minute rollup.
//!
//!   cargo run --release -p b24watch-collector --example month_size
//!   HOSTS=20 SERIES=100 STEP_S=60 cargo run --release -p b24watch-collector --example month_size
//!   HOSTS=20 DAYS=10 RAW_DAYS=2 MINUTE_DAYS=4 HOUR_DAYS=7 cargo run --release -p b24watch-collector --example month_size

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

/// Rows of each history tier whose whole hour (day for hour rollups) is older than the tier's
/// retention at `now`: (raw blocks, minute rollups, hour rollups). Retention deletes a row when
/// its start is at or before `now - retention - width`.
fn expired_rows(conn: &rusqlite::Connection, r: &Retention, now: i64) -> (i64, i64, i64) {
    let count = |sql: &str, cut: i64| -> i64 { conn.query_row(sql, [cut], |row| row.get(0)).expect("count") };
    (
        count(
            "SELECT COUNT(*) FROM (SELECT (id >> 24) * 3600000 AS start_ms, data FROM series_hour) WHERE start_ms <= ?1",
            now - r.raw_ms - HOUR,
        ),
        count("SELECT COUNT(*) FROM rollup WHERE tier = 1 AND start_ms <= ?1", now - r.minute_ms - HOUR),
        count("SELECT COUNT(*) FROM rollup WHERE tier = 2 AND start_ms <= ?1", now - r.hour_ms - DAY),
    )
}

/// One history tier's rows: count, bytes of `data`, oldest and newest start.
#[derive(Debug, Default, Clone, Copy)]
struct TierRows {
    rows: i64,
    data_bytes: i64,
    oldest: Option<i64>,
    newest: Option<i64>,
}

/// The history tiers (raw blocks, minute rollups, hour rollups) and the pages of every table and
/// index (dbstat), printed with `label`; returns the tiers and the page bytes per table.
fn tier_bytes(conn: &rusqlite::Connection, label: &str) -> ([TierRows; 3], Vec<(String, i64)>) {
    let tier = |sql: &str| -> TierRows {
        conn.query_row(sql, [], |r| {
            Ok(TierRows {
                rows: r.get(0)?,
                data_bytes: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                oldest: r.get(2)?,
                newest: r.get(3)?,
            })
        })
        .expect("tier")
    };
    let tiers = [
        tier(
            "SELECT COUNT(*), SUM(length(data)), MIN(start_ms), MAX(start_ms) FROM (SELECT (id >> 24) * 3600000 AS start_ms, data FROM series_hour)",
        ),
        tier("SELECT COUNT(*), SUM(length(data)), MIN(start_ms), MAX(start_ms) FROM rollup WHERE tier = 1"),
        tier("SELECT COUNT(*), SUM(length(data)), MIN(start_ms), MAX(start_ms) FROM rollup WHERE tier = 2"),
    ];
    for (name, t) in ["series_hour", "rollup_tier1_minute", "rollup_tier2_hour"].iter().zip(&tiers) {
        let hours_ago = |ts: Option<i64>| ts.map_or(-1, |ts| (now_ms() - ts) / HOUR);
        println!(
            "{label}: {name} rows={} data_bytes={} oldest_h_ago={} newest_h_ago={}",
            t.rows,
            t.data_bytes,
            hours_ago(t.oldest),
            hours_ago(t.newest)
        );
    }
    let pages: Vec<(String, i64)> = conn
        .prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        .expect("dbstat")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("dbstat")
        .collect::<Result<_, _>>()
        .expect("dbstat");
    let listed: Vec<String> = pages.iter().filter(|(_, b)| *b > 1_000_000).map(|(n, b)| format!("{n}={b}")).collect();
    println!("{label}: page_bytes_by_table {} (tables under 1 MB left out)", listed.join(" "));
    (tiers, pages)
}

fn main() {
    // The store's warnings (a failed seal or upkeep step) on stderr; `B24WATCH_LOG` sets the filter.
    b24watch_common::logging::init();
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
        hour_ms: std::env::var("HOUR_DAYS")
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(defaults.hour_ms, |d| d * DAY),
        ..defaults
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // DATA_DIR keeps the database for a look with sqlite3 afterwards.
    let data = std::env::var("DATA_DIR").map_or_else(|_| dir.path().join("data"), std::path::PathBuf::from);
    // REOPEN_ONLY: no writes, only the retention wait on the database already in DATA_DIR (for
    // example with another MAX_DB_MB or retention).
    let reopen_only = std::env::var_os("REOPEN_ONLY").is_some();
    if !reopen_only {
        let admin = store::admin::Admin::open(&data).expect("database");
        for h in 0..hosts {
            admin.enroll(&format!("host-{h:04}"), false, 0).expect("enroll");
        }
        drop(admin);
    }
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
    let written_hours = if reopen_only { start..start } else { start..end };
    for (seq, hour) in (1u64..).zip(written_hours.step_by(HOUR as usize)) {
        let ts: Vec<i64> = (hour..hour + HOUR).step_by(step as usize).collect();
        let tasks: Vec<_> = (0..hosts)
            .map(|h| {
                let series = (0..series)
                    .map(|s| {
                        let points = ts.iter().map(|t| (*t, value(s, *t, h))).collect();
                        SeriesIn::new(
                            s as u32,
                            format!("m{:02}", s % 40),
                            format!("i=\"{s}\""),
                            if s % 4 == 1 { 2 } else { 1 },
                            points,
                        )
                    })
                    .collect();
                let batch = IngestBatch::direct(format!("host-{h:04}"), seq, hour, series);
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
    let conn = store::open_connection(&data).expect("open");
    println!(
        "hosts={hosts} series_per_host={series} days={days} step_s={} raw_days={} minute_days={} hour_days={} max_db_bytes={max_db_bytes}",
        step / 1000,
        retention.raw_ms / DAY,
        retention.minute_ms / DAY,
        retention.hour_ms / DAY
    );
    println!(
        "samples={samples} refused_full={full} ingest_s={ingest_s:.1} samples_per_s={:.0}",
        samples as f64 / ingest_s
    );
    // Retention also ran between the batches while they were written: "written" is not "every tier kept".
    println!("written: db_file_bytes={file_written} db_used_bytes={used_written}");
    tier_bytes(&conn, "written");
    // Reopen: retention runs between (absent) batches; wait until nothing older than a tier's
    // retention is left and the used pages stop changing, or until it stops making progress.
    let (store, reader, writer) =
        Store::open(&data, series.max(1000), Some(max_db_bytes), 10_000, retention).expect("reopen");
    let waited = Instant::now();
    let max_wait = Duration::from_secs(env_num("MAX_WAIT_S", 3600));
    let mut last = (u64::MAX, (-1, -1, -1));
    let mut stalled = 0;
    let mut refused_waiting = 0u64;
    // Whether the last keep-alive was stored (ingest resumed after a refusal as full).
    let mut last_stored = false;
    let mut fullness = store.fullness();
    for seq in 1u64.. {
        std::thread::sleep(Duration::from_secs(5));
        // One point now, as an agent sends: the writer works between batches, and after a failed
        // step it waits for the next batch.
        let keepalive = IngestBatch {
            epoch: 2,
            ..IngestBatch::direct(
                "host-0000",
                seq,
                now_ms(),
                vec![SeriesIn::new(0, "m00", "i=\"0\"", 1, vec![(now_ms(), 1.0)])],
            )
        };
        match rt.block_on(store.ingest(keepalive)) {
            Err(store::Error::Full) => {
                refused_waiting += 1;
                last_stored = false;
            }
            Err(store::Error::Busy) => {}
            Ok(_) => last_stored = true,
            Err(err) => panic!("ingest: {err}"),
        }
        fullness = store.fullness();
        let used = used_bytes(&data).1;
        let expired = expired_rows(&conn, &retention, now_ms());
        // The keep-alive points move a page now and then: stable is within 1 MB.
        let done = expired == (0, 0, 0) && used.abs_diff(last.0) < 1 << 20;
        stalled = if expired == last.1 && used.abs_diff(last.0) < 1 << 20 { stalled + 1 } else { 0 };
        if waited.elapsed().as_secs() % 60 < 5 {
            println!(
                "retention: {:.0} s, used {used} B, rows still expired (raw, minute, hour) {expired:?}, keep-alive batches refused as full {refused_waiting}, store_full={} retention_blocked={}",
                waited.elapsed().as_secs_f64(),
                fullness.full,
                fullness.retention_blocked
            );
        }
        // Retention idles 60 s between rounds that found nothing: stalled for 3 minutes (`STALL_S`) is stuck.
        if done || stalled >= env_num("STALL_S", 180) / 5 || waited.elapsed() > max_wait {
            break;
        }
        last = (used, expired);
    }
    let retention_s = waited.elapsed().as_secs_f64();
    drop(store);
    drop(reader);
    writer.join();
    let check_now = now_ms();
    let (file, used) = used_bytes(&data);
    println!(
        "after_retention: db_file_bytes={file} db_used_bytes={used} retention_wait_s={retention_s:.0} keepalive_refused_full={refused_waiting} last_keepalive_stored={last_stored} store_full={} retention_blocked={}",
        fullness.full, fullness.retention_blocked
    );
    let ([raw, minute, hour], pages) = tier_bytes(&conn, "after_retention");
    let expired = expired_rows(&conn, &retention, check_now);
    println!("after_retention: rows older than their tier's retention (raw, minute, hour) = {expired:?}");

    // Page bytes per tier: a table with its indexes; the rollup table's pages split between the
    // tiers by their data bytes plus ~15 bytes a row (start, series, id), its index by rows.
    let page = |name: &str| pages.iter().find(|(n, _)| n == name).map_or(0, |(_, b)| *b) as f64;
    let raw_pages = page("series_hour") + page("tick_hour");
    let weight = |t: &TierRows| (t.data_bytes + 15 * t.rows) as f64;
    let rollup_rows = (minute.rows + hour.rows).max(1) as f64;
    let rollup_weight = (weight(&minute) + weight(&hour)).max(1.0);
    let minute_pages =
        page("rollup") * weight(&minute) / rollup_weight + page("rollup_by_start") * minute.rows as f64 / rollup_rows;
    let hour_pages =
        page("rollup") * weight(&hour) / rollup_weight + page("rollup_by_start") * hour.rows as f64 / rollup_rows;
    let other = used as f64 - raw_pages - minute_pages - hour_pages;
    println!(
        "after_retention: page_bytes raw={raw_pages:.0} minute={minute_pages:.0} hour={hour_pages:.0} other={other:.0} (series, batch keys, free-list and the rest)"
    );
    // Per host and day of history in each tier (rows are per series and hour, or per series and
    // day for the hour tier), and what a host costs once every tier is full at this retention.
    let series_total = (hosts * series) as f64;
    let per_host_day = |bytes: f64, rows: i64, rows_per_day: f64| {
        if rows == 0 { 0.0 } else { bytes / rows as f64 * rows_per_day * series_total / hosts as f64 }
    };
    let raw_day = per_host_day(raw_pages, raw.rows, 24.0);
    let minute_day = per_host_day(minute_pages, minute.rows, 24.0);
    let hour_day = per_host_day(hour_pages, hour.rows, 1.0);
    let samples_per_host_day = (series as i64 * DAY / step) as f64;
    println!(
        "per_host_day_bytes raw={raw_day:.0} minute={minute_day:.0} hour={hour_day:.0} (raw {:.2} B/sample, minute rollups {:.2} B per raw sample)",
        raw_day / samples_per_host_day,
        minute_day / samples_per_host_day
    );
    println!(
        "bytes_per_host_month raw={:.0} minute={:.0} hour={:.0} (30 days of history in each tier)",
        raw_day * 30.0,
        minute_day * 30.0,
        hour_day * 30.0
    );
    let (raw_days, minute_days, hour_days) =
        (retention.raw_ms / DAY, (retention.minute_ms - retention.raw_ms).max(0) / DAY, retention.hour_ms / DAY);
    let steady = raw_day * raw_days as f64 + minute_day * minute_days as f64 + hour_day * hour_days as f64;
    println!(
        "steady_state_bytes_per_host={steady:.0} (full retention: raw {raw_days} d = {:.0}, minute {minute_days} d more = {:.0}, hour {hour_days} d = {:.0}; series rows and batch keys not included)",
        raw_day * raw_days as f64,
        minute_day * minute_days as f64,
        hour_day * hour_days as f64
    );
    println!("kept_bytes_per_host={:.0} (used bytes after retention / hosts)", used as f64 / hosts as f64);

    assert_eq!(full, 0, "writes refused as full");
    assert!(file <= max_db_bytes, "database file {file} B over max_db_bytes {max_db_bytes} B");
    // Nothing older than a tier's retention (its whole hour or day) is left, and nothing newer
    // was deleted: the oldest row left is within one hour (day) of the cutoff when the history
    // reaches that far back. `check_now` is a little later than retention's last step: a row
    // that crossed its cutoff meanwhile (hours are whole) is allowed.
    let slack = 5 * 60_000;
    let cut = |keep: i64, width: i64| check_now - keep - width;
    let raw_left = count_le(
        &conn,
        "SELECT COUNT(*) FROM (SELECT (id >> 24) * 3600000 AS start_ms, data FROM series_hour) WHERE start_ms <= ?1",
        cut(retention.raw_ms, HOUR) - slack,
    );
    let minute_left = count_le(
        &conn,
        "SELECT COUNT(*) FROM rollup WHERE tier = 1 AND start_ms <= ?1",
        cut(retention.minute_ms, HOUR) - slack,
    );
    let hour_left = count_le(
        &conn,
        "SELECT COUNT(*) FROM rollup WHERE tier = 2 AND start_ms <= ?1",
        cut(retention.hour_ms, DAY) - slack,
    );
    assert_eq!(raw_left, 0, "raw blocks older than the raw retention remain");
    assert_eq!(minute_left, 0, "minute rollups older than the minute retention remain");
    assert_eq!(hour_left, 0, "hour rollups older than the hour retention remain");
    let oldest_ok = |t: &TierRows, keep: i64, width: i64, name: &str| {
        if start < cut(keep, width) - width {
            let oldest = t.oldest.unwrap_or(i64::MAX);
            assert!(
                oldest > cut(keep, width) - width - slack,
                "{name}: rows newer than the retention were deleted (oldest {oldest})"
            );
        }
    };
    oldest_ok(&raw, retention.raw_ms, HOUR, "raw");
    oldest_ok(&minute, retention.minute_ms, HOUR, "minute");
    oldest_ok(&hour, retention.hour_ms, DAY, "hour");
    // Every hour whose raw block expired while the minute tier keeps it has its minute row.
    let minute_from = (start - HOUR).max(cut(retention.minute_ms, HOUR));
    let minute_to = cut(retention.raw_ms, HOUR);
    if minute_to > minute_from {
        let expected = (minute_to / HOUR - minute_from / HOUR) * (hosts * series) as i64;
        println!("minute_rows={} expected_minute_rows={expected} (one hour either way at the cutoffs)", minute.rows);
        assert!(
            (minute.rows - expected).abs() <= 2 * (hosts * series) as i64,
            "minute rollups missing: {} rows for about {expected}",
            minute.rows
        );
    }
}

fn count_le(conn: &rusqlite::Connection, sql: &str, cut: i64) -> i64 {
    conn.query_row(sql, [cut], |r| r.get(0)).expect("count")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}
