//! Config errors, the collector of a file's problems, and TOML loading shared by both binaries.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File the problem is in.
    pub origin: PathBuf,
    /// Dotted key, empty when the file as a whole did not parse.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin.display(), self.message)
        } else {
            write!(f, "invalid value for {} in {}: {}", self.key, self.origin.display(), self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// All problems of one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (idx, err) in self.0.iter().enumerate() {
            if idx > 0 {
                writeln!(f)?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// A single error about the file as a whole.
    pub fn file(origin: &Path, message: String) -> ConfigErrors {
        ConfigErrors(vec![ConfigError { origin: origin.to_path_buf(), key: String::new(), message }])
    }
}

/// Collects the problems of one config file while its sections are validated, so that every
/// problem is reported at once, in the order found.
///
/// A check that fails records the problem and hands back a value anyway: validation goes on,
/// and [`Problems::finish`] discards what was built from a file with problems.
#[derive(Debug)]
pub struct Problems {
    origin: PathBuf,
    errors: Vec<ConfigError>,
}

impl Problems {
    /// No problems yet in the file `origin`.
    pub fn new(origin: &Path) -> Problems {
        Problems { origin: origin.to_path_buf(), errors: Vec::new() }
    }

    /// Records that `key` is invalid: `message` says what it is and what is expected.
    pub fn bad(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { origin: self.origin.clone(), key: key.into(), message: message.into() });
    }

    /// `value`, recording a problem when it is outside `min..=max`.
    pub fn range(&mut self, key: &str, value: u64, min: u64, max: u64) -> u64 {
        if !(min..=max).contains(&value) {
            self.bad(key, format!("{value}: expected an integer from {min} to {max}"));
        }
        value
    }

    /// `value` seconds, recording a problem when it is outside `min..=max`.
    pub fn secs(&mut self, key: &str, value: u64, min: u64, max: u64) -> Duration {
        Duration::from_secs(self.range(key, value, min, max))
    }

    /// Whether two keys that go together are both set (`Some(true)`) or neither (`Some(false)`);
    /// when only one is, a problem on the empty one and `None`.
    pub fn both_or_neither(&mut self, first: (&str, bool), second: (&str, bool)) -> Option<bool> {
        let (empty, set) = match (first.1, second.1) {
            (true, true) => return Some(true),
            (false, false) => return Some(false),
            (true, false) => (second.0, first.0),
            (false, true) => (first.0, second.0),
        };
        self.bad(empty, format!("empty while {set} is set: set both or neither"));
        None
    }

    /// `value` when no problem was recorded.
    ///
    /// # Errors
    /// Every problem recorded.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() { Ok(value) } else { Err(ConfigErrors(self.errors)) }
    }
}

/// Parses TOML text into the raw config type. Pure: `origin` only names the file in errors.
///
/// # Errors
/// The TOML error (unknown keys, wrong types), on one line, naming the file.
pub fn parse_toml<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, ConfigErrors> {
    toml::from_str(text).map_err(|err| ConfigErrors::file(origin, err.to_string().trim_end().replace('\n', " ")))
}

/// Reads and parses a config file; a missing file means all defaults (an empty document).
///
/// # Errors
/// An unreadable file or invalid TOML, naming the file.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigErrors> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(ConfigErrors::file(path, format!("cannot read: {err}"))),
    };
    parse_toml(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        interval_secs: u64,
    }

    #[test]
    fn problems_are_reported_in_order_with_key_and_file() {
        let mut problems = Problems::new(Path::new("/etc/b24watch/agent.toml"));
        assert_eq!(problems.secs("agent.interval_secs", 10, 1, 3600), std::time::Duration::from_secs(10));
        assert_eq!(problems.both_or_neither(("tls.cert_file", false), ("tls.key_file", false)), Some(false));
        problems.range("agent.interval_secs", 0, 1, 3600);
        problems.both_or_neither(("tls.cert_file", true), ("tls.key_file", false));
        problems.bad("agent.id", "\"bad id\": expected 1..=128 characters");
        let text = problems.finish(()).expect_err("three problems").to_string();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "invalid value for agent.interval_secs in /etc/b24watch/agent.toml: 0: expected an integer from 1 to 3600",
                "invalid value for tls.key_file in /etc/b24watch/agent.toml: empty while tls.cert_file is set: set both or neither",
                "invalid value for agent.id in /etc/b24watch/agent.toml: \"bad id\": expected 1..=128 characters",
            ]
        );
    }

    #[test]
    fn missing_file_is_an_empty_document() {
        let loaded: Sample = load_toml(Path::new("/nonexistent/b24watch.toml")).expect("defaults");
        assert_eq!(loaded, Sample::default());
    }

    #[test]
    fn parse_errors_name_the_file_on_one_line() {
        let err =
            parse_toml::<Sample>("interval_secs = \"15x\"\n", Path::new("/etc/b24watch/agent.toml")).expect_err("bad");
        let text = err.to_string();
        assert!(text.starts_with("/etc/b24watch/agent.toml: "), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}
