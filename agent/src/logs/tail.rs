//! Tailing many files by bytes: identity by (device, inode) plus a head fingerprint, polling as
//! the ground truth, and every rotation style of a Bitrix24 box server.
//!
//! ## Rotation
//! - rename + create (nginx, httpd): the old file keeps its inode; the tailer keeps its handle,
//!   drains it to EOF, then closes it, and reads the new file from the start.
//! - copytruncate (MySQL, push-server) and Bitrix's own copy-to-`.old`-then-truncate: the size
//!   drops below the read position (or the head changes). If `<file>.1` or `<file>.old` starts
//!   like the file did and reaches our position, the unread tail is read from that copy first.
//!   What cannot be recovered is counted, never silent.
//! - deletion: the open handle is drained to EOF, then closed.
//! - inode reuse: a stored checkpoint applies only when the head fingerprint matches too.
//!
//! ## Durability
//! Every poll returns checkpoints `(dev, ino, head, offset)` that the caller commits in the same
//! spool transaction as the groups those bytes produced. An offset never points inside an
//! unterminated line or an unfinished multi-line record, so a restart neither skips nor repeats.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::classify::{self, Severity};
use super::lines::{Encoding, Splitter};
use super::{Checkpoint, FileKey, Group, LogSpec};

/// Bytes of the file head that identify it.
const HEAD_BYTES: u64 = 256;
/// Read size per call.
const CHUNK: usize = 1 << 20;
/// Largest multi-line record kept; longer records are cut (the rest still counts as read).
const MAX_RECORD_BYTES: usize = 64 << 10;

/// Counters per log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCounters {
    /// Lines read.
    pub lines: u64,
    /// Error lines/records by severity (index = severity − 1).
    pub errors: [u64; 4],
    /// Lines over the maximum length.
    pub long_lines: u64,
    /// Truncations seen (copytruncate, rewrite).
    pub truncations: u64,
    /// Files rotated away while the agent was stopped and not found at `<path>.1`/`.old`: their
    /// unread rest is lost.
    pub rotated_away: u64,
    /// Bitrix exception log records by type.
    pub bitrix_types: HashMap<&'static str, u64>,
}

/// A multi-line record being assembled.
#[derive(Debug)]
struct Record {
    start: u64,
    text: String,
    idle_polls: u32,
}

#[derive(Debug)]
struct Tracked {
    spec: usize,
    path: PathBuf,
    file: File,
    head: Option<(u64, u64)>,
    pos: u64,
    committed: u64,
    splitter: Splitter,
    record: Option<Record>,
    rotated: bool,
    reported: Option<u64>,
}

/// The tailer: all tracked files of all configured logs.
#[derive(Debug)]
pub struct Tailer {
    specs: Vec<LogSpec>,
    files: HashMap<FileKey, Tracked>,
    stored: HashMap<FileKey, Checkpoint>,
    first_poll: bool,
    read_from_end: bool,
    max_line: usize,
    budget: u64,
    /// Counters per log, in spec order.
    pub counters: Vec<LogCounters>,
    buf: Vec<u8>,
}

/// Output of one poll.
#[derive(Debug, Default)]
pub struct Poll {
    /// Error groups found.
    pub groups: HashMap<(usize, u64), Group>,
    /// Offsets to commit with the groups.
    pub checkpoints: Vec<Checkpoint>,
    /// Files closed for good (their checkpoints can go).
    pub forget: Vec<FileKey>,
}

fn head_hash(file: &File, len: u64) -> Option<u64> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0).ok()?;
    Some(buf.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)))
}

impl Tailer {
    /// A tailer resuming from `checkpoints`. With `read_from_end`, files seen for the first time
    /// at the first poll start at their end (old history is not re-reported on install).
    pub fn new(
        specs: Vec<LogSpec>,
        checkpoints: Vec<Checkpoint>,
        read_from_end: bool,
        max_line: usize,
        budget: u64,
    ) -> Tailer {
        let counters = vec![LogCounters::default(); specs.len()];
        let stored = checkpoints.into_iter().map(|c| ((c.dev, c.ino), c)).collect();
        Tailer {
            specs,
            files: HashMap::new(),
            stored,
            first_poll: true,
            read_from_end,
            max_line,
            budget,
            counters,
            buf: Vec::new(),
        }
    }

