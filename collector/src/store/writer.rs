//! The one thread that owns the write connection. Commits groups of batches per transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::mpsc;
use tracing::error;

use super::retention::{Retention, Upkeep};
use super::series::{self, Kinds, Seal, SharedHead};
use super::{Error, IngestBatch, Outcome, Reply};
use crate::sla::{Span, State};

/// Requests waiting for the writer; beyond this the store answers `Busy`.
pub(super) const QUEUE: usize = 1024;
/// Batches committed together at most.
pub const GROUP_MAX: usize = 256;
/// A clean stop compacts the past hours this run wrote for at most this long.
const SHUTDOWN_COMPACTION: std::time::Duration = std::time::Duration::from_secs(20);
/// Check results kept in the history per agent per minute of check time at most (10 a second:
/// far above what an agent's checks send); past it a result only updates the check's latest
/// state and is counted, so one agent cannot fill the database with results.
pub const MAX_CHECK_RESULTS_PER_MINUTE: i64 = 600;

/// `agent \0 name \0 labels`: agent ids and metric names never hold a NUL (both are validated
/// as `[A-Za-z0-9_.-]`-like names), so the first two NULs split the key unambiguously.
type SeriesKey = String;

fn series_key(out: &mut String, agent: &str, name: &str, labels: &str) {
    out.clear();
    out.push_str(agent);
    out.push('\0');
    out.push_str(name);
    out.push('\0');
    out.push_str(labels);
}

pub(super) struct Writer {
    conn: Connection,
    healthy: Arc<AtomicBool>,
    max_series_per_agent: usize,
    series_ids: HashMap<SeriesKey, i64>,
    series_per_agent: HashMap<String, usize>,
    /// How long one batch or sample proves a state (the heartbeat timeout).
    evidence_span_ms: i64,
    /// Check results left out of the history by [`MAX_CHECK_RESULTS_PER_MINUTE`].
    results_dropped: Arc<AtomicU64>,
    /// Samples not yet in blocks (shared with readers).
    head: SharedHead,
    /// Kind of every series, for rollups.
    kinds: Kinds,
    /// Id of the last pending row written.
    last_pending: i64,
    /// The seal in progress.
    seal: Option<Seal>,
    /// Points moved to blocks by seals since the start.
    sealed_points: usize,
    /// Hours whose blocks wait to be compacted.
    compaction: series::Compaction,
    /// Conversion of old rows and retention.
    upkeep: Upkeep,
    /// Background work pauses after an error until then.
    backoff_until: Option<std::time::Instant>,
    /// Sealing and compaction found the database at `max_db_bytes`: skipped until then.
    full_until: Option<std::time::Instant>,
    /// Time of each kind of work.
    step_times: Arc<super::StepTimes>,
    /// `max_db_bytes` in pages and the page size (`None` without a bound).
    bound: Option<(i64, i64)>,
    /// Whether ingest is refused at the bound (shared with the handle, for the metrics).
    fullness: Arc<super::Fullness>,
    /// Ingest was refused as full: the head is sealed now rather than when due, so its pending
    /// rows become blocks that retention can expire.
    seal_now: bool,
    /// When the store last logged that it is full, and that ingest resumed (each once per
    /// [`FULL_LOG_EVERY`]: near the line ingest may pass it often).
    full_logged: Option<std::time::Instant>,
    resume_logged: Option<std::time::Instant>,
    /// Bytes of pages a seal step took per byte of head it sealed (the largest recently).
    seal_ratio: f64,
}

/// A full store says so in the log at most this often.
const FULL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// What the used pages leave room for (see [`super::ingest_reserve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Room {
    /// A group commit: below `max_db_bytes` less the whole reserve.
    ingest: bool,
    /// Upkeep that grows the database (raw hours turned into minute rollups): below
    /// `max_db_bytes` less the head's seal room and half the upkeep step's share.
    grow: bool,
}

