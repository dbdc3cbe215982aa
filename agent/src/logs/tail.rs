//! Tailing many files by bytes: identity by (device, inode) plus a head fingerprint, polling as
//! the ground truth, and every rotation style of a Bitrix24 box server.
//!
//! ## Rotation
//! - rename + create (nginx, httpd): the old file keeps its inode; the tailer keeps its handle,
//!   drains it to EOF, then closes it, and reads the new file from the start.
//! - copytruncate (MySQL, push-server) and Bitrix's own copy-to-`.old`-then-truncate: the size
//!   drops below the read position (or the head changes). If `<file>.1` or `<file>.old` starts
//!   like the file did and reaches our position, the unread tail is read from that copy first.
//!   A file that was empty at the previous poll has no head to compare: there a copy that
//!   appeared or changed since that poll (another inode, not empty) holds the records written
//!   and rotated in between, and is read in full before the file. What cannot be recovered is
//!   counted, never silent.
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

use super::classify;
use super::lines::{Encoding, Line, Split, Splitter};
use super::{Checkpoint, FileKey, Group, LogSpec};
use crate::observation::{Severity, UnixMs};

/// Bytes of the file head that identify it.
const HEAD_BYTES: u64 = 256;
/// Read size per call, unless the longest line is longer (the buffer always holds one more byte
/// than `max_line`, so a chunk without a line end is always past the maximum and consumed). The
/// buffer stays allocated, zero-filled, for the agent's life: 64 KiB instead of the 1 MiB it was
/// is 960 KiB less resident memory (bench-agent), for about 16 reads instead of 1 per MiB read.
const CHUNK: usize = 64 << 10;
/// Most error groups one poll returns, over all logs: a batch stays far below the collector's
/// message limit however many distinct errors a burst holds. Past it, a log's new errors are
/// counted in one catch-all group per severity, so counts stay exact.
pub const MAX_GROUPS_PER_POLL: usize = 1000;
/// Key of the catch-all groups (the severity is added to it); their fingerprint is
/// `other-<severity>`.
const MERGED_FINGERPRINT: u64 = 0x6f74_6865_7273_0000;
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
    /// Error lines counted in the catch-all group (see [`MAX_GROUPS_PER_POLL`]).
    pub merged: u64,
}

/// A multi-line record being assembled.
#[derive(Debug)]
struct Record {
    start: u64,
    text: String,
    idle_polls: u32,
}

/// The first bytes of a file: with its device and inode, what tells that a file is the one a
/// position was stored for, and that it was not truncated or rewritten since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// Bytes hashed: up to [`HEAD_BYTES`], never 0.
    len: u64,
    /// Hash of those bytes.
    hash: u64,
}

impl Head {
    /// The first `len` bytes of `file` (`None`: shorter, or unreadable).
    fn read(file: &File, len: u64) -> Option<Head> {
        head_hash(file, len).map(|hash| Head { len, hash })
    }

    /// The head a checkpoint was stored with (`None`: the file was empty).
    fn stored(ckpt: &Checkpoint) -> Option<Head> {
        (ckpt.head_len > 0).then_some(Head { len: ckpt.head_len, hash: ckpt.head_hash })
    }

    /// Whether `file` still starts with these bytes.
    fn matches(self, file: &File) -> bool {
        head_hash(file, self.len) == Some(self.hash)
    }
}

/// A file being read, and where reading it stands.
#[derive(Debug)]
struct Tracked {
    /// Index of its log in the tailer's specs.
    spec: usize,
    /// Path it was last seen at.
    path: PathBuf,
    /// The open handle: kept across renames, so a rotated file is drained to its end.
    file: File,
    /// Its head, once it has bytes.
    head: Option<Head>,
    /// Next byte to read.
    pos: u64,
    /// Next byte a restart must read: `pos`, or the start of an unfinished multi-line record.
    committed: u64,
    splitter: Splitter,
    record: Option<Record>,
    /// Left every pattern (rotated or deleted): read to its end, then closed and forgotten.
    rotated: bool,
    /// Offset of the last checkpoint returned for it.
    reported: Option<u64>,
    /// Created from a stored checkpoint and not read yet: whether the stored position is inside
    /// an over-long line is decided at the first read, on the file that is then read (the copy,
    /// after a copytruncate while the agent was stopped).
    resumed: bool,
    /// While the file is empty: its copies (`.1`, `.old`) as they were at the last poll. A copy
    /// that differs at the next poll was made from this file in between.
    copies_when_empty: Option<[Option<CopySig>; 2]>,
}

/// Rotation suffixes of a copy made by copytruncate (`.1`) or by Bitrix (`.old`).
const COPY_SUFFIXES: [&str; 2] = [".1", ".old"];