    /// The configured logs.
    pub fn specs(&self) -> &[LogSpec] {
        &self.specs
    }

    /// Discovers files, follows rotations, reads new bytes; `now_ms` stamps the groups.
    pub fn poll(&mut self, now_ms: i64) -> Poll {
        let mut out = Poll::default();
        let mut seen: HashMap<FileKey, (usize, PathBuf)> = HashMap::new();
        for (spec_idx, spec) in self.specs.iter().enumerate() {
            for pattern in &spec.paths {
                for path in super::glob::expand(pattern) {
                    if let Ok(meta) = std::fs::metadata(&path) {
                        seen.entry((meta.dev(), meta.ino())).or_insert((spec_idx, path));
                    }
                }
            }
        }
        // Files that left every pattern: drain what is left, then close.
        for (key, tracked) in &mut self.files {
            if !seen.contains_key(key) {
                tracked.rotated = true;
            }
        }
        if self.first_poll {
            self.adopt_rotated_while_stopped(&seen);
        }
        for (key, (spec_idx, path)) in seen {
            if let Some(tracked) = self.files.get_mut(&key) {
                tracked.path = path;
                tracked.rotated = false;
                continue;
            }
            let Ok(file) = File::open(&path) else { continue };
            let size = file.metadata().map_or(0, |m| m.len());
            let resume = self.stored.get(&key).filter(|c| {
                c.head_len == 0 || (size >= c.head_len && head_hash(&file, c.head_len) == Some(c.head_hash))
            });
            let pos = match resume {
                Some(c) if c.offset <= size => c.offset,
                // The file shrank while we were stopped: it was truncated; start over.
                Some(_) => 0,
                None => {
                    let successor = self.stored.values().any(|c| Path::new(&c.path) == path);
                    if self.first_poll && self.read_from_end && !successor { size } else { 0 }
                }
            };
            let head = resume.filter(|c| c.head_len > 0).map(|c| (c.head_len, c.head_hash));
            self.files.insert(
                key,
                Tracked {
                    spec: spec_idx,
                    path,
                    file,
                    head,
                    pos,
                    committed: pos,
                    splitter: Splitter::default(),
                    record: None,
                    rotated: false,
                    reported: resume.map(|c| c.offset),
                },
            );
        }
        self.first_poll = false;
        let keys: Vec<FileKey> = self.files.keys().copied().collect();
        for key in keys {
            self.poll_file(key, now_ms, &mut out);
        }
        out
    }

    /// Checkpointed files that are no longer at any pattern's path may sit at `<path>.1` or
    /// `<path>.old` after rotations while the agent was stopped: finish reading them there.
    fn adopt_rotated_while_stopped(&mut self, seen: &HashMap<FileKey, (usize, PathBuf)>) {
        let missing: Vec<Checkpoint> =
            self.stored.values().filter(|c| !seen.contains_key(&(c.dev, c.ino))).cloned().collect();
        for ckpt in missing {
            let spec = self.specs.iter().position(|s| s.name == ckpt.log);
            let found = [".1", ".old"].iter().find_map(|suffix| {
                let candidate = PathBuf::from(format!("{}{suffix}", ckpt.path));
                let meta = std::fs::metadata(&candidate).ok()?;
                ((meta.dev(), meta.ino()) == (ckpt.dev, ckpt.ino)).then_some(candidate)
            });
            match (spec, found.and_then(|p| File::open(&p).ok().map(|f| (p, f)))) {
                (Some(spec), Some((path, file))) => {
                    self.files.insert(
                        (ckpt.dev, ckpt.ino),
                        Tracked {
                            spec,
                            path,
                            file,
                            head: (ckpt.head_len > 0).then_some((ckpt.head_len, ckpt.head_hash)),
                            pos: ckpt.offset,
                            committed: ckpt.offset,
                            splitter: Splitter::default(),
                            record: None,
                            rotated: true,
                            reported: Some(ckpt.offset),
                        },
                    );
                }
                (spec, _) => {
                    // Gone for good: whatever was unread is lost; count it.
                    if let Some(spec) = spec {
                        self.counters[spec].rotated_away += 1;
                    }
                    self.stored.remove(&(ckpt.dev, ckpt.ino));
                }
            }
        }
    }

