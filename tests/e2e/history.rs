//! Issue #15: the history API at a step, from unsealed samples and from blocks and rollups.

use std::time::Duration;

use b24watch_e2e::{Collector, enroll, load_batch, now_ms, send};

/// Issue #15: history at a step across hour blocks, from unsealed samples and after a clean
/// stop sealed them into blocks and rollups; a late batch and a repeated timestamp.
#[test]
fn history_steps_agree_before_and_after_sealing_across_hours_and_tiers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = std::fs::read_to_string(enroll(&data, "hist")).expect("token");
    let collector = Collector::start(&data, "");
    let hour = 3_600_000;
    let base = (now_ms() - 5 * hour) / hour * hour;
    // Three hours at 10 s, the middle hour sent last (a backfill) with a repeated timestamp.
    let ts = |h: i64| -> Vec<i64> { (0..360).map(|i| base + h * hour + i * 10_000).collect() };
    let mut late = ts(1);
    late.push(base + hour); // the same timestamp twice in one batch: stored once
    let batches =
        vec![load_batch("hist", 5, 1, &ts(0)), load_batch("hist", 5, 2, &ts(2)), load_batch("hist", 5, 3, &late)];
    send(&collector.grpc_url(), token.trim(), batches).expect("stored");
    let query = |c: &Collector, step: i64| {
        c.api(&format!("/api/v1/hosts/hist/series?name=load1&from={base}&to={}&step={step}", base + 3 * hour - 1))
    };
    // load_batch's value is the timestamp in seconds: min/max/avg per step are known.
    let check = |answer: &serde_json::Value, step: i64, tier: &str| {
        let series = &answer["series"][0];
        assert_eq!(series["tier"], tier, "{answer}");
        let steps = series["steps"].as_array().expect("steps");
        assert_eq!(steps.len() as i64, 3 * hour / step, "{answer}");
        for s in steps {
            let t = s["t"].as_i64().expect("t");
            let last = t + step - 10_000;
            assert_eq!(s["min"].as_f64(), Some(t as f64 / 1000.0));
            assert_eq!(s["max"].as_f64(), Some(last as f64 / 1000.0));
            assert_eq!(s["count"].as_i64(), Some(step / 10_000));
            let avg = s["avg"].as_f64().expect("avg");
            assert!((avg - (t + last) as f64 / 2000.0).abs() < 1e-3, "{s}");
        }
    };
    let before: Vec<_> = [(20_000, "raw"), (300_000, "minute"), (hour, "hour")]
        .iter()
        .map(|(step, tier)| {
            let answer = query(&collector, *step);
            check(&answer, *step, tier);
            answer
        })
        .collect();
    let (grpc, http) = (collector.grpc, collector.http);
    let (status, _) = collector.process.terminate(Duration::from_secs(10));
    assert!(status.success());
    let collector = Collector::start_on(&data, grpc, http, "");
    for ((step, _), want) in [(20_000, "raw"), (300_000, "minute"), (hour, "hour")].iter().zip(&before) {
        assert_eq!(&query(&collector, *step), want, "step {step}: answer changed by sealing");
    }
    let db = rusqlite::Connection::open(data.join("b24watch.db")).expect("open db");
    // A block's point count is the varint after its format byte.
    let blocks: i64 = db
        .prepare("SELECT data FROM series_hour")
        .expect("prepare")
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .expect("blocks")
        .map(|data| {
            let data = data.expect("block");
            let (mut n, mut shift) = (0i64, 0);
            for byte in &data[1..] {
                n |= i64::from(byte & 0x7f) << shift;
                shift += 7;
                if *byte < 0x80 {
                    break;
                }
            }
            n
        })
        .sum();
    let pending: i64 =
        db.query_row("SELECT COUNT(*) FROM sample_pending WHERE length(data) > 0", [], |r| r.get(0)).expect("pending");
    assert_eq!((blocks, pending), (3 * 360, 0), "a clean stop seals every sample once");
}

