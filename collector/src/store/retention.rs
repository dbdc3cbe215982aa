//! Background upkeep run by the writer between group commits in small steps: converting old `sample` rows to blocks, and retention per tier and table.
//!
//! Each step is one short transaction touching at most a few hundred to a few thousand rows, so
//! ingest waits tens of milliseconds at most. Deleted pages go to SQLite's free list and are
//! reused by later writes: the file stops growing once retention deletes as much as ingest adds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use super::series::{self, BLOCK_MS, Kinds};
use super::{Error, block};

/// How long each kind of history is kept, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Raw samples (blocks).
    pub raw_ms: i64,
    /// Minute rollups.
    pub minute_ms: i64,
    /// Hour rollups.
    pub hour_ms: i64,
    /// Dedup keys of batches (must outlive the longest time an agent holds a batch).
    pub batch_key_ms: i64,
    /// Gaps, log groups, check history, evidence, audit records.
    pub events_ms: i64,
}

const DAY_MS: i64 = 86_400_000;

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw_ms: 15 * DAY_MS,
            minute_ms: 90 * DAY_MS,
            hour_ms: 730 * DAY_MS,
            batch_key_ms: 35 * DAY_MS,
            events_ms: 400 * DAY_MS,
        }
    }
}

/// Old sample rows converted per step.
const MIGRATE_ROWS: i64 = 5_000;
/// Rows deleted per retention step.
const DELETE_ROWS: i64 = 500;
/// Raw blocks expired per step (each may first be rolled up into its minute row).
const EXPIRE_BLOCKS: i64 = 200;
/// Rows looked at per step in tables without a time index.
const SCAN_ROWS: i64 = 2_000;
/// Pause between retention rounds that found nothing to delete.
const IDLE: Duration = Duration::from_secs(60);

/// Tables with an integer id whose rows expire by a time column: (table, time column).
const EVENT_TABLES: [(&str, &str); 6] = [
    ("gap", "received_ms"),
    ("log_group", "last_ms"),
    ("check_result", "at_ms"),
    ("audit", "at_ms"),
    ("http_audit", "at_ms"),
    ("evidence", "to_ms"),
];

