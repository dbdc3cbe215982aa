//! Series history at a step: min, max and average per step from raw samples or the rollup tier that fits the step.
//!
//! The finest tier whose buckets divide the step answers (raw below a minute, minute buckets
//! for whole minutes, hour rollups for whole hours). Minute buckets come from the raw samples
//! while they are kept and from the minute rollups written when they expire
//! ([`rollup::materialize_minutes`], the same computation). Hours that still have samples in the
//! head (not yet sealed) or whose blocks wait for their hour rollup ([`series::due_hours`]) are
//! computed from the raw samples, and for counters the hour after each of them too while its
//! block is kept (its increase starts from their last value). Steps a tier
//! cannot answer because its data has expired are filled from the next coarser tier, so a range
//! reaching past raw retention is answered from rollups.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::Serialize;

use super::Error;
use super::rollup::{self, Bucket, HOUR, MINUTE};
use super::series::{self, BLOCK_MS, SharedHead};

/// Steps answered at most.
pub const MAX_STEPS: i64 = 11_000;

/// One step of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Step {
    /// Step start, unix ms (a multiple of the step).
    pub t: i64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Average value.
    pub avg: f64,
    /// Samples behind the step.
    pub count: u32,
    /// Counters: increase over the step (resets handled); 0 for gauges.
    pub increase: f64,
}

/// Steps of one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesSteps {
    /// Canonical label text.
    pub labels: String,
    /// Tier that answered the step: `raw`, `minute` or `hour`.
    pub tier: &'static str,
    /// Steps that have data, in time order.
    pub steps: Vec<Step>,
}

/// Tier that fits a step.
pub fn tier_for(step_ms: i64) -> &'static str {
    if step_ms % BLOCK_MS == 0 {
        "hour"
    } else if step_ms % 60_000 == 0 {
        "minute"
    } else {
        "raw"
    }
}

fn fold(into: &mut BTreeMap<i64, Bucket>, buckets: &[Bucket], step: i64) {
    let mut fresh: BTreeMap<i64, Bucket> = BTreeMap::new();
    for b in buckets {
        let t = b.start.div_euclid(step) * step;
        if into.contains_key(&t) {
            continue;
        }
        match fresh.get_mut(&t) {
            Some(acc) => acc.absorb(b),
            None => {
                fresh.insert(t, Bucket { start: t, ..*b });
            }
        }
    }
    into.extend(fresh);
}