/// Issue #15 acceptance 2: `kill -9` of a real collector at varied moments (while it ingests and
/// runs retention after a start, and while it seals its head into blocks and rollups after
/// SIGTERM) never loses or doubles a sample: every batch that was not acked is resent (as an
/// agent's spool does), a late backfill and resent batches are mixed in, and at the end the hour
/// steps of the history API count every point sent exactly once with the sums of their values.
/// Raw samples are kept two days and minute rollups three, so the older days are answered by the
/// hour rollups that sealing wrote before retention removed the blocks.
#[test]
fn kill_9_during_sealing_rollups_and_retention_loses_and_doubles_nothing() {
    use b24watch_proto::v1::{Batch, Label, Series};
    const SERIES: usize = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = std::fs::read_to_string(enroll(&data, "crash")).expect("token").trim().to_owned();
    let config = "[limits]\nmax_past_secs = 31536000\n[retention]\nraw_days = 2\nminute_days = 3\n";
    let hour = 3_600_000;
    let base = (now_ms() - 4 * 24 * hour) / hour * hour;
    // One batch per hour: every series at 10 s; the value of core c at t is t/1000 + c.
    let batch = |seq: u64, ts: &[i64]| Batch {
        spool_epoch: 1,
        seq,
        agent_id: "crash".into(),
        series: (0..SERIES)
            .map(|c| Series {
                name: "load1".into(),
                kind: 1,
                labels: vec![Label { name: "core".into(), value: format!("{c:02}") }],
                timestamps_unix_ms: ts.to_vec(),
                values: ts.iter().map(|t| *t as f64 / 1000.0 + c as f64).collect(),
            })
            .collect(),
        ..Batch::default()
    };
    let hour_ts = |h: i64| -> Vec<i64> { (0..360).map(|i| base + h * hour + i * 10_000).collect() };
    // 8 rounds of 12 hours; the last round also backfills points between the samples of hour 62
    // (sealed by round 5's stop, its block still within raw retention), and every round resends
    // the previous round's batches (duplicates by key).
    let mut expected: std::collections::BTreeSet<i64> = std::collections::BTreeSet::new();
    let mut pending: Vec<Batch> = Vec::new();
    let mut seq = 0;
    let (grpc, http) = (b24watch_e2e::free_addr(), b24watch_e2e::free_addr());
    let delays_ms = [40, 900, 10, 250, 120, 1500, 60, 400];
    let mut previous: Vec<Batch> = Vec::new();
    for (round, delay) in delays_ms.iter().enumerate() {
        let mut batches = std::mem::take(&mut pending);
        batches.extend(previous.iter().cloned());
        let mut fresh = Vec::new();
        for h in 0..12 {
            seq += 1;
            let ts = hour_ts(round as i64 * 12 + h);
            expected.extend(&ts);
            fresh.push(batch(seq, &ts));
        }
        if round == 7 {
            seq += 1;
            let late: Vec<i64> = (0..360).map(|i| base + 62 * hour + 5_000 + i * 10_000).collect();
            expected.extend(&late);
            fresh.push(batch(seq, &late));
        }
        batches.extend(fresh.iter().cloned());
        previous = fresh;
        let collector = Collector::start_on(&data, grpc, http, config);
        let url = collector.grpc_url();
        let sender = {
            let (url, token, batches) = (url.clone(), token.clone(), batches.clone());
            std::thread::spawn(move || b24watch_e2e::send(&url, &token, batches).is_ok())
        };
        if round % 2 == 0 {
            // Killed while it ingests and runs retention (started with old blocks to expire).
            std::thread::sleep(Duration::from_millis(*delay));
            collector.process.kill();
            if !sender.join().expect("sender") {
                pending = batches;
            }
        } else {
            // Everything acked, then killed while SIGTERM's sealing moves the head into blocks.
            assert!(sender.join().expect("sender"), "round {round}: batches stored");
            collector.process.signal(rustix::process::Signal::TERM);
            std::thread::sleep(Duration::from_millis(*delay));
            collector.process.kill();
        }
    }
    let collector = Collector::start_on(&data, grpc, http, config);
    let all: Vec<Batch> = pending.into_iter().chain(previous).collect();
    send(&collector.grpc_url(), &token, all).expect("the last unacked batches stored");
    let (from, to) = (base, base + 8 * 12 * hour - 1);
    let totals = |c: &Collector| -> Vec<(String, u64, f64)> {
        let answer = c.api(&format!("/api/v1/hosts/crash/series?name=load1&from={from}&to={to}&step={hour}"));
        answer["series"]
            .as_array()
            .expect("series")
            .iter()
            .map(|s| {
                let steps = s["steps"].as_array().expect("steps");
                let count: u64 = steps.iter().map(|st| st["count"].as_u64().expect("count")).sum();
                let sum: f64 = steps
                    .iter()
                    .map(|st| st["avg"].as_f64().expect("avg") * st["count"].as_f64().expect("count"))
                    .sum();
                (s["labels"].as_str().expect("labels").to_owned(), count, sum)
            })
            .collect()
    };
    let want_count = expected.len() as u64;
    let want_sum = |c: usize| expected.iter().map(|t| *t as f64 / 1000.0 + c as f64).sum::<f64>();
    let check = |got: &[(String, u64, f64)], when: &str| {
        assert_eq!(got.len(), SERIES, "{when}: {got:?}");
        for (c, (labels, count, sum)) in got.iter().enumerate() {
            assert_eq!(*count, want_count, "{when}: {labels}: points lost or counted twice");
            let want = want_sum(c);
            assert!((sum - want).abs() <= 1e-9 * want, "{when}: {labels}: sum {sum} vs {want}");
        }
    };
    check(&totals(&collector), "after the kills");
    let (status, _) = collector.process.terminate(Duration::from_secs(120));
    assert!(status.success());
    assert_eq!(b24watch_e2e::integrity_check(&data.join("b24watch.db")), "ok");
    // Sealed by the clean stop; after the start, retention removes raw samples older than two
    // days and the hour rollups still count everything.
    let collector = Collector::start_on(&data, grpc, http, config);
    let raw_gone = || {
        let old = collector.api(&format!("/api/v1/hosts/crash/series?name=load1&from={from}&to={}", from + 24 * hour));
        old["series"].as_array().is_some_and(Vec::is_empty)
    };
    b24watch_e2e::eventually("old raw samples expired", Duration::from_secs(60), || raw_gone().then_some(()));
    check(&totals(&collector), "after a clean restart and retention");
}