/// The deletes bounded by `LIMIT ?2`, each with its cutoff `?1`: minute and hour rollups, points added to expired hours, dedup keys, and the samples behind the evidence and every check result (kept as long
/// as the events they explain, deleted through their `at_ms` index).
fn limited_deletes(r: &Retention, now_ms: i64) -> [(&'static str, i64); 6] {
    [
        (
            "DELETE FROM rollup WHERE tier = 1 AND (start_ms, series_id) IN
             (SELECT start_ms, series_id FROM rollup WHERE tier = 1 AND start_ms <= ?1 LIMIT ?2)",
            now_ms - r.minute_ms - BLOCK_MS,
        ),
        (
            "DELETE FROM rollup WHERE tier = 2 AND (start_ms, series_id) IN
             (SELECT start_ms, series_id FROM rollup WHERE tier = 2 AND start_ms <= ?1 LIMIT ?2)",
            now_ms - r.hour_ms - DAY_MS,
        ),
        // Points added to expired hours (rollup::LATE), kept to count a replay once: as long as
        // the dedup keys (a batch resent later than that is not recognised either).
        (
            "DELETE FROM rollup WHERE tier = 3 AND (start_ms, series_id) IN
             (SELECT start_ms, series_id FROM rollup WHERE tier = 3 AND start_ms <= ?1 LIMIT ?2)",
            now_ms - r.batch_key_ms - BLOCK_MS,
        ),
        (
            "DELETE FROM batch_key WHERE (agent_id, epoch, seq) IN
             (SELECT agent_id, epoch, seq FROM batch_key WHERE received_ms < ?1 LIMIT ?2)",
            now_ms - r.batch_key_ms,
        ),
        (
            "DELETE FROM evidence_point WHERE (agent_id, signal, target, at_ms) IN
             (SELECT agent_id, signal, target, at_ms FROM evidence_point WHERE at_ms < ?1 LIMIT ?2)",
            now_ms - r.events_ms,
        ),
        (
            "DELETE FROM check_point WHERE (agent_id, check_name, target, at_ms) IN
             (SELECT agent_id, check_name, target, at_ms FROM check_point WHERE at_ms < ?1 LIMIT ?2)",
            now_ms - r.events_ms,
        ),
    ]
}

/// State of the background upkeep.
#[derive(Debug)]
pub(crate) struct Upkeep {
    retention: Retention,
    /// The old `sample` table still holds rows.
    migrating: bool,
    /// The earlier layout's `sample_block` table still exists (its rows move in steps).
    moving_blocks: bool,
    next_round: Instant,
    /// Position of the next retention task in the round.
    task: usize,
    /// Id cursors of the event tables.
    cursors: HashMap<&'static str, i64>,
    /// Whether the current round deleted anything.
    round_found: bool,
    /// The database has room to grow ([`Upkeep::set_room`]).
    room: bool,
    /// Expired raw hours wait for room for their minute rollups.
    waiting: bool,
}

impl Upkeep {
    pub(crate) fn new(conn: &Connection, retention: Retention) -> Result<Self, Error> {
        Ok(Upkeep {
            retention,
            migrating: old_samples_exist(conn)?,
            moving_blocks: series::old_blocks_exist(conn)?,
            next_round: Instant::now(),
            task: 0,
            cursors: HashMap::new(),
            round_found: false,
            room: true,
            waiting: false,
        })
    }

    /// Whether the next steps may grow the database (the writer's room below `max_db_bytes`,
    /// see [`super::ingest_reserve`]). Without room, raw hours the minute tier still keeps are
    /// not expired (their minute rollups would need pages, about twice their raw size); raw
    /// hours older than the minute retention still go (pure deletes), and every other delete
    /// runs as usual.
    pub(crate) fn set_room(&mut self, room: bool) {
        self.room = room;
    }

    /// Starts the next retention round now rather than after the idle pause (the database just
    /// became full: what retention frees is needed now).
    pub(crate) fn wake(&mut self) {
        self.next_round = Instant::now();
    }

    /// Whether expired raw hours wait for room for their minute rollups: the retention keeps
    /// more than `max_db_bytes` holds.
    pub(crate) fn waiting_for_room(&self) -> bool {
        self.waiting
    }

    /// Whether old sample rows are still being converted (the next steps are conversion steps).
    pub(crate) fn converting(&self) -> bool {
        self.migrating || self.moving_blocks
    }

    /// Runs one step when there is work; true when it did something (call again soon).
    pub(crate) fn step(&mut self, conn: &mut Connection, kinds: &Kinds, now_ms: i64) -> Result<bool, Error> {
        if self.migrating {
            self.migrating = migrate_step(conn)?;
            return Ok(true);
        }
        if self.moving_blocks {
            self.moving_blocks = series::convert_step(conn)?;
            return Ok(true);
        }
        if Instant::now() < self.next_round {
            return Ok(false);
        }
        let r = self.retention;
        let limited = limited_deletes(&r, now_ms);
        // Raw blocks first (their minute rollups are written as they go), then the rest.
        let tasks = 1 + limited.len() + EVENT_TABLES.len();
        let deleted = match self.task {
            0 => {
                let (cutoff, minute_cutoff) = (now_ms - r.raw_ms - BLOCK_MS, now_ms - r.minute_ms - BLOCK_MS);
                // Without room only the raw hours that need no minute rollups go.
                let expiring = if self.room { cutoff } else { cutoff.min(minute_cutoff) };
                self.waiting = expiring < cutoff && blocks_between(conn, expiring, cutoff)?;
                match expire_blocks(conn, kinds, expiring, minute_cutoff) {
                    // A full step leaves more to do: counted as a full delete step.
                    Ok(n) if n == EXPIRE_BLOCKS as usize => DELETE_ROWS as usize,
                    Ok(n) => n,
                    // At `max_db_bytes` the expiring hours' minute rollups find no pages: the
                    // deletes that only free pages (rollups past a lowered retention, dedup keys,
                    // events) still run this round, and the raw blocks go once they made room.
                    Err(Error::Full) => {
                        self.waiting = true;
                        0
                    }
                    Err(err) => return Err(err),
                }
            }
            n if n <= limited.len() => {
                let (sql, cutoff) = limited[n - 1];
                delete_limited(conn, sql, cutoff)?
            }
            n => {
                let (table, column) = EVENT_TABLES[n - 1 - limited.len()];
                let cursor = self.cursors.get(table).copied().unwrap_or(0);
                let (deleted, next) = delete_scanned(conn, table, column, cursor, now_ms - r.events_ms)?;
                self.cursors.insert(table, next);
                // Not at the end of the table yet: stay on it.
                if next != 0 {
                    self.round_found |= deleted > 0;
                    return Ok(true);
                }
                deleted
            }
        };
        self.round_found |= deleted > 0;
        if deleted < DELETE_ROWS as usize {
            self.task += 1;
            if self.task == tasks {
                self.task = 0;
                if !self.round_found {
                    self.next_round = Instant::now() + IDLE;
                }
                self.round_found = false;
            }
        }
        Ok(true)
    }
}

/// Whether a raw block starts in `(from, to]` (raw hours past the raw retention that still
/// wait for their minute rollups).
fn blocks_between(conn: &Connection, from: i64, to: i64) -> Result<bool, Error> {
    let (lo, hi) = (
        series::block_key(series::block_start(from) + BLOCK_MS, 0),
        series::block_key(series::block_start(to) + BLOCK_MS, 0),
    );
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM series_hour WHERE id >= ?1 AND id < ?2)")?
        .query_row([lo, hi], |r| r.get(0))?)
}

