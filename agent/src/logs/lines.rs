//! Bytes to lines: bounded line length, decoding (lossy UTF-8 or windows-1251) and multi-line
//! records. Pure: no IO, no clock.

/// How a log's bytes become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8, invalid sequences replaced by U+FFFD.
    #[default]
    Utf8,
    /// windows-1251 (Cyrillic), used by older Bitrix installs.
    Windows1251,
}

impl Encoding {
    /// Parses a config value.
    pub fn parse(text: &str) -> Option<Encoding> {
        match text.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Some(Encoding::Utf8),
            "windows-1251" | "cp1251" => Some(Encoding::Windows1251),
            _ => None,
        }
    }

    /// A rule pattern (UTF-8 text) as it must read to match this encoding's bytes: for
    /// windows-1251, every character the code page has beyond ASCII becomes a `\xHH` byte escape
    /// (rules are compiled without Unicode, where that means the byte). Characters it lacks are
    /// left alone: they cannot occur in such a log.
    pub fn rule_for_bytes(self, pattern: &str) -> String {
        match self {
            Encoding::Utf8 => pattern.to_owned(),
            Encoding::Windows1251 => pattern
                .chars()
                .map(|c| match CP1251.iter().position(|&d| d == c && c != '\u{fffd}') {
                    Some(index) if !c.is_ascii() => format!("\\x{:02X}", index + 0x80),
                    _ => c.to_string(),
                })
                .collect(),
        }
    }

    /// Decodes one line.
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            Encoding::Windows1251 => {
                bytes.iter().map(|&b| if b < 0x80 { char::from(b) } else { CP1251[usize::from(b - 0x80)] }).collect()
            }
        }
    }
}

/// windows-1251 code points for bytes 0x80..=0xFF (0x98 is unassigned).
const CP1251: [char; 128] = [
    '\u{0402}', '\u{0403}', '\u{201a}', '\u{0453}', '\u{201e}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{20ac}',
    '\u{2030}', '\u{0409}', '\u{2039}', '\u{040a}', '\u{040c}', '\u{040b}', '\u{040f}', '\u{0452}', '\u{2018}',
    '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{fffd}', '\u{2122}', '\u{0459}',
    '\u{203a}', '\u{045a}', '\u{045c}', '\u{045b}', '\u{045f}', '\u{00a0}', '\u{040e}', '\u{045e}', '\u{0408}',
    '\u{00a4}', '\u{0490}', '\u{00a6}', '\u{00a7}', '\u{0401}', '\u{00a9}', '\u{0404}', '\u{00ab}', '\u{00ac}',
    '\u{00ad}', '\u{00ae}', '\u{0407}', '\u{00b0}', '\u{00b1}', '\u{0406}', '\u{0456}', '\u{0491}', '\u{00b5}',
    '\u{00b6}', '\u{00b7}', '\u{0451}', '\u{2116}', '\u{0454}', '\u{00bb}', '\u{0458}', '\u{0405}', '\u{0455}',
    '\u{0457}', '\u{0410}', '\u{0411}', '\u{0412}', '\u{0413}', '\u{0414}', '\u{0415}', '\u{0416}', '\u{0417}',
    '\u{0418}', '\u{0419}', '\u{041a}', '\u{041b}', '\u{041c}', '\u{041d}', '\u{041e}', '\u{041f}', '\u{0420}',
    '\u{0421}', '\u{0422}', '\u{0423}', '\u{0424}', '\u{0425}', '\u{0426}', '\u{0427}', '\u{0428}', '\u{0429}',
    '\u{042a}', '\u{042b}', '\u{042c}', '\u{042d}', '\u{042e}', '\u{042f}', '\u{0430}', '\u{0431}', '\u{0432}',
    '\u{0433}', '\u{0434}', '\u{0435}', '\u{0436}', '\u{0437}', '\u{0438}', '\u{0439}', '\u{043a}', '\u{043b}',
    '\u{043c}', '\u{043d}', '\u{043e}', '\u{043f}', '\u{0440}', '\u{0441}', '\u{0442}', '\u{0443}', '\u{0444}',
    '\u{0445}', '\u{0446}', '\u{0447}', '\u{0448}', '\u{0449}', '\u{044a}', '\u{044b}', '\u{044c}', '\u{044d}',
    '\u{044e}', '\u{044f}',
];

/// One complete line found in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// Line bytes without the newline (and without a trailing `\r`), at most the maximum length.
    pub bytes: &'a [u8],
    /// Whether the line was longer than the maximum and cut.
    pub truncated: bool,
    /// Offset just past this line's newline, relative to the buffer start.
    pub end: usize,
}

