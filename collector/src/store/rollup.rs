//! Minute and hour rollups (min, max, sum, count, last; counters also as increases) kept in step with the blocks.
//!
//! Table `rollup(id, tier, start_ms, series_id, data)`: tier [`HOUR`] has one row per series per
//! day holding its hour buckets, refreshed each time a block is written (sealing, backfill,
//! conversion) from the whole block, so a late point changes exactly the buckets it falls in.
//! Tier [`MINUTE`] has one row per series per hour holding its minute buckets, written when the
//! hour's raw block expires ([`materialize_minutes`]): while the raw block is kept, minute buckets
//! are computed from it on read ([`super::history`]) with the same function, so storing them
//! twice would only double the bytes per sample. Rows written by earlier versions at seal time
//! stay valid and expire with their tier.
//! A counter's increase handles resets (a drop counts the new value as the increase) and starts
//! from the last value of the previous hour: when a refresh changes a counter's hour's last value
//! (a backfill after its last point, or into an hour that had none), the next hour's block is
//! marked due in the same transaction, so its rollup is recomputed from the new value.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use super::Error;
use super::block::{self, get_varint, put_varint};
use super::series::BLOCK_MS;

/// Tier of minute buckets (rows per hour, written when the hour's raw block expires).
pub const MINUTE: i64 = 1;
/// Tier of hour buckets (rows per day).
pub const HOUR: i64 = 2;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// Wire number of a counter.
const COUNTER: i32 = 2;

/// Aggregates of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    /// Bucket start, unix ms.
    pub start: i64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Sum of values.
    pub sum: f64,
    /// Number of points.
    pub count: u32,
    /// Value of the last point.
    pub last: f64,
    /// Counters: increase over the bucket (resets handled); 0 for gauges.
    pub inc: f64,
}

impl Bucket {
    fn first(start: i64, value: f64, inc: f64) -> Self {
        Bucket { start, min: value, max: value, sum: value, count: 1, last: value, inc }
    }

    fn add(&mut self, value: f64, inc: f64) {
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += value;
        self.count += 1;
        self.last = value;
        self.inc += inc;
    }

    /// Folds a later bucket into this one.
    pub fn absorb(&mut self, later: &Bucket) {
        self.min = self.min.min(later.min);
        self.max = self.max.max(later.max);
        self.sum += later.sum;
        self.count += later.count;
        self.last = later.last;
        self.inc += later.inc;
    }
}

/// Buckets of `width` over sorted points; `prev` is the value before the first point (counters).
pub fn buckets(points: &[(i64, f64)], width: i64, counter: bool, mut prev: Option<f64>) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for &(ts, value) in points {
        let inc = match prev {
            Some(p) if counter => {
                if value >= p {
                    value - p
                } else {
                    value
                }
            }
            _ => 0.0,
        };
        prev = Some(value);
        let start = ts.div_euclid(width) * width;
        match out.last_mut() {
            Some(bucket) if bucket.start == start => bucket.add(value, inc),
            _ => out.push(Bucket::first(start, value, inc)),
        }
    }
    out
}

/// First byte of a row in the compact format. A row of the first format starts with its bucket
/// count as a varint, below 0x80 (60 minute or 24 hour buckets at most), so the two never meet.
const COMPACT: u8 = 0xFE;
const MINUTE_UNITS: i64 = MINUTE_MS;

/// Encodes a row in the shorter of two formats: the first one ([`encode_blocks`]), or the compact
/// one, which pays off for rows of few buckets (the first format spends 18 bytes a column on
/// its first start and value): `0xFE | n | starts in minutes (first, then differences) | each
/// column's values, byte-aligned XOR with the value before in the column` (a control byte of
/// leading and trailing zero bytes, then the bytes between; 0 when equal).
fn encode(buckets: &[Bucket]) -> Result<Vec<u8>, Error> {
    let first = encode_blocks(buckets)?;
    let ascending = buckets.windows(2).all(|w| w[0].start < w[1].start);
    if !ascending || buckets.iter().any(|b| b.start % MINUTE_UNITS != 0 || b.start < 0) {
        return Ok(first);
    }
    let mut out = vec![COMPACT];
    put_varint(&mut out, buckets.len() as u64);
    let mut prev = 0;
    for b in buckets {
        put_varint(&mut out, ((b.start - prev) / MINUTE_UNITS) as u64);
        prev = b.start;
    }
    for column in COLUMNS {
        let mut prev = 0u64;
        for b in buckets {
            let bits = column(b).to_bits();
            let xor = bits ^ prev;
            prev = bits;
            if xor == 0 {
                out.push(0);
                continue;
            }
            let (lead, trail) = (xor.leading_zeros() / 8, xor.trailing_zeros() / 8);
            out.push(0x80 | ((lead as u8) << 3) | trail as u8);
            out.extend_from_slice(&xor.to_be_bytes()[lead as usize..(8 - trail) as usize]);
        }
    }
    Ok(if out.len() < first.len() { out } else { first })
}

