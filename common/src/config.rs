//! Config errors and TOML loading shared by both binaries.

use std::fmt;
use std::path::{Path, PathBuf};

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
