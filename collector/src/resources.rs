//! A host's resources over a report period from the hour tier of the history: CPU, load, memory, disk per mount with growth and a days-until-full forecast, portal response time.
//!
//! Every figure is computed from hourly values (the hour rollups, or the raw samples of hours not
//! yet rolled up), read through [`Reader::series_steps`] one series name at a time: each read is
//! its own short transaction, so a report never pins the WAL (RELIABILITY.md T39), and months
//! whose raw samples have expired read the same figures from the rollups (kept two years by
//! default). A host monitored for part of the period is judged on the hours it has; `hours`
//! says how many.

use std::collections::BTreeMap;

use b24watch_proto::catalog;
use serde::Serialize;

use crate::sla::Ms;
use crate::store::Error;
use crate::store::history::SeriesSteps;
use crate::store::query::Reader;

const HOUR: Ms = 3_600_000;
const DAY: Ms = 86_400_000;
/// A disk forecast needs values at least this far apart.
pub const FORECAST_MIN_SPAN_MS: Ms = DAY;

/// Average, median, 95th percentile and maximum of a period's hourly values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    /// Mean of the hourly averages.
    pub avg: f64,
    /// Median of the hourly averages (nearest rank).
    pub median: f64,
    /// 95th percentile of the hourly averages (nearest rank: 95 % of the hours are at or below it).
    pub p95: f64,
    /// Largest hourly average.
    pub max: f64,
    /// Hours with data.
    pub hours: usize,
}

impl Stat {
    /// The figures of `values`; `None` when there are none (NaN values are left out).
    pub fn of(values: &[f64]) -> Option<Stat> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        Some(Stat {
            avg: sorted.iter().sum::<f64>() / sorted.len() as f64,
            median: percentile(&sorted, 50.0),
            p95: percentile(&sorted, 95.0),
            max: sorted[sorted.len() - 1],
            hours: sorted.len(),
        })
    }
}

/// Nearest-rank percentile `p` (0..=100) of sorted, non-empty values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0 * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// What the disk forecast could say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Forecast {
    /// Used space grows: `days_until_full` is set.
    Growing,
    /// Used space stays the same or shrinks: no forecast.
    NotGrowing,
    /// Nothing is available to non-root users any more.
    Full,
    /// Values span less than [`FORECAST_MIN_SPAN_MS`]: no forecast.
    TooLittleData,
}

impl Forecast {
    /// Text for people.
    pub fn text(self) -> &'static str {
        match self {
            Forecast::Growing => "growing",
            Forecast::NotGrowing => "not growing",
            Forecast::Full => "full",
            Forecast::TooLittleData => "too little data",
        }
    }
}

/// One filesystem over the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disk {
    /// Mount point.
    pub mountpoint: String,
    /// Device.
    pub device: String,
    /// Size in the last hour with data, bytes.
    pub size_bytes: f64,
    /// Hour of the first value in the period (unix ms).
    pub start_ms: Ms,
    /// Used bytes (size − available) then (average of that hour).
    pub used_start_bytes: f64,
    /// Hour of the last value in the period (unix ms).
    pub end_ms: Ms,
    /// Used bytes in that hour.
    pub used_end_bytes: f64,
    /// Available bytes (to non-root users) in that hour.
    pub avail_end_bytes: f64,
    /// `used_end_bytes − used_start_bytes`.
    pub growth_bytes: f64,
    /// Least-squares slope of the hourly used bytes, per day (set when values span a day).
    pub growth_bytes_per_day: Option<f64>,
    /// `avail_end_bytes / growth_bytes_per_day` when growing.
    pub days_until_full: Option<f64>,
    /// What the forecast could say.
    pub forecast: Forecast,
    /// Hours with data.
    pub hours: usize,
}

/// Response time of one probed URL.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response {
    /// Probed URL.
    pub target: String,
    /// Seconds, over the hourly averages.
    pub seconds: Stat,
}

/// A host's resources over a period; fields are absent (null) when no data was received.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Resources {
    /// CPU busy share (0..1).
    pub cpu_usage_ratio: Option<Stat>,
    /// Load average over 1 minute.
    pub load1: Option<Stat>,
    /// Memory size in the last hour with data, bytes.
    pub memory_total_bytes: Option<f64>,
    /// Memory in use (total − available), bytes.
    pub memory_used_bytes: Option<Stat>,
    /// Memory in use as a share of the total (0..1).
    pub memory_used_ratio: Option<Stat>,
    /// Filesystems, by mount point.
    pub disks: Vec<Disk>,
    /// Portal response time per probed URL.
    pub response: Vec<Response>,
}

