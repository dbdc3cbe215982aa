//! The collector's SQLite store: one writer thread, read connections, administration writes.
//!
//! ## Design
//! [`Store`] is a cheap handle. Writes go through a bounded channel to the single thread that owns
//! the write connection ([`writer`]); it commits a group of batches per transaction (group commit)
//! and answers each request only after COMMIT returned, so an ack always means "durable".
//! Reads use their own connection ([`query`]) and never wait for the writer (WAL).
//! Administration (enrolment, the collector's run record, maintenance windows, acknowledgements)
//! writes on a connection of its own ([`admin`]). Every SQL statement of the collector is in
//! this module.
//!
//! ## Durability
//! WAL with `synchronous=FULL`. A failed COMMIT other than "busy" or "full" poisons the store: it
//! refuses every later write (agents keep their spools) until the collector restarts, because an
//! fsync error cannot be retried into success.
//!
//! ## Samples
//! Samples are packed per series per hour ([`series`], [`block`]), rolled up per minute and hour
//! ([`rollup`]) and expired per tier ([`retention`]). Remote-write targets read the pending log in
//! commit order from cursors of their own ([`outbox`]).
//!
//! The interface is deliberately narrow (ingest, a few queries, administration) so a denser sample
//! layout or a PostgreSQL backend can replace this one.

pub mod admin;
pub mod block;
pub mod client_link;
pub mod credential;
pub mod history;
pub mod outbox;
pub mod query;
pub mod retention;
pub mod rollup;
pub(crate) mod schema;
pub mod series;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rusqlite::{Connection, ErrorCode, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

pub use retention::Retention;
pub use writer::{GROUP_MAX, MAX_CHECK_RESULTS_PER_MINUTE};

/// Database file name inside the data directory.
pub const DB_FILE: &str = "b24watch.db";

/// Store failures, split by what the caller should do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Another connection holds the lock; retry later.
    #[error("database is busy")]
    Busy,
    /// The disk or `max_page_count` is full; retry after space is freed.
    #[error("database or disk is full")]
    Full,
    /// The store refuses writes (a commit failed, or it is shutting down).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        match err.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Busy,
            Some(ErrorCode::DiskFull) => Error::Full,
            _ => Error::Failed(err.to_string()),
        }
    }
}

/// Metric kinds as stored (same numbers as the wire enum).
pub type Kind = i32;

/// One series of an incoming batch, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesIn {
    /// Name without prefix.
    pub name: String,
    /// Canonical label text (`a="x",b="y"`, sorted by name, escaped for the exposition format).
    pub labels: String,
    /// Gauge, counter or unspecified.
    pub kind: Kind,
    /// Valid points.
    pub points: Vec<(i64, f64)>,
    /// Position in the batch (for rejections).
    pub index: u32,
    /// From `Batch.telemetry` rather than `Batch.series`.
    pub telemetry: bool,
}

impl SeriesIn {
    /// Series `index` of a batch (not telemetry): `name{labels}` of `kind` with `points`.
    pub fn new(
        index: u32,
        name: impl Into<String>,
        labels: impl Into<String>,
        kind: Kind,
        points: Vec<(i64, f64)>,
    ) -> Self {
        Self { name: name.into(), labels: labels.into(), kind, points, index, telemetry: false }
    }
}

/// A gap the agent reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapIn {
    /// Why data was dropped (`spool_full`, ...).
    pub reason: String,
    /// First dropped timestamp.
    pub from_ms: i64,
    /// Last dropped timestamp.
    pub to_ms: i64,
    /// Batches dropped.
    pub dropped_batches: u64,
    /// Points dropped.
    pub dropped_points: u64,
}

/// A log error group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroupIn {
    /// Log name.
    pub log: String,
    /// Message fingerprint.
    pub fingerprint: String,
    /// Severity (wire enum number).
    pub severity: i32,
    /// Occurrences.
    pub count: u64,
    /// First seen.
    pub first_ms: i64,
    /// Last seen.
    pub last_ms: i64,
    /// One example line.
    pub example: String,
    /// File the example was read from.
    pub file: String,
}

