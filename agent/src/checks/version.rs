//! Versions and updates: the Bitrix core version of each site, PHP and MySQL/MariaDB against the
//! versions Bitrix still supports.
//!
//! - **Core**: `<root>/bitrix/modules/main/classes/general/version.php` holds
//!   `define("SM_VERSION","23.850.0"); define("SM_VERSION_DATE","2024-04-02 09:00:00");`, the main
//!   module's version and its release date (`kotopheiop/bitrix-core`, and the `SM_VERSION_DATE`
//!   comment "YYYY-MM-DD HH:MI:SS" quoted in many module sources). The update system rewrites the
//!   file when main is updated, so the release date of the installed version says how long the
//!   portal has gone without an update of the core; the file's mtime says when it was installed.
//!   Read as text, never executed.
//! - **PHP**: `php -n -r 'echo PHP_VERSION;'` (the CLI that cron runs; mod_php or php-fpm are the
//!   same package on BitrixVM and the Debian ports), bounded by a timeout.
//! - **MySQL/MariaDB**: `SELECT VERSION()`, read by the database upkeep checker.
//!
//! Checks: `bitrix_core_age` (low, target the site), `php_version` (medium, target `php`),
//! `mysql_version` (medium, target `mysql`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use b24watch_common::config::Problems;
use b24watch_proto::catalog::{
    BITRIX_CORE_INFO, BITRIX_CORE_INSTALLED_TIMESTAMP_SECONDS, BITRIX_CORE_RELEASE_TIMESTAMP_SECONDS, PHP_VERSION_INFO,
};
use serde::{Deserialize, Serialize};

use super::discover::Site;
use super::{Check, Checker, Findings};
use crate::observation::{Severity, UnixMs};

/// The oldest versions Bitrix still supports: the one place that says so, with the sources.
///
/// - PHP 8.1.0: `CSiteCheckerTest::MIN_PHP_VER = '8.1.0'` in
///   `modules/main/classes/general/site_checker.php` (`avshatalov48/bitrix-core-business`); the
///   installer's step 3 states the same minimum (Bitrix course 135, lesson 2618).
/// - MySQL 8.0: BitrixVM (bitrix-env 9, `opt/webdir/bin/menu/01_hosts/08_upgrade_php_mysql.sh`)
///   offers the upgrade to 8.0 to every server below it and ships `my.cnf` only for 5.7, 8.0 and
///   8.4; MySQL 5.7 reached its end of life in October 2023.
/// - MariaDB 10.6: the Bitrix24 box manual install guide (course 135, lesson 33048) installs
///   MariaDB 10.6; older MariaDB release lines are past their end of life.
pub const SUPPORTED: &[(&str, [u32; 3], &str)] = &[
    ("PHP", [8, 1, 0], "Bitrix's site checker (MIN_PHP_VER) and installer"),
    ("MySQL", [8, 0, 0], "BitrixVM 9 upgrades MySQL below 8.0; 5.7 is end of life"),
    ("MariaDB", [10, 6, 0], "Bitrix's manual install guide uses MariaDB 10.6"),
];

/// The product and leading numeric version of a version string (`8.1.27`,
/// `10.11.6-MariaDB-0+deb12u1`, `8.0.36-28` (Percona)). Pure.
pub fn parse_version(text: &str, mariadb_marker: bool) -> Option<(&'static str, [u32; 3])> {
    let numeric: &str = text.trim().split(|c: char| !(c.is_ascii_digit() || c == '.')).next()?;
    let mut parts = [0u32; 3];
    let mut n_parts = 0;
    for (idx, part) in numeric.split('.').take(3).enumerate() {
        parts[idx] = part.parse().ok()?;
        n_parts += 1;
    }
    if n_parts < 2 {
        return None;
    }
    let product = if !mariadb_marker {
        "PHP"
    } else if text.to_ascii_lowercase().contains("mariadb") {
        "MariaDB"
    } else {
        "MySQL"
    };
    Some((product, parts))
}

/// The minimum for `product` from [`SUPPORTED`].
fn minimum(product: &str) -> ([u32; 3], &'static str) {
    SUPPORTED.iter().find(|(p, _, _)| *p == product).map(|(_, v, why)| (*v, *why)).expect("product in SUPPORTED")
}