/// Label text and hourly `(hour start, avg)` values of each series.
type Hourly = Vec<(String, Vec<(Ms, f64)>)>;

/// Hourly averages of every series `name` of `host` overlapping `[from, to)`.
fn hourly(reader: &Reader, host: &str, name: &str, from: Ms, to: Ms) -> Result<Hourly, Error> {
    if to <= from {
        return Ok(Vec::new());
    }
    let series: Vec<SeriesSteps> = reader.series_steps(host, name, from, to - 1, HOUR)?;
    Ok(series.into_iter().map(|s| (s.labels, s.steps.iter().map(|st| (st.t, st.avg)).collect())).collect())
}

/// The hourly values of the one unlabelled series `name` (several label sets: all of them).
fn values(reader: &Reader, host: &str, name: &str, from: Ms, to: Ms) -> Result<Vec<(Ms, f64)>, Error> {
    let mut out: Vec<(Ms, f64)> = hourly(reader, host, name, from, to)?.into_iter().flat_map(|(_, v)| v).collect();
    out.sort_by_key(|p| p.0);
    Ok(out)
}

/// The resources of `host` in `[from, to)`.
///
/// # Errors
/// SQLite errors.
pub fn of_host(reader: &Reader, host: &str, from: Ms, to: Ms) -> Result<Resources, Error> {
    let only_values = |v: &[(Ms, f64)]| v.iter().map(|p| p.1).collect::<Vec<f64>>();
    let cpu = values(reader, host, catalog::CPU_USAGE_RATIO, from, to)?;
    let load = values(reader, host, catalog::LOAD1, from, to)?;
    let total: BTreeMap<Ms, f64> = values(reader, host, catalog::MEMORY_TOTAL_BYTES, from, to)?.into_iter().collect();
    let available = values(reader, host, catalog::MEMORY_AVAILABLE_BYTES, from, to)?;
    let used: Vec<(f64, f64)> =
        available.iter().filter_map(|(t, avail)| total.get(t).map(|total| (total - avail, *total))).collect();
    let sizes: BTreeMap<String, BTreeMap<Ms, f64>> = hourly(reader, host, catalog::FILESYSTEM_SIZE_BYTES, from, to)?
        .into_iter()
        .map(|(labels, v)| (labels, v.into_iter().collect()))
        .collect();
    let mut disks = Vec::new();
    for (labels, avail) in hourly(reader, host, catalog::FILESYSTEM_AVAIL_BYTES, from, to)? {
        let Some(size) = sizes.get(&labels) else { continue };
        // (hour, used, available, size)
        let hours: Vec<(Ms, f64, f64, f64)> =
            avail.iter().filter_map(|(t, a)| size.get(t).map(|s| (*t, s - a, *a, *s))).collect();
        if let Some(disk) = disk(&labels, &hours) {
            disks.push(disk);
        }
    }
    disks.sort_by(|a, b| (&a.mountpoint, &a.device).cmp(&(&b.mountpoint, &b.device)));
    let response = hourly(reader, host, catalog::PROBE_DURATION_SECONDS, from, to)?
        .into_iter()
        .filter_map(|(labels, v)| {
            Stat::of(&only_values(&v))
                .map(|seconds| Response { target: label(&labels, "target").unwrap_or(labels), seconds })
        })
        .collect();
    Ok(Resources {
        cpu_usage_ratio: Stat::of(&only_values(&cpu)),
        load1: Stat::of(&only_values(&load)),
        memory_total_bytes: total.values().next_back().copied(),
        memory_used_bytes: Stat::of(&used.iter().map(|u| u.0).collect::<Vec<_>>()),
        memory_used_ratio: Stat::of(&used.iter().filter(|u| u.1 > 0.0).map(|u| u.0 / u.1).collect::<Vec<_>>()),
        disks,
        response,
    })
}

