//! Configuration: exit code 78 on a bad file, the printed defaults accepted, the reference current.

use std::process::Command;

use b24watch_e2e::{bin, workspace_root};

#[test]
fn bad_config_exits_78_with_the_key_and_file_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "[agent]\ninterval_secs = 0\n").expect("write");
    let out =
        Command::new(bin("b24watch-agent")).arg("--config").arg(&path).arg("check-config").output().expect("run agent");
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("agent.interval_secs") && stderr.contains(&path.display().to_string()), "{stderr}");

    let cpath = dir.path().join("collector.toml");
    std::fs::write(&cpath, "[collector]\nhttp_listen = \"nowhere\"\nbogus = 1\n").expect("write");
    let out = Command::new(bin("b24watch-collector"))
        .arg("--config")
        .arg(&cpath)
        .arg("--check-config")
        .output()
        .expect("run collector");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
}

#[test]
fn printed_default_configs_are_accepted_by_check_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (binary, file) in [("b24watch-agent", "agent.toml"), ("b24watch-collector", "collector.toml")] {
        let printed = Command::new(bin(binary)).arg("--print-default-config").output().expect("print default config");
        assert!(printed.status.success());
        let path = dir.path().join(file);
        std::fs::write(&path, &printed.stdout).expect("write");
        let token = dir.path().join("token");
        std::fs::write(&token, "box.0123").expect("write token");
        let out = Command::new(bin(binary))
            .arg("--config")
            .arg(&path)
            .args(if binary == "b24watch-agent" {
                vec!["--token-file".to_owned(), token.display().to_string()]
            } else {
                vec![]
            })
            .arg("--check-config")
            .output()
            .expect("check config");
        assert!(out.status.success(), "{binary}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The configuration reference is generated from what the binaries print, so it cannot drift
/// from the code: when stale, this test rewrites it and fails, and the new file gets committed.
#[test]
fn configuration_reference_matches_the_binaries() {
    let mut doc = String::from(
        "# Configuration reference\n\n\
         Generated from `b24watch-agent --print-default-config` and\n\
         `b24watch-collector --print-default-config` by the test\n\
         `config::configuration_reference_matches_the_binaries`; do not edit by hand. Every key is optional and\n\
         the values shown are the defaults. A missing file means all defaults; unknown keys are rejected;\n\
         `--check-config` validates a file and exits 0 or 78. Flags and `B24WATCH_*` environment variables\n\
         override the file (`--help` lists them).\n",
    );
    for (title, binary, path) in [
        ("Agent", "b24watch-agent", "/etc/b24watch/agent.toml"),
        ("Collector", "b24watch-collector", "/etc/b24watch/collector.toml"),
    ] {
        let out = Command::new(bin(binary)).arg("--print-default-config").output().expect("print default config");
        assert!(out.status.success());
        doc.push_str(&format!("\n## {title}: `{path}`\n\n```toml\n{}```\n", String::from_utf8_lossy(&out.stdout)));
    }
    let path = workspace_root().join("docs/configuration.md");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current != doc {
        std::fs::write(&path, &doc).expect("write docs/configuration.md");
        panic!("docs/configuration.md was stale and has been regenerated: commit it");
    }
}
