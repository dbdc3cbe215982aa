//! Issue #13, ingest side: credentials re-checked on open streams, reserved names and an
//! exposition no stored content can break, bounded times and free text, oversized batches.

use std::path::Path;
use std::time::{Duration, Instant};

use b24watch_e2e::{
    Agent, Collector, ProcessGuard, block_on, collector_cmd, enroll, eventually, http_get, load_batch, metric, now_ms,
    patience, promtool_check_metrics, send,
};
use b24watch_proto::v1::ingest_client::IngestClient;
use b24watch_proto::v1::{Ack, Batch, CheckResult, Gap, Label, LogGroup, Series};
use tonic::Code;

const DAY_MS: i64 = 86_400_000;

/// Opens one stream with `token`; batches sent on the returned channel travel on it.
async fn open_stream(url: &str, token: &str) -> (tokio::sync::mpsc::Sender<Batch>, tonic::Streaming<Ack>) {
    let channel =
        tonic::transport::Endpoint::from_shared(url.to_owned()).expect("url").connect().await.expect("connect");
    let mut client = IngestClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    let acks = client.stream(request).await.expect("stream opened").into_inner();
    (tx, acks)
}

fn db(collector: &Collector) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(collector.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open db")
}

fn stored_load1(collector: &Collector, host: &str) -> i64 {
    collector.points(host, "load1").len() as i64
}