    fn poll_file(&mut self, key: FileKey, now_ms: i64, out: &mut Poll) {
        let Some(mut t) = self.files.remove(&key) else { return };
        let size = t.file.metadata().map_or(t.pos, |m| m.len());
        let head_changed = t.head.is_some_and(|(len, hash)| size >= len && head_hash(&t.file, len) != Some(hash));
        if size < t.pos || head_changed {
            self.on_truncation(&mut t, now_ms, out);
        }
        if t.head.is_none() && size > 0 {
            let len = size.min(HEAD_BYTES);
            t.head = head_hash(&t.file, len).map(|hash| (len, hash));
        }
        self.read_new(&mut t, now_ms, out, u64::MAX);
        // A record with no new line for a whole poll is complete.
        if let Some(record) = &mut t.record {
            record.idle_polls += 1;
            if record.idle_polls > 1 {
                let record = t.record.take().expect("checked above");
                self.emit(t.spec, &record.text, now_ms, out);
            }
        }
        t.committed = t.record.as_ref().map_or(t.pos, |r| r.start);
        if t.rotated {
            // Drained to EOF above; the handle is closed and the checkpoint dropped.
            if let Some(record) = t.record.take() {
                self.emit(t.spec, &record.text, now_ms, out);
            }
            out.forget.push(key);
            self.stored.remove(&key);
            return;
        }
        if t.reported != Some(t.committed) {
            let (head_len, head_hash) = t.head.unwrap_or((0, 0));
            let ckpt = Checkpoint {
                log: self.specs[t.spec].name.clone(),
                path: t.path.display().to_string(),
                dev: key.0,
                ino: key.1,
                head_len,
                head_hash,
                offset: t.committed,
            };
            self.stored.insert(key, ckpt.clone());
            out.checkpoints.push(ckpt);
            t.reported = Some(t.committed);
        }
        self.files.insert(key, t);
    }

    fn on_truncation(&mut self, t: &mut Tracked, now_ms: i64, out: &mut Poll) {
        self.counters[t.spec].truncations += 1;
        // Recover the unread tail from the rotated copy when it is the same content.
        let copy = t.head.and_then(|(len, hash)| {
            [".1", ".old"].iter().find_map(|suffix| {
                let path = PathBuf::from(format!("{}{suffix}", t.path.display()));
                let file = File::open(&path).ok()?;
                let copy_size = file.metadata().ok()?.len();
                (copy_size >= t.pos && head_hash(&file, len) == Some(hash)).then_some((file, copy_size))
            })
        });
        match copy {
            Some((file, copy_size)) => {
                let original = std::mem::replace(&mut t.file, file);
                self.read_new(t, now_ms, out, copy_size);
                // A last line without newline in the copy is complete: nothing will follow it there.
                t.file = original;
            }
            None => {
                // Bytes between our position and the truncation are unknown; we can only say
                // that a truncation happened (counted above).
            }
        }
        if let Some(record) = t.record.take() {
            self.emit(t.spec, &record.text, now_ms, out);
        }
        t.pos = 0;
        t.committed = 0;
        t.head = None;
        t.splitter = Splitter::default();
        t.reported = None;
    }

