//! Bounded on-disk queue of encoded batches, written before sending and deleted after the ack.
//!
//! ## Durability
//! SQLite in WAL mode with `synchronous=NORMAL`: a crash of the agent loses nothing committed; a
//! power cut may lose the last moments before it, but never corrupts the file. A file that does
//! not open as a spool is moved aside (`spool.db.damaged-<unix ms>`) and a new spool with a new
//! epoch starts, so the collector cannot mistake new batches for old ones.
//!
//! ## Bounds
//! `max_bytes` of payload and `max_batches`. When a push would exceed either, the oldest batches
//! are dropped, counted, and described in a `Gap` carried by the batch being pushed, in the same
//! transaction, so the collector learns exactly what is missing.
//!
//! ## Compatibility
//! The format version is `PRAGMA user_version`; a spool of an unknown (newer) version is moved
//! aside rather than misread.

use std::path::{Path, PathBuf};

use b24watch_common::config::Problems;
use b24watch_proto::v1::{Batch, Gap};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::logs::{Checkpoint, FileKey};

/// Current on-disk format.
const FORMAT_VERSION: i64 = 1;

/// File name inside the state directory.
pub const FILE_NAME: &str = "spool.db";

/// Spool failures. All of them mean "this batch was not persisted".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite failed (disk full, IO error).
    #[error("spool database {path}: {source}")]
    Sqlite {
        /// Spool file.
        path: PathBuf,
        /// Underlying error.
        source: rusqlite::Error,
    },
    /// The state directory could not be prepared.
    #[error("spool directory {path}: {source}")]
    Dir {
        /// Directory.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Batches the spool holds at most while free disk space is below `min_free_bytes`: enough to
/// keep delivering while the collector is reachable, too few to fill the disk.
pub const LOW_DISK_MAX_BATCHES: u64 = 8;

/// Gap reason: the spool's own bounds were reached.
pub const REASON_FULL: &str = "spool_full";
/// Gap reason: free disk space fell below the reserve.
pub const REASON_DISK_RESERVE: &str = "disk_reserve";
/// Gap reason: the collector refused the batch as a whole and resending it cannot help.
pub const REASON_REJECTED: &str = "rejected_by_collector";
/// Gap reason: the collector found the batch larger than its `max_message_bytes` and it could not
/// be split any further (a single log group, check or point that large).
pub const REASON_TOO_LARGE: &str = "too_large";

/// Every gap reason, so that each drop counter exists from 0 (`agent_spool_dropped_batches_total`).
pub const REASONS: [&str; 4] = [REASON_FULL, REASON_DISK_RESERVE, REASON_REJECTED, REASON_TOO_LARGE];

/// What [`Spool::split`] did with a batch the collector found too large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Replaced by this many smaller batches, queued after the newest one.
    Parts(u64),
    /// It could not be split: dropped, and recorded as a gap the next push carries.
    Dropped(Dropped),
}

/// What a push dropped to make room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Batches removed.
    pub batches: u64,
    /// Points those batches held.
    pub points: u64,
    /// Why: [`REASON_FULL`] or [`REASON_DISK_RESERVE`] (empty when nothing was dropped).
    pub reason: &'static str,
}

/// The spool. Not shared across threads; the agent wraps it in a mutex.
#[derive(Debug)]
pub struct Spool {
    conn: Connection,
    path: PathBuf,
    epoch: u64,
    next_seq: u64,
    max_bytes: u64,
    max_batches: u64,
    pending_batches: u64,
    pending_bytes: u64,
    min_free_bytes: u64,
    dir: PathBuf,
}

/// Bytes available to unprivileged users on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize.max(1)))
}

