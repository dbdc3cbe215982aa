//! Error-log monitoring: tail files, classify lines, group them by fingerprint.
//!
//! The tailer is not a `Sampler`: its offsets must be committed in the same spool transaction as
//! the groups they produced, so the scheduler drives it directly and hands its checkpoints to
//! `Spool::push`.

pub mod classify;
pub(crate) mod glob;
pub mod lines;
pub mod tail;

use b24watch_common::config::Problems;
use regex::Regex;
use serde::{Deserialize, Serialize};

use self::classify::{Classifier, Preset};
use self::lines::Encoding;
use crate::observation::{Observation, Severity, UnixMs};

/// `(device, inode)` of a file.
pub type FileKey = (u64, u64);

/// A file position to commit with the data read before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log name.
    pub log: String,
    /// Path the file was last seen at.
    pub path: String,
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Bytes of the head covered by `head_hash` (0: file was empty).
    pub head_len: u64,
    /// Hash of the head.
    pub head_hash: u64,
    /// Next byte to read.
    pub offset: u64,
}

/// Errors of one fingerprint seen in one log during one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Log name.
    pub log: String,
    /// Fingerprint (16 hex digits).
    pub fingerprint: String,
    /// Highest severity seen.
    pub severity: Severity,
    /// Occurrences.
    pub count: u64,
    /// First seen (agent time).
    pub first: UnixMs,
    /// Last seen.
    pub last: UnixMs,
    /// One example, at most 512 characters.
    pub example: String,
    /// Path of the file the example was read from (empty for a catch-all group).
    pub file: String,
}

/// One configured log: where, how to read it, how to classify it.
///
/// Its regexes are compiled on first use: a log whose files do not exist on this server costs
/// no memory (compiled automata are the largest part of the agent's footprint).
#[derive(Debug, Clone)]
pub struct LogSpec {
    /// Name: the `log` label.
    pub name: String,
    /// Path patterns.
    pub paths: Vec<String>,
    rules: Vec<(String, Severity)>,
    classifier: std::cell::OnceCell<Classifier>,
    record_start_pattern: Option<&'static str>,
    record_start: std::cell::OnceCell<Option<Regex>>,
    /// Byte decoding.
    pub encoding: Encoding,
}

/// A log's rules: its own first (they win among equal severities), then its preset's. Rules
/// are matched against the log's bytes, so for a windows-1251 log the letters of its own rules,
/// written in UTF-8 in the config, are turned into windows-1251 bytes.
pub fn rules_of(preset: Preset, extra_rules: &[(String, Severity)], encoding: Encoding) -> Vec<(String, Severity)> {
    let mut rules: Vec<(String, Severity)> =
        extra_rules.iter().map(|(pattern, severity)| (encoding.rule_for_bytes(pattern), *severity)).collect();
    rules.extend(preset.rules().into_iter().map(|(p, s)| (p.to_owned(), s)));
    rules
}

impl LogSpec {
    /// Builds a spec from a preset plus extra rules. The rules are compiled on first use: the
    /// config validation has already checked that they compile.
    pub fn new(
        name: &str,
        paths: Vec<String>,
        preset: Preset,
        extra_rules: &[(String, Severity)],
        encoding: Encoding,
    ) -> LogSpec {
        LogSpec {
            name: name.to_owned(),
            paths,
            rules: rules_of(preset, extra_rules, encoding),
            classifier: std::cell::OnceCell::new(),
            record_start_pattern: preset.record_start(),
            record_start: std::cell::OnceCell::new(),
            encoding,
        }
    }

    /// The compiled rules.
    ///
    /// # Panics
    /// When a rule does not compile, which config validation rules out (and presets are tested).
    pub fn classifier(&self) -> &Classifier {
        self.classifier.get_or_init(|| Classifier::new(&self.rules).expect("rules were validated with the config"))
    }

    /// Whether records of this log span several lines.
    pub fn is_multiline(&self) -> bool {
        self.record_start_pattern.is_some()
    }

    /// The start-of-record regex of a multi-line log.
    ///
    /// # Panics
    /// Never: preset patterns are tested.
    pub fn record_start(&self) -> Option<&Regex> {
        self.record_start
            .get_or_init(|| {
                self.record_start_pattern.map(|p| Regex::new(p).expect("preset record regex compiles (tested)"))
            })
            .as_ref()
    }
}

