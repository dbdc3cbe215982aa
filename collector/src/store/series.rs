//! Sample storage: a durable pending log written with each group commit, an in-memory head, and sealing into hourly blocks.
//!
//! ## Layout
//! * `sample_pending(id, data)`: one row per group commit, written in the same transaction as the
//!   batches' dedup keys, holding every point of the group (per series, in block format 1: the
//!   quickest to encode). It is the write-ahead log of the head: after `kill -9` the rows are
//!   read back into the head.
//! * `sample_carry(id, min_ts, max_ts, data)`: points a seal kept in the head (an hour still
//!   open) whose pending rows it deleted, in the pending row encoding, with the span of their
//!   timestamps. Read back before the pending rows. Remote write never reads them.
//! * The head ([`Head`]): the points of the carry and pending rows in memory, shared with readers.
//! * `series_hour(id, data)`: one block per series per hour ([`BLOCK_MS`], aligned); the row id is
//!   [`block_key`], the hour number shifted left [`SERIES_BITS`] bits plus the series id. No
//!   other column and no index: the point count and the last timestamp are in the block, an
//!   hour's blocks are neighbours in series order, a new hour goes at the end of the table, and
//!   raw retention deletes a range of ids. Series ids above [`MAX_SERIES_ID`] are refused when a
//!   series is created (the writer rejects its points as at the per-agent series limit).
//! * `tick_hour(id, data)`: the distinct timestamp sets ("tick sets") of an agent's blocks in an
//!   hour, keyed like a block by the agent's first series id (its group). All series of an agent
//!   are sampled on the agent's tick, so their blocks share one set: a block whose timestamps
//!   equal a set refers to it ([`block::TickRef`], format 4) instead of holding them (about
//!   0.1-0.17 bytes a sample). The list is append-only (a set referenced is never changed), at
//!   most [`MAX_TICK_SETS`] sets; a block matching none of them once the list is full keeps its
//!   own timestamps (format 3). Every decode of a stored block resolves the reference
//!   ([`Ticks`]); retention deletes an hour's tick sets with the hour's last block.
//! * `sample_block`: the layout before schema 17. Its rows move to `series_hour` in steps
//!   ([`convert_step`], run by the writer's upkeep; each step one transaction) and the table is
//!   dropped once empty. Meanwhile reads look there for an hour `series_hour` does not hold, and a
//!   seal into such an hour moves the block with it (at most one of the two holds an hour).
//!
//! ## Sealing
//! Each hour is sealed once, when it is closed: the newest timestamp the head has seen (data
//! time, so a spool backfill or a time-compressed benchmark seals like live data) is
//! [`GRACE_MS`] into a later hour. A seal starts once the first point of a closed hour has waited
//! [`SEAL_AGE`]; it moves the head's points below the boundary (the start of the oldest open
//! hour) to blocks and keeps the others in the head, in small steps between group commits: a
//! step merges the points of a few series into their blocks (the stored point wins on an equal
//! timestamp), marks those blocks due in `block_due` and commits. An hour's points that arrive
//! after its seal (a late agent, a backfill) are below the boundary: the next seal merges them
//! into their blocks; such a seal (the boundary has not moved) takes only the series holding them
//! and leaves the pending rows for the next seal of a closed hour (after a crash they are merged
//! again). The open hour is never sealed by age; only the safety valve seals it: a
//! head over [`SEAL_POINTS`] or [`SEAL_BYTES`] is sealed whole (at twice either, ingest waits).
//!
//! The last step of a seal deletes the pending rows the seal covered ([`outbox::after_seal`])
//! and, in the same transaction, writes the points of those rows that stay in the head as one
//! carry row, and deletes the carry rows whose points were all sealed (a carry row holding
//! points on both sides of the boundary is carried again whole, its row replaced). The head is
//! read back from the carry rows, then the pending rows after the sealed position: a point kept
//! in the head is in exactly one of them. A crash between steps replays the same rows as before
//! the seal, and the next seal merges again what was merged: merging is idempotent, so nothing
//! is lost or doubled.
//!
//! ## Compaction and page fill
//! Once an hour is over and no seal has written into it for [`COMPACT_IDLE`] (or at a clean
//! stop), [`Compaction`] takes its due blocks in series order, [`COMPACT_ROWS`] a step, and
//! refreshes each one's hour rollup ([`super::rollup`]; once per hour rather than at every seal).
//! Until then reads compute those hours from the raw samples ([`due_hours`]). Each step is one
//! transaction, so a crash leaves every block due until it is done.
//!
//! Blocks are not moved: their key is their place. An hour sealed once (the head seals an hour
//! when it closes) is inserted in key order at the end of the table, where SQLite fills pages
//! completely. An hour written again (late points, a backfill, a seal before the hour closed)
//! grows its blocks in place: a page that no longer fits is split and balanced with its
//! neighbours, leaving those pages partly filled. That costs less than moving every hour's
//! blocks once more, and such hours are a small share of the data kept.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rusqlite::{OptionalExtension, Transaction, params};

use super::block::{self, get_varint, put_varint};
use super::{Error, outbox, rollup};

/// Points per series id, as one pending row holds them.
pub type Staged = Vec<(i64, Vec<(i64, f64)>)>;

/// Length of a block, aligned to multiples since the epoch.
pub const BLOCK_MS: i64 = 3_600_000;
/// The open hour stays in the head until the newest timestamp seen is this far into the next
/// hour (data time): an agent slightly behind the others still lands its points in the head.
pub(crate) const GRACE_MS: i64 = 120_000;
/// Points of closed hours are sealed once the first of them has waited this long (wall clock):
/// the agents crossing an hour's end in that time are sealed together, and a trickling backfill
/// is sealed at most this often. The open hour is never sealed by age.
pub(crate) const SEAL_AGE: Duration = Duration::from_secs(2);
/// Safety valve: a head holding this many points, or this many bytes (a noisy value takes up to
/// ~10 bytes encoded, a smooth one ~1), is sealed whole, open hour included; at twice either
/// ingest waits. An hour of 200 agents × 300 series at 10 s (21.6 M points) fits below both.
pub(crate) const SEAL_POINTS: usize = 40_000_000;
pub(crate) const SEAL_BYTES: usize = 128 << 20;
/// Points merged into blocks per seal step (a step is one short transaction).
const STEP_POINTS: usize = 25_000;
/// Points decoded per seal step at most (most of them may stay in the head).
const STEP_DECODE: usize = 250_000;
/// Series per seal step at most.
const STEP_SERIES: usize = 1_000;
/// Blocks rolled up and moved per compaction step.
const COMPACT_ROWS: i64 = 500;
/// An hour is compacted once no seal wrote into it for this long.
pub(crate) const COMPACT_IDLE: Duration = Duration::from_secs(600);

/// Start of the block holding `ts`.
pub fn block_start(ts: i64) -> i64 {
    ts.div_euclid(BLOCK_MS) * BLOCK_MS
}

/// One series in the head.
#[derive(Debug)]
struct Entry {
    /// Its points in arrival order, encoded: about 2 bytes a point rather than 16.
    points: block::Appender,
    /// Points appended.
    n: usize,
    /// The first `carried` points are in `sample_carry` rows (kept in the head by earlier seals);
    /// the others are in pending rows not yet sealed.
    carried: usize,
    /// Oldest timestamp among the points.
    oldest: i64,
}

/// Points not yet in blocks, by series, in arrival order, kept encoded ([`block::Appender`]).
#[derive(Debug)]
pub struct Head {
    series: HashMap<i64, Entry>,
    points: usize,
    /// Memory of the appenders (their bit streams and map entries).
    bytes: usize,
    /// Newest timestamp seen since the start: sealing follows the data's clock, not the wall
    /// clock (a spool backfill or the ingest benchmark sends past timestamps).
    newest: i64,
    /// Oldest timestamp held (may be lower than the oldest left while a seal runs).
    oldest: i64,
    /// Since when the head holds points below [`Head::boundary`] (of closed hours).
    closed_since: Option<Instant>,
    /// Oldest and newest timestamp of the points in `sample_carry` rows (none: no rows).
    carry_span: Option<(i64, i64)>,
    /// Boundary of the last seal that deleted pending rows (`i64::MIN`: none since the start).
    cut_below: i64,
}

impl Default for Head {
    fn default() -> Self {
        Head {
            series: HashMap::new(),
            points: 0,
            bytes: 0,
            newest: i64::MIN,
            oldest: i64::MAX,
            closed_since: None,
            carry_span: None,
            cut_below: i64::MIN,
        }
    }
}

/// Memory of one series' entry in the head beyond its bit stream.
const ENTRY_BYTES: usize = std::mem::size_of::<(i64, Entry)>() + 8;

/// The head shared by the writer and readers.
pub type SharedHead = Arc<RwLock<Head>>;

impl Head {
    /// Adds committed points (as [`write_pending`] wrote them).
    pub(crate) fn add(&mut self, staged: &[(i64, Vec<(i64, f64)>)]) {
        for (series_id, points) in staged {
            self.push(*series_id, points);
        }
    }

