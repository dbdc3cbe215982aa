//! Administration writes: agent enrolment, run heartbeats, maintenance windows, acknowledgements.
//!
//! These writes are rare and come from the command line or the HTTP API, so they use a
//! connection of their own instead of the writer thread's queue (which is for agents' batches).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::Error;
use crate::auth;

/// The administration connection.
#[derive(Debug)]
pub struct Admin {
    conn: Mutex<Connection>,
}

/// One run of the collector, recorded so its downtime counts as unknown for the SLA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunId(i64);

impl Admin {
    /// Opens (creating and migrating if needed) the database in `data_dir`.
    ///
    /// # Errors
    /// When the directory or database cannot be opened or migrated.
    pub fn open(data_dir: &Path) -> Result<Self, Error> {
        Ok(Admin { conn: Mutex::new(super::open_connection(data_dir)?) })
    }

    /// Holds later writes (maintenance windows and acknowledgements from the HTTP API,
    /// heartbeats) to `max_db_bytes`, like ingest's. A running collector calls it once its run is
    /// recorded, so a full database still starts.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn limit(&self, max_db_bytes: Option<u64>) -> Result<(), Error> {
        super::bound_size(&self.conn(), max_db_bytes)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates an agent and returns its token (shown once; only its hash is stored). With
    /// `rotate`, an existing agent gets a new token and the old one stops working.
    ///
    /// # Errors
    /// Invalid id, an existing agent without `rotate`, SQLite errors.
    pub fn enroll(&self, agent_id: &str, rotate: bool, now_ms: i64) -> Result<String, Error> {
        if !auth::valid_agent_id(agent_id) {
            return Err(Error::Failed(format!(
                "invalid agent id {agent_id:?}: expected 1..=128 characters of [A-Za-z0-9._-]"
            )));
        }
        let (token, hash) = auth::generate(agent_id).map_err(|err| Error::Failed(format!("random source: {err}")))?;
        let conn = self.conn();
        let exists: Option<i64> =
            conn.query_row("SELECT 1 FROM agent WHERE id = ?1", [agent_id], |r| r.get(0)).optional()?;
        match (exists.is_some(), rotate) {
            (true, false) => {
                return Err(Error::Failed(format!(
                    "agent {agent_id:?} is already enrolled: use --rotate to issue a new token (the old one stops working)"
                )));
            }
            (true, true) => {
                conn.execute(
                    "UPDATE agent SET token_hash = ?2, revoked_ms = NULL WHERE id = ?1",
                    params![agent_id, &hash[..]],
                )?;
            }
            (false, _) => {
                conn.execute(
                    "INSERT INTO agent(id, token_hash, created_ms) VALUES (?1, ?2, ?3)",
                    params![agent_id, &hash[..], now_ms],
                )?;
            }
        }
        Ok(token)
    }

    /// Records the client an agent belongs to (`None` forgets it). The config's `[[client]]`
    /// host lists take precedence over it.
    ///
    /// # Errors
    /// Unknown agent, SQLite errors.
    pub fn set_client(&self, agent_id: &str, client: Option<&str>) -> Result<(), Error> {
        let changed = self.conn().execute("UPDATE agent SET client = ?2 WHERE id = ?1", params![agent_id, client])?;
        if changed == 0 {
            return Err(Error::Failed(format!("no agent {agent_id:?} is enrolled")));
        }
        Ok(())
    }

    /// Revokes an agent's token; open streams are closed within the collector's refresh interval.
    ///
    /// # Errors
    /// Unknown agent, SQLite errors.
    pub fn revoke(&self, agent_id: &str, now_ms: i64) -> Result<(), Error> {
        let changed =
            self.conn().execute("UPDATE agent SET revoked_ms = ?2 WHERE id = ?1", params![agent_id, now_ms])?;
        if changed == 0 {
            return Err(Error::Failed(format!("no agent {agent_id:?} is enrolled")));
        }
        Ok(())
    }

    /// Records a run of the collector starting at `now`; keep it alive with [`Admin::heartbeat`].
    ///
    /// # Errors
    /// SQLite errors.
    pub fn start_run(&self, now: i64) -> Result<RunId, Error> {
        let conn = self.conn();
        conn.execute("INSERT INTO collector_run(started_ms, alive_ms) VALUES (?1, ?1)", [now])?;
        Ok(RunId(conn.last_insert_rowid()))
    }