/// Counters of every log as observations.
pub fn observe(tailer: &tail::Tailer, at: UnixMs) -> Vec<Observation> {
    use b24watch_proto::catalog::{
        BITRIX_EXCEPTIONS_TOTAL, LOG_ERRORS_TOTAL, LOG_GROUPS_MERGED_TOTAL, LOG_LINES_TOTAL, LOG_LONG_LINES_TOTAL,
        LOG_ROTATED_AWAY_TOTAL, LOG_TRUNCATIONS_TOTAL,
    };
    let mut out = Vec::new();
    for (spec, c) in tailer.specs().iter().zip(&tailer.counters) {
        let log = || vec![("log", spec.name.clone())];
        out.push(Observation::labeled(LOG_LINES_TOTAL, log(), c.lines as f64, at));
        for (severity, count) in tail::SEVERITIES.iter().zip(c.errors) {
            let labels = vec![("log", spec.name.clone()), ("severity", severity.as_str().to_owned())];
            out.push(Observation::labeled(LOG_ERRORS_TOTAL, labels, count as f64, at));
        }
        out.push(Observation::labeled(LOG_LONG_LINES_TOTAL, log(), c.long_lines as f64, at));
        out.push(Observation::labeled(LOG_TRUNCATIONS_TOTAL, log(), c.truncations as f64, at));
        out.push(Observation::labeled(LOG_ROTATED_AWAY_TOTAL, log(), c.rotated_away as f64, at));
        out.push(Observation::labeled(LOG_GROUPS_MERGED_TOTAL, log(), c.merged as f64, at));
        if spec.is_multiline() {
            // Every known type from 0, so that the first records after a restart are an increase
            // (a series born at 12 has an increase of ~0 and the PHP-fatal alert missed them).
            for kind in classify::BITRIX_RECORD_TYPES {
                let count = c.bitrix_types.get(kind).copied().unwrap_or(0);
                let labels = vec![("log", spec.name.clone()), ("type", kind.to_owned())];
                out.push(Observation::labeled(BITRIX_EXCEPTIONS_TOTAL, labels, count as f64, at));
            }
        }
    }
    out
}

/// `[logs]` section as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogs {
    /// Whether logs are tailed.
    pub enabled: bool,
    /// "end" or "beginning".
    pub read_from: String,
    /// Line length bound.
    pub max_line_bytes: u64,
    /// Read budget per file per tick.
    pub max_read_bytes_per_tick: u64,
    /// The logs.
    pub file: Vec<RawLogFile>,
}

/// One `[[logs.file]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLogFile {
    /// Name (the `log` label).
    pub name: String,
    /// Path patterns.
    pub paths: Vec<String>,
    /// Preset name.
    #[serde(default = "default_preset")]
    pub preset: String,
    /// Encoding name.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// Extra rules.
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// One extra rule.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Regex.
    pub pattern: String,
    /// low, medium, high or critical.
    pub severity: String,
}

fn default_preset() -> String {
    "none".into()
}

fn default_encoding() -> String {
    "utf-8".into()
}

impl Default for RawLogs {
    fn default() -> Self {
        let file = |name: &str, paths: &[&str], preset: &str| RawLogFile {
            name: name.into(),
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            preset: preset.into(),
            encoding: "utf-8".into(),
            rules: Vec::new(),
        };
        RawLogs {
            enabled: true,
            read_from: "end".into(),
            max_line_bytes: 16384,
            max_read_bytes_per_tick: 64 << 20,
            file: vec![
                file("nginx_error", &["/var/log/nginx/error.log", "/var/log/nginx/*_error.log"], "nginx"),
                file(
                    "httpd_error",
                    &["/var/log/httpd/error_log", "/var/log/httpd/*_error_log", "/var/log/apache2/error.log"],
                    "httpd",
                ),
                file(
                    "php_error",
                    &["/var/log/php-fpm/error.log", "/var/log/php-fpm/www-error.log", "/var/log/php/error.log"],
                    "php",
                ),
                file(
                    "bitrix_exceptions",
                    &["/var/log/php/exceptions.log", "/home/bitrix/www/bitrix/modules/error.log"],
                    "bitrix_exceptions",
                ),
                file(
                    "mysql_error",
                    &["/var/log/mysql/error.log", "/var/log/mysqld.log", "/var/log/mariadb/mariadb.log"],
                    "mysql",
                ),
            ],
        }
    }
}

/// Validated `[logs]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    /// Whether logs are tailed.
    pub enabled: bool,
    /// Start new files at their end on the first start.
    pub read_from_end: bool,
    /// Line length bound.
    pub max_line_bytes: usize,
    /// Read budget per file per tick.
    pub max_read_bytes_per_tick: u64,
    /// The logs.
    pub files: Vec<LogFileConfig>,
}

/// One validated log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileConfig {
    /// Name.
    pub name: String,
    /// Path patterns.
    pub paths: Vec<String>,
    /// Preset.
    pub preset: Preset,
    /// Encoding.
    pub encoding: Encoding,
    /// Extra rules (checked to compile).
    pub rules: Vec<(String, Severity)>,
}