/// Steps of one series in `[from, to]`.
///
/// # Errors
/// SQLite errors, corrupt blocks.
pub fn steps(
    conn: &Connection,
    head: &SharedHead,
    series_id: i64,
    kind: i32,
    from: i64,
    to: i64,
    step: i64,
) -> Result<(&'static str, Vec<Step>), Error> {
    let counter = kind == 2;
    let tier = tier_for(step);
    let mut out: BTreeMap<i64, Bucket> = BTreeMap::new();
    // Counters: the increase of the first point counts from the last point of the hour before,
    // as the rollups do.
    let raw_buckets = |from: i64, to: i64, width: i64| -> Result<Vec<Bucket>, Error> {
        let reach = if counter { series::block_start(from) - BLOCK_MS } else { from };
        let points = series::series_points(conn, head, series_id, reach, to)?;
        let split = points.partition_point(|p| p.0 < from);
        let prev = match (split.checked_sub(1), points.get(split)) {
            (Some(i), _) => Some(points[i].1),
            // Nothing raw before: the hour before the first point may have expired from raw, and
            // its hour bucket keeps its last value (as the rollups count it).
            (None, Some(first)) if counter => rollup::last_before(conn, series_id, series::block_start(first.0))?,
            _ => None,
        };
        Ok(rollup::buckets(&points[split..], width, counter, prev))
    };
    if tier == "raw" {
        fold(&mut out, &raw_buckets(from, to, step)?, step);
    } else if tier == "minute" {
        // Minute buckets folded into the step, as the minute rollups are built.
        fold(&mut out, &raw_buckets(from, to, 60_000)?, step);
    } else {
        // Hours with unsealed samples or with blocks whose hour rollup is due: from the raw
        // samples, the rest from the tier's rows (due hours read first: a compaction step that
        // commits after this read leaves a fresh rollup behind).
        let mut unsealed: std::collections::BTreeSet<i64> =
            series::due_hours(conn, series_id, from, to)?.into_iter().collect();
        unsealed.extend(
            head.read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .points(series_id, from, to)?
                .iter()
                .map(|p| series::block_start(p.0)),
        );
        if counter {
            // A counter's increase starts from the last value of the hour before: the hour after
            // one computed from raw samples is computed from them too while its block is kept.
            // Its stored rollup still counts from the hour's earlier last value until it is
            // refreshed (due once the hour before is: `rollup::refresh_hour`).
            let next: Vec<i64> =
                unsealed.iter().map(|h| h + BLOCK_MS).filter(|h| *h <= to && !unsealed.contains(h)).collect();
            for hour in next {
                if series::has_block(conn, series_id, hour)? {
                    unsealed.insert(hour);
                }
            }
        }
        // Minute buckets folded into the step, as the rollups are built: the same sums bit for bit.
        let width = 60_000;
        let mut fresh = Vec::new();
        for hour in &unsealed {
            fresh.extend(raw_buckets((*hour).max(from), (hour + BLOCK_MS - 1).min(to), width)?);
        }
        let stored = rollup::read(conn, HOUR, series_id, from, to)?;
        // One fold over both, in time order: a step (a day) may hold hours of either kind.
        fresh.extend(stored.into_iter().filter(|b| !unsealed.contains(&series::block_start(b.start))));
        fresh.sort_by_key(|b| b.start);
        fold(&mut out, &fresh, step);
    }
    // Expired finer tiers: coarser rollups answer the time before the finer tier's first data.
    let older = |out: &BTreeMap<i64, Bucket>, buckets: Vec<Bucket>| -> Vec<Bucket> {
        let first = out.keys().next().copied().unwrap_or(i64::MAX);
        buckets.into_iter().filter(|b| b.start < first).collect()
    };
    if tier != "hour" {
        let minutes = older(&out, rollup::read(conn, MINUTE, series_id, from, to)?);
        fold(&mut out, &minutes, step);
    }
    if tier != "hour" {
        let hours = older(&out, rollup::read(conn, HOUR, series_id, from, to)?);
        fold(&mut out, &hours, step);
    }
    let steps = out
        .values()
        .filter(|b| b.start + step > from && b.start <= to)
        .map(|b| Step {
            t: b.start,
            min: b.min,
            max: b.max,
            avg: b.sum / f64::from(b.count.max(1)),
            count: b.count,
            increase: b.inc,
        })
        .collect();
    Ok((tier, steps))
}

