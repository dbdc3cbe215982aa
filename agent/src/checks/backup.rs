//! Backups of each site: Bitrix's own archives in `bitrix/backup/` and BitrixVM's scheduled ones.
//!
//! ## Where backups are (sources read for this)
//!
//! - **Bitrix** ("Резервное копирование", `/bitrix/admin/dump.php`, and its automatic mode
//!   `dump_auto.php`): archives go to `<document root>/bitrix/backup/`, named by
//!   `CBackup::GetArcName` (`modules/main/classes/general/backup.php`) as
//!   `YYYYMMDD_HHMMSS_<full|core|nocore|pub|nopub|sql|nosql>_<16 random chars>` plus `.tar.gz`
//!   (`.tar` without compression, `.enc.gz`/`.enc` when encrypted). A big archive is split into
//!   parts: `CTar::getNextName` appends `.1` to the first name and then counts up (`x.tar.gz`,
//!   `x.tar.gz.1`, `x.tar.gz.2`, ...); `restore.php` lists archives with `#\.(tar|enc)(\.gz)?$#`.
//!   The parts of one archive are one backup here: size summed, time of the newest part.
//!   Backups kept only in a cloud bucket (`bitrixcloud`/`clouds`) are not visible on disk.
//! - **BitrixVM** (bitrix-env, `opt/webdir/bin/bx_backup.sh` and the Perl `bxSite` module that
//!   writes its schedule): a line in `/etc/crontab`
//!   `10 22 * * * bitrix /opt/webdir/bin/bx_backup.sh <db name> /home/bitrix/backup/archive`;
//!   each run writes `<dir>/www_backup_<db name>_<DD.MM.YYYY>_<random>.tar.gz` (a `tar` then
//!   `gzip`) and deletes archives older than 7 days once a fresh one exists. The archive is tied
//!   to the site whose database is `<db name>`.
//!
//! ## Checks (target: the site)
//!
//! - `backup_age` (high): the newest backup of any kind is older than `max_age_hours`, or a
//!   BitrixVM schedule exists but its directory holds no archive. No backup and no schedule at
//!   all is a failure of its own, medium, reason `not_configured`: advice, not breakage.
//! - `backup_size` (medium): the newest archive of a kind is smaller than `shrink_ratio` times
//!   the one before it: a truncated or failed backup.
//! - `backup_space` (medium): the backup's filesystem has less free space than one more backup
//!   of the newest size.
//!
//! Only file names, sizes and times are read (no archive is opened), on a slow interval.

use std::path::{Path, PathBuf};
use std::time::Duration;

use b24watch_common::config::Problems;
use b24watch_proto::catalog::{
    BACKUP_ARCHIVES, BACKUP_FILESYSTEM_AVAIL_BYTES, BACKUP_LAST_SIZE_BYTES, BACKUP_LAST_TIMESTAMP_SECONDS,
    BACKUP_PREVIOUS_SIZE_BYTES,
};
use serde::{Deserialize, Serialize};

use super::discover::Site;
use super::{Check, Checker, Findings};
use crate::observation::{Severity, UnixMs};

/// Kind label of Bitrix's own backups.
pub const KIND_BITRIX: &str = "bitrix";
/// Kind label of BitrixVM's scheduled backups.
pub const KIND_BITRIXVM: &str = "bitrixvm";

/// The script BitrixVM's schedule runs (bitrix-env 5+).
const BITRIXVM_SCRIPT: &str = "bx_backup.sh";

/// One backup: an archive, or all parts of a multi-part archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// Name of the first part.
    pub name: String,
    /// Bytes, all parts together.
    pub size: u64,
    /// Modification time of the newest part, unix seconds.
    pub mtime: i64,
    /// Number of parts.
    pub parts: u32,
}

/// The backups of one site and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSet {
    /// Site label.
    pub site: String,
    /// `bitrix` or `bitrixvm`.
    pub kind: &'static str,
    /// Directory the archives are in.
    pub dir: PathBuf,
    /// Archives, newest first.
    pub archives: Vec<Archive>,
    /// Bytes available to unprivileged users on the directory's filesystem (`None`: unknown).
    pub avail: Option<u64>,
}