impl Spool {
    /// Opens (or creates) the spool in `dir`. A damaged or foreign file is moved aside first.
    ///
    /// # Errors
    /// When the directory cannot be created or a fresh spool cannot be created either.
    pub fn open(dir: &Path, cfg: &SpoolConfig) -> Result<(Spool, Option<PathBuf>), Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Dir { path: dir.to_path_buf(), source })?;
        let path = dir.join(FILE_NAME);
        match Spool::open_at(&path, cfg) {
            Ok(spool) => Ok((spool, None)),
            Err(_) if path.exists() => {
                let stamp =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
                let aside = dir.join(format!("{FILE_NAME}.damaged-{stamp}"));
                for suffix in ["", "-wal", "-shm"] {
                    let from = PathBuf::from(format!("{}{suffix}", path.display()));
                    let to = PathBuf::from(format!("{}{suffix}", aside.display()));
                    if from.exists() {
                        std::fs::rename(&from, &to).map_err(|source| Error::Dir { path: from.clone(), source })?;
                    }
                }
                Ok((Spool::open_at(&path, cfg)?, Some(aside)))
            }
            Err(err) => Err(err),
        }
    }

    fn open_at(path: &Path, cfg: &SpoolConfig) -> Result<Spool, Error> {
        let sql = |source| Error::Sqlite { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(sql)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-256; PRAGMA busy_timeout=2000;",
        )
        .map_err(sql)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql)?;
        match version {
            0 => {
                let epoch = random_epoch();
                conn.execute_batch(
                    "BEGIN IMMEDIATE;
                     CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                     CREATE TABLE batch(seq INTEGER PRIMARY KEY, first_ms INTEGER NOT NULL,
                         last_ms INTEGER NOT NULL, points INTEGER NOT NULL, payload BLOB NOT NULL);
                     CREATE TABLE log_offset(dev INTEGER NOT NULL, ino INTEGER NOT NULL, log TEXT NOT NULL,
                         path TEXT NOT NULL, head_len INTEGER NOT NULL, head_hash INTEGER NOT NULL,
                         offset INTEGER NOT NULL, PRIMARY KEY(dev, ino));
                     CREATE TABLE pending_gap(reason TEXT PRIMARY KEY, from_ms INTEGER NOT NULL,
                         to_ms INTEGER NOT NULL, batches INTEGER NOT NULL, points INTEGER NOT NULL);
                     PRAGMA user_version = 1;",
                )
                .map_err(sql)?;
                // SQLite integers are signed; the epoch round-trips through i64 bit-for-bit.
                conn.execute("INSERT INTO meta VALUES ('epoch', ?1), ('next_seq', 1)", [epoch as i64]).map_err(sql)?;
                conn.execute_batch("COMMIT").map_err(sql)?;
            }
            FORMAT_VERSION => {
                let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(sql)?;
                if check != "ok" {
                    return Err(sql(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                        Some(format!("quick_check: {check}")),
                    )));
                }
            }
            other => {
                return Err(sql(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB),
                    Some(format!("unknown spool format version {other}")),
                )));
            }
        }
        let meta = |key: &str| conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get::<_, i64>(0));
        let epoch = meta("epoch").map_err(sql)? as u64;
        let next_seq = meta("next_seq").map_err(sql)? as u64;
        let (pending_batches, pending_bytes): (i64, i64) = conn
            .query_row("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM batch", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(sql)?;
        Ok(Spool {
            conn,
            path: path.to_path_buf(),
            epoch,
            next_seq,
            max_bytes: cfg.max_bytes,
            max_batches: cfg.max_batches,
            pending_batches: pending_batches as u64,
            pending_bytes: pending_bytes as u64,
            min_free_bytes: cfg.min_free_bytes,
            dir: path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        })
    }

    fn sql(&self, source: rusqlite::Error) -> Error {
        Error::Sqlite { path: self.path.clone(), source }
    }

    /// The spool's epoch (random, fixed for the life of the file).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Batches waiting for an ack.
    pub fn pending_batches(&self) -> u64 {
        self.pending_batches
    }

    /// Payload bytes waiting for an ack.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// Assigns the next `(epoch, seq)` to `batch` and stores it, dropping the oldest batches first
    /// when the bounds require it. Drops, and gaps recorded since the last push, travel as gap
    /// records inside `batch`. While free disk space is below `min_free_bytes` the spool holds at
    /// most [`LOW_DISK_MAX_BATCHES`].
    ///
    /// # Errors
    /// When the batch could not be stored; the spool is unchanged then.
    pub fn push(&mut self, batch: Batch) -> Result<(u64, Dropped), Error> {
        self.push_with_offsets(batch, &[], &[])
    }

    /// Like [`Spool::push`], also committing log offsets in the same transaction: the offsets
    /// move exactly when the data read before them is stored (RELIABILITY.md rule 3).
    ///
    /// # Errors
    /// When the batch could not be stored; neither batch nor offsets changed then.
    pub fn push_with_offsets(
        &mut self,
        mut batch: Batch,
        offsets: &[Checkpoint],
        forget: &[FileKey],
    ) -> Result<(u64, Dropped), Error> {
        let seq = self.next_seq;
        batch.spool_epoch = self.epoch;
        batch.seq = seq;
        let points: u64 = batch.series.iter().map(|s| s.values.len() as u64).sum();
        let (first_ms, last_ms) = point_range(&batch);
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        let mut dropped = Dropped::default();
        // Gap records of this push plus those carried by dropped batches, one per reason: drops
        // are always the oldest batches, so the ranges of one reason form one contiguous span.
        let mut gaps: Vec<Gap> = Vec::new();
        let mut pending_batches = self.pending_batches;
        let mut pending_bytes = self.pending_bytes;
        // Room for the new batch: its size is known only roughly before the gap is added, so
        // reserve a little for the gap record.
        let incoming = batch.encoded_len() as u64 + 64;
        let low_disk = self.min_free_bytes > 0 && free_bytes(&self.dir).is_some_and(|free| free < self.min_free_bytes);
        loop {
            let over_bounds = pending_batches + 1 > self.max_batches || pending_bytes + incoming > self.max_bytes;
            let over_reserve = low_disk && pending_batches + 1 > LOW_DISK_MAX_BATCHES;
            if pending_batches == 0 || !(over_bounds || over_reserve) {
                break;
            }
            let reason = if over_bounds { REASON_FULL } else { REASON_DISK_RESERVE };
            let oldest: Option<(i64, i64, i64, i64, Vec<u8>)> = tx
                .query_row("SELECT seq, first_ms, last_ms, points, payload FROM batch ORDER BY seq LIMIT 1", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()
                .map_err(|e| self.sql(e))?;
            let Some((old_seq, old_first, old_last, old_points, old_payload)) = oldest else { break };
            tx.execute("DELETE FROM batch WHERE seq = ?1", [old_seq]).map_err(|e| self.sql(e))?;
            dropped.batches += 1;
            dropped.points += old_points as u64;
            if dropped.reason != REASON_FULL {
                dropped.reason = reason;
            }
            // A batch that no longer decodes still counts as dropped; only its own gaps are lost.
            let carried = Batch::decode(old_payload.as_slice()).map(|b| b.gaps).unwrap_or_default();
            let own = Gap {
                reason: reason.into(),
                from_unix_ms: old_first,
                to_unix_ms: old_last,
                dropped_batches: 1,
                dropped_samples: old_points as u64,
            };
            for gap in carried.into_iter().chain([own]) {
                merge_gap(&mut gaps, gap);
            }
            pending_batches -= 1;
            pending_bytes -= old_payload.len() as u64;
        }
        {
            let mut stmt = tx
                .prepare_cached("SELECT reason, from_ms, to_ms, batches, points FROM pending_gap")
                .map_err(|e| self.sql(e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Gap {
                        reason: r.get(0)?,
                        from_unix_ms: r.get(1)?,
                        to_unix_ms: r.get(2)?,
                        dropped_batches: r.get::<_, i64>(3)? as u64,
                        dropped_samples: r.get::<_, i64>(4)? as u64,
                    })
                })
                .map_err(|e| self.sql(e))?;
            for gap in rows {
                merge_gap(&mut gaps, gap.map_err(|e| self.sql(e))?);
            }
        }
        tx.execute("DELETE FROM pending_gap", []).map_err(|e| self.sql(e))?;
        for gap in gaps {
            merge_gap(&mut batch.gaps, gap);
        }
        let payload = batch.encode_to_vec();
        tx.execute(
            "INSERT INTO batch(seq, first_ms, last_ms, points, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![seq as i64, first_ms, last_ms, points as i64, payload],
        )
        .map_err(|e| self.sql(e))?;
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'next_seq'", [(seq + 1) as i64]).map_err(|e| self.sql(e))?;
        for c in offsets {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO log_offset(dev, ino, log, path, head_len, head_hash, offset)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(|e| self.sql(e))?
            .execute(params![
                c.dev as i64,
                c.ino as i64,
                c.log,
                c.path,
                c.head_len as i64,
                c.head_hash as i64,
                c.offset as i64
            ])
            .map_err(|e| self.sql(e))?;
        }
        for (dev, ino) in forget {
            tx.execute("DELETE FROM log_offset WHERE dev = ?1 AND ino = ?2", params![*dev as i64, *ino as i64])
                .map_err(|e| self.sql(e))?;
        }
        tx.commit().map_err(|e| self.sql(e))?;
        self.next_seq = seq + 1;
        self.pending_batches = pending_batches + 1;
        self.pending_bytes = pending_bytes + payload.len() as u64;
        Ok((seq, dropped))
    }

    /// Up to `limit` pending batches with `seq > after`, oldest first, as encoded payloads.
    ///
    /// # Errors
    /// When SQLite fails to read.
    pub fn pending_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, payload FROM batch WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![after as i64, limit as i64], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Every stored log offset.
    ///
    /// # Errors
    /// When SQLite fails to read.
    pub fn log_offsets(&self) -> Result<Vec<Checkpoint>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT dev, ino, log, path, head_len, head_hash, offset FROM log_offset")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Checkpoint {
                    dev: r.get::<_, i64>(0)? as u64,
                    ino: r.get::<_, i64>(1)? as u64,
                    log: r.get(2)?,
                    path: r.get(3)?,
                    head_len: r.get::<_, i64>(4)? as u64,
                    head_hash: r.get::<_, i64>(5)? as u64,
                    offset: r.get::<_, i64>(6)? as u64,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Deletes a batch the collector refused as a whole (malformed, too large, key conflict),
    /// recording it as a gap that the next pushed batch carries. Its own gap records are kept.
    ///
    /// # Errors
    /// When SQLite fails.
    pub fn reject(&mut self, seq: u64) -> Result<Dropped, Error> {
        self.drop_as_gap(seq, REASON_REJECTED)
    }

    /// Replaces a batch the collector found too large by two halves (see [`split_batch`]) queued
    /// after the newest batch, in one transaction; one that cannot be split is dropped and
    /// recorded as a gap with reason [`REASON_TOO_LARGE`]. A halve still too large is split again
    /// when the collector refuses it in turn.
    ///
    /// # Errors
    /// When SQLite fails; the spool is unchanged then.
    pub fn split(&mut self, seq: u64) -> Result<Split, Error> {
        let payload: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT payload FROM batch WHERE seq = ?1", [seq as i64], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))?;
        let Some(payload) = payload else { return Ok(Split::Parts(0)) };
        let Some(parts) = Batch::decode(payload.as_slice()).ok().and_then(|batch| split_batch(&batch)) else {
            return Ok(Split::Dropped(self.drop_as_gap(seq, REASON_TOO_LARGE)?));
        };
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        tx.execute("DELETE FROM batch WHERE seq = ?1", [seq as i64]).map_err(|e| self.sql(e))?;
        let mut next = self.next_seq;
        let mut bytes = 0u64;
        for mut part in [parts.0, parts.1] {
            part.spool_epoch = self.epoch;
            part.seq = next;
            let points: u64 = part.series.iter().map(|s| s.values.len() as u64).sum();
            let (first_ms, last_ms) = point_range(&part);
            let encoded = part.encode_to_vec();
            bytes += encoded.len() as u64;
            tx.execute(
                "INSERT INTO batch(seq, first_ms, last_ms, points, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![next as i64, first_ms, last_ms, points as i64, encoded],
            )
            .map_err(|e| self.sql(e))?;
            next += 1;
        }
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'next_seq'", [next as i64]).map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        self.next_seq = next;
        self.pending_batches += 1;
        self.pending_bytes = self.pending_bytes - payload.len() as u64 + bytes;
        Ok(Split::Parts(2))
    }

    /// Deletes batch `seq` and records it as a gap with `reason` for the next push to carry.
    fn drop_as_gap(&mut self, seq: u64, reason: &'static str) -> Result<Dropped, Error> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        let row: Option<(i64, i64, i64, Vec<u8>)> = tx
            .query_row("SELECT first_ms, last_ms, points, payload FROM batch WHERE seq = ?1", [seq as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .map_err(|e| self.sql(e))?;
        let Some((first_ms, last_ms, points, payload)) = row else { return Ok(Dropped::default()) };
        tx.execute("DELETE FROM batch WHERE seq = ?1", [seq as i64]).map_err(|e| self.sql(e))?;
        let carried = Batch::decode(payload.as_slice()).map(|b| b.gaps).unwrap_or_default();
        let own = Gap {
            reason: reason.into(),
            from_unix_ms: first_ms,
            to_unix_ms: last_ms,
            dropped_batches: 1,
            dropped_samples: points as u64,
        };
        for gap in carried.into_iter().chain([own]) {
            tx.execute(
                "INSERT INTO pending_gap(reason, from_ms, to_ms, batches, points) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(reason) DO UPDATE SET from_ms = MIN(from_ms, excluded.from_ms),
                     to_ms = MAX(to_ms, excluded.to_ms), batches = batches + excluded.batches,
                     points = points + excluded.points",
                params![
                    gap.reason,
                    gap.from_unix_ms,
                    gap.to_unix_ms,
                    gap.dropped_batches as i64,
                    gap.dropped_samples as i64
                ],
            )
            .map_err(|e| self.sql(e))?;
        }
        tx.commit().map_err(|e| self.sql(e))?;
        self.pending_batches -= 1;
        self.pending_bytes -= payload.len() as u64;
        Ok(Dropped { batches: 1, points: points as u64, reason })
    }

    /// Deletes an acknowledged batch. Acking a seq that is gone (dropped meanwhile) is a no-op.
    ///
    /// # Errors
    /// When SQLite fails to delete.
    pub fn ack(&mut self, seq: u64) -> Result<(), Error> {
        let len: Option<i64> = self
            .conn
            .query_row("DELETE FROM batch WHERE seq = ?1 RETURNING LENGTH(payload)", [seq as i64], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))?;
        if let Some(len) = len {
            self.pending_batches -= 1;
            self.pending_bytes -= len as u64;
        }
        Ok(())
    }
}

