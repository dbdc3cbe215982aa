//! Resources in the monthly report (issue 15 item 5) through the real store: a known linear disk growth gives the report's growth and days-until-full, from the head and from hour rollups after raw samples expired.

use std::sync::Arc;

use b24watch_collector::config::SlaConfig;
use b24watch_collector::report;
use b24watch_collector::resources::{Forecast, Resources};
use b24watch_collector::store::query::Reader;
use b24watch_collector::store::{self, IngestBatch, Retention, SeriesIn, Store};
use b24watch_collector::uptime::Uptime;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;
const HOST: &str = "db-01";
const IDLE_HOST: &str = "idle-01";
const URL: &str = "https://portal.example/";
const ROOT: &str = r#"device="/dev/sda1",fstype="ext4",mountpoint="/""#;
const BACKUP: &str = r#"device="/dev/sdb1",fstype="xfs",mountpoint="/var/backup""#;
/// Disk size of `/`.
const SIZE: f64 = 100.0 * GIB;
/// Used bytes of `/` at the first sample, and growth per 10-minute sample.
const USED0: f64 = 40.0 * GIB;
const STEP_GROWTH: f64 = 2.0 * MIB;

fn sla_config() -> SlaConfig {
    SlaConfig {
        target: 0.995,
        targets: Default::default(),
        contract_targets: Default::default(),
        rules: b24watch_collector::sla::Rules::default(),
        calendar: None,
        timezone: jiff::tz::TimeZone::UTC,
        language: b24watch_collector::i18n::Lang::En,
        maintenance: Vec::new(),
        contracts: Default::default(),
    }
}

/// The month two months before now (`YYYY-MM`, its start and end): old enough for any raw and
/// minute retention of a day or two to have expired it.
fn old_month() -> (String, i64, i64) {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let this = now.date().first_of_month();
    let start = this.checked_sub(jiff::ToSpan::months(2)).expect("month");
    let end = this.checked_sub(jiff::ToSpan::months(1)).expect("month");
    let ms = |d: jiff::civil::Date| d.to_zoned(jiff::tz::TimeZone::UTC).expect("date").timestamp().as_millisecond();
    (format!("{:04}-{:02}", start.year(), start.month()), ms(start), ms(end))
}

/// Used bytes of `/` at `t` (the known line; `first` is the first sample's time).
fn used_root(t: i64, first: i64) -> f64 {
    USED0 + STEP_GROWTH * ((t - first) / (10 * MIN)) as f64
}

/// Hour index `k` (from the first monitored hour) of the gauges that vary per hour.
fn cpu(k: i64) -> f64 {
    (k % 20) as f64 / 20.0
}
fn probe(k: i64) -> f64 {
    0.1 + (k % 10) as f64 * 0.01
}
fn mem_available(k: i64) -> f64 {
    6.0 * GIB - (k % 4) as f64 * 0.5 * GIB
}

fn open(dir: &std::path::Path, retention: Retention) -> (Store, Reader, store::WriterHandle) {
    Store::open(dir, 10_000, None, 10_000, retention).expect("store")
}

/// Points of one series: name, labels, (time, value).
type SeriesPoints<'a> = Vec<(&'a str, &'a str, Vec<(i64, f64)>)>;

fn ingest(rt: &tokio::runtime::Runtime, store: &Store, seq: u64, at: i64, series: SeriesPoints<'_>) {
    let series = series
        .into_iter()
        .enumerate()
        .map(|(i, (name, labels, points))| SeriesIn::new(i as u32, name, labels, 1, points))
        .collect();
    let batch = IngestBatch::direct(HOST, seq, at, series);
    let outcome = rt.block_on(store.ingest(batch)).expect("ingest");
    assert!(matches!(outcome, store::Outcome::Stored { .. }), "{outcome:?}");
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Nearest-rank percentile, computed here independently of the collector.
fn rank(values: &[f64], p: usize) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[(p * v.len()).div_ceil(100) - 1]
}

