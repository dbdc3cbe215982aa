//! Disk IO counters per whole block device from `/proc/diskstats`.

use b24watch_proto::catalog::{DISK_IO_TIME_SECONDS_TOTAL, DISK_READ_BYTES_TOTAL, DISK_WRITTEN_BYTES_TOTAL};

use super::HostConfig;
use super::{Observation, SampleError, Sampler, UnixMs, read_proc};

/// `/proc/diskstats` counts sectors of 512 bytes whatever the device's real sector size.
const SECTOR_BYTES: f64 = 512.0;

/// Counters of one device.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DiskStats {
    pub(super) device: String,
    pub(super) read_bytes: f64,
    pub(super) written_bytes: f64,
    pub(super) io_seconds: f64,
}

/// Reports whole disks; partitions would count the same IO twice.
#[derive(Debug)]
pub(super) struct DiskIoSampler {
    exclude_prefixes: Vec<String>,
    buf: String,
}

impl DiskIoSampler {
    pub(super) fn new(cfg: &HostConfig) -> Self {
        DiskIoSampler { exclude_prefixes: cfg.exclude_device_prefixes.clone(), buf: String::new() }
    }
}

/// Parses `/proc/diskstats`, keeping devices for which `is_disk` holds.
pub(super) fn parse_diskstats(text: &str, is_disk: impl Fn(&str) -> bool) -> Result<Vec<DiskStats>, SampleError> {
    let mut disks = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.len() < 14 {
            continue;
        }
        let device = fields[2];
        if !is_disk(device) {
            continue;
        }
        let num = |idx: usize| -> Result<f64, SampleError> {
            fields[idx]
                .parse::<u64>()
                .map(|v| v as f64)
                .map_err(|_| SampleError::Parse(format!("bad diskstats field {:?} for {device}", fields[idx])))
        };
        disks.push(DiskStats {
            device: device.to_owned(),
            read_bytes: num(5)? * SECTOR_BYTES,
            written_bytes: num(9)? * SECTOR_BYTES,
            io_seconds: num(12)? / 1000.0,
        });
    }
    Ok(disks)
}

#[async_trait::async_trait]
impl Sampler for DiskIoSampler {
    fn name(&self) -> &'static str {
        "diskio"
    }

    async fn sample(&mut self, at: UnixMs, out: &mut Vec<Observation>) -> Result<(), SampleError> {
        read_proc("/proc/diskstats", &mut self.buf)?;
        let excluded = &self.exclude_prefixes;
        // Whole disks are the entries of /sys/block; partitions live only under /sys/class/block.
        let is_disk = |name: &str| {
            !excluded.iter().any(|p| name.starts_with(p.as_str()))
                && std::path::Path::new("/sys/block").join(name).exists()
        };
        for disk in parse_diskstats(&self.buf, is_disk)? {
            let labels = vec![("device", disk.device)];
            out.push(Observation::labeled(DISK_READ_BYTES_TOTAL, labels.clone(), disk.read_bytes, at));
            out.push(Observation::labeled(DISK_WRITTEN_BYTES_TOTAL, labels.clone(), disk.written_bytes, at));
            out.push(Observation::labeled(DISK_IO_TIME_SECONDS_TOTAL, labels, disk.io_seconds, at));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diskstats_fixture_yields_whole_disks_in_bytes() {
        let text = include_str!("../../tests/fixtures/proc_diskstats.txt");
        let disks = parse_diskstats(text, |name| name == "vda" || name == "nvme0n1").expect("parses");
        assert_eq!(disks.len(), 2);
        assert_eq!(
            disks[0],
            DiskStats {
                device: "vda".into(),
                read_bytes: 1_226_142.0 * 512.0,
                written_bytes: 9_871_234.0 * 512.0,
                io_seconds: 512.345,
            }
        );
        assert_eq!(disks[1].device, "nvme0n1");
    }

    #[test]
    fn malformed_counter_is_a_parse_error() {
        let text = "253 0 vda 1 0 x 0 0 0 0 0 0 0 0\n";
        assert!(parse_diskstats(text, |_| true).is_err());
    }
}
