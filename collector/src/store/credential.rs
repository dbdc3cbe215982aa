//! HTTP users (salted secret hashes and roles) and the audit of HTTP writes and user changes.
//!
//! The running collector reads users through [`AccessStore`] (its own connection, so neither the
//! ingest writer nor the shared reader waits on it); the CLI (`user add|list|remove`) calls the
//! free functions on a connection of its own.

use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::Error;
use crate::auth::{self, Role};

/// Audit rows kept at most; older rows are removed as new ones arrive.
pub const AUDIT_MAX_ROWS: i64 = 100_000;
/// Bytes of a request body kept in an audit row.
pub const AUDIT_DETAIL_BYTES: usize = 512;

/// A user as the HTTP layer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    /// User name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Random salt of the hash.
    pub salt: Vec<u8>,
    /// SHA-256 of salt and secret.
    pub secret_hash: Vec<u8>,
}

/// A user as `user list` shows it (no secret material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    /// User name.
    pub name: String,
    /// viewer, operator or admin.
    pub role: String,
    /// Creation time, unix ms.
    pub created_ms: i64,
    /// Last `--rotate`, unix ms.
    pub rotated_ms: Option<i64>,
}

/// One audited action: an HTTP write (allowed or refused) or a user change from the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When, unix ms.
    pub at_ms: i64,
    /// User name; `anonymous` without a credential, `cli` for the command line.
    pub user: String,
    /// The role the request was judged with (`none` when it had none).
    pub role: String,
    /// Peer address (`ip:port`), `local` for the command line.
    pub peer: String,
    /// HTTP method, or the CLI command.
    pub method: String,
    /// Request path (bounded), or the user changed.
    pub path: String,
    /// HTTP status answered (0 for the CLI).
    pub status: u16,
    /// `done` (2xx, or a form's 303 to the page saying what was done), `failed` (the handler refused it: bad input, unknown id), `refused`
    /// (access control, body too large).
    pub outcome: String,
    /// Start of the request body, or why it was refused.
    pub detail: String,
}

fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Appends an audit row and keeps the table within [`AUDIT_MAX_ROWS`].
///
/// # Errors
/// SQLite errors.
pub fn audit(conn: &Connection, e: &AuditEntry) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO http_audit(at_ms, user, role, peer, method, path, status, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            e.at_ms,
            bounded(&e.user, 256),
            e.role,
            bounded(&e.peer, 64),
            bounded(&e.method, 16),
            bounded(&e.path, 256),
            e.status,
            e.outcome,
            bounded(&e.detail, AUDIT_DETAIL_BYTES),
        ],
    )?;
    let id = conn.last_insert_rowid();
    if id % 1000 == 0 {
        conn.execute("DELETE FROM http_audit WHERE id <= ?1", [id - AUDIT_MAX_ROWS])?;
    }
    Ok(())
}