/// Splits a batch into two that together carry everything it carried, each about half its
/// encoded size: its series, telemetry, log groups and checks are divided between the two (gap
/// records go with the first); a batch holding one series alone has that series' points divided.
/// `None` when it holds a single item that cannot be divided (one log group, one check, one point).
pub fn split_batch(batch: &Batch) -> Option<(Batch, Batch)> {
    let header = Batch {
        agent_id: batch.agent_id.clone(),
        created_unix_ms: batch.created_unix_ms,
        agent_version: batch.agent_version.clone(),
        ..Batch::default()
    };
    let mut first = Batch { gaps: batch.gaps.clone(), ..header.clone() };
    let mut second = header;
    let items = batch.series.len() + batch.telemetry.len() + batch.log_groups.len() + batch.checks.len();
    if items >= 2 {
        let sizes: Vec<usize> = batch
            .series
            .iter()
            .chain(&batch.telemetry)
            .map(Message::encoded_len)
            .chain(batch.log_groups.iter().map(Message::encoded_len))
            .chain(batch.checks.iter().map(Message::encoded_len))
            .collect();
        let total: usize = sizes.iter().sum();
        let mut sum = 0;
        let cut = sizes
            .iter()
            .position(|size| {
                sum += size;
                sum * 2 >= total
            })
            .map_or(items - 1, |i| i + 1)
            .clamp(1, items - 1);
        let mut index = 0;
        let mut goes_first = || {
            index += 1;
            index <= cut
        };
        for s in &batch.series {
            (if goes_first() { &mut first.series } else { &mut second.series }).push(s.clone());
        }
        for s in &batch.telemetry {
            (if goes_first() { &mut first.telemetry } else { &mut second.telemetry }).push(s.clone());
        }
        for g in &batch.log_groups {
            (if goes_first() { &mut first.log_groups } else { &mut second.log_groups }).push(g.clone());
        }
        for c in &batch.checks {
            (if goes_first() { &mut first.checks } else { &mut second.checks }).push(c.clone());
        }
        return Some((first, second));
    }
    let halve = |s: &b24watch_proto::v1::Series| {
        let n = s.values.len().min(s.timestamps_unix_ms.len());
        (n >= 2).then(|| {
            let half = n / 2;
            let part = |range: std::ops::Range<usize>| b24watch_proto::v1::Series {
                timestamps_unix_ms: s.timestamps_unix_ms[range.clone()].to_vec(),
                values: s.values[range].to_vec(),
                ..s.clone()
            };
            (part(0..half), part(half..n))
        })
    };
    if let [only] = batch.series.as_slice() {
        let (a, b) = halve(only)?;
        (first.series, second.series) = (vec![a], vec![b]);
        return Some((first, second));
    }
    if let [only] = batch.telemetry.as_slice() {
        let (a, b) = halve(only)?;
        (first.telemetry, second.telemetry) = (vec![a], vec![b]);
        return Some((first, second));
    }
    None
}