impl Writer {
    /// `(head, last_pending)` is what [`series::load_head`] replayed from the pending rows;
    /// `(results_dropped, step_times)` are the counters shared with the [`super::Store`] handle;
    /// `bound` is `max_db_bytes` in pages and the page size, `fullness` shared with the handle.
    pub(super) fn new(
        conn: Connection,
        healthy: Arc<AtomicBool>,
        max_series_per_agent: usize,
        evidence_span_ms: i64,
        (results_dropped, step_times): (Arc<AtomicU64>, Arc<super::StepTimes>),
        (head, last_pending): (SharedHead, i64),
        (retention, bound, fullness): (Retention, Option<(i64, i64)>, Arc<super::Fullness>),
    ) -> Result<Self, Error> {
        let mut series_ids = HashMap::new();
        let mut series_per_agent: HashMap<String, usize> = HashMap::new();
        let mut kinds = Kinds::new();
        {
            let mut stmt = conn.prepare("SELECT id, agent_id, name, labels, kind FROM series")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
            for row in rows {
                let (id, agent, name, labels, kind): (i64, String, String, String, i32) = row?;
                let mut key = String::new();
                series_key(&mut key, &agent, &name, &labels);
                *series_per_agent.entry(agent).or_default() += 1;
                series_ids.insert(key, id);
                kinds.insert(id, kind);
            }
        }
        let upkeep = Upkeep::new(&conn, retention)?;
        Ok(Writer {
            conn,
            healthy,
            max_series_per_agent,
            series_ids,
            series_per_agent,
            evidence_span_ms,
            results_dropped,
            head,
            kinds,
            last_pending,
            seal: None,
            sealed_points: 0,
            compaction: series::Compaction::default(),
            upkeep,
            backoff_until: None,
            full_until: None,
            step_times,
            bound,
            fullness,
            seal_now: false,
            full_logged: None,
            resume_logged: None,
            seal_ratio: super::SEAL_ROOM_PER_HEAD_BYTE,
        })
    }

    /// Pages in use (`None` without a bound).
    fn used_pages(&self) -> Result<Option<i64>, Error> {
        if self.bound.is_none() {
            return Ok(None);
        }
        let (pages, free): (i64, i64) = self
            .conn
            .prepare_cached("SELECT * FROM pragma_page_count, pragma_freelist_count")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(Some((pages - free).max(0)))
    }

    fn head_bytes(&self) -> usize {
        self.head.read().unwrap_or_else(std::sync::PoisonError::into_inner).bytes()
    }

    /// Bytes of pages sealing the head as it is now takes (its bytes times the seal ratio).
    fn seal_room(&self) -> u64 {
        (self.head_bytes() as f64 * self.seal_ratio) as u64
    }

    /// Whether the head's seal room passed its share of `max_db_bytes` ([`super::SEAL_ROOM_SHARE`]):
    /// the head is sealed now rather than at its size or age bound.
    fn seal_early(&self) -> bool {
        self.bound.is_some_and(|(max_pages, page_size)| {
            self.seal_room() > u64::try_from(max_pages * page_size).unwrap_or(0) / super::SEAL_ROOM_SHARE
        })
    }

    /// Learns the seal ratio from one seal step that did not finish its seal (the pending rows
    /// are deleted by the last one): the pages it added per head byte it sealed. The ratio kept
    /// is the larger of that and the last one decayed by a tenth.
    fn learn_seal_ratio(&mut self, before: (Option<i64>, usize)) {
        let (Some(used_before), head_before) = before else { return };
        let Some((_, page_size)) = self.bound else { return };
        let Ok(Some(used_after)) = self.used_pages() else { return };
        let sealed = head_before.saturating_sub(self.head_bytes());
        if sealed < 4096 {
            return;
        }
        let ratio = ((used_after - used_before).max(0) * page_size) as f64 / sealed as f64;
        self.seal_ratio = ratio.max(self.seal_ratio * 0.9).max(super::SEAL_ROOM_MIN);
    }