    /// Adds the points of one pending or carry row (the bytes written to `sample_pending`).
    ///
    /// # Errors
    /// A corrupt row.
    pub(crate) fn add_row(&mut self, data: &[u8]) -> Result<(), Error> {
        let corrupt = |err: block::BlockError| Error::Failed(format!("pending samples: {err}"));
        let mut pos = 0;
        while pos < data.len() {
            let series_id = get_varint(data, &mut pos).map_err(corrupt)? as i64;
            let len = get_varint(data, &mut pos).map_err(corrupt)? as usize;
            let bytes =
                data.get(pos..pos.saturating_add(len)).ok_or(Error::Failed("pending samples: truncated".into()))?;
            pos += len;
            self.add_block(series_id, bytes)?;
        }
        Ok(())
    }

    fn add_block(&mut self, series_id: i64, encoded: &[u8]) -> Result<(), Error> {
        let mut points = Vec::new();
        block::decode_into(encoded, &mut points).map_err(|err| Error::Failed(format!("pending samples: {err}")))?;
        self.push(series_id, &points);
        Ok(())
    }

    fn push(&mut self, series_id: i64, points: &[(i64, f64)]) {
        if points.is_empty() {
            return;
        }
        self.points += points.len();
        let entry = self.series.entry(series_id).or_insert_with(|| {
            self.bytes += ENTRY_BYTES;
            Entry { points: block::Appender::default(), n: 0, carried: 0, oldest: i64::MAX }
        });
        let before = entry.points.stream_bytes();
        let (mut oldest, mut newest) = (entry.oldest, self.newest);
        for &(ts, value) in points {
            entry.points.push(ts, value);
            oldest = oldest.min(ts);
            newest = newest.max(ts);
        }
        entry.n += points.len();
        entry.oldest = oldest;
        self.bytes += entry.points.stream_bytes() - before;
        self.newest = newest;
        self.oldest = self.oldest.min(oldest);
        if self.closed_since.is_none() && self.oldest < self.boundary() {
            self.closed_since = Some(Instant::now());
        }
    }

    /// Start of the oldest hour still open: the hour of the newest timestamp seen less
    /// [`GRACE_MS`]. The hours before it are closed.
    fn boundary(&self) -> i64 {
        if self.newest == i64::MIN { i64::MIN } else { block_start(self.newest.saturating_sub(GRACE_MS)) }
    }

    /// Points of a series in `[from, to]`, in arrival order.
    ///
    /// # Errors
    /// Corrupt head data (never written by this build).
    pub fn points(&self, series_id: i64, from: i64, to: i64) -> Result<Vec<(i64, f64)>, Error> {
        let mut all = Vec::new();
        if let Some(entry) = self.series.get(&series_id) {
            entry.points.decode_into(&mut all).map_err(|err| Error::Failed(format!("head samples: {err}")))?;
        }
        all.retain(|p| (from..=to).contains(&p.0));
        Ok(all)
    }

    /// Points held.
    pub fn len(&self) -> usize {
        self.points
    }

    /// Whether the head holds no point.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the head's encoded points take.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the head is over twice its sealing bound (ingest waits for sealing then).
    pub(crate) fn over_bound(&self) -> bool {
        self.len() >= 2 * SEAL_POINTS || self.bytes() >= 2 * SEAL_BYTES
    }
}

/// Appends one series' points to a row in the pending row encoding.
fn put_points(data: &mut Vec<u8>, series_id: i64, points: &[(i64, f64)]) {
    let encoded = block::encode_fast(points);
    put_varint(data, series_id as u64);
    put_varint(data, encoded.len() as u64);
    data.extend_from_slice(&encoded);
}

/// Writes the points of one group commit as one pending row.
///
/// # Errors
/// SQLite errors.
/// Returns the row's id (`None` when there were no points).
pub(crate) fn write_pending(tx: &Transaction<'_>, staged: &mut [(i64, Vec<(i64, f64)>)]) -> Result<Option<i64>, Error> {
    if staged.is_empty() {
        return Ok(None);
    }
    let mut data = Vec::new();
    for (series_id, points) in staged.iter_mut() {
        block::normalize(points);
        put_points(&mut data, *series_id, points);
    }
    tx.prepare_cached("INSERT INTO sample_pending(data) VALUES (?1)")?.execute([&data])?;
    Ok(Some(tx.last_insert_rowid()))
}

/// Decodes one pending row (also read by [`outbox`] for remote write).
///
/// # Errors
/// A corrupt row.
pub(crate) fn decode_pending(data: &[u8], out: &mut Staged) -> Result<(), Error> {
    let corrupt = |err: block::BlockError| Error::Failed(format!("pending samples: {err}"));
    let mut pos = 0;
    while pos < data.len() {
        let series_id = get_varint(data, &mut pos).map_err(corrupt)? as i64;
        let len = get_varint(data, &mut pos).map_err(corrupt)? as usize;
        let bytes = data.get(pos..pos.saturating_add(len)).ok_or(Error::Failed("pending samples: truncated".into()))?;
        pos += len;
        out.push((series_id, block::decode(bytes).map_err(corrupt)?));
    }
    Ok(())
}

