//! Delivery: agent to collector to `/metrics` exactly once, under faults and hostile input
//! (issues #2 and #5; RELIABILITY.md rows named per test).

use std::collections::BTreeSet;
use std::time::Duration;

use b24watch_e2e::{
    Agent, Collector, enroll, eventually, integrity_check, load_batch, metric, now_ms, promtool_check_metrics, send,
    send_raw,
};
use b24watch_proto::v1::{Batch, RejectReason, Series};
use prost::Message as _;
use tonic::Code;

/// Holes in a 1 s series: consecutive timestamps more than 2.5 s apart.
fn holes(ts: &BTreeSet<i64>) -> Vec<(i64, i64)> {
    ts.iter().zip(ts.iter().skip(1)).map(|(a, b)| (*a, *b)).filter(|(a, b)| b - a > 2500).collect()
}

fn wait_drained(collector: &Collector, host: &str, after_ms: i64, within: Duration) {
    eventually(&format!("{host}: spool drained"), within, || {
        let body = collector.metrics();
        let pending = metric(&body, "b24watch_agent_spool_pending_batches", &[("host", host)])?;
        (pending == 0.0 && collector.points(host, "load1").iter().any(|p| p.1 > after_ms)).then_some(())
    });
}

#[test]
fn local_agent_appears_in_metrics_with_host_series_and_passes_promtool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "box-01");
    let collector = Collector::start(&data, "");
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
    let host = [("host", "box-01")];
    let body = eventually("host series in /metrics", Duration::from_secs(20), || {
        let body = collector.metrics();
        metric(&body, "b24watch_cpu_usage_ratio", &host).map(|_| body)
    });
    assert_eq!(metric(&body, "b24watch_agent_up", &host), Some(1.0), "{body}");
    assert!(metric(&body, "b24watch_agent_last_seen_timestamp_seconds", &host).is_some_and(|t| t > 1.7e9));
    let usage = metric(&body, "b24watch_cpu_usage_ratio", &host).expect("cpu usage");
    assert!((0.0..=1.0).contains(&usage), "cpu usage {usage}");
    assert!(metric(&body, "b24watch_load1", &host).is_some(), "{body}");
    let total = metric(&body, "b24watch_memory_total_bytes", &host).expect("memory total");
    let available = metric(&body, "b24watch_memory_available_bytes", &host).expect("memory available");
    assert!(total > 0.0 && available <= total, "{available} <= {total}");
    let root = [("host", "box-01"), ("mountpoint", "/")];
    let size = metric(&body, "b24watch_filesystem_size_bytes", &root).expect("root filesystem size");
    let avail = metric(&body, "b24watch_filesystem_avail_bytes", &root).expect("root filesystem avail");
    assert!(size > 0.0 && avail <= size);
    assert!(metric(&body, "b24watch_collector_points_stored_total", &[]).is_some_and(|n| n > 0.0));
    promtool_check_metrics(&body).unwrap_or_else(|problems| panic!("promtool check metrics:\n{problems}\n{body}"));
}

#[test]
fn batch_resent_after_a_lost_ack_is_stored_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = std::fs::read_to_string(enroll(&data, "dedup")).expect("token");
    let collector = Collector::start(&data, "");
    let ts = now_ms();
    let batch = load_batch("dedup", 42, 1, &[ts - 2000, ts - 1000, ts]);
    let first = send(&collector.grpc_url(), token.trim(), vec![batch.clone()]).expect("first delivery");
    assert_eq!((first[0].seq, first[0].duplicate, first[0].stored_points), (1, false, 3));
    // The agent never saw that ack (connection cut): it resends on a new connection.
    let again = send(&collector.grpc_url(), token.trim(), vec![batch]).expect("resend");
    assert_eq!((again[0].seq, again[0].duplicate, again[0].stored_points), (1, true, 0));
    let points = collector.points("dedup", "load1");
    assert_eq!(points.len(), 3, "{points:?}");
    let body = collector.metrics();
    assert_eq!(metric(&body, "b24watch_collector_batches_total", &[("result", "duplicate")]), Some(1.0));
    assert_eq!(metric(&body, "b24watch_collector_points_stored_total", &[]), Some(3.0));
    // The same key with other content is refused and changes nothing (RELIABILITY.md T30).
    let conflicting = load_batch("dedup", 42, 1, &[ts - 5000]);
    let err = send(&collector.grpc_url(), token.trim(), vec![conflicting]).expect_err("conflict");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert_eq!(collector.points("dedup", "load1").len(), 3);
}