/// A check result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckIn {
    /// Check name.
    pub check: String,
    /// What was checked.
    pub target: String,
    /// Status (wire enum number).
    pub status: i32,
    /// Severity (wire enum number).
    pub severity: i32,
    /// Bounded reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// When.
    pub at_ms: i64,
}

/// A validated batch, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestBatch {
    /// Agent id from the credential.
    pub agent_id: String,
    /// Spool epoch.
    pub epoch: u64,
    /// Sequence number in the epoch.
    pub seq: u64,
    /// SHA-256 of the encoded batch, to tell a resend from a conflicting reuse of the key.
    pub payload_hash: [u8; 32],
    /// Collector receive time.
    pub received_ms: i64,
    /// When the agent built the batch (its tick): evidence that the agent was running.
    pub created_ms: i64,
    /// Agent version string.
    pub agent_version: String,
    /// Series with their valid points.
    pub series: Vec<SeriesIn>,
    /// Gap records.
    pub gaps: Vec<GapIn>,
    /// Log groups.
    pub log_groups: Vec<LogGroupIn>,
    /// Check results.
    pub checks: Vec<CheckIn>,
}

impl IngestBatch {
    /// A batch of samples fed to the store directly (benchmarks, examples, tests), without the
    /// gRPC layer: epoch 1, built and received at `at_ms`, the collector's version as the
    /// agent's, and a payload hash made of `seq` (a resend of the same `seq` is a duplicate). Set
    /// the other fields with struct update syntax.
    pub fn direct(agent_id: impl Into<String>, seq: u64, at_ms: i64, series: Vec<SeriesIn>) -> Self {
        let mut payload_hash = [0u8; 32];
        payload_hash[..8].copy_from_slice(&seq.to_le_bytes());
        Self {
            agent_id: agent_id.into(),
            epoch: 1,
            seq,
            payload_hash,
            received_ms: at_ms,
            created_ms: at_ms,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            series,
            gaps: Vec::new(),
            log_groups: Vec::new(),
            checks: Vec::new(),
        }
    }
}

/// What the store did with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored now.
    Stored {
        /// Points stored.
        points: u64,
        /// Series refused because the agent has too many: `(index, telemetry, points)`.
        series_limited: Vec<(u32, bool, u32)>,
    },
    /// The same key with the same content was stored before; nothing stored now.
    Duplicate,
    /// The same key was stored before with different content; nothing stored now.
    Conflict,
}

type Reply = oneshot::Sender<Result<Outcome, Error>>;

/// Work of the writer thread timed per kind ([`Store::step_seconds`]): group commits and the
/// background steps between them.
pub const STEPS: [&str; 6] = ["seal", "rollup", "retention", "conversion", "commit", "compaction"];
pub(crate) const STEP_SEAL: usize = 0;
/// Rollup refreshes inside one seal or conversion step, summed.
pub(crate) const STEP_ROLLUP: usize = 1;
pub(crate) const STEP_RETENTION: usize = 2;
pub(crate) const STEP_CONVERSION: usize = 3;
pub(crate) const STEP_COMMIT: usize = 4;
pub(crate) const STEP_COMPACTION: usize = 5;

/// The longest run and the total time of each kind of writer work since start, in
/// microseconds (indexed as [`STEPS`]). Each step holds the write lock, so its run is how long
/// ingest can wait behind it.
#[derive(Debug, Default)]
pub(crate) struct StepTimes {
    max: [AtomicU64; 6],
    total: [AtomicU64; 6],
}

impl StepTimes {
    pub(crate) fn record(&self, step: usize, elapsed: std::time::Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.max[step].fetch_max(micros, Ordering::Relaxed);
        self.total[step].fetch_add(micros, Ordering::Relaxed);
    }
}

