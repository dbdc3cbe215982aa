//! The extension seam: one trait every sampler implements, and the registry that builds them.
//!
//! Adding a sampler: a new file here with `impl Sampler`, one line in [`build_samplers`], its series
//! in `b24watch_proto::catalog`, unit tests of its pure parser on fixture text. Its settings go in
//! the `[host]` section below ([`RawHost`] → [`HostConfig`]), or, for a section of its own, in its
//! file with a field in `config::RawConfig` and `config::Config`.

mod cpu;
mod diskio;
mod filesystem;
mod load;
mod memory;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::observation::{Observation, UnixMs};

/// Why a sampler run produced nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The target is down (file missing, service refused).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The input did not parse.
    #[error("parse error: {0}")]
    Parse(String),
}

impl SampleError {
    /// Bounded label value for `agent_sampler_errors_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            SampleError::Unavailable(_) => "unavailable",
            SampleError::Parse(_) => "parse",
        }
    }
}

/// One kind of measurement taken periodically on the host.
///
/// The scheduler owns timing, timeouts, error accounting and shutdown. A sampler only knows how to
/// take one sample.
#[async_trait::async_trait]
pub trait Sampler: Send {
    /// Stable lowercase name: config section, `sampler` label, span field.
    fn name(&self) -> &'static str;

    /// Takes one sample at `at`, appending observations to `out`.
    ///
    /// Never called concurrently with itself. A partial failure (one of five disks unreadable) is
    /// recorded in `out` and returns `Ok`.
    ///
    /// # Errors
    /// `SampleError` when nothing usable was read this tick.
    async fn sample(&mut self, at: UnixMs, out: &mut Vec<Observation>) -> Result<(), SampleError>;
}

impl fmt::Debug for dyn Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sampler").field("name", &self.name()).finish()
    }
}

/// Builds every enabled sampler. The only place that knows the list.
pub fn build_samplers(host: &HostConfig) -> Vec<Box<dyn Sampler>> {
    let mut samplers: Vec<Box<dyn Sampler>> = Vec::new();
    if host.enabled {
        samplers.push(Box::new(cpu::CpuSampler::default()));
        samplers.push(Box::new(load::LoadSampler));
        samplers.push(Box::new(memory::MemorySampler));
        samplers.push(Box::new(filesystem::FilesystemSampler::new(host)));
        samplers.push(Box::new(diskio::DiskIoSampler::new(host)));
    }
    samplers
}

/// `[host]` section as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawHost {
    /// Whether the host samplers run.
    pub enabled: bool,
    /// Filesystem types never reported.
    pub exclude_fstypes: Vec<String>,
    /// Mount point prefixes never reported.
    pub exclude_mountpoint_prefixes: Vec<String>,
    /// Block device prefixes never reported.
    pub exclude_device_prefixes: Vec<String>,
}

impl Default for RawHost {
    fn default() -> Self {
        RawHost {
            enabled: true,
            exclude_fstypes: [
                "autofs",
                "binfmt_misc",
                "bpf",
                "cgroup",
                "cgroup2",
                "configfs",
                "debugfs",
                "devpts",
                "devtmpfs",
                "efivarfs",
                "fusectl",
                "hugetlbfs",
                "mqueue",
                "nsfs",
                "overlay",
                "proc",
                "pstore",
                "ramfs",
                "rpc_pipefs",
                "securityfs",
                "squashfs",
                "sysfs",
                "tmpfs",
                "tracefs",
                "fuse.lxcfs",
                "fuse.gvfsd-fuse",
                "fuse.portal",
                "nfsd",
            ]
            .map(String::from)
            .to_vec(),
            exclude_mountpoint_prefixes: ["/proc", "/sys", "/dev", "/run", "/var/lib/docker", "/snap"]
                .map(String::from)
                .to_vec(),
            exclude_device_prefixes: ["loop", "ram", "zram", "fd", "sr"].map(String::from).to_vec(),
        }
    }
}

/// Validated `[host]`: the host samplers' settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Whether the host samplers run.
    pub enabled: bool,
    /// Filesystem types never reported.
    pub exclude_fstypes: Vec<String>,
    /// Mount point prefixes never reported.
    pub exclude_mountpoint_prefixes: Vec<String>,
    /// Block device prefixes never reported.
    pub exclude_device_prefixes: Vec<String>,
}

impl RawHost {
    /// The validated form: every value is acceptable.
    pub fn validate(self) -> HostConfig {
        HostConfig {
            enabled: self.enabled,
            exclude_fstypes: self.exclude_fstypes,
            exclude_mountpoint_prefixes: self.exclude_mountpoint_prefixes,
            exclude_device_prefixes: self.exclude_device_prefixes,
        }
    }
}

/// Reads a small /proc file into `buf` (reused between ticks to avoid allocation).
fn read_proc(path: &str, buf: &mut String) -> Result<(), SampleError> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open(path)
        .and_then(|mut file| file.read_to_string(buf))
        .map(|_| ())
        .map_err(|err| SampleError::Unavailable(format!("reading {path}: {err}")))
}