fn decode(data: &[u8]) -> Result<Vec<Bucket>, Error> {
    if data.first() != Some(&COMPACT) {
        return decode_blocks(data);
    }
    let corrupt = |what: &str| Error::Failed(format!("corrupt rollup: {what}"));
    let mut pos = 1;
    let n = get_varint(data, &mut pos).map_err(|err| corrupt(&err.to_string()))? as usize;
    if n > data.len() {
        return Err(corrupt("count larger than the data"));
    }
    let mut buckets = Vec::with_capacity(n);
    let mut start = 0i64;
    for _ in 0..n {
        let delta = get_varint(data, &mut pos).map_err(|err| corrupt(&err.to_string()))?;
        start = i64::try_from(delta)
            .ok()
            .and_then(|d| d.checked_mul(MINUTE_UNITS))
            .and_then(|d| start.checked_add(d))
            .ok_or_else(|| corrupt("start"))?;
        buckets.push(Bucket { start, min: 0.0, max: 0.0, sum: 0.0, count: 0, last: 0.0, inc: 0.0 });
    }
    for column in 0..COLUMNS.len() {
        let mut prev = 0u64;
        for b in &mut buckets {
            let control = *data.get(pos).ok_or_else(|| corrupt("truncated"))?;
            pos += 1;
            if control != 0 {
                let (lead, trail) = (usize::from((control >> 3) & 7), usize::from(control & 7));
                let len = 8usize.checked_sub(lead + trail).filter(|l| *l > 0).ok_or_else(|| corrupt("xor bytes"))?;
                let bytes = data.get(pos..pos + len).ok_or_else(|| corrupt("truncated"))?;
                pos += len;
                let mut word = [0u8; 8];
                word[lead..8 - trail].copy_from_slice(bytes);
                prev ^= u64::from_be_bytes(word);
            }
            let value = f64::from_bits(prev);
            match column {
                0 => b.min = value,
                1 => b.max = value,
                2 => b.sum = value,
                3 => b.count = value as u32,
                4 => b.last = value,
                _ => b.inc = value,
            }
        }
    }
    if pos != data.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(buckets)
}

/// The columns of a row, in order.
const COLUMNS: [fn(&Bucket) -> f64; 6] =
    [|b| b.min, |b| b.max, |b| b.sum, |b| f64::from(b.count), |b| b.last, |b| b.inc];

/// The first format: the bucket count, then each column as a sample block (starts and values).
fn encode_blocks(buckets: &[Bucket]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    put_varint(&mut out, buckets.len() as u64);
    let columns: [fn(&Bucket) -> f64; 6] =
        [|b| b.min, |b| b.max, |b| b.sum, |b| f64::from(b.count), |b| b.last, |b| b.inc];
    for column in columns {
        let points: Vec<(i64, f64)> = buckets.iter().map(|b| (b.start, column(b))).collect();
        let data = block::encode(&points).map_err(|err| Error::Failed(err.to_string()))?;
        put_varint(&mut out, data.len() as u64);
        out.extend_from_slice(&data);
    }
    Ok(out)
}

fn decode_blocks(data: &[u8]) -> Result<Vec<Bucket>, Error> {
    let corrupt = |what: &str| Error::Failed(format!("corrupt rollup: {what}"));
    let mut pos = 0;
    let n = get_varint(data, &mut pos).map_err(|err| corrupt(&err.to_string()))? as usize;
    let mut columns = Vec::with_capacity(6);
    for _ in 0..6 {
        let len = get_varint(data, &mut pos).map_err(|err| corrupt(&err.to_string()))? as usize;
        let bytes = data.get(pos..pos.saturating_add(len)).ok_or_else(|| corrupt("truncated"))?;
        pos += len;
        let column = block::decode(bytes).map_err(|err| corrupt(&err.to_string()))?;
        if column.len() != n {
            return Err(corrupt("column length"));
        }
        columns.push(column);
    }
    Ok((0..n)
        .map(|i| Bucket {
            start: columns[0][i].0,
            min: columns[0][i].1,
            max: columns[1][i].1,
            sum: columns[2][i].1,
            count: columns[3][i].1 as u32,
            last: columns[4][i].1,
            inc: columns[5][i].1,
        })
        .collect())
}

