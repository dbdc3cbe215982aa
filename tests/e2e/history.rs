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
    let (blocks, pending): (i64, i64) = db
        .query_row(
            "SELECT (SELECT SUM(n) FROM sample_block), (SELECT COUNT(*) FROM sample_pending WHERE length(data) > 0)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("counts");
    assert_eq!((blocks, pending), (3 * 360, 0), "a clean stop seals every sample once");
}
