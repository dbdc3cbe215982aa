//! Issue 15: `max_db_bytes` keeps its meaning and the store never stays stuck at it. Ingest is
//! refused below the bound (the upkeep reserve), so sealing the head and retention still find
//! pages: a database filled before anything was sealed or rolled up frees itself once its data
//! expired, and nothing acked is lost when batches are refused.

use std::path::Path;
use std::time::Duration;

use b24watch_collector::store::{self, Error, IngestBatch, Outcome, Retention, SeriesIn, Store};

const AGENT: &str = "full-01";
const MIB: u64 = 1 << 20;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const SERIES: usize = 200;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// Batch `seq`: [`SERIES`] series × 60 noisy points (about 8 bytes each encoded) one minute
/// apart, in the hour `first_hour + seq`.
fn batch(seq: u64, first_hour: i64) -> IngestBatch {
    let hour = first_hour + seq as i64 * HOUR;
    let mut rng = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let series = (0..SERIES)
        .map(|s| {
            let points = (0..60)
                .map(|i| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (hour + i * 60_000, (rng >> 11) as f64 / 1e3)
                })
                .collect();
            SeriesIn::new(s as u32, format!("m{s:03}"), "", 1, points)
        })
        .collect();
    IngestBatch { received_ms: now_ms(), ..IngestBatch::direct(AGENT, seq, hour, series) }
}

fn open(dir: &Path, max_db_bytes: Option<u64>) -> (Store, store::query::Reader, store::WriterHandle) {
    Store::open(dir, 1000, max_db_bytes, 10_000, Retention::default()).expect("store")
}

fn enroll(dir: &Path) {
    store::admin::Admin::open(dir).expect("admin").enroll(AGENT, false, 0).expect("enroll");
}

/// `(pages in use × page size, file size)` of the database.
fn sizes(dir: &Path) -> (u64, u64) {
    let conn = store::open_connection(dir).expect("open");
    let used: i64 = conn
        .query_row(
            "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
            [],
            |r| r.get(0),
        )
        .expect("pages");
    (used as u64, std::fs::metadata(dir.join(store::DB_FILE)).expect("file").len())
}

fn count(dir: &Path, sql: &str) -> i64 {
    store::open_connection(dir).expect("open").query_row(sql, [], |r| r.get(0)).expect("count")
}

/// Offers `batch` the way an agent does (resending after `Busy` or `Full`) until it is stored,
/// for at most `tries` × 20 ms; the outcome, or the last refusal.
fn deliver(rt: &tokio::runtime::Runtime, store: &Store, batch: &IngestBatch, tries: usize) -> Result<Outcome, Error> {
    let mut last = Err(Error::Busy);
    for _ in 0..tries {
        last = rt.block_on(store.ingest(batch.clone()));
        match &last {
            Err(Error::Busy | Error::Full) => std::thread::sleep(Duration::from_millis(20)),
            _ => return last,
        }
    }
    last
}

/// The bug: a database that reached `max_db_bytes` while its samples were still pending (no
/// block sealed, no rollup written) stayed full for good: sealing needs pages for the blocks
/// before it deletes the pending rows, and retention has no block to expire. With the reserve
/// the head is sealed at the bound, retention expires the (old) hours, and an agent delivering
/// three times the bound's worth of expired samples gets every batch stored.
#[test]
fn a_database_filled_before_any_seal_frees_itself_once_its_data_expired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    enroll(data);
    let bound = 4 * MIB;
    let (store, reader, writer) = open(data, Some(bound));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // Older than the raw and the minute retention: only their hour rollups are kept.
    let first_hour = (now_ms() - 200 * DAY) / HOUR * HOUR;
    let mut refused = 0;
    // About 100 KB a batch: 120 batches are three times the bound.
    for seq in 1..=120 {
        let first = rt.block_on(store.ingest(batch(seq, first_hour)));
        if matches!(first, Err(Error::Full)) {
            refused += 1;
        }
        let outcome = match first {
            Err(Error::Full | Error::Busy) => deliver(&rt, &store, &batch(seq, first_hour), 1500),
            other => other,
        };
        assert!(
            matches!(outcome, Ok(Outcome::Stored { points, .. }) if points == 60 * SERIES as u64),
            "batch {seq} never stored ({refused} refusals as full so far): {outcome:?}"
        );
    }
    assert!(refused > 0, "the bound was never reached");
    drop((store, reader));
    writer.join();
    let (used, file) = sizes(data);
    assert!(file <= bound, "database file {file} B over the bound {bound} B");
    assert!(used <= bound);
    assert_eq!(count(data, "SELECT COUNT(*) FROM batch_key"), 120, "every delivered batch recorded once");
    assert_eq!(
        count(data, "SELECT COUNT(*) FROM sample_pending WHERE length(data) > 0"),
        0,
        "the head was sealed at the clean stop"
    );
}