/// What tells that a copy was (re)written: device, inode, size, modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CopySig {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl CopySig {
    fn of(path: &Path) -> Option<CopySig> {
        let meta = std::fs::metadata(path).ok().filter(std::fs::Metadata::is_file)?;
        Some(CopySig {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

fn copy_path(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

impl Tracked {
    /// A file opened for reading from `pos`, resuming `resume` if it has a checkpoint; `rotated`
    /// files are read to their end and closed.
    fn new(spec: usize, path: PathBuf, file: File, resume: Option<&Checkpoint>, pos: u64, rotated: bool) -> Tracked {
        Tracked {
            spec,
            path,
            file,
            head: resume.and_then(Head::stored),
            pos,
            committed: pos,
            splitter: Splitter::default(),
            record: None,
            rotated,
            reported: resume.map(|c| c.offset),
            resumed: resume.is_some(),
            copies_when_empty: None,
        }
    }
}

/// The tailer: all tracked files of all configured logs.
#[derive(Debug)]
pub struct Tailer {
    specs: Vec<LogSpec>,
    files: HashMap<FileKey, Tracked>,
    stored: HashMap<FileKey, Checkpoint>,
    /// Logs with a stored read position: the agent has read them before on this machine.
    known_logs: std::collections::HashSet<String>,
    first_poll: bool,
    read_from_end: bool,
    max_line: usize,
    budget: u64,
    /// Counters per log, in spec order.
    pub counters: Vec<LogCounters>,
    buf: Vec<u8>,
}

/// The group keys are fingerprint hashes already: hashing them again with SipHash is waste.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(29) ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }
}

/// Error groups of one poll, keyed by (log index, fingerprint hash).
pub type Groups = HashMap<(usize, u64), Group, std::hash::BuildHasherDefault<KeyHasher>>;

/// Output of one poll.
#[derive(Debug, Default)]
pub struct Poll {
    /// Error groups found.
    pub groups: Groups,
    /// Offsets to commit with the groups.
    pub checkpoints: Vec<Checkpoint>,
    /// Files closed for good (their checkpoints can go).
    pub forget: Vec<FileKey>,
}

/// Where a checkpointed file went: `<path>.1`, `<path>.old`, or any sibling whose name starts
/// with the file's name less its rotation suffixes, with the same device and inode and the same
/// head.
fn find_rotated(ckpt: &Checkpoint) -> Option<PathBuf> {
    let same = |candidate: &Path| {
        let Ok(meta) = std::fs::metadata(candidate) else { return false };
        (meta.dev(), meta.ino()) == (ckpt.dev, ckpt.ino)
            && Head::stored(ckpt).is_none_or(|head| File::open(candidate).is_ok_and(|f| head.matches(&f)))
    };
    let path = Path::new(&ckpt.path);
    let usual = [".1", ".old"].map(|suffix| PathBuf::from(format!("{}{suffix}", ckpt.path)));
    if let Some(found) = usual.into_iter().find(|p| same(p)) {
        return Some(found);
    }
    // The name without rotation suffixes: `app.log.1` was `app.log` and may now be `app.log.2`.
    let mut base = path.file_name()?.to_str()?;
    while let Some((stem, suffix)) = base.rsplit_once('.')
        && (suffix == "old" || (!suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit())))
    {
        base = stem;
    }
    std::fs::read_dir(path.parent()?)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_str().is_some_and(|n| n.starts_with(base)))
        .map(|entry| entry.path())
        .find(|candidate| same(candidate))
}

/// Whether a stored position is inside an over-long line whose head was already emitted. Every
/// other position the tailer stores follows a newline (or NUL padding, or is 0), so the byte
/// before it tells, and a restart neither re-reads nor re-counts the rest of that line.
fn inside_long_line(file: &File, pos: u64) -> bool {
    let mut before = [0u8; 1];
    pos > 0 && file.read_exact_at(&mut before, pos - 1).is_ok() && !matches!(before[0], b'\n' | 0)
}

fn head_hash(file: &File, len: u64) -> Option<u64> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0).ok()?;
    Some(buf.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)))
}