fn read_row(tx: &rusqlite::Connection, tier: i64, start: i64, series_id: i64) -> Result<Vec<Bucket>, Error> {
    let data: Option<Vec<u8>> = tx
        .prepare_cached("SELECT data FROM rollup WHERE tier = ?1 AND start_ms = ?2 AND series_id = ?3")?
        .query_row(params![tier, start, series_id], |r| r.get(0))
        .optional()?;
    data.map_or(Ok(Vec::new()), |d| decode(&d))
}

fn write_row(tx: &Transaction<'_>, tier: i64, start: i64, series_id: i64, buckets: &[Bucket]) -> Result<(), Error> {
    if buckets.is_empty() {
        tx.prepare_cached("DELETE FROM rollup WHERE tier = ?1 AND start_ms = ?2 AND series_id = ?3")?
            .execute(params![tier, start, series_id])?;
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT INTO rollup(tier, start_ms, series_id, data) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(tier, start_ms, series_id) DO UPDATE SET data = excluded.data",
    )?
    .execute(params![tier, start, series_id, encode(buckets)?])?;
    Ok(())
}

thread_local! {
    /// Time spent in [`refresh_hour`] on this thread since the last [`take_elapsed`].
    static ELAPSED: std::cell::Cell<std::time::Duration> = const { std::cell::Cell::new(std::time::Duration::ZERO) };
}

/// Time spent refreshing rollups on this thread since the last call (the writer's step timing).
pub(crate) fn take_elapsed() -> std::time::Duration {
    ELAPSED.with(|e| e.replace(std::time::Duration::ZERO))
}

/// Recomputes the bucket of the hour at `hour` in its day row from all `points` of that hour
/// (sorted, unique).
///
/// # Errors
/// SQLite errors, corrupt rows.
pub(crate) fn refresh_hour(
    tx: &Transaction<'_>,
    series_id: i64,
    hour: i64,
    points: &[(i64, f64)],
    kind: i32,
) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let result = refresh_hour_timed(tx, series_id, hour, points, kind);
    ELAPSED.with(|e| e.set(e.get() + started.elapsed()));
    result
}

/// The last value of the hour before `hour` from its hour bucket (where a counter's increase
/// starts).
///
/// # Errors
/// SQLite errors, corrupt rows.
pub(crate) fn last_before(conn: &rusqlite::Connection, series_id: i64, hour: i64) -> Result<Option<f64>, Error> {
    let before = hour - BLOCK_MS;
    let day = before.div_euclid(DAY_MS) * DAY_MS;
    Ok(read_row(conn, HOUR, day, series_id)?.iter().find(|b| b.start == before).map(|b| b.last))
}

fn refresh_hour_timed(
    tx: &Transaction<'_>,
    series_id: i64,
    hour: i64,
    points: &[(i64, f64)],
    kind: i32,
) -> Result<(), Error> {
    let counter = kind == COUNTER;
    let prev = if counter { last_before(tx, series_id, hour)? } else { None };
    // The hour bucket is the minute buckets folded in order, so that it equals, bit for bit,
    // what a read folding minute buckets computes.
    let mut hour_bucket: Option<Bucket> = None;
    for m in &buckets(points, MINUTE_MS, counter, prev) {
        match &mut hour_bucket {
            Some(h) => h.absorb(m),
            None => hour_bucket = Some(Bucket { start: hour, ..*m }),
        }
    }
    let day = hour.div_euclid(DAY_MS) * DAY_MS;
    let mut day_row = read_row(tx, HOUR, day, series_id)?;
    let at = day_row.partition_point(|b| b.start < hour);
    let stored = day_row.get(at).filter(|b| b.start == hour).copied();
    match (stored, hour_bucket) {
        (Some(old), Some(bucket)) if old == bucket => return Ok(()),
        (Some(_), Some(bucket)) => day_row[at] = bucket,
        (Some(_), None) => {
            day_row.remove(at);
        }
        (None, Some(bucket)) => day_row.insert(at, bucket),
        (None, None) => return Ok(()),
    }
    write_row(tx, HOUR, day, series_id, &day_row)?;
    if counter && stored.map(|b| b.last.to_bits()) != hour_bucket.map(|b| b.last.to_bits()) {
        next_hour_due(tx, series_id, hour)?;
    }
    Ok(())
}