/// Adds `gap` to `gaps`, merging it into the record of the same reason.
fn merge_gap(gaps: &mut Vec<Gap>, gap: Gap) {
    match gaps.iter_mut().find(|g| g.reason == gap.reason) {
        Some(existing) => {
            existing.from_unix_ms = existing.from_unix_ms.min(gap.from_unix_ms);
            existing.to_unix_ms = existing.to_unix_ms.max(gap.to_unix_ms);
            existing.dropped_batches += gap.dropped_batches;
            existing.dropped_samples += gap.dropped_samples;
        }
        None => gaps.push(gap),
    }
}

/// Earliest and latest point timestamps of a batch (its creation time when it has no points).
fn point_range(batch: &Batch) -> (i64, i64) {
    let all = batch.series.iter().chain(&batch.telemetry).flat_map(|s| s.timestamps_unix_ms.iter().copied());
    let (min, max) = all.fold((i64::MAX, i64::MIN), |(lo, hi), ts| (lo.min(ts), hi.max(ts)));
    if min > max { (batch.created_unix_ms, batch.created_unix_ms) } else { (min, max) }
}

/// A random non-zero epoch.
fn random_epoch() -> u64 {
    // Falling back to the clock only matters on systems without getrandom, where uniqueness
    // across spool recreations is still what we need.
    let random = getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    (random & (i64::MAX as u64)).max(1)
}

