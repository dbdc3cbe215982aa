//! CPU usage by mode from `/proc/stat`, as the share of time between two ticks.

use b24watch_proto::catalog::{CPU_CORES, CPU_MODE_RATIO, CPU_USAGE_RATIO};

use super::{Observation, SampleError, Sampler, UnixMs, read_proc};

/// Mode names in `/proc/stat` column order (guest time is already inside user and nice).
const MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

/// Aggregate jiffies per mode, in [`MODES`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct CpuTimes([u64; 8]);

/// Keeps the previous reading: usage is a difference, so the first tick emits only the CPU count.
#[derive(Debug, Default)]
pub(super) struct CpuSampler {
    prev: Option<CpuTimes>,
    buf: String,
}

/// Parses the aggregate `cpu` line and counts the `cpuN` lines of `/proc/stat`.
pub(super) fn parse_stat(text: &str) -> Result<(CpuTimes, u32), SampleError> {
    let mut total = None;
    let mut n_cpus = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        if rest.starts_with(' ') {
            let mut times = CpuTimes::default();
            let mut fields = rest.split_ascii_whitespace();
            for slot in &mut times.0 {
                // Older kernels lack the trailing columns; missing ones stay 0.
                let Some(field) = fields.next() else { break };
                *slot = field.parse().map_err(|_| SampleError::Parse(format!("bad cpu field {field:?}")))?;
            }
            total = Some(times);
        } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
            n_cpus += 1;
        }
    }
    let total = total.ok_or_else(|| SampleError::Parse("no aggregate cpu line in /proc/stat".into()))?;
    Ok((total, n_cpus))
}

/// Share of time per mode between two readings, or `None` when no time passed or counters went back.
pub(super) fn mode_ratios(prev: &CpuTimes, cur: &CpuTimes) -> Option<[f64; 8]> {
    let mut deltas = [0u64; 8];
    for (idx, delta) in deltas.iter_mut().enumerate() {
        *delta = cur.0[idx].checked_sub(prev.0[idx])?;
    }
    let total: u64 = deltas.iter().sum();
    if total == 0 {
        return None;
    }
    Some(deltas.map(|d| d as f64 / total as f64))
}

#[async_trait::async_trait]
impl Sampler for CpuSampler {
    fn name(&self) -> &'static str {
        "cpu"
    }

    async fn sample(&mut self, at: UnixMs, out: &mut Vec<Observation>) -> Result<(), SampleError> {
        read_proc("/proc/stat", &mut self.buf)?;
        let (cur, n_cpus) = parse_stat(&self.buf)?;
        out.push(Observation::new(CPU_CORES, f64::from(n_cpus), at));
        if let Some(ratios) = self.prev.and_then(|prev| mode_ratios(&prev, &cur)) {
            let idle = ratios[3] + ratios[4];
            out.push(Observation::new(CPU_USAGE_RATIO, (1.0 - idle).clamp(0.0, 1.0), at));
            for (mode, ratio) in MODES.iter().zip(ratios) {
                out.push(Observation::labeled(CPU_MODE_RATIO, vec![("mode", (*mode).to_owned())], ratio, at));
            }
        }
        self.prev = Some(cur);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = include_str!("../../tests/fixtures/proc_stat.txt");

    #[test]
    fn proc_stat_fixture_parses_aggregate_and_counts_cpus() {
        let (times, n_cpus) = parse_stat(STAT).expect("fixture parses");
        assert_eq!(n_cpus, 2);
        assert_eq!(times.0, [10132153, 290696, 3084719, 46828483, 16683, 0, 25195, 0]);
    }

    #[test]
    fn usage_is_share_of_non_idle_time_between_ticks() {
        let prev = CpuTimes([100, 0, 100, 700, 100, 0, 0, 0]);
        let cur = CpuTimes([200, 0, 200, 1300, 300, 0, 0, 0]);
        let ratios = mode_ratios(&prev, &cur).expect("time passed");
        assert_eq!(ratios[0], 0.1);
        assert_eq!(ratios[3], 0.6);
        assert_eq!(ratios[4], 0.2);
        assert!((ratios.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn counters_going_backwards_yield_no_ratio() {
        let prev = CpuTimes([200, 0, 0, 0, 0, 0, 0, 0]);
        let cur = CpuTimes([100, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(mode_ratios(&prev, &cur), None);
        assert_eq!(mode_ratios(&cur, &cur), None);
    }

    #[test]
    fn old_kernel_without_steal_column_parses() {
        let (times, n_cpus) = parse_stat("cpu  1 2 3 4 5 6 7\ncpu0 1 2 3 4 5 6 7\n").expect("parses");
        assert_eq!(times.0, [1, 2, 3, 4, 5, 6, 7, 0]);
        assert_eq!(n_cpus, 1);
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(parse_stat("intr 1 2 3\n"), Err(SampleError::Parse(_))));
        assert!(matches!(parse_stat("cpu  1 x 3\n"), Err(SampleError::Parse(_))));
    }
}