/// T42: after `enroll --rotate` the stream opened with the old token is closed (UNAUTHENTICATED)
/// and stores nothing more; an idle stream of a revoked agent is closed (PERMISSION_DENIED)
/// within the 10 s `revoke --help` promises.
#[test]
fn rotated_or_revoked_credentials_close_open_streams_within_10s() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let old = std::fs::read_to_string(enroll(&data, "rot")).expect("token");
    let idle = std::fs::read_to_string(enroll(&data, "idle")).expect("token");
    let collector = Collector::start(&data, "");
    let url = collector.grpc_url();
    block_on(async {
        let (tx, mut acks) = open_stream(&url, old.trim()).await;
        tx.send(load_batch("rot", 1, 1, &[now_ms()])).await.expect("send");
        let ack = acks.message().await.expect("ack").expect("ack");
        assert_eq!(ack.stored_points, 1);
        let (_idle_tx, mut idle_acks) = open_stream(&url, idle.trim()).await;

        let out = collector_cmd(&data, &["enroll", "rot", "--rotate"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let new = String::from_utf8(out.stdout).expect("token");
        let out = collector_cmd(&data, &["revoke", "idle"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let changed = Instant::now();

        let end = tokio::time::timeout(patience(Duration::from_secs(12)), idle_acks.message())
            .await
            .expect("the idle stream of a revoked agent is closed within 10 s");
        let status = end.expect_err("closed with a status");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

        // The old token's stream: one batch a second until it is closed.
        let mut seq = 2;
        let mut acked = 1;
        let status = loop {
            if tx.send(load_batch("rot", 1, seq, &[now_ms()])).await.is_err() {
                break None;
            }
            match tokio::time::timeout(Duration::from_secs(10), acks.message()).await.expect("an answer") {
                Ok(Some(_)) => acked += 1,
                Ok(None) => break None,
                Err(status) => break Some(status),
            }
            assert!(
                changed.elapsed() < patience(Duration::from_secs(12)),
                "the old token is still acked {:?} after rotation",
                changed.elapsed()
            );
            seq += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        if let Some(status) = status {
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        }
        assert_eq!(stored_load1(&collector, "rot"), acked, "only acked batches are stored");
        drop(tx);
        // The new token works.
        let acks = b24watch_e2e::send_raw_async(
            &url,
            new.trim(),
            vec![prost::Message::encode_to_vec(&load_batch("rot", 2, 1, &[now_ms()]))],
            false,
        )
        .await
        .expect("new token delivers");
        assert_eq!(acks[0].stored_points, 1);
    });
    let body = collector.metrics();
    assert!(
        metric(&body, "b24watch_collector_auth_failures_total", &[("reason", "revoked")]).is_some_and(|n| n >= 1.0),
        "{body}"
    );
}

fn series(name: &str, labels: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
    Series {
        name: name.into(),
        kind: 1,
        labels: labels.iter().map(|(n, v)| Label { name: (*n).into(), value: (*v).into() }).collect(),
        timestamps_unix_ms: points.iter().map(|p| p.0).collect(),
        values: points.iter().map(|p| p.1).collect(),
    }
}

/// Starts Prometheus scraping `collector` every second; returns it and its API address.
fn prometheus(dir: &Path, collector: &Collector) -> (ProcessGuard, std::net::SocketAddr) {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: b24watch\n    honor_labels: true\n    static_configs:\n      - targets: [\"{}\"]\n",
            collector.http
        ),
    )
    .expect("prometheus config");
    b24watch_e2e::start_prometheus(&config, dir)
}

/// T43: reserved series and label names are rejected point by point, and hostile rows already
/// in the database (an agent id and a check target full of quotes, braces and newlines) do not
/// break the exposition: promtool accepts it and a real Prometheus scrape succeeds.
#[test]
fn reserved_names_are_rejected_and_hostile_stored_rows_never_break_the_exposition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let evil = std::fs::read_to_string(enroll(&data, "evil")).expect("token");
    let good = std::fs::read_to_string(enroll(&data, "good")).expect("token");
    let now = now_ms();
    {
        let conn = rusqlite::Connection::open(data.join("b24watch.db")).expect("db");
        conn.execute(
            "INSERT INTO agent(id, token_hash, created_ms) VALUES (?1, zeroblob(32), ?2)",
            rusqlite::params!["x\"} 1\nb24watch_collector_ready{a=\"b\\", now],
        )
        .expect("hostile agent row");
        conn.execute(
            "INSERT INTO evidence(agent_id, signal, target, up, from_ms, to_ms) VALUES ('good', 'portal', ?1, 1, ?2, ?3)",
            rusqlite::params!["https://p\"}\n# TYPE x counter\\", now - 600_000, now],
        )
        .expect("hostile evidence row");
    }
    let collector = Collector::start(&data, "");
    let url = collector.grpc_url();
    let point = [(now, 1.0)];
    let hostile = Batch {
        spool_epoch: 1,
        seq: 1,
        agent_id: "evil".into(),
        series: vec![
            series("agent_up", &[], &point),
            series("collector_ready", &[], &point),
            series("collector_batches_total", &[("result", "stored")], &point),
            series("uptime_ratio", &[("window", "1d")], &point),
            series("load1", &[("__name__", "load5")], &point),
            series("load1", &[("__meta", "x")], &point),
            series("__hidden", &[], &point),
            series("load1", &[("probe", "kept")], &point),
        ],
        ..Batch::default()
    };
    let acks = send(&url, evil.trim(), vec![hostile]).expect("partly stored");
    assert_eq!(acks[0].stored_points, 1, "{:?}", acks[0]);
    let rejected: u32 = acks[0].rejections.iter().map(|r| r.points).sum();
    assert_eq!(rejected, 7, "{:?}", acks[0].rejections);
    assert!(
        acks[0].rejections.iter().all(|r| r.reason == b24watch_proto::v1::RejectReason::ReservedName as i32),
        "{:?}",
        acks[0].rejections
    );
    send(&url, good.trim(), vec![load_batch("good", 1, 1, &[now])]).expect("good agent");

    let body = eventually("uptime metrics rendered", Duration::from_secs(20), || {
        let body = collector.metrics();
        body.contains("b24watch_uptime_ratio{").then_some(body)
    });
    promtool_check_metrics(&body).unwrap_or_else(|problems| panic!("promtool check metrics:\n{problems}\n{body}"));
    assert_eq!(body.matches("# TYPE b24watch_collector_ready ").count(), 1, "{body}");
    assert!(!body.contains("__name__"), "{body}");
    assert_eq!(metric(&body, "b24watch_load1", &[("host", "evil"), ("probe", "kept")]), Some(1.0), "{body}");
    assert_eq!(
        metric(&body, "b24watch_collector_points_rejected_total", &[("reason", "reserved_name")]),
        Some(7.0),
        "{body}"
    );

    let (_prometheus, addr) = prometheus(dir.path(), &collector);
    let query = |q: &str| -> Option<serde_json::Value> {
        let (_, body) = http_get(addr, &format!("/api/v1/query?query={q}")).ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"].as_array().cloned().map(serde_json::Value::Array)
    };
    let up = eventually("prometheus scraped the collector", Duration::from_secs(60), || {
        let result = query("up")?;
        let value = result[0]["value"][1].as_str()?.to_owned();
        Some(value)
    });
    let (_, targets) = http_get(addr, "/api/v1/targets").expect("targets");
    assert_eq!(up, "1", "the scrape failed: {targets}");
    let kept = eventually("the good host's series in prometheus", Duration::from_secs(30), || {
        let result = query("b24watch_load1%7Bhost%3D%22good%22%7D")?;
        (!result.as_array()?.is_empty()).then_some(result)
    });
    assert_eq!(kept[0]["metric"]["probe"], "e2e", "{kept}");
}

/// T45: times in the distant past (0, negative, i64::MIN, older than `max_past_secs`) are
/// rejected point by point; a batch stamped at 0 or a day ahead is not evidence of when the
/// agent ran; no record with a time at or below 0 reaches the database.
#[test]
fn distant_past_and_future_times_are_rejected_and_never_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = std::fs::read_to_string(enroll(&data, "past")).expect("token");
    let collector = Collector::start(&data, "");
    let now = now_ms();
    let probe = series(
        "probe_success",
        &[("target", "https://portal.example")],
        &[(0, 0.0), (-5, 0.0), (i64::MIN, 0.0), (now - 8 * DAY_MS, 0.0), (now - 1000, 1.0)],
    );
    let check = |at: i64| CheckResult {
        check: "portal_http".into(),
        target: format!("t{at}"),
        status: 2,
        severity: 4,
        reason: "status".into(),
        message: "down".into(),
        at_unix_ms: at,
    };
    let zero = Batch {
        spool_epoch: 1,
        seq: 1,
        agent_id: "past".into(),
        created_unix_ms: 0,
        series: vec![probe],
        checks: vec![check(0), check(-1), check(i64::MIN), check(now - 1000)],
        log_groups: vec![LogGroup {
            log: "app".into(),
            fingerprint: "f".into(),
            severity: 3,
            count: 1,
            first_seen_unix_ms: 0,
            last_seen_unix_ms: i64::MIN,
            example: "old".into(),
            file: String::new(),
        }],
        gaps: vec![Gap {
            reason: "spool_full".into(),
            from_unix_ms: i64::MIN,
            to_unix_ms: 0,
            dropped_batches: 1,
            dropped_samples: 3,
        }],
        ..Batch::default()
    };
    let ahead =
        Batch { spool_epoch: 1, seq: 2, agent_id: "past".into(), created_unix_ms: now + DAY_MS, ..Batch::default() };
    let acks = send(&collector.grpc_url(), token.trim(), vec![zero, ahead]).expect("stored in part");
    assert_eq!(acks[0].stored_points, 1, "{:?}", acks[0]);
    let rejected: u32 = acks[0].rejections.iter().map(|r| r.points).sum();
    assert_eq!(rejected, 4, "{:?}", acks[0].rejections);

    let conn = db(&collector);
    let min =
        |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0)).expect(sql).unwrap_or(i64::MAX) };
    let floor = now - 7 * DAY_MS - 60_000;
    let stored = collector.points("past", "probe_success");
    assert!(stored.iter().all(|(_, ts, _)| *ts >= floor), "{stored:?}");
    assert!(min("SELECT MIN(at_ms) FROM evidence_point WHERE agent_id = 'past'") >= floor);
    assert!(min("SELECT MIN(at_ms) FROM check_result") >= floor);
    assert!(min("SELECT MIN(MIN(at_ms, since_ms)) FROM check_state") >= floor);
    assert!(min("SELECT MIN(MIN(first_ms, last_ms)) FROM log_group") >= floor);
    assert!(min("SELECT MIN(MIN(from_ms, to_ms)) FROM gap") >= floor);
    assert!(min("SELECT MIN(from_ms) FROM evidence WHERE agent_id = 'past'") >= floor);
    let latest: i64 =
        conn.query_row("SELECT MAX(to_ms) FROM evidence WHERE agent_id = 'past'", [], |r| r.get(0)).expect("evidence");
    assert!(latest <= now_ms() + 600_000 + 60_000, "evidence reaches {latest}, a day ahead");
    let checks: i64 = conn.query_row("SELECT COUNT(*) FROM check_state", [], |r| r.get(0)).expect("checks");
    assert_eq!(checks, 1, "only the check result with a sane time is stored");
    let body = collector.metrics();
    assert_eq!(
        metric(&body, "b24watch_collector_points_rejected_total", &[("reason", "too_old")]),
        Some(4.0),
        "{body}"
    );
}