impl Tailer {
    /// A tailer resuming from `checkpoints`. With `read_from_end`, the files of a log that has no
    /// checkpoint (the agent never read it here) start at their end at the first poll: old
    /// history is not re-reported on install. A log read before is read in full, so lines
    /// written while the agent was stopped, in files that appeared meanwhile, are not skipped.
    pub fn new(
        specs: Vec<LogSpec>,
        checkpoints: Vec<Checkpoint>,
        read_from_end: bool,
        max_line: usize,
        budget: u64,
    ) -> Tailer {
        let counters = vec![LogCounters::default(); specs.len()];
        let known_logs = checkpoints.iter().map(|c| c.log.clone()).collect();
        let stored = checkpoints.into_iter().map(|c| ((c.dev, c.ino), c)).collect();
        Tailer {
            specs,
            files: HashMap::new(),
            stored,
            known_logs,
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

    /// Discovers files, follows rotations, reads new bytes; `now` stamps the groups.
    pub fn poll(&mut self, now: UnixMs) -> Poll {
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
            // A stored position is taken as is: if the file shrank or its head changed while we
            // were stopped, the first poll treats it as a truncation and recovers the unread
            // tail from `<file>.1`/`.old` when that copy matches.
            let resume = self.stored.get(&key);
            let pos = match resume {
                Some(c) => c.offset,
                None => {
                    let new_log = !self.known_logs.contains(&self.specs[spec_idx].name);
                    if self.first_poll && self.read_from_end && new_log { size } else { 0 }
                }
            };
            let tracked = Tracked::new(spec_idx, path, file, resume, pos, false);
            self.files.insert(key, tracked);
        }
        self.first_poll = false;
        let keys: Vec<FileKey> = self.files.keys().copied().collect();
        for key in keys {
            self.poll_file(key, now, &mut out);
        }
        out
    }

    /// Checkpointed files that are no longer at any pattern's path were rotated while the agent
    /// was stopped, maybe several times (`app.log` → `app.log.1` → `app.log.3`, or
    /// `app.log-20241127`): they are looked for by device and inode beside their last path and,
    /// when their head still matches, read to their end from the stored offset. A file that is
    /// gone (deleted, or compressed into a new file) loses its unread rest: counted and logged
    /// with its identity.
    fn adopt_rotated_while_stopped(&mut self, seen: &HashMap<FileKey, (usize, PathBuf)>) {
        let missing: Vec<Checkpoint> =
            self.stored.values().filter(|c| !seen.contains_key(&(c.dev, c.ino))).cloned().collect();
        for ckpt in missing {
            let spec = self.specs.iter().position(|s| s.name == ckpt.log);
            let found = find_rotated(&ckpt).and_then(|path| File::open(&path).ok().map(|file| (path, file)));
            match (spec, found) {
                (Some(spec), Some((path, file))) => {
                    let rotated_to = path.clone();
                    tracing::info!(log = %ckpt.log, was = %ckpt.path, now = %path.display(), offset = ckpt.offset,
                        "reading the rest of a file rotated while the agent was stopped");
                    let tracked = Tracked::new(spec, path, file, Some(&ckpt), ckpt.offset, true);
                    self.files.insert((ckpt.dev, ckpt.ino), tracked);
                    self.adopt_newer_rotations(spec, &rotated_to, seen);
                }
                (spec, _) => {
                    if let Some(spec) = spec {
                        self.counters[spec].rotated_away += 1;
                        tracing::warn!(log = %ckpt.log, path = %ckpt.path, dev = ckpt.dev, ino = ckpt.ino,
                            offset = ckpt.offset,
                            "a file being read was rotated away while the agent was stopped and is gone: its unread rest is lost");
                    }
                    self.stored.remove(&(ckpt.dev, ckpt.ino));
                }
            }
        }
    }

    /// With numbered rotation, a file being read that is now `app.log.3` was rotated while the
    /// agent was stopped (had it been running, it would have drained and forgotten it), so
    /// `app.log.2` and `app.log.1` were created after the agent's last read: unless they are
    /// known or still in the patterns, they are read in full, then closed.
    fn adopt_newer_rotations(&mut self, spec: usize, rotated_to: &Path, seen: &HashMap<FileKey, (usize, PathBuf)>) {
        let name = rotated_to.to_string_lossy();
        let Some((base, number)) = name.rsplit_once('.') else { return };
        let Ok(number) = number.parse::<u32>() else { return };
        for newer in (1..number).rev() {
            let path = PathBuf::from(format!("{base}.{newer}"));
            let Ok(file) = File::open(&path) else { continue };
            let Ok(meta) = file.metadata() else { continue };
            let key = (meta.dev(), meta.ino());
            if !meta.is_file()
                || seen.contains_key(&key)
                || self.files.contains_key(&key)
                || self.stored.contains_key(&key)
            {
                continue;
            }
            tracing::info!(log = %self.specs[spec].name, path = %path.display(),
                "reading a file created and rotated while the agent was stopped");
            self.files.insert(key, Tracked::new(spec, path, file, None, 0, true));
        }
    }

    fn poll_file(&mut self, key: FileKey, now: UnixMs, out: &mut Poll) {
        let Some(mut t) = self.files.remove(&key) else { return };
        let size = t.file.metadata().map_or(t.pos, |m| m.len());
        let head_changed = t.head.is_some_and(|head| size >= head.len && !head.matches(&t.file));
        if size < t.pos || head_changed {
            self.on_truncation(&mut t, now, out);
        } else if let Some(before) = t.copies_when_empty.take() {
            self.recover_copy_of_empty(&mut t, key, before, now, out);
        }
        if t.head.is_none() && size > 0 {
            let len = size.min(HEAD_BYTES);
            t.head = Head::read(&t.file, len);
        }
        self.read_new(&mut t, now, out, u64::MAX);
        // A record with no new line for a whole poll is complete.
        if let Some(record) = &mut t.record {
            record.idle_polls += 1;
            if record.idle_polls > 1 {
                let record = t.record.take().expect("checked above");
                self.emit_record(&t, &record.text, now, out);
            }
        }
        t.committed = t.record.as_ref().map_or(t.pos, |r| r.start);
        // Still empty: remember its copies, to notice one made before the next poll.
        t.copies_when_empty = (t.head.is_none() && t.pos == 0 && !t.rotated)
            .then(|| COPY_SUFFIXES.map(|suffix| CopySig::of(&copy_path(&t.path, suffix))));
        if t.rotated {
            // Drained to EOF above; the handle is closed and the checkpoint dropped.
            if let Some(record) = t.record.take() {
                self.emit_record(&t, &record.text, now, out);
            }
            out.forget.push(key);
            self.stored.remove(&key);
            return;
        }
        if t.reported != Some(t.committed) {
            let Head { len: head_len, hash: head_hash } = t.head.unwrap_or(Head { len: 0, hash: 0 });
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

    /// The file was empty at the last poll. A copy beside it that appeared or changed since,
    /// another file with bytes, was made from this file in between (Bitrix's
    /// copy-to-`.old`-then-truncate, or a copytruncate): everything in it is unread. It is read
    /// in full before the file's new bytes.
    fn recover_copy_of_empty(
        &mut self,
        t: &mut Tracked,
        key: FileKey,
        before: [Option<CopySig>; 2],
        now: UnixMs,
        out: &mut Poll,
    ) {
        for (suffix, was) in COPY_SUFFIXES.iter().zip(before) {
            let path = copy_path(&t.path, suffix);
            let Some(sig) = CopySig::of(&path) else { continue };
            let ours_or_tracked = (sig.dev, sig.ino) == key || self.files.contains_key(&(sig.dev, sig.ino));
            if Some(sig) == was || sig.len == 0 || ours_or_tracked {
                continue;
            }
            let Ok(file) = File::open(&path) else { continue };
            self.counters[t.spec].truncations += 1;
            tracing::info!(log = %self.specs[t.spec].name, copy = %path.display(), bytes = sig.len,
                "the log was rotated into a copy since the last poll, when it was empty: reading the copy");
            let original = std::mem::replace(&mut t.file, file);
            t.pos = 0;
            self.read_new(t, now, out, sig.len);
            t.file = original;
            if let Some(record) = t.record.take() {
                self.emit_record(t, &record.text, now, out);
            }
            t.pos = 0;
            t.committed = 0;
            t.splitter = Splitter::default();
            return;
        }
    }

    fn on_truncation(&mut self, t: &mut Tracked, now: UnixMs, out: &mut Poll) {
        self.counters[t.spec].truncations += 1;
        // Recover the unread tail from the rotated copy when it is the same content.
        let copy = t.head.and_then(|head| {
            [".1", ".old"].iter().find_map(|suffix| {
                let path = PathBuf::from(format!("{}{suffix}", t.path.display()));
                let file = File::open(&path).ok()?;
                let copy_size = file.metadata().ok()?.len();
                (copy_size >= t.pos && head.matches(&file)).then_some((file, copy_size))
            })
        });
        match copy {
            Some((file, copy_size)) => {
                let original = std::mem::replace(&mut t.file, file);
                self.read_new(t, now, out, copy_size);
                // A last line without newline in the copy is complete: nothing will follow it there.
                t.file = original;
            }
            None => {
                // Bytes between our position and the truncation are unknown; we can only say
                // that a truncation happened (counted above).
            }
        }
        if let Some(record) = t.record.take() {
            self.emit_record(t, &record.text, now, out);
        }
        t.pos = 0;
        t.committed = 0;
        t.head = None;
        t.splitter = Splitter::default();
        t.reported = None;
    }

    /// Reads from `t.pos` up to `limit` (or EOF), splitting lines and classifying them.
    fn read_new(&mut self, t: &mut Tracked, now: UnixMs, out: &mut Poll, limit: u64) {
        if std::mem::take(&mut t.resumed) {
            t.splitter.skipping = inside_long_line(&t.file, t.pos);
        }
        let mut budget = self.budget;
        let mut buf = std::mem::take(&mut self.buf);
        let size = CHUNK.max(self.max_line + 1);
        buf.resize(size, 0);
        while budget > 0 && t.pos < limit {
            let want = (size as u64).min(limit - t.pos).min(budget) as usize;
            let n = match t.file.read_at(&mut buf[..want], t.pos) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let consumed = self.process(t, &buf[..n], now, out);
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
    fn process(&mut self, t: &mut Tracked, chunk: &[u8], now: UnixMs, out: &mut Poll) -> usize {
        let spec = &self.specs[t.spec];
        let split = t.splitter.split(chunk, self.max_line);
        let counters = &mut self.counters[t.spec];
        counters.lines += split.lines.len() as u64;
        counters.long_lines += split.long_lines;
        let mut line_start = 0usize;
        let base = t.pos;
        if let Some(start_re) = spec.record_start() {
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
                self.emit_record(t, &text, now, out);
            }
        } else {
            for hit in find_errors(spec.classifier(), chunk, &split) {
                self.emit_line(t, &chunk[hit.start..hit.end], hit.at, hit.severity, now, out);
            }
        }
        split.consumed
    }

    /// Counts a multi-line record by its header and adds it to its group.
    fn emit_record(&mut self, src: &Tracked, text: &str, now: UnixMs, out: &mut Poll) {
        let spec_idx = src.spec;
        let spec = &self.specs[spec_idx];
        let header = text.split('\n').next().unwrap_or_default();
        let Some((severity, _)) = spec.classifier().classify(header.as_bytes()) else { return };
        if let Some(kind) = classify::bitrix_record_type(header) {
            *self.counters[spec_idx].bitrix_types.entry(kind).or_default() += 1;
        }
        // Bitrix records put the message on the lines after the header.
        let message = text.split('\n').take(3).collect::<Vec<_>>().join(" ");
        self.add(src, message.as_bytes(), message.as_bytes(), severity, now, out);
    }

    /// Adds one error line to its group; `at` is where the first rule matched in it: the error's
    /// identity starts there, past timestamps and process ids.
    fn emit_line(&mut self, src: &Tracked, line: &[u8], at: usize, severity: Severity, now: UnixMs, out: &mut Poll) {
        self.add(src, &line[at.min(line.len())..], line, severity, now, out);
    }

    /// Counts an error and adds it to the group of its fingerprint; `example` is kept (cut) when
    /// the group is new in this poll, with the path of `src` it was read from.
    fn add(&mut self, src: &Tracked, message: &[u8], example: &[u8], severity: Severity, now: UnixMs, out: &mut Poll) {
        let spec_idx = src.spec;
        let spec = &self.specs[spec_idx];
        let counters = &mut self.counters[spec_idx];
        counters.errors[severity as usize - 1] += 1;
        let mut hash = classify::fingerprint_hash(message);
        let merged = out.groups.len() >= MAX_GROUPS_PER_POLL && !out.groups.contains_key(&(spec_idx, hash));
        if merged {
            hash = MERGED_FINGERPRINT | severity as u64;
            counters.merged += 1;
        }
        let group = out.groups.entry((spec_idx, hash)).or_insert_with(|| Group {
            log: spec.name.clone(),
            fingerprint: if merged { format!("other-{}", severity.as_str()) } else { format!("{hash:016x}") },
            severity,
            count: 0,
            first: now,
            last: now,
            example: if merged {
                format!("(more than {MAX_GROUPS_PER_POLL} distinct errors in one read: the rest are counted here)")
            } else {
                spec.encoding.decode(&example[..example.len().min(2048)]).chars().take(512).collect()
            },
            file: if merged { String::new() } else { src.path.display().to_string() },
        });
        group.count += 1;
        group.severity = group.severity.max(severity);
        group.last = now;
    }
}

/// An error line found in a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hit {
    /// Where the line's bytes start in the chunk.
    start: usize,
    /// Where they end (its newline excluded).
    end: usize,
    /// Where its first rule match starts, counted from `start`: the error's identity starts there.
    at: usize,
    /// The highest severity of its matches.
    severity: Severity,
}

/// The error lines among `split`'s lines of `chunk`.
///
/// grep's way, not line by line: one search runs over the whole chunk from match to match,
/// resuming one byte after each match start so that a severe rule overlapping a milder match is
/// still seen; a line's severity is the highest of its matches. A line the chunk does not show
/// as it is judged (cut at the maximum length; for rules with look-around, after NUL padding or
/// before a `\r`) and a line with a match running past it (a rule class that matches a newline)
/// are judged on the line's own bytes instead.
fn find_errors(classifier: &classify::Classifier, chunk: &[u8], split: &Split<'_>) -> Vec<Hit> {
    let strings = classifier.searches_strings();
    let bounds = |line: &Line<'_>| {
        let start = line.bytes.as_ptr() as usize - chunk.as_ptr() as usize;
        (start, start + line.bytes.len())
    };
    let judged_alone = |line: &Line<'_>| {
        let (start, end) = bounds(line);
        // Look-around (`^`, `$`, `\b`) sees the bytes around the line in the chunk.
        line.truncated || (!strings && ((start > 0 && chunk[start - 1] != b'\n') || chunk.get(end) != Some(&b'\n')))
    };
    let alone = |line: &Line<'_>| {
        let (start, end) = bounds(line);
        classifier.classify(line.bytes).map(|(severity, at)| Hit { start, end, at, severity })
    };
    let mut hits: Vec<Hit> = Vec::new();
    // The line whose matches are being collected: its index and its hit so far.
    let mut open: Option<(usize, Hit)> = None;
    let (mut from, mut next_line) = (0, 0);
    loop {
        let m = if from < split.consumed { classifier.find(chunk, from..split.consumed) } else { None };
        let stop = m.map_or(usize::MAX, |m| m.start);
        if let Some((index, hit)) = open
            && split.lines[index].end <= stop
        {
            hits.push(hit);
            open = None;
        }
        // No match in the chunk before `stop`, but a line judged alone may still have one.
        while let Some(line) = split.lines.get(next_line)
            && line.end <= stop
        {
            if judged_alone(line) {
                hits.extend(alone(line));
            }
            next_line += 1;
        }
        let (Some(m), Some(line)) = (m, split.lines.get(next_line)) else { break };
        let (start, end) = bounds(line);
        from = m.start + 1;
        if m.start < start || m.start >= end {
            // In NUL padding, the skipped rest of an over-long line, or a line ending.
            continue;
        }
        if judged_alone(line) || m.end > end {
            open = None;
            hits.extend(alone(line));
            from = line.end;
            next_line += 1;
            continue;
        }
        let hit = match &mut open {
            Some((_, hit)) => {
                hit.severity = hit.severity.max(m.severity);
                *hit
            }
            None => open.insert((next_line, Hit { start, end, at: m.start - start, severity: m.severity })).1,
        };
        if hit.severity == classifier.top() {
            // Nothing can raise it: on to the next line.
            hits.push(hit);
            open = None;
            from = line.end;
            next_line += 1;
        }
    }
    hits.extend(open.map(|(_, hit)| hit));
    hits
}