    /// What the pages in use leave room for: ingest stops at `max_db_bytes` less
    /// [`super::ingest_reserve`] (the head's seal room and one upkeep step), upkeep that grows the
    /// database at `max_db_bytes` less the head's seal room and half a step; sealing and compaction may use every
    /// page up to the bound (`PRAGMA max_page_count` on this connection).
    fn room(&self) -> Result<Room, Error> {
        let (Some((max_pages, page_size)), Some(used)) = (self.bound, self.used_pages()?) else {
            return Ok(Room { ingest: true, grow: true });
        };
        let max_bytes = u64::try_from(max_pages * page_size).unwrap_or(0);
        let to_pages = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX) / page_size.max(512);
        let seal_room = self.seal_room();
        // Growing upkeep leaves half the step's share to compaction, whose steps move blocks
        // onto full pages and so free the pages retention needs next.
        let grow = to_pages(seal_room.saturating_add(super::upkeep_reserve(max_bytes) / 2));
        let reserve = to_pages(super::ingest_reserve(max_bytes, seal_room));
        Ok(Room { ingest: used.saturating_add(reserve) < max_pages, grow: used.saturating_add(grow) < max_pages })
    }

    /// [`Self::room`], or room for everything when the page counts cannot be read (the bound
    /// itself still holds).
    fn room_or_any(&self) -> Room {
        self.room().unwrap_or_else(|err| {
            tracing::warn!(error = %err, "reading the page counts failed");
            Room { ingest: true, grow: true }
        })
    }

    /// Refuses a group at the reserve: its `refused` batches (those not stored before) counted,
    /// logged once per [`FULL_LOG_EVERY`], and the head sealed next. Clears the flag when there
    /// is room again.
    fn note_full(&mut self, full: bool, refused: usize) {
        let was = self.fullness.full.swap(full, Ordering::Relaxed);
        if !full {
            if was && self.resume_logged.is_none_or(|at| at.elapsed() >= FULL_LOG_EVERY) {
                self.resume_logged = Some(std::time::Instant::now());
                tracing::info!("database below max_db_bytes less its upkeep reserve again: ingest resumes");
            }
            return;
        }
        self.seal_now = true;
        if !was {
            self.upkeep.wake();
        }
        self.fullness.refused.fetch_add(refused as u64, Ordering::Relaxed);
        if self.full_logged.is_none_or(|at| at.elapsed() >= FULL_LOG_EVERY) {
            self.full_logged = Some(std::time::Instant::now());
            let blocked = self.fullness.retention_blocked.load(Ordering::Relaxed);
            tracing::warn!(
                refused_batches = self.fullness.refused.load(Ordering::Relaxed),
                retention_blocked = blocked,
                "database at max_db_bytes less its upkeep reserve: batches are refused (agents keep them in their spools) while sealing and retention free pages{}",
                if blocked {
                    "; expired raw hours wait for room for their minute rollups: the retention keeps more than max_db_bytes holds (lower minute_days or raw_days, or raise max_db_bytes)"
                } else {
                    ""
                }
            );
        }
    }

    /// On a clean stop: moves the whole head into blocks, so a stopped store is compact (the
    /// pending rows would be replayed at the next start otherwise, which is also correct).
    /// Then compacts the blocks of the past hours this run wrote (for at most
    /// [`SHUTDOWN_COMPACTION`]).
    fn seal_all(&mut self) {
        loop {
            if self.seal.is_none() {
                self.seal = series::start_seal(&self.head, self.last_pending, true);
            }
            let Some(seal) = &mut self.seal else { break };
            match series::seal_step(&mut self.conn, &self.head, seal) {
                Ok(true) => {
                    self.compaction.touch(&seal.hours);
                    self.seal = None;
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "sealing samples at shutdown failed; they stay pending and are replayed at the next start");
                    return;
                }
            }
        }
        let until = std::time::Instant::now() + SHUTDOWN_COMPACTION;
        while std::time::Instant::now() < until {
            match self.compaction.step(&mut self.conn, &self.kinds, now_ms(), true) {
                Ok(true) => {}
                Ok(false) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "compacting blocks at shutdown failed; they stay as they are");
                    return;
                }
            }
        }
    }

    /// One step of background work (sealing the head, converting old rows, retention) when there
    /// is any; true when it did something.
    fn background_step(&mut self) -> bool {
        if self.backoff_until.is_some_and(|until| std::time::Instant::now() < until) {
            return false;
        }
        let started = std::time::Instant::now();
        let result = (|| -> Result<(bool, usize), Error> {
            if self.seal.is_none() {
                self.seal = series::start_seal(&self.head, self.last_pending, self.seal_now || self.seal_early());
                self.seal_now = false;
            }
            // At `max_db_bytes` sealing and compaction fail for want of pages; retention still
            // runs then, and its deletes may make the room they need (a lowered retention).
            let mut full = self.full_until.is_some_and(|until| std::time::Instant::now() < until);
            let before =
                if self.seal.is_some() { (self.used_pages().ok().flatten(), self.head_bytes()) } else { (None, 0) };
            if let Some(seal) = self.seal.as_mut().filter(|_| !full) {
                let moved_before = seal.moved;
                match series::seal_step(&mut self.conn, &self.head, seal) {
                    Ok(done) => {
                        self.sealed_points += seal.moved - moved_before;
                        if done {
                            self.compaction.touch(&seal.hours);
                            self.seal = None;
                        } else {
                            self.learn_seal_ratio(before);
                        }
                        return Ok((true, super::STEP_SEAL));
                    }
                    Err(Error::Full) => full = true,
                    Err(err) => return Err(err),
                }
            }
            if !full {
                match self.compaction.step(&mut self.conn, &self.kinds, now_ms(), false) {
                    Ok(true) => return Ok((true, super::STEP_COMPACTION)),
                    Ok(false) => {}
                    Err(Error::Full) => full = true,
                    Err(err) => return Err(err),
                }
            }
            if full && self.full_until.is_none_or(|until| std::time::Instant::now() >= until) {
                // Sealing and compaction are not tried again for a while: retention gets the
                // steps meanwhile.
                tracing::warn!("database at max_db_bytes: sealing waits while retention frees pages");
                self.full_until = Some(std::time::Instant::now() + std::time::Duration::from_secs(10));
            }
            let step = if self.upkeep.converting() { super::STEP_CONVERSION } else { super::STEP_RETENTION };
            self.upkeep.set_room(self.room_or_any().grow);
            let result = self.upkeep.step(&mut self.conn, &self.kinds, now_ms());
            self.fullness.retention_blocked.store(self.upkeep.waiting_for_room(), Ordering::Relaxed);
            match result? {
                false if full => Err(Error::Full),
                worked => Ok((worked, step)),
            }
        })();
        let rollup = super::rollup::take_elapsed();
        if let Ok((true, step)) = result {
            self.step_times.record(step, started.elapsed());
            self.step_times.record(super::STEP_ROLLUP, rollup);
        }
        let result = result.map(|(worked, _)| worked);
        match result {
            Ok(worked) => worked,
            Err(err) => {
                // Nothing is lost: the step rolled back and runs again later.
                tracing::warn!(error = %err, "store upkeep step failed; retrying in 10 s");
                self.backoff_until = Some(std::time::Instant::now() + std::time::Duration::from_secs(10));
                false
            }
        }
    }

    /// Serves requests until every sender is gone, then closes the connection.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<(Arc<IngestBatch>, Reply)>) {
        let mut group = Vec::with_capacity(GROUP_MAX);
        loop {
            let first = match rx.try_recv() {
                Ok(first) => first,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if self.background_step() {
                        continue;
                    }
                    match rx.blocking_recv() {
                        Some(first) => first,
                        None => break,
                    }
                }
            };
            group.push(first);
            while group.len() < GROUP_MAX {
                match rx.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            let batches: Vec<&IngestBatch> = group.iter().map(|(batch, _)| &**batch).collect();
            let started = std::time::Instant::now();
            // The head over its bound with sealing held back (a step failing and waiting to be
            // retried): agents wait (`Busy`, their spools keep the batches) rather than memory
            // growing.
            let (head_full, held) = {
                let head = self.head.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                (head.over_bound(), head.len())
            };
            let committed = if head_full { Err(Error::Busy) } else { self.commit_within_reserve(&batches) };
            let added = self.head.read().unwrap_or_else(std::sync::PoisonError::into_inner).len().saturating_sub(held);
            self.step_times.record(super::STEP_COMMIT, started.elapsed());
            match committed {
                Ok(outcomes) => {
                    for ((_, reply), outcome) in group.drain(..).zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(err) => {
                    if matches!(err, Error::Failed(_)) {
                        // Fail closed: never ack after an unexplained commit failure (fsync, IO).
                        self.healthy.store(false, Ordering::Release);
                        error!(error = %err, "commit failed: the store refuses writes until restart");
                    }
                    // A batch refused for want of room (`Busy`, `Full`) that is stored already
                    // (an agent resending what it lost the ack of) is acked as a duplicate: its
                    // agent drops it from its spool instead of resending it until room is made.
                    let stored = if matches!(err, Error::Busy | Error::Full) {
                        self.stored_before(&batches)
                    } else {
                        vec![false; batches.len()]
                    };
                    if matches!(err, Error::Full) {
                        self.note_full(true, stored.iter().filter(|stored| !**stored).count());
                    }
                    for ((_, reply), stored) in group.drain(..).zip(stored) {
                        let _ = reply.send(if stored { Ok(Outcome::Duplicate) } else { Err(err.clone()) });
                    }
                }
            }
            // Under steady load the queue is never empty: background work also gets a step per
            // group, and while the head is over its bound sealing goes first (backpressure: the
            // queue fills and agents wait, rather than memory growing).
            self.background_step();
            // A running seal keeps pace with ingest: it moves at least twice what this group
            // added (one step per group falls behind at a high rate, the head growing by hours).
            let goal = self.sealed_points + 2 * added;
            while self.seal.is_some() && self.sealed_points < goal {
                let before = self.sealed_points;
                if !self.background_step() || self.sealed_points == before {
                    break;
                }
            }
            while self.head.read().unwrap_or_else(std::sync::PoisonError::into_inner).over_bound()
                && self.background_step()
            {}
        }
        self.seal_all();
        if let Err((_, err)) = self.conn.close() {
            error!(error = %err, "closing the database");
        }
    }

    /// Commits the group unless the database is at `max_db_bytes` less the upkeep reserve: then
    /// nothing of it is stored and every batch gets [`Error::Full`] (its agent keeps it; the
    /// caller counts the refusal, [`Self::note_full`], once it knows which were stored before).
    fn commit_within_reserve(&mut self, batches: &[&IngestBatch]) -> Result<Vec<Outcome>, Error> {
        let result = if self.room_or_any().ingest { self.commit_group(batches) } else { Err(Error::Full) };
        if !matches!(result, Err(Error::Full)) {
            self.note_full(false, 0);
        }
        result
    }

    /// For each batch, whether the same key with the same content is stored (a read, no write).
    fn stored_before(&self, batches: &[&IngestBatch]) -> Vec<bool> {
        batches
            .iter()
            .map(|batch| stored_hash(&self.conn, batch).is_ok_and(|hash| hash.is_some_and(|h| h == batch.payload_hash)))
            .collect()
    }

    fn commit_group(&mut self, batches: &[&IngestBatch]) -> Result<Vec<Outcome>, Error> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut new_series: HashMap<SeriesKey, (String, i64)> = HashMap::new();
        let mut key = String::new();
        let mut new_per_agent: HashMap<&str, usize> = HashMap::new();
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut dropped = 0u64;
        // The group's points per series, in arrival order; written as one pending row.
        let mut staged: Vec<(i64, Vec<(i64, f64)>)> = Vec::new();
        let mut staged_at: HashMap<i64, usize> = HashMap::new();
        for batch in batches {
            if let Some(hash) = stored_hash(&tx, batch)? {
                if hash == batch.payload_hash {
                    outcomes.push(Outcome::Duplicate);
                } else {
                    tx.execute(
                        "INSERT INTO audit(at_ms, agent_id, event, detail) VALUES (?1, ?2, 'batch_key_conflict', ?3)",
                        params![
                            batch.received_ms,
                            batch.agent_id,
                            format!(
                                "epoch={} seq={} stored_sha256={} resent_sha256={}",
                                batch.epoch,
                                batch.seq,
                                hex(&hash),
                                hex(&batch.payload_hash)
                            )
                        ],
                    )?;
                    outcomes.push(Outcome::Conflict);
                }
                continue;
            }
            let mut points = 0u64;
            let mut series_limited = Vec::new();
            for series in &batch.series {
                series_key(&mut key, &batch.agent_id, &series.name, &series.labels);
                let known = self
                    .series_ids
                    .get(key.as_str())
                    .copied()
                    .or_else(|| new_series.get(key.as_str()).map(|(_, id)| *id));
                let series_id = match known {
                    Some(id) => id,
                    None => {
                        let count = self.series_per_agent.get(&batch.agent_id).copied().unwrap_or(0)
                            + new_per_agent.get(batch.agent_id.as_str()).copied().unwrap_or(0);
                        if count >= self.max_series_per_agent {
                            series_limited.push((series.index, series.telemetry, series.points.len() as u32));
                            continue;
                        }
                        tx.prepare_cached("INSERT INTO series(agent_id, name, labels, kind) VALUES (?1, ?2, ?3, ?4)")?
                            .execute(params![batch.agent_id, series.name, series.labels, series.kind])?;
                        let id = tx.last_insert_rowid();
                        if id > series::MAX_SERIES_ID {
                            // The block layout keys rows by series id in 24 bits: the series is
                            // refused as at the per-agent limit (the agent sees the rejection).
                            tx.prepare_cached("DELETE FROM series WHERE id = ?1")?.execute([id])?;
                            tracing::error!(
                                agent = %batch.agent_id,
                                series = %series.name,
                                "series ids are exhausted (the block layout holds {} series ids): new series are refused",
                                series::MAX_SERIES_ID
                            );
                            series_limited.push((series.index, series.telemetry, series.points.len() as u32));
                            continue;
                        }
                        self.kinds.insert(id, series.kind);
                        *new_per_agent.entry(batch.agent_id.as_str()).or_default() += 1;
                        new_series.insert(key.clone(), (batch.agent_id.clone(), id));
                        id
                    }
                };
                let at = *staged_at.entry(series_id).or_insert_with(|| {
                    staged.push((series_id, Vec::new()));
                    staged.len() - 1
                });
                staged[at].1.extend_from_slice(&series.points);
                points += series.points.len() as u64;
            }
            for gap in &batch.gaps {
                tx.prepare_cached(
                    "INSERT INTO gap(agent_id, reason, from_ms, to_ms, dropped_batches, dropped_points, received_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    batch.agent_id,
                    gap.reason,
                    gap.from_ms,
                    gap.to_ms,
                    gap.dropped_batches as i64,
                    gap.dropped_points as i64,
                    batch.received_ms
                ])?;
            }
            for group in &batch.log_groups {
                tx.prepare_cached(
                    "INSERT INTO log_group(agent_id, log, fingerprint, severity, count, first_ms, last_ms, example, file)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    batch.agent_id,
                    group.log,
                    group.fingerprint,
                    group.severity,
                    group.count as i64,
                    group.first_ms,
                    group.last_ms,
                    group.example,
                    group.file
                ])?;
            }
            for check in &batch.checks {
                if !store_check(&tx, &batch.agent_id, check)? {
                    dropped += 1;
                }
            }
            let span = self.evidence_span_ms;
            add_running(&tx, &batch.agent_id, batch.created_ms, batch.created_ms.saturating_add(span))?;
            // A gap record proves the agent ran while it built the batches it had to drop.
            for gap in &batch.gaps {
                add_running(&tx, &batch.agent_id, gap.from_ms, gap.to_ms.saturating_add(span))?;
            }
            for series in &batch.series {
                let signal = match series.name.as_str() {
                    "probe_success" => "portal",
                    "mysql_up" => "mysql",
                    _ => continue,
                };
                let target = label_value(&series.labels, "target").unwrap_or_default();
                for (ts, value) in &series.points {
                    add_point(&tx, &batch.agent_id, signal, &target, *value >= 0.5, *ts, span)?;
                }
            }
            tx.prepare_cached(
                "INSERT INTO batch_key(agent_id, epoch, seq, received_ms, payload_hash, points) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                batch.agent_id,
                batch.epoch as i64,
                batch.seq as i64,
                batch.received_ms,
                &batch.payload_hash[..],
                points as i64
            ])?;
            tx.prepare_cached(
                "UPDATE agent SET last_seen_ms = MAX(COALESCE(last_seen_ms, 0), ?2), last_version = ?3 WHERE id = ?1",
            )?
            .execute(params![batch.agent_id, batch.received_ms, batch.agent_version])?;
            outcomes.push(Outcome::Stored { points, series_limited });
        }
        let pending = series::write_pending(&tx, &mut staged)?;
        tx.commit()?;
        self.results_dropped.fetch_add(dropped, Ordering::Relaxed);
        if let Some(id) = pending {
            self.last_pending = id;
            self.head.write().unwrap_or_else(std::sync::PoisonError::into_inner).add(&staged);
        }
        // Only now are the new series ids real; a rolled-back group leaves the caches untouched.
        for (key, (agent, id)) in new_series {
            *self.series_per_agent.entry(agent).or_default() += 1;
            self.series_ids.insert(key, id);
        }
        Ok(outcomes)
    }
}