/// T46: every free-text field is cut at its documented byte bound on a character boundary,
/// and the cuts are counted.
#[test]
fn free_text_fields_are_cut_at_their_bounds_on_a_char_boundary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = std::fs::read_to_string(enroll(&data, "text")).expect("token");
    let collector = Collector::start(&data, "");
    let now = now_ms();
    let long = |n: usize| format!("a{}", "ж".repeat(n));
    let batch = Batch {
        spool_epoch: 1,
        seq: 1,
        agent_id: "text".into(),
        created_unix_ms: now,
        checks: vec![CheckResult {
            check: long(1000),
            target: long(100_000),
            status: 2,
            severity: 3,
            reason: long(1000),
            message: long(500_000),
            at_unix_ms: now,
        }],
        log_groups: vec![LogGroup {
            log: long(1000),
            fingerprint: long(100_000),
            severity: 3,
            count: 1,
            first_seen_unix_ms: now,
            last_seen_unix_ms: now,
            example: long(500_000),
            file: long(100_000),
        }],
        gaps: vec![Gap {
            reason: long(1000),
            from_unix_ms: now - 1000,
            to_unix_ms: now,
            dropped_batches: 1,
            dropped_samples: 1,
        }],
        ..Batch::default()
    };
    send(&collector.grpc_url(), token.trim(), vec![batch]).expect("stored");
    let conn = db(&collector);
    let full = long(500_000);
    let check = |sql: &str, bound: usize| {
        let text: String = conn.query_row(sql, [], |r| r.get(0)).expect(sql);
        assert!(text.len() <= bound && text.len() + 2 > bound, "{sql}: {} bytes, bound {bound}", text.len());
        assert!(full.starts_with(&text), "{sql}: not a prefix");
    };
    check("SELECT example FROM log_group", 16_384);
    check("SELECT fingerprint FROM log_group", 1024);
    check("SELECT log FROM log_group", 256);
    check("SELECT file FROM log_group", 4096);
    check("SELECT message FROM check_result", 4096);
    check("SELECT target FROM check_result", 1024);
    check("SELECT check_name FROM check_result", 128);
    check("SELECT reason FROM check_result", 128);
    check("SELECT reason FROM gap", 128);
    let body = collector.metrics();
    assert_eq!(
        metric(&body, "b24watch_collector_fields_truncated_total", &[("field", "log_example")]),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "b24watch_collector_fields_truncated_total", &[("field", "check_message")]),
        Some(1.0),
        "{body}"
    );
}

