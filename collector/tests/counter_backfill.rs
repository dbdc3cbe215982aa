//! A counter's hourly increases through the real store when an agent's spool backfills an earlier hour after the later hours were stored and rolled up: the hour steps of the series API sum to the counter's true increase, with the backfill still in the head and after it was sealed and compacted.
//!
//! A counter's increase over an hour starts from the last value of the hour before, so a
//! backfill that gives an hour its first points (the agent was offline) or a later last value
//! moves the next hour's increase as well.

use b24watch_collector::store::history::{SeriesSteps, Step};
use b24watch_collector::store::query::Reader;
use b24watch_collector::store::{self, IngestBatch, Retention, SeriesIn, Store, WriterHandle};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const HOST: &str = "mail-01";
const NAME: &str = "mail_sent_total";
/// Wire number of a counter.
const COUNTER: i32 = 2;

fn open(dir: &std::path::Path) -> (Store, Reader, WriterHandle) {
    Store::open(dir, 10_000, None, 10_000, Retention::default()).expect("store")
}

/// A clean stop seals the head into blocks and compacts (rolls up) every past hour; then reopens.
fn restart(
    dir: &std::path::Path,
    (store, reader, writer): (Store, Reader, WriterHandle),
) -> (Store, Reader, WriterHandle) {
    drop(store);
    drop(reader);
    writer.join();
    open(dir)
}

fn ingest(rt: &tokio::runtime::Runtime, store: &Store, seq: u64, series: Vec<(&str, Vec<(i64, f64)>)>) {
    let at = series.iter().flat_map(|(_, p)| p.iter().map(|p| p.0)).max().unwrap_or(0);
    let series = series
        .into_iter()
        .enumerate()
        .map(|(i, (labels, points))| SeriesIn::new(i as u32, NAME, labels, COUNTER, points))
        .collect();
    let batch = IngestBatch::direct(HOST, seq, at, series);
    let outcome = rt.block_on(store.ingest(batch)).expect("ingest");
    assert!(matches!(outcome, store::Outcome::Stored { .. }), "{outcome:?}");
}

/// The counter: 7 mails a minute since `t0`, one sample every 10 minutes.
fn samples(t0: i64, from: i64, to: i64) -> Vec<(i64, f64)> {
    (from..to).step_by(10 * MIN as usize).map(|t| (t, ((t - t0) / MIN * 7) as f64)).collect()
}

/// Increase per hour of sorted points, computed here independently (no resets in this test):
/// each point's growth since the point before, in the hour of the point.
fn hourly_truth(points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    for (i, &(t, v)) in points.iter().enumerate() {
        let inc = if i == 0 { 0.0 } else { v - points[i - 1].1 };
        let hour = t - t.rem_euclid(HOUR);
        match out.last_mut() {
            Some((h, sum)) if *h == hour => *sum += inc,
            _ => out.push((hour, inc)),
        }
    }
    out
}

fn steps<'a>(got: &'a [SeriesSteps], labels: &str) -> &'a [Step] {
    &got.iter().find(|s| s.labels == labels).expect("series").steps
}

/// The agent was offline for hour H (no points at all) or for the second half of hour H; hours
/// H+1 and H+2 were delivered and rolled up before its spool delivered the missing points.
#[test]
fn hour_increases_sum_to_the_counters_growth_after_a_backfill_before_rolled_up_hours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    // Four past hours (H-1 .. H+2), three days ago: raw samples kept, every hour over.
    let t0 = now - 3 * 24 * HOUR;
    let t0 = t0 - t0.rem_euclid(HOUR);
    let h = t0 + HOUR;
    let admin = store::admin::Admin::open(dir.path()).expect("admin");
    admin.enroll(HOST, false, t0).expect("enroll");
    drop(admin);
    let (outage, tail) = (r#"case="outage""#, r#"case="late_tail""#);
    let mut all_outage = samples(t0, t0, h);
    all_outage.extend(samples(t0, h + HOUR, h + 3 * HOUR));
    let mut all_tail = samples(t0, t0, h + 30 * MIN);
    all_tail.extend(samples(t0, h + HOUR, h + 3 * HOUR));
    let mut running = open(dir.path());
    ingest(&rt, &running.0, 1, vec![(outage, all_outage.clone()), (tail, all_tail.clone())]);
    running = restart(dir.path(), running);
    // Days later the spool delivers what was missing.
    let late_outage = samples(t0, h, h + HOUR);
    let late_tail = samples(t0, h + 30 * MIN, h + HOUR);
    ingest(&rt, &running.0, 2, vec![(outage, late_outage.clone()), (tail, late_tail.clone())]);
    all_outage = store::block::merge(&all_outage, &late_outage);
    all_tail = store::block::merge(&all_tail, &late_tail);
    let (from, to) = (t0, h + 3 * HOUR - 1);
    for stage in ["backfill in the head", "sealed and rolled up"] {
        if stage != "backfill in the head" {
            running = restart(dir.path(), running);
        }
        let got = running.1.series_steps(HOST, NAME, from, to, HOUR).expect("hour steps");
        let minutes = running.1.series_steps(HOST, NAME, from, to, MIN).expect("minute steps");
        for (labels, all) in [(outage, &all_outage), (tail, &all_tail)] {
            let hourly = steps(&got, labels);
            let growth = all.last().expect("points").1 - all[0].1;
            let sum: f64 = hourly.iter().map(|s| s.increase).sum();
            let by_hour: Vec<(i64, f64)> = hourly.iter().map(|s| (s.t, s.increase)).collect();
            assert_eq!(sum, growth, "{stage}, {labels}: hourly increases {by_hour:?}");
            assert_eq!(by_hour, hourly_truth(all), "{stage}, {labels}");
            let per_minute: f64 = steps(&minutes, labels).iter().map(|s| s.increase).sum();
            assert_eq!(per_minute, growth, "{stage}, {labels}: minute steps");
        }
    }
    let (store, reader, writer) = running;
    drop(store);
    drop(reader);
    writer.join();
}