/// Audit rows at or after `since_ms`, newest first, at most `limit`.
///
/// # Errors
/// SQLite errors.
pub fn audit_entries(conn: &Connection, since_ms: i64, limit: usize) -> Result<Vec<AuditEntry>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT at_ms, user, role, peer, method, path, status, outcome, detail FROM http_audit
         WHERE at_ms >= ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![since_ms, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
        Ok(AuditEntry {
            at_ms: r.get(0)?,
            user: r.get(1)?,
            role: r.get(2)?,
            peer: r.get(3)?,
            method: r.get(4)?,
            path: r.get(5)?,
            status: r.get(6)?,
            outcome: r.get(7)?,
            detail: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn cli_audit(conn: &Connection, command: &str, name: &str, detail: String, now_ms: i64) -> Result<(), Error> {
    audit(
        conn,
        &AuditEntry {
            at_ms: now_ms,
            user: "cli".into(),
            role: "admin".into(),
            peer: "local".into(),
            method: command.into(),
            path: name.into(),
            status: 0,
            outcome: "done".into(),
            detail,
        },
    )
}

/// Creates a user and returns its token `<name>.<secret>` (shown once; only a salted hash is
/// stored). With `rotate`, an existing user gets a new secret (and `role`); the old one stops
/// working.
///
/// # Errors
/// Invalid name, an existing user without `rotate`, SQLite errors.
pub fn add_user(conn: &Connection, name: &str, role: Role, rotate: bool, now_ms: i64) -> Result<String, Error> {
    if !crate::auth::valid_agent_id(name) {
        return Err(Error::Failed(format!(
            "invalid user name {name:?}: expected 1..=128 characters of [A-Za-z0-9._-]"
        )));
    }
    let (token, salt, hash) =
        auth::generate_user(name).map_err(|err| Error::Failed(format!("random source: {err}")))?;
    let exists: Option<i64> =
        conn.query_row("SELECT 1 FROM http_user WHERE name = ?1", [name], |r| r.get(0)).optional()?;
    match (exists.is_some(), rotate) {
        (true, false) => {
            return Err(Error::Failed(format!(
                "user {name:?} exists: use --rotate to issue a new secret (the old one stops working)"
            )));
        }
        (true, true) => {
            conn.execute(
                "UPDATE http_user SET role = ?2, salt = ?3, secret_hash = ?4, rotated_ms = ?5 WHERE name = ?1",
                params![name, role.as_str(), &salt[..], &hash[..], now_ms],
            )?;
            cli_audit(conn, "user rotate", name, format!("role {}", role.as_str()), now_ms)?;
        }
        (false, _) => {
            conn.execute(
                "INSERT INTO http_user(name, role, salt, secret_hash, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![name, role.as_str(), &salt[..], &hash[..], now_ms],
            )?;
            cli_audit(conn, "user add", name, format!("role {}", role.as_str()), now_ms)?;
        }
    }
    Ok(token)
}

/// Removes a user; the running collector refuses its credential within its refresh interval.
///
/// # Errors
/// Unknown user, SQLite errors.
pub fn remove_user(conn: &Connection, name: &str, now_ms: i64) -> Result<(), Error> {
    if conn.execute("DELETE FROM http_user WHERE name = ?1", [name])? == 0 {
        return Err(Error::Failed(format!("no user {name:?}")));
    }
    cli_audit(conn, "user remove", name, String::new(), now_ms)
}

/// Every user, by name.
///
/// # Errors
/// SQLite errors.
pub fn list_users(conn: &Connection) -> Result<Vec<UserRow>, Error> {
    let mut stmt = conn.prepare("SELECT name, role, created_ms, rotated_ms FROM http_user ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok(UserRow { name: r.get(0)?, role: r.get(1)?, created_ms: r.get(2)?, rotated_ms: r.get(3)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every user with its hash; rows with an unknown role are skipped (they grant nothing).
///
/// # Errors
/// SQLite errors.
pub fn load_users(conn: &Connection) -> Result<Vec<StoredUser>, Error> {
    let mut stmt = conn.prepare_cached("SELECT name, role, salt, secret_hash FROM http_user")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Vec<u8>>(2)?, r.get::<_, Vec<u8>>(3)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, role, salt, secret_hash) = row?;
        if let Some(role) = Role::parse(&role) {
            out.push(StoredUser { name, role, salt, secret_hash });
        }
    }
    Ok(out)
}

/// The HTTP layer's connection: user reloads and audit writes, serialised.
#[derive(Debug)]
pub struct AccessStore {
    conn: Mutex<Connection>,
}

impl AccessStore {
    /// Wraps a connection opened with [`super::open_connection`].
    pub fn new(conn: Connection) -> Self {
        AccessStore { conn: Mutex::new(conn) }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// See [`load_users`]. Blocking.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn users(&self) -> Result<Vec<StoredUser>, Error> {
        load_users(&self.conn())
    }

    /// See [`audit`]. Blocking.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), Error> {
        audit(&self.conn(), entry)
    }

    /// See [`super::client_link::lookup`]. Blocking.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn client_link(&self, token: &str) -> Result<Option<(i64, String)>, Error> {
        super::client_link::lookup(&self.conn(), token)
    }

    /// See [`audit_entries`]. Blocking.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn audit_entries(&self, since_ms: i64, limit: usize) -> Result<Vec<AuditEntry>, Error> {
        audit_entries(&self.conn(), since_ms, limit)
    }
}

/// The key signing the status page's form tokens (`crate::forms`): 32 random bytes, created on
/// first use and kept in the database, so tokens stay valid across restarts and every process
/// on the database agrees.
///
/// # Errors
/// SQLite errors, or the random source failing.
pub fn form_key(conn: &Connection, now_ms: i64) -> Result<Vec<u8>, Error> {
    let mut fresh = [0u8; 32];
    getrandom::fill(&mut fresh).map_err(|err| Error::Failed(format!("random source: {err}")))?;
    conn.execute(
        "INSERT OR IGNORE INTO http_secret(name, value, created_ms) VALUES ('form_key', ?1, ?2)",
        params![&fresh[..], now_ms],
    )?;
    Ok(conn.query_row("SELECT value FROM http_secret WHERE name = 'form_key'", [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = super::super::open_connection(dir.path()).expect("open");
        (dir, conn)
    }

    #[test]
    fn users_are_stored_salted_and_rotation_replaces_the_secret() {
        let (_dir, conn) = conn();
        let token = add_user(&conn, "alice", Role::Operator, false, 1).expect("add");
        let (name, secret) = crate::auth::parse(&token).expect("token shape");
        assert_eq!(name, "alice");
        let users = load_users(&conn).expect("load");
        assert_eq!(users.len(), 1);
        assert!(crate::access::verify_user(&users[0], secret));
        assert_eq!(users[0].salt.len(), 16);
        assert!(add_user(&conn, "alice", Role::Operator, false, 2).is_err(), "second add without --rotate");
        let rotated = add_user(&conn, "alice", Role::Viewer, true, 3).expect("rotate");
        let users = load_users(&conn).expect("load");
        assert!(!crate::access::verify_user(&users[0], secret), "the old secret still works");
        assert!(crate::access::verify_user(&users[0], crate::auth::parse(&rotated).expect("shape").1));
        assert_eq!(users[0].role, Role::Viewer);
        remove_user(&conn, "alice", 4).expect("remove");
        assert!(load_users(&conn).expect("load").is_empty());
        assert!(remove_user(&conn, "alice", 5).is_err());
        let audit: Vec<String> = audit_entries(&conn, 0, 10)
            .expect("audit")
            .into_iter()
            .map(|e| format!("{} {}", e.method, e.path))
            .collect();
        assert_eq!(audit, ["user remove alice", "user rotate alice", "user add alice"]);
    }

    #[test]
    fn two_users_with_the_same_secret_have_different_hashes() {
        let salt_a = [1u8; 16];
        let salt_b = [2u8; 16];
        assert_ne!(auth::salted_hash(&salt_a, "s"), auth::salted_hash(&salt_b, "s"));
    }
}