/// `[spool]` section as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawSpool {
    /// Payload byte cap.
    pub max_bytes: u64,
    /// Batch count cap.
    pub max_batches: u64,
    /// Free-space reserve.
    pub min_free_bytes: u64,
}

impl Default for RawSpool {
    fn default() -> Self {
        RawSpool { max_bytes: 64 << 20, max_batches: 100_000, min_free_bytes: 256 << 20 }
    }
}

/// Bounds of the on-disk spool: validated `[spool]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Payload byte cap.
    pub max_bytes: u64,
    /// Batch count cap.
    pub max_batches: u64,
    /// Free space to leave on the spool's filesystem.
    pub min_free_bytes: u64,
}

impl RawSpool {
    /// The validated form; problems go to `problems`.
    pub fn validate(&self, problems: &mut Problems) -> SpoolConfig {
        if self.max_bytes < 1 << 20 {
            problems.bad("spool.max_bytes", format!("{}: expected at least 1048576 (1 MiB)", self.max_bytes));
        }
        if self.max_batches < 1 {
            problems.bad("spool.max_batches", "0: expected at least 1");
        }
        SpoolConfig { max_bytes: self.max_bytes, max_batches: self.max_batches, min_free_bytes: self.min_free_bytes }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use b24watch_proto::v1::Series;
    use proptest::prelude::*;

    use super::*;

    fn cfg(max_bytes: u64, max_batches: u64) -> SpoolConfig {
        SpoolConfig { max_bytes, max_batches, min_free_bytes: 0 }
    }

    fn batch(ts: i64, n_points: usize) -> Batch {
        Batch {
            created_unix_ms: ts,
            series: vec![Series {
                name: "load1".into(),
                timestamps_unix_ms: vec![ts; n_points],
                values: vec![1.0; n_points],
                ..Series::default()
            }],
            ..Batch::default()
        }
    }

    #[test]
    fn batches_survive_reopen_in_order_with_same_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, aside) = Spool::open(dir.path(), &cfg(1 << 20, 100)).expect("open");
        assert_eq!(aside, None);
        let epoch = spool.epoch();
        for ts in 1..=3 {
            spool.push(batch(ts, 2)).expect("push");
        }
        spool.ack(1).expect("ack");
        drop(spool);
        let (spool, _) = Spool::open(dir.path(), &cfg(1 << 20, 100)).expect("reopen");
        assert_eq!(spool.epoch(), epoch);
        let pending: Vec<u64> = spool.pending_after(0, 10).expect("read").into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(pending, [2, 3]);
        let decoded = Batch::decode(spool.pending_after(2, 1).expect("read")[0].1.as_slice()).expect("decode");
        assert_eq!((decoded.spool_epoch, decoded.seq, decoded.created_unix_ms), (epoch, 3, 3));
    }

    #[test]
    fn seq_keeps_increasing_after_everything_is_acked_and_reopened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), &cfg(1 << 20, 100)).expect("open");
        let (seq, _) = spool.push(batch(1, 1)).expect("push");
        spool.ack(seq).expect("ack");
        drop(spool);
        let (mut spool, _) = Spool::open(dir.path(), &cfg(1 << 20, 100)).expect("reopen");
        assert_eq!(spool.push(batch(2, 1)).expect("push").0, seq + 1);
    }

    #[test]
    fn full_spool_drops_oldest_and_records_a_gap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), &cfg(1 << 20, 3)).expect("open");
        for ts in [10, 20, 30] {
            spool.push(batch(ts, 5)).expect("push");
        }
        let (seq, dropped) = spool.push(batch(40, 5)).expect("push");
        assert_eq!(dropped, Dropped { batches: 1, points: 5, reason: REASON_FULL });
        assert_eq!(spool.pending_batches(), 3);
        let payload = spool.pending_after(seq - 1, 1).expect("read").remove(0).1;
        let gap = Batch::decode(payload.as_slice()).expect("decode").gaps.remove(0);
        assert_eq!(
            (gap.reason.as_str(), gap.from_unix_ms, gap.to_unix_ms, gap.dropped_samples),
            ("spool_full", 10, 10, 5)
        );
    }

    #[test]
    fn damaged_file_is_moved_aside_and_a_new_epoch_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), b"this is not a database, just text that is long enough to matter")
            .expect("write");
        let (mut spool, aside) = Spool::open(dir.path(), &cfg(1 << 20, 10)).expect("open recovers");
        let aside = aside.expect("moved aside");
        assert!(aside.exists(), "{} kept for inspection", aside.display());
        assert_eq!(spool.push(batch(1, 1)).expect("push").0, 1);
    }

    #[test]
    fn low_disk_caps_the_spool_and_says_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let huge_reserve = SpoolConfig { max_bytes: 1 << 20, max_batches: 100, min_free_bytes: u64::MAX };
        let (mut spool, _) = Spool::open(dir.path(), &huge_reserve).expect("open");
        for ts in 0..LOW_DISK_MAX_BATCHES as i64 {
            assert_eq!(spool.push(batch(ts, 1)).expect("push").1.batches, 0);
        }
        let (seq, dropped) = spool.push(batch(99, 1)).expect("push");
        assert_eq!(dropped, Dropped { batches: 1, points: 1, reason: REASON_DISK_RESERVE });
        assert_eq!(spool.pending_batches(), LOW_DISK_MAX_BATCHES);
        let payload = spool.pending_after(seq - 1, 1).expect("read").remove(0).1;
        assert_eq!(Batch::decode(payload.as_slice()).expect("decode").gaps[0].reason, REASON_DISK_RESERVE);
    }

    #[test]
    fn oversized_batch_is_split_until_single_items_and_a_single_item_becomes_a_gap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), &cfg(1 << 20, 10)).expect("open");
        let mut big = batch(5, 4);
        big.log_groups = vec![
            b24watch_proto::v1::LogGroup { example: "a".repeat(1000), ..Default::default() },
            b24watch_proto::v1::LogGroup { example: "b".repeat(1000), ..Default::default() },
        ];
        big.gaps = vec![Gap { reason: REASON_FULL.into(), dropped_batches: 2, ..Gap::default() }];
        let (seq, _) = spool.push(big.clone()).expect("push");
        assert_eq!(spool.split(seq).expect("split"), Split::Parts(2));
        assert_eq!(spool.pending_batches(), 2);
        let parts: Vec<Batch> = spool
            .pending_after(0, 10)
            .expect("read")
            .iter()
            .map(|(_, payload)| Batch::decode(payload.as_slice()).expect("decode"))
            .collect();
        assert_eq!(parts.iter().map(|p| p.seq).collect::<Vec<_>>(), [seq + 1, seq + 2]);
        let examples: Vec<&str> = parts.iter().flat_map(|p| p.log_groups.iter().map(|g| &g.example[..1])).collect();
        assert_eq!(examples, ["a", "b"], "each log group in one part");
        assert_eq!(parts.iter().map(|p| p.series.len()).sum::<usize>(), 1);
        assert_eq!(parts.iter().map(|p| p.gaps.len()).sum::<usize>(), 1, "gap records travel once");
        // A part holding one log group cannot be split: it becomes a too_large gap.
        let single = parts.iter().find(|p| p.series.is_empty()).expect("a part with only a log group").seq;
        let Split::Dropped(dropped) = spool.split(single).expect("split") else { panic!("a single log group split") };
        assert_eq!((dropped.batches, dropped.reason), (1, REASON_TOO_LARGE));
        let (next, _) = spool.push(batch(9, 1)).expect("push");
        let payload = spool.pending_after(next - 1, 1).expect("read").remove(0).1;
        let gaps = Batch::decode(payload.as_slice()).expect("decode").gaps;
        assert_eq!(gaps.iter().map(|g| g.reason.as_str()).collect::<Vec<_>>(), [REASON_TOO_LARGE]);
        // One series alone is split by its points.
        let (halves, _) = split_batch(&batch(3, 5)).expect("five points split");
        assert_eq!(halves.series[0].values.len(), 2);
        assert_eq!(split_batch(&batch(3, 1)), None);
    }

    #[test]
    fn rejected_batch_becomes_a_gap_carried_by_the_next_push() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), &cfg(1 << 20, 10)).expect("open");
        let (poison, _) = spool.push(batch(5, 3)).expect("push");
        assert_eq!(spool.reject(poison).expect("reject"), Dropped { batches: 1, points: 3, reason: REASON_REJECTED });
        assert_eq!(spool.pending_batches(), 0);
        drop(spool);
        let (mut spool, _) = Spool::open(dir.path(), &cfg(1 << 20, 10)).expect("reopen keeps the pending gap");
        let (seq, _) = spool.push(batch(6, 1)).expect("push");
        let payload = spool.pending_after(seq - 1, 1).expect("read").remove(0).1;
        let gaps = Batch::decode(payload.as_slice()).expect("decode").gaps;
        assert_eq!(gaps.len(), 1);
        assert_eq!((gaps[0].reason.as_str(), gaps[0].dropped_samples, gaps[0].from_unix_ms), (REASON_REJECTED, 3, 5));
        let (next, _) = spool.push(batch(7, 1)).expect("push");
        let payload = spool.pending_after(next - 1, 1).expect("read").remove(0).1;
        assert!(Batch::decode(payload.as_slice()).expect("decode").gaps.is_empty(), "gap sent once");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        AckOldest,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![(1usize..40).prop_map(Op::Push), Just(Op::AckOldest), Just(Op::Reopen)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// The spool behaves like a bounded VecDeque whose overflow drops the front, across reopens.
        #[test]
        fn property_test_spool_matches_bounded_queue_model(ops in proptest::collection::vec(op(), 1..60)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let bounds = cfg(1 << 20, 5);
            let (mut spool, _) = Spool::open(dir.path(), &bounds).expect("open");
            let mut model: VecDeque<(u64, usize)> = VecDeque::new();
            let mut next_seq = 1;
            let mut dropped_points = 0u64;
            let mut acked_gap_points = 0u64;
            for op in ops {
                match op {
                    Op::Push(n) => {
                        let (seq, dropped) = spool.push(batch(next_seq as i64, n)).expect("push");
                        prop_assert_eq!(seq, next_seq);
                        next_seq += 1;
                        let mut expect = Dropped::default();
                        while model.len() >= 5 {
                            let (_, points) = model.pop_front().expect("non-empty");
                            expect.batches += 1;
                            expect.points += points as u64;
                            expect.reason = REASON_FULL;
                        }
                        prop_assert_eq!(dropped, expect);
                        dropped_points += expect.points;
                        model.push_back((seq, n));
                    }
                    Op::AckOldest => {
                        if let Some((seq, _)) = model.pop_front() {
                            let payload = spool.pending_after(seq - 1, 1).expect("read").remove(0).1;
                            let batch = Batch::decode(payload.as_slice()).expect("decode");
                            acked_gap_points += batch.gaps.iter().map(|g| g.dropped_samples).sum::<u64>();
                            spool.ack(seq).expect("ack");
                        }
                    }
                    Op::Reopen => {
                        drop(spool);
                        spool = Spool::open(dir.path(), &bounds).expect("reopen").0;
                    }
                }
                let pending = spool.pending_after(0, 100).expect("read");
                let seqs: Vec<u64> = pending.iter().map(|(s, _)| *s).collect();
                let expected: Vec<u64> = model.iter().map(|(s, _)| *s).collect();
                prop_assert_eq!(seqs, expected);
                prop_assert_eq!(spool.pending_batches(), model.len() as u64);
                // Nothing is dropped silently: the gap records still in the spool account for
                // every dropped point, since drops only ever hit batches nobody acked.
                let in_gaps: u64 = pending
                    .iter()
                    .flat_map(|(_, p)| Batch::decode(p.as_slice()).expect("decode").gaps)
                    .map(|g| g.dropped_samples)
                    .sum();
                prop_assert_eq!(in_gaps, dropped_points - acked_gap_points);
            }
        }
    }
}
