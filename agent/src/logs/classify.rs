//! Classification of log lines by rules (regex → severity), presets for the logs of a Bitrix24
//! box server, and message fingerprints for grouping. Pure.
//!
//! ## Design
//! Scanning must keep up with `grep` (DESIGN.md 7), so rules are not tried line by line: one
//! combined regex runs over a whole chunk to find candidate lines, and only those lines go
//! through the per-rule set that picks the severity.

use crate::observation::Severity;

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

    /// The preset's rules, most specific first. Written as plain strings where that is exact
    /// enough, so the log is searched like grep searches fixed strings.
    pub fn rules(self) -> Vec<(&'static str, Severity)> {
        use Severity::{Critical, High, Low, Medium};
        // What pages (high, critical) is what an ops person acts on now: the server failing its
        // users. What misbehaving clients cause (TLS handshakes nginx logs as [crit]) is counted
        // and shown, never paged.
        const PHP: [(&str, Severity); 5] = [
            (r"PHP (Fatal|Parse) error|Allowed memory size of|Maximum execution time of", High),
            (r"PHP Warning", Low),
            (r"PHP (Notice|Deprecated)", Low),
            (r"segfault|Segmentation fault", High),
            // php-fpm: every worker busy, or workers crashing.
            (r"server reached pm\.max_children|\(SIGSEGV\)|\(SIGBUS\)|\(SIGABRT\)", High),
        ];
        match self {
            Preset::Nginx => vec![
                (r"\[emerg\]|no live upstreams", Critical),
                (r"\[alert\]|upstream timed out|while connecting to upstream|upstream prematurely closed", High),
                // The [crit]s of the server itself; nginx also writes clients' failed TLS
                // handshakes and reads (SSL_do_handshake(), SSL_read()) as [crit]: those stay medium.
                (r"Too many open files|No space left on device|worker_connections are not enough", High),
                (r"\[(crit|error)\]", Medium),
                (r"\[warn\]", Low),
            ],
            Preset::Httpd => {
                let mut rules = vec![
                    // httpd 2.2 writes `[error]`, 2.4 `[module:error]` (`[php7:error]`, `[:error]`).
                    (r"\[emerg\]|:emerg\]", Critical),
                    (r"\[(alert|crit)\]|:(alert|crit)\]|MaxRequestWorkers|server reached MaxClients", High),
                    (r"\[error\]|:error\]", Medium),
                    (r"\[warn\]|:warn\]", Low),
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

/// Every record type of the Bitrix exception log (the `type` label of `bitrix_exceptions_total`,
/// each reported from 0).
pub const BITRIX_RECORD_TYPES: [&str; 6] =
    ["UNCAUGHT_EXCEPTION", "CAUGHT_EXCEPTION", "IGNORED_ERROR", "LOW_PRIORITY_ERROR", "ASSERTION", "FATAL"];

/// The record type of a Bitrix exception log header (`... - Host: x - FATAL - ...`).
pub fn bitrix_record_type(header: &str) -> Option<&'static str> {
    BITRIX_RECORD_TYPES
        .into_iter()
        .find(|t| header.contains(&format!(" - {t} - ")) || header.ends_with(&format!(" - {t}")))
}

/// Compiled rules of one log.
#[derive(Debug, Clone)]
pub struct Classifier {
    engine: Option<Engine>,
    /// The highest severity of any rule: a line matching it needs no further search.
    top: Severity,
}

/// One search over all rules at once, reporting which rule matched. Patterns are ordered by
/// severity, highest first, so among matches starting at the same byte the most severe wins.
#[derive(Debug, Clone)]
enum Engine {
    /// Every rule is a finite set of plain strings (the presets): searched with SIMD (Teddy)
    /// directly where the CPU has it, through an Aho-Corasick automaton elsewhere. `severity[i]`
    /// is the severity of string `i`.
    Strings { search: Strings, severity: Vec<Severity> },
    /// Anything else: one multi-pattern regex, one pattern per rule.
    Regex { re: regex_automata::meta::Regex, severity: Vec<Severity> },
}

/// How plain strings are searched: SIMD Teddy where the CPU has it (x86-64 with SSSE3/AVX2,
/// aarch64), an Aho-Corasick automaton elsewhere. Leftmost-first both.
#[derive(Debug, Clone)]
enum Strings {
    Teddy(aho_corasick::packed::Searcher),
    Automaton(aho_corasick::AhoCorasick),
}

/// A rule match: where it starts and ends, and the rule's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// First byte.
    pub start: usize,
    /// Past the last byte.
    pub end: usize,
    /// Severity of the rule that matched.
    pub severity: Severity,
}

/// Strings a rule matches, when it matches nothing else and has no look-around (`^`, `\b`), so
/// finding one of the strings anywhere is finding a match of the rule.
fn exact_strings(hir: &regex_syntax::hir::Hir) -> Option<Vec<Vec<u8>>> {
    if !hir.properties().look_set().is_empty() {
        return None;
    }
    let seq = regex_syntax::hir::literal::Extractor::new().extract(hir);
    if !seq.is_exact() {
        return None;
    }
    let strings: Vec<Vec<u8>> = seq.literals()?.iter().map(|l| l.as_bytes().to_vec()).collect();
    // An empty string matches everywhere: leave that to the regex engine, which agrees.
    (!strings.is_empty() && strings.iter().all(|s| !s.is_empty())).then_some(strings)
}

impl Classifier {
    /// Compiles `rules`.
    ///
    /// # Errors
    /// A rule that is not a valid regex.
    pub fn new(rules: &[(String, Severity)]) -> Result<Classifier, Box<regex_automata::meta::BuildError>> {
        let mut rules: Vec<(&str, Severity)> = rules.iter().map(|(p, s)| (p.as_str(), *s)).collect();
        // Stable: among equal severities the configured order is kept.
        rules.sort_by_key(|rule| std::cmp::Reverse(rule.1));
        let Some(&(_, top)) = rules.first() else { return Ok(Classifier { engine: None, top: Severity::Low }) };
        let patterns: Vec<&str> = rules.iter().map(|rule| rule.0).collect();
        let parsed: Option<Vec<regex_syntax::hir::Hir>> =
            patterns.iter().map(|p| regex_automata::util::syntax::parse_with(p, &syntax(false)).ok()).collect();
        let strings = parsed.and_then(|hirs| {
            let mut strings = Vec::new();
            let mut severity = Vec::new();
            for (hir, rule) in hirs.iter().zip(&rules) {
                for string in exact_strings(hir)? {
                    strings.push(string);
                    severity.push(rule.1);
                }
            }
            let teddy = aho_corasick::packed::Config::new()
                .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
                .builder()
                .extend(&strings)
                .build();
            let search = match teddy {
                Some(teddy) => Strings::Teddy(teddy),
                None => Strings::Automaton(
                    aho_corasick::AhoCorasick::builder()
                        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                        .build(&strings)
                        .ok()?,
                ),
            };
            Some(Engine::Strings { search, severity })
        });
        let engine = match strings {
            Some(engine) => engine,
            None => Engine::Regex { re: compile(&patterns)?, severity: rules.iter().map(|rule| rule.1).collect() },
        };
        Ok(Classifier { engine: Some(engine), top })
    }

    /// The highest severity of any rule.
    pub fn top(&self) -> Severity {
        self.top
    }

    /// Whether every rule is plain strings, searched with Aho-Corasick (the fast path).
    pub fn searches_strings(&self) -> bool {
        matches!(self.engine, Some(Engine::Strings { .. }))
    }

    /// The leftmost rule match starting inside `hay[span]`. Look-around (`^`, `$`, `\b`) sees
    /// the whole of `hay`; `^` and `$` also match at line boundaries.
    pub fn find(&self, hay: &[u8], span: std::ops::Range<usize>) -> Option<Match> {
        match self.engine.as_ref()? {
            Engine::Strings { search, severity } => {
                let m = match search {
                    Strings::Teddy(teddy) => teddy.find_in(hay, aho_corasick::Span::from(span))?,
                    Strings::Automaton(ac) => ac.find(aho_corasick::Input::new(hay).range(span))?,
                };
                Some(Match { start: m.start(), end: m.end(), severity: severity[m.pattern().as_usize()] })
            }
            Engine::Regex { re, severity } => {
                let m = re.search(&regex_automata::Input::new(hay).range(span))?;
                Some(Match { start: m.start(), end: m.end(), severity: severity[m.pattern().as_usize()] })
            }
        }
    }

    /// The highest severity among the rules matching in `hay` between `first` (the leftmost
    /// match there) and `end`. Searching again from every match start + 1 visits every position
    /// where some rule matches, so a severe rule overlapping a milder match is not missed.
    pub fn highest(&self, hay: &[u8], first: Match, end: usize) -> Severity {
        let mut best = first.severity;
        let mut from = first.start + 1;
        while best < self.top && from < end {
            let Some(m) = self.find(hay, from..end) else { break };
            if m.end <= end {
                best = best.max(m.severity);
            }
            from = m.start + 1;
        }
        best
    }

    /// The highest severity of the rules matching `line`, and where the first match starts.
    pub fn classify(&self, line: &[u8]) -> Option<(Severity, usize)> {
        let first = self.find(line, 0..line.len())?;
        Some((self.highest(line, first, line.len()), first.start))
    }
}

/// Bytes of a message that take part in its fingerprint, counted from where its rule matched.
const FINGERPRINT_BYTES: usize = 128;

/// Parser settings for rules: bytes, not necessarily UTF-8; `^`/`$` at line boundaries, so a
/// rule behaves the same searched in a line or in a chunk of lines. Without Unicode classes
/// (`\w`, `(?i)` stay ASCII) the automata are a fraction of the size, and log rules are ASCII in
/// practice; a pattern that needs Unicode (non-ASCII literals are fine without it) still
/// compiles with it.
fn syntax(unicode: bool) -> regex_automata::util::syntax::Config {
    regex_automata::util::syntax::Config::new().unicode(unicode).utf8(false).multi_line(true)
}

/// Compiles the rules into one regex, pattern `i` = rule `i`.
fn compile(patterns: &[&str]) -> Result<regex_automata::meta::Regex, Box<regex_automata::meta::BuildError>> {
    let build = |unicode| {
        regex_automata::meta::Builder::new()
            .configure(regex_automata::meta::Config::new().utf8_empty(false))
            .syntax(syntax(unicode))
            .build_many(patterns)
            .map_err(Box::new)
    };
    build(false).or_else(|_| build(true))
}

/// A stable fingerprint of a message: numbers, hex ids and query strings normalised, so the same
/// error from different requests groups together. Returns the normalised text and its hash.
pub fn fingerprint(message: &str) -> (String, u64) {
    let mut text = [0u8; NORMALIZED_MAX];
    let len = normalize_into(message.as_bytes(), &mut text);
    (String::from_utf8_lossy(&text[..len]).into_owned(), hash(&text[..len]))
}

/// The hash of [`fingerprint`] without building a `String` (the hot path).
pub fn fingerprint_hash(message: &[u8]) -> u64 {
    let mut text = [0u8; NORMALIZED_MAX];
    let len = normalize_into(message, &mut text);
    hash(&text[..len])
}

/// The normalised text behind [`fingerprint`].
pub fn normalize(message: &str) -> String {
    fingerprint(message).0
}

/// Stable across versions and platforms (fixed constants, little-endian words), unlike std's
/// hasher: a group keeps its fingerprint when the agent is upgraded.
fn hash(text: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash = text.len() as u64;
    let mut words = text.chunks_exact(8);
    for word in &mut words {
        hash = (hash.rotate_left(23) ^ u64::from_le_bytes(word.try_into().expect("chunks_exact(8)"))).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    hash = (hash.rotate_left(23) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    hash ^ (hash >> 29)
}

/// Byte classes for [`normalize_into`]: word characters, digits among them, the query mark.
const WORD: u8 = 1;
const DIGIT: u8 = 2;
const QUERY: u8 = 4;
const CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = if c.is_ascii_digit() {
            WORD | DIGIT
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
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

/// Room for the normalised form of [`FINGERPRINT_BYTES`]: at worst every other byte is a query
/// mark (1 byte → `?…`, 4 bytes) ended by a separator, 2 bytes → 5; plus room for a block copy.
const NORMALIZED_MAX: usize = FINGERPRINT_BYTES * 5 / 2 + 16;

/// Writes the normalised form of the first [`FINGERPRINT_BYTES`] of `message` to `out` and
/// returns its length: separators as they are, every word containing a digit (numbers, ids,
/// hex, parts of IP addresses) as `#`, other words as they are, a query string as `?…`.
///
/// Most of a message is letters and separators, copied as they are: eight bytes at a time while
/// they hold no digit and no `?` (tested on the whole word at once). A digit turns the word it is
/// in, including the part already copied, into `#`.
fn normalize_into(message: &[u8], out: &mut [u8; NORMALIZED_MAX]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    /// Whether some byte of `word` is below `limit` (at most 128), bytes ≥ 0x80 excluded.
    const fn has_below(word: u64, limit: u64) -> bool {
        word.wrapping_sub(ONES * limit) & !word & HIGHS != 0
    }
    let message = &message[..message.len().min(FINGERPRINT_BYTES)];
    let (mut i, mut n) = (0, 0);
    while i < message.len() {
        if let Some(block) = message.get(i..i + 8) {
            let word = u64::from_le_bytes(block.try_into().expect("8 bytes"));
            if !has_below(word ^ (ONES * u64::from(b'0')), 10) && !has_below(word ^ (ONES * u64::from(b'?')), 1) {
                out[n..n + 8].copy_from_slice(block);
                (i, n) = (i + 8, n + 8);
                continue;
            }
        }
        let class = CLASS[usize::from(message[i])];
        if class & DIGIT != 0 {
            // The word's letters before the digit were copied: take them back.
            let copied = message[..i].iter().rev().take_while(|b| CLASS[usize::from(**b)] & WORD != 0).count();
            n -= copied;
            out[n] = b'#';
            n += 1;
            i += message[i..].iter().position(|b| CLASS[usize::from(*b)] & WORD == 0).unwrap_or(message.len() - i);
        } else if class == QUERY {
            out[n..n + 4].copy_from_slice("?…".as_bytes());
            n += 4;
            i +=
                message[i..].iter().position(|b| matches!(b, b' ' | b'\t' | b'"' | b'\'')).unwrap_or(message.len() - i);
        } else {
            out[n] = message[i];
            n += 1;
            i += 1;
        }
    }
    n
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
            let found = classifier(*preset).classify(line.as_bytes()).map(|(severity, _)| severity);
            assert_eq!(found, *expected, "{preset:?}: {line}");
        }
    }

    /// Issue #18: severities as an ops person is paged for them (high pages through the error
    /// spike alert, critical at once; medium and low are counted and shown, never paged).
    #[test]
    fn presets_page_for_server_faults_not_for_misbehaving_clients() {
        let cases: &[(Preset, &str, Severity)] = &[
            // A scanner or an old client failing the TLS handshake: nginx says [crit], nothing is broken.
            (
                Preset::Nginx,
                "2024/05/01 10:00:00 [crit] 1234#1234: *81 SSL_do_handshake() failed (SSL: error:0A00006C:SSL routines::bad key share) while SSL handshaking, client: 203.0.113.7, server: 0.0.0.0:443",
                Severity::Medium,
            ),
            (
                Preset::Nginx,
                "2024/05/01 10:00:00 [crit] 1234#1234: *90 SSL_read() failed (SSL: error:0A000126:SSL routines::unexpected eof while reading) while keepalive, client: 203.0.113.7, server: 0.0.0.0:443",
                Severity::Medium,
            ),
            // Server-side [crit]s still page.
            (
                Preset::Nginx,
                "2024/05/01 10:00:00 [crit] 1234#1234: accept4() failed (24: Too many open files)",
                Severity::High,
            ),
            (
                Preset::Nginx,
                "2024/05/01 10:00:00 [crit] 1234#1234: *5 connect() to unix:/var/run/php-fpm/www.sock failed (2: No such file or directory) while connecting to upstream",
                Severity::High,
            ),
            (
                Preset::Nginx,
                "2024/05/01 10:00:00 [crit] 1234#1234: *7 pwrite() \"/var/lib/nginx/tmp/client_body/0000000001\" failed (28: No space left on device)",
                Severity::High,
            ),
            // php-fpm: workers exhausted or crashing.
            (
                Preset::Php,
                "[01-May-2024 10:00:00] WARNING: [pool www] server reached pm.max_children setting (50), consider raising it",
                Severity::High,
            ),
            (
                Preset::Php,
                "[01-May-2024 10:00:00] WARNING: [pool www] child 4242 exited on signal 11 (SIGSEGV) after 12.000000 seconds from start",
                Severity::High,
            ),
            (
                Preset::Php,
                "[01-May-2024 10:00:00 UTC] PHP Fatal error:  Allowed memory size of 268435456 bytes exhausted (tried to allocate 20480 bytes) in /home/bitrix/www/bitrix/modules/main/lib/db/result.php on line 120",
                Severity::High,
            ),
        ];
        for (preset, line, expected) in cases {
            let found = classifier(*preset).classify(line.as_bytes()).map(|(severity, _)| severity);
            assert_eq!(found, Some(*expected), "{preset:?}: {line}");
        }
    }

    #[test]
    fn a_severe_rule_overlapping_a_milder_match_decides_with_either_engine() {
        // "timed out" (low) starts first; "out while" (high) starts inside it. A search that
        // resumed after the first match would miss the second.
        for boundary in ["", r"\b"] {
            let rules = vec![
                (format!("{boundary}timed out{boundary}"), Severity::Low),
                ("out while".to_owned(), Severity::High),
                ("nothing here".to_owned(), Severity::Critical),
            ];
            for c in [Classifier::new(&rules).expect("rules compile"), without_teddy(&rules)] {
                assert_eq!(c.searches_strings(), boundary.is_empty());
                assert_eq!(c.classify(b"10:00 upstream timed out while reading"), Some((Severity::High, 15)));
                assert_eq!(c.classify(b"10:00 upstream timed out"), Some((Severity::Low, 15)));
                assert_eq!(c.classify(b"all fine"), None);
            }
        }
    }

    /// The same classifier searching its strings with the automaton, as on a CPU without Teddy.
    fn without_teddy(rules: &[(String, Severity)]) -> Classifier {
        let mut c = Classifier::new(rules).expect("rules compile");
        if let Some(Engine::Strings { search, severity }) = &mut c.engine {
            let mut sorted: Vec<&(String, Severity)> = rules.iter().collect();
            sorted.sort_by_key(|rule| std::cmp::Reverse(rule.1));
            let strings: Vec<Vec<u8>> = sorted
                .iter()
                .flat_map(|(p, _)| {
                    let hir = regex_automata::util::syntax::parse_with(p, &syntax(false)).expect("parses");
                    exact_strings(&hir).expect("strings")
                })
                .collect();
            assert_eq!(strings.len(), severity.len());
            *search = Strings::Automaton(
                aho_corasick::AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                    .build(&strings)
                    .expect("builds"),
            );
        }
        c
    }

    #[test]
    fn teddy_and_the_automaton_judge_preset_lines_alike() {
        let lines = [
            "2024/05/01 10:00:00 [error] 1#0: *5 upstream timed out (110) while connecting to upstream",
            "2024/05/01 10:00:00 [warn] 1#0: an upstream response is buffered",
            "[Wed May 01 10:00:00 2024] [php7:error] [pid 42] PHP Fatal error:  Allowed memory size of 1 bytes",
            "2024/05/01 10:00:00 [notice] 1#0: signal process started",
            "x",
        ];
        for preset in [Preset::Nginx, Preset::Httpd, Preset::Php, Preset::BitrixExceptions] {
            let rules: Vec<(String, Severity)> = preset.rules().into_iter().map(|(p, s)| (p.to_owned(), s)).collect();
            let (teddy, automaton) = (Classifier::new(&rules).expect("compiles"), without_teddy(&rules));
            for line in lines {
                assert_eq!(teddy.classify(line.as_bytes()), automaton.classify(line.as_bytes()), "{preset:?}: {line}");
            }
        }
    }

    #[test]
    fn string_only_presets_use_the_string_search() {
        assert!(classifier(Preset::Nginx).searches_strings());
        assert!(classifier(Preset::Php).searches_strings());
        assert!(classifier(Preset::Httpd).searches_strings());
        assert!(classifier(Preset::BitrixExceptions).searches_strings());
        assert!(!classifier(Preset::Mysql).searches_strings());
        assert_eq!(classifier(Preset::None).classify(b"[error] x"), None);
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

    /// The normalisation spelled out word by word, to check the block-copying one against.
    fn normalize_reference(message: &[u8]) -> Vec<u8> {
        let message = &message[..message.len().min(FINGERPRINT_BYTES)];
        let mut out = Vec::new();
        let mut i = 0;
        while i < message.len() {
            let class = CLASS[usize::from(message[i])];
            if class & WORD != 0 {
                let end = message[i..]
                    .iter()
                    .position(|b| CLASS[usize::from(*b)] & WORD == 0)
                    .map_or(message.len(), |p| i + p);
                let word = &message[i..end];
                out.extend_from_slice(if word.iter().any(u8::is_ascii_digit) { b"#" } else { word });
                i = end;
            } else if class == QUERY {
                out.extend_from_slice("?…".as_bytes());
                i = message[i..]
                    .iter()
                    .position(|b| matches!(b, b' ' | b'\t' | b'"' | b'\''))
                    .map_or(message.len(), |p| i + p);
            } else {
                out.push(message[i]);
                i += 1;
            }
        }
        out
    }

    proptest::proptest! {
        /// Words, numbers, ids, query strings and separators in any mix, across block edges.
        #[test]
        fn property_test_normalisation_equals_the_word_by_word_reference(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                "upstream", "a", "timed", "x1", "0x7f", "12345", "abc9def", " ", ", ", ": ", "?", "?q=1&b=2",
                "\"", "'", "\t", "Ошибка", "\u{fffd}", "_", "[error]", "#", "*", "/crm/deal/", "id=", "7",
            ]), 0..60),
        ) {
            let message: String = pieces.concat();
            let mut out = [0u8; NORMALIZED_MAX];
            let n = normalize_into(message.as_bytes(), &mut out);
            let expected = normalize_reference(message.as_bytes());
            proptest::prop_assert_eq!(&out[..n], expected.as_slice(), "{:?}", message);
        }

        #[test]
        fn property_test_normalisation_of_arbitrary_bytes_equals_the_reference(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let mut out = [0u8; NORMALIZED_MAX];
            let n = normalize_into(&bytes, &mut out);
            let expected = normalize_reference(&bytes);
            proptest::prop_assert_eq!(&out[..n], expected.as_slice());
        }

        #[test]
        fn property_test_classify_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            for preset in [Preset::Nginx, Preset::Httpd, Preset::BitrixExceptions, Preset::Mysql] {
                let c = classifier(preset);
                let _ = c.classify(&bytes);
            }
            let _ = fingerprint(&String::from_utf8_lossy(&bytes));
        }
    }
}