/// A BitrixVM backup schedule found in a crontab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Database name (`bx_backup.sh`'s first argument).
    pub db: String,
    /// Archive directory (its second argument).
    pub dir: PathBuf,
}

/// Finds BitrixVM schedules in crontab text: lines that run `bx_backup.sh <db> <dir>`.
/// Comments and lines with too few arguments are skipped. Pure.
pub fn parse_schedules(crontab: &str) -> Vec<Schedule> {
    let mut found = Vec::new();
    for line in crontab.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        if words.by_ref().any(|w| w.rsplit('/').next() == Some(BITRIXVM_SCRIPT))
            && let (Some(db), Some(dir)) = (words.next(), words.next())
            && dir.starts_with('/')
            && !db.starts_with('>')
        {
            found.push(Schedule { db: db.to_owned(), dir: PathBuf::from(dir) });
        }
    }
    found
}

/// The archive a file name belongs to, and its part number (0 for the first part), for Bitrix's
/// naming; `None` for anything else (`index.php`, `.htaccess`, dumps being written). Pure.
pub fn bitrix_archive_part(name: &str) -> Option<(&str, u32)> {
    let (base, part) = match name.rsplit_once('.') {
        Some((base, digits)) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            (base, digits.parse().ok()?)
        }
        _ => (name, 0),
    };
    [".tar.gz", ".tar", ".enc.gz", ".enc"]
        .iter()
        .any(|ext| base.len() > ext.len() && base.ends_with(ext))
        .then_some((base, part))
}

/// Whether a file in a BitrixVM archive directory is an archive of database `db`. Pure.
pub fn bitrixvm_archive(name: &str, db: &str) -> bool {
    name.strip_prefix("www_backup_").and_then(|rest| rest.strip_prefix(db)).is_some_and(|rest| rest.starts_with('_'))
        && name.ends_with(".tar.gz")
}

/// Groups the matching files of `dir` into archives, newest first.
fn scan(dir: &Path, archive_of: &dyn Fn(&str) -> Option<String>) -> Vec<Archive> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut archives: Vec<Archive> = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let Some(base) = archive_of(&name) else { continue };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        match archives.iter_mut().find(|a| a.name == base) {
            Some(a) => {
                a.size += meta.len();
                a.mtime = a.mtime.max(mtime);
                a.parts += 1;
            }
            None => archives.push(Archive { name: base, size: meta.len(), mtime, parts: 1 }),
        }
    }
    archives.sort_by(|a, b| b.mtime.cmp(&a.mtime).then_with(|| b.name.cmp(&a.name)));
    archives
}

/// Bytes available to unprivileged users on the filesystem holding `dir`.
fn available(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// `[backup]` section as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawBackup {
    /// Whether backups are checked.
    pub enabled: bool,
    /// Seconds between runs.
    pub interval_secs: u64,
    /// Age bound of the newest backup, hours.
    pub max_age_hours: u64,
    /// Shrink bound.
    pub shrink_ratio: f64,
    /// Crontab files and directories searched for BitrixVM's schedule.
    pub crontabs: Vec<PathBuf>,
}

impl Default for RawBackup {
    fn default() -> Self {
        RawBackup {
            enabled: true,
            interval_secs: 300,
            max_age_hours: 36,
            shrink_ratio: 0.5,
            crontabs: vec!["/etc/crontab".into(), "/etc/cron.d".into()],
        }
    }
}

/// Validated `[backup]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupConfig {
    /// Whether backups are checked.
    pub enabled: bool,
    /// Time between runs.
    pub interval: Duration,
    /// Age bound of the newest backup.
    pub max_age: Duration,
    /// The newest archive smaller than this share of the previous one is suspect.
    pub shrink_ratio: f64,
    /// Crontab files and directories (every file in it) searched for BitrixVM's schedule.
    pub crontabs: Vec<PathBuf>,
}

impl Eq for BackupConfig {}