/// Rule severity label values, in counter index order.
pub const SEVERITIES: [Severity; 4] = [Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

/// The encoding used when none is configured.
pub const DEFAULT_ENCODING: Encoding = Encoding::Utf8;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write as _;
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::logs::classify::Preset;

    fn spec(path: &Path) -> LogSpec {
        LogSpec::new("app", vec![path.display().to_string()], Preset::Nginx, &[], Encoding::Utf8)
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open")
            .write_all(text.as_bytes())
            .expect("write");
    }

    fn delivered(poll: &Poll) -> u64 {
        poll.groups.values().map(|g| g.count).sum()
    }

    /// Applies a poll's checkpoints as the spool would on commit.
    fn commit(stored: &mut HashMap<FileKey, Checkpoint>, poll: &Poll) {
        for c in &poll.checkpoints {
            stored.insert((c.dev, c.ino), c.clone());
        }
        for key in &poll.forget {
            stored.remove(key);
        }
    }

    fn tailer(path: &Path, stored: &HashMap<FileKey, Checkpoint>) -> Tailer {
        Tailer::new(vec![spec(path)], stored.values().cloned().collect(), false, 1024, u64::MAX)
    }

    #[test]
    fn partial_line_is_delivered_once_when_completed_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        append(&path, "[error] first\n[error] foo");
        let mut stored = HashMap::new();
        let mut t = tailer(&path, &stored);
        let poll = t.poll(UnixMs(1));
        assert_eq!(delivered(&poll), 1);
        commit(&mut stored, &poll);
        assert_eq!(stored.values().next().expect("checkpoint").offset, 14, "offset stops before the partial line");
        drop(t);
        append(&path, "bar\n");
        let poll = tailer(&path, &stored).poll(UnixMs(2));
        let group = poll.groups.values().next().expect("group");
        assert_eq!((group.count, group.example.as_str()), (1, "[error] foobar"));
    }

    #[test]
    fn inode_reuse_with_other_content_is_read_from_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        append(&path, "[error] old content that is long enough\n");
        let mut stored = HashMap::new();
        let poll = tailer(&path, &stored).poll(UnixMs(1));
        commit(&mut stored, &poll);
        // Same inode, different head: as if the file was deleted and the inode reused.
        std::fs::OpenOptions::new().write(true).truncate(true).open(&path).expect("open");
        append(&path, "[error] new\n[error] new\n");
        let poll = tailer(&path, &stored).poll(UnixMs(2));
        assert_eq!(delivered(&poll), 2);
    }

    #[test]
    fn empty_file_is_read_once_it_grows_and_same_head_files_are_independent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.log");
        let b = dir.path().join("b.log");
        append(&a, "");
        append(&b, "[error] same head\n");
        let pattern = dir.path().join("*.log").display().to_string();
        let spec = LogSpec::new("app", vec![pattern], Preset::Nginx, &[], Encoding::Utf8);
        let mut t = Tailer::new(vec![spec], Vec::new(), false, 1024, u64::MAX);
        assert_eq!(delivered(&t.poll(UnixMs(1))), 1);
        append(&a, "[error] same head\n[error] more\n");
        assert_eq!(delivered(&t.poll(UnixMs(2))), 2);
        append(&b, "[error] b only\n");
        assert_eq!(delivered(&t.poll(UnixMs(3))), 1);
    }

    #[test]
    fn deleted_file_is_drained_before_it_is_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        append(&path, "[error] one\n");
        let mut t = tailer(&path, &HashMap::new());
        assert_eq!(delivered(&t.poll(UnixMs(1))), 1);
        append(&path, "[error] two\n[error] three\n");
        std::fs::remove_file(&path).expect("delete");
        let poll = t.poll(UnixMs(2));
        assert_eq!(delivered(&poll), 2);
        assert_eq!(poll.forget.len(), 1);
    }

    #[test]
    fn symlink_repointed_at_rotation_drains_the_old_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day1 = dir.path().join("app-1.log");
        let day2 = dir.path().join("app-2.log");
        let link = dir.path().join("current.log");
        append(&day1, "[error] d1\n");
        std::os::unix::fs::symlink(&day1, &link).expect("symlink");
        let mut t = tailer(&link, &HashMap::new());
        assert_eq!(delivered(&t.poll(UnixMs(1))), 1);
        append(&day1, "[error] d1 late\n");
        append(&day2, "[error] d2\n");
        std::fs::remove_file(&link).expect("unlink");
        std::os::unix::fs::symlink(&day2, &link).expect("symlink");
        assert_eq!(delivered(&t.poll(UnixMs(2))), 2);
    }

    #[test]
    fn invalid_utf8_and_long_lines_do_not_stop_the_next_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        let mut bytes = b"[error] raw \xff\xfe bytes\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 5000));
        bytes.extend(b"\n[error] after\n");
        std::fs::write(&path, bytes).expect("write");
        let mut t = tailer(&path, &HashMap::new());
        let poll = t.poll(UnixMs(1));
        assert_eq!(delivered(&poll), 2);
        assert!(poll.groups.values().any(|g| g.example.contains('\u{fffd}')));
        assert_eq!(t.counters[0].long_lines, 1);
    }

    #[test]
    fn a_line_longer_than_a_read_but_within_the_maximum_is_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        let long = format!("[error] {}", "y".repeat(3 * CHUNK));
        append(&path, &format!("[error] first\n{long}\n[error] last\n"));
        let mut t = Tailer::new(vec![spec(&path)], Vec::new(), false, 4 * CHUNK, 64 << 20);
        let poll = t.poll(UnixMs(1));
        assert_eq!(delivered(&poll), 3);
        assert_eq!(t.counters[0].long_lines, 0, "no line was cut");
        // Nothing left behind: the next poll reads only what is new.
        append(&path, "[error] later\n");
        assert_eq!(delivered(&t.poll(UnixMs(2))), 1);
    }

    #[test]
    fn restart_inside_an_over_long_line_skips_its_rest_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        let mut bytes = b"[error] giant line ".to_vec();
        bytes.resize(10 << 20, b'x');
        bytes.extend(b"\n[error] after the giant\n");
        std::fs::write(&path, bytes).expect("write");
        let mut stored = HashMap::new();
        // 1 MiB per poll: the agent stops while it is still skipping the line.
        let mut t = Tailer::new(vec![spec(&path)], Vec::new(), false, 1024, 1 << 20);
        let examples = |poll: &Poll| {
            let mut v: Vec<(String, u64)> = poll.groups.values().map(|g| (g.example.clone(), g.count)).collect();
            v.sort();
            v
        };
        let poll = t.poll(UnixMs(1));
        let first = examples(&poll);
        assert_eq!(first.len(), 1);
        assert!(first[0].0.starts_with("[error] giant line xxx") && first[0].1 == 1, "{first:?}");
        assert_eq!(t.counters[0].long_lines, 1);
        commit(&mut stored, &poll);
        let poll = t.poll(UnixMs(2));
        assert_eq!(delivered(&poll), 0);
        commit(&mut stored, &poll);
        drop(t);
        let mut t = Tailer::new(vec![spec(&path)], stored.values().cloned().collect(), false, 1024, 1 << 20);
        let mut after = Vec::new();
        for tick in 3..20 {
            after.extend(examples(&t.poll(UnixMs(tick))));
        }
        assert_eq!(after, [("[error] after the giant".to_owned(), 1)]);
        assert_eq!(t.counters[0].long_lines, 0, "the rest of the line is not a new long line");
        assert_eq!(t.counters[0].lines, 1);
    }

    #[test]
    fn a_flood_of_distinct_errors_is_capped_per_poll_and_still_counted_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        let flood = 3 * MAX_GROUPS_PER_POLL;
        let mut text: String = (0..flood).map(|n| format!("2024/05/01 [error] distinct {}\n", tag(n))).collect();
        text.push_str("2024/05/01 [emerg] distinct zzzzzz\n");
        append(&path, &text);
        let mut t = tailer(&path, &HashMap::new());
        let poll = t.poll(UnixMs(1));
        assert!(poll.groups.len() <= MAX_GROUPS_PER_POLL + 4, "{} groups", poll.groups.len());
        assert_eq!(delivered(&poll), flood as u64 + 1);
        let other = |name: &str| poll.groups.values().find(|g| g.fingerprint == name).map(|g| g.count);
        assert_eq!(other("other-medium"), Some((flood - MAX_GROUPS_PER_POLL) as u64));
        assert_eq!(other("other-critical"), Some(1), "a catch-all group per severity: severities stay exact");
        assert_eq!(t.counters[0].merged, (flood - MAX_GROUPS_PER_POLL) as u64 + 1);
        // The next poll starts afresh: a new error gets its own group.
        append(&path, "2024/05/01 [error] distinct again\n");
        let poll = t.poll(UnixMs(2));
        assert_eq!(
            poll.groups.values().map(|g| g.example.as_str()).collect::<Vec<_>>(),
            ["2024/05/01 [error] distinct again"]
        );
    }

    #[test]
    fn windows_1251_log_is_matched_by_cyrillic_rules_and_decoded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        let cp1251 = |text: &str| -> Vec<u8> {
            text.chars()
                .map(|c| {
                    (0u8..=255)
                        .find(|b| Encoding::Windows1251.decode(&[*b]).starts_with(c))
                        .expect("the code page has the letter")
                })
                .collect()
        };
        let mut bytes = cp1251("10:00 Ошибка подключения к базе 42\n10:00 всё хорошо\n");
        bytes.extend(b"10:00 [error] raw \xff byte\n");
        std::fs::write(&path, bytes).expect("write");
        let rules = [("Ошибка подключения".to_owned(), Severity::High), (r"\[error\]".to_owned(), Severity::Low)];
        let spec = LogSpec::new("app", vec![path.display().to_string()], Preset::None, &rules, Encoding::Windows1251);
        let mut t = Tailer::new(vec![spec], Vec::new(), false, 1024, u64::MAX);
        let poll = t.poll(UnixMs(1));
        let mut groups: Vec<(String, Severity)> =
            poll.groups.values().map(|g| (g.example.clone(), g.severity)).collect();
        groups.sort();
        assert_eq!(
            groups,
            [
                ("10:00 [error] raw я byte".to_owned(), Severity::Low),
                ("10:00 Ошибка подключения к базе 42".to_owned(), Severity::High),
            ]
        );
    }

    /// Distinct letters per number: digits would be normalised away by the fingerprint.
    fn tag(n: usize) -> String {
        let mut n = n;
        let mut out = String::new();
        loop {
            out.insert(0, char::from(b'a' + (n % 26) as u8));
            n /= 26;
            if n == 0 {
                return out;
            }
        }
    }

    fn write_tagged(path: &Path, lines: std::ops::Range<usize>) {
        append(path, &lines.map(|n| format!("2024/05/01 [error] line {}\n", tag(n))).collect::<String>());
    }

    fn tags(poll: &Poll) -> Vec<String> {
        let mut tags: Vec<String> = poll
            .groups
            .values()
            .flat_map(|g| {
                std::iter::repeat_n(g.example.rsplit(' ').next().unwrap_or_default().to_owned(), g.count as usize)
            })
            .collect();
        tags.sort();
        tags
    }

    /// logrotate's numbered rotation: `.2` → `.3`, `.1` → `.2`, the live file → `.1`, new live file.
    fn rotate_numbered(path: &Path) {
        for n in (1..3).rev() {
            let from = PathBuf::from(format!("{}.{n}", path.display()));
            if from.exists() {
                std::fs::rename(&from, format!("{}.{}", path.display(), n + 1)).expect("rename");
            }
        }
        std::fs::rename(path, format!("{}.1", path.display())).expect("rename");
    }

    /// Bitrix's exception log (`FileExceptionHandlerLog`): `copy($log, "$log.old")` then
    /// `ftruncate($fp, 0)` under a lock, when the file passes `log_size`.
    fn bitrix_rotate(path: &Path) {
        std::fs::copy(path, format!("{}.old", path.display())).expect("copy to .old");
        std::fs::OpenOptions::new().write(true).open(path).expect("open").set_len(0).expect("ftruncate");
    }

    fn bitrix_records(path: &Path, range: std::ops::Range<usize>) {
        let text: String = range
            .map(|n| {
                format!(
                    "2026-11-29 10:00:{:02} - Host: portal.example.com - UNCAUGHT_EXCEPTION - [Bitrix\\Main\\SystemException] \n\
                     record {n}\n/home/bitrix/www/bitrix/modules/main/lib/x.php:{n}\n\t#0: trace\n",
                    n % 60
                )
            })
            .collect();
        append(path, &text);
    }

    #[test]
    fn bitrix_rotation_to_old_while_the_file_was_empty_at_the_last_poll_loses_no_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("exceptions.log");
        append(&path, "");
        let spec =
            LogSpec::new("bitrix", vec![path.display().to_string()], Preset::BitrixExceptions, &[], Encoding::Utf8);
        let mut t = Tailer::new(vec![spec], Vec::new(), false, 1024, u64::MAX);
        assert_eq!(delivered(&t.poll(UnixMs(1))), 0, "empty at this poll");
        // Between two polls: 12 records pass log_size, Bitrix rotates, 8 more follow.
        bitrix_records(&path, 0..12);
        bitrix_rotate(&path);
        bitrix_records(&path, 12..20);
        let mut total = 0;
        for at in 2..5 {
            total += delivered(&t.poll(UnixMs(at)));
        }
        assert_eq!(total, 20, "records recovered from exceptions.log.old and read from the new file");
        assert_eq!(t.counters[0].bitrix_types.get("UNCAUGHT_EXCEPTION"), Some(&20));
        assert_eq!(t.counters[0].truncations, 1, "the rotation is counted");

        // The next rotation, from a file read up to its end, is recovered too and nothing is read twice.
        bitrix_records(&path, 20..25);
        bitrix_rotate(&path);
        let mut again = 0;
        for at in 5..8 {
            again += delivered(&t.poll(UnixMs(at)));
        }
        assert_eq!(again, 5, "only the 5 new records");
    }

    #[test]
    fn three_rotations_while_stopped_read_the_rest_and_every_newer_file_without_repeats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        let spec = || {
            let paths = vec![path.display().to_string(), format!("{}.1", path.display())];
            LogSpec::new("app", paths, Preset::Nginx, &[], Encoding::Utf8)
        };
        write_tagged(&path, 0..5);
        let mut stored = HashMap::new();
        // Installed with read_from = "end": the history before is not reported.
        let mut t = Tailer::new(vec![spec()], Vec::new(), true, 1024, u64::MAX);
        let poll = t.poll(UnixMs(1));
        assert_eq!(delivered(&poll), 0);
        commit(&mut stored, &poll);
        write_tagged(&path, 5..10);
        let poll = t.poll(UnixMs(2));
        assert_eq!(tags(&poll), (5..10).map(tag).collect::<Vec<_>>());
        commit(&mut stored, &poll);
        // Written, then the agent stops before reading it; three rotations follow.
        write_tagged(&path, 10..15);
        drop(t);
        for lines in [15..20, 20..25, 25..30] {
            rotate_numbered(&path);
            write_tagged(&path, lines);
        }
        // The file being read is now app.log.3, outside the patterns; app.log.2 was created and
        // rotated out of them while the agent was stopped: numbered rotation says it is newer.
        let mut t = Tailer::new(vec![spec()], stored.values().cloned().collect(), true, 1024, u64::MAX);
        let poll = t.poll(UnixMs(3));
        let mut expected: Vec<String> = (10..30).map(tag).collect();
        expected.sort();
        assert_eq!(tags(&poll), expected, "rest of the old file from its offset, all of the new ones, nothing twice");
        let file_of = |n: usize| {
            let group = poll.groups.values().find(|g| g.example.ends_with(&format!(" {}", tag(n)))).expect("group");
            group.file.rsplit('/').next().expect("name").to_owned()
        };
        assert_eq!(
            [file_of(10), file_of(15), file_of(20), file_of(25)],
            ["app.log.3", "app.log.2", "app.log.1", "app.log"]
        );
        assert_eq!(t.counters[0].rotated_away, 0);
        commit(&mut stored, &poll);
        assert_eq!(delivered(&t.poll(UnixMs(4))), 0);
        // Stopped again while reading; this time the rotated file is compressed (a new file) and
        // the original removed: its unread rest is gone, and counted.
        write_tagged(&path, 30..33);
        drop(t);
        rotate_numbered(&path);
        // Held open while removed, so the new app.log cannot reuse its inode: a reused inode with
        // another head is indistinguishable from a truncate-and-rewrite (read from 0 all the
        // same, but not counted as rotated away), and the filesystem reuses freed inodes at will.
        let _removed = std::fs::File::open(format!("{}.1", path.display())).expect("open rotated");
        std::fs::remove_file(format!("{}.1", path.display())).expect("remove");
        write_tagged(&path, 33..35);
        let mut t = Tailer::new(vec![spec()], stored.values().cloned().collect(), true, 1024, u64::MAX);
        let poll = t.poll(UnixMs(5));
        assert_eq!(tags(&poll), (33..35).map(tag).collect::<Vec<_>>());
        assert_eq!(t.counters[0].rotated_away, 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append {
            lines: u8,
            errors: u8,
        },
        Poll,
        /// Poll, then lose the result (kill -9 before the spool commit) and restart.
        Crash,
        Restart,
        RotateCreate,
        CopyTruncate,
        TruncateRewrite {
            errors: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u8..20, 0u8..5).prop_map(|(lines, errors)| Op::Append { lines, errors }),
            3 => Just(Op::Poll),
            1 => Just(Op::Crash),
            1 => Just(Op::Restart),
            1 => Just(Op::RotateCreate),
            1 => Just(Op::CopyTruncate),
            1 => (0u8..3).prop_map(|errors| Op::TruncateRewrite { errors }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Against random append/rotate/truncate/restart sequences, every error line is delivered
        /// exactly once (committed polls only), compared with a counter model.
        #[test]
        fn property_test_tailer_delivers_each_error_line_exactly_once(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("app.log");
            let rotated = dir.path().join("app.log.1");
            let mut stored: HashMap<FileKey, Checkpoint> = HashMap::new();
            let mut t = tailer(&path, &stored);
            let (mut written, mut committed) = (0u64, 0u64);
            let mut seq = 0u64;
            // One rotation between committed polls at most: a second one would overwrite
            // app.log.1 before anyone read it, which loses data on disk, not in the agent.
            let mut rotation_pending = false;
            for op in ops {
                // A file rotated before the agent ever committed a position in it is out of
                // scope (no tailer can know it existed unless app.log.1 is in the pattern).
                let ckpt = std::fs::metadata(&path).ok().and_then(|m| {
                    stored.get(&(std::os::unix::fs::MetadataExt::dev(&m), std::os::unix::fs::MetadataExt::ino(&m)))
                });
                let rotation_allowed = ckpt.is_some() && !rotation_pending;
                // Truncation is recognised by the size dropping below the position or the head
                // changing; a file that was still empty at the last commit has neither, so
                // content written and truncated away between two polls is out of reach.
                let truncation_allowed = rotation_allowed && ckpt.is_some_and(|c| c.head_len > 0);
                match op {
                    Op::Append { lines, errors } => {
                        let mut text = String::new();
                        for idx in 0..lines {
                            seq += 1;
                            if idx < errors {
                                text.push_str(&format!("2024/05/01 [error] upstream timed out n={seq}\n"));
                                written += 1;
                            } else {
                                text.push_str(&format!("2024/05/01 [info] fine n={seq}\n"));
                            }
                        }
                        append(&path, &text);
                    }
                    Op::Poll => {
                        let poll = t.poll(UnixMs(seq as i64));
                        committed += delivered(&poll);
                        commit(&mut stored, &poll);
                        rotation_pending = false;
                    }
                    Op::Crash => {
                        let _lost = t.poll(UnixMs(seq as i64));
                        t = tailer(&path, &stored);
                    }
                    Op::Restart => t = tailer(&path, &stored),
                    Op::RotateCreate if rotation_allowed && path.exists() => {
                        std::fs::rename(&path, &rotated).expect("rename");
                        append(&path, "");
                        rotation_pending = true;
                    }
                    Op::CopyTruncate if truncation_allowed && path.exists() => {
                        std::fs::copy(&path, &rotated).expect("copy");
                        std::fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(0).expect("truncate");
                        rotation_pending = true;
                    }
                    Op::TruncateRewrite { errors } if truncation_allowed => {
                        // An application truncating its own log on restart: the unread rest of
                        // the old content is gone by design, so count what was unread as lost.
                        let poll = t.poll(UnixMs(seq as i64));
                        committed += delivered(&poll);
                        commit(&mut stored, &poll);
                        std::fs::write(&path, "").expect("truncate");
                        let mut text = String::new();
                        for _ in 0..errors {
                            seq += 1;
                            text.push_str(&format!("2024/05/02 [error] rewritten n={seq}\n"));
                            written += 1;
                        }
                        append(&path, &text);
                        rotation_pending = true;
                    }
                    _ => {}
                }
                prop_assert!(committed <= written, "duplicates: committed {} > written {}", committed, written);
            }
            let poll = t.poll(UnixMs(seq as i64));
            committed += delivered(&poll);
            prop_assert_eq!(committed, written);
        }
    }

    /// Rules for the chunk-versus-line property: plain strings (string search), look-around,
    /// a class that can match a newline, and rules that overlap each other.
    const POOL: [&str; 9] =
        ["error", r"\[error\]", "timed out", "out while", "(alert|crit)", "^ERR", r"\bdb\b", "x[^;]*y", r"fail(ed)?$"];
    const PIECES: [&str; 16] = [
        "error",
        "[error]",
        "timed ",
        "out",
        " while",
        "ERR",
        "db",
        "dbx",
        "x",
        "y",
        ";",
        " ",
        "failed",
        "\0",
        "\r",
        "Ошибка",
    ];

    proptest! {
        /// Finding error lines over a whole chunk (one search jumping between matching lines)
        /// gives, for every line, what judging that line alone with each rule gives: the same
        /// lines, the most severe matching rule, the first match as the fingerprint start.
        #[test]
        fn property_test_chunk_search_judges_each_line_as_alone(
            rules in proptest::collection::vec((0..POOL.len(), 1u8..=4), 1..5),
            lines in proptest::collection::vec(proptest::collection::vec(0..PIECES.len(), 0..8), 1..12),
            max in 4usize..40,
        ) {
            let rules: Vec<(String, Severity)> = rules
                .into_iter()
                .map(|(i, s)| (POOL[i].to_owned(), SEVERITIES[usize::from(s) - 1]))
                .collect();
            let classifier = classify::Classifier::new(&rules).expect("pool compiles");
            // ASCII classes, like the classifier (see `classify::compile`).
            let reference: Vec<(regex::bytes::Regex, Severity)> = rules
                .iter()
                .map(|(p, s)| (regex::bytes::RegexBuilder::new(p).unicode(false).build().expect("pool compiles"), *s))
                .collect();
            let text: String = lines.iter().map(|l| l.iter().map(|&i| PIECES[i]).collect::<String>() + "\n").collect();
            let chunk = text.as_bytes();
            let split = Splitter::default().split(chunk, max);
            let found = find_errors(&classifier, chunk, &split);
            let expected: Vec<Hit> = split
                .lines
                .iter()
                .filter_map(|line| {
                    let severity = reference.iter().filter(|(re, _)| re.is_match(line.bytes)).map(|(_, s)| *s).max()?;
                    let at = reference.iter().filter_map(|(re, _)| re.find(line.bytes)).map(|m| m.start()).min()?;
                    let start = line.bytes.as_ptr() as usize - chunk.as_ptr() as usize;
                    Some(Hit { start, end: start + line.bytes.len(), at, severity })
                })
                .collect();
            prop_assert_eq!(found, expected, "rules {:?}, text {:?}", rules, text);
        }
    }
}