/// Ingest is refused below the bound: the batches acked before are all readable, the refused
/// one left nothing behind (its agent resends it later and it is stored then, not taken for a
/// duplicate), and the head is still sealed at the bound (no pending row left after a clean
/// stop, the file within `max_db_bytes`).
#[test]
fn batches_refused_at_the_reserve_leave_every_acked_point_and_the_head_sealable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    enroll(data);
    let bound = 4 * MIB;
    let (store, reader, writer) = open(data, Some(bound));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // Recent hours, kept by every tier: retention frees nothing.
    let first_hour = (now_ms() - 2 * DAY) / HOUR * HOUR;
    let mut acked = Vec::new();
    let mut refused = None;
    for seq in 1..=200 {
        match rt.block_on(store.ingest(batch(seq, first_hour))) {
            Ok(Outcome::Stored { points, .. }) => {
                assert_eq!(points, 60 * SERIES as u64);
                acked.push(seq);
            }
            Err(Error::Full) => {
                refused = Some(seq);
                break;
            }
            other => panic!("batch {seq}: {other:?}"),
        }
    }
    let refused = refused.expect("200 batches of 100 KB fill a 4 MiB bound");
    assert!(!acked.is_empty());
    drop((store, reader));
    writer.join();
    let (_, file) = sizes(data);
    assert!(file <= bound, "database file {file} B over the bound {bound} B");
    assert_eq!(
        count(data, "SELECT COUNT(*) FROM sample_pending WHERE length(data) > 0"),
        0,
        "the head was sealed at the bound"
    );
    let conn = store::open_connection(data).expect("open");
    let head = std::sync::Arc::new(std::sync::RwLock::new(store::series::Head::default()));
    let series_id = |s: usize| -> i64 {
        conn.query_row("SELECT id FROM series WHERE name = ?1", [format!("m{s:03}")], |r| r.get(0)).expect("series")
    };
    for s in [0, SERIES / 2, SERIES - 1] {
        let id = series_id(s);
        let stored = store::series::series_points(&conn, &head, id, first_hour, first_hour + 300 * HOUR).expect("read");
        let want: Vec<(i64, f64)> =
            acked.iter().flat_map(|&seq| batch(seq, first_hour).series[s].points.clone()).collect();
        assert_eq!(stored, want, "series m{s:03}: every acked point, nothing of the refused batch {refused}");
    }
    drop(conn);
    // Still full (a bound below what is kept, nothing expires): an agent that lost the ack of a
    // stored batch resends it and gets it acked as a duplicate; before, it got `Full` and kept
    // the batch spooled, resending, until room was made.
    let (store, _reader, writer) = open(data, Some(bound / 2));
    for _ in 0..3 {
        let new = rt.block_on(store.ingest(batch(refused, first_hour)));
        assert!(matches!(new, Err(Error::Full)), "a new batch at the reserve: {new:?}");
        for &seq in [acked[0], *acked.last().expect("acked")].iter() {
            let resent = rt.block_on(store.ingest(batch(seq, first_hour)));
            assert!(
                matches!(resent, Ok(Outcome::Duplicate)),
                "resend of stored batch {seq} at the reserve: {resent:?}"
            );
        }
    }
    // Only the new batch counts as refused (the metric tells how much agents hold back).
    assert_eq!(store.fullness().refused_batches, 3, "refused batches counted: the resends were acked");
    drop(store);
    writer.join();
    // Room made (the bound raised): the agent's resend of the refused batch is stored now.
    let (store, _reader, writer) = open(data, None);
    let outcome = rt.block_on(store.ingest(batch(refused, first_hour)));
    assert!(matches!(outcome, Ok(Outcome::Stored { .. })), "resend after room was made: {outcome:?}");
    drop(store);
    writer.join();
}