/// Times of one kind of writer work: `(step, longest run, total)`, in seconds.
pub type StepTime = (&'static str, f64, f64);

/// Cheap, cloneable handle to the store.
#[derive(Debug, Clone)]
pub struct Store {
    tx: mpsc::Sender<(Arc<IngestBatch>, Reply)>,
    healthy: Arc<AtomicBool>,
    path: PathBuf,
    results_dropped: Arc<AtomicU64>,
    step_times: Arc<StepTimes>,
    head: series::SharedHead,
    fullness: Arc<Fullness>,
}

/// Where the database stands against `max_db_bytes`, as the writer last saw it (shared with
/// [`Store`] for the metrics).
#[derive(Debug, Default)]
pub(crate) struct Fullness {
    /// Ingest is refused: the used pages reached `max_db_bytes` less [`ingest_reserve`].
    pub(crate) full: AtomicBool,
    /// Expired raw hours wait for room for their minute rollups (the retention keeps more
    /// than `max_db_bytes` holds).
    pub(crate) retention_blocked: AtomicBool,
    /// Batches refused because the database was full.
    pub(crate) refused: AtomicU64,
}

/// What [`Store::fullness`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FullState {
    /// Ingest is refused now: the database is at `max_db_bytes` less the upkeep reserve.
    pub full: bool,
    /// Expired raw hours wait for room for their minute rollups: the retention keeps more than
    /// `max_db_bytes` holds (lower `minute_days` or raise the bound).
    pub retention_blocked: bool,
    /// Batches refused as full since start.
    pub refused_batches: u64,
}

/// Joins the writer thread when dropped by [`Store::open`]'s caller.
#[derive(Debug)]
pub struct WriterHandle(Option<std::thread::JoinHandle<()>>);

impl WriterHandle {
    /// Waits for the writer to commit what it has and close its connection. Call after every
    /// [`Store`] clone is dropped.
    pub fn join(mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.join();
        }
    }
}