/// Deletes up to [`EXPIRE_BLOCKS`] raw blocks of hours starting at or before `cutoff` (a range
/// of `series_hour` ids), first writing the minute rollups of those that the minute tier still
/// keeps (starting after `minute_cutoff`) and the hour rollup of those still due for it; then the
/// tick sets of the hours left without blocks.
fn expire_blocks(conn: &mut Connection, kinds: &Kinds, cutoff: i64, minute_cutoff: i64) -> Result<usize, Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let end = series::block_key(series::block_start(cutoff) + BLOCK_MS, 0);
    let blocks: Vec<(i64, Vec<u8>)> = tx
        .prepare_cached("SELECT id, data FROM series_hour WHERE id < ?1 ORDER BY id LIMIT ?2")?
        .query_map(params![end, EXPIRE_BLOCKS], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut ticks = series::Ticks::default();
    let mut points = Vec::new();
    for (id, data) in &blocks {
        let (start, series_id) = series::key_parts(*id);
        // A counter's hour refreshed earlier in this step may have made this one (the next) due.
        let due: bool = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM block_due WHERE series_id = ?1 AND start_ms = ?2)")?
            .query_row(params![series_id, start], |r| r.get(0))?;
        if due || start > minute_cutoff {
            points.clear();
            ticks.decode(&tx, start, data, &mut points)?;
            let kind = kinds.get(&series_id).copied().unwrap_or(0);
            if due {
                super::rollup::refresh_hour(&tx, series_id, start, &points, kind)?;
                tx.prepare_cached("DELETE FROM block_due WHERE series_id = ?1 AND start_ms = ?2")?
                    .execute(params![series_id, start])?;
            }
            if start > minute_cutoff {
                super::rollup::materialize_minutes(&tx, series_id, start, &points, kind)?;
            }
        }
    }
    if let (Some((first, _)), Some((last, _))) = (blocks.first(), blocks.last()) {
        tx.prepare_cached("DELETE FROM series_hour WHERE id BETWEEN ?1 AND ?2")?.execute(params![first, last])?;
    }
    // Tick sets go with the last block of their hour.
    let next: Option<i64> = tx.prepare_cached("SELECT MIN(id) FROM series_hour")?.query_row([], |r| r.get(0))?;
    let tick_end = next.map_or(end, |id| end.min(series::block_key(series::key_parts(id).0, 0)));
    tx.prepare_cached("DELETE FROM tick_hour WHERE id < ?1")?.execute([tick_end])?;
    tx.commit()?;
    Ok(blocks.len())
}

fn delete_limited(conn: &mut Connection, sql: &str, cutoff: i64) -> Result<usize, Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let n = tx.prepare_cached(sql)?.execute(params![cutoff, DELETE_ROWS])?;
    tx.commit()?;
    Ok(n)
}