/// Reads the carry rows, then every pending row not yet sealed ([`outbox::sealed_upto`]: rows
/// kept for remote write are not replayed) into a fresh head (at startup). Returns the head and
/// the last row id.
///
/// # Errors
/// SQLite errors, corrupt rows.
pub(crate) fn load_head(conn: &rusqlite::Connection) -> Result<(Head, i64), Error> {
    let mut head = Head::default();
    {
        let mut stmt = conn.prepare("SELECT min_ts, max_ts, data FROM sample_carry ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (lo, hi): (i64, i64) = (row.get(0)?, row.get(1)?);
            head.carry_span = Some(head.carry_span.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
            head.add_row(row.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?)?;
        }
    }
    for entry in head.series.values_mut() {
        entry.carried = entry.n;
    }
    let sealed = outbox::sealed_upto(conn)?;
    let mut last = sealed;
    let mut stmt = conn.prepare("SELECT id, data FROM sample_pending WHERE id > ?1 ORDER BY id")?;
    let mut rows = stmt.query([sealed])?;
    while let Some(row) = rows.next()? {
        last = row.get(0)?;
        head.add_row(row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?)?;
    }
    Ok((head, last))
}

/// A seal in progress.
#[derive(Debug)]
pub(crate) struct Seal {
    /// Series still to do, with the points each held when the seal started, largest id last.
    todo: Vec<(i64, usize)>,
    /// Pending rows up to this id are covered, deleted by the last step (their points that stay
    /// in the head carried). None: a seal of late points only (the boundary has not moved since
    /// the last seal with a cut), whose rows stay until the next seal with a cut.
    cut: Option<i64>,
    /// Points below this timestamp are sealed (`i64::MAX`: all), the others stay in the head.
    below: i64,
    /// The carry rows' points kept in the head are carried again and the rows replaced (some
    /// row holds points on both sides of `below`).
    recarry: bool,
    /// The last step deletes every carry row (with `recarry`, or when all their points are sealed).
    drop_carry: bool,
    /// The points staying in the head that only pending rows up to `cut` hold: the carry row the
    /// last step writes, and the span of its timestamps.
    carry: Vec<u8>,
    carry_span: Option<(i64, i64)>,
    /// Hours whose blocks this seal wrote.
    pub(crate) hours: Vec<i64>,
    /// Points moved to blocks so far.
    pub(crate) moved: usize,
}

/// Starts a seal when the head is due (see the module docs): the head holds points of closed
/// hours, the first of them for [`SEAL_AGE`]; or it is over [`SEAL_POINTS`] or [`SEAL_BYTES`], or
/// `force` (a clean stop): then every point is sealed.
pub(crate) fn start_seal(head: &SharedHead, last_pending: i64, force: bool) -> Option<Seal> {
    start_seal_at(head, last_pending, force, Instant::now())
}

/// [`start_seal`] as if it were `now`.
fn start_seal_at(head: &SharedHead, last_pending: i64, force: bool, now: Instant) -> Option<Seal> {
    let head = head.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    if head.points == 0 {
        return None;
    }
    let all = force || head.points >= SEAL_POINTS || head.bytes >= SEAL_BYTES;
    let boundary = head.boundary();
    let closed = head.oldest < boundary
        && head.closed_since.is_some_and(|since| now.saturating_duration_since(since) >= SEAL_AGE);
    if !all && !closed {
        return None;
    }
    let below = if all { i64::MAX } else { boundary };
    // Points of an hour already sealed (a late agent, a backfill) while the boundary stays: only
    // the series holding them are sealed, and the pending rows stay (replayed after a crash,
    // merging again what is in blocks already) until the boundary moves.
    let cut = (all || below != head.cut_below).then_some(last_pending);
    let recarry = cut.is_some() && head.carry_span.is_some_and(|(lo, hi)| lo < below && hi >= below);
    let drop_carry = recarry || (cut.is_some() && head.carry_span.is_some_and(|(_, hi)| hi < below));
    let mut todo: Vec<(i64, usize)> = head
        .series
        .iter()
        .filter(|(_, e)| e.oldest < below || (cut.is_some() && (e.n > e.carried || (recarry && e.carried > 0))))
        .map(|(id, e)| (*id, e.n))
        .collect();
    todo.sort_unstable_by_key(|t| std::cmp::Reverse(t.0));
    Some(Seal {
        todo,
        cut,
        below,
        recarry,
        drop_carry,
        carry: Vec::new(),
        carry_span: None,
        hours: Vec::new(),
        moved: 0,
    })
}

/// Kinds of the series, for rollups (counters roll up as increases).
pub(crate) type Kinds = HashMap<i64, super::Kind>;

/// One series of a seal step.
struct Split {
    series_id: i64,
    /// Points it held when read (the head changes only on the writer's thread, between steps).
    held: usize,
    /// Points moved to blocks.
    sealed: Vec<(i64, f64)>,
    /// Points staying in the head, in arrival order, and how many of them lead (the ones in
    /// carry rows once the seal completes).
    keep: Vec<(i64, f64)>,
    carried: usize,
}

fn widen(span: Option<(i64, i64)>, other: Option<(i64, i64)>) -> Option<(i64, i64)> {
    match (span, other) {
        (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
        (span, other) => span.or(other),
    }
}

/// Runs one step of a seal; true when the seal is complete.
///
/// # Errors
/// SQLite errors (the step rolls back and can be retried; nothing is lost).
pub(crate) fn seal_step(conn: &mut rusqlite::Connection, head: &SharedHead, seal: &mut Seal) -> Result<bool, Error> {
    let mut batch: Vec<Split> = Vec::new();
    let (mut decoded, mut moved) = (0, 0);
    // This step's share of the carry row (appended to the seal's once the step committed).
    let mut carry = Vec::new();
    let mut carry_span = None;
    {
        let head = head.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Series leave the to-do list only once their step committed: a failed step is retried.
        for &(series_id, at_start) in seal.todo.iter().rev() {
            if batch.len() >= STEP_SERIES || moved >= STEP_POINTS || decoded >= STEP_DECODE {
                break;
            }
            let mut all = Vec::new();
            let mut carried = 0;
            if let Some(entry) = head.series.get(&series_id) {
                entry.points.decode_into(&mut all).map_err(|err| Error::Failed(format!("head samples: {err}")))?;
                carried = entry.carried;
            }
            decoded += all.len();
            let at_start = at_start.min(all.len());
            // Points from the start on that only pending rows up to the cut hold (or every one
            // when the carry rows are replaced).
            let from = if seal.recarry { 0 } else { carried.min(at_start) };
            let (mut sealed, mut keep, mut carry_points) = (Vec::new(), Vec::new(), Vec::new());
            // Points staying in the head that are in carry rows after this seal.
            let mut carried_after = 0;
            for (i, &point) in all[..at_start].iter().enumerate() {
                if point.0 < seal.below {
                    sealed.push(point);
                } else {
                    keep.push(point);
                    if seal.cut.is_none() {
                        carried_after += usize::from(i < carried);
                    } else {
                        carried_after += 1;
                        if i >= from {
                            carry_points.push(point);
                        }
                    }
                }
            }
            let carried = carried_after;
            keep.extend_from_slice(&all[at_start..]);
            if !carry_points.is_empty() {
                block::normalize(&mut carry_points);
                let span = (carry_points[0].0, carry_points[carry_points.len() - 1].0);
                carry_span = widen(carry_span, Some(span));
                put_points(&mut carry, series_id, &carry_points);
            }
            moved += sealed.len();
            batch.push(Split { series_id, held: all.len(), sealed, keep, carried });
        }
    }
    let done = seal.todo.len() == batch.len();
    // A step that only read the points to carry writes nothing.
    if moved > 0 || done {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut ticks = Ticks::default();
        for split in &mut batch {
            block::normalize(&mut split.sealed);
            let mut rest = &split.sealed[..];
            while let Some(&(ts, _)) = rest.first() {
                let start = block_start(ts);
                let n = rest.iter().position(|p| p.0 >= start + BLOCK_MS).unwrap_or(rest.len());
                merge_block(&tx, &mut ticks, split.series_id, start, &rest[..n])?;
                if !seal.hours.contains(&start) {
                    seal.hours.push(start);
                }
                rest = &rest[n..];
            }
        }
        if let Some(cut) = seal.cut.filter(|_| done) {
            // Sealed rows go once every remote-write target has them; the points they hold that
            // stay in the head are carried in `sample_carry`, in this transaction.
            outbox::after_seal(&tx, cut)?;
            if seal.drop_carry {
                tx.prepare_cached("DELETE FROM sample_carry")?.execute([])?;
            }
            if let Some((lo, hi)) = widen(seal.carry_span, carry_span) {
                let mut data = seal.carry.clone();
                data.extend_from_slice(&carry);
                tx.prepare_cached("INSERT INTO sample_carry(min_ts, max_ts, data) VALUES (?1, ?2, ?3)")?
                    .execute(params![lo, hi, data])?;
            }
        }
        tx.commit()?;
    }
    seal.todo.truncate(seal.todo.len() - batch.len());
    seal.moved += moved;
    seal.carry.extend_from_slice(&carry);
    seal.carry_span = widen(seal.carry_span, carry_span);
    let mut guard = head.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    let head = &mut *guard;
    for split in batch {
        let Some(entry) = head.series.get_mut(&split.series_id) else { continue };
        debug_assert_eq!(entry.n, split.held, "the head changed during a seal step");
        if split.sealed.is_empty() {
            entry.carried = split.carried;
            continue;
        }
        let Some(old) = head.series.remove(&split.series_id) else { continue };
        head.bytes = head.bytes.saturating_sub(old.points.stream_bytes() + ENTRY_BYTES);
        head.points = head.points.saturating_sub(old.n);
        if split.keep.is_empty() {
            continue;
        }
        let mut entry =
            Entry { points: block::Appender::default(), n: split.keep.len(), carried: split.carried, oldest: i64::MAX };
        for &(ts, value) in &split.keep {
            entry.points.push(ts, value);
            entry.oldest = entry.oldest.min(ts);
        }
        head.bytes += entry.points.stream_bytes() + ENTRY_BYTES;
        head.points += entry.n;
        head.series.insert(split.series_id, entry);
    }
    if done && seal.cut.is_some() {
        head.carry_span = if seal.drop_carry { seal.carry_span } else { widen(head.carry_span, seal.carry_span) };
        head.cut_below = seal.below;
    }
    if done {
        head.oldest = head.series.values().map(|e| e.oldest).min().unwrap_or(i64::MAX);
        // Points of closed hours that arrived during the seal wait for the next one.
        head.closed_since = (head.oldest < head.boundary()).then(Instant::now);
    }
    Ok(done)
}

/// Series ids fit this many bits: a block's row id is its hour number shifted past them.
pub const SERIES_BITS: u32 = 24;
/// The largest series id the block layout can hold ([`SERIES_BITS`]).
pub const MAX_SERIES_ID: i64 = (1 << SERIES_BITS) - 1;
/// Tick sets kept per agent-hour at most: a block whose timestamps match none of them once the
/// list is full keeps its own timestamps (format 3).
const MAX_TICK_SETS: usize = 32;

/// Row id of the block of `series_id` for the hour at `start` in `series_hour` (also the row id
/// of a group's tick sets in `tick_hour`): the hour number, then the series id in the low
/// [`SERIES_BITS`] bits, so an hour's blocks are neighbours in series order.
pub fn block_key(start: i64, series_id: i64) -> i64 {
    start.div_euclid(BLOCK_MS) * (1 << SERIES_BITS) + series_id
}

/// The hour start and series id of a `series_hour` row id.
pub fn key_parts(key: i64) -> (i64, i64) {
    (key.div_euclid(1 << SERIES_BITS) * BLOCK_MS, key.rem_euclid(1 << SERIES_BITS))
}

/// Tick sets read or written, by `tick_hour` row id; and, when writing, each series' group.
/// Lives for one transaction (a seal step, a conversion step, one read): a rolled-back step
/// leaves nothing of what it wrote behind in memory.
#[derive(Debug, Default)]
pub(crate) struct Ticks {
    sets: HashMap<i64, Vec<Vec<i64>>>,
    /// Series id → its group (the first series id of its agent).
    groups: HashMap<i64, i64>,
    /// Agent → its group.
    agents: HashMap<String, i64>,
    /// Whether the table of the earlier layout still exists (checked once).
    old: Option<bool>,
}

fn corrupt(err: block::BlockError) -> Error {
    Error::Failed(err.to_string())
}

/// Reads the tick sets of a `tick_hour` row (empty when there is none).
fn read_sets(conn: &rusqlite::Connection, id: i64) -> Result<Vec<Vec<i64>>, Error> {
    let data: Option<Vec<u8>> =
        conn.prepare_cached("SELECT data FROM tick_hour WHERE id = ?1")?.query_row([id], |r| r.get(0)).optional()?;
    let mut sets = Vec::new();
    if let Some(data) = data {
        let mut pos = 0;
        while pos < data.len() {
            let len = get_varint(&data, &mut pos).map_err(corrupt)? as usize;
            let bytes = data.get(pos..pos.saturating_add(len)).ok_or(Error::Failed("tick sets: truncated".into()))?;
            pos += len;
            sets.push(block::decode_ticks(bytes).map_err(corrupt)?);
        }
    }
    Ok(sets)
}

impl Ticks {
    /// The tick sets of a `tick_hour` row (empty when there is none).
    fn sets(&mut self, conn: &rusqlite::Connection, id: i64) -> Result<&mut Vec<Vec<i64>>, Error> {
        Ok(match self.sets.entry(id) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(read_sets(conn, id)?),
        })
    }

    /// Decodes a block of the hour at `start`, resolving its tick set.
    pub(crate) fn decode(
        &mut self,
        conn: &rusqlite::Connection,
        start: i64,
        data: &[u8],
        out: &mut Vec<(i64, f64)>,
    ) -> Result<(), Error> {
        match block::tick_ref(data).map_err(corrupt)? {
            None => block::decode_into(data, out).map_err(corrupt),
            Some(tick) => {
                let id = block_key(start, tick.group as i64);
                let set = self
                    .sets(conn, id)?
                    .get(tick.index as usize)
                    .ok_or(Error::Failed(format!("sample block refers to a missing tick set {id}/{}", tick.index)))?;
                block::decode_ticked(data, set, out).map_err(corrupt)
            }
        }
    }

    /// The group of a series: the first series id of its agent.
    fn group(&mut self, conn: &rusqlite::Connection, series_id: i64) -> Result<Option<i64>, Error> {
        if let Some(group) = self.groups.get(&series_id) {
            return Ok(Some(*group));
        }
        let agent: Option<String> = conn
            .prepare_cached("SELECT agent_id FROM series WHERE id = ?1")?
            .query_row([series_id], |r| r.get(0))
            .optional()?;
        let Some(agent) = agent else { return Ok(None) };
        let group = match self.agents.get(&agent) {
            Some(group) => *group,
            None => {
                let group: i64 = conn
                    .prepare_cached("SELECT MIN(id) FROM series WHERE agent_id = ?1")?
                    .query_row([&agent], |r| r.get(0))?;
                self.agents.insert(agent, group);
                group
            }
        };
        self.groups.insert(series_id, group);
        Ok(Some(group))
    }

    /// Whether the `sample_block` table of the earlier layout still exists.
    fn old_table(&mut self, conn: &rusqlite::Connection) -> Result<bool, Error> {
        if self.old.is_none() {
            self.old = Some(old_blocks_exist(conn)?);
        }
        Ok(self.old == Some(true))
    }
}

/// Whether the `sample_block` table of the earlier layout (schema before 17) still exists: its
/// rows are moved to `series_hour` in steps ([`convert_step`]).
///
/// # Errors
/// SQLite errors.
pub(crate) fn old_blocks_exist(conn: &rusqlite::Connection) -> Result<bool, Error> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sample_block')")?
        .query_row([], |r| r.get(0))?)
}

