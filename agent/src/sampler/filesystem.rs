//! Space and inodes per mounted filesystem: mounts from `/proc/self/mounts`, sizes from `statvfs`.
//!
//! `statvfs` on a stale network mount can hang forever, so the calls run on a blocking thread and
//! a tick is skipped (and counted) while a previous one is still stuck.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use b24watch_proto::catalog::{FILESYSTEM_AVAIL_BYTES, FILESYSTEM_FILES, FILESYSTEM_FILES_FREE, FILESYSTEM_SIZE_BYTES};

use super::HostConfig;
use super::{Observation, SampleError, Sampler, UnixMs, read_proc};

/// One line of `/proc/self/mounts` worth reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mount {
    pub(super) device: String,
    pub(super) mountpoint: String,
    pub(super) fstype: String,
}

/// Reports every real filesystem.
#[derive(Debug)]
pub(super) struct FilesystemSampler {
    exclude_fstypes: Vec<String>,
    exclude_prefixes: Vec<String>,
    busy: Arc<AtomicBool>,
}

impl FilesystemSampler {
    pub(super) fn new(cfg: &HostConfig) -> Self {
        FilesystemSampler {
            exclude_fstypes: cfg.exclude_fstypes.clone(),
            exclude_prefixes: cfg.exclude_mountpoint_prefixes.clone(),
            busy: Arc::default(),
        }
    }
}

/// Undoes the octal escapes (`\040` for space) the kernel uses in mount tables.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut idx = 0;
    while idx < bytes.len() {
        if bytes[idx] == b'\\'
            && idx + 3 < bytes.len()
            && bytes[idx + 1..idx + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[idx + 1..idx + 4].iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            idx += 4;
        } else {
            out.push(bytes[idx]);
            idx += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn under_prefix(path: &str, prefix: &str) -> bool {
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// Parses a mount table, dropping excluded types and mount points and repeated mount points
/// (the last mount on a path is the visible one).
pub(super) fn parse_mounts(text: &str, exclude_fstypes: &[String], exclude_prefixes: &[String]) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(device), Some(mountpoint), Some(fstype)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let mountpoint = unescape(mountpoint);
        if exclude_fstypes.iter().any(|t| t == fstype) || exclude_prefixes.iter().any(|p| under_prefix(&mountpoint, p))
        {
            continue;
        }
        mounts.retain(|m| m.mountpoint != mountpoint);
        mounts.push(Mount { device: unescape(device), mountpoint, fstype: fstype.to_owned() });
    }
    mounts
}

#[async_trait::async_trait]
impl Sampler for FilesystemSampler {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    async fn sample(&mut self, at: UnixMs, out: &mut Vec<Observation>) -> Result<(), SampleError> {
        let mut buf = String::new();
        read_proc("/proc/self/mounts", &mut buf)?;
        let mounts = parse_mounts(&buf, &self.exclude_fstypes, &self.exclude_prefixes);
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(SampleError::Unavailable("a previous statvfs call is still blocked".into()));
        }
        let busy = Arc::clone(&self.busy);
        let stats = tokio::task::spawn_blocking(move || {
            let stats: Vec<_> = mounts
                .into_iter()
                .filter_map(|m| rustix::fs::statvfs(m.mountpoint.as_str()).ok().map(|st| (m, st)))
                .collect();
            busy.store(false, Ordering::Release);
            stats
        })
        .await
        .map_err(|err| SampleError::Unavailable(format!("statvfs thread failed: {err}")))?;
        for (mount, st) in stats {
            let frsize = if st.f_frsize > 0 { st.f_frsize } else { st.f_bsize };
            let labels = vec![("mountpoint", mount.mountpoint), ("fstype", mount.fstype), ("device", mount.device)];
            let values = [
                (FILESYSTEM_SIZE_BYTES, (st.f_blocks as f64) * frsize as f64),
                (FILESYSTEM_AVAIL_BYTES, (st.f_bavail as f64) * frsize as f64),
                (FILESYSTEM_FILES, st.f_files as f64),
                (FILESYSTEM_FILES_FREE, st.f_ffree as f64),
            ];
            for (name, value) in values {
                out.push(Observation::labeled(name, labels.clone(), value, at));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> HostConfig {
        super::super::RawHost::default().validate()
    }

    #[test]
    fn pseudo_filesystems_and_repeated_mounts_are_skipped() {
        let host = defaults();
        let mounts = parse_mounts(
            include_str!("../../tests/fixtures/proc_mounts.txt"),
            &host.exclude_fstypes,
            &host.exclude_mountpoint_prefixes,
        );
        let points: Vec<&str> = mounts.iter().map(|m| m.mountpoint.as_str()).collect();
        assert_eq!(points, ["/", "/boot", "/home/bitrix/my files", "/var/lib/mysqld"]);
        assert_eq!(mounts[0].device, "/dev/vda1");
        assert_eq!(mounts[3].fstype, "xfs");
    }

    #[test]
    fn prefixes_match_whole_path_components() {
        assert!(under_prefix("/run/user/0", "/run"));
        assert!(under_prefix("/run", "/run"));
        assert!(!under_prefix("/runtime", "/run"));
    }

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(unescape(r"/mnt/a\040b\011c"), "/mnt/a b\tc");
        assert_eq!(unescape(r"trailing\04"), r"trailing\04");
    }
}