/// Splits complete lines off the front of a buffer, remembering across calls whether it is in
/// the middle of skipping an over-long line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Splitter {
    /// Inside an over-long line whose first `max` bytes were already emitted.
    pub skipping: bool,
}

/// What [`Splitter::split`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split<'a> {
    /// Complete lines, in order.
    pub lines: Vec<Line<'a>>,
    /// Bytes consumed from the buffer (complete lines, plus a skipped over-long tail).
    pub consumed: usize,
    /// Lines longer than the maximum (each counted once).
    pub long_lines: u64,
}

impl Splitter {
    /// Splits `buf` into complete lines of at most `max` bytes. An unterminated tail shorter
    /// than `max` is left unconsumed so the caller re-reads it once its newline arrives; a longer
    /// one is emitted truncated and the rest of that line is skipped.
    ///
    /// NUL bytes at the start of a line are padding, not content: a writer without `O_APPEND`
    /// that keeps its offset after a copytruncate leaves a hole of NULs before its next line.
    /// They are consumed and dropped, so they neither become a giant line nor hide the text
    /// after them.
    pub fn split<'a>(&mut self, buf: &'a [u8], max: usize) -> Split<'a> {
        let mut out = Split::default();
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', buf) {
            if self.skipping {
                self.skipping = false;
                start = nl + 1;
                out.consumed = start;
                continue;
            }
            start += buf[start..nl].iter().take_while(|b| **b == 0).count();
            let mut line = &buf[start..nl];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let truncated = line.len() > max;
            if truncated {
                line = &line[..max];
                out.long_lines += 1;
            }
            out.lines.push(Line { bytes: line, truncated, end: nl + 1 });
            start = nl + 1;
            out.consumed = start;
        }
        if !self.skipping {
            let nuls = buf[start..].iter().take_while(|b| **b == 0).count();
            start += nuls;
            if nuls > 0 {
                out.consumed = start;
            }
        }
        let tail = &buf[start..];
        if self.skipping {
            out.consumed = buf.len();
        } else if tail.len() > max {
            out.lines.push(Line { bytes: &tail[..max], truncated: true, end: buf.len() });
            out.long_lines += 1;
            out.consumed = buf.len();
            self.skipping = true;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_last_line_is_left_for_the_next_read() {
        let mut splitter = Splitter::default();
        let split = splitter.split(b"one\ntwo\r\nERROR foo", 100);
        let lines: Vec<&[u8]> = split.lines.iter().map(|l| l.bytes).collect();
        assert_eq!(lines, [b"one".as_slice(), b"two"]);
        assert_eq!(split.consumed, 9);
        let split = splitter.split(b"ERROR foobar\n", 100);
        assert_eq!(split.lines[0].bytes, b"ERROR foobar");
    }

    #[test]
    fn over_long_line_is_truncated_once_and_its_rest_skipped() {
        let mut splitter = Splitter::default();
        let first = splitter.split(&[b'x'; 50], 10);
        assert_eq!((first.lines.len(), first.consumed, first.long_lines), (1, 50, 1));
        assert!(first.lines[0].truncated);
        let second = splitter.split(b"xxxxx\nnext\n", 10);
        let lines: Vec<&[u8]> = second.lines.iter().map(|l| l.bytes).collect();
        assert_eq!(lines, [b"next".as_slice()]);
        assert_eq!((second.consumed, second.long_lines), (11, 0));
    }

    #[test]
    fn complete_long_line_in_one_buffer_is_cut() {
        let split = Splitter::default().split(b"abcdefghijkl\nok\n", 4);
        assert_eq!(split.lines[0].bytes, b"abcd");
        assert_eq!(split.lines[1].bytes, b"ok");
        assert_eq!(split.long_lines, 1);
    }

    #[test]
    fn nul_padding_before_a_line_is_dropped_not_glued_to_it() {
        let mut buf = vec![0u8; 40];
        buf.extend(b"[error] after the hole\n");
        let split = Splitter::default().split(&buf, 16);
        assert_eq!(split.lines.len(), 1);
        assert_eq!(split.lines[0].bytes, b"[error] after th");
        let only_nuls = Splitter::default().split(&[0u8; 100], 16);
        assert_eq!((only_nuls.lines.len(), only_nuls.consumed, only_nuls.long_lines), (0, 100, 0));
    }

    #[test]
    fn windows_1251_and_invalid_utf8_decode() {
        assert_eq!(Encoding::Windows1251.decode(&[0xCE, 0xF8, 0xE8, 0xE1, 0xEA, 0xE0]), "Ошибка");
        assert_eq!(Encoding::Utf8.decode(b"bad \xff byte"), "bad \u{fffd} byte");
        assert_eq!(Encoding::parse("CP1251"), Some(Encoding::Windows1251));
        assert_eq!(Encoding::parse("koi8-r"), None);
    }
}