/// A number spelled in letters (the log fingerprint keeps letters, not digits).
fn letters(mut n: usize) -> String {
    let mut out = String::new();
    loop {
        out.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
        if n == 0 {
            return out;
        }
    }
}

/// Issue 13 item 10, the gzip case: a real agent whose gzip-compressed batch inflates past the
/// collector's `max_message_bytes` (200 distinct error lines read in one tick) splits it until
/// every part fits and delivers everything; a spooled batch that cannot be split (one log group
/// larger than the limit) becomes a gap record, counted, and delivery goes on.
#[test]
fn oversized_compressed_batches_from_a_real_agent_are_split_or_become_a_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "big");
    let collector = Collector::start(&data, "[limits]\nmax_message_bytes = 65536\n");
    let log = dir.path().join("app.log");
    let line = |tag: &str| {
        let mut text = format!("2024/05/01 10:00:00 [error] 1#0: tag={tag} ");
        while text.len() < 600 {
            text.push_str("upstream timed out while reading response header from upstream ");
        }
        text.push('\n');
        text
    };
    let text: String = (0..200).map(|i| line(&letters(i))).collect();
    std::fs::write(&log, text).expect("log");
    let config = format!(
        "[logs]\nread_from = \"beginning\"\n[[logs.file]]\nname = \"app\"\npaths = [\"{}\"]\npreset = \"nginx\"\n",
        log.display()
    );
    let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    let tags = |collector: &Collector| -> std::collections::BTreeSet<String> {
        let conn = db(collector);
        let mut stmt = conn.prepare("SELECT example FROM log_group WHERE agent_id = 'big'").expect("query");
        stmt.query_map([], |r| r.get::<_, String>(0))
            .expect("rows")
            .filter_map(Result::ok)
            .filter_map(|e| e.split("tag=").nth(1).and_then(|t| t.split(' ').next()).map(str::to_owned))
            .collect()
    };
    eventually("all 200 error groups delivered in parts", Duration::from_secs(40), || {
        (tags(&collector).len() == 200).then_some(())
    });
    // A batch that cannot be split waits in the stopped agent's spool: one log group of 100 kB.
    agent.process.terminate(Duration::from_secs(10));
    {
        let spool = rusqlite::Connection::open(dir.path().join("agent-state/spool.db")).expect("spool");
        let meta = |key: &str| -> i64 {
            spool.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).expect("meta")
        };
        let (epoch, seq, now) = (meta("epoch"), meta("next_seq"), now_ms());
        let giant = Batch {
            spool_epoch: epoch as u64,
            seq: seq as u64,
            agent_id: "big".into(),
            created_unix_ms: now,
            log_groups: vec![LogGroup {
                log: "app".into(),
                fingerprint: "giant".into(),
                severity: 3,
                count: 1,
                first_seen_unix_ms: now,
                last_seen_unix_ms: now,
                example: format!("tag=echo {}", "x".repeat(100_000)),
                file: String::new(),
            }],
            ..Batch::default()
        };
        spool
            .execute(
                "INSERT INTO batch(seq, first_ms, last_ms, points, payload) VALUES (?1, ?2, ?2, 0, ?3)",
                rusqlite::params![seq, now, prost::Message::encode_to_vec(&giant)],
            )
            .expect("spooled giant batch");
        spool.execute("UPDATE meta SET value = ?1 WHERE key = 'next_seq'", [seq + 1]).expect("next seq");
    }
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).expect("log");
    std::io::Write::write_all(&mut file, line("foxtrot").as_bytes()).expect("append");
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    let gap = eventually("the unsplittable batch recorded as a gap", Duration::from_secs(30), || {
        db(&collector)
            .query_row("SELECT reason, dropped_batches FROM gap WHERE agent_id = 'big'", [], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .ok()
    });
    assert_eq!(gap, ("too_large".to_owned(), 1));
    eventually("delivery goes on after the gap", Duration::from_secs(30), || {
        tags(&collector).contains("foxtrot").then_some(())
    });
    assert!(!tags(&collector).contains("echo"));
    let dropped = eventually("the drop counted by the agent", Duration::from_secs(20), || {
        let body = collector.metrics();
        metric(&body, "b24watch_agent_spool_dropped_batches_total", &[("host", "big"), ("reason", "too_large")])
    });
    assert_eq!(dropped, 1.0);
}