#[test]
fn agent_spools_while_collector_is_down_and_delivers_each_batch_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "box-03");
    let collector = Collector::start(&data, "");
    let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
    collector.wait_for_load_points("box-03", 1);
    let (grpc, http) = (collector.grpc, collector.http);
    let down_at = now_ms();
    collector.process.kill();
    std::thread::sleep(Duration::from_secs(5));
    let up_at = now_ms();
    let collector = Collector::start_on(&data, grpc, http, "");
    wait_drained(&collector, "box-03", up_at, Duration::from_secs(45));
    drop(agent);
    let points = collector.points("box-03", "load1");
    let unique: BTreeSet<i64> = points.iter().map(|p| p.1).collect();
    assert_eq!(unique.len(), points.len(), "duplicate timestamps: {points:?}");
    let during: Vec<i64> = unique.iter().copied().filter(|ts| (down_at + 1000..up_at - 1000).contains(ts)).collect();
    assert!(during.len() >= 2, "samples taken while the collector was down were not delivered: {points:?}");
    // One sample per second: no holes larger than two intervals anywhere.
    assert_eq!(holes(&unique), [], "gaps in delivered samples");
}

/// T01: collector down 60 s with 1 s sampling; every sample stored exactly once afterwards.
#[test]
fn collector_down_60s_every_sample_arrives_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "t01");
    let collector = Collector::start(&data, "");
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
    collector.wait_for_load_points("t01", 1);
    let (grpc, http) = (collector.grpc, collector.http);
    let down_at = now_ms();
    let (status, _) = collector.process.terminate(Duration::from_secs(5));
    assert!(status.success());
    std::thread::sleep(Duration::from_secs(60));
    let up_at = now_ms();
    let collector = Collector::start_on(&data, grpc, http, "");
    wait_drained(&collector, "t01", up_at, Duration::from_secs(60));
    let ts = collector.unique_load_ts("t01");
    let during = ts.iter().filter(|t| (down_at + 1000..up_at - 1000).contains(*t)).count();
    assert!(during >= 55, "only {during} samples from the 60 s outage arrived");
    assert_eq!(holes(&ts), [], "samples missing");
    assert_eq!(integrity_check(&collector.db_path()), "ok");
}