/// The stored block of a series' hour: `series_hour`, else (while the conversion runs) the
/// earlier layout's `sample_block`.
fn read_block(
    conn: &rusqlite::Connection,
    ticks: &mut Ticks,
    series_id: i64,
    start: i64,
) -> Result<Option<(Vec<u8>, bool)>, Error> {
    let data: Option<Vec<u8>> = conn
        .prepare_cached("SELECT data FROM series_hour WHERE id = ?1")?
        .query_row([block_key(start, series_id)], |r| r.get(0))
        .optional()?;
    if let Some(data) = data {
        return Ok(Some((data, false)));
    }
    if !ticks.old_table(conn)? {
        return Ok(None);
    }
    let data: Option<Vec<u8>> = conn
        .prepare("SELECT data FROM sample_block WHERE start_ms = ?1 AND series_id = ?2")?
        .query_row(params![start, series_id], |r| r.get(0))
        .optional()?;
    Ok(data.map(|data| (data, true)))
}

/// Decodes the stored block of `series_hour` row `id` (resolving its tick set), for tools.
///
/// # Errors
/// SQLite errors, corrupt blocks.
pub fn decode_stored(conn: &rusqlite::Connection, id: i64, data: &[u8]) -> Result<Vec<(i64, f64)>, Error> {
    let mut out = Vec::new();
    Ticks::default().decode(conn, key_parts(id).0, data, &mut out)?;
    Ok(out)
}

/// Whether the series has a raw block for the hour at `start`.
///
/// # Errors
/// SQLite errors.
pub(crate) fn has_block(conn: &rusqlite::Connection, series_id: i64, start: i64) -> Result<bool, Error> {
    let found: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM series_hour WHERE id = ?1)")?
        .query_row([block_key(start, series_id)], |r| r.get(0))?;
    if found || !old_blocks_exist(conn)? {
        return Ok(found);
    }
    Ok(conn
        .prepare("SELECT EXISTS (SELECT 1 FROM sample_block WHERE start_ms = ?1 AND series_id = ?2)")?
        .query_row(params![start, series_id], |r| r.get(0))?)
}

/// Samples held in raw blocks (both layouts), counted from the blocks' headers.
///
/// # Errors
/// SQLite errors, corrupt blocks.
pub fn stored_samples(conn: &rusqlite::Connection) -> Result<i64, Error> {
    let mut total = 0i64;
    let mut tables = vec!["series_hour"];
    if old_blocks_exist(conn)? {
        tables.push("sample_block");
    }
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT data FROM {table}"))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let data = row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
            total += block::count(data).map_err(corrupt)? as i64;
        }
    }
    Ok(total)
}

/// When seals last wrote into each hour, and the hour being rolled up (see the module docs).
/// The blocks due are in `block_due`, so a crash loses nothing of this but the idle times.
#[derive(Debug, Default)]
pub(crate) struct Compaction {
    /// Hour start → when a seal last wrote into it (since start).
    touched: HashMap<i64, Instant>,
    /// The hour being rolled up and the last series id done.
    current: Option<(i64, i64)>,
}

impl Compaction {
    /// Notes that a seal wrote into these hours.
    pub(crate) fn touch(&mut self, hours: &[i64]) {
        let now = Instant::now();
        for hour in hours {
            self.touched.insert(*hour, now);
        }
    }