/// Issue 15 acceptance 3 and item 5: a host monitored from the 3rd of a month whose `/` grows
/// 2 MiB every 10 minutes, a backup disk that shrinks, CPU, load, memory and a probed portal.
/// The report's growth, rate and days until full are those of the line; the CPU, memory and
/// response figures are the hourly values' average and percentiles; a host without data says so;
/// the same figures come back from the hour rollups once raw and minute data expired.
#[test]
fn a_known_linear_disk_growth_gives_the_reports_growth_and_days_until_full() {
    let (month, from, to) = old_month();
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let admin = store::admin::Admin::open(dir.path()).expect("admin");
    let first = from + 2 * DAY;
    admin.enroll(HOST, false, first).expect("enroll");
    admin.enroll(IDLE_HOST, false, first).expect("enroll");
    drop(admin);
    let (store, reader, writer) = open(dir.path(), Retention::default());
    // One batch per hour with six 10-minute samples of every series (one sample per hour for the
    // gauges that vary per hour, so their hourly averages are known exactly).
    let hours = (to - first) / HOUR;
    for k in 0..hours {
        let hour = first + k * HOUR;
        let ticks: Vec<i64> = (0..6).map(|i| hour + i * 10 * MIN).collect();
        let root_avail: Vec<(i64, f64)> = ticks.iter().map(|t| (*t, SIZE - used_root(*t, first))).collect();
        let backup_used = |t: i64| 500.0 * GIB - ((t - first) / (10 * MIN)) as f64 * MIB;
        let backup_avail: Vec<(i64, f64)> = ticks.iter().map(|t| (*t, 1024.0 * GIB - backup_used(*t))).collect();
        let size = |bytes: f64| ticks.iter().map(|t| (*t, bytes)).collect::<Vec<_>>();
        let at = hour + 30 * MIN;
        ingest(
            &rt,
            &store,
            k as u64 + 1,
            at,
            vec![
                ("filesystem_size_bytes", ROOT, size(SIZE)),
                ("filesystem_avail_bytes", ROOT, root_avail),
                ("filesystem_size_bytes", BACKUP, size(1024.0 * GIB)),
                ("filesystem_avail_bytes", BACKUP, backup_avail),
                ("cpu_usage_ratio", "", vec![(at, cpu(k))]),
                ("load1", "", size(2.0)),
                ("memory_total_bytes", "", size(8.0 * GIB)),
                ("memory_available_bytes", "", vec![(at, mem_available(k))]),
                ("probe_duration_seconds", &format!("target=\"{URL}\""), vec![(at, probe(k))]),
            ],
        );
    }
    let reader = Arc::new(reader);
    let now = to + 14 * DAY;
    let report_of = |reader: &Arc<Reader>| {
        let uptime = Uptime::new(sla_config(), Arc::clone(reader));
        report::build(&uptime, &month, None, now).expect("report")
    };
    let built = report_of(&reader);
    let host = built.hosts.iter().find(|h| h.host == HOST).expect("host");
    let r = &host.resources.clone();

    // The known line: first and last hour's average (samples at :00..:50, mean time :25).
    let last_hour = first + (hours - 1) * HOUR;
    let hour_avg = |hour: i64| (0..6).map(|i| used_root(hour + i * 10 * MIN, first)).sum::<f64>() / 6.0;
    let (start, end) = (hour_avg(first), hour_avg(last_hour));
    let per_day = STEP_GROWTH * (DAY / (10 * MIN)) as f64;
    let avail_end = SIZE - end;
    let root = r.disks.iter().find(|d| d.mountpoint == "/").expect("root disk");
    assert_eq!((root.start_ms, root.end_ms, root.hours), (first, last_hour, hours as usize));
    assert_eq!(root.device, "/dev/sda1");
    assert!(close(root.used_start_bytes, start) && close(root.used_end_bytes, end), "{root:?}");
    assert!(close(root.growth_bytes, end - start), "{root:?}");
    assert!(close(root.growth_bytes, per_day * (last_hour - first) as f64 / DAY as f64), "{root:?}");
    assert!(close(root.growth_bytes_per_day.expect("rate"), per_day), "{root:?} vs {per_day}");
    assert_eq!(root.forecast, Forecast::Growing);
    let days = root.days_until_full.expect("forecast");
    assert!(close(days, avail_end / per_day), "{days} vs {}", avail_end / per_day);
    eprintln!(
        "/: used {:.3} GiB -> {:.3} GiB, growth {:.3} GiB ({:.1} MiB/day), {days:.2} days until full",
        start / GIB,
        end / GIB,
        (end - start) / GIB,
        per_day / MIB
    );
    let backup = r.disks.iter().find(|d| d.mountpoint == "/var/backup").expect("backup disk");
    assert_eq!((backup.forecast, backup.days_until_full), (Forecast::NotGrowing, None), "{backup:?}");
    assert!(backup.growth_bytes < 0.0);

    // Hourly values: CPU, load, memory, response time.
    let ks: Vec<i64> = (0..hours).collect();
    let cpus: Vec<f64> = ks.iter().map(|k| cpu(*k)).collect();
    let s = r.cpu_usage_ratio.expect("cpu");
    assert!(close(s.avg, cpus.iter().sum::<f64>() / cpus.len() as f64), "{s:?}");
    assert_eq!((s.median, s.p95, s.hours), (rank(&cpus, 50), rank(&cpus, 95), hours as usize));
    assert_eq!(r.load1.map(|s| (s.avg, s.p95)), Some((2.0, 2.0)));
    let used: Vec<f64> = ks.iter().map(|k| 8.0 * GIB - mem_available(*k)).collect();
    let m = r.memory_used_bytes.expect("memory");
    assert_eq!((m.median, m.p95, m.max), (rank(&used, 50), rank(&used, 95), 3.5 * GIB));
    assert_eq!(r.memory_total_bytes, Some(8.0 * GIB));
    let probes: Vec<f64> = ks.iter().map(|k| probe(*k)).collect();
    assert_eq!(r.response.len(), 1);
    assert_eq!(r.response[0].target, URL);
    assert_eq!((r.response[0].seconds.median, r.response[0].seconds.p95), (rank(&probes, 50), rank(&probes, 95)));

    // A host without data: no figures, and the page says so.
    let idle = built.hosts.iter().find(|h| h.host == IDLE_HOST).expect("idle host");
    assert_eq!(idle.resources, Resources::default());

    // The three formats carry the figures.
    let json = serde_json::to_value(&built).expect("json");
    let root_json = json["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["host"] == HOST))
        .map(|h| h["resources"]["disks"][0].clone())
        .expect("json disk");
    assert_eq!(root_json["days_until_full"].as_f64(), Some(days));
    assert_eq!(root_json["forecast"], "growing");
    let csv = report::csv(&built);
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    assert!(csv.lines().all(|l| l.split(',').count() == header.len()), "{csv}");
    let row: Vec<&str> =
        csv.lines().find(|l| l.contains(",disk_used_bytes,/,")).expect("disk row").split(',').collect();
    let col = |name: &str| row[header.iter().position(|h| *h == name).expect("column")];
    assert_eq!(col("days_until_full").parse::<f64>().ok(), Some(days));
    assert_eq!(col("growth").parse::<f64>().ok(), Some(root.growth_bytes));
    assert_eq!(col("forecast"), "growing");
    let html = report::html(&built, b24watch_collector::i18n::Lang::En);
    assert!(html.contains(&format!("<td class=\"days-until-full\">{days:.0}</td>")), "{html}");
    assert!(html.contains("not growing") && html.contains("No resource data in this period."));

    // Stop (the head is sealed into blocks and rollups), reopen with raw and minute data kept a
    // day: the month is answered by the hour rollups, with the same figures.
    drop(built);
    drop(store);
    drop(reader);
    writer.join();
    let retention = Retention { raw_ms: DAY, minute_ms: 2 * DAY, ..Retention::default() };
    let (store, reader, writer) = open(dir.path(), retention);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let raw = reader.series_points(HOST, "filesystem_avail_bytes", from, to, 10).expect("raw").0;
        let steps = reader.series_steps(HOST, "filesystem_avail_bytes", from, to - 1, 10 * MIN).expect("steps");
        // Ten-minute steps answered by hour rollups only: one step per hour.
        if raw.is_empty() && steps.iter().all(|s| s.steps.len() == hours as usize) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "raw samples or minute rollups still there");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let reader = Arc::new(reader);
    let again = report_of(&reader);
    let again = &again.hosts.iter().find(|h| h.host == HOST).expect("host").resources;
    assert_eq!(again, r, "figures from the hour rollups after raw samples expired");
    drop(store);
    drop(reader);
    writer.join();
}
