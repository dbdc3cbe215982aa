//! Classification of log lines by rules (regex → severity), presets for the logs of a Bitrix24
//! box server, and message fingerprints for grouping. Pure.
//!
//! ## Design
//! Scanning must keep up with `grep` (DESIGN.md 7), so rules are not tried line by line: one
//! combined regex runs over a whole chunk to find candidate lines, and only those lines go
//! through the per-rule set that picks the severity.

use regex::bytes::Regex;

/// SLA vocabulary, numbered like the wire enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Advice.
    Low = 1,
    /// Local problems.
    Medium = 2,
    /// Serious breakage.
    High = 3,
    /// Portal fully unavailable.
    Critical = 4,
}

impl Severity {
    /// Parses a config value.
    pub fn parse(text: &str) -> Option<Severity> {
        match text {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Built-in rule sets for the logs of a Bitrix24 box server (BITRIX.md 1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// nginx error log (`[error]`, upstream failures).
    Nginx,
    /// Apache httpd error log, where mod_php writes PHP errors on BitrixVM.
    Httpd,
    /// A PHP or php-fpm error log.
    Php,
    /// The Bitrix exception log (`exceptions.log`), multi-line records with a type.
    BitrixExceptions,
    /// MySQL/MariaDB error log.
    Mysql,
    /// No built-in rules: only the file's own rules apply.
    None,
}

impl Preset {
    /// Parses a config value.
    pub fn parse(text: &str) -> Option<Preset> {
        Some(match text {
            "nginx" => Preset::Nginx,
            "httpd" => Preset::Httpd,
            "php" => Preset::Php,
            "bitrix_exceptions" => Preset::BitrixExceptions,
            "mysql" => Preset::Mysql,
            "none" => Preset::None,
            _ => return None,
        })
    }

    /// The preset's rules, most specific first.
    pub fn rules(self) -> Vec<(&'static str, Severity)> {
        use Severity::{Critical, High, Low, Medium};
        const PHP: [(&str, Severity); 4] = [
            (r"PHP (Fatal|Parse) error|Allowed memory size of [0-9]+ bytes exhausted|Maximum execution time of", High),
            (r"PHP Warning", Low),
            (r"PHP (Notice|Deprecated)", Low),
            (r"segfault|Segmentation fault", High),
        ];
        match self {
            Preset::Nginx => vec![
                (r"\[emerg\]|no live upstreams", Critical),
                (r"\[(alert|crit)\]|upstream timed out|while connecting to upstream|upstream prematurely closed", High),
                (r"\[error\]", Medium),
                (r"\[warn\]", Low),
            ],
            Preset::Httpd => {
                let mut rules = vec![
                    (r"\[([a-z_0-9]*:)?emerg\]", Critical),
                    (r"\[([a-z_0-9]*:)?(alert|crit)\]|MaxRequestWorkers|server reached MaxClients", High),
                    (r"\[([a-z_0-9]*:)?error\]", Medium),
                    (r"\[([a-z_0-9]*:)?warn\]", Low),
                ];
                rules.extend(PHP);
                rules
            }
            Preset::Php => PHP.to_vec(),
            Preset::BitrixExceptions => vec![
                (r" - (FATAL|UNCAUGHT_EXCEPTION) - ", High),
                (r" - (CAUGHT_EXCEPTION|ASSERTION) - ", Medium),
                (r" - (IGNORED_ERROR|LOW_PRIORITY_ERROR) - ", Low),
            ],
            Preset::Mysql => vec![
                (r"(?i)corrupt|Assertion failure|got signal|Out of memory|Too many connections", Critical),
                (r"\[ERROR\]", High),
                (r"\[Warning\]", Low),
            ],
            Preset::None => Vec::new(),
        }
    }

    /// Start of a record, for multi-line logs.
    pub fn record_start(self) -> Option<&'static str> {
        match self {
            Preset::BitrixExceptions => Some(r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} - Host: "),
            _ => None,
        }
    }
}

/// The record type of a Bitrix exception log header (`... - Host: x - FATAL - ...`).
pub fn bitrix_record_type(header: &str) -> Option<&'static str> {
    const TYPES: [&str; 6] =
        ["UNCAUGHT_EXCEPTION", "CAUGHT_EXCEPTION", "IGNORED_ERROR", "LOW_PRIORITY_ERROR", "ASSERTION", "FATAL"];
    TYPES.into_iter().find(|t| header.contains(&format!(" - {t} - ")) || header.ends_with(&format!(" - {t}")))
}

/// Compiled rules of one log.
#[derive(Debug, Clone)]
pub struct Classifier {
    prefilter: Option<Regex>,
    /// Rules sorted by severity, highest first, so the first match decides.
    rules: Vec<(Regex, Severity)>,
}

impl Classifier {
    /// Compiles `rules`.
    ///
    /// # Errors
    /// The first rule that is not a valid regex.
    pub fn new(rules: &[(String, Severity)]) -> Result<Classifier, regex::Error> {
        let patterns: Vec<&str> = rules.iter().map(|(p, _)| p.as_str()).collect();
        let mut compiled =
            rules.iter().map(|(p, s)| Ok((Regex::new(p)?, *s))).collect::<Result<Vec<_>, regex::Error>>()?;
        // Stable: among equal severities the configured order is kept.
        compiled.sort_by_key(|rule| std::cmp::Reverse(rule.1));
        let prefilter = if patterns.is_empty() {
            None
        } else {
            let union = patterns.iter().map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|");
            Some(compile(&union)?)
        };
        Ok(Classifier { prefilter, rules: compiled })
    }