impl RawBackup {
    /// The validated form; problems go to `problems`.
    pub fn validate(&self, problems: &mut Problems) -> BackupConfig {
        if !(self.shrink_ratio > 0.0 && self.shrink_ratio < 1.0) {
            problems.bad("backup.shrink_ratio", format!("{}: expected a number between 0 and 1", self.shrink_ratio));
        }
        if self.crontabs.iter().any(|p| !p.is_absolute()) {
            problems.bad("backup.crontabs", format!("{:?}: expected absolute paths", self.crontabs));
        }
        BackupConfig {
            enabled: self.enabled,
            interval: problems.secs("backup.interval_secs", self.interval_secs, 60, 86_400),
            max_age: Duration::from_secs(problems.range("backup.max_age_hours", self.max_age_hours, 1, 24 * 90) * 3600),
            shrink_ratio: self.shrink_ratio,
            crontabs: self.crontabs.clone(),
        }
    }
}

/// The backup checker.
#[derive(Debug)]
pub struct BackupChecker {
    cfg: BackupConfig,
    sites: Vec<Site>,
}

impl BackupChecker {
    /// A checker for the discovered sites.
    pub fn new(cfg: BackupConfig, sites: Vec<Site>) -> Self {
        BackupChecker { cfg, sites }
    }

    /// BitrixVM schedules from the configured crontabs.
    fn schedules(&self) -> Vec<Schedule> {
        let mut found = Vec::new();
        for path in &self.cfg.crontabs {
            let files: Vec<PathBuf> = if path.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                    .map(|e| e.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect())
                    .unwrap_or_default();
                files.sort();
                files
            } else {
                vec![path.clone()]
            };
            for file in files {
                if let Ok(text) = std::fs::read_to_string(&file) {
                    found.extend(parse_schedules(&text));
                }
            }
        }
        found.dedup();
        found
    }

    /// Everything on disk now: per site, its sets (possibly empty) and whether a schedule exists.
    pub fn survey(&self) -> Vec<SiteBackups> {
        let schedules = self.schedules();
        let mut out: Vec<SiteBackups> = self
            .sites
            .iter()
            .map(|site| {
                let dir = site.root.join("bitrix/backup");
                let archives = scan(&dir, &|name| bitrix_archive_part(name).map(|(base, _)| base.to_owned()));
                let mut sets = Vec::new();
                if !archives.is_empty() {
                    sets.push(BackupSet {
                        site: site.name.clone(),
                        kind: KIND_BITRIX,
                        avail: available(&dir),
                        dir,
                        archives,
                    });
                }
                SiteBackups { site: site.name.clone(), sets, scheduled: Vec::new() }
            })
            .collect();
        for schedule in schedules {
            // The site whose database is backed up; a schedule for a database no discovered
            // site uses is reported under the database's name.
            let site = self
                .sites
                .iter()
                .find(|s| s.db.as_ref().is_some_and(|db| db.database == schedule.db))
                .map_or_else(|| schedule.db.clone(), |s| s.name.clone());
            let db = schedule.db.clone();
            let archives = scan(&schedule.dir, &|name| bitrixvm_archive(name, &db).then(|| name.to_owned()));
            let entry = match out.iter_mut().position(|s| s.site == site) {
                Some(idx) => &mut out[idx],
                None => {
                    out.push(SiteBackups { site: site.clone(), sets: Vec::new(), scheduled: Vec::new() });
                    out.last_mut().expect("just pushed")
                }
            };
            entry.scheduled.push(schedule.dir.clone());
            if !archives.is_empty() && !entry.sets.iter().any(|s| s.kind == KIND_BITRIXVM && s.dir == schedule.dir) {
                entry.sets.push(BackupSet {
                    site,
                    kind: KIND_BITRIXVM,
                    avail: available(&schedule.dir),
                    dir: schedule.dir,
                    archives,
                });
            }
        }
        out
    }
}

/// What was found for one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteBackups {
    /// Site label.
    pub site: String,
    /// Non-empty sets of archives.
    pub sets: Vec<BackupSet>,
    /// Archive directories of BitrixVM schedules for this site.
    pub scheduled: Vec<PathBuf>,
}