fn judge_product(check: &'static str, target: &str, text: &str, db: bool, at: UnixMs) -> Check {
    let Some((product, found)) = parse_version(text, db) else {
        return Check::error(check, target, Severity::Medium, "unknown", format!("Unrecognised version {text:?}."), at);
    };
    let (min, why) = minimum(product);
    let shown = |v: [u32; 3]| format!("{}.{}", v[0], v[1]);
    if found < min {
        Check::failed(
            check,
            target,
            Severity::Medium,
            "unsupported",
            format!(
                "{product} {text} is older than {}, the oldest Bitrix supports ({why}): plan the upgrade.",
                shown(min)
            ),
            at,
        )
    } else {
        Check::ok(check, target, Severity::Medium, format!("{product} {text} is supported."), at)
    }
}

/// The `mysql_version` check for the server's `SELECT VERSION()`. Pure.
pub fn judge_mysql(text: &str, at: UnixMs) -> Check {
    judge_product("mysql_version", "mysql", text, true, at)
}

/// The `supported` label of a version info series, from its check: `yes`, `no` or `unknown`.
pub fn supported_label(check: &Check) -> String {
    match check.status {
        super::Status::Ok => "yes",
        super::Status::Failed => "no",
        super::Status::Error => "unknown",
    }
    .to_owned()
}

/// The `php_version` check for `PHP_VERSION`. Pure.
pub fn judge_php(text: &str, at: UnixMs) -> Check {
    judge_product("php_version", "php", text, false, at)
}

/// The core version file of a site.
pub const VERSION_FILE: &str = "bitrix/modules/main/classes/general/version.php";

/// `SM_VERSION` and `SM_VERSION_DATE` (unix seconds, the date read as UTC) from the text of
/// `version.php`. Pure.
pub fn parse_core_version(php: &str) -> Option<(String, Option<i64>)> {
    let constant = |name: &str| -> Option<String> {
        let at = php.find(&format!("\"{name}\"")).or_else(|| php.find(&format!("'{name}'")))?;
        let rest = &php[at + name.len() + 2..];
        let rest = rest.trim_start().strip_prefix(',')?.trim_start();
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let value = &rest[1..];
        Some(value[..value.find(quote)?].to_owned())
    };
    let version = constant("SM_VERSION")?;
    let date = constant("SM_VERSION_DATE").and_then(|d| unix_of(&d));
    Some((version, date))
}

/// `YYYY-MM-DD[ HH:MM:SS]` as unix seconds (UTC). Pure.
fn unix_of(text: &str) -> Option<i64> {
    let date = text.get(..10)?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut secs = days * 86_400;
    if let Some(time) = text.get(11..19) {
        let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
        if let (Some(Some(h)), Some(Some(mi)), Some(Some(s))) = (hms.next(), hms.next(), hms.next()) {
            secs += h * 3600 + mi * 60 + s;
        }
    }
    Some(secs)
}

/// `[versions]` section as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawVersions {
    /// Whether versions are checked.
    pub enabled: bool,
    /// Seconds between runs.
    pub interval_secs: u64,
    /// Core age bound, days.
    pub core_max_age_days: u64,
    /// PHP CLI binary.
    pub php_binary: PathBuf,
    /// Seconds for the PHP CLI.
    pub php_timeout_secs: u64,
}

impl Default for RawVersions {
    fn default() -> Self {
        RawVersions {
            enabled: true,
            interval_secs: 3600,
            core_max_age_days: 180,
            php_binary: "/usr/bin/php".into(),
            php_timeout_secs: 10,
        }
    }
}

/// Validated `[versions]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionsConfig {
    /// Whether versions are checked.
    pub enabled: bool,
    /// Time between runs.
    pub interval: Duration,
    /// The core fails `bitrix_core_age` when its version was released longer ago than this.
    pub core_max_age: Duration,
    /// PHP CLI binary; `None`: PHP is not checked.
    pub php_binary: Option<PathBuf>,
    /// Bound of the PHP CLI run.
    pub php_timeout: Duration,
}

impl RawVersions {
    /// The validated form; problems go to `problems`.
    pub fn validate(&self, problems: &mut Problems) -> VersionsConfig {
        let empty = self.php_binary.as_os_str().is_empty();
        if !empty && !self.php_binary.is_absolute() {
            problems.bad(
                "versions.php_binary",
                format!("{}: expected an absolute path or \"\"", self.php_binary.display()),
            );
        }
        VersionsConfig {
            enabled: self.enabled,
            interval: problems.secs("versions.interval_secs", self.interval_secs, 60, 86_400),
            core_max_age: Duration::from_secs(
                problems.range("versions.core_max_age_days", self.core_max_age_days, 1, 3650) * 86_400,
            ),
            php_binary: (!empty).then(|| self.php_binary.clone()),
            php_timeout: problems.secs("versions.php_timeout_secs", self.php_timeout_secs, 1, 60),
        }
    }
}