/// Opens (creating if needed) the database in `data_dir` and applies migrations.
///
/// # Errors
/// When the directory or database cannot be opened or migrated.
pub fn open_connection(data_dir: &Path) -> Result<Connection, Error> {
    std::fs::create_dir_all(data_dir)
        .map_err(|err| Error::Failed(format!("creating data directory {}: {err}", data_dir.display())))?;
    let path = data_dir.join(DB_FILE);
    let mut conn =
        Connection::open(&path).map_err(|err| Error::Failed(format!("opening {}: {err}", path.display())))?;
    schema::configure(&conn)?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

impl Store {
    /// Opens the store and starts its writer thread.
    ///
    /// # Errors
    /// When the database cannot be opened or migrated.
    pub fn open(
        data_dir: &Path,
        max_series_per_agent: usize,
        max_db_bytes: Option<u64>,
        evidence_span_ms: i64,
        retention: Retention,
    ) -> Result<(Store, query::Reader, WriterHandle), Error> {
        let conn = open_connection(data_dir)?;
        let bound = bound_writer(&conn, max_db_bytes)?;
        let (head, last_pending) = series::load_head(&conn)?;
        let head: series::SharedHead = Arc::new(std::sync::RwLock::new(head));
        let reader = query::Reader::with_head(open_connection(data_dir)?, Arc::clone(&head));
        let healthy = Arc::new(AtomicBool::new(true));
        let results_dropped = Arc::new(AtomicU64::new(0));
        let step_times = Arc::new(StepTimes::default());
        let fullness = Arc::new(Fullness::default());
        let (tx, rx) = mpsc::channel(writer::QUEUE);
        let writer = writer::Writer::new(
            conn,
            Arc::clone(&healthy),
            max_series_per_agent,
            evidence_span_ms,
            (Arc::clone(&results_dropped), Arc::clone(&step_times)),
            (Arc::clone(&head), last_pending),
            (retention, bound, Arc::clone(&fullness)),
        )?;
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|err| Error::Failed(format!("starting the writer thread: {err}")))?;
        let store = Store { tx, healthy, path: data_dir.join(DB_FILE), results_dropped, step_times, head, fullness };
        Ok((store, reader, WriterHandle(Some(handle))))
    }

    /// Stores a batch; returns after COMMIT.
    ///
    /// # Errors
    /// `Busy`/`Full` (retry later), `Unavailable` (store poisoned or closing), `Failed`.
    pub async fn ingest(&self, batch: IngestBatch) -> Result<Outcome, Error> {
        self.ingest_shared(Arc::new(batch)).await
    }

    /// [`Store::ingest`] of a batch the caller still reads afterwards: the writer shares it
    /// rather than a copy (a decoded batch is about as large as its 16-byte points).
    ///
    /// # Errors
    /// As [`Store::ingest`].
    pub async fn ingest_shared(&self, batch: Arc<IngestBatch>) -> Result<Outcome, Error> {
        if !self.is_healthy() {
            return Err(Error::Unavailable(
                "a previous commit failed; restart the collector after fixing the disk".into(),
            ));
        }
        let (reply, answer) = oneshot::channel();
        // A full queue means the writer is saturated: refuse now rather than buffer without bound.
        self.tx.try_send((batch, reply)).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => Error::Busy,
            mpsc::error::TrySendError::Closed(_) => Error::Unavailable("store is closing".into()),
        })?;
        answer.await.map_err(|_| Error::Unavailable("store writer stopped".into()))?
    }

    /// False after a commit failed for a reason other than busy/full.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Check results left out of the history because their agent passed [`MAX_CHECK_RESULTS_PER_MINUTE`].
    pub fn check_results_dropped(&self) -> u64 {
        self.results_dropped.load(Ordering::Relaxed)
    }

    /// The longest run and the total time since start of each kind of the writer's work
    /// ([`STEPS`]): sealing the head into blocks, refreshing rollups (inside a seal step),
    /// retention, converting old rows, group commits and compacting the blocks of past hours. Ingest waits at most a step's longest
    /// run behind it.
    pub fn step_seconds(&self) -> [StepTime; 6] {
        let t = &self.step_times;
        std::array::from_fn(|i| {
            let secs = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e6;
            (STEPS[i], secs(&t.max[i]), secs(&t.total[i]))
        })
    }

    /// Points in the in-memory head (committed, not yet in blocks) and the bytes they take
    /// (encoded). The whole head is sealed at [`series::SEAL_POINTS`] or [`series::SEAL_BYTES`]
    /// (otherwise each hour once it is closed); at twice either ingest waits for it.
    pub fn head_size(&self) -> (usize, usize) {
        let head = self.head.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        (head.len(), head.bytes())
    }

    /// Whether ingest is refused at the disk bound, whether retention waits for room, and the
    /// batches refused as full since start.
    pub fn fullness(&self) -> FullState {
        FullState {
            full: self.fullness.full.load(Ordering::Relaxed),
            retention_blocked: self.fullness.retention_blocked.load(Ordering::Relaxed),
            refused_batches: self.fullness.refused.load(Ordering::Relaxed),
        }
    }

    /// Database file path (for size metrics).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Room kept below `max_db_bytes` for one step of the store's own upkeep (a retention step
/// turning a few hundred raw hours into minute rollups, a compaction step, and
/// the group commit that crossed the line), clamped to between 5 % and a quarter of the bound.
/// Ingest stops this far below the bound, and further by the head's seal room
/// ([`ingest_reserve`]).
pub const UPKEEP_STEP_BYTES: u64 = 4 << 20;
/// Bytes of pages a seal takes per byte of the head until it deletes the pending rows (the
/// blocks it writes and their `block_due` marks), assumed until the writer has measured its own
/// seal steps: dense series (a point every 10 s) take about 1.2, sparse ones far more (a block
/// row, its index entry and its due mark per series and hour whatever the points: about 5 at
/// one point per 10 minutes). The writer keeps the largest ratio its recent seal steps took
/// (decaying towards what it measures), never below [`SEAL_ROOM_MIN`].
pub const SEAL_ROOM_PER_HEAD_BYTE: f64 = 8.0;
/// The least seal room per head byte the writer assumes, whatever it measured.
pub const SEAL_ROOM_MIN: f64 = 1.5;
/// The head is sealed early, before [`series::SEAL_BYTES`], once its seal room would take more
/// than this share of `max_db_bytes` (a small bound keeps its reserve small).
pub const SEAL_ROOM_SHARE: u64 = 4;