/// T02: an outage longer than the spool bound drops the oldest batches, counted exactly, and
/// the collector stores a gap record describing them.
#[test]
fn outage_past_the_spool_bound_drops_oldest_counted_exactly_with_a_gap_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "t02");
    let collector = Collector::start(&data, "");
    let _agent =
        Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "[spool]\nmax_batches = 5\nmin_free_bytes = 0\n");
    collector.wait_for_load_points("t02", 1);
    let (grpc, http) = (collector.grpc, collector.http);
    collector.process.kill();
    std::thread::sleep(Duration::from_secs(12));
    let up_at = now_ms();
    let collector = Collector::start_on(&data, grpc, http, "");
    wait_drained(&collector, "t02", up_at, Duration::from_secs(45));
    let gaps = collector.api("/api/v1/hosts/t02/gaps");
    let gaps = gaps.as_array().expect("gap list");
    assert!(!gaps.is_empty(), "no gap record stored");
    let dropped: i64 = gaps.iter().map(|g| g["dropped_batches"].as_i64().expect("count")).sum();
    // The agent's counter travels in its own later batches: wait for the one that carries every
    // drop (a counter that never reaches the gap records' total fails here).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = collector.metrics();
        let counted =
            metric(&body, "b24watch_agent_spool_dropped_batches_total", &[("host", "t02"), ("reason", "full")]);
        if counted == Some(dropped as f64) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "agent counter {counted:?} vs gap records {dropped}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // One batch per 1 s tick, one load1 point per batch: the missing ticks are the drops.
    let ts = collector.unique_load_ts("t02");
    let missing: i64 =
        ts.iter().zip(ts.iter().skip(1)).map(|(a, b)| ((b - a) as f64 / 1000.0).round() as i64 - 1).sum();
    assert_eq!(missing, dropped, "holes in the series vs dropped batches; ts={ts:?} gaps={gaps:?}");
    for gap in gaps {
        let (from, to) = (gap["from_ms"].as_i64().expect("from"), gap["to_ms"].as_i64().expect("to"));
        assert!(!ts.iter().any(|t| (from..=to).contains(t)), "a gap [{from}, {to}] overlaps stored points");
    }
}

/// T06: the collector killed with SIGKILL at random points under several agents' load.
#[test]
fn collector_killed_repeatedly_under_load_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let hosts = ["k1", "k2", "k3"];
    let tokens: Vec<_> = hosts.iter().map(|h| enroll(&data, h)).collect();
    let mut collector = Collector::start(&data, "");
    let _agents: Vec<Agent> = hosts
        .iter()
        .zip(&tokens)
        .map(|(host, token)| {
            let agent_dir = dir.path().join(host);
            std::fs::create_dir_all(&agent_dir).expect("agent dir");
            Agent::start(&agent_dir, &collector.grpc_url(), token, 1, "")
        })
        .collect();
    let mut seed = now_ms() as u64 | 1;
    for round in 0..6 {
        // xorshift: a different kill point every round and every run
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(700 + seed % 2300));
        let (grpc, http) = (collector.grpc, collector.http);
        collector.process.kill();
        assert_eq!(integrity_check(&data.join("b24watch.db")), "ok", "after kill {round}");
        collector = Collector::start_on(&data, grpc, http, "");
    }
    let up_at = now_ms();
    for host in hosts {
        wait_drained(&collector, host, up_at, Duration::from_secs(60));
        let ts = collector.unique_load_ts(host);
        assert_eq!(holes(&ts), [], "{host}: samples lost");
    }
}

/// T38: another process holds the database lock longer than the busy timeout.
#[test]
fn locked_database_delays_delivery_without_losing_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "t38");
    let collector = Collector::start(&data, "");
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
    collector.wait_for_load_points("t38", 1);
    {
        let conn = rusqlite::Connection::open(collector.db_path()).expect("open db");
        conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
        std::thread::sleep(Duration::from_secs(10));
        conn.execute_batch("COMMIT").expect("unlock");
    }
    let released = now_ms();
    wait_drained(&collector, "t38", released, Duration::from_secs(60));
    let body = collector.metrics();
    assert!(
        metric(&body, "b24watch_collector_batches_total", &[("result", "unavailable")]).is_some_and(|n| n >= 1.0),
        "the lock should have refused at least one batch: {body}"
    );
    let ts = collector.unique_load_ts("t38");
    assert_eq!(holes(&ts), [], "samples lost while the database was locked");
}

fn big_batch(agent: &str, seq: u64, n_points: usize) -> Batch {
    let base = now_ms() - 3_600_000;
    let ts: Vec<i64> = (0..n_points as i64).map(|i| base + i).collect();
    let mut batch = load_batch(agent, 9, seq, &ts);
    batch.series[0].name = format!("fill_{seq}");
    // Values without pattern (random mantissas), so the packed samples still fill the bound.
    batch.series[0].values = ts
        .iter()
        .map(|t| {
            let mut x = (*t as u64).wrapping_add(seq).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            x ^= x >> 31;
            f64::from_bits(0x3ff0_0000_0000_0000 | (x.wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 12))
        })
        .collect();
    batch
}