/// One filesystem's figures from its hourly `(hour, used, available, size)` values, sorted by hour.
pub fn disk(labels: &str, hours: &[(Ms, f64, f64, f64)]) -> Option<Disk> {
    let (first, last) = (hours.first()?, hours.last()?);
    let slope = (last.0 - first.0 >= FORECAST_MIN_SPAN_MS).then(|| slope_per_day(hours)).flatten();
    let (forecast, days_until_full) = match slope {
        _ if last.2 <= 0.0 => (Forecast::Full, Some(0.0)),
        None => (Forecast::TooLittleData, None),
        Some(s) if s > 0.0 => (Forecast::Growing, Some(last.2 / s)),
        Some(_) => (Forecast::NotGrowing, None),
    };
    Some(Disk {
        mountpoint: label(labels, "mountpoint").unwrap_or_default(),
        device: label(labels, "device").unwrap_or_default(),
        size_bytes: last.3,
        start_ms: first.0,
        used_start_bytes: first.1,
        end_ms: last.0,
        used_end_bytes: last.1,
        avail_end_bytes: last.2,
        growth_bytes: last.1 - first.1,
        growth_bytes_per_day: slope,
        days_until_full,
        forecast,
        hours: hours.len(),
    })
}

/// Least-squares slope of used bytes over time, bytes per day.
fn slope_per_day(hours: &[(Ms, f64, f64, f64)]) -> Option<f64> {
    let n = hours.len() as f64;
    let t0 = hours.first()?.0;
    let x = |h: &(Ms, f64, f64, f64)| (h.0 - t0) as f64 / DAY as f64;
    let mean_x = hours.iter().map(x).sum::<f64>() / n;
    let mean_y = hours.iter().map(|h| h.1).sum::<f64>() / n;
    let sxx: f64 = hours.iter().map(|h| (x(h) - mean_x).powi(2)).sum();
    let sxy: f64 = hours.iter().map(|h| (x(h) - mean_x) * (h.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The value of label `key` in canonical label text (`a="x",b="y"`, exposition escapes).
pub fn label(labels: &str, key: &str) -> Option<String> {
    let mut rest = labels;
    while !rest.is_empty() {
        let eq = rest.find("=\"")?;
        let name = &rest[..eq];
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => return None,
                },
                '"' => {
                    end = Some(eq + 2 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        if name == key {
            return Some(value);
        }
        rest = rest[end?..].trim_start_matches(',');
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_read_with_their_escapes() {
        let labels = r#"device="/dev/sda1",fstype="ext4",mountpoint="/srv/a \"b\"\\c""#;
        assert_eq!(label(labels, "device").as_deref(), Some("/dev/sda1"));
        assert_eq!(label(labels, "mountpoint").as_deref(), Some(r#"/srv/a "b"\c"#));
        assert_eq!(label(labels, "fstype").as_deref(), Some("ext4"));
        assert_eq!(label(labels, "nope"), None);
        assert_eq!(label("", "a"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = Stat::of(&v).expect("stat");
        assert_eq!((s.median, s.p95, s.max, s.hours), (10.0, 19.0, 20.0, 20));
        assert_eq!(s.avg, 10.5);
        assert_eq!(Stat::of(&[3.0]).map(|s| (s.median, s.p95)), Some((3.0, 3.0)));
        assert_eq!(Stat::of(&[]), None);
    }

    #[test]
    fn a_shrinking_disk_has_no_forecast_and_a_short_span_too_little_data() {
        let shrinking: Vec<_> = (0..48).map(|h| (h * HOUR, 100.0 - h as f64, 900.0 + h as f64, 1000.0)).collect();
        let d = disk("mountpoint=\"/\"", &shrinking).expect("disk");
        assert_eq!((d.forecast, d.days_until_full, d.growth_bytes), (Forecast::NotGrowing, None, -47.0));
        let short: Vec<_> = (0..5).map(|h| (h * HOUR, 100.0 + h as f64, 900.0 - h as f64, 1000.0)).collect();
        let d = disk("mountpoint=\"/\"", &short).expect("disk");
        assert_eq!((d.forecast, d.days_until_full, d.growth_bytes_per_day), (Forecast::TooLittleData, None, None));
        let full = [(0, 1000.0, 0.0, 1000.0)];
        assert_eq!(disk("", &full).map(|d| d.forecast), Some(Forecast::Full));
        assert_eq!(disk("", &[]), None);
    }
}
