//! Whether the daemons a portal needs run, from `/proc/<pid>/comm` (and `cmdline` for the Node.js
//! push server), on a slow interval.
//!
//! A service is watched once its process has been seen or its systemd unit is installed, so a box
//! without Sphinx does not report Sphinx as down.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use b24watch_common::config::Problems;
use b24watch_proto::catalog::SERVICE_UP;
use serde::{Deserialize, Serialize};

use super::{Check, Checker, Findings};
use crate::observation::{Severity, UnixMs};

/// How to recognise one service.
#[derive(Debug, Clone, Copy)]
struct Known {
    name: &'static str,
    /// Process names (`comm`, at most 15 bytes); a trailing `*` matches a prefix.
    comms: &'static [&'static str],
    /// Text the command line must contain, for generic interpreters (Node.js).
    cmdline: Option<&'static str>,
    /// systemd unit names.
    units: &'static [&'static str],
    severity: Severity,
}

const KNOWN: &[Known] = &[
    Known { name: "nginx", comms: &["nginx"], cmdline: None, units: &["nginx.service"], severity: Severity::High },
    Known {
        name: "httpd",
        comms: &["httpd", "apache2"],
        cmdline: None,
        units: &["httpd.service", "apache2.service"],
        severity: Severity::High,
    },
    Known {
        name: "php-fpm",
        comms: &["php-fpm*"],
        cmdline: None,
        units: &["php-fpm.service", "php*-fpm.service"],
        severity: Severity::High,
    },
    Known {
        name: "mysqld",
        comms: &["mysqld", "mariadbd"],
        cmdline: None,
        units: &["mysqld.service", "mysql.service", "mariadb.service"],
        severity: Severity::High,
    },
    Known {
        name: "push-server",
        comms: &["node"],
        cmdline: Some("push-server"),
        units: &["push-server.service"],
        severity: Severity::Medium,
    },
    Known {
        name: "redis",
        comms: &["redis-server"],
        cmdline: None,
        units: &["redis.service", "redis-server.service"],
        severity: Severity::Medium,
    },
    Known {
        name: "memcached",
        comms: &["memcached"],
        cmdline: None,
        units: &["memcached.service"],
        severity: Severity::Medium,
    },
    Known {
        name: "searchd",
        comms: &["searchd"],
        cmdline: None,
        units: &["searchd.service"],
        severity: Severity::Medium,
    },
    Known {
        name: "crond",
        comms: &["crond", "cron"],
        cmdline: None,
        units: &["crond.service", "cron.service"],
        severity: Severity::High,
    },
];

/// `[services]` section as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawServices {
    /// Whether services are checked.
    pub enabled: bool,
    /// Services to watch.
    pub watch: Vec<String>,
    /// Seconds between runs.
    pub interval_secs: u64,
}

impl Default for RawServices {
    fn default() -> Self {
        RawServices { enabled: true, watch: KNOWN.iter().map(|k| k.name.to_owned()).collect(), interval_secs: 60 }
    }
}

/// Validated `[services]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicesConfig {
    /// Whether services are checked.
    pub enabled: bool,
    /// Services to watch.
    pub watch: Vec<String>,
    /// Time between runs.
    pub interval: Duration,
}

impl RawServices {
    /// The validated form; problems go to `problems`.
    pub fn validate(&self, problems: &mut Problems) -> ServicesConfig {
        for name in self.watch.iter().filter(|n| !KNOWN.iter().any(|k| k.name == n.as_str())) {
            let known: Vec<&str> = KNOWN.iter().map(|k| k.name).collect();
            problems.bad("services.watch", format!("{name:?}: expected some of {}", known.join(", ")));
        }
        ServicesConfig {
            enabled: self.enabled,
            watch: self.watch.clone(),
            interval: problems.secs("services.interval_secs", self.interval_secs, 10, 3600),
        }
    }
}

const UNIT_DIRS: &[&str] = &["/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];

/// The service checker.
#[derive(Debug)]
pub struct ServiceChecker {
    cfg: ServicesConfig,
    proc_root: PathBuf,
    unit_dirs: Vec<PathBuf>,
    /// Services seen running at least once (watched from then on).
    seen: BTreeSet<&'static str>,
}

impl ServiceChecker {
    /// A checker over the real `/proc` and systemd unit directories.
    pub fn new(cfg: ServicesConfig) -> Self {
        Self::with_roots(cfg, "/proc".into(), UNIT_DIRS.iter().map(PathBuf::from).collect())
    }

    /// A checker over other roots (tests).
    pub fn with_roots(cfg: ServicesConfig, proc_root: PathBuf, unit_dirs: Vec<PathBuf>) -> Self {
        ServiceChecker { cfg, proc_root, unit_dirs, seen: BTreeSet::new() }
    }

    fn installed(&self, known: &Known) -> bool {
        known.units.iter().any(|unit| {
            self.unit_dirs.iter().any(|dir| match unit.split_once('*') {
                None => dir.join(unit).exists(),
                Some((prefix, suffix)) => std::fs::read_dir(dir).is_ok_and(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .any(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix)))
                }),
            })
        })
    }
}