/// The content hash stored under the batch's key `(agent, epoch, seq)`, if any (the dedup check).
fn stored_hash(conn: &rusqlite::Connection, batch: &IngestBatch) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT payload_hash FROM batch_key WHERE agent_id = ?1 AND epoch = ?2 AND seq = ?3")?
        .query_row(params![batch.agent_id, batch.epoch as i64, batch.seq as i64], |r| r.get(0))
        .optional()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Keeps the latest result per (agent, check, target) in `check_state` (a result older than the
/// stored one, e.g. from a spool backfill, leaves it alone) and records the result in the
/// history ([`record_result`]). False when the result was left out of the history because its
/// agent reached [`MAX_CHECK_RESULTS_PER_MINUTE`] in that minute of check time.
fn store_check(tx: &rusqlite::Transaction<'_>, agent_id: &str, check: &super::CheckIn) -> rusqlite::Result<bool> {
    use rusqlite::OptionalExtension as _;
    let current: Option<(i32, String, i64, i64)> = tx
        .prepare_cached(
            "SELECT status, reason, since_ms, at_ms FROM check_state
             WHERE agent_id = ?1 AND check_name = ?2 AND target = ?3",
        )?
        .query_row(params![agent_id, check.check, check.target], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let (since, newest) = match &current {
        None => (check.at_ms, true),
        Some((status, reason, since, at)) => {
            let changed = *status != check.status || *reason != check.reason;
            (if changed { check.at_ms } else { *since }, check.at_ms >= *at)
        }
    };
    let minute = check.at_ms.div_euclid(60_000).saturating_mul(60_000);
    let in_minute: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM check_point WHERE agent_id = ?1 AND at_ms >= ?2 AND at_ms < ?3")?
        .query_row(params![agent_id, minute, minute.saturating_add(60_000)], |r| r.get(0))?;
    let stored = in_minute < MAX_CHECK_RESULTS_PER_MINUTE;
    if stored {
        record_result(tx, agent_id, check)?;
    }
    if newest {
        tx.prepare_cached(
            "INSERT INTO check_state(agent_id, check_name, target, status, severity, reason, message, since_ms, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(agent_id, check_name, target) DO UPDATE SET status = excluded.status,
               severity = excluded.severity, reason = excluded.reason, message = excluded.message,
               since_ms = excluded.since_ms, at_ms = excluded.at_ms",
        )?
        .execute(params![
            agent_id,
            check.check,
            check.target,
            check.status,
            check.severity,
            check.reason,
            check.message,
            since,
            check.at_ms
        ])?;
    }
    Ok(stored)
}

/// What makes two results of one check the same for the history.
type Outcome3 = (i32, i32, String);

/// Records a check result in `check_point` (every result, by its time) and keeps `check_result`
/// equal to the *transitions* of that set: the results whose status, severity or reason differ
/// from the result just before them in time. A pure function of the set of results, so the
/// incidents built from it do not depend on arrival order: a new result can only change whether
/// it and its successor are transitions. Two results at one instant count as one: the failed,
/// then the more severe, one.
fn record_result(tx: &rusqlite::Transaction<'_>, agent_id: &str, check: &super::CheckIn) -> rusqlite::Result<()> {
    let rank = |status: i32, severity: i32, reason: &str| (status == 2, status == 3, severity, reason.to_owned());
    let key = params![agent_id, check.check, check.target, check.at_ms];
    let existing: Option<(i32, i32, String)> = tx
        .prepare_cached(
            "SELECT status, severity, reason FROM check_point
             WHERE agent_id = ?1 AND check_name = ?2 AND target = ?3 AND at_ms = ?4",
        )?
        .query_row(key, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if let Some((status, severity, reason)) = &existing
        && rank(*status, *severity, reason) >= rank(check.status, check.severity, &check.reason)
    {
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT INTO check_point(agent_id, check_name, target, at_ms, status, severity, reason, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(agent_id, check_name, target, at_ms) DO UPDATE SET status = excluded.status,
           severity = excluded.severity, reason = excluded.reason, message = excluded.message",
    )?
    .execute(params![
        agent_id,
        check.check,
        check.target,
        check.at_ms,
        check.status,
        check.severity,
        check.reason,
        check.message
    ])?;
    let pred: Option<Outcome3> = tx
        .prepare_cached(
            "SELECT status, severity, reason FROM check_point
             WHERE agent_id = ?1 AND check_name = ?2 AND target = ?3 AND at_ms < ?4 ORDER BY at_ms DESC LIMIT 1",
        )?
        .query_row(key, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let succ: Option<(i64, Outcome3, String)> = tx
        .prepare_cached(
            "SELECT at_ms, status, severity, reason, message FROM check_point
             WHERE agent_id = ?1 AND check_name = ?2 AND target = ?3 AND at_ms > ?4 ORDER BY at_ms LIMIT 1",
        )?
        .query_row(key, |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?), r.get(4)?)))
        .optional()?;
    let this: Outcome3 = (check.status, check.severity, check.reason.clone());
    let is_transition = pred.as_ref() != Some(&this);
    set_transition(tx, agent_id, check, check.at_ms, &this, &check.message, is_transition)?;
    if let Some((at, outcome, message)) = succ {
        set_transition(tx, agent_id, check, at, &outcome, &message, outcome != this)?;
    }
    Ok(())
}

/// Makes the result at `at` a row of `check_result`, or not.
fn set_transition(
    tx: &rusqlite::Transaction<'_>,
    agent_id: &str,
    check: &super::CheckIn,
    at: i64,
    outcome: &Outcome3,
    message: &str,
    is_transition: bool,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "DELETE FROM check_result WHERE agent_id = ?1 AND at_ms = ?4 AND check_name = ?2 AND target = ?3",
    )?
    .execute(params![agent_id, check.check, check.target, at])?;
    if is_transition {
        tx.prepare_cached(
            "INSERT INTO check_result(agent_id, check_name, target, status, severity, reason, message, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            agent_id,
            check.check,
            check.target,
            outcome.0,
            outcome.1,
            outcome.2,
            message,
            at
        ])?;
    }
    Ok(())
}