/// Looks at the next [`SCAN_ROWS`] rows after `cursor` by id and deletes the expired ones.
/// Returns the rows deleted and the next cursor (0 at the end of the table).
fn delete_scanned(
    conn: &mut Connection,
    table: &str,
    column: &str,
    cursor: i64,
    cutoff: i64,
) -> Result<(usize, i64), Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (last, seen): (Option<i64>, i64) = tx
        .prepare_cached(&format!(
            "SELECT MAX(id), COUNT(*) FROM (SELECT id FROM {table} WHERE id > ?1 ORDER BY id LIMIT ?2)"
        ))?
        .query_row(params![cursor, SCAN_ROWS], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let Some(last) = last else {
        tx.commit()?;
        return Ok((0, 0));
    };
    let n = tx
        .prepare_cached(&format!("DELETE FROM {table} WHERE id > ?1 AND id <= ?2 AND {column} < ?3"))?
        .execute(params![cursor, last, cutoff])?;
    tx.commit()?;
    Ok((n, if seen < SCAN_ROWS { 0 } else { last }))
}

fn old_samples_exist(conn: &Connection) -> Result<bool, Error> {
    Ok(conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sample'", [], |r| r.get::<_, i64>(0))
        .optional()?
        .is_some())
}

/// Moves up to [`MIGRATE_ROWS`] rows of the old one-row-per-sample table into blocks (and their
/// rollups) and deletes them in the same transaction; drops the table once empty. Returns whether
/// rows remain.
fn migrate_step(conn: &mut Connection) -> Result<bool, Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let rows: Vec<(i64, i64, i64, f64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT rowid, series_id, ts_ms, value FROM sample ORDER BY series_id, ts_ms, rowid LIMIT ?1",
        )?;
        stmt.query_map([MIGRATE_ROWS], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?
    };
    if rows.is_empty() {
        tx.execute_batch("DROP TABLE sample")?;
        tx.commit()?;
        return Ok(false);
    }
    let mut by_series: Vec<(i64, Vec<(i64, f64)>)> = Vec::new();
    for &(_, series_id, ts, value) in &rows {
        match by_series.last_mut() {
            Some((id, points)) if *id == series_id => points.push((ts, value)),
            _ => by_series.push((series_id, vec![(ts, value)])),
        }
    }
    let mut ticks = series::Ticks::default();
    for (series_id, points) in &mut by_series {
        block::normalize(points);
        let mut rest = &points[..];
        while let Some(&(ts, _)) = rest.first() {
            let start = series::block_start(ts);
            let n = rest.iter().position(|p| p.0 >= start + BLOCK_MS).unwrap_or(rest.len());
            series::merge_block(&tx, &mut ticks, *series_id, start, &rest[..n])?;
            rest = &rest[n..];
        }
    }
    let mut delete = tx.prepare_cached("DELETE FROM sample WHERE rowid = ?1")?;
    for (rowid, ..) in &rows {
        delete.execute([rowid])?;
    }
    drop(delete);
    tx.commit()?;
    Ok(true)
}