    /// Records that the run is alive at `now`.
    ///
    /// # Errors
    /// SQLite errors (BUSY while another process holds the database: retried at the next beat).
    pub fn heartbeat(&self, run: RunId, now: i64) -> Result<(), Error> {
        self.conn().execute("UPDATE collector_run SET alive_ms = ?2 WHERE id = ?1", params![run.0, now])?;
        Ok(())
    }

    /// Records that the run stopped cleanly at `now`: its downtime starts there, not at its last
    /// heartbeat.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn stop_run(&self, run: RunId, now: i64) -> Result<(), Error> {
        self.conn()
            .execute("UPDATE collector_run SET alive_ms = ?2, stopped_ms = ?2 WHERE id = ?1", params![run.0, now])?;
        Ok(())
    }

    /// Declares a maintenance window; returns its id.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn add_maintenance(
        &self,
        host: &str,
        from: i64,
        to: i64,
        reason: &str,
        declared_by: &str,
        now: i64,
    ) -> Result<i64, Error> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO maintenance(host, from_ms, to_ms, reason, created_ms, declared_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![host, from, to, reason, now, declared_by],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Deletes a maintenance window declared over the API; false when there was none.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn delete_maintenance(&self, id: i64) -> Result<bool, Error> {
        Ok(self.conn().execute("DELETE FROM maintenance WHERE id = ?1", [id])? > 0)
    }

    /// Replaces a maintenance window declared over the API; false when there was none.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn update_maintenance(&self, id: i64, host: &str, from: i64, to: i64, reason: &str) -> Result<bool, Error> {
        Ok(self.conn().execute(
            "UPDATE maintenance SET host = ?2, from_ms = ?3, to_ms = ?4, reason = ?5 WHERE id = ?1",
            params![id, host, from, to, reason],
        )? > 0)
    }

    /// Acknowledges an incident (the first acknowledgement counts).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn acknowledge(
        &self,
        host: &str,
        check: &str,
        target: &str,
        start: i64,
        by: &str,
        now: i64,
    ) -> Result<(), Error> {
        self.conn().execute(
            "INSERT OR IGNORE INTO incident_ack(agent_id, check_name, target, start_ms, ack_ms, by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![host, check, target, start, now, by],
        )?;
        Ok(())
    }

    /// Opens an incident by hand at `at` (`priority`: critical, high, medium or low); its id.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn open_incident(&self, host: &str, priority: &str, title: &str, by: &str, at: i64) -> Result<i64, Error> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO manual_incident(host, priority, title, opened_ms, opened_by) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![host, priority, title, at, by],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Resolves an incident opened by hand at `at` (not before it was opened).
    ///
    /// # Errors
    /// Unknown or already resolved incident, a time before its opening, SQLite errors.
    pub fn resolve_incident(&self, id: i64, by: &str, at: i64) -> Result<(), Error> {
        let conn = self.conn();
        let row: Option<(i64, Option<i64>)> = conn
            .query_row("SELECT opened_ms, resolved_ms FROM manual_incident WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        match row {
            None => Err(Error::Failed(format!("no incident opened by hand has id {id}"))),
            Some((_, Some(resolved))) => {
                Err(Error::Failed(format!("incident {id} was already resolved at {resolved}")))
            }
            Some((opened, None)) if at < opened => {
                Err(Error::Failed(format!("incident {id} was opened at {opened}, after {at}")))
            }
            Some(_) => {
                conn.execute(
                    "UPDATE manual_incident SET resolved_ms = ?2, resolved_by = ?3 WHERE id = ?1",
                    params![id, at, by],
                )?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13 item 6: writes from the HTTP API stop at `max_db_bytes`, like ingest.
    #[test]
    fn administration_writes_stop_at_the_database_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bound = 1 << 20;
        let admin = Admin::open(dir.path()).expect("open");
        admin.limit(Some(bound)).expect("limit");
        let reason = "r".repeat(1000);
        let refused = (0..5_000).find_map(|i| admin.add_maintenance("web-01", i, i + 1, &reason, "ops", i).err());
        assert!(matches!(refused, Some(Error::Full)), "5 MB of windows written past a 1 MiB bound: {refused:?}");
        let conn = admin.conn();
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).expect("pages");
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).expect("page size");
        assert!(pages * page_size <= bound as i64, "{} bytes", pages * page_size);
    }
}