/// The value of label `name` in canonical label text (`a="x",b="y"`), unescaped.
fn label_value(labels: &str, name: &str) -> Option<String> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let mut out = String::new();
    let mut chars = labels[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// Records that the agent was running over `[from, to)`: the `agent` signal is only ever up, so
/// its evidence is the union of such intervals (order-independent by construction).
fn add_running(tx: &rusqlite::Transaction<'_>, agent_id: &str, from: i64, to: i64) -> rusqlite::Result<()> {
    if to <= from {
        return Ok(());
    }
    let piece = Span { from, to, state: State::Up };
    replace_region(tx, agent_id, "agent", "", from, to, &[piece], true)
}

/// Records a sample of a two-state signal (`portal`, `mysql`) and rewrites the evidence it
/// changes, so that the stored intervals always equal [`crate::sla::point_evidence`] of every
/// sample received, whatever their arrival order. A new sample only changes the contribution
/// of its predecessor (now cut at the new sample) and its own (cut at its successor): the
/// region from the predecessor to the successor is recomputed from those two points.
fn add_point(
    tx: &rusqlite::Transaction<'_>,
    agent_id: &str,
    signal: &str,
    target: &str,
    up: bool,
    at: i64,
    span: i64,
) -> rusqlite::Result<()> {
    let existing: Option<bool> = tx
        .prepare_cached(
            "SELECT up FROM evidence_point WHERE agent_id = ?1 AND signal = ?2 AND target = ?3 AND at_ms = ?4",
        )?
        .query_row(params![agent_id, signal, target, at], |r| r.get(0))
        .optional()?;
    // Two samples at one instant count as one, down when either says down.
    let up = match existing {
        Some(old) if old == (old && up) => return Ok(()),
        Some(old) => old && up,
        None => up,
    };
    tx.prepare_cached(
        "INSERT INTO evidence_point(agent_id, signal, target, at_ms, up) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(agent_id, signal, target, at_ms) DO UPDATE SET up = excluded.up",
    )?
    .execute(params![agent_id, signal, target, at, up])?;
    let pred: Option<(i64, bool)> = tx
        .prepare_cached(
            "SELECT at_ms, up FROM evidence_point WHERE agent_id = ?1 AND signal = ?2 AND target = ?3 AND at_ms < ?4
             ORDER BY at_ms DESC LIMIT 1",
        )?
        .query_row(params![agent_id, signal, target, at], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let succ: Option<i64> = tx
        .prepare_cached(
            "SELECT at_ms FROM evidence_point WHERE agent_id = ?1 AND signal = ?2 AND target = ?3 AND at_ms > ?4
             ORDER BY at_ms LIMIT 1",
        )?
        .query_row(params![agent_id, signal, target, at], |r| r.get(0))
        .optional()?;
    let lo = pred.map_or(at, |p| p.0);
    let hi = succ.unwrap_or_else(|| at.saturating_add(span));
    let mut pieces = Vec::with_capacity(2);
    if let Some((p, p_up)) = pred {
        pieces.push(Span { from: p, to: p.saturating_add(span).min(at), state: State::of_up(p_up) });
    }
    pieces.push(Span { from: at, to: at.saturating_add(span).min(hi), state: State::of_up(up) });
    replace_region(tx, agent_id, signal, target, lo, hi, &pieces, false)
}

/// Replaces the evidence of one signal inside `[lo, hi)` with `pieces` (sorted, disjoint,
/// inside `[lo, hi)`), keeping what lies outside and merging touching intervals of one state.
/// With `union`, existing evidence inside the region is kept too (the pieces are added to it).
#[allow(clippy::too_many_arguments)]
fn replace_region(
    tx: &rusqlite::Transaction<'_>,
    agent_id: &str,
    signal: &str,
    target: &str,
    lo: i64,
    hi: i64,
    pieces: &[Span],
    union: bool,
) -> rusqlite::Result<()> {
    // Rows touching the region, newest first: intervals are disjoint and sorted, so once one
    // ends before `lo` every earlier one does too.
    let rows: Vec<(i64, Span)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, up, from_ms, to_ms FROM evidence
             WHERE agent_id = ?1 AND signal = ?2 AND target = ?3 AND from_ms <= ?4 ORDER BY from_ms DESC",
        )?;
        let mut rows = stmt.query(params![agent_id, signal, target, hi])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let (id, up, from, to): (i64, bool, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            if to < lo {
                break;
            }
            out.push((id, Span { from, to, state: State::of_up(up) }));
        }
        out
    };
    let mut kept: Vec<Span> = Vec::with_capacity(rows.len() * 2 + pieces.len());
    for (_, row) in &rows {
        if union {
            kept.push(*row);
            continue;
        }
        if row.from < lo {
            kept.push(Span { from: row.from, to: row.to.min(lo), state: row.state });
        }
        if row.to > hi {
            kept.push(Span { from: row.from.max(hi), to: row.to, state: row.state });
        }
    }
    kept.extend(pieces.iter().copied().filter(|p| p.to > p.from));
    kept.sort_unstable_by_key(|s| (s.from, s.to));
    let mut merged: Vec<Span> = Vec::with_capacity(kept.len());
    for span in kept {
        crate::sla::push_merged(&mut merged, span);
    }
    let unchanged = rows.len() == merged.len() && rows.iter().rev().zip(&merged).all(|((_, a), b)| a == b);
    if unchanged {
        return Ok(());
    }
    for (id, _) in &rows {
        tx.prepare_cached("DELETE FROM evidence WHERE id = ?1")?.execute([id])?;
    }
    for span in merged {
        tx.prepare_cached(
            "INSERT INTO evidence(agent_id, signal, target, up, from_ms, to_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![agent_id, signal, target, span.state == State::Up, span.from, span.to])?;
    }
    Ok(())
}
