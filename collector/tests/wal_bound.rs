//! RELIABILITY.md T39: the WAL stays bounded while reports read during full ingestion, and returns under its bound once a long read transaction ends.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use b24watch_collector::store::query::Reader;
use b24watch_collector::store::{self, IngestBatch, Retention, SeriesIn, Store};

const HOST: &str = "busy-01";
const MIB: u64 = 1024 * 1024;
/// The WAL's bound (`journal_size_limit` of every connection).
const WAL_BOUND: u64 = 64 * MIB;

fn wal_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(format!("{}-wal", store::DB_FILE))).map_or(0, |m| m.len())
}

/// Ingests batches of `series` series × 30 points as fast as the store takes them until `stop`,
/// 8 in flight (group commits), timestamps moving forward 30 s per batch (an agent at 1 s): a
/// run of a few thousand batches spans a day or two, as live ingest would, so the hours sealed
/// and rolled up (and the writer's seal and compaction at the end) stay those of live data.
fn ingest_until(store: Store, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>, t0: i64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut inflight = Vec::new();
                for _ in 0..8 {
                    seq += 1;
                    let base = t0 + seq as i64 * 30_000;
                    let series = (0..100)
                        .map(|s| {
                            let points = (0..30)
                                .map(|i| (base + i * 1_000, ((seq * 31 + i as u64 * 7 + s) % 1000) as f64 / 997.0))
                                .collect();
                            SeriesIn::new(s as u32, "cpu_usage_ratio", format!("core=\"{s}\""), 1, points)
                        })
                        .collect();
                    let batch = IngestBatch::direct(HOST, seq, base, series);
                    let store = store.clone();
                    inflight.push(tokio::spawn(async move { store.ingest(batch).await }));
                }
                for task in inflight {
                    match task.await.expect("task") {
                        Ok(_) => {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(store::Error::Busy) => tokio::time::sleep(Duration::from_millis(5)).await,
                        Err(err) => panic!("ingest: {err}"),
                    }
                }
            }
        });
    })
}

fn open(dir: &Path) -> (Store, Reader, store::WriterHandle) {
    store::admin::Admin::open(dir).expect("admin").enroll(HOST, false, 0).expect("enroll");
    Store::open(dir, 10_000, None, 10_000, Retention::default()).expect("store")
}

/// Reports read continuously (one query after another on their own connection, as the HTTP API
/// serves a report that takes all its time) while ingest runs at full speed: the WAL never grows
/// past its bound, because every read is a short transaction and the writer's checkpoints get
/// through between them.
#[test]
fn the_wal_stays_bounded_while_reports_read_continuously_during_full_ingestion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reader, writer) = open(dir.path());
    let t0 = 1_700_000_000_000;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let ingest = ingest_until(store.clone(), Arc::clone(&stop), Arc::clone(&sent), t0);
    let reports = {
        let stop = Arc::clone(&stop);
        // The collector's own reader (it shares the writer's head), as the HTTP API uses it.
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let to = t0 + 7 * 86_400_000;
                reader.series_steps(HOST, "cpu_usage_ratio", t0, to, 3_600_000).expect("steps");
                reader.evidence(HOST, t0, to).expect("evidence");
                reads += 1;
            }
            reads
        })
    };
    let (mut peak, start) = (0, Instant::now());
    while start.elapsed() < Duration::from_secs(25) {
        peak = peak.max(wal_bytes(dir.path()));
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let stopping = Instant::now();
    ingest.join().expect("ingest");
    let reads = reports.join().expect("reports");
    let joined = stopping.elapsed();
    let batches = sent.load(Ordering::Relaxed);
    eprintln!(
        "T39 continuous reads: {batches} batches ({} points), {reads} report reads, WAL peak {:.1} MiB",
        batches * 3000,
        peak as f64 / MIB as f64
    );
    assert!(reads > 10 && batches > 100, "the load ran: {reads} reads, {batches} batches");
    assert!(peak <= WAL_BOUND, "WAL peaked at {peak} B with reports reading continuously");
    drop(store);
    writer.join();
    eprintln!(
        "T39 continuous reads: stopping took {:.1} s, the writer's last seal {:.1} s",
        joined.as_secs_f64(),
        (stopping.elapsed() - joined).as_secs_f64()
    );
}

/// One read transaction held open for the whole run (what a report would do if it read in one
/// transaction): the WAL cannot be checkpointed past the reader's snapshot, so it grows with
/// everything written meanwhile; once the reader ends, the next checkpoints bring it back under
/// its bound without a restart.
#[test]
fn a_long_read_transaction_grows_the_wal_only_until_it_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _reader, writer) = open(dir.path());
    let t0 = 1_700_000_000_000;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    // A second connection holds a snapshot: a read transaction that stays open.
    let conn = rusqlite::Connection::open(dir.path().join(store::DB_FILE)).expect("second connection");
    conn.execute_batch("BEGIN").expect("begin");
    let agents: i64 = conn.query_row("SELECT COUNT(*) FROM agent", [], |r| r.get(0)).expect("read");
    assert_eq!(agents, 1);
    let ingest = ingest_until(store.clone(), Arc::clone(&stop), Arc::clone(&sent), t0);
    let start = Instant::now();
    let mut during = 0;
    while start.elapsed() < Duration::from_secs(30) && during <= 2 * WAL_BOUND {
        during = during.max(wal_bytes(dir.path()));
        std::thread::sleep(Duration::from_millis(20));
    }
    let batches_during = sent.load(Ordering::Relaxed);
    conn.execute_batch("COMMIT").expect("end the read");
    // Ingest goes on; the writer's next checkpoints complete and the WAL restarts.
    let released = Instant::now();
    let mut after = wal_bytes(dir.path());
    while released.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
        after = wal_bytes(dir.path());
        if after <= WAL_BOUND {
            break;
        }
    }
    let took = released.elapsed();
    stop.store(true, Ordering::Relaxed);
    ingest.join().expect("ingest");
    eprintln!(
        "T39 held read: WAL {:.1} MiB after {batches_during} batches with the reader open; {:.1} MiB {:.1} s after it ended",
        during as f64 / MIB as f64,
        after as f64 / MIB as f64,
        took.as_secs_f64()
    );
    assert!(during > WAL_BOUND, "the WAL grew past its bound while the reader held its snapshot: {during} B");
    assert!(after <= WAL_BOUND, "WAL {after} B after the reader ended");
    drop(store);
    writer.join();
}
