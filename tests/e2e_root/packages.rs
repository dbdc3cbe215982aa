//! Packages: the built .deb installed on this machine (`dpkg -i`, root), the .rpm read with `rpm`.

use std::process::Command;

use b24watch_e2e::workspace_root;

/// Issue #7: the packages built by `scripts/package.sh` (run by `make test`): the .deb
/// installs here with its files, the `b24watch` user and valid units; the .rpm exists; the
/// binaries need no glibc symbol newer than 2.28 (Rocky/Alma 8).
#[test]
fn packages_install_with_files_user_and_units_and_need_glibc_2_28_at_most() {
    let dir = workspace_root().join("target/package");
    let find = |prefix: &str, ext: &str| -> std::path::PathBuf {
        std::fs::read_dir(&dir)
            .unwrap_or_else(|err| panic!("{}: {err}: run `make test` or scripts/package.sh first", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                name.starts_with(prefix) && name.ends_with(ext)
            })
            .unwrap_or_else(|| panic!("no {prefix}*{ext} in {}: run scripts/package.sh", dir.display()))
    };
    for (pkg, files) in [
        (
            "b24watch-agent",
            [
                "/usr/bin/b24watch-agent",
                "/usr/lib/systemd/system/b24watch-agent.service",
                "/etc/sysconfig/b24watch-agent",
            ],
        ),
        (
            "b24watch-collector",
            [
                "/usr/bin/b24watch-collector",
                "/usr/lib/systemd/system/b24watch-collector.service",
                "/usr/share/b24watch/prometheus/b24watch.rules.yml",
            ],
        ),
    ] {
        let path = find(pkg, ".rpm");
        let rpm = std::fs::read(&path).expect("read rpm");
        assert_eq!(&rpm[..4], &[0xed, 0xab, 0xee, 0xdb], "{pkg}.rpm is not an RPM");
        // Debian's `rpm` package reads it as Rocky's dnf would.
        let query = |args: &[&str]| {
            let out = Command::new("rpm").args(args).arg(&path).output().expect("rpm (package rpm)");
            assert!(out.status.success(), "rpm {args:?} {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let listing = query(&["-qpl"]);
        for file in files {
            assert!(listing.contains(file), "{pkg}.rpm lacks {file}: {listing}");
        }
        let config = query(&["-qpc"]);
        assert!(config.contains("/etc/b24watch/"), "{pkg}.rpm marks no config file: {config}");
        let listing = query(&["-qp", "--scripts"]);
        assert!(listing.contains("useradd --system"), "{pkg}.rpm does not create the user: {listing}");
    }
    let debs = [find("b24watch-agent_", ".deb"), find("b24watch-collector_", ".deb")];
    assert!(rustix::process::getuid().is_root(), "installing the .deb needs root (CI runs as root)");
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("run");
        assert!(
            out.status.success(),
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(Command::new("dpkg").arg("-i").args(&debs).env("DEBIAN_FRONTEND", "noninteractive"));
    let result = std::panic::catch_unwind(|| {
        for path in [
            "/usr/bin/b24watch-agent",
            "/usr/bin/b24watch-collector",
            "/lib/systemd/system/b24watch-agent.service",
            "/lib/systemd/system/b24watch-collector.service",
            "/etc/b24watch/agent.toml",
            "/etc/b24watch/collector.toml",
            "/etc/default/b24watch-agent",
            "/usr/share/doc/b24watch/runbooks.md",
            "/usr/share/b24watch/prometheus/b24watch.rules.yml",
            "/usr/share/b24watch/grafana/dashboards/b24watch-sla.json",
        ] {
            assert!(std::path::Path::new(path).exists(), "{path} not installed");
        }
        let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "b24watch-agent"]));
        assert!(conffiles.contains("/etc/b24watch/agent.toml"), "agent.toml is not a conffile: {conffiles}");
        let user = run(Command::new("getent").args(["passwd", "b24watch"]));
        assert!(user.trim_end().ends_with("/usr/sbin/nologin"), "{user}");
        let uid: u32 = user.split(':').nth(2).and_then(|u| u.parse().ok()).expect("uid");
        assert!(uid < 1000, "b24watch must be a system user: {user}");
        run(Command::new("/usr/bin/b24watch-agent").args([
            "--config",
            "/etc/b24watch/agent.toml",
            "--token",
            "x.y",
            "check-config",
        ]));
        run(Command::new("/usr/bin/b24watch-collector").args([
            "--config",
            "/etc/b24watch/collector.toml",
            "check-config",
        ]));
        for unit in ["b24watch-agent", "b24watch-collector"] {
            run(Command::new("systemd-analyze").args(["verify", &format!("/lib/systemd/system/{unit}.service")]));
        }
        for bin in ["/usr/bin/b24watch-agent", "/usr/bin/b24watch-collector"] {
            let symbols = run(Command::new("objdump").args(["-T", bin]));
            let highest = symbols
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .filter_map(|w| w.strip_prefix("GLIBC_"))
                .filter_map(|v| {
                    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
                    Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
                })
                .max()
                .expect("glibc symbols");
            assert!(highest <= (2, 28), "{bin} needs GLIBC_{}.{}", highest.0, highest.1);
        }
    });
    run(Command::new("dpkg").args(["--purge", "b24watch-agent", "b24watch-collector"]));
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
