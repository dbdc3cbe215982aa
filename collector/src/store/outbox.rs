//! The remote-write outbox: the pending log (`sample_pending`) read in commit order by each
//! remote-write target from a persisted cursor, and kept after sealing while a target still needs it.
//!
//! ## Layout
//! * `outbox_target(name, sent_id, max_backlog_bytes, dropped_samples)`: one row per configured
//!   target (migration 10). `sent_id` is the last pending row the target has received whole; the
//!   target resumes after it (at-least-once: a row is sent again after a crash, never skipped).
//! * `outbox_state(key, value)`: `sealed`, the last pending row whose points are in blocks. The
//!   head is replayed from the rows after it only, so rows kept for the targets are not re-added.
//!
//! ## Hooks
//! * [`sealed_upto`]: read by [`super::series::load_head`] at startup.
//! * [`after_seal`]: the last step of a seal calls it in its transaction instead of deleting the
//!   sealed rows: it records the sealed position, moves the cursor of a target whose backlog is
//!   over its bound past the oldest rows (their samples counted as dropped, never silently), and
//!   deletes the rows every target has. Row ids never go back (a row with no points stands in
//!   for the newest one when every row could go), so a cursor always means the same rows.
//! * [`Outbox`]: the targets' connection (registration, reads in commit order, cursor updates);
//!   like [`super::admin`], it writes on a connection of its own, never ingested data.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::Error;
use super::series::{self, Staged};

/// Reason label of samples dropped because a target's backlog passed its bound.
pub const BACKLOG_FULL: &str = "backlog_full";

