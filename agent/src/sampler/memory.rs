//! Memory and swap from `/proc/meminfo`.

use b24watch_proto::catalog::{MEMORY_AVAILABLE_BYTES, MEMORY_TOTAL_BYTES, SWAP_FREE_BYTES, SWAP_TOTAL_BYTES};

use super::{Observation, SampleError, Sampler, UnixMs, read_proc};

/// Stateless: `/proc/meminfo` is a snapshot.
#[derive(Debug)]
pub(super) struct MemorySampler;

/// The `/proc/meminfo` fields we report, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MemInfo {
    pub(super) total: u64,
    pub(super) available: u64,
    pub(super) swap_total: u64,
    pub(super) swap_free: u64,
}

/// Parses `/proc/meminfo`. Kernels before 3.14 lack `MemAvailable`; it is then estimated as
/// free + buffers + cached, which is what `free` did on those kernels.
pub(super) fn parse_meminfo(text: &str) -> Result<MemInfo, SampleError> {
    let (mut total, mut available, mut free, mut buffers, mut cached) = (None, None, 0, 0, 0);
    let (mut swap_total, mut swap_free) = (0, 0);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_ascii_whitespace();
        let Some(Ok(value)) = parts.next().map(str::parse::<u64>) else {
            continue;
        };
        let bytes = if parts.next() == Some("kB") { value.saturating_mul(1024) } else { value };
        match key {
            "MemTotal" => total = Some(bytes),
            "MemAvailable" => available = Some(bytes),
            "MemFree" => free = bytes,
            "Buffers" => buffers = bytes,
            "Cached" => cached = bytes,
            "SwapTotal" => swap_total = bytes,
            "SwapFree" => swap_free = bytes,
            _ => {}
        }
    }
    let total = total.ok_or_else(|| SampleError::Parse("no MemTotal in /proc/meminfo".into()))?;
    let available = available.unwrap_or(free + buffers + cached);
    Ok(MemInfo { total, available, swap_total, swap_free })
}

#[async_trait::async_trait]
impl Sampler for MemorySampler {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn sample(&mut self, at: UnixMs, out: &mut Vec<Observation>) -> Result<(), SampleError> {
        let mut buf = String::new();
        read_proc("/proc/meminfo", &mut buf)?;
        let info = parse_meminfo(&buf)?;
        out.extend([
            Observation::new(MEMORY_TOTAL_BYTES, info.total as f64, at),
            Observation::new(MEMORY_AVAILABLE_BYTES, info.available as f64, at),
            Observation::new(SWAP_TOTAL_BYTES, info.swap_total as f64, at),
            Observation::new(SWAP_FREE_BYTES, info.swap_free as f64, at),
        ]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fixture_reports_bytes() {
        let info = parse_meminfo(include_str!("../../tests/fixtures/proc_meminfo.txt")).expect("parses");
        assert_eq!(
            info,
            MemInfo {
                total: 24_613_652 * 1024,
                available: 23_101_120 * 1024,
                swap_total: 2_097_148 * 1024,
                swap_free: 2_000_000 * 1024,
            }
        );
    }

    #[test]
    fn old_kernel_without_mem_available_estimates_it() {
        let info =
            parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 300 kB\n").expect("parses");
        assert_eq!(info.available, 420 * 1024);
    }

    #[test]
    fn meminfo_without_total_is_a_parse_error() {
        assert!(parse_meminfo("MemFree: 100 kB\n").is_err());
    }
}
