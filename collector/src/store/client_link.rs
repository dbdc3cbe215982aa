//! Client links: read-only, revocable links that show one client its own status page, reports
//! and read API without a login (`crate::client_link` serves them).
//!
//! A link's token is `<id>.<64 hex digits>`: the id finds the row, the 256-bit secret is what
//! proves the link. Only the SHA-256 of the secret is stored (as for agent tokens,
//! [`crate::auth::generate`]), compared in constant time ([`crate::auth::verify`]). Creating
//! and revoking are audited in `http_audit` like user changes.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::Error;
use super::credential::{AuditEntry, audit};

/// A link as `client-link list` shows it (no secret material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkRow {
    /// Id: the part of the token before the dot.
    pub id: i64,
    /// Client it shows.
    pub client: String,
    /// Creation, unix ms.
    pub created_ms: i64,
    /// Revocation, unix ms.
    pub revoked_ms: Option<i64>,
    /// What it was made for (`--note`).
    pub note: String,
}

/// Bytes of a link's note at most.
pub const MAX_NOTE_BYTES: usize = 256;

fn cli_audit(conn: &Connection, command: &str, client: &str, detail: String, now_ms: i64) -> Result<(), Error> {
    audit(
        conn,
        &AuditEntry {
            at_ms: now_ms,
            user: "cli".into(),
            role: "admin".into(),
            peer: "local".into(),
            method: command.into(),
            path: client.into(),
            status: 0,
            outcome: "done".into(),
            detail,
        },
    )
}

/// Creates a link for `client` and returns its id and token (shown once).
///
/// # Errors
/// A note over [`MAX_NOTE_BYTES`], the random source failing, SQLite errors.
pub fn create(conn: &Connection, client: &str, note: &str, now_ms: i64) -> Result<(i64, String), Error> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(Error::Failed(format!("--note: {} bytes, at most {MAX_NOTE_BYTES}", note.len())));
    }
    let (token, hash) = crate::auth::generate("0").map_err(|err| Error::Failed(format!("random source: {err}")))?;
    let secret = token.rsplit_once('.').map_or("", |(_, s)| s).to_owned();
    conn.execute(
        "INSERT INTO client_link(client, token_hash, created_ms, note) VALUES (?1, ?2, ?3, ?4)",
        params![client, &hash[..], now_ms, note],
    )?;
    let id = conn.last_insert_rowid();
    cli_audit(conn, "link create", client, format!("link {id} {note}").trim_end().to_owned(), now_ms)?;
    Ok((id, format!("{id}.{secret}")))
}

/// Every link, newest first.
///
/// # Errors
/// SQLite errors.
pub fn list(conn: &Connection) -> Result<Vec<LinkRow>, Error> {
    let mut stmt = conn.prepare("SELECT id, client, created_ms, revoked_ms, note FROM client_link ORDER BY id DESC")?;
    let rows = stmt.query_map([], |r| {
        Ok(LinkRow { id: r.get(0)?, client: r.get(1)?, created_ms: r.get(2)?, revoked_ms: r.get(3)?, note: r.get(4)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes link `which` (an id) or every link of client `which`; returns the ids revoked.
///
/// # Errors
/// No such link or client with an unrevoked link, SQLite errors.
pub fn revoke(conn: &Connection, which: &str, now_ms: i64) -> Result<Vec<i64>, Error> {
    let ids: Vec<i64> = match which.parse::<i64>() {
        Ok(id) => conn
            .query_row("SELECT id FROM client_link WHERE id = ?1 AND revoked_ms IS NULL", [id], |r| r.get(0))
            .optional()?
            .into_iter()
            .collect(),
        Err(_) => {
            let mut stmt = conn.prepare("SELECT id FROM client_link WHERE client = ?1 AND revoked_ms IS NULL")?;
            stmt.query_map([which], |r| r.get(0))?.collect::<Result<_, _>>()?
        }
    };
    if ids.is_empty() {
        return Err(Error::Failed(format!(
            "no unrevoked client link {which:?}: name a link id or a client (see `client-link list`)"
        )));
    }
    for id in &ids {
        conn.execute("UPDATE client_link SET revoked_ms = ?2 WHERE id = ?1", params![id, now_ms])?;
        let client: String = conn.query_row("SELECT client FROM client_link WHERE id = ?1", [id], |r| r.get(0))?;
        cli_audit(conn, "link revoke", &client, format!("link {id}"), now_ms)?;
    }
    Ok(ids)
}

/// The link `token` proves: `(id, client)` when the token is shaped right, names a link that is
/// not revoked, and its secret matches the stored hash (compared in constant time).
///
/// # Errors
/// SQLite errors.
pub fn lookup(conn: &Connection, token: &str) -> Result<Option<(i64, String)>, Error> {
    let Some((id, secret)) = crate::auth::parse(token) else { return Ok(None) };
    let Ok(id) = id.parse::<i64>() else { return Ok(None) };
    let row: Option<(String, Vec<u8>, Option<i64>)> = conn
        .prepare_cached("SELECT client, token_hash, revoked_ms FROM client_link WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(match row {
        Some((client, hash, None)) if crate::auth::verify(secret, &hash) => Some((id, client)),
        Some(_) => None,
        None => {
            // The same work as for a known id, so timing does not tell which ids exist.
            std::hint::black_box(crate::auth::verify(secret, &[0; 32]));
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_verifies_until_revoked_and_only_with_its_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = super::super::open_connection(dir.path()).expect("open");
        let (id, token) = create(&conn, "acme", "for the CTO", 10).expect("create");
        let (_, other) = create(&conn, "globex", "", 11).expect("create");
        assert_eq!(lookup(&conn, &token).expect("lookup"), Some((id, "acme".to_owned())));
        let (_, secret) = token.split_once('.').expect("shape");
        assert_eq!(secret.len(), 64, "256 bits");
        // The other link's secret under this id, a flipped digit, an unknown id, junk.
        let (other_id, other_secret) = other.split_once('.').expect("shape");
        let flipped = format!("{id}.{}{}", &secret[..63], if secret.ends_with('0') { '1' } else { '0' });
        for forged in [format!("{id}.{other_secret}"), flipped, format!("999.{secret}"), "x".into(), String::new()] {
            assert_eq!(lookup(&conn, &forged).expect("lookup"), None, "{forged}");
        }
        assert!(lookup(&conn, &format!("{other_id}.{other_secret}")).expect("lookup").is_some());
        assert_eq!(revoke(&conn, "acme", 20).expect("revoke"), vec![id]);
        assert_eq!(lookup(&conn, &token).expect("lookup"), None, "a revoked link still works");
        assert!(revoke(&conn, "acme", 21).is_err(), "nothing left to revoke");
        assert!(revoke(&conn, &id.to_string(), 21).is_err());
        let rows = list(&conn).expect("list");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].revoked_ms, Some(20));
        assert_eq!(rows[1].note, "for the CTO");
        let stored: Vec<u8> =
            conn.query_row("SELECT token_hash FROM client_link WHERE id = ?1", [id], |r| r.get(0)).expect("hash");
        assert!(!String::from_utf8_lossy(&stored).contains(secret) && stored.len() == 32, "the secret is stored");
        let audit: Vec<String> = super::super::credential::audit_entries(&conn, 0, 10)
            .expect("audit")
            .into_iter()
            .map(|e| format!("{} {} {}", e.method, e.path, e.detail))
            .collect();
        assert_eq!(
            audit,
            [
                format!("link revoke acme link {id}"),
                "link create globex link 2".to_owned(),
                format!("link create acme link {id} for the CTO"),
            ]
        );
    }
}
