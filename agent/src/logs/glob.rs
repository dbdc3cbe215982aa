//! Path patterns: `*` and `?` in the last path component only (`/var/log/nginx/*error.log`).

use std::path::{Path, PathBuf};

/// Whether `name` matches `pattern` (`*` any run, `?` one character).
pub(super) fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Existing regular files matching `pattern`, sorted.
pub(crate) fn expand(pattern: &str) -> Vec<PathBuf> {
    expand_filtered(pattern, Path::is_file)
}

/// Existing directories matching `pattern`, sorted.
pub(crate) fn expand_dirs(pattern: &str) -> Vec<PathBuf> {
    expand_filtered(pattern, Path::is_dir)
}

fn expand_filtered(pattern: &str, keep: fn(&Path) -> bool) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let (Some(dir), Some(file)) = (path.parent(), path.file_name().and_then(|f| f.to_str())) else {
        return Vec::new();
    };
    if !file.contains(['*', '?']) {
        return if keep(path) { vec![path.to_path_buf()] } else { Vec::new() };
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|name| matches(file, name)))
        .map(|e| e.path())
        .filter(|p| keep(p))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_a_shell() {
        assert!(matches("*error.log", "site1_error.log"));
        assert!(matches("*error.log", "error.log"));
        assert!(!matches("*error.log", "error.log.1"));
        assert!(matches("error_log*", "error_log-20240501"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
    }
}