/// T13: the database reaches its size bound; batches are refused with UNAVAILABLE and nothing
/// of them is stored; after space is made the same batch is stored once.
#[test]
fn full_database_refuses_batches_until_space_is_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = std::fs::read_to_string(enroll(&data, "t13")).expect("token");
    let collector = Collector::start(&data, "[collector]\nmax_db_bytes = 2097152\n");
    let url = collector.grpc_url();
    let mut refused = None;
    for seq in 1..=40 {
        match send(&url, token.trim(), vec![big_batch("t13", seq, 20_000)]) {
            Ok(acks) => assert_eq!(acks[0].stored_points, 20_000),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(status.metadata().get("retry-after-ms").is_some(), "no retry hint: {status:?}");
                refused = Some(seq);
                break;
            }
        }
    }
    let refused = refused.expect("a 2 MiB database fills up");
    assert!(collector.points("t13", &format!("fill_{refused}")).is_empty(), "refused batch partly stored");
    let stored_before: usize = (1..refused).map(|seq| collector.points("t13", &format!("fill_{seq}")).len()).sum();
    assert_eq!(stored_before, (refused as usize - 1) * 20_000);
    let (grpc, http) = (collector.grpc, collector.http);
    let (status, _) = collector.process.terminate(Duration::from_secs(5));
    assert!(status.success());
    let collector = Collector::start_on(&data, grpc, http, "");
    let acks = send(&collector.grpc_url(), token.trim(), vec![big_batch("t13", refused, 20_000)]).expect("stored now");
    assert!(!acks[0].duplicate);
    assert_eq!(collector.points("t13", &format!("fill_{refused}")).len(), 20_000);
    assert_eq!(integrity_check(&collector.db_path()), "ok");
}

/// T33: one agent opening many concurrent streams gets RESOURCE_EXHAUSTED beyond its share,
/// and other agents keep being served.
#[test]
fn stream_flood_from_one_agent_is_capped_and_others_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let flood = std::fs::read_to_string(enroll(&data, "flood")).expect("token");
    let good = std::fs::read_to_string(enroll(&data, "calm")).expect("token");
    let collector = Collector::start(&data, "");
    let url = collector.grpc_url();
    let (accepted, refused) = b24watch_e2e::block_on(async {
        let channel =
            tonic::transport::Endpoint::from_shared(url.clone()).expect("url").connect().await.expect("connect");
        let mut held = Vec::new();
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..20 {
            let mut client = b24watch_proto::v1::ingest_client::IngestClient::new(channel.clone());
            let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(1);
            let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            request.metadata_mut().insert("authorization", format!("Bearer {}", flood.trim()).parse().expect("ascii"));
            match client.stream(request).await {
                Ok(response) => {
                    accepted += 1;
                    held.push((tx, response));
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    refused += 1;
                }
            }
        }
        // While the flood holds its streams, another agent is served.
        let batch = load_batch("calm", 1, 1, &[now_ms()]).encode_to_vec();
        let acks =
            b24watch_e2e::send_raw_async(&url, good.trim(), vec![batch], false).await.expect("calm agent served");
        assert_eq!(acks[0].stored_points, 1);
        (accepted, refused)
    });
    assert_eq!((accepted, refused), (4, 16));
    let body = collector.metrics();
    assert_eq!(metric(&body, "b24watch_collector_streams_refused_total", &[]), Some(16.0));
    // The held streams are gone now: the agent gets its slots back.
    eventually("slots released", Duration::from_secs(10), || {
        send(&url, flood.trim(), vec![load_batch("flood", 1, 1, &[now_ms()])]).ok()
    });
}