/// Turns what was found into observations and check results. Pure: `now` is unix seconds.
pub fn judge(cfg: &BackupConfig, found: &SiteBackups, now: i64, at: UnixMs, out: &mut Findings) {
    let site = found.site.as_str();
    for set in &found.sets {
        let labels = || vec![("site", site.to_owned()), ("kind", set.kind.to_owned())];
        let newest = &set.archives[0];
        out.observe(BACKUP_LAST_TIMESTAMP_SECONDS, labels(), newest.mtime as f64, at);
        out.observe(BACKUP_LAST_SIZE_BYTES, labels(), newest.size as f64, at);
        if let Some(previous) = set.archives.get(1) {
            out.observe(BACKUP_PREVIOUS_SIZE_BYTES, labels(), previous.size as f64, at);
        }
        out.observe(BACKUP_ARCHIVES, labels(), set.archives.len() as f64, at);
        if let Some(avail) = set.avail {
            out.observe(BACKUP_FILESYSTEM_AVAIL_BYTES, labels(), avail as f64, at);
        }
    }
    let newest = found.sets.iter().map(|s| (s, &s.archives[0])).max_by_key(|(_, a)| a.mtime);
    let hours = |secs: i64| (secs as f64 / 3600.0).round() as i64;
    out.checks.push(match newest {
        None if found.scheduled.is_empty() => Check::failed(
            "backup_age",
            site,
            Severity::Medium,
            "not_configured",
            "No backup was found: neither Bitrix backups in bitrix/backup nor a BitrixVM backup schedule.".into(),
            at,
        ),
        None => Check::failed(
            "backup_age",
            site,
            Severity::High,
            "missing",
            format!(
                "A BitrixVM backup is scheduled but {} holds no archive of this site.",
                found.scheduled.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            at,
        ),
        Some((set, a)) if now - a.mtime > cfg.max_age.as_secs() as i64 => Check::failed(
            "backup_age",
            site,
            Severity::High,
            "stale",
            format!(
                "The newest backup ({} in {}) is {} hours old, more than the {} allowed.",
                a.name,
                set.dir.display(),
                hours(now - a.mtime),
                cfg.max_age.as_secs() / 3600
            ),
            at,
        ),
        Some((set, a)) => Check::ok(
            "backup_age",
            site,
            Severity::High,
            format!("The newest backup ({}, {} kind) is {} hours old.", a.name, set.kind, hours(now - a.mtime)),
            at,
        ),
    });
    let Some((newest_set, newest_archive)) = newest else { return };
    let shrunk: Vec<String> = found
        .sets
        .iter()
        .filter(|s| s.archives.len() >= 2 && (s.archives[0].size as f64) < cfg.shrink_ratio * s.archives[1].size as f64)
        .map(|s| {
            format!(
                "{} ({} bytes) is much smaller than the backup before it ({} bytes)",
                s.archives[0].name, s.archives[0].size, s.archives[1].size
            )
        })
        .collect();
    out.checks.push(if shrunk.is_empty() {
        Check::ok(
            "backup_size",
            site,
            Severity::Medium,
            "The newest backup is as large as the one before it.".into(),
            at,
        )
    } else {
        Check::failed(
            "backup_size",
            site,
            Severity::Medium,
            "shrunk",
            format!("{}: it may be truncated or the backup failed.", shrunk.join("; ")),
            at,
        )
    });
    out.checks.push(match newest_set.avail {
        Some(avail) if avail < newest_archive.size => Check::failed(
            "backup_space",
            site,
            Severity::Medium,
            "no_room",
            format!(
                "{} has {} bytes free, less than the {} bytes of the last backup: the next one will not fit.",
                newest_set.dir.display(),
                avail,
                newest_archive.size
            ),
            at,
        ),
        Some(avail) => Check::ok(
            "backup_space",
            site,
            Severity::Medium,
            format!("{} bytes free for the next backup of about {} bytes.", avail, newest_archive.size),
            at,
        ),
        None => Check::error(
            "backup_space",
            site,
            Severity::Medium,
            "unknown",
            format!("The free space of {} could not be read.", newest_set.dir.display()),
            at,
        ),
    });
}

#[async_trait::async_trait]
impl Checker for BackupChecker {
    fn name(&self) -> &'static str {
        "backup"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    async fn run(&mut self, at: UnixMs, out: &mut Findings) {
        // Directory listings and statvfs only; a hung NFS mount would block a blocking thread,
        // never the runtime's workers.
        let checker = BackupChecker { cfg: self.cfg.clone(), sites: self.sites.clone() };
        let Ok(found) = tokio::task::spawn_blocking(move || checker.survey()).await else { return };
        for site in &found {
            judge(&self.cfg, site, at.0 / 1000, at, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    fn cfg(crontabs: Vec<PathBuf>) -> BackupConfig {
        BackupConfig {
            enabled: true,
            interval: Duration::from_secs(300),
            max_age: Duration::from_secs(36 * 3600),
            shrink_ratio: 0.5,
            crontabs,
        }
    }

    fn site(root: &Path, name: &str, db: &str) -> Site {
        Site {
            name: name.into(),
            root: root.to_path_buf(),
            db: Some(super::super::discover::DbCredentials {
                endpoint: super::super::discover::Endpoint::LocalDefault,
                database: db.into(),
                user: "bitrix0".into(),
                password: String::new(),
            }),
            exception_log: None,
            problems: Vec::new(),
        }
    }

    /// Writes `size` bytes at `path` with the given age.
    fn archive(path: &Path, size: usize, age_hours: u64) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, vec![0x1f; size]).expect("write archive");
        let mtime = std::time::SystemTime::now() - Duration::from_secs(age_hours * 3600);
        std::fs::File::options().write(true).open(path).expect("open").set_modified(mtime).expect("set mtime");
    }

    fn run(checker: &BackupChecker) -> Findings {
        let mut out = Findings::default();
        let now = crate::observation::now();
        for site in checker.survey() {
            judge(&checker.cfg, &site, now.0 / 1000, now, &mut out);
        }
        out
    }

    fn result(out: &Findings, check: &str, target: &str) -> (Status, &'static str, Severity) {
        let c = out.checks.iter().find(|c| c.check == check && c.target == target).unwrap_or_else(|| {
            panic!("no {check} for {target}: {:?}", out.checks);
        });
        (c.status, c.reason, c.severity)
    }

    #[test]
    fn bitrix_names_and_parts_are_recognised() {
        // Names as CBackup::GetArcName and CTar::getNextName make them.
        let cases = [
            ("20240115_031500_full_a1B2c3D4e5F6g7H8.tar.gz", Some(("20240115_031500_full_a1B2c3D4e5F6g7H8.tar.gz", 0))),
            (
                "20240115_031500_full_a1B2c3D4e5F6g7H8.tar.gz.1",
                Some(("20240115_031500_full_a1B2c3D4e5F6g7H8.tar.gz", 1)),
            ),
            (
                "20240115_031500_full_a1B2c3D4e5F6g7H8.tar.gz.12",
                Some(("20240115_031500_full_a1B2c3D4e5F6g7H8.tar.gz", 12)),
            ),
            (
                "20240115_031500_nosql_a1B2c3D4e5F6g7H8.enc.gz",
                Some(("20240115_031500_nosql_a1B2c3D4e5F6g7H8.enc.gz", 0)),
            ),
            ("20240115_031500_sql_a1B2c3D4e5F6g7H8.tar", Some(("20240115_031500_sql_a1B2c3D4e5F6g7H8.tar", 0))),
            ("index.php", None),
            (".htaccess", None),
            ("20240115_031500_full_a1B2c3D4e5F6g7H8.sql", None),
            (".tar.gz", None),
        ];
        for (name, want) in cases {
            assert_eq!(bitrix_archive_part(name), want, "{name}");
        }
        assert!(bitrixvm_archive("www_backup_sitemanager_30.01.2015_bnnW1NPm.tar.gz", "sitemanager"));
        assert!(!bitrixvm_archive("www_backup_sitemanager0_30.01.2015_bnnW1NPm.tar.gz", "sitemanager"));
        assert!(!bitrixvm_archive("www_backup_sitemanager_30.01.2015_bnnW1NPm.tar", "sitemanager"));
    }

    #[test]
    fn bitrixvm_schedule_is_read_from_crontab_lines() {
        // The line bitrix-env's bxSite module writes into /etc/crontab, and noise around it.
        let text = "SHELL=/bin/bash\n# 10 22 * * * bitrix /opt/webdir/bin/bx_backup.sh old /home/bitrix/backup/old\n\
                    10 22 * * * bitrix /opt/webdir/bin/bx_backup.sh sitemanager /home/bitrix/backup/archive\n\
                    */5 * * * * root /opt/webdir/bin/bx_backup.sh\n\
                    0 3 * * 1 bitrix /opt/webdir/bin/bx_backup.sh dbcp /home/bitrix/backup/archive >/dev/null 2>&1\n";
        assert_eq!(
            parse_schedules(text),
            [
                Schedule { db: "sitemanager".into(), dir: "/home/bitrix/backup/archive".into() },
                Schedule { db: "dbcp".into(), dir: "/home/bitrix/backup/archive".into() },
            ]
        );
    }

    /// Fresh, stale, truncated and absent backups laid out as Bitrix and BitrixVM write them.
    #[test]
    fn fresh_stale_truncated_and_absent_backups_each_get_their_finding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        // "default": a fresh Bitrix backup in 3 parts, the previous one of about the same size.
        let www = root.join("www");
        let backup = www.join("bitrix/backup");
        std::fs::create_dir_all(&backup).expect("mkdir");
        std::fs::write(backup.join("index.php"), "<? ?>").expect("index");
        archive(&backup.join("20240114_031500_full_AAAAAAAAAAAAAAAA.tar.gz"), 3000, 30);
        archive(&backup.join("20240115_031500_full_BBBBBBBBBBBBBBBB.tar.gz"), 1000, 3);
        archive(&backup.join("20240115_031500_full_BBBBBBBBBBBBBBBB.tar.gz.1"), 1000, 3);
        archive(&backup.join("20240115_031500_full_BBBBBBBBBBBBBBBB.tar.gz.2"), 900, 2);
        // "shop": BitrixVM backups, the newest fresh but truncated.
        let shop = root.join("ext_www/shop");
        std::fs::create_dir_all(shop.join("bitrix")).expect("mkdir");
        let vm = root.join("backup/archive");
        archive(&vm.join("www_backup_shopdb_13.01.2024_x1y2z3w4.tar.gz"), 5000, 50);
        archive(&vm.join("www_backup_shopdb_14.01.2024_a1b2c3d4.tar.gz"), 5000, 26);
        archive(&vm.join("www_backup_shopdb_15.01.2024_q1w2e3r4.tar.gz"), 400, 2);
        archive(&vm.join("www_backup_otherdb_15.01.2024_q1w2e3r4.tar.gz"), 10, 2);
        // "old": only a stale Bitrix backup.
        let old = root.join("ext_www/old");
        archive(&old.join("bitrix/backup/20231201_031500_full_CCCCCCCCCCCCCCCC.tar.gz"), 100, 24 * 40);
        // "none": nothing at all; "lost": scheduled in BitrixVM but nothing written.
        let none = root.join("ext_www/none");
        std::fs::create_dir_all(none.join("bitrix")).expect("mkdir");
        let lost = root.join("ext_www/lost");
        std::fs::create_dir_all(lost.join("bitrix")).expect("mkdir");
        let crontab = root.join("crontab");
        std::fs::write(
            &crontab,
            format!(
                "10 22 * * * bitrix /opt/webdir/bin/bx_backup.sh shopdb {vm}\n\
                 10 23 * * * bitrix /opt/webdir/bin/bx_backup.sh lostdb {root}/backup/empty\n",
                vm = vm.display(),
                root = root.display()
            ),
        )
        .expect("crontab");
        let checker = BackupChecker::new(
            cfg(vec![crontab]),
            vec![
                site(&www, "default", "sitemanager"),
                site(&shop, "shop", "shopdb"),
                site(&old, "old", "olddb"),
                site(&none, "none", "nonedb"),
                site(&lost, "lost", "lostdb"),
            ],
        );
        let out = run(&checker);
        assert_eq!(result(&out, "backup_age", "default"), (Status::Ok, "", Severity::High));
        assert_eq!(result(&out, "backup_size", "default"), (Status::Ok, "", Severity::Medium));
        assert_eq!(result(&out, "backup_space", "default"), (Status::Ok, "", Severity::Medium));
        assert_eq!(result(&out, "backup_age", "shop"), (Status::Ok, "", Severity::High));
        assert_eq!(result(&out, "backup_size", "shop"), (Status::Failed, "shrunk", Severity::Medium));
        assert_eq!(result(&out, "backup_age", "old"), (Status::Failed, "stale", Severity::High));
        assert_eq!(result(&out, "backup_age", "none"), (Status::Failed, "not_configured", Severity::Medium));
        assert_eq!(result(&out, "backup_age", "lost"), (Status::Failed, "missing", Severity::High));
        assert!(!out.checks.iter().any(|c| c.target == "none" && c.check != "backup_age"), "{:?}", out.checks);
        // Multi-part archives are one backup: size summed, time of the last part.
        let value = |name: &str, site: &str, kind: &str| {
            out.observations
                .iter()
                .find(|o| o.name == name && o.labels == [("site", site.to_owned()), ("kind", kind.to_owned())])
                .map(|o| o.value)
        };
        assert_eq!(value(BACKUP_LAST_SIZE_BYTES, "default", KIND_BITRIX), Some(2900.0));
        assert_eq!(value(BACKUP_ARCHIVES, "default", KIND_BITRIX), Some(2.0));
        let now = crate::observation::now().0 as f64 / 1000.0;
        let last = value(BACKUP_LAST_TIMESTAMP_SECONDS, "default", KIND_BITRIX).expect("last backup time");
        assert!((last - (now - 7200.0)).abs() < 60.0, "{last} vs {now}");
        assert_eq!(value(BACKUP_LAST_SIZE_BYTES, "shop", KIND_BITRIXVM), Some(400.0));
        assert_eq!(value(BACKUP_ARCHIVES, "shop", KIND_BITRIXVM), Some(3.0));
        assert_eq!(value(BACKUP_PREVIOUS_SIZE_BYTES, "shop", KIND_BITRIXVM), Some(5000.0));
        assert!(value(BACKUP_FILESYSTEM_AVAIL_BYTES, "shop", KIND_BITRIXVM).is_some_and(|v| v > 0.0));
        // The other database's archive belongs to no site of ours and is not counted.
        assert_eq!(value(BACKUP_ARCHIVES, "otherdb", KIND_BITRIXVM), None);

        // A new full backup of the shop fixes the size finding.
        archive(&vm.join("www_backup_shopdb_16.01.2024_z9z9z9z9.tar.gz"), 5100, 0);
        let out = run(&checker);
        assert_eq!(result(&out, "backup_size", "shop"), (Status::Ok, "", Severity::Medium));
    }

    #[test]
    fn a_full_filesystem_fails_the_space_check() {
        let found = SiteBackups {
            site: "default".into(),
            sets: vec![BackupSet {
                site: "default".into(),
                kind: KIND_BITRIX,
                dir: "/home/bitrix/www/bitrix/backup".into(),
                archives: vec![Archive { name: "a.tar.gz".into(), size: 5_000_000, mtime: 1000, parts: 1 }],
                avail: Some(4_000_000),
            }],
            scheduled: Vec::new(),
        };
        let mut out = Findings::default();
        judge(&cfg(Vec::new()), &found, 2000, UnixMs(2_000_000), &mut out);
        assert_eq!(result(&out, "backup_space", "default"), (Status::Failed, "no_room", Severity::Medium));
    }

    #[test]
    fn bad_settings_are_reported() {
        let raw = RawBackup { shrink_ratio: 1.5, crontabs: vec!["etc/crontab".into()], ..RawBackup::default() };
        let mut problems = Problems::new(Path::new("agent.toml"));
        raw.validate(&mut problems);
        let err = problems.finish(()).expect_err("invalid");
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["backup.shrink_ratio", "backup.crontabs"]);
    }
}