    /// Refreshes the hour rollups of the next [`COMPACT_ROWS`] due blocks of the oldest hour with
    /// due blocks, when that hour is over (`now_ms`) and no seal wrote into it for
    /// [`COMPACT_IDLE`] (or with `force`, a clean stop). Hours go oldest first, so a counter's
    /// increase always starts from a refreshed hour before. True when it did something.
    ///
    /// # Errors
    /// SQLite errors, corrupt blocks (the step rolls back and is retried).
    pub(crate) fn step(
        &mut self,
        conn: &mut rusqlite::Connection,
        kinds: &Kinds,
        now_ms: i64,
        force: bool,
    ) -> Result<bool, Error> {
        let (hour, after) = match self.current {
            Some(current) => current,
            None => {
                let oldest: Option<i64> = conn.query_row("SELECT MIN(start_ms) FROM block_due", [], |r| r.get(0))?;
                let Some(hour) = oldest else { return Ok(false) };
                let idle = force || self.touched.get(&hour).is_none_or(|at| at.elapsed() >= COMPACT_IDLE);
                if hour.saturating_add(BLOCK_MS) > now_ms || !idle {
                    return Ok(false);
                }
                self.touched.remove(&hour);
                // Kept while the hour is being done: a failed step is retried from here.
                self.current = Some((hour, i64::MIN));
                (hour, i64::MIN)
            }
        };
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let due: Vec<i64> = tx
            .prepare_cached(
                "SELECT series_id FROM block_due WHERE start_ms = ?1 AND series_id > ?2 ORDER BY series_id LIMIT ?3",
            )?
            .query_map(params![hour, after, COMPACT_ROWS], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut ticks = Ticks::default();
        let mut points = Vec::new();
        for series_id in &due {
            tx.prepare_cached("DELETE FROM block_due WHERE series_id = ?1 AND start_ms = ?2")?
                .execute(params![series_id, hour])?;
            points.clear();
            if let Some((data, _)) = read_block(&tx, &mut ticks, *series_id, hour)? {
                ticks.decode(&tx, hour, &data, &mut points)?;
            }
            let kind = kinds.get(series_id).copied().unwrap_or(0);
            rollup::refresh_hour(&tx, *series_id, hour, &points, kind)?;
        }
        tx.commit()?;
        self.current = match due.last() {
            Some(series_id) if due.len() == COMPACT_ROWS as usize => Some((hour, *series_id)),
            _ => None,
        };
        Ok(true)
    }
}

/// Merges points of one hour into the series' block (stored points win) and marks the block due
/// for its hour rollup ([`Compaction`]). An hour whose block has expired but whose rollups
/// remain gets the points added to its rollups instead ([`rollup::merge_into_expired`]). A block
/// still in the earlier layout's table moves to `series_hour` with them.
pub(crate) fn merge_block(
    tx: &Transaction<'_>,
    ticks: &mut Ticks,
    series_id: i64,
    start: i64,
    points: &[(i64, f64)],
) -> Result<(), Error> {
    let merged = match read_block(tx, ticks, series_id, start)? {
        Some((data, old)) => {
            let mut stored = Vec::new();
            ticks.decode(tx, start, &data, &mut stored)?;
            if old {
                tx.prepare_cached("DELETE FROM sample_block WHERE start_ms = ?1 AND series_id = ?2")?
                    .execute(params![start, series_id])?;
            }
            block::merge(&stored, points)
        }
        // The hour's raw block has expired (its rollups remain): the points go into them.
        None if rollup::merge_into_expired(tx, series_id, start, points)? => return Ok(()),
        None => points.to_vec(),
    };
    write_block(tx, ticks, series_id, start, &merged)?;
    tx.prepare_cached("INSERT OR IGNORE INTO block_due(series_id, start_ms) VALUES (?1, ?2)")?
        .execute(params![series_id, start])?;
    Ok(())
}

/// Writes the sorted unique points of a series' hour as its block: format 4 referring to the
/// tick set of the series' agent-hour equal to the timestamps (added to the agent-hour's list
/// when new), or format 3 when the list is full or the series is unknown.
fn write_block(
    tx: &Transaction<'_>,
    ticks: &mut Ticks,
    series_id: i64,
    start: i64,
    points: &[(i64, f64)],
) -> Result<(), Error> {
    if !(0..=MAX_SERIES_ID).contains(&series_id) {
        return Err(Error::Failed(format!("series id {series_id} does not fit the block layout")));
    }
    let mut data = None;
    if points.len() >= 2
        && let Some(group) = ticks.group(tx, series_id)?
    {
        let id = block_key(start, group);
        let sets = ticks.sets(tx, id)?;
        let same = |set: &Vec<i64>| set.len() == points.len() && set.iter().zip(points).all(|(t, p)| *t == p.0);
        let index = match sets.iter().position(same) {
            Some(index) => Some(index),
            None if sets.len() < MAX_TICK_SETS => {
                sets.push(points.iter().map(|p| p.0).collect());
                let mut row = Vec::new();
                for set in &*sets {
                    let encoded = block::encode_ticks(set).map_err(corrupt)?;
                    put_varint(&mut row, encoded.len() as u64);
                    row.extend_from_slice(&encoded);
                }
                tx.prepare_cached(
                    "INSERT INTO tick_hour(id, data) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET data = excluded.data",
                )?
                .execute(params![id, row])?;
                Some(sets.len() - 1)
            }
            None => None,
        };
        if let Some(index) = index {
            let tick = block::TickRef { group: group as u64, index: index as u32 };
            data = Some(block::encode_ticked(points, tick).map_err(corrupt)?);
        }
    }
    let data = match data {
        Some(data) => data,
        None => block::encode(points).map_err(corrupt)?,
    };
    tx.prepare_cached(
        "INSERT INTO series_hour(id, data) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET data = excluded.data",
    )?
    .execute(params![block_key(start, series_id), data])?;
    Ok(())
}

/// Blocks of the earlier layout moved per conversion step.
const CONVERT_ROWS: i64 = 500;

/// Moves up to [`CONVERT_ROWS`] blocks of the earlier layout's `sample_block` (oldest hours
/// first, in series order) to `series_hour` in the current format, in one transaction, merged
/// with a block a seal already wrote there for the same hour (the earlier block's points win, as
/// the stored ones); drops the table, its index and once empty. Returns whether rows remain.
///
/// # Errors
/// SQLite errors, corrupt blocks (the step rolls back; nothing is lost).
pub(crate) fn convert_step(conn: &mut rusqlite::Connection) -> Result<bool, Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if !old_blocks_exist(&tx)? {
        return Ok(false);
    }
    let rows: Vec<(i64, i64, i64, Vec<u8>)> = tx
        .prepare("SELECT id, start_ms, series_id, data FROM sample_block ORDER BY start_ms, series_id LIMIT ?1")?
        .query_map([CONVERT_ROWS], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    if rows.is_empty() {
        tx.execute_batch("DROP TABLE sample_block")?;
        tx.commit()?;
        return Ok(false);
    }
    let mut ticks = Ticks { old: Some(false), ..Ticks::default() };
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for (id, start, series_id, data) in &rows {
        old.clear();
        new.clear();
        block::decode_into(data, &mut old).map_err(corrupt)?;
        if let Some((data, _)) = read_block(&tx, &mut ticks, *series_id, *start)? {
            ticks.decode(&tx, *start, &data, &mut new)?;
        }
        write_block(&tx, &mut ticks, *series_id, *start, &block::merge(&old, &new))?;
        tx.prepare_cached("DELETE FROM sample_block WHERE id = ?1")?.execute([id])?;
    }
    tx.commit()?;
    Ok(true)
}

/// Hours of a series in `[from, to]` whose blocks were written since their hour rollup was
/// refreshed (their hour buckets are computed from the raw samples).
///
/// # Errors
/// SQLite errors.
pub(crate) fn due_hours(conn: &rusqlite::Connection, series_id: i64, from: i64, to: i64) -> Result<Vec<i64>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT start_ms FROM block_due WHERE series_id = ?1 AND start_ms BETWEEN ?2 AND ?3 ORDER BY start_ms",
    )?;
    let rows = stmt.query_map(params![series_id, block_start(from), to], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Points of a series in `[from, to]` from blocks, sorted and unique.
///
/// # Errors
/// SQLite errors, corrupt blocks.
pub fn block_points(
    conn: &rusqlite::Connection,
    series_id: i64,
    from: i64,
    to: i64,
    out: &mut Vec<(i64, f64)>,
) -> Result<(), Error> {
    let mut ticks = Ticks::default();
    let mut start = block_start(from);
    let mut scratch = Vec::new();
    while start <= to {
        if let Some((data, _)) = read_block(conn, &mut ticks, series_id, start)? {
            scratch.clear();
            ticks.decode(conn, start, &data, &mut scratch)?;
            out.extend(scratch.iter().filter(|p| (from..=to).contains(&p.0)));
        }
        start += BLOCK_MS;
    }
    Ok(())
}

/// Every point of a series in `[from, to]`: blocks, then the head (read first, see the module
/// docs), stored points winning on equal timestamps.
///
/// # Errors
/// SQLite errors, corrupt blocks.
pub fn series_points(
    conn: &rusqlite::Connection,
    head: &SharedHead,
    series_id: i64,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, f64)>, Error> {
    // The head first: a seal that commits after this read leaves its points in the blocks read next.
    let recent = head.read().unwrap_or_else(std::sync::PoisonError::into_inner).points(series_id, from, to)?;
    // One snapshot for the old rows and the blocks: a conversion step moves rows between them.
    let tx = conn.unchecked_transaction()?;
    let mut old = super::retention::old_points(&tx, series_id, from, to)?;
    let mut stored = Vec::new();
    block_points(&tx, series_id, from, to, &mut stored)?;
    tx.finish()?;
    if !old.is_empty() {
        block::normalize(&mut old);
        stored = block::merge(&old, &stored);
    }
    Ok(if recent.is_empty() { stored } else { block::merge(&stored, &recent) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, rusqlite::Connection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = super::super::open_connection(dir.path()).expect("open");
        (dir, conn)
    }

    fn commit(conn: &mut rusqlite::Connection, head: &SharedHead, mut staged: Vec<(i64, Vec<(i64, f64)>)>) {
        let tx = conn.transaction().expect("tx");
        write_pending(&tx, &mut staged).expect("pending");
        tx.commit().expect("commit");
        head.write().expect("head").add(&staged);
    }

    fn seal_all(conn: &mut rusqlite::Connection, head: &SharedHead) {
        let last: i64 =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM sample_pending", [], |r| r.get(0)).expect("max");
        let mut seal = start_seal(head, last, true).expect("due");
        while !seal_step(conn, head, &mut seal).expect("step") {}
    }

    #[test]
    fn late_and_repeated_points_land_in_their_blocks_once_and_reads_see_head_and_blocks() {
        let (_dir, mut conn) = store();
        let head = SharedHead::default();
        let t0 = 1_795_000_000_000 - 1_795_000_000_000 % BLOCK_MS;
        // 3 hours at 10 s, sent in order, sealed.
        let first: Vec<(i64, f64)> = (0..1080).map(|i| (t0 + i * 10_000, i as f64)).collect();
        commit(&mut conn, &head, vec![(7, first.clone())]);
        seal_all(&mut conn, &head);
        let blocks: i64 = conn.query_row("SELECT COUNT(*) FROM series_hour", [], |r| r.get(0)).expect("count");
        assert_eq!(blocks, 3);
        // A backfill hours late, out of order, overlapping stored points with other values.
        let late = vec![(t0 + 5, -1.0), (t0 + 3 * BLOCK_MS + 1, 9.0), (t0 + 10_000, 99.0), (t0 + 5, -2.0)];
        commit(&mut conn, &head, vec![(7, late)]);
        let all = series_points(&conn, &head, 7, t0, t0 + 4 * BLOCK_MS).expect("read");
        let mut want = first.clone();
        want.extend([(t0 + 5, -1.0), (t0 + 3 * BLOCK_MS + 1, 9.0)]);
        block::normalize(&mut want);
        assert_eq!(all, want, "head and blocks merged");
        seal_all(&mut conn, &head);
        assert!(head.read().expect("head").is_empty());
        assert_eq!(series_points(&conn, &head, 7, t0, t0 + 4 * BLOCK_MS).expect("read"), want);
        let pending: i64 = conn
            .query_row("SELECT COUNT(*) FROM sample_pending WHERE length(data) > 0", [], |r| r.get(0))
            .expect("count");
        assert_eq!(pending, 0, "no points left pending");
    }

    /// A database written by an earlier version holds blocks in the earlier formats: they read
    /// as before, and a backfill into their hour rewrites them in the current format.
    #[test]
    fn blocks_of_an_earlier_version_read_after_the_upgrade_and_take_late_points() {
        let (_dir, mut conn) = store();
        let head = SharedHead::default();
        let t0 = 1_795_000_000_000 - 1_795_000_000_000 % BLOCK_MS;
        let old: Vec<(i64, f64)> = (0..360).map(|i| (t0 + i * 10_000 + i % 3, (i % 13) as f64 * 0.25)).collect();
        let ratios: Vec<(i64, f64)> = (0..360).map(|i| (t0 + i * 10_000, (i * 37 % 4000) as f64 / 3999.0)).collect();
        for (series_id, points) in [(4i64, &old), (5, &ratios)] {
            let data = block::encode_legacy(points);
            assert!(data[0] == 1 || data[0] == 2, "an earlier format");
            conn.execute(
                "INSERT INTO sample_block(start_ms, series_id, end_ms, n, data) VALUES (?1, ?2, ?3, 360, ?4)",
                params![t0, series_id, points[359].0, data],
            )
            .expect("old block");
        }
        assert_eq!(series_points(&conn, &head, 4, t0, t0 + BLOCK_MS).expect("read"), old);
        assert_eq!(series_points(&conn, &head, 5, t0, t0 + BLOCK_MS).expect("read"), ratios);
        commit(&mut conn, &head, vec![(4, vec![(t0 + 5, 9.0)]), (5, vec![(t0 + 5, 0.5)])]);
        seal_all(&mut conn, &head);
        for (series_id, points, late) in [(4i64, &old, 9.0), (5, &ratios, 0.5)] {
            let want = block::merge(points, &[(t0 + 5, late)]);
            let got = series_points(&conn, &head, series_id, t0, t0 + BLOCK_MS).expect("read");
            assert!(
                got.len() == want.len()
                    && got.iter().zip(&want).all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits()),
                "series {series_id}"
            );
            let data: Vec<u8> = conn
                .query_row("SELECT data FROM series_hour WHERE id = ?1", [block_key(t0, series_id)], |r| r.get(0))
                .expect("block moved to the current layout");
            assert!(data.len() < block::encode_legacy(&want).len(), "series {series_id}: rewritten shorter");
        }
    }

    /// Blocks grown by many seals get their hour rollups once their hour is over: every point
    /// stays readable once, the hour rollups are written, and nothing is left due.
    #[test]
    fn compaction_rolls_up_past_hours_and_keeps_every_point() {
        let (_dir, mut conn) = store();
        let head = SharedHead::default();
        let kinds = Kinds::new();
        let t0 = 1_795_000_000_000 - 1_795_000_000_000 % BLOCK_MS;
        let mut want: HashMap<i64, Vec<(i64, f64)>> = HashMap::new();
        let mut compaction = Compaction::default();
        // Two hours of 300 series at 10 s, sealed every 30 points: blocks grow 24 times.
        for round in 0..24i64 {
            let staged: Vec<(i64, Vec<(i64, f64)>)> = (1..=300i64)
                .map(|series| {
                    let points: Vec<(i64, f64)> = (0..30)
                        .map(|i| {
                            let k = round * 30 + i;
                            (t0 + k * 10_000, ((series * 7 + k * 13) % 1000) as f64 / 10.0)
                        })
                        .collect();
                    want.entry(series).or_default().extend_from_slice(&points);
                    (series, points)
                })
                .collect();
            commit(&mut conn, &head, staged);
            let last: i64 =
                conn.query_row("SELECT COALESCE(MAX(id), 0) FROM sample_pending", [], |r| r.get(0)).expect("max");
            let mut seal = start_seal(&head, last, true).expect("due");
            while !seal_step(&mut conn, &head, &mut seal).expect("step") {}
            compaction.touch(&seal.hours);
        }
        // No hour is over yet.
        assert!(!compaction.step(&mut conn, &kinds, t0 + BLOCK_MS - 1, true).expect("step"));
        let mut steps = 0;
        while compaction.step(&mut conn, &kinds, t0 + 3 * BLOCK_MS, true).expect("step") {
            steps += 1;
        }
        assert!(steps >= 2, "both hours compacted");
        for (series, points) in &want {
            assert_eq!(&series_points(&conn, &head, *series, t0, t0 + 2 * BLOCK_MS).expect("read"), points);
        }
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect("count") };
        assert_eq!(count("SELECT COUNT(*) FROM block_due"), 0, "nothing left due");
        assert_eq!(count("SELECT COUNT(*) FROM rollup WHERE tier = 2"), 300, "one day row per series");
        assert_eq!(count("SELECT COUNT(*) FROM series_hour"), 600, "one block per series and hour");
    }

    fn add_series(conn: &rusqlite::Connection, agent: &str, ids: std::ops::RangeInclusive<i64>) {
        for id in ids {
            conn.execute(
                "INSERT INTO series(id, agent_id, name, labels, kind) VALUES (?1, ?2, ?3, '', 1)",
                params![id, agent, format!("s{id}")],
            )
            .expect("series");
        }
    }

    /// The tick set references of an hour's blocks: (series, group, index), `None` for blocks
    /// holding their own timestamps.
    fn refs(conn: &rusqlite::Connection, hour: i64) -> Vec<(i64, Option<(u64, u32)>)> {
        let mut stmt =
            conn.prepare("SELECT id, data FROM series_hour WHERE id BETWEEN ?1 AND ?2 ORDER BY id").expect("q");
        stmt.query_map([block_key(hour, 0), block_key(hour, MAX_SERIES_ID)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .expect("rows")
        .map(|row| {
            let (id, data) = row.expect("row");
            (key_parts(id).1, block::tick_ref(&data).expect("ref").map(|t| (t.group, t.index)))
        })
        .collect()
    }

    fn sets(conn: &rusqlite::Connection, hour: i64, group: i64) -> usize {
        let tx = conn.unchecked_transaction().expect("tx");
        let n = Ticks::default().sets(&tx, block_key(hour, group)).expect("sets").len();
        drop(tx);
        n
    }

    #[test]
    fn keys_keep_hours_in_order_and_series_in_the_low_bits() {
        let t0 = 1_795_000_000_000 - 1_795_000_000_000 % BLOCK_MS;
        for (start, series) in [(t0, 1), (t0, MAX_SERIES_ID), (-BLOCK_MS, 5), (0, 0), (t0 + 7 * BLOCK_MS, 12_345)] {
            assert_eq!(key_parts(block_key(start, series)), (start, series));
        }
        assert!(block_key(t0, MAX_SERIES_ID) < block_key(t0 + BLOCK_MS, 0));
        assert!(block_key(-BLOCK_MS, MAX_SERIES_ID) < block_key(0, 0));
    }

    /// The series of an agent sampled on its tick share one tick set per hour; a series on other
    /// timestamps gets a set of its own; another agent has its own sets. Late points (one between
    /// two ticks, one repeating a stored timestamp with another value) make the block refer to a
    /// new set, and the blocks referring to the old set read as before, across hours.
    #[test]
    fn blocks_of_an_agent_hour_share_tick_sets_and_take_late_points() {
        let (_dir, mut conn) = store();
        let head = SharedHead::default();
        add_series(&conn, "a", 1..=5);
        add_series(&conn, "b", 6..=8);
        let t0 = 1_795_000_000_000 - 1_795_000_000_000 % BLOCK_MS;
        // Two hours on a 10 s tick with millisecond jitter, the same for every series of the agent.
        let tick = |k: i64| t0 + k * 10_000 + (k * 7919) % 23;
        let mut want: HashMap<i64, Vec<(i64, f64)>> = HashMap::new();
        let mut staged = Vec::new();
        for series in 1..=8i64 {
            let points: Vec<(i64, f64)> = (0..720)
                .map(|k| {
                    let ts = if series == 5 { t0 + k * 10_000 + 3 } else { tick(k) };
                    (ts, ((series * 31 + k * 17) % 400) as f64 / 4.0)
                })
                .collect();
            want.insert(series, points.clone());
            staged.push((series, points));
        }
        commit(&mut conn, &head, staged);
        seal_all(&mut conn, &head);
        for hour in [t0, t0 + BLOCK_MS] {
            let expect: Vec<(i64, Option<(u64, u32)>)> = vec![
                (1, Some((1, 0))),
                (2, Some((1, 0))),
                (3, Some((1, 0))),
                (4, Some((1, 0))),
                (5, Some((1, 1))),
                (6, Some((6, 0))),
                (7, Some((6, 0))),
                (8, Some((6, 0))),
            ];
            assert_eq!(refs(&conn, hour), expect, "hour {hour}");
            assert_eq!((sets(&conn, hour, 1), sets(&conn, hour, 6)), (2, 1));
        }
        let read = |conn: &rusqlite::Connection, head: &SharedHead, series: i64| {
            series_points(conn, head, series, t0, t0 + 2 * BLOCK_MS).expect("read")
        };
        for (series, points) in &want {
            assert_eq!(&read(&conn, &head, *series), points, "series {series} across two hours");
        }
        // Late: a point between two ticks, and a stored timestamp again (the stored value wins).
        let late = vec![(tick(100) + 1, -7.5), (tick(101), 1e9)];
        commit(&mut conn, &head, vec![(2, late.clone())]);
        seal_all(&mut conn, &head);
        let two = want.get_mut(&2).expect("series 2");
        *two = block::merge(two, &late);
        assert_eq!(two.len(), 721);
        assert_eq!(refs(&conn, t0)[1], (2, Some((1, 2))), "series 2 refers to a new set");
        assert_eq!(refs(&conn, t0)[0], (1, Some((1, 0))), "series 1 keeps the first");
        for (series, points) in &want {
            assert_eq!(&read(&conn, &head, *series), points, "series {series} after the late points");
        }
        // The same late points again (a replay): nothing changes.
        commit(&mut conn, &head, vec![(2, late)]);
        seal_all(&mut conn, &head);
        assert_eq!(sets(&conn, t0, 1), 3);
        assert_eq!(&read(&conn, &head, 2), &want[&2]);
    }

    /// An agent-hour holds at most MAX_TICK_SETS sets: series on timestamps of their own past
    /// that keep them in their blocks (format 3) and read back the same.
    #[test]
    fn series_beyond_the_tick_set_bound_keep_their_own_timestamps() {
        let (_dir, mut conn) = store();
        let head = SharedHead::default();
        let n = MAX_TICK_SETS as i64 + 8;
        add_series(&conn, "a", 1..=n);
        let t0 = 1_795_000_000_000 - 1_795_000_000_000 % BLOCK_MS;
        let staged: Vec<(i64, Vec<(i64, f64)>)> =
            (1..=n).map(|s| (s, (0..360).map(|k| (t0 + k * 10_000 + s, (k % 5) as f64)).collect())).collect();
        commit(&mut conn, &head, staged.clone());
        seal_all(&mut conn, &head);
        let refs = refs(&conn, t0);
        assert_eq!(refs.iter().filter(|r| r.1.is_some()).count(), MAX_TICK_SETS);
        assert_eq!(refs.iter().filter(|r| r.1.is_none()).count(), 8);
        for (series, points) in &staged {
            assert_eq!(&series_points(&conn, &head, *series, t0, t0 + BLOCK_MS).expect("read"), points);
        }
    }

    /// A database of the earlier layout (`sample_block`) keeps every point: reads see the
    /// unconverted rows, a seal into one of their hours moves that block with the new points, and
    /// the conversion runs in steps of one transaction each; a stop between steps (`kill -9`)
    /// loses nothing and doubles nothing, and the table is dropped once empty.
    #[test]
    fn blocks_of_the_earlier_layout_are_converted_in_steps_and_read_meanwhile() {
        let (dir, mut conn) = store();
        let head = SharedHead::default();
        let t0 = 1_795_000_000_000 - 1_795_000_000_000 % BLOCK_MS;
        add_series(&conn, "a", 1..=120);
        add_series(&conn, "b", 121..=240);
        let mut want: HashMap<i64, Vec<(i64, f64)>> = HashMap::new();
        for series in 1..=240i64 {
            for hour in 0..3 {
                let start = t0 + hour * BLOCK_MS;
                let points: Vec<(i64, f64)> = (0..360)
                    .map(|k| (start + k * 10_000 + (k * 13 + series / 121) % 9, ((series + k) % 50) as f64 * 0.5))
                    .collect();
                let data = if series % 2 == 0 { block::encode(&points) } else { Ok(block::encode_legacy(&points)) };
                conn.execute(
                    "INSERT INTO sample_block(start_ms, series_id, end_ms, n, data) VALUES (?1, ?2, ?3, 360, ?4)",
                    params![start, series, points[359].0, data.expect("encode")],
                )
                .expect("old block");
                want.entry(series).or_default().extend(points);
            }
        }
        let check =
            |conn: &rusqlite::Connection, head: &SharedHead, want: &HashMap<i64, Vec<(i64, f64)>>, what: &str| {
                for (series, points) in want {
                    let got = series_points(conn, head, *series, t0, t0 + 3 * BLOCK_MS).expect("read");
                    assert!(
                        got.len() == points.len()
                            && got.iter().zip(points).all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits()),
                        "{what}: series {series}"
                    );
                }
            };
        check(&conn, &head, &want, "before");
        // A late point for an hour still in the earlier table: the seal moves the block.
        let late = (t0 + BLOCK_MS + 5, 42.0);
        commit(&mut conn, &head, vec![(7, vec![late])]);
        seal_all(&mut conn, &head);
        let seven = want.get_mut(&7).expect("7");
        *seven = block::merge(seven, &[late]);
        let count =
            |conn: &rusqlite::Connection, sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect("n") };
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM series_hour"), 1, "moved with the late point");
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM sample_block"), 719);
        check(&conn, &head, &want, "one block moved");
        // One step, then a stop without warning; the next start goes on.
        assert!(convert_step(&mut conn).expect("step"), "more to do");
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM sample_block"), 719 - CONVERT_ROWS);
        drop(conn);
        let mut conn = crate::store::open_connection(dir.path()).expect("reopen");
        check(&conn, &head, &want, "between steps");
        let mut steps = 1;
        while convert_step(&mut conn).expect("step") {
            steps += 1;
            check(&conn, &head, &want, "during");
        }
        assert!(steps >= 2);
        assert!(!old_blocks_exist(&conn).expect("exists"), "table dropped once empty");
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM series_hour"), 720);
        check(&conn, &head, &want, "after");
        assert_eq!(stored_samples(&conn).expect("n"), 240 * 3 * 360 + 1);
        // Converted blocks share their agent-hour's tick sets (two shapes of timestamps here).
        assert!(refs(&conn, t0).iter().all(|r| r.1.is_some()), "all refer to tick sets");
        assert_eq!((sets(&conn, t0, 1), sets(&conn, t0, 121)), (1, 1));
    }

    #[test]
    fn crash_between_seal_steps_replays_pending_rows_without_loss_or_doubles() {
        let (dir, mut conn) = store();
        let head = SharedHead::default();
        let t0 = 1_795_000_000_000;
        let mut want = HashMap::new();
        for series in 1..=(STEP_SERIES as i64 + 10) {
            let points: Vec<(i64, f64)> = (0..30).map(|i| (t0 + i * 10_000, (series * i) as f64)).collect();
            want.insert(series, points.clone());
            commit(&mut conn, &head, vec![(series, points)]);
        }
        let mut seal = start_seal(&head, i64::MAX, true).expect("due");
        assert!(!seal_step(&mut conn, &head, &mut seal).expect("first step"), "more than one step");
        // kill -9 here: the head is gone; the next start reads the pending rows back.
        drop(conn);
        let mut conn = super::super::open_connection(dir.path()).expect("reopen");
        let (fresh, _) = load_head(&conn).expect("load");
        let head: SharedHead = Arc::new(RwLock::new(fresh));
        assert_eq!(head.read().expect("head").len(), want.len() * 30);
        seal_all(&mut conn, &head);
        for (series, points) in &want {
            assert_eq!(&series_points(&conn, &head, *series, t0, t0 + BLOCK_MS * 2).expect("read"), points);
        }
        let stored = stored_samples(&conn).expect("sum");
        assert_eq!(stored as usize, want.len() * 30);
    }

    /// A seal step that fails (disk full, I/O error) rolls back; the series it held are sealed
    /// by a later step, not skipped (their pending rows are deleted when the seal completes).
    #[test]
    fn a_failed_seal_step_is_retried_and_loses_no_series() {
        let (_dir, mut conn) = store();
        let head = SharedHead::default();
        let t0 = 1_795_000_000_000;
        let mut want = HashMap::new();
        for series in 1..=(STEP_SERIES as i64 + 10) {
            let points: Vec<(i64, f64)> = (0..30).map(|i| (t0 + i * 10_000, (series + i) as f64)).collect();
            want.insert(series, points.clone());
            commit(&mut conn, &head, vec![(series, points)]);
        }
        let last: i64 = conn.query_row("SELECT MAX(id) FROM sample_pending", [], |r| r.get(0)).expect("max");
        let mut seal = start_seal(&head, last, true).expect("due");
        conn.execute_batch(
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON series_hour BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .expect("trigger");
        assert!(seal_step(&mut conn, &head, &mut seal).is_err(), "the step fails");
        conn.execute_batch("DROP TRIGGER refuse").expect("drop");
        while !seal_step(&mut conn, &head, &mut seal).expect("step") {}
        assert!(head.read().expect("head").is_empty());
        let pending: i64 = conn
            .query_row("SELECT COUNT(*) FROM sample_pending WHERE length(data) > 0", [], |r| r.get(0))
            .expect("count");
        assert_eq!(pending, 0, "the sealed rows are gone");
        for (series, points) in &want {
            assert_eq!(
                &series_points(&conn, &head, *series, t0, t0 + BLOCK_MS).expect("read"),
                points,
                "series {series}"
            );
        }
    }

    /// Noisy values take several bytes a point encoded: the head is sealed by its bytes before
    /// its point count, so its memory stays bounded whatever the values.
    #[test]
    fn a_head_of_noisy_values_is_sealed_by_its_bytes_before_its_point_count() {
        let head = SharedHead::default();
        let t0 = 1_795_000_000_000 - 1_795_000_000_000 % BLOCK_MS;
        let mut rng = 0x9e37_79b9_u64;
        // Within one hour: the valve, not a closed hour, makes the seal due.
        for series in 1..=5000_i64 {
            let points: Vec<(i64, f64)> = (0..3000)
                .map(|i| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (t0 + i * 1000, f64::from_bits(rng >> 2))
                })
                .collect();
            head.write().expect("head").add(&[(series, points)]);
        }
        {
            let head = head.read().expect("head");
            assert!(head.len() < SEAL_POINTS, "{} points", head.len());
            assert!(head.bytes() >= SEAL_BYTES, "{} bytes for {} points", head.bytes(), head.len());
        }
        let seal = start_seal(&head, 0, false).expect("due by its bytes");
        assert_eq!(seal.todo.len(), 5000);
        assert_eq!(seal.below, i64::MAX, "sealed whole");
        assert_eq!(head.read().expect("head").len(), 15_000_000, "still in the head until sealed");
    }

    /// Seals the head when due as if its closed points had waited [`SEAL_AGE`]; true when it did.
    fn seal_due(conn: &mut rusqlite::Connection, head: &SharedHead) -> bool {
        let last: i64 =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM sample_pending", [], |r| r.get(0)).expect("max");
        let Some(mut seal) = start_seal_at(head, last, false, Instant::now() + SEAL_AGE) else { return false };
        while !seal_step(conn, head, &mut seal).expect("step") {}
        true
    }

    /// Counts the rewrites of stored blocks (a seal merging into an hour already written).
    fn count_rewrites(conn: &rusqlite::Connection) {
        conn.execute_batch(
            "CREATE TEMP TABLE rewrites(n INTEGER NOT NULL); INSERT INTO rewrites VALUES (0);
             CREATE TEMP TRIGGER rewritten AFTER UPDATE ON series_hour BEGIN UPDATE rewrites SET n = n + 1; END;",
        )
        .expect("trigger");
    }

    fn rewrites(conn: &rusqlite::Connection) -> i64 {
        conn.query_row("SELECT n FROM temp.rewrites", [], |r| r.get(0)).expect("rewrites")
    }

    /// A minute of 10 s points of `series` series from minute `minute` (series 1 lags a minute).
    fn minute(t0: i64, minute: i64, series: i64) -> Staged {
        (1..=series)
            .filter_map(|s| {
                let m = if s == 1 { minute - 1 } else { minute };
                (m >= 0).then(|| {
                    (s, (0..6).map(|i| (t0 + m * 60_000 + i * 10_000, (s * 1000 + m * 6 + i) as f64)).collect())
                })
            })
            .collect()
    }

    /// Points arriving in order, with a seal attempted after every commit: each hour is sealed
    /// once its end is [`GRACE_MS`] behind the newest point, its blocks written once and never
    /// rewritten; the open hour stays in the head, and a slightly late series lands in it.
    #[test]
    fn each_hour_is_sealed_once_when_points_arrive_in_order() {
        let (_dir, mut conn) = store();
        count_rewrites(&conn);
        let head = SharedHead::default();
        let t0 = 1_795_000_000_000 - 1_795_000_000_000 % BLOCK_MS;
        let mut want: HashMap<i64, Vec<(i64, f64)>> = HashMap::new();
        let mut seals = 0;
        // Three hours and ten minutes of 50 series, a commit per minute.
        for m in 0..190 {
            let staged = minute(t0, m, 50);
            for (s, points) in &staged {
                want.entry(*s).or_default().extend_from_slice(points);
            }
            commit(&mut conn, &head, staged);
            if seal_due(&mut conn, &head) {
                seals += 1;
            }
        }
        assert_eq!(seals, 3, "one seal per closed hour");
        assert_eq!(rewrites(&conn), 0, "no block written twice");
        let blocks: i64 = conn.query_row("SELECT COUNT(*) FROM series_hour", [], |r| r.get(0)).expect("count");
        assert_eq!(blocks, 3 * 50);
        // The open hour (and the lagging series' last minute) is in the head only.
        let open = head.read().expect("head").len();
        assert_eq!(open, 49 * 10 * 6 + 9 * 6);
        for (s, points) in &want {
            assert_eq!(&series_points(&conn, &head, *s, t0, t0 + 4 * BLOCK_MS).expect("read"), points, "series {s}");
        }
        // A backfill into a sealed hour merges into its block, as before.
        commit(&mut conn, &head, vec![(7, vec![(t0 + 5, 0.5)])]);
        assert!(seal_due(&mut conn, &head), "a closed hour's point is due");
        assert_eq!(rewrites(&conn), 1, "the backfilled block alone");
        let got = series_points(&conn, &head, 7, t0, t0 + 4 * BLOCK_MS).expect("read");
        assert_eq!(got.len(), want[&7].len() + 1);
    }

    /// The points a seal keeps in the head are carried in `sample_carry`: after `kill -9` at any
    /// point (after a seal, or between the steps of the next one, which carries again) the head
    /// is read back with each unsealed point once, and sealing everything then stores each
    /// point once.
    #[test]
    fn carried_points_survive_a_crash_once_even_between_seal_steps() {
        let (dir, mut conn) = store();
        let head = SharedHead::default();
        let t0 = 1_795_000_000_000 - 1_795_000_000_000 % BLOCK_MS;
        let series = STEP_SERIES as i64 + 200;
        let mut total = 0;
        let mut run = |conn: &mut rusqlite::Connection, head: &SharedHead, from: i64, to: i64| {
            for m in from..to {
                let staged = minute(t0, m, series);
                total += staged.iter().map(|(_, p)| p.len()).sum::<usize>();
                commit(conn, head, staged);
            }
        };
        run(&mut conn, &head, 0, 70);
        assert!(seal_due(&mut conn, &head), "the first hour is closed");
        let carried: i64 = conn.query_row("SELECT COUNT(*) FROM sample_carry", [], |r| r.get(0)).expect("carry");
        assert_eq!(carried, 1);
        let unsealed = head.read().expect("head").len();
        assert_eq!(unsealed, (series as usize - 1) * 10 * 6 + 9 * 6, "the open hour's ten minutes");
        // kill -9 after the seal: the carried points and the newer pending rows come back once.
        run(&mut conn, &head, 70, 75);
        let held = head.read().expect("head").len();
        drop(conn);
        let mut conn = super::super::open_connection(dir.path()).expect("reopen");
        let head: SharedHead = Arc::new(RwLock::new(load_head(&conn).expect("load").0));
        assert_eq!(head.read().expect("head").len(), held, "nothing lost or doubled");
        // The next hour; its seal is cut short by kill -9 after one step.
        run(&mut conn, &head, 75, 130);
        let held = head.read().expect("head").len();
        let last: i64 = conn.query_row("SELECT MAX(id) FROM sample_pending", [], |r| r.get(0)).expect("max");
        let mut seal = start_seal_at(&head, last, false, Instant::now() + SEAL_AGE).expect("due");
        assert!(!seal.recarry && seal.drop_carry, "the carried points are all in the closed hour");
        assert!(!seal_step(&mut conn, &head, &mut seal).expect("step"), "more than one step");
        drop(conn);
        let mut conn = super::super::open_connection(dir.path()).expect("reopen");
        let head: SharedHead = Arc::new(RwLock::new(load_head(&conn).expect("load").0));
        assert_eq!(head.read().expect("head").len(), held, "carry and pending rows replayed once");
        assert!(seal_due(&mut conn, &head), "sealed again");
        let carry_points = |conn: &rusqlite::Connection| {
            let mut stmt = conn.prepare("SELECT data FROM sample_carry").expect("stmt");
            let mut rows = stmt.query([]).expect("rows");
            let mut staged = Staged::new();
            while let Some(row) = rows.next().expect("row") {
                decode_pending(&row.get::<_, Vec<u8>>(0).expect("data"), &mut staged).expect("decode");
            }
            staged.iter().map(|(_, p)| p.len()).sum::<usize>()
        };
        assert_eq!(carry_points(&conn), head.read().expect("head").len(), "the carry holds the head");
        seal_all(&mut conn, &head);
        assert_eq!(carry_points(&conn), 0, "a full seal leaves nothing to carry");
        let stored = stored_samples(&conn).expect("sum");
        assert_eq!(stored as usize, total, "every point stored once");
        let (fresh, _) = load_head(&conn).expect("load");
        assert!(fresh.is_empty());
    }

    /// Remote write reads the pending rows only: points carried by seals reach a target once.
    #[test]
    fn remote_write_gets_each_point_once_when_seals_carry_points() {
        let (dir, mut conn) = store();
        let mut outbox = outbox::Outbox::open(dir.path()).expect("outbox");
        outbox.register(&[("a".into(), 0)]).expect("register");
        let head = SharedHead::default();
        let t0 = 1_795_000_000_000 - 1_795_000_000_000 % BLOCK_MS;
        let (mut total, mut sent, mut cursor) = (0, 0, 0);
        for m in 0..150 {
            let staged = minute(t0, m, 20);
            total += staged.iter().map(|(_, p)| p.len()).sum::<usize>();
            commit(&mut conn, &head, staged);
            seal_due(&mut conn, &head);
            if m % 7 == 0 {
                for row in outbox.rows_after(cursor, usize::MAX).expect("rows") {
                    sent += row.series.iter().map(|(_, p)| p.len()).sum::<usize>();
                    cursor = row.id;
                }
                outbox.advance("a", cursor).expect("advance");
            }
        }
        seal_all(&mut conn, &head);
        for row in outbox.rows_after(cursor, usize::MAX).expect("rows") {
            sent += row.series.iter().map(|(_, p)| p.len()).sum::<usize>();
        }
        assert_eq!(sent, total, "each point sent once");
    }
}