/// T27, T28, T29, T34: hostile input gets clear status codes or per-item rejections, memory
/// stays bounded, and other agents keep being served.
#[test]
fn hostile_input_is_refused_clearly_and_others_keep_being_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let bad = std::fs::read_to_string(enroll(&data, "hostile")).expect("token");
    let good = std::fs::read_to_string(enroll(&data, "honest")).expect("token");
    let collector = Collector::start(&data, "[limits]\nmax_series_per_agent = 50\n");
    let url = collector.grpc_url();

    // Malformed protobuf: a field 1 varint that never ends.
    let err = send_raw(&url, bad.trim(), vec![vec![0x08, 0xff, 0xff, 0xff]], false).expect_err("malformed");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(!err.message().is_empty());

    // Over the 4 MiB limit.
    let huge = big_batch("hostile", 1, 600_000).encode_to_vec();
    assert!(huge.len() > 4 << 20);
    let err = send_raw(&url, bad.trim(), vec![huge], false).expect_err("too large");
    assert!(matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted), "{err:?}");

    // A gzip bomb: about 100 KiB on the wire, 80 MB once inflated.
    let mut bomb = load_batch("hostile", 1, 2, &[]);
    bomb.series[0].timestamps_unix_ms = vec![0; 5_000_000];
    bomb.series[0].values = vec![0.0; 5_000_000];
    let err = send_raw(&url, bad.trim(), vec![bomb.encode_to_vec()], true).expect_err("bomb");
    assert!(matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted), "{err:?}");
    let peak = collector.peak_rss_kib();
    assert!(peak < 64 * 1024, "collector peak RSS {peak} KiB after a bomb");

    // NaN, Inf and far-future points are rejected one by one; the rest is stored.
    let now = now_ms();
    let mut mixed = load_batch("hostile", 1, 3, &[now - 3000, now - 2000, now - 1000, now + 3_600_000]);
    mixed.series[0].values = vec![1.0, f64::NAN, f64::NEG_INFINITY, 2.0];
    let acks = send(&url, bad.trim(), vec![mixed]).expect("partly stored");
    assert_eq!(acks[0].stored_points, 1);
    let reasons: Vec<(i32, u32)> = acks[0].rejections.iter().map(|r| (r.reason, r.points)).collect();
    assert_eq!(reasons, [(RejectReason::NonFiniteValue as i32, 2), (RejectReason::TooFarInFuture as i32, 1)]);

    // A flood of new series stops at the per-agent limit; known series keep updating.
    let flood = Batch {
        spool_epoch: 1,
        seq: 4,
        agent_id: "hostile".into(),
        series: (0..100)
            .map(|i| Series {
                name: "flood".into(),
                kind: 1,
                labels: vec![b24watch_proto::v1::Label { name: "request_id".into(), value: format!("r{i}") }],
                timestamps_unix_ms: vec![now],
                values: vec![1.0],
            })
            .collect(),
        ..Batch::default()
    };
    let acks = send(&url, bad.trim(), vec![flood]).expect("partly stored");
    let limited = acks[0].rejections.iter().filter(|r| r.reason == RejectReason::SeriesLimit as i32).count();
    assert_eq!((acks[0].stored_points as usize, limited), (49, 51), "one series (load1) existed already");
    let acks = send(&url, bad.trim(), vec![load_batch("hostile", 1, 5, &[now])]).expect("known series");
    assert_eq!(acks[0].stored_points, 1);

    // The other agent was never affected.
    let acks = send(&url, good.trim(), vec![load_batch("honest", 1, 1, &[now])]).expect("honest agent");
    assert_eq!(acks[0].stored_points, 1);
    let body = collector.metrics();
    assert_eq!(metric(&body, "b24watch_collector_points_rejected_total", &[("reason", "series_limit")]), Some(51.0));
    assert_eq!(metric(&body, "b24watch_collector_points_rejected_total", &[("reason", "non_finite_value")]), Some(2.0));
}