impl super::query::Reader {
    /// Steps of every series `name` of `agent_id` in `[from, to]`, sorted by labels.
    ///
    /// # Errors
    /// A step that is not positive or makes more than [`MAX_STEPS`] steps; SQLite errors.
    pub fn series_steps(
        &self,
        agent_id: &str,
        name: &str,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<SeriesSteps>, Error> {
        if step <= 0 || (to - from) / step >= MAX_STEPS {
            return Err(Error::Failed(format!(
                "step {step} ms over {} ms: expected a positive step making at most {MAX_STEPS} steps",
                to - from
            )));
        }
        let conn = self.conn();
        let head = self.head(&conn)?;
        let series: Vec<(i64, String, i32)> = {
            let mut stmt = conn.prepare_cached(
                "SELECT id, labels, kind FROM series WHERE agent_id = ?1 AND name = ?2 ORDER BY labels",
            )?;
            let rows = stmt.query_map(rusqlite::params![agent_id, name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::new();
        for (series_id, labels, kind) in series {
            let (tier, steps) = steps(&conn, &head, series_id, kind, from, to, step)?;
            if !steps.is_empty() {
                out.push(SeriesSteps { labels, tier, steps });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::retention::{Retention, Upkeep};
    use crate::store::series::{Compaction, Kinds, load_head, seal_step, start_seal, write_pending};
    use proptest::prelude::*;
    use std::sync::{Arc, RwLock};

    const T0: i64 = 1_795_000_000_000 - 1_795_000_000_000 % 86_400_000;

    struct Db {
        _dir: tempfile::TempDir,
        conn: Connection,
        head: SharedHead,
        kinds: Kinds,
    }

    impl Db {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let conn = crate::store::open_connection(dir.path()).expect("open");
            Db { _dir: dir, conn, head: SharedHead::default(), kinds: Kinds::new() }
        }

        fn add(&mut self, series_id: i64, kind: i32, points: Vec<(i64, f64)>) {
            self.kinds.insert(series_id, kind);
            let mut staged = vec![(series_id, points)];
            let tx = self.conn.transaction().expect("tx");
            write_pending(&tx, &mut staged).expect("pending");
            tx.commit().expect("commit");
            self.head.write().expect("head").add(&staged);
        }

        /// Seals the head into blocks, whose hour rollups stay due.
        fn seal_only(&mut self) {
            let mut seal = start_seal(&self.head, i64::MAX, true).expect("due");
            while !seal_step(&mut self.conn, &self.head, &mut seal).expect("step") {}
        }

        /// Seals the head and compacts every hour (their hour rollups written), as a clean stop.
        fn seal(&mut self) {
            self.seal_only();
            let mut compaction = Compaction::default();
            while compaction.step(&mut self.conn, &self.kinds, i64::MAX, true).expect("compact") {}
        }

        fn steps(&self, series_id: i64, from: i64, to: i64, step: i64) -> (&'static str, Vec<Step>) {
            let kind = self.kinds.get(&series_id).copied().unwrap_or(1);
            steps(&self.conn, &self.head, series_id, kind, from, to, step).expect("steps")
        }
    }

    /// Brute force: min, max, avg, count and counter increase per step over sorted points.
    fn brute(points: &[(i64, f64)], step: i64, counter: bool) -> Vec<(i64, f64, f64, f64, u32, f64)> {
        let mut out: Vec<(i64, f64, f64, f64, u32, f64)> = Vec::new();
        let mut prev: Option<f64> = None;
        for &(ts, v) in points {
            let inc = match prev {
                Some(p) if counter => {
                    if v >= p {
                        v - p
                    } else {
                        v
                    }
                }
                _ => 0.0,
            };
            prev = Some(v);
            let t = ts.div_euclid(step) * step;
            match out.last_mut() {
                Some(s) if s.0 == t => {
                    s.1 = s.1.min(v);
                    s.2 = s.2.max(v);
                    s.3 += v;
                    s.4 += 1;
                    s.5 += inc;
                }
                _ => out.push((t, v, v, v, 1, inc)),
            }
        }
        out.iter_mut().for_each(|s| s.3 /= f64::from(s.4));
        out
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    fn agrees(got: &[Step], want: &[(i64, f64, f64, f64, u32, f64)]) -> Result<(), TestCaseError> {
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            prop_assert_eq!((g.t, g.min, g.max, g.count), (w.0, w.1, w.2, w.4));
            prop_assert!(close(g.avg, w.3) && close(g.increase, w.5), "{:?} vs {:?}", g, w);
        }
        Ok(())
    }

    fn series(seed: &[(u16, i16)], counter: bool) -> Vec<(i64, f64)> {
        let mut value = 0.0;
        let mut points: Vec<(i64, f64)> = seed
            .iter()
            .enumerate()
            .map(|(i, (jitter, delta))| {
                value = if counter {
                    if *delta < -30_000 { 0.0 } else { value + f64::from(delta.unsigned_abs()) }
                } else {
                    f64::from(*delta) / 8.0
                };
                (T0 + i as i64 * 17_000 + i64::from(*jitter % 9_000), value)
            })
            .collect();
        crate::store::block::normalize(&mut points);
        points
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Rollups equal a brute-force computation over the raw points, at raw, minute and hour
        /// steps, across block (hour) and row (day) boundaries, sealed in several pieces.
        #[test]
        fn every_tier_equals_brute_force_over_the_raw_points(
            seed in prop::collection::vec((any::<u16>(), any::<i16>()), 1..6000),
            counter: bool,
            pieces in 1usize..4,
        ) {
            let points = series(&seed, counter);
            let mut db = Db::new();
            let kind = if counter { 2 } else { 1 };
            let chunk = points.len().div_ceil(pieces);
            for (i, piece) in points.chunks(chunk).enumerate() {
                db.add(5, kind, piece.to_vec());
                // The last piece's hours stay due: answered from raw next to rolled-up hours.
                if i + 1 == pieces.min(points.len().div_ceil(chunk)) && pieces > 1 {
                    db.seal_only();
                } else {
                    db.seal();
                }
            }
            let (from, to) = (T0, T0 + 3 * 86_400_000);
            for (step, tier) in [(15_000, "raw"), (60_000, "minute"), (300_000, "minute"), (BLOCK_MS, "hour"), (86_400_000, "hour")] {
                let (got_tier, got) = db.steps(5, from, to, step);
                prop_assert_eq!(got_tier, tier);
                agrees(&got, &brute(&points, step, counter))?;
            }
        }
    }

    #[test]
    fn unsealed_hours_answer_from_the_head_and_a_late_backfill_changes_its_rollups() {
        let mut db = Db::new();
        let first: Vec<(i64, f64)> = (0..720).map(|i| (T0 + i * 10_000, 1.0)).collect();
        db.add(9, 1, first.clone());
        db.seal();
        // Hours later a spool backfills points inside the first hour, plus a new hour.
        let late = vec![(T0 + 5_000, 100.0), (T0 + 2 * BLOCK_MS + 1, 7.0)];
        db.add(9, 1, late.clone());
        let mut all = crate::store::block::merge(&first, &late);
        crate::store::block::normalize(&mut all);
        for step in [60_000, BLOCK_MS] {
            let (_, before_seal) = db.steps(9, T0, T0 + 3 * BLOCK_MS, step);
            db.seal();
            let (_, after_seal) = db.steps(9, T0, T0 + 3 * BLOCK_MS, step);
            assert_eq!(before_seal, after_seal, "step {step}: head and rollups disagree");
            agrees(&after_seal, &brute(&all, step, false)).expect("brute force");
            assert_eq!(after_seal[0].max, 100.0, "the backfilled point is in its bucket");
            db.add(9, 1, late.clone()); // repeated: stored once, nothing changes
        }
    }

    /// A spool resend older than raw retention lands in an hour whose raw block has expired: its
    /// points are added to the hour's minute and hour rollups (the earlier points' counts, sums,
    /// minima and maxima stay), the same late points sent again are counted once, and a
    /// counter's increase stays as counted from the expired raw points.
    #[test]
    fn a_backfill_into_an_hour_whose_raw_block_expired_adds_to_its_rollups() {
        for counter in [false, true] {
            let mut db = Db::new();
            let kind = if counter { 2 } else { 1 };
            // Minutes 0-29 of the first hour at 10 s, and one point in the next hour.
            let mut stored: Vec<(i64, f64)> = (0..180).map(|i| (T0 + i * 10_000, 10.0 + i as f64)).collect();
            stored.push((T0 + BLOCK_MS + 30_000, 500.0));
            db.add(6, kind, stored.clone());
            db.seal();
            let now = T0 + 3 * 86_400_000;
            let retention = Retention { raw_ms: 86_400_000, minute_ms: 10 * 86_400_000, ..Retention::default() };
            let expire = |db: &mut Db| {
                let mut upkeep = Upkeep::new(&db.conn, retention).expect("upkeep");
                for _ in 0..50 {
                    upkeep.step(&mut db.conn, &db.kinds, now).expect("step");
                }
            };
            expire(&mut db);
            let blocks: i64 = db.conn.query_row("SELECT COUNT(*) FROM series_hour", [], |r| r.get(0)).expect("n");
            assert_eq!(blocks, 0, "raw expired");
            let (_, before) = db.steps(6, T0, T0 + 2 * BLOCK_MS, BLOCK_MS);
            // Days later the spool resends minutes 30-59 (after the stored points) and one point
            // inside minute 10, among the stored ones.
            let mut late: Vec<(i64, f64)> = (180..360).map(|i| (T0 + i * 10_000, 10.0 + i as f64)).collect();
            late.push((T0 + 10 * 60_000 + 5_000, 1000.0));
            db.add(6, kind, late.clone());
            db.seal();
            expire(&mut db);
            // Sent again (another batch carrying the same points): counted once.
            db.add(6, kind, late.clone());
            db.seal();
            expire(&mut db);
            let all = crate::store::block::merge(&stored, &late);
            let (_, hourly) = db.steps(6, T0, T0 + 2 * BLOCK_MS, BLOCK_MS);
            let sum: f64 = all.iter().filter(|p| p.0 < T0 + BLOCK_MS).map(|p| p.1).sum();
            assert_eq!(
                (hourly[0].count, hourly[0].min, hourly[0].max, hourly[0].avg),
                (361, 10.0, 1000.0, sum / 361.0),
                "counter={counter}: the hour holds the expired points and the late ones"
            );
            assert_eq!(hourly[1], before[1], "counter={counter}: the next hour is unchanged");
            assert_eq!(
                hourly[0].increase, before[0].increase,
                "counter={counter}: the increase across the hour was counted from the expired points"
            );
            // Minute steps: the stored minutes keep their points, the late minutes are added.
            let (_, minutes) = db.steps(6, T0, T0 + BLOCK_MS - 1, 60_000);
            assert_eq!(minutes.len(), 60, "counter={counter}");
            assert!(minutes.iter().all(|m| m.count == 6 || (m.t == T0 + 10 * 60_000 && m.count == 7)), "{minutes:?}");
            assert_eq!(minutes[10].max, 1000.0);
            assert_eq!(minutes[0].min, 10.0);
        }
    }

    /// A counter's increase over an hour starts from the last value of the hour before, so a
    /// spool backfilling an hour after the next hours were rolled up (an hour that had no point,
    /// or points after the hour's last) moves the next hour's increase too. At every stage
    /// (backfill in the head, sealed, rolled up, raw expired; raw expiring before compaction
    /// ran, the backfilled hour and the next one in the same expiry step) hour and minute steps
    /// equal brute force, and hour increases sum to the counter's growth.
    #[test]
    fn a_backfill_before_rolled_up_hours_moves_the_next_hours_increase() {
        let value = |t: i64| ((t - T0) / 60_000 * 3) as f64;
        let points =
            |from: i64, to: i64| -> Vec<(i64, f64)> { (from..to).step_by(600_000).map(|t| (t, value(t))).collect() };
        let h = T0 + BLOCK_MS;
        for (gap, compact_first) in [(true, true), (false, true), (true, false), (false, false)] {
            let mut db = Db::new();
            // Hours H-1, H+1 and H+2 (H empty: the agent was offline), or H's first half too.
            let mut stored = points(T0, if gap { h } else { h + 30 * 60_000 });
            stored.extend(points(h + BLOCK_MS, h + 3 * BLOCK_MS));
            db.add(7, 2, stored.clone());
            db.seal();
            let late = points(if gap { h } else { h + 30 * 60_000 }, h + BLOCK_MS);
            let all = crate::store::block::merge(&stored, &late);
            let growth = all.last().expect("points").1 - all[0].1;
            let (from, to) = (T0, h + 3 * BLOCK_MS - 1);
            let check = |db: &Db, stage: &str| {
                let (_, hourly) = db.steps(7, from, to, BLOCK_MS);
                let sum: f64 = hourly.iter().map(|s| s.increase).sum();
                let by_hour: Vec<f64> = hourly.iter().map(|s| s.increase).collect();
                assert_eq!(sum, growth, "gap={gap} compact_first={compact_first} {stage}: {by_hour:?}");
                agrees(&hourly, &brute(&all, BLOCK_MS, true)).expect(stage);
                agrees(&db.steps(7, from, to, 60_000).1, &brute(&all, 60_000, true)).expect(stage);
            };
            db.add(7, 2, late);
            check(&db, "in the head");
            db.seal_only();
            check(&db, "sealed");
            let compact = |db: &mut Db| {
                let mut compaction = Compaction::default();
                while compaction.step(&mut db.conn, &db.kinds, i64::MAX, true).expect("compact") {}
            };
            if compact_first {
                compact(&mut db);
                check(&db, "rolled up");
            }
            let retention = Retention { raw_ms: 86_400_000, minute_ms: 10 * 86_400_000, ..Retention::default() };
            let mut upkeep = Upkeep::new(&db.conn, retention).expect("upkeep");
            for _ in 0..50 {
                upkeep.step(&mut db.conn, &db.kinds, T0 + 3 * 86_400_000).expect("step");
            }
            let blocks: i64 = db.conn.query_row("SELECT COUNT(*) FROM series_hour", [], |r| r.get(0)).expect("n");
            assert_eq!(blocks, 0, "raw expired");
            check(&db, "raw expired");
            compact(&mut db);
            check(&db, "raw expired, compaction after");
        }
    }

    #[test]
    fn retention_removes_exactly_what_is_older_than_its_tier_and_rollups_answer_after_raw_expired() {
        let mut db = Db::new();
        let now = T0 + 40 * 86_400_000;
        // One point every 10 minutes for 40 days.
        let points: Vec<(i64, f64)> = (0..40 * 144).map(|i| (T0 + i * 600_000, (i % 7) as f64)).collect();
        db.add(3, 1, points.clone());
        db.seal();
        let retention = Retention { raw_ms: 10 * 86_400_000, minute_ms: 20 * 86_400_000, ..Retention::default() };
        let mut upkeep = Upkeep::new(&db.conn, retention).expect("upkeep");
        for _ in 0..100 {
            upkeep.step(&mut db.conn, &db.kinds, now).expect("step");
        }
        let oldest = |sql: &str| -> i64 { db.conn.query_row(sql, [], |r| r.get(0)).expect("min") };
        let raw_cut = now - retention.raw_ms;
        let minute_cut = now - retention.minute_ms;
        // Blocks whose hour ended before the cutoff are gone; the block holding the cutoff stays.
        assert_eq!(oldest("SELECT (MIN(id) >> 24) * 3600000 FROM series_hour"), series::block_start(raw_cut));
        assert_eq!(oldest("SELECT MIN(start_ms) FROM rollup WHERE tier = 1"), series::block_start(minute_cut));
        assert_eq!(oldest("SELECT MIN(start_ms) FROM rollup WHERE tier = 2"), T0, "hour rollups kept 2 years");
        // A raw query over the whole range: raw where kept, minute rollups after that, hours before.
        // Ten-minute steps: minute rollups for the last 20 days, one hour bucket a step before.
        let (_, got) = db.steps(3, T0, now, 600_000);
        assert_eq!(got.len(), 20 * 144 + 20 * 24);
        assert!(got[..20 * 24].iter().all(|s| s.count == 6 && s.t % BLOCK_MS == 0), "hour rollups before");
        assert!(got[20 * 24..].iter().all(|s| s.count == 1), "minute rollups after");
        let (_, hourly) = db.steps(3, T0, now, BLOCK_MS);
        agrees(&hourly, &brute(&points, BLOCK_MS, false)).expect("hour tier intact");
    }

    /// Minute buckets are not stored while the raw block is kept (they are computed from it); when
    /// raw expires its minute rollups are written first, and minute steps still equal brute force
    /// over the raw points, counters' increases across the raw/minute boundary included.
    #[test]
    fn minute_rollups_written_when_raw_expires_equal_brute_force() {
        for counter in [false, true] {
            let mut db = Db::new();
            let kind = if counter { 2 } else { 1 };
            let seed: Vec<(u16, i16)> =
                (0..15_000u32).map(|i| ((i * 7919 % 65_521) as u16, ((i * 104_729) % 65_536) as u16 as i16)).collect();
            let points = series(&seed, counter);
            db.add(4, kind, points.clone());
            db.seal();
            let minute_rows = |db: &Db| -> i64 {
                db.conn.query_row("SELECT COUNT(*) FROM rollup WHERE tier = 1", [], |r| r.get(0)).expect("count")
            };
            assert_eq!(minute_rows(&db), 0, "no minute rows while raw is kept");
            let (from, to) = (T0, points.last().expect("points").0);
            let before = db.steps(4, from, to, 60_000);
            // Raw kept for the last day only; minute rollups for ten.
            let now = to + BLOCK_MS;
            let retention = Retention { raw_ms: 86_400_000, minute_ms: 10 * 86_400_000, ..Retention::default() };
            let mut upkeep = Upkeep::new(&db.conn, retention).expect("upkeep");
            for _ in 0..50 {
                upkeep.step(&mut db.conn, &db.kinds, now).expect("step");
            }
            let oldest: i64 =
                db.conn.query_row("SELECT (MIN(id) >> 24) * 3600000 FROM series_hour", [], |r| r.get(0)).expect("min");
            assert!(oldest > T0 + BLOCK_MS && minute_rows(&db) > 0, "raw expired into minute rows");
            let after = db.steps(4, from, to, 60_000);
            assert_eq!(after, before, "counter={counter}: minute steps changed when raw expired");
            agrees(&after.1, &brute(&points, 60_000, counter)).expect("brute force");
            agrees(&db.steps(4, from, to, 300_000).1, &brute(&points, 300_000, counter)).expect("5 minutes");
        }
    }

    #[test]
    fn old_sample_rows_are_converted_in_steps_and_stay_readable_throughout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(crate::store::DB_FILE);
        {
            // A database as written before blocks: schema version 4 with one row per sample.
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(&crate::store::schema::MIGRATIONS[..4].join("\n")).expect("old schema");
            conn.pragma_update(None, "user_version", 4).expect("version");
            conn.execute("INSERT INTO series(id, agent_id, name, labels, kind) VALUES (1, 'a', 'm', '', 1)", [])
                .expect("series");
            let mut insert =
                conn.prepare("INSERT INTO sample(series_id, ts_ms, value) VALUES (1, ?1, ?2)").expect("prep");
            for i in 0..50_000i64 {
                insert.execute(rusqlite::params![T0 + i * 1000, i as f64]).expect("row");
            }
            insert.execute(rusqlite::params![T0, -1.0]).expect("a repeated timestamp");
        }
        let mut conn = crate::store::open_connection(dir.path()).expect("migrate");
        let head: SharedHead = Arc::new(RwLock::new(load_head(&conn).expect("head").0));
        let mut upkeep = Upkeep::new(&conn, Retention::default()).expect("upkeep");
        let want: Vec<(i64, f64)> = (0..50_000i64).map(|i| (T0 + i * 1000, i as f64)).collect();
        let mut steps = 0;
        loop {
            let got = series::series_points(&conn, &head, 1, T0, T0 + 86_400_000).expect("read");
            assert_eq!(got, want, "after {steps} steps");
            let left: i64 = conn
                .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'sample'", [], |r| r.get(0))
                .expect("table");
            if left == 0 {
                break;
            }
            upkeep.step(&mut conn, &Kinds::new(), T0 + 86_400_000).expect("step");
            steps += 1;
        }
        assert!(steps >= 3, "converted in {steps} steps");
    }
}
