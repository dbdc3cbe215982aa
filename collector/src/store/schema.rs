//! Append-only migrations keyed by `PRAGMA user_version`, and connection setup.
//!
//! A migration is never edited once released; a change is a new entry at the end of [`MIGRATIONS`].

use rusqlite::Connection;

/// Each entry moves the schema from version `index` to `index + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: agents, dedup keys, series and raw samples, gaps, log groups, check results, audit.
    "CREATE TABLE agent(
        id TEXT PRIMARY KEY,
        token_hash BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER,
        last_seen_ms INTEGER,
        last_version TEXT
    );
    CREATE TABLE batch_key(
        agent_id TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        payload_hash BLOB NOT NULL,
        points INTEGER NOT NULL,
        PRIMARY KEY(agent_id, epoch, seq)
    ) WITHOUT ROWID;
    CREATE TABLE series(
        id INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL,
        name TEXT NOT NULL,
        labels TEXT NOT NULL,
        kind INTEGER NOT NULL,
        UNIQUE(agent_id, name, labels)
    );
    CREATE TABLE sample(series_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, value REAL NOT NULL);
    CREATE INDEX sample_by_series_ts ON sample(series_id, ts_ms);
    CREATE TABLE gap(
        id INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        from_ms INTEGER NOT NULL,
        to_ms INTEGER NOT NULL,
        dropped_batches INTEGER NOT NULL,
        dropped_points INTEGER NOT NULL,
        received_ms INTEGER NOT NULL
    );
    CREATE TABLE log_group(
        id INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL,
        log TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        severity INTEGER NOT NULL,
        count INTEGER NOT NULL,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        example TEXT NOT NULL
    );
    CREATE INDEX log_group_by_agent_last ON log_group(agent_id, last_ms);
    CREATE TABLE check_result(
        id INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL,
        check_name TEXT NOT NULL,
        target TEXT NOT NULL,
        status INTEGER NOT NULL,
        severity INTEGER NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE TABLE audit(
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        agent_id TEXT NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL
    );",
    // 2: the latest result per check and target; check_result keeps transitions (and backfilled
    // results) only.
    "CREATE TABLE check_state(
        agent_id TEXT NOT NULL,
        check_name TEXT NOT NULL,
        target TEXT NOT NULL,
        status INTEGER NOT NULL,
        severity INTEGER NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        since_ms INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY(agent_id, check_name, target)
    ) WITHOUT ROWID;
    CREATE INDEX check_result_by_agent_at ON check_result(agent_id, at_ms);",
    // 3: uptime evidence (disjoint up/down intervals per agent, signal and target), the
    // collector's own runs, maintenance windows and incident acknowledgements.
    "CREATE TABLE evidence(
        id INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL,
        signal TEXT NOT NULL,
        target TEXT NOT NULL,
        up INTEGER NOT NULL,
        from_ms INTEGER NOT NULL,
        to_ms INTEGER NOT NULL
    );
    CREATE INDEX evidence_by_signal ON evidence(agent_id, signal, target, from_ms, to_ms, up);
    CREATE TABLE collector_run(
        id INTEGER PRIMARY KEY,
        started_ms INTEGER NOT NULL,
        alive_ms INTEGER NOT NULL
    );
    CREATE TABLE maintenance(
        id INTEGER PRIMARY KEY,
        host TEXT NOT NULL,
        from_ms INTEGER NOT NULL,
        to_ms INTEGER NOT NULL,
        reason TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE incident_ack(
        agent_id TEXT NOT NULL,
        check_name TEXT NOT NULL,
        target TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        ack_ms INTEGER NOT NULL,
        by TEXT NOT NULL,
        PRIMARY KEY(agent_id, check_name, target, start_ms)
    ) WITHOUT ROWID;",
    // 4: the file an error group's example was read from (a log may cover several files).
    "ALTER TABLE log_group ADD COLUMN file TEXT NOT NULL DEFAULT '';",
    // 5: one check's history by time, so reads of a window (and of the run in progress at its
    // start) seek instead of scanning an agent's whole history.
    "CREATE INDEX check_result_by_check ON check_result(agent_id, check_name, target, at_ms);",
    // 6: HTTP users (salted secret hashes, role) and the audit of HTTP writes and user changes.
    "CREATE TABLE http_user(
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        salt BLOB NOT NULL,
        secret_hash BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        rotated_ms INTEGER
    );
    CREATE TABLE http_audit(
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        user TEXT NOT NULL,
        role TEXT NOT NULL,
        peer TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL
    );",
    // 7: the samples behind the two-state evidence (portal, mysql) and every check result, so
    // that evidence intervals and check transitions are recomputed from the set of samples
    // whatever their arrival order; a clean shutdown's time.
    "CREATE TABLE evidence_point(
        agent_id TEXT NOT NULL,
        signal TEXT NOT NULL,
        target TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        up INTEGER NOT NULL,
        PRIMARY KEY(agent_id, signal, target, at_ms)
    ) WITHOUT ROWID;
    ALTER TABLE collector_run ADD COLUMN stopped_ms INTEGER;
    CREATE TABLE check_point(
        agent_id TEXT NOT NULL,
        check_name TEXT NOT NULL,
        target TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        status INTEGER NOT NULL,
        severity INTEGER NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY(agent_id, check_name, target, at_ms)
    ) WITHOUT ROWID;
    CREATE INDEX check_point_by_time ON check_point(agent_id, at_ms);",
    // 8: samples packed per series per hour (store/series.rs), the pending log of the in-memory
    // head, minute and hour rollups (store/rollup.rs); old `sample` rows are moved into blocks in
    // steps by the writer (store/retention.rs) and the table is dropped once empty. Indexes for
    // retention by time. Rowid tables: a block of an hour (up to ~4 KB) stays on its page, where
    // a WITHOUT ROWID row over ~1 KB would spill to a mostly empty overflow page.
    "CREATE TABLE sample_pending(id INTEGER PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE sample_block(
        id INTEGER PRIMARY KEY,
        start_ms INTEGER NOT NULL,
        series_id INTEGER NOT NULL,
        end_ms INTEGER NOT NULL,
        n INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE UNIQUE INDEX sample_block_by_start ON sample_block(start_ms, series_id);
    CREATE TABLE rollup(
        id INTEGER PRIMARY KEY,
        tier INTEGER NOT NULL,
        start_ms INTEGER NOT NULL,
        series_id INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE UNIQUE INDEX rollup_by_start ON rollup(tier, start_ms, series_id);
    CREATE INDEX batch_key_by_received ON batch_key(received_ms);",
    // 9: the time of the samples behind the evidence and of every check result, so that
    // retention deletes them in small steps without scanning the tables.
    "CREATE INDEX evidence_point_by_at ON evidence_point(at_ms);
    CREATE INDEX check_point_by_at ON check_point(at_ms);",
    // 10: the blocks written since their hour rollup was refreshed (store/series.rs): once the
    // hour is over, each is rolled up and moved to full pages in one step (compaction); reads
    // compute those hours from the raw samples meanwhile.
    "CREATE TABLE block_due(
        series_id INTEGER NOT NULL,
        start_ms INTEGER NOT NULL,
        PRIMARY KEY(series_id, start_ms)
    ) WITHOUT ROWID;
    CREATE INDEX block_due_by_start ON block_due(start_ms, series_id);",
    // 11: remote write (store/outbox.rs): each target's cursor in the pending log, and the last
    // pending row sealed into blocks (rows after it are the head's; rows up to it are kept only
    // while a target still needs them).
    "CREATE TABLE outbox_target(
        name TEXT PRIMARY KEY,
        sent_id INTEGER NOT NULL,
        max_backlog_bytes INTEGER NOT NULL,
        dropped_samples INTEGER NOT NULL
    );
    CREATE TABLE outbox_state(key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    // 12: the client an agent was enrolled for (`enroll bx-01 --client acme`); the config's
    // [[client]] host lists take precedence (contract.rs).
    "ALTER TABLE agent ADD COLUMN client TEXT;",
    // 13: incidents opened by hand (a problem the monitoring cannot see), resolved by hand; their
    // acknowledgements go to incident_ack with check 'manual' and the id as target.
    "CREATE TABLE manual_incident(
        id INTEGER PRIMARY KEY,
        host TEXT NOT NULL,
        priority TEXT NOT NULL,
        title TEXT NOT NULL,
        opened_ms INTEGER NOT NULL,
        opened_by TEXT NOT NULL,
        resolved_ms INTEGER,
        resolved_by TEXT
    );
    CREATE INDEX manual_incident_by_host ON manual_incident(host, opened_ms);",
    // 14: the HTTP listener's secrets (the key signing the status page's form tokens), and the
    // read-only links given to clients (secret stored as SHA-256, revocable).
    "CREATE TABLE http_secret(
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE client_link(
        id INTEGER PRIMARY KEY,
        client TEXT NOT NULL,
        token_hash BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER,
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX client_link_by_client ON client_link(client);",
    // 15: who declared a maintenance window (the signed-in user of the API or the status page's
    // form; '' for windows declared before this column existed).
    "ALTER TABLE maintenance ADD COLUMN declared_by TEXT NOT NULL DEFAULT '';",
    // 16: points a seal kept in the head (an hour still open) whose pending rows it deleted, in
    // the pending row encoding, with the span of their timestamps (store::series).
    "CREATE TABLE sample_carry(
        id INTEGER PRIMARY KEY,
        min_ts INTEGER NOT NULL,
        max_ts INTEGER NOT NULL,
        data BLOB NOT NULL
    );",
    // 17: raw blocks keyed by hour and series in the rowid (store/series.rs): `series_hour.id` is
    // the hour number shifted left 24 bits plus the series id, with no other column or index, so
    // an hour's blocks are neighbours in series order, a new hour is appended at the table's end
    // and raw retention deletes a range of ids. `tick_hour` (same key, the agent's first series
    // id for the series) holds the timestamp sets the blocks of an agent-hour share (format 4 in
    // store/block.rs). The rows of `sample_block` move to `series_hour` in steps by the writer
    // (series::convert_step); the table is dropped once empty.
    "CREATE TABLE series_hour(id INTEGER PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE tick_hour(id INTEGER PRIMARY KEY, data BLOB NOT NULL);",
];

/// Schema version this build writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Pragmas every connection gets. `synchronous=FULL`: an ack is a promise (RELIABILITY.md 7).
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA synchronous=FULL;
         PRAGMA foreign_keys=ON;
         PRAGMA busy_timeout=5000;
         PRAGMA journal_size_limit=67108864;",
    )
}

/// Brings the schema up to [`VERSION`].
///
/// # Errors
/// SQLite errors, or a database written by a newer b24watch (version above ours).
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), super::Error> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(super::Error::from)?;
    if current > VERSION {
        return Err(super::Error::Failed(format!(
            "database schema version {current} is newer than this collector understands ({VERSION}): upgrade b24watch-collector"
        )));
    }
    for (idx, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (idx + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