/// Marks the next hour's block due after a counter's hour changed its last value (or gained or
/// lost its bucket): the next hour's increase starts from it, so its rollup is recomputed by the
/// compaction, and reads compute it from the raw samples until then, as they do for any due hour.
/// In the same transaction as the change, so a crash leaves both or neither. Nothing when the next
/// hour has no raw block (no points, or expired: see [`merge_into_expired`]).
fn next_hour_due(tx: &Transaction<'_>, series_id: i64, hour: i64) -> Result<(), Error> {
    if super::series::has_block(tx, series_id, hour + BLOCK_MS)? {
        tx.prepare_cached("INSERT OR IGNORE INTO block_due(series_id, start_ms) VALUES (?1, ?2)")?
            .execute(params![series_id, hour + BLOCK_MS])?;
    }
    Ok(())
}

/// Writes the minute buckets of the hour at `hour` from all `points` of its raw block (sorted,
/// unique), before the block is deleted by retention.
///
/// # Errors
/// SQLite errors, corrupt rows.
pub(crate) fn materialize_minutes(
    tx: &Transaction<'_>,
    series_id: i64,
    hour: i64,
    points: &[(i64, f64)],
    kind: i32,
) -> Result<(), Error> {
    let counter = kind == COUNTER;
    let prev = if counter { last_before(tx, series_id, hour)? } else { None };
    write_row(tx, MINUTE, hour, series_id, &buckets(points, MINUTE_MS, counter, prev))
}

/// Tier of the points added to an hour after its raw block expired (rows per hour, a sample
/// block of those points): [`merge_into_expired`] adds only points not in it, so sealing the same
/// points again (a replay after a crash, the same points in another batch) counts them once.
pub const LATE: i64 = 3;