/// Names of the watched services whose processes run, from one pass over `/proc`.
fn running(proc_root: &Path, watched: &[&'static Known]) -> BTreeSet<&'static str> {
    let mut found = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else { return found };
    let mut comm = String::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        comm.clear();
        let Ok(text) = std::fs::read_to_string(entry.path().join("comm")) else { continue };
        comm.push_str(text.trim_end());
        for known in watched {
            if found.contains(known.name) {
                continue;
            }
            let comm_matches = known.comms.iter().any(|c| match c.strip_suffix('*') {
                Some(prefix) => comm.starts_with(prefix),
                None => comm == *c,
            });
            if !comm_matches {
                continue;
            }
            let cmd_matches = known.cmdline.is_none_or(|needle| {
                std::fs::read(entry.path().join("cmdline"))
                    .is_ok_and(|cmd| memchr::memmem::find(&cmd, needle.as_bytes()).is_some())
            });
            if cmd_matches {
                found.insert(known.name);
            }
        }
    }
    found
}

#[async_trait::async_trait]
impl Checker for ServiceChecker {
    fn name(&self) -> &'static str {
        "services"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    async fn run(&mut self, at: UnixMs, out: &mut Findings) {
        let watched: Vec<&'static Known> =
            KNOWN.iter().filter(|k| self.cfg.watch.iter().any(|w| w == k.name)).collect();
        let running = running(&self.proc_root, &watched);
        self.seen.extend(running.iter().copied());
        for known in watched {
            let up = running.contains(known.name);
            if !up && !self.seen.contains(known.name) && !self.installed(known) {
                continue;
            }
            out.observe(SERVICE_UP, vec![("service", known.name.to_owned())], f64::from(u8::from(up)), at);
            out.checks.push(if up {
                Check::ok("service", known.name, known.severity, "running".into(), at)
            } else {
                Check::failed(
                    "service",
                    known.name,
                    known.severity,
                    "not_running",
                    format!("no {} process", known.name),
                    at,
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_entry(root: &Path, pid: u32, comm: &str, cmdline: &[u8]) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("comm"), format!("{comm}\n")).expect("comm");
        std::fs::write(dir.join("cmdline"), cmdline).expect("cmdline");
    }

    #[tokio::test]
    async fn running_installed_and_absent_services() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc_root = dir.path().join("proc");
        let units = dir.path().join("units");
        std::fs::create_dir_all(&units).expect("mkdir");
        proc_entry(&proc_root, 10, "nginx", b"nginx: master process\0");
        proc_entry(&proc_root, 11, "php-fpm8.2", b"php-fpm: pool www\0");
        proc_entry(&proc_root, 12, "node", b"node\0/opt/other/app.js\0");
        proc_entry(&proc_root, 13, "node", b"node\0/opt/push-server/server.js\0");
        std::fs::write(units.join("memcached.service"), "").expect("unit");
        std::fs::create_dir_all(proc_root.join("self")).expect("non-numeric entry");
        let cfg = ServicesConfig {
            enabled: true,
            watch: KNOWN.iter().map(|k| k.name.to_owned()).collect(),
            interval: Duration::from_secs(60),
        };
        let mut checker = ServiceChecker::with_roots(cfg, proc_root.clone(), vec![units]);
        let mut out = Findings::default();
        checker.run(UnixMs(1), &mut out).await;
        let states: Vec<(String, bool)> =
            out.checks.iter().map(|c| (c.target.clone(), c.status == super::super::Status::Ok)).collect();
        assert_eq!(
            states,
            [
                ("nginx".to_owned(), true),
                ("php-fpm".to_owned(), true),
                ("push-server".to_owned(), true),
                ("memcached".to_owned(), false),
            ]
        );
        // Once seen, a service that stops is reported down.
        std::fs::remove_dir_all(proc_root.join("10")).expect("stop nginx");
        let mut out = Findings::default();
        checker.run(UnixMs(2), &mut out).await;
        let nginx = out.checks.iter().find(|c| c.target == "nginx").expect("nginx still watched");
        assert_eq!((nginx.reason, nginx.severity), ("not_running", Severity::High));
    }
}