/// The last pending row whose points are sealed into blocks (0: none).
///
/// # Errors
/// SQLite errors.
pub(crate) fn sealed_upto(conn: &Connection) -> Result<i64, Error> {
    Ok(conn
        .prepare_cached("SELECT value FROM outbox_state WHERE key = 'sealed'")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Called by the last step of a seal, in its transaction, once the pending rows up to `cut` are
/// in blocks: records the sealed position, applies every target's backlog bound and deletes the
/// sealed rows no target still needs.
///
/// # Errors
/// SQLite errors, corrupt rows.
pub(crate) fn after_seal(tx: &Transaction<'_>, cut: i64) -> Result<(), Error> {
    let sealed = sealed_upto(tx)?.max(cut);
    tx.prepare_cached(
        "INSERT INTO outbox_state(key, value) VALUES ('sealed', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute([sealed])?;
    let targets: Vec<(String, i64, i64)> = {
        let mut stmt = tx.prepare_cached("SELECT name, sent_id, max_backlog_bytes FROM outbox_target")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?
    };
    let mut keep_after = sealed;
    for (name, sent, max_bytes) in targets {
        let sent = bound_backlog(tx, &name, sent, sealed, max_bytes)?;
        keep_after = keep_after.min(sent);
    }
    let newest: Option<i64> = tx.prepare_cached("SELECT MAX(id) FROM sample_pending")?.query_row([], |r| r.get(0))?;
    tx.prepare_cached("DELETE FROM sample_pending WHERE id <= ?1")?.execute([keep_after])?;
    // SQLite gives a new row the largest id plus one: an empty table would reuse ids that
    // cursors and the sealed position already passed. An empty row keeps the newest id.
    if let Some(newest) = newest.filter(|n| *n <= keep_after) {
        let left: i64 = tx.prepare_cached("SELECT COUNT(*) FROM sample_pending")?.query_row([], |r| r.get(0))?;
        if left == 0 {
            tx.prepare_cached("INSERT INTO sample_pending(id, data) VALUES (?1, x'')")?.execute([newest])?;
        }
    }
    Ok(())
}

/// Moves `name`'s cursor past the oldest sealed rows until what it still has to send among
/// them fits in `max_bytes` (0: no bound); counts the points passed over. Returns the cursor.
fn bound_backlog(tx: &Transaction<'_>, name: &str, sent: i64, sealed: i64, max_bytes: i64) -> Result<i64, Error> {
    if max_bytes <= 0 || sent >= sealed {
        return Ok(sent);
    }
    let total: i64 = tx
        .prepare_cached("SELECT COALESCE(SUM(length(data)), 0) FROM sample_pending WHERE id > ?1 AND id <= ?2")?
        .query_row([sent, sealed], |r| r.get(0))?;
    if total <= max_bytes {
        return Ok(sent);
    }
    let mut over = total - max_bytes;
    let mut cursor = sent;
    let mut dropped = 0u64;
    let mut staged = Staged::new();
    {
        let mut stmt =
            tx.prepare_cached("SELECT id, data FROM sample_pending WHERE id > ?1 AND id <= ?2 ORDER BY id")?;
        let mut rows = stmt.query([sent, sealed])?;
        while over > 0 {
            let Some(row) = rows.next()? else { break };
            cursor = row.get(0)?;
            let data = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            over -= i64::try_from(data.len()).unwrap_or(i64::MAX);
            staged.clear();
            series::decode_pending(data, &mut staged)?;
            dropped += staged.iter().map(|(_, points)| points.len() as u64).sum::<u64>();
        }
    }
    tx.prepare_cached(
        "UPDATE outbox_target SET sent_id = MAX(sent_id, ?2), dropped_samples = dropped_samples + ?3 WHERE name = ?1",
    )?
    .execute(params![name, cursor, i64::try_from(dropped).unwrap_or(i64::MAX)])?;
    tracing::warn!(
        target_name = name,
        dropped_samples = dropped,
        max_backlog_bytes = max_bytes,
        "remote write: the target's backlog passed its bound; its oldest samples were dropped"
    );
    Ok(cursor)
}

/// One pending row as a target reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Commit-order position.
    pub id: i64,
    /// Points per series id.
    pub series: Staged,
}

/// What a series id stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesInfo {
    /// The agent (exposed as `host`).
    pub agent_id: String,
    /// Name without prefix.
    pub name: String,
    /// Canonical label text.
    pub labels: String,
    /// Gauge, counter or unspecified.
    pub kind: super::Kind,
}

/// A target's connection to the outbox.
#[derive(Debug)]
pub struct Outbox {
    conn: Connection,
}

impl Outbox {
    /// Opens a connection of its own. Cursor updates do not wait for an fsync
    /// (`synchronous=NORMAL`): one lost on power failure only means rows are sent again, and the
    /// seal that deletes rows commits with a full sync after it.
    ///
    /// # Errors
    /// When the database cannot be opened.
    pub fn open(data_dir: &Path) -> Result<Self, Error> {
        let conn = super::open_connection(data_dir)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
        Ok(Outbox { conn })
    }

    /// Makes `targets` (name, backlog bound in bytes, 0 for none) the configured ones: a new
    /// target starts with the oldest row still kept; a target no longer configured stops holding
    /// rows (its cursor is forgotten).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn register(&mut self, targets: &[(String, u64)]) -> Result<(), Error> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let oldest: i64 = tx.query_row("SELECT COALESCE(MIN(id), 1) - 1 FROM sample_pending", [], |r| r.get(0))?;
        let names: Vec<String> = {
            let mut stmt = tx.prepare("SELECT name FROM outbox_target")?;
            stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        for name in names {
            if !targets.iter().any(|(n, _)| *n == name) {
                tx.execute("DELETE FROM outbox_target WHERE name = ?1", [&name])?;
            }
        }
        for (name, max_bytes) in targets {
            tx.execute(
                "INSERT INTO outbox_target(name, sent_id, max_backlog_bytes, dropped_samples) VALUES (?1, ?2, ?3, 0)
                 ON CONFLICT(name) DO UPDATE SET max_backlog_bytes = excluded.max_backlog_bytes",
                params![name, oldest, i64::try_from(*max_bytes).unwrap_or(i64::MAX)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// `name`'s cursor and the samples dropped for it so far (backlog bound).
    ///
    /// # Errors
    /// SQLite errors, an unregistered target.
    pub fn cursor(&self, name: &str) -> Result<(i64, u64), Error> {
        self.conn
            .prepare_cached("SELECT sent_id, dropped_samples FROM outbox_target WHERE name = ?1")?
            .query_row([name], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))
            .optional()?
            .ok_or_else(|| Error::Failed(format!("remote-write target {name:?} is not registered")))
    }

    /// Records that `name` has every row up to `id` (never moves back).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn advance(&self, name: &str, id: i64) -> Result<(), Error> {
        self.conn
            .prepare_cached("UPDATE outbox_target SET sent_id = MAX(sent_id, ?2) WHERE name = ?1")?
            .execute(params![name, id])?;
        Ok(())
    }

    /// Rows after `after` in commit order, up to about `max_points` points (at least one row).
    ///
    /// # Errors
    /// SQLite errors, corrupt rows.
    pub fn rows_after(&self, after: i64, max_points: usize) -> Result<Vec<Row>, Error> {
        let mut stmt = self.conn.prepare_cached("SELECT id, data FROM sample_pending WHERE id > ?1 ORDER BY id")?;
        let mut rows = stmt.query([after])?;
        let mut out = Vec::new();
        let mut points = 0;
        while points < max_points {
            let Some(row) = rows.next()? else { break };
            let mut staged = Staged::new();
            series::decode_pending(row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?, &mut staged)?;
            points += staged.iter().map(|(_, p)| p.len()).sum::<usize>();
            out.push(Row { id: row.get(0)?, series: staged });
        }
        Ok(out)
    }

    /// Ids and point counts of the rows after `after` (the backlog), at most `max_rows`.
    ///
    /// # Errors
    /// SQLite errors, corrupt rows.
    pub fn counts_after(&self, after: i64, max_rows: usize) -> Result<Vec<(i64, usize)>, Error> {
        Ok(self
            .rows_after_limited(after, max_rows)?
            .into_iter()
            .map(|row| (row.id, row.series.iter().map(|(_, p)| p.len()).sum()))
            .collect())
    }

    fn rows_after_limited(&self, after: i64, max_rows: usize) -> Result<Vec<Row>, Error> {
        let mut stmt =
            self.conn.prepare_cached("SELECT id, data FROM sample_pending WHERE id > ?1 ORDER BY id LIMIT ?2")?;
        let mut rows = stmt.query(params![after, i64::try_from(max_rows).unwrap_or(i64::MAX)])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut staged = Staged::new();
            series::decode_pending(row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?, &mut staged)?;
            out.push(Row { id: row.get(0)?, series: staged });
        }
        Ok(out)
    }

    /// What a series id stands for (`None`: unknown id).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn series(&self, id: i64) -> Result<Option<SeriesInfo>, Error> {
        Ok(self
            .conn
            .prepare_cached("SELECT agent_id, name, labels, kind FROM series WHERE id = ?1")?
            .query_row([id], |r| {
                Ok(SeriesInfo { agent_id: r.get(0)?, name: r.get(1)?, labels: r.get(2)?, kind: r.get(3)? })
            })
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::series::{SharedHead, load_head, seal_step, start_seal, write_pending};

    fn commit(conn: &mut Connection, head: &SharedHead, mut staged: Staged) -> i64 {
        let tx = conn.transaction().expect("tx");
        let id = write_pending(&tx, &mut staged).expect("pending").expect("row");
        tx.commit().expect("commit");
        head.write().expect("head").add(&staged);
        id
    }

    fn seal_all(conn: &mut Connection, head: &SharedHead, last: i64) {
        let mut seal = start_seal(head, last, true).expect("due");
        while !seal_step(conn, head, &mut seal).expect("step") {}
    }

    fn points(i: i64) -> Staged {
        vec![(1, (0..10).map(|k| (1_795_000_000_000 + i * 100_000 + k * 1000, k as f64)).collect())]
    }

    #[test]
    fn sealed_rows_stay_for_a_target_until_sent_and_are_not_replayed_into_the_head() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = crate::store::open_connection(dir.path()).expect("open");
        let mut outbox = Outbox::open(dir.path()).expect("outbox");
        outbox.register(&[("a".into(), 0), ("b".into(), 0)]).expect("register");
        let head = SharedHead::default();
        let mut last = 0;
        for i in 0..5 {
            last = commit(&mut conn, &head, points(i));
        }
        outbox.advance("a", last).expect("a has all");
        outbox.advance("b", 2).expect("b has two rows");
        seal_all(&mut conn, &head, last);
        let left = outbox.rows_after(outbox.cursor("b").expect("b").0, usize::MAX).expect("rows");
        assert_eq!(left.iter().map(|r| r.id).collect::<Vec<_>>(), vec![3, 4, 5], "b's rows kept after sealing");
        assert_eq!(left[0].series, points(2));
        // kill -9 now: the head is read back without the sealed rows.
        let (fresh, _) = load_head(&conn).expect("load");
        assert!(fresh.is_empty(), "sealed rows kept for a target are not replayed");
        outbox.advance("b", last).expect("b has all");
        let next = commit(&mut conn, &head, points(9));
        seal_all(&mut conn, &head, next);
        outbox.advance("a", next).expect("a");
        outbox.advance("b", next).expect("b");
        seal_all_if_any(&mut conn, &head, next);
        // Ids never go back, even when every row has gone.
        let after = commit(&mut conn, &head, points(10));
        assert!(after > next, "{after} > {next}");
        let fresh = load_head(&conn).expect("load").0;
        assert_eq!(fresh.len(), 10, "only the unsealed row is replayed");
    }

    /// The deleting part of a seal alone (when the head has nothing left to seal).
    fn seal_all_if_any(conn: &mut Connection, _head: &SharedHead, last: i64) {
        let tx = conn.transaction().expect("tx");
        after_seal(&tx, last).expect("after seal");
        tx.commit().expect("commit");
    }

    #[test]
    fn a_target_over_its_backlog_bound_loses_the_oldest_rows_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = crate::store::open_connection(dir.path()).expect("open");
        let mut outbox = Outbox::open(dir.path()).expect("outbox");
        let head = SharedHead::default();
        let first = commit(&mut conn, &head, points(0));
        let row_bytes: i64 = conn
            .query_row("SELECT length(data) FROM sample_pending WHERE id = ?1", [first], |r| r.get(0))
            .expect("len");
        outbox.register(&[("slow".into(), (row_bytes * 3) as u64), ("fast".into(), 0)]).expect("register");
        let mut last = first;
        for i in 1..10 {
            last = commit(&mut conn, &head, points(i));
        }
        outbox.advance("fast", last).expect("fast");
        seal_all(&mut conn, &head, last);
        let (cursor, dropped) = outbox.cursor("slow").expect("slow");
        let kept = outbox.rows_after(cursor, usize::MAX).expect("rows");
        assert_eq!(kept.len(), 3, "three rows fit the bound");
        assert_eq!(dropped, 7 * 10, "the seven oldest rows' points are counted");
        assert_eq!(kept.last().map(|r| r.id), Some(last));
        // A target no longer configured stops holding rows.
        outbox.register(&[("fast".into(), 0)]).expect("register");
        seal_all_if_any(&mut conn, &head, last);
        assert!(outbox.rows_after(0, usize::MAX).expect("rows").iter().all(|r| r.series.is_empty()));
    }
}