/// Old rows of a series not yet converted, in `[from, to]` (reads during the conversion).
///
/// # Errors
/// SQLite errors.
pub(crate) fn old_points(conn: &Connection, series_id: i64, from: i64, to: i64) -> Result<Vec<(i64, f64)>, Error> {
    if !old_samples_exist(conn)? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT ts_ms, value FROM sample WHERE series_id = ?1 AND ts_ms BETWEEN ?2 AND ?3 ORDER BY ts_ms, rowid",
    )?;
    let rows = stmt.query_map(params![series_id, from, to], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The samples behind the evidence and the check results are kept as long as the events
    /// they explain (`events_ms`), then removed in steps: exactly what is older, nothing newer.
    #[test]
    fn evidence_and_check_points_older_than_the_event_retention_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = crate::store::open_connection(dir.path()).expect("open");
        let now = 1_000 * DAY_MS;
        let retention = Retention { events_ms: 400 * DAY_MS, ..Retention::default() };
        let cut = now - retention.events_ms;
        // 1,500 points on each side of the cutoff: more than one delete step each.
        for i in -1500..1500_i64 {
            let at = cut + i * 60_000;
            conn.execute(
                "INSERT INTO evidence_point(agent_id, signal, target, at_ms, up) VALUES ('a', 'portal', 'u', ?1, 1)",
                [at],
            )
            .expect("evidence point");
            conn.execute(
                "INSERT INTO check_point(agent_id, check_name, target, at_ms, status, severity, reason, message)
                 VALUES ('a', 'c', 't', ?1, 1, 1, '', '')",
                [at],
            )
            .expect("check point");
        }
        let mut upkeep = Upkeep::new(&conn, retention).expect("upkeep");
        for _ in 0..100 {
            upkeep.step(&mut conn, &Kinds::new(), now).expect("step");
        }
        for table in ["evidence_point", "check_point"] {
            let (n, oldest): (i64, i64) = conn
                .query_row(&format!("SELECT COUNT(*), MIN(at_ms) FROM {table}"), [], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("count");
            assert_eq!((n, oldest), (1500, cut), "{table}: older rows removed, the rest kept");
        }
    }

    /// Raw expiry deletes the whole hours at or before the cutoff (a range of block ids) with
    /// their tick sets, after writing their minute rollups; the next hour keeps its blocks and
    /// tick sets and reads the same.
    #[test]
    fn raw_expiry_removes_whole_hours_with_their_tick_sets_and_nothing_newer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = crate::store::open_connection(dir.path()).expect("open");
        for id in 1..=3_i64 {
            conn.execute(
                "INSERT INTO series(id, agent_id, name, labels, kind) VALUES (?1, 'a', ?2, '', 1)",
                params![id, format!("s{id}")],
            )
            .expect("series");
        }
        let now = 1_000 * DAY_MS;
        let retention = Retention::default();
        let cut = series::block_start(now - retention.raw_ms - BLOCK_MS);
        let hours = [cut - BLOCK_MS, cut, cut + BLOCK_MS];
        let points = |hour: i64, id: i64| -> Vec<(i64, f64)> {
            (0..360).map(|k| (hour + k * 10_000 + k % 7, (k * id % 11) as f64)).collect()
        };
        {
            let tx = conn.transaction().expect("tx");
            let mut ticks = series::Ticks::default();
            for hour in hours {
                for id in 1..=3 {
                    series::merge_block(&tx, &mut ticks, id, hour, &points(hour, id)).expect("block");
                }
            }
            tx.commit().expect("commit");
        }
        let count = |conn: &Connection, sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect("count") };
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM tick_hour"), 3);
        let mut upkeep = Upkeep::new(&conn, retention).expect("upkeep");
        for _ in 0..50 {
            upkeep.step(&mut conn, &Kinds::new(), now).expect("step");
        }
        let kept = series::block_key(cut + BLOCK_MS, 0);
        assert_eq!(count(&conn, &format!("SELECT COUNT(*) FROM series_hour WHERE id >= {kept}")), 3, "next hour kept");
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM series_hour"), 3, "expired hours gone");
        assert_eq!(count(&conn, &format!("SELECT COUNT(*) FROM tick_hour WHERE id >= {kept}")), 1);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM tick_hour"), 1, "expired hours' tick sets gone");
        assert_eq!(
            count(&conn, "SELECT COUNT(DISTINCT start_ms) FROM rollup WHERE tier = 1"),
            2,
            "minute rollups written"
        );
        let head = series::SharedHead::default();
        for id in 1..=3 {
            let got = series::series_points(&conn, &head, id, hours[0], now).expect("read");
            assert_eq!(got, points(cut + BLOCK_MS, id), "series {id}");
        }
    }

    /// At `max_db_bytes` the expiring raw hours' minute rollups find no pages: the deletes that
    /// only free pages (here expired dedup keys) still run, the raw blocks wait for the room they
    /// make (none is dropped without its minute rollups), and all expire once there is room.
    #[test]
    fn a_full_database_still_runs_the_deletes_that_free_pages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = crate::store::open_connection(dir.path()).expect("open");
        let now = 1_000 * DAY_MS;
        let retention = Retention::default();
        let hour = (now - retention.raw_ms - 5 * DAY_MS) / BLOCK_MS * BLOCK_MS;
        let mut rng = 0x9e37_79b9_u64;
        // Six noisy points an hour: each block is far smaller than its minute rollups.
        for series in 1..=600_i64 {
            let points: Vec<(i64, f64)> = (0..6)
                .map(|i| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (hour + i * 600_000, f64::from_bits(rng >> 2))
                })
                .collect();
            let data = block::encode(&points).expect("sorted");
            conn.execute(
                "INSERT INTO series_hour(id, data) VALUES (?1, ?2)",
                params![series::block_key(hour, series), data],
            )
            .expect("block");
        }
        for seq in 0..3000_i64 {
            conn.execute(
                "INSERT INTO batch_key(agent_id, epoch, seq, received_ms, payload_hash, points) VALUES ('a', 1, ?1, ?2, x'00', 1)",
                params![seq, now - retention.batch_key_ms - DAY_MS],
            )
            .expect("batch key");
        }
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).expect("pages");
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(())).expect("bound");
        let count = |conn: &Connection, sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect("count") };
        let mut upkeep = Upkeep::new(&conn, retention).expect("upkeep");
        for _ in 0..100 {
            let _ = upkeep.step(&mut conn, &Kinds::new(), now);
        }
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM batch_key"), 0, "expired dedup keys deleted at the bound");
        // Raw blocks go only with their minute rollups, as the freed pages make room.
        let left = count(&conn, "SELECT COUNT(*) FROM series_hour");
        assert_eq!(left + count(&conn, "SELECT COUNT(*) FROM rollup WHERE tier = 1"), 600, "{left} blocks left");
        conn.query_row("PRAGMA max_page_count = 1000000", [], |_| Ok(())).expect("room");
        let mut upkeep = Upkeep::new(&conn, retention).expect("upkeep");
        for _ in 0..100 {
            upkeep.step(&mut conn, &Kinds::new(), now).expect("step");
        }
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM series_hour"), 0, "raw blocks expired");
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM rollup WHERE tier = 1"), 600, "each with its minute rollups");
    }

    /// Without room (the database at `max_db_bytes` less the head's seal room), raw hours the
    /// minute tier still keeps wait for room for their minute rollups and say so; raw hours
    /// older than the minute retention need no rollup pages and still go. With room again the
    /// waiting hours expire into their minute rollups.
    #[test]
    fn without_room_only_the_raw_hours_that_need_no_minute_rollups_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = crate::store::open_connection(dir.path()).expect("open");
        let now = 1_000 * DAY_MS;
        let retention = Retention::default();
        let kept = (now - retention.raw_ms - 5 * DAY_MS) / BLOCK_MS * BLOCK_MS;
        let gone = (now - retention.minute_ms - 5 * DAY_MS) / BLOCK_MS * BLOCK_MS;
        {
            let tx = conn.transaction().expect("tx");
            let mut ticks = series::Ticks::default();
            for (series, hour) in [(1_i64, kept), (2, gone)] {
                tx.execute(
                    "INSERT INTO series(id, agent_id, name, labels, kind) VALUES (?1, 'a', ?2, '', 1)",
                    params![series, format!("s{series}")],
                )
                .expect("series");
                series::merge_block(&tx, &mut ticks, series, hour, &[(hour, 1.0), (hour + 60_000, 2.0)])
                    .expect("block");
            }
            tx.commit().expect("commit");
        }
        let blocks = |conn: &Connection| -> Vec<i64> {
            let mut stmt = conn.prepare("SELECT id FROM series_hour ORDER BY id").expect("select");
            let keys: Vec<i64> =
                stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows");
            let mut ids: Vec<i64> = keys.into_iter().map(|key| series::key_parts(key).1).collect();
            ids.sort_unstable();
            ids
        };
        let mut upkeep = Upkeep::new(&conn, retention).expect("upkeep");
        upkeep.set_room(false);
        // A fresh database first drops the old sample table (a conversion step), then a round.
        for _ in 0..20 {
            upkeep.step(&mut conn, &Kinds::new(), now).expect("step");
        }
        assert_eq!(blocks(&conn), vec![1], "the hour past the minute retention expired, the other waits");
        assert!(upkeep.waiting_for_room(), "the waiting hour is reported");
        upkeep.set_room(true);
        for _ in 0..30 {
            upkeep.wake();
            upkeep.step(&mut conn, &Kinds::new(), now).expect("step");
        }
        assert!(blocks(&conn).is_empty(), "with room the waiting hour expired");
        assert!(!upkeep.waiting_for_room());
        let minutes: i64 = conn
            .query_row("SELECT COUNT(*) FROM rollup WHERE tier = 1 AND series_id = 1", [], |r| r.get(0))
            .expect("count");
        assert_eq!(minutes, 1, "its minute rollups written");
    }
}