/// The version checker.
#[derive(Debug)]
pub struct VersionChecker {
    cfg: VersionsConfig,
    sites: Vec<Site>,
}

impl VersionChecker {
    /// A checker for the discovered sites.
    pub fn new(cfg: VersionsConfig, sites: Vec<Site>) -> Self {
        VersionChecker { cfg, sites }
    }
}

/// `PHP_VERSION` from the CLI, killed after `limit`; `None` when there is no PHP or it failed.
fn php_version(binary: &Path, limit: Duration) -> Option<String> {
    if !binary.exists() {
        return None;
    }
    let mut child = std::process::Command::new(binary)
        .args(["-n", "-r", "echo PHP_VERSION;"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let started = std::time::SystemTime::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed().unwrap_or_default() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut text).ok()?;
    let text = text.trim();
    (!text.is_empty() && text.len() < 64).then(|| text.to_owned())
}

/// Judges one site's core version file. Pure: `now` is unix seconds, `installed` the file's mtime.
pub fn judge_core(
    cfg: &VersionsConfig,
    site: &str,
    core: Option<(String, Option<i64>)>,
    installed: Option<i64>,
    now: i64,
    at: UnixMs,
    out: &mut Findings,
) {
    let Some((version, released)) = core else {
        out.checks.push(Check::error(
            "bitrix_core_age",
            site,
            Severity::Low,
            "unknown",
            format!("The core version could not be read from {VERSION_FILE}."),
            at,
        ));
        return;
    };
    out.observe(BITRIX_CORE_INFO, vec![("site", site.to_owned()), ("version", version.clone())], 1.0, at);
    if let Some(installed) = installed {
        out.observe(BITRIX_CORE_INSTALLED_TIMESTAMP_SECONDS, vec![("site", site.to_owned())], installed as f64, at);
    }
    let Some(released) = released else {
        out.checks.push(Check::error(
            "bitrix_core_age",
            site,
            Severity::Low,
            "unknown",
            format!("Core {version} has no release date (SM_VERSION_DATE)."),
            at,
        ));
        return;
    };
    out.observe(BITRIX_CORE_RELEASE_TIMESTAMP_SECONDS, vec![("site", site.to_owned())], released as f64, at);
    let days = (now - released).max(0) / 86_400;
    let max_days = cfg.core_max_age.as_secs() / 86_400;
    out.checks.push(if days as u64 > max_days {
        Check::failed(
            "bitrix_core_age",
            site,
            Severity::Low,
            "outdated",
            format!(
                "The core (main {version}) was released {days} days ago: no update installed for more than {max_days} days; plan one (Settings → Platform update)."
            ),
            at,
        )
    } else {
        Check::ok("bitrix_core_age", site, Severity::Low, format!("Core main {version}, released {days} days ago."), at)
    });
}

#[async_trait::async_trait]
impl Checker for VersionChecker {
    fn name(&self) -> &'static str {
        "versions"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    async fn run(&mut self, at: UnixMs, out: &mut Findings) {
        let sites = self.sites.clone();
        let php = self.cfg.php_binary.clone();
        let limit = self.cfg.php_timeout;
        let read = move || {
            let cores: Vec<(String, Option<(String, Option<i64>)>, Option<i64>)> = sites
                .iter()
                .map(|site| {
                    let path = site.root.join(VERSION_FILE);
                    let text = std::fs::read(&path).ok().map(|b| String::from_utf8_lossy(&b).into_owned());
                    let mtime = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs() as i64);
                    (site.name.clone(), text.as_deref().and_then(parse_core_version), mtime)
                })
                .collect();
            (cores, php.and_then(|p| php_version(&p, limit)))
        };
        let Ok((cores, php)) = tokio::task::spawn_blocking(read).await else { return };
        for (site, core, installed) in cores {
            judge_core(&self.cfg, &site, core, installed, at.0 / 1000, at, out);
        }
        if let Some(text) = php {
            let check = judge_php(&text, at);
            out.observe(
                PHP_VERSION_INFO,
                vec![("version", text.clone()), ("supported", supported_label(&check))],
                1.0,
                at,
            );
            out.checks.push(check);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    #[test]
    fn versions_are_judged_against_the_supported_table() {
        let cases = [
            ("mysql", "8.0.36", Status::Ok),
            ("mysql", "8.4.3", Status::Ok),
            ("mysql", "5.7.44-log", Status::Failed),
            ("mysql", "8.0.35-27", Status::Ok),
            ("mysql", "10.11.6-MariaDB-0+deb12u1", Status::Ok),
            ("mysql", "10.5.23-MariaDB", Status::Failed),
            ("mysql", "garbage", Status::Error),
            ("php", "8.2.28", Status::Ok),
            ("php", "8.1.0", Status::Ok),
            ("php", "7.4.33", Status::Failed),
            ("php", "8.0.30", Status::Failed),
        ];
        for (what, text, want) in cases {
            let check = if what == "mysql" { judge_mysql(text, UnixMs(0)) } else { judge_php(text, UnixMs(0)) };
            assert_eq!(check.status, want, "{what} {text}: {}", check.message);
            if want == Status::Failed {
                assert_eq!((check.reason, check.severity), ("unsupported", Severity::Medium));
            }
        }
    }

    #[test]
    fn core_version_file_is_read_in_its_real_shapes() {
        // As shipped: short open tag, double quotes; and a reformatted one with single quotes.
        let shipped =
            "<?\ndefine(\"SM_VERSION\",\"23.850.0\");\ndefine(\"SM_VERSION_DATE\",\"2024-04-02 09:00:00\");\n?>";
        assert_eq!(parse_core_version(shipped), Some(("23.850.0".into(), Some(1_712_048_400))));
        let other = "<?php\ndefine('SM_VERSION', '25.100.300');\ndefine('SM_VERSION_DATE', '2025-06-30');\n";
        assert_eq!(parse_core_version(other), Some(("25.100.300".into(), Some(1_751_241_600))));
        assert_eq!(parse_core_version("<?php echo 1;"), None);
    }

    /// Version files of a supported and an outdated core, on disk as a site has them.
    #[tokio::test]
    async fn outdated_and_current_cores_are_told_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = crate::observation::now();
        let day = |days_ago: i64| {
            let secs = now.0 / 1000 - days_ago * 86_400;
            // Back to a date string, as the update system writes it.
            let (mut y, mut rest) = (1970, secs / 86_400);
            loop {
                let len = if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 { 366 } else { 365 };
                if rest < len {
                    break;
                }
                rest -= len;
                y += 1;
            }
            let months = [
                31,
                if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            let mut m = 0;
            while rest >= months[m] {
                rest -= months[m];
                m += 1;
            }
            format!("{y:04}-{:02}-{:02} 10:00:00", m + 1, rest + 1)
        };
        let mut sites = Vec::new();
        for (name, version, age) in [("fresh", "25.100.0", 20), ("old", "20.200.300", 900)] {
            let root = dir.path().join(name);
            let file = root.join(VERSION_FILE);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(
                &file,
                format!("<?\ndefine(\"SM_VERSION\",\"{version}\");\ndefine(\"SM_VERSION_DATE\",\"{}\");\n?>", day(age)),
            )
            .expect("version.php");
            sites.push(Site { name: name.into(), root, db: None, exception_log: None, problems: Vec::new() });
        }
        sites.push(Site {
            name: "broken".into(),
            root: dir.path().join("broken"),
            db: None,
            exception_log: None,
            problems: Vec::new(),
        });
        let mut problems = Problems::new(Path::new("agent.toml"));
        let cfg =
            RawVersions { php_binary: "/nonexistent/php".into(), ..RawVersions::default() }.validate(&mut problems);
        let mut checker = VersionChecker::new(cfg, sites);
        let mut out = Findings::default();
        checker.run(now, &mut out).await;
        let result = |site: &str| {
            let c = out.checks.iter().find(|c| c.target == site).expect("result");
            (c.status, c.reason, c.severity)
        };
        assert_eq!(result("fresh"), (Status::Ok, "", Severity::Low));
        assert_eq!(result("old"), (Status::Failed, "outdated", Severity::Low));
        assert_eq!(result("broken"), (Status::Error, "unknown", Severity::Low));
        let info: Vec<&str> =
            out.observations.iter().filter(|o| o.name == BITRIX_CORE_INFO).map(|o| o.labels[1].1.as_str()).collect();
        assert_eq!(info, ["25.100.0", "20.200.300"]);
        assert!(!out.observations.iter().any(|o| o.name == PHP_VERSION_INFO), "no PHP binary, no PHP series");
    }
}