    /// The highest severity of the rules matching `line`, if any.
    pub fn classify(&self, line: &[u8]) -> Option<Severity> {
        self.rules.iter().find(|(re, _)| re.is_match(line)).map(|(_, severity)| *severity)
    }

    /// Byte offsets in `chunk` where some rule matches (candidate lines), in order.
    pub fn candidates<'a>(&'a self, chunk: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
        self.prefilter.iter().flat_map(move |re| re.find_iter(chunk).map(|m| m.start()))
    }
}

/// Bytes of a message that take part in its fingerprint, counted from where its rule matched.
const FINGERPRINT_BYTES: usize = 128;

/// Compiles a rule for bytes. Without Unicode classes (`\w`, `(?i)` stay ASCII) the automata
/// are a fraction of the size, and log rules are ASCII in practice; a pattern that needs Unicode
/// (non-ASCII literals are fine without it) still compiles with it.
fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(pattern)
        .unicode(false)
        .build()
        .or_else(|_| regex::bytes::RegexBuilder::new(pattern).build())
}

/// A stable fingerprint of a message: numbers, hex ids and query strings normalised, so the same
/// error from different requests groups together. Returns the normalised text and its hash.
pub fn fingerprint(message: &str) -> (String, u64) {
    let mut text = Vec::new();
    for_each_piece(message.as_bytes(), |piece| text.extend_from_slice(piece));
    (String::from_utf8_lossy(&text).into_owned(), fingerprint_hash(message.as_bytes()))
}

/// The hash of [`fingerprint`] without building the normalised text (the hot path). Stable
/// across versions and platforms (fixed constants, little-endian words), unlike std's hasher.
pub fn fingerprint_hash(message: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash = 0u64;
    for_each_piece(message, |piece| {
        let mut chunks = piece.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("chunks_exact(8)"));
            hash = (hash.rotate_left(23) ^ word).wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        hash = (hash.rotate_left(23) ^ u64::from_le_bytes(tail) ^ piece.len() as u64).wrapping_mul(K);
    });
    hash ^ (hash >> 29)
}

/// The normalised text behind [`fingerprint`].
pub fn normalize(message: &str) -> String {
    fingerprint(message).0
}

