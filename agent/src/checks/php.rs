//! Reads PHP array literals (`bitrix/.settings.php`) and scalar assignments (`dbconn.php`) without
//! executing PHP.
//!
//! Only literals are understood: strings in single or double quotes, numbers, `true`/`false`/`null`,
//! `array(...)` and `[...]`. Any other expression (a constant, `$_SERVER[...] . '/x'`, a function
//! call) is kept as [`Value::Expr`] with its line, so a caller that needs that value can say exactly
//! what it could not read. Input is bounded (size and nesting) and never panics the parser.

use std::fmt;

/// Files larger than this are refused: real settings files are a few KiB.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Arrays nested deeper than this are refused.
const MAX_DEPTH: usize = 32;

/// A PHP value as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string literal (double-quoted escapes decoded).
    Str(String),
    /// An integer literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An array literal: keys are strings or integers (rendered as strings), in file order.
    Array(Vec<(String, Value)>),
    /// Anything else: not evaluated. Holds the line it starts on.
    Expr {
        /// 1-based line number.
        line: usize,
    },
}

impl Value {
    /// The element under `key` of an array (the last one, as PHP does for duplicate keys).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Array(items) => items.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows a path of keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Value> {
        keys.iter().try_fold(self, |value, key| value.get(key))
    }

    /// The value as a string, when it is a scalar literal.
    pub fn as_string(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }
}

/// Why a PHP file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses the array after the first top-level `return` (the shape of `.settings.php`).
///
/// # Errors
/// When there is no `return <array>`, or the file is too large, too deep or malformed.
pub fn parse_return_array(src: &[u8]) -> Result<Value, ParseError> {
    let mut p = Parser::new(src)?;
    loop {
        p.skip_trivia()?;
        if p.at_end() {
            return Err(p.error("no `return array(...)` found"));
        }
        if p.peek_word().eq_ignore_ascii_case("return") {
            p.pos += "return".len();
            let value = p.value(0)?;
            return match value {
                Value::Array(_) => Ok(value),
                _ => Err(p.error("`return` is not followed by an array literal")),
            };
        }
        p.skip_token()?;
    }
}