    /// Reads from `t.pos` up to `limit` (or EOF), splitting lines and classifying them.
    fn read_new(&mut self, t: &mut Tracked, now_ms: i64, out: &mut Poll, limit: u64) {
        let mut budget = self.budget;
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(CHUNK, 0);
        while budget > 0 && t.pos < limit {
            let want = (CHUNK as u64).min(limit - t.pos).min(budget) as usize;
            let n = match t.file.read_at(&mut buf[..want], t.pos) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let consumed = self.process(t, &buf[..n], now_ms, out);
            if consumed == 0 {
                // An unterminated line shorter than the maximum: wait for the rest.
                break;
            }
            t.pos += consumed as u64;
            budget = budget.saturating_sub(consumed as u64);
        }
        self.buf = buf;
    }

    /// Handles the complete lines of `chunk`; returns the bytes consumed.
    fn process(&mut self, t: &mut Tracked, chunk: &[u8], now_ms: i64, out: &mut Poll) -> usize {
        let spec = &self.specs[t.spec];
        let split = t.splitter.split(chunk, self.max_line);
        let counters = &mut self.counters[t.spec];
        counters.lines += split.lines.len() as u64;
        counters.long_lines += split.long_lines;
        let mut line_start = 0usize;
        let base = t.pos;
        if let Some(start_re) = &spec.record_start {
            let mut emits: Vec<String> = Vec::new();
            for line in &split.lines {
                let text = spec.encoding.decode(line.bytes);
                if start_re.is_match(&text) {
                    if let Some(record) = t.record.take() {
                        emits.push(record.text);
                    }
                    t.record = Some(Record { start: base + line_start as u64, text, idle_polls: 0 });
                } else if let Some(record) = &mut t.record {
                    if record.text.len() < MAX_RECORD_BYTES {
                        record.text.push('\n');
                        record.text.push_str(&text);
                    }
                    record.idle_polls = 0;
                } else {
                    emits.push(text);
                }
                line_start = line.end;
            }
            for text in emits {
                self.emit(t.spec, &text, now_ms, out);
            }
        } else {
            let hits: Vec<String> = {
                let mut candidates = spec.classifier.candidates(&chunk[..split.consumed]).peekable();
                let mut hits = Vec::new();
                for line in &split.lines {
                    let mut candidate = false;
                    while let Some(&at) = candidates.peek() {
                        if at >= line.end {
                            break;
                        }
                        candidates.next();
                        candidate |= at >= line_start;
                    }
                    if candidate {
                        hits.push(spec.encoding.decode(line.bytes));
                    }
                    line_start = line.end;
                }
                hits
            };
            for text in hits {
                self.emit(t.spec, &text, now_ms, out);
            }
        }
        split.consumed
    }

    /// Classifies one line or record and adds it to its group.
    fn emit(&mut self, spec_idx: usize, text: &str, now_ms: i64, out: &mut Poll) {
        let spec = &self.specs[spec_idx];
        let header = text.lines().next().unwrap_or_default();
        let Some(severity) = spec.classifier.classify(header.as_bytes()) else { return };
        let counters = &mut self.counters[spec_idx];
        counters.errors[severity as usize - 1] += 1;
        if spec.record_start.is_some()
            && let Some(kind) = classify::bitrix_record_type(header)
        {
            *counters.bitrix_types.entry(kind).or_default() += 1;
        }
        // Bitrix records put the message on the lines after the header.
        let message = if spec.record_start.is_some() {
            text.lines().take(3).collect::<Vec<_>>().join(" ")
        } else {
            header.to_owned()
        };
        let (_, hash) = classify::fingerprint(&message);
        let group = out.groups.entry((spec_idx, hash)).or_insert_with(|| Group {
            log: spec.name.clone(),
            fingerprint: format!("{hash:016x}"),
            severity,
            count: 0,
            first_ms: now_ms,
            last_ms: now_ms,
            example: message.chars().take(512).collect(),
        });
        group.count += 1;
        group.severity = group.severity.max(severity);
        group.last_ms = now_ms;
    }
}

/// Rule severity label values, in counter index order.
pub const SEVERITIES: [Severity; 4] = [Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

/// The encoding used when none is configured.
pub const DEFAULT_ENCODING: Encoding = Encoding::Utf8;