impl LogFileConfig {
    /// The runtime form.
    pub fn spec(&self) -> LogSpec {
        LogSpec::new(&self.name, self.paths.clone(), self.preset, &self.rules, self.encoding)
    }
}

impl RawLogs {
    /// The validated form; problems go to `problems`, each log's with its index.
    pub fn validate(&self, problems: &mut Problems) -> LogsConfig {
        let read_from_end = match self.read_from.as_str() {
            "end" => true,
            "beginning" => false,
            other => {
                problems.bad("logs.read_from", format!("{other:?}: expected \"end\" or \"beginning\""));
                true
            }
        };
        problems.range("logs.max_line_bytes", self.max_line_bytes, 1024, 1 << 20);
        if self.max_read_bytes_per_tick < 1 << 20 {
            problems.bad(
                "logs.max_read_bytes_per_tick",
                format!("{}: expected at least 1048576", self.max_read_bytes_per_tick),
            );
        }
        let mut files = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (idx, f) in self.file.iter().enumerate() {
            let key = |field: &str| format!("logs.file[{idx}].{field}");
            if f.name.is_empty() || !f.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                problems.bad(key("name"), format!("{:?}: expected lowercase letters, digits and _", f.name));
            } else if !names.insert(f.name.clone()) {
                problems.bad(key("name"), format!("{:?} is used twice", f.name));
            }
            if f.paths.is_empty() || f.paths.iter().any(|p| !p.starts_with('/')) {
                problems.bad(key("paths"), format!("{:?}: expected one or more absolute paths", f.paths));
            }
            let preset = Preset::parse(&f.preset).unwrap_or_else(|| {
                problems.bad(
                    key("preset"),
                    format!("{:?}: expected nginx, httpd, php, bitrix_exceptions, mysql or none", f.preset),
                );
                Preset::None
            });
            let encoding = Encoding::parse(&f.encoding).unwrap_or_else(|| {
                problems.bad(key("encoding"), format!("{:?}: expected utf-8 or windows-1251", f.encoding));
                Encoding::Utf8
            });
            let mut rules = Vec::new();
            for (rule_idx, rule) in f.rules.iter().enumerate() {
                let Some(severity) = Severity::parse(&rule.severity) else {
                    problems.bad(
                        key(&format!("rules[{rule_idx}].severity")),
                        format!("{:?}: expected low, medium, high or critical", rule.severity),
                    );
                    continue;
                };
                if let Err(err) = regex::bytes::Regex::new(&rule.pattern) {
                    problems.bad(key(&format!("rules[{rule_idx}].pattern")), format!("{:?}: {err}", rule.pattern));
                    continue;
                }
                rules.push((rule.pattern.clone(), severity));
            }
            // Each rule compiles alone; the agent searches them together with the preset's.
            if rules.len() == f.rules.len()
                && let Err(err) = Classifier::new(&rules_of(preset, &rules, encoding))
            {
                problems.bad(
                    key("rules"),
                    format!("the rules do not compile together with the {:?} preset: {err}", f.preset),
                );
            }
            files.push(LogFileConfig { name: f.name.clone(), paths: f.paths.clone(), preset, encoding, rules });
        }
        LogsConfig {
            enabled: self.enabled,
            read_from_end,
            max_line_bytes: self.max_line_bytes as usize,
            max_read_bytes_per_tick: self.max_read_bytes_per_tick,
            files,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use b24watch_proto::catalog::BITRIX_EXCEPTIONS_TOTAL;

    /// Issue 18 item 7 / issue 19 item 2: after a restart every exception type is reported from 0,
    /// so the first FATAL records are an increase the PHP-fatal alert sees.
    #[test]
    fn every_exception_type_is_reported_from_zero_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("exceptions.log");
        std::fs::write(&path, "").expect("write");
        let spec = LogSpec::new(
            "bitrix_exceptions",
            vec![path.display().to_string()],
            Preset::BitrixExceptions,
            &[],
            Encoding::Utf8,
        );
        let mut tailer = tail::Tailer::new(vec![spec], Vec::new(), true, 1024, u64::MAX);
        let _ = tailer.poll(UnixMs(1));
        let obs = observe(&tailer, UnixMs(1));
        let types: Vec<(String, f64)> = obs
            .iter()
            .filter(|o| o.name == BITRIX_EXCEPTIONS_TOTAL)
            .map(|o| (o.labels.iter().find(|(k, _)| *k == "type").map(|(_, v)| v.clone()).unwrap_or_default(), o.value))
            .collect();
        for kind in classify::BITRIX_RECORD_TYPES {
            assert!(types.contains(&(kind.to_owned(), 0.0)), "{kind} not reported at 0: {types:?}");
        }
    }
}