/// Reads every top-level `$name = <literal>;` assignment (the shape of `dbconn.php`).
///
/// # Errors
/// When the file is too large or a string or comment is not terminated.
pub fn parse_assignments(src: &[u8]) -> Result<Vec<(String, Value)>, ParseError> {
    let mut p = Parser::new(src)?;
    let mut out = Vec::new();
    loop {
        p.skip_trivia()?;
        if p.at_end() {
            return Ok(out);
        }
        if p.src[p.pos] == b'$' {
            p.pos += 1;
            let name = p.peek_word().to_owned();
            p.pos += name.len();
            p.skip_trivia()?;
            if !name.is_empty() && p.eat(b'=') && p.src.get(p.pos) != Some(&b'=') {
                let value = p.value(0)?;
                out.push((name, value));
            }
            continue;
        }
        p.skip_token()?;
    }
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a [u8]) -> Result<Self, ParseError> {
        if src.len() > MAX_FILE_BYTES {
            return Err(ParseError { line: 1, message: format!("file larger than {MAX_FILE_BYTES} bytes") });
        }
        let mut p = Parser { src, pos: 0 };
        // Skip anything before the opening tag (`<?php` or the short `<?`).
        if let Some(open) = memchr::memmem::find(src, b"<?") {
            p.pos = open + 2;
            if src[p.pos..].len() >= 3 && src[p.pos..p.pos + 3].eq_ignore_ascii_case(b"php") {
                p.pos += 3;
            }
        }
        Ok(p)
    }

    fn line(&self) -> usize {
        1 + self.src[..self.pos.min(self.src.len())].iter().filter(|&&b| b == b'\n').count()
    }

    fn error(&self, message: &str) -> ParseError {
        ParseError { line: self.line(), message: message.to_owned() }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.src.get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn peek_word(&self) -> &'a str {
        let rest = &self.src[self.pos..];
        let len = rest.iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'\\').count();
        std::str::from_utf8(&rest[..len]).unwrap_or("")
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        while let Some(&b) = self.src.get(self.pos) {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'#' => self.skip_line(),
                b'/' if self.src.get(self.pos + 1) == Some(&b'/') => self.skip_line(),
                b'/' if self.src.get(self.pos + 1) == Some(&b'*') => {
                    let start = self.pos;
                    match memchr::memmem::find(&self.src[self.pos + 2..], b"*/") {
                        Some(end) => self.pos += 2 + end + 2,
                        None => {
                            self.pos = start;
                            return Err(self.error("comment `/*` is never closed"));
                        }
                    }
                }
                _ => break,
            }
        }
        Ok(())
    }

    fn skip_line(&mut self) {
        self.pos = memchr::memchr(b'\n', &self.src[self.pos..]).map_or(self.src.len(), |n| self.pos + n + 1);
    }

    /// Skips one token of any kind (used outside the values we read).
    fn skip_token(&mut self) -> Result<(), ParseError> {
        match self.src[self.pos] {
            b'\'' | b'"' => {
                self.string()?;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' => self.pos += self.peek_word().len().max(1),
            b'<' if self.src[self.pos..].starts_with(b"<<<") => {
                return Err(self.error("heredoc strings are not supported"));
            }
            _ => self.pos += 1,
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error("arrays nested too deeply"));
        }
        self.skip_trivia()?;
        let Some(&b) = self.src.get(self.pos) else {
            return Err(self.error("unexpected end of file, expected a value"));
        };
        let line = self.line();
        let literal = match b {
            b'\'' | b'"' => self.string()?.map(Value::Str),
            b'[' => {
                self.pos += 1;
                Some(self.array_items(b']', depth)?)
            }
            b'-' | b'+' | b'0'..=b'9' | b'.' => self.number(),
            _ => {
                let word = self.peek_word();
                if word.eq_ignore_ascii_case("array") {
                    self.pos += word.len();
                    self.skip_trivia()?;
                    if !self.eat(b'(') {
                        return Err(self.error("expected `(` after `array`"));
                    }
                    Some(self.array_items(b')', depth)?)
                } else if word.eq_ignore_ascii_case("true") {
                    self.pos += 4;
                    Some(Value::Bool(true))
                } else if word.eq_ignore_ascii_case("false") {
                    self.pos += 5;
                    Some(Value::Bool(false))
                } else if word.eq_ignore_ascii_case("null") {
                    self.pos += 4;
                    Some(Value::Null)
                } else {
                    None
                }
            }
        };
        // A literal followed by more expression (`'a' . 'b'`, `1 + 2`) is an expression too.
        self.skip_trivia()?;
        let ends = matches!(self.src.get(self.pos), None | Some(b',' | b')' | b']' | b';'))
            || self.src[self.pos..].starts_with(b"=>");
        match literal {
            Some(value) if ends => Ok(value),
            _ => {
                self.skip_expression(depth)?;
                Ok(Value::Expr { line })
            }
        }
    }

    /// Skips an expression up to the `,`, `;`, `=>` or closing bracket that ends it.
    fn skip_expression(&mut self, depth: usize) -> Result<(), ParseError> {
        let mut nesting = 0usize;
        loop {
            self.skip_trivia()?;
            let Some(&b) = self.src.get(self.pos) else { return Ok(()) };
            match b {
                b'(' | b'[' | b'{' => {
                    nesting += 1;
                    if depth + nesting > MAX_DEPTH {
                        return Err(self.error("expression nested too deeply"));
                    }
                    self.pos += 1;
                }
                b')' | b']' | b'}' if nesting == 0 => return Ok(()),
                b')' | b']' | b'}' => {
                    nesting -= 1;
                    self.pos += 1;
                }
                b',' | b';' if nesting == 0 => return Ok(()),
                b'=' if nesting == 0 && self.src.get(self.pos + 1) == Some(&b'>') => return Ok(()),
                _ => self.skip_token()?,
            }
        }
    }

    fn array_items(&mut self, close: u8, depth: usize) -> Result<Value, ParseError> {
        let mut items = Vec::new();
        let mut next_index: i64 = 0;
        loop {
            self.skip_trivia()?;
            if self.eat(close) {
                return Ok(Value::Array(items));
            }
            if self.at_end() {
                return Err(self.error(&format!("array is never closed with `{}`", close as char)));
            }
            let first = self.value(depth + 1)?;
            self.skip_trivia()?;
            let (key, value) = if self.src[self.pos..].starts_with(b"=>") {
                self.pos += 2;
                let value = self.value(depth + 1)?;
                let key = match &first {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => {
                        next_index = next_index.max(i.saturating_add(1));
                        i.to_string()
                    }
                    _ => format!("<expression at line {}>", self.line()),
                };
                (key, value)
            } else {
                let key = next_index.to_string();
                next_index = next_index.saturating_add(1);
                (key, first)
            };
            items.push((key, value));
            self.skip_trivia()?;
            if !self.eat(b',') {
                self.skip_trivia()?;
                if self.eat(close) {
                    return Ok(Value::Array(items));
                }
                return Err(self.error(&format!("expected `,` or `{}` in array", close as char)));
            }
        }
    }

    fn number(&mut self) -> Option<Value> {
        let rest = &self.src[self.pos..];
        let len = rest
            .iter()
            .enumerate()
            .take_while(|(i, b)| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_') || (*i == 0 && matches!(b, b'-' | b'+'))
            })
            .count();
        let text = std::str::from_utf8(&rest[..len]).ok()?.replace('_', "");
        self.pos += len.max(1);
        if let Ok(int) = text.parse::<i64>() {
            return Some(Value::Int(int));
        }
        text.parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::Float)
    }

    /// Reads a quoted string. `None` for a double-quoted string with interpolation (`"$x"`).
    fn string(&mut self) -> Result<Option<String>, ParseError> {
        let quote = self.src[self.pos];
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        let mut interpolated = false;
        loop {
            let Some(&b) = self.src.get(self.pos) else {
                self.pos = start;
                return Err(self.error("string is never closed"));
            };
            self.pos += 1;
            match b {
                _ if b == quote => break,
                b'\\' => {
                    let Some(&next) = self.src.get(self.pos) else { continue };
                    self.pos += 1;
                    match (quote, next) {
                        (b'\'', b'\'' | b'\\') => out.push(next),
                        (b'\'', _) => out.extend_from_slice(&[b'\\', next]),
                        (_, b'n') => out.push(b'\n'),
                        (_, b't') => out.push(b'\t'),
                        (_, b'r') => out.push(b'\r'),
                        (_, b'0') => out.push(0),
                        (_, b'"' | b'\\' | b'$') => out.push(next),
                        _ => out.extend_from_slice(&[b'\\', next]),
                    }
                }
                b'$' if quote == b'"'
                    && self.src.get(self.pos).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_' || *c == b'{') =>
                {
                    interpolated = true;
                }
                _ => out.push(b),
            }
        }
        Ok((!interpolated).then(|| String::from_utf8_lossy(&out).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_array_with_both_syntaxes_and_comments() {
        let src = br#"<?php
/* header */
return array (
  'utf_mode' => array('value' => true, 'readonly' => true),
  // a comment with 'quotes' and => arrows
  'connections' => [
    'value' => [
      'default' => array(
        'className' => '\\Bitrix\\Main\\DB\\MysqliConnection',
        'host' => "localhost",
        'database' => 'sitemanager',
        'login' => 'bitrix0',
        'password' => 'p\'a"s$s!{+[',
        'options' => 2,
      ),
    ],
    'readonly' => true,
  ],
  'exception_handling' => array('value' => array('log' => array('settings' => array(
      'file' => $_SERVER['DOCUMENT_ROOT'] . '/local/logs/exceptions.log', 'log_size' => 1000000)))),
);
"#;
        let v = parse_return_array(src).expect("parses");
        let db = v.path(&["connections", "value", "default"]).expect("connection");
        assert_eq!(db.get("password"), Some(&Value::Str("p'a\"s$s!{+[".into())));
        assert_eq!(db.get("className"), Some(&Value::Str("\\Bitrix\\Main\\DB\\MysqliConnection".into())));
        assert_eq!(db.get("options"), Some(&Value::Int(2)));
        let file = v.path(&["exception_handling", "value", "log", "settings", "file"]).expect("file");
        assert_eq!(file, &Value::Expr { line: 20 });
        assert_eq!(v.path(&["exception_handling", "value", "log", "settings", "log_size"]), Some(&Value::Int(1000000)));
    }

    #[test]
    fn dbconn_assignments_with_short_open_tag() {
        let src = b"<?\ndefine(\"DBPersistent\", false);\n$DBType = \"mysql\";\n$DBHost = 'localhost:/var/lib/mysqld/mysqld.sock';\n$DBLogin = \"bitrix0\";\n$DBPassword = \"se\\\"cret\";\n$DBName = \"sitemanager\";\n$DBDebug = false;\nif ($x == 1) { $y = 2; }\n?>";
        let vars = parse_assignments(src).expect("parses");
        let get = |name: &str| vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert_eq!(get("DBHost"), Some(Value::Str("localhost:/var/lib/mysqld/mysqld.sock".into())));
        assert_eq!(get("DBPassword"), Some(Value::Str("se\"cret".into())));
        assert_eq!(get("DBName"), Some(Value::Str("sitemanager".into())));
        assert_eq!(get("DBDebug"), Some(Value::Bool(false)));
    }

    #[test]
    fn hostile_input_is_an_error_never_a_panic() {
        let deep = format!("<?php return {}{};", "[".repeat(10_000), "]".repeat(10_000));
        let err = parse_return_array(deep.as_bytes()).expect_err("too deep");
        assert!(err.message.contains("nested too deeply"), "{err}");
        let open = parse_return_array(b"<?php return array('a' => 'b").expect_err("unterminated");
        assert!(open.message.contains("never closed"), "{open}");
        let none = parse_return_array(b"<?php echo 1;").expect_err("no return");
        assert!(none.message.contains("no `return"), "{none}");
        let big = vec![b' '; MAX_FILE_BYTES + 1];
        assert!(parse_return_array(&big).is_err());
        assert!(parse_return_array(b"<?php return <<<EOT\nx\nEOT;").is_err());
    }

    #[test]
    fn numbers_keys_and_interpolation() {
        let v = parse_return_array(b"<?php return ['a', 5 => 'b', 'c', \"x$y\", -1.5, 0x1F, null];").expect("parses");
        let Value::Array(items) = v else { panic!("array") };
        let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["0", "5", "6", "7", "8", "9", "10"]);
        assert_eq!(items[3].1, Value::Expr { line: 1 });
        assert_eq!(items[4].1, Value::Float(-1.5));
        assert_eq!(items[6].1, Value::Null);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut src = b"<?php return ".to_vec();
            src.extend_from_slice(&bytes);
            let _ = parse_return_array(&src);
            let _ = parse_assignments(&src);
        }
    }
}