/// Adds `points` (sorted, unique, all in the hour at `hour`) to the minute and hour rollups of
/// an hour whose raw block has expired, when it has: returns false when the hour has no rollup
/// (nothing expired, the caller writes a block as usual).
///
/// The expired raw points are gone, so the late points are merged into the stored buckets
/// rather than the buckets recomputed from them (which would replace the earlier points' counts):
/// * min, max, sum and count take the late points in;
/// * `last`: the stored bucket's last timestamp is known to the minute only (the minute row; the
///   hour only when the minute tier has expired too). A late point replaces a gauge's `last` only
///   in a minute later than every stored minute of the bucket (a late minute with no stored
///   bucket is a bucket of its own); within a stored minute the stored `last` stays;
/// * counters keep their increase and `last`. A counter's increase across an interval depends
///   only on its end points: the late points lie between points the expired raw block held (or
///   the next hour's first point, whose increase was counted from this hour's `last`), so that
///   increase is already counted. Adding the late points' own increase would count it twice,
///   and moving `last` would make the next hour's increase, when recomputed, disagree with the
///   one stored. What is lost: the increase before the first stored point when the hour before
///   had no value at the time (as for any hour whose previous hour was empty), and a reset only
///   the late points saw.
///
/// # Errors
/// SQLite errors, corrupt rows.
pub(crate) fn merge_into_expired(
    tx: &Transaction<'_>,
    series_id: i64,
    hour: i64,
    points: &[(i64, f64)],
) -> Result<bool, Error> {
    let day = hour.div_euclid(DAY_MS) * DAY_MS;
    let mut day_row = read_row(tx, HOUR, day, series_id)?;
    let mut minutes = read_row(tx, MINUTE, hour, series_id)?;
    let at = day_row.partition_point(|b| b.start < hour);
    let has_hour = day_row.get(at).is_some_and(|b| b.start == hour);
    if !has_hour && minutes.is_empty() {
        return Ok(false);
    }
    // Points already added (a replay of the same points) are not added again.
    let done = read_row_raw(tx, LATE, hour, series_id)?;
    let done = match done {
        Some(data) => block::decode(&data).map_err(|err| Error::Failed(err.to_string()))?,
        None => Vec::new(),
    };
    let fresh: Vec<(i64, f64)> =
        points.iter().filter(|p| done.binary_search_by_key(&p.0, |d| d.0).is_err()).copied().collect();
    if fresh.is_empty() {
        return Ok(true);
    }
    let kind: i32 = tx
        .prepare_cached("SELECT kind FROM series WHERE id = ?1")?
        .query_row([series_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let gauge = kind != COUNTER;
    // The last stored minute: a late minute after it holds the hour's new last value.
    let last_minute = minutes.last().map(|b| b.start);
    for late in buckets(&fresh, MINUTE_MS, false, None) {
        // The late buckets' own increase is 0 (computed as gauges): not counted, see above.
        let i = minutes.partition_point(|b| b.start < late.start);
        if minutes.get(i).is_some_and(|b| b.start == late.start) {
            let stored = &mut minutes[i];
            let last = stored.last;
            stored.absorb(&late);
            stored.last = last;
        } else if !minutes.is_empty() {
            minutes.insert(i, late);
        }
        if has_hour {
            let h = &mut day_row[at];
            let last = h.last;
            h.absorb(&late);
            let later = last_minute.is_some_and(|m| late.start > m);
            if !(gauge && later) {
                h.last = last;
            }
        }
    }
    if !minutes.is_empty() {
        write_row(tx, MINUTE, hour, series_id, &minutes)?;
    }
    if has_hour {
        write_row(tx, HOUR, day, series_id, &day_row)?;
    }
    let all = block::merge(&done, &fresh);
    let data = block::encode(&all).map_err(|err| Error::Failed(err.to_string()))?;
    tx.prepare_cached(
        "INSERT INTO rollup(tier, start_ms, series_id, data) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(tier, start_ms, series_id) DO UPDATE SET data = excluded.data",
    )?
    .execute(params![LATE, hour, series_id, data])?;
    Ok(true)
}

fn read_row_raw(tx: &rusqlite::Connection, tier: i64, start: i64, series_id: i64) -> Result<Option<Vec<u8>>, Error> {
    Ok(tx
        .prepare_cached("SELECT data FROM rollup WHERE tier = ?1 AND start_ms = ?2 AND series_id = ?3")?
        .query_row(params![tier, start, series_id], |r| r.get(0))
        .optional()?)
}

/// Buckets of a tier for a series overlapping `[from, to]`, sorted.
///
/// # Errors
/// SQLite errors, corrupt rows.
pub fn read(conn: &rusqlite::Connection, tier: i64, series_id: i64, from: i64, to: i64) -> Result<Vec<Bucket>, Error> {
    let (row_ms, width) = if tier == MINUTE { (BLOCK_MS, MINUTE_MS) } else { (DAY_MS, BLOCK_MS) };
    let mut out = Vec::new();
    let mut start = from.div_euclid(row_ms) * row_ms;
    while start <= to {
        out.extend(
            read_row(conn, tier, start, series_id)?.into_iter().filter(|b| b.start + width > from && b.start <= to),
        );
        start += row_ms;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn rows_round_trip(raw in prop::collection::vec((0i64..10_000, -1e6f64..1e6), 0..300), counter: bool) {
            let mut points: Vec<(i64, f64)> = raw.into_iter().map(|(t, v)| (t * 1000, v)).collect();
            block::normalize(&mut points);
            let b = buckets(&points, MINUTE_MS, counter, None);
            prop_assert_eq!(decode(&encode(&b).expect("encode")).expect("decode"), b);
        }
    }

    proptest! {
        /// Rows of either format decode (rows written before the compact format stay readable),
        /// and a row is never longer than in the first format.
        #[test]
        fn both_formats_round_trip_and_the_shorter_is_written(
            raw in prop::collection::vec((0i64..1_440, -1e6f64..1e6), 1..60),
            counter: bool,
        ) {
            let mut points: Vec<(i64, f64)> =
                raw.into_iter().map(|(m, v)| (1_795_000_020_000 + m * 60_000, (v * 100.0).round() / 100.0)).collect();
            block::normalize(&mut points);
            let b = buckets(&points, BLOCK_MS, counter, Some(0.5));
            let first = encode_blocks(&b).expect("encode");
            prop_assert_eq!(decode(&first).expect("first format"), b.clone());
            let written = encode(&b).expect("encode");
            prop_assert!(written.len() <= first.len());
            prop_assert_eq!(decode(&written).expect("decode"), b);
        }
    }

    #[test]
    fn a_one_bucket_row_is_compact() {
        let b = buckets(&[(1_795_000_020_000, 42.5), (1_795_000_030_000, 43.0)], BLOCK_MS, false, None);
        let written = encode(&b).expect("encode");
        assert_eq!(written[0], COMPACT);
        assert!(written.len() * 2 <= encode_blocks(&b).expect("encode").len(), "{} bytes", written.len());
        assert_eq!(decode(&written).expect("decode"), b);
        assert!(decode(&written[..written.len() - 1]).is_err());
    }

    #[test]
    fn counter_increase_counts_resets_as_restarts_from_zero() {
        let points = [(0, 10.0), (10_000, 15.0), (20_000, 3.0), (70_000, 8.0)];
        let b = buckets(&points, MINUTE_MS, true, Some(4.0));
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].inc, 6.0 + 5.0 + 3.0);
        assert_eq!(b[1].inc, 5.0);
        assert_eq!((b[0].min, b[0].max, b[0].count, b[0].last), (3.0, 15.0, 3, 3.0));
    }
}