/// The upkeep step's share of the reserve for a bound of `max_db_bytes` ([`UPKEEP_STEP_BYTES`],
/// at least 5 % and at most a quarter of the bound): writes from outside the writer
/// (administration, HTTP audit) stop this far below the bound too.
pub fn upkeep_reserve(max_db_bytes: u64) -> u64 {
    UPKEEP_STEP_BYTES.clamp(max_db_bytes / 20, max_db_bytes / 4)
}

/// Bytes below `max_db_bytes` where ingest is refused ([`Error::Full`]) while sealing the head
/// takes `seal_room` bytes (its bytes times the seal ratio, [`SEAL_ROOM_PER_HEAD_BYTE`]): that
/// room plus one upkeep step ([`upkeep_reserve`]). The head is sealed once its seal room
/// passes a quarter of the bound ([`SEAL_ROOM_SHARE`]) or at [`series::SEAL_BYTES`], so the
/// reserve stays near a quarter of the bound plus the step's share. Sealing and compaction may
/// use every page up to the bound; retention may turn raw hours into minute rollups up to the
/// head's seal room and half the step's share (the other half is compaction's).
pub fn ingest_reserve(max_db_bytes: u64, seal_room: u64) -> u64 {
    seal_room.saturating_add(upkeep_reserve(max_db_bytes))
}

/// Pages of `max_db_bytes` on `conn`'s database (its page size).
fn pages_of(conn: &Connection, bytes: u64) -> Result<i64, Error> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(i64::try_from(bytes).unwrap_or(i64::MAX) / page_size.max(512))
}

/// Holds writes through `conn` to `max_db_bytes` less the upkeep step's share of the reserve
/// ([`upkeep_reserve`]): the administration and HTTP connections, whose writes are small and
/// must not take the pages the store's upkeep needs. `PRAGMA max_page_count` is per connection,
/// so every connection that writes gets it; past it a write fails with [`Error::Full`] and
/// nothing of it is stored. (The writer's own connection is bounded at `max_db_bytes` itself
/// and refuses ingest lower, see [`ingest_reserve`].)
///
/// # Errors
/// SQLite errors.
pub fn bound_size(conn: &Connection, max_db_bytes: Option<u64>) -> Result<(), Error> {
    if let Some(bytes) = max_db_bytes {
        set_max_pages(conn, pages_of(conn, bytes - upkeep_reserve(bytes))?)?;
    }
    Ok(())
}

/// Bounds the writer's connection at `max_db_bytes`; returns the bound in pages and the page
/// size (`None` without a bound).
fn bound_writer(conn: &Connection, max_db_bytes: Option<u64>) -> Result<Option<(i64, i64)>, Error> {
    let Some(bytes) = max_db_bytes else { return Ok(None) };
    let pages = pages_of(conn, bytes)?;
    set_max_pages(conn, pages)?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(Some((pages, page_size)))
}

fn set_max_pages(conn: &Connection, pages: i64) -> Result<(), Error> {
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    Ok(())
}

/// Every agent's stored token hash and whether it is revoked (for the collector's credential cache).
///
/// # Errors
/// SQLite errors.
pub fn credentials(conn: &Connection) -> Result<Vec<(String, crate::auth::Stored)>, Error> {
    let mut stmt = conn.prepare_cached("SELECT id, token_hash, revoked_ms IS NOT NULL FROM agent")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, crate::auth::Stored { hash: r.get(1)?, revoked: r.get(2)? })))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One agent's stored token hash and whether it is revoked.
///
/// # Errors
/// SQLite errors.
pub fn credential(conn: &Connection, agent_id: &str) -> Result<Option<crate::auth::Stored>, Error> {
    Ok(conn
        .prepare_cached("SELECT token_hash, revoked_ms IS NOT NULL FROM agent WHERE id = ?1")?
        .query_row([agent_id], |r| Ok(crate::auth::Stored { hash: r.get(0)?, revoked: r.get(1)? }))
        .optional()?)
}