/// Byte classes for [`for_each_piece`]: word characters and the query-string mark.
const WORD: u8 = 1;
const QUERY: u8 = 2;
const CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            WORD
        } else if c == b'?' {
            QUERY
        } else {
            0
        };
        b += 1;
    }
    table
};

/// Splits the first [`FINGERPRINT_BYTES`] of `message` into the pieces of its normalised form:
/// separator runs as they are, every word containing a digit (numbers, ids, hex, parts of IP
/// addresses) as `#`, other words as they are, and a query string as `?…`.
fn for_each_piece(message: &[u8], mut piece: impl FnMut(&[u8])) {
    let mut rest = &message[..message.len().min(FINGERPRINT_BYTES)];
    while !rest.is_empty() {
        let sep = rest.iter().position(|b| CLASS[usize::from(*b)] != 0).unwrap_or(rest.len());
        if sep > 0 {
            piece(&rest[..sep]);
            rest = &rest[sep..];
            continue;
        }
        if rest[0] == b'?' {
            piece("?…".as_bytes());
            let end = rest.iter().position(|b| matches!(b, b' ' | b'\t' | b'"' | b'\'')).unwrap_or(rest.len());
            rest = &rest[end..];
            continue;
        }
        let word = rest.iter().position(|b| CLASS[usize::from(*b)] & WORD == 0).unwrap_or(rest.len());
        piece(if rest[..word].iter().any(u8::is_ascii_digit) { b"#" } else { &rest[..word] });
        rest = &rest[word..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier(preset: Preset) -> Classifier {
        let rules: Vec<(String, Severity)> = preset.rules().into_iter().map(|(p, s)| (p.to_owned(), s)).collect();
        Classifier::new(&rules).expect("presets compile")
    }

    #[test]
    fn preset_fixture_lines_get_the_expected_severity() {
        let cases: &[(Preset, &str, Option<Severity>)] = &[
            (
                Preset::Nginx,
                "2024/05/01 10:00:00 [error] 1234#0: *5 upstream timed out (110: Connection timed out) while reading response header from upstream",
                Some(Severity::High),
            ),
            (
                Preset::Nginx,
                "2024/05/01 10:00:00 [error] 1234#0: *5 no live upstreams while connecting to upstream",
                Some(Severity::Critical),
            ),
            (
                Preset::Nginx,
                "2024/05/01 10:00:00 [error] 1234#0: *7 open() \"/home/bitrix/www/favicon.ico\" failed (2: No such file or directory)",
                Some(Severity::Medium),
            ),
            (Preset::Nginx, "2024/05/01 10:00:00 [notice] 1#1: signal process started", None),
            (
                Preset::Httpd,
                "[Wed May 01 10:00:00.123 2024] [php7:error] [pid 42] [client 10.0.0.1:5] PHP Fatal error:  Uncaught Error: Call to undefined function foo() in /home/bitrix/www/local/php_interface/init.php:12",
                Some(Severity::High),
            ),
            (
                Preset::Httpd,
                "[Wed May 01 10:00:00 2024] [:error] [pid 42] [client 10.0.0.1] PHP Warning:  Undefined variable $x in /home/bitrix/www/index.php on line 3",
                Some(Severity::Medium),
            ),
            (
                Preset::Httpd,
                "[Wed May 01 10:00:00 2024] [mpm_prefork:error] [pid 1] AH00161: server reached MaxRequestWorkers setting",
                Some(Severity::High),
            ),
            (
                Preset::Php,
                "[01-May-2024 10:00:00 UTC] PHP Parse error:  syntax error, unexpected '}' in /home/bitrix/www/a.php on line 5",
                Some(Severity::High),
            ),
            (
                Preset::BitrixExceptions,
                "2024-05-01 10:00:00 - Host: portal.example.com - UNCAUGHT_EXCEPTION - [Bitrix\\Main\\DB\\SqlQueryException] ",
                Some(Severity::High),
            ),
            (
                Preset::BitrixExceptions,
                "2024-05-01 10:00:00 - Host:  - LOW_PRIORITY_ERROR - [ErrorException] ",
                Some(Severity::Low),
            ),
            (
                Preset::Mysql,
                "2024-05-01 10:00:00 0 [ERROR] InnoDB: Database page corruption on disk or a failed file read of page [page id: space=5, page number=3]",
                Some(Severity::Critical),
            ),
            (
                Preset::Mysql,
                "2024-05-01T10:00:00.123456Z 8 [ERROR] [MY-010584] [Repl] Slave SQL for channel '': Error 'Duplicate entry'",
                Some(Severity::High),
            ),
            (Preset::Mysql, "2024-05-01 10:00:00 0 [Note] InnoDB: Buffer pool(s) load completed", None),
        ];
        for (preset, line, expected) in cases {
            assert_eq!(classifier(*preset).classify(line.as_bytes()), *expected, "{preset:?}: {line}");
        }
    }

    #[test]
    fn candidates_find_every_matching_line_in_a_chunk() {
        let c = classifier(Preset::Nginx);
        let chunk = b"ok\n2024 [error] a\nfine\n2024 [emerg] b\n";
        let starts: Vec<usize> = c.candidates(chunk).collect();
        assert_eq!(starts.len(), 2);
        assert_eq!(&chunk[starts[0]..starts[0] + 7], b"[error]");
    }

    #[test]
    fn same_error_from_different_requests_shares_a_fingerprint() {
        let a = "2024/05/01 10:00:00 [error] 1234#0: *5 upstream timed out, client: 10.0.0.1, request: \"GET /crm/deal/?id=77 HTTP/1.1\"";
        let b = "2024/05/02 11:30:07 [error] 99#0: *812 upstream timed out, client: 192.168.1.20, request: \"GET /crm/deal/?id=78&x=1 HTTP/1.1\"";
        assert_eq!(fingerprint(a).1, fingerprint(b).1, "{} vs {}", normalize(a), normalize(b));
        let other = "2024/05/01 10:00:00 [error] 1234#0: *5 open() \"/x\" failed";
        assert_ne!(fingerprint(a).1, fingerprint(other).1);
        assert_eq!(
            normalize("Error 3f2a9b1c at 0x7f00ab, facade ip 10.0.0.1?q=1 done"),
            "Error # at #, facade ip #.#.#.#?… done"
        );
    }

    #[test]
    fn every_preset_and_record_pattern_compiles() {
        for preset in [Preset::Nginx, Preset::Httpd, Preset::Php, Preset::BitrixExceptions, Preset::Mysql, Preset::None]
        {
            let _ = classifier(preset);
            if let Some(pattern) = preset.record_start() {
                let re = regex::Regex::new(pattern).expect("record pattern compiles");
                assert!(re.is_match("2024-05-01 10:00:00 - Host: portal - FATAL - [E] x"));
            }
        }
    }

    #[test]
    fn bitrix_record_types_are_recognised() {
        assert_eq!(bitrix_record_type("2024-05-01 10:00:00 - Host: x - FATAL - [Error] boom"), Some("FATAL"));
        assert_eq!(
            bitrix_record_type("2024-05-01 10:00:00 - Host: x - CAUGHT_EXCEPTION - [E]"),
            Some("CAUGHT_EXCEPTION")
        );
        assert_eq!(
            bitrix_record_type("2024-05-01 10:00:00 - Host: x - UNCAUGHT_EXCEPTION - [E]"),
            Some("UNCAUGHT_EXCEPTION")
        );
        assert_eq!(bitrix_record_type("random"), None);
    }

    proptest::proptest! {
        #[test]
        fn property_test_classify_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            for preset in [Preset::Nginx, Preset::Httpd, Preset::BitrixExceptions, Preset::Mysql] {
                let c = classifier(preset);
                let _ = c.classify(&bytes);
                let _ = c.candidates(&bytes).count();
            }
            let _ = fingerprint(&String::from_utf8_lossy(&bytes));
        }
    }
}
