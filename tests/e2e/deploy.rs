//! Issue #7 (part): systemd units and the readiness protocol they rely on.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use b24watch_e2e::{ProcessGuard, bin, enroll, workspace_root};

/// The unit with ExecStart pointing at the freshly built binary (verify checks it exists).
fn unit_copy(dir: &Path, name: &str) -> PathBuf {
    let text =
        std::fs::read_to_string(workspace_root().join("deploy/systemd").join(format!("{name}.service"))).expect("unit");
    let text = text.replace(&format!("/usr/bin/{name}"), &bin(name).display().to_string());
    let path = dir.join(format!("{name}.service"));
    std::fs::write(&path, text).expect("write unit");
    path
}

fn systemd_analyze(args: &[&str], unit: &Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze not found: install systemd (make test does on Debian/Ubuntu)")
}

#[test]
fn units_verify_and_the_agent_unit_exposure_is_at_most_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["b24watch-agent", "b24watch-collector"] {
        let unit = unit_copy(dir.path(), name);
        let out = systemd_analyze(&["verify"], &unit);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&unit).expect("unit");
        for line in ["Type=notify", "RestartPreventExitStatus=78", "ProtectSystem=strict", "NoNewPrivileges=yes"] {
            assert!(text.contains(line), "{name} lacks {line}");
        }
    }
    // --threshold is the exposure level times ten.
    let agent = unit_copy(dir.path(), "b24watch-agent");
    let out = systemd_analyze(&["security", "--offline=true", "--threshold=30"], &agent);
    assert!(out.status.success(), "agent exposure above 3.0:\n{}", String::from_utf8_lossy(&out.stdout));
    let text = std::fs::read_to_string(&agent).expect("unit");
    assert!(text.contains("ProtectHome=read-only"), "Bitrix lives under /home: read-only, not hidden");
    assert!(text.contains("CapabilityBoundingSet=CAP_DAC_READ_SEARCH"));
}

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(workspace_root().join("deploy/prometheus"))
        .output()
        .expect("promtool not found: run `make test`, which installs the prometheus package")
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests_and_have_runbooks() {
    for args in [
        &["check", "rules", "b24watch.rules.yml"][..],
        &["test", "rules", "b24watch.rules.test.yml"][..],
        &["check", "config", "prometheus.yml"][..],
    ] {
        let out = promtool(args);
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = std::fs::read_to_string(workspace_root().join("deploy/prometheus/b24watch.rules.yml")).expect("rules");
    let runbooks = std::fs::read_to_string(workspace_root().join("docs/runbooks.md")).expect("runbooks");
    let tests =
        std::fs::read_to_string(workspace_root().join("deploy/prometheus/b24watch.rules.test.yml")).expect("tests");
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(alerts.len() >= 9, "{alerts:?}");
    for alert in alerts {
        assert!(runbooks.contains(&format!("## {alert}\n")), "docs/runbooks.md lacks a section for {alert}");
        assert!(tests.contains(&format!("alertname: {alert}\n")), "no promtool test for {alert}");
        let anchor = format!("#{}\"", alert.to_ascii_lowercase());
        assert!(rules.contains(&anchor), "{alert} has no runbook_url to {anchor}");
    }
    // Links are absolute, from the collector's [collector] external_url and runbook_url.
    for line in rules.lines().filter(|l| l.trim_start().starts_with("runbook_url:")) {
        assert!(line.contains("Labels.runbook_url"), "runbook_url not from b24watch_collector_links: {line}");
    }
    assert!(!rules.contains("See /api"), "a description names a relative API path");
    // The Alertmanager example (with the inhibit rule a dead agent needs) is valid.
    let out = Command::new("amtool")
        .args(["check-config", "alertmanager.yml"])
        .current_dir(workspace_root().join("deploy/alertmanager"))
        .output()
        .expect("amtool not found: run scripts/install-test-deps.sh (package prometheus-alertmanager)");
    assert!(out.status.success(), "amtool check-config:\n{}", String::from_utf8_lossy(&out.stdout));
    for severity in rules.lines().filter_map(|l| l.trim().strip_prefix("severity: ")) {
        assert!(["critical", "high", "medium", "low"].contains(&severity), "severity {severity} is not SLA vocabulary");
    }
}

/// A real Prometheus scrapes a real collector (fed by a real agent tailing an error log) and
/// evaluates every alert rule: each must evaluate without error.
#[test]
fn real_prometheus_scrapes_the_collector_and_evaluates_every_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "prom");
    let collector = b24watch_e2e::Collector::start(&data, "");
    let log = dir.path().join("error.log");
    std::fs::write(&log, "2024/05/01 10:00:00 [notice] 1#0: started\n").expect("log");
    let config = format!(
        "[logs]\nread_from = \"beginning\"\n[[logs.file]]\nname = \"nginx_error\"\npaths = [\"{}\"]\npreset = \"nginx\"\n",
        log.display()
    );
    let _agent = b24watch_e2e::Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    let rules = workspace_root().join("deploy/prometheus/b24watch.rules.yml");
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [\"{}\"]\nscrape_configs:\n  - job_name: b24watch\n    honor_labels: true\n    static_configs:\n      - targets: [\"{}\"]\n",
            rules.display(),
            collector.http
        ),
    )
    .expect("prometheus config");
    let (_prometheus, addr) = b24watch_e2e::start_prometheus(&prom_config, dir.path());
    b24watch_e2e::eventually("prometheus scraped the agent's series", Duration::from_secs(60), || {
        let (_, body) = b24watch_e2e::http_get(addr, "/api/v1/query?query=b24watch_log_errors_total").ok()?;
        body.contains("nginx_error").then_some(())
    });
    // Counters must be seen at 0 before they move, or increase() cannot see the first step.
    std::thread::sleep(Duration::from_secs(3));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"2024/05/01 10:00:05 [emerg] 1#0: no live upstreams\n"))
        .expect("append");
    let rules = b24watch_e2e::eventually(
        "every rule evaluated, the critical one with an alert",
        Duration::from_secs(30),
        || {
            let (_, body) = b24watch_e2e::http_get(addr, "/api/v1/rules").ok()?;
            let json: serde_json::Value = serde_json::from_str(&body).ok()?;
            let rules: Vec<serde_json::Value> = json["data"]["groups"]
                .as_array()?
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let evaluated = rules.iter().all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001")));
            let alerted = rules.iter().any(|r| {
                r["name"] == "B24WatchCriticalLogError" && r["alerts"].as_array().is_some_and(|a| !a.is_empty())
            });
            (evaluated && alerted).then_some(rules)
        },
    );
    assert!(rules.len() >= 9);
    for rule in &rules {
        assert_eq!(rule["health"], "ok", "rule {} failed to evaluate: {}", rule["name"], rule["lastError"]);
    }
    let critical = rules.iter().find(|r| r["name"] == "B24WatchCriticalLogError").expect("rule present");
    assert_eq!(critical["alerts"][0]["labels"]["host"], "prom", "{critical}");

    // Every dashboard query runs on this Prometheus, and names only series that exist.
    let known = b24watch_e2e::receivers::known_series(&collector.metrics());
    let queries = b24watch_e2e::receivers::check_dashboard_queries(addr, "prom", &known);
    let charted: std::collections::BTreeSet<String> = b24watch_e2e::receivers::dashboard_queries()
        .iter()
        .flat_map(|q| {
            q.expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("b24watch_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(queries >= 40, "only {queries} dashboard queries found");
    // Every alert has a panel: one of the series its rule reads is charted on some dashboard
    // (the PHP fatal alert on the Apache/php-fpm logs by a query naming those logs).
    let rules_text =
        std::fs::read_to_string(workspace_root().join("deploy/prometheus/b24watch.rules.yml")).expect("rules");
    let panels_text: String = std::fs::read_dir(workspace_root().join("deploy/grafana/dashboards"))
        .expect("dashboards dir")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("dashboard"))
        .collect();
    for rule in &rules {
        let name = rule["name"].as_str().unwrap_or_default();
        let query = rule["query"].as_str().unwrap_or_default();
        let series: Vec<&str> = query
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("b24watch_"))
            .collect();
        assert!(
            series.iter().any(|s| charted.contains(*s)),
            "alert {name} has no dashboard panel: none of {series:?} is charted"
        );
    }
    assert!(rules_text.contains("log=~\"httpd_error|php_error\""), "the rule's selector changed: update the panel");
    assert!(
        panels_text.contains(r#"log=~\"httpd_error|php_error\",severity=\"high\""#),
        "no panel charts the PHP fatal errors of the Apache/php-fpm logs"
    );
    let (_, cpu) = b24watch_e2e::http_get(addr, "/api/v1/query?query=b24watch_cpu_usage_ratio%7Bhost%3D%22prom%22%7D")
        .expect("query");
    assert!(cpu.contains("\"host\":\"prom\""), "the host dashboard's series has data: {cpu}");
}

fn expect_datagram(socket: &UnixDatagram, want: &str) {
    let mut buf = [0u8; 256];
    let deadline = std::time::Instant::now() + b24watch_e2e::patience(Duration::from_secs(20));
    loop {
        assert!(std::time::Instant::now() < deadline, "no {want} from the service");
        if let Ok(n) = socket.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == want)
        {
            return;
        }
    }
}

#[test]
fn both_binaries_report_ready_and_stopping_to_systemd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "notify");
    let sock_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let grpc = format!("127.0.0.1:{}", b24watch_e2e::free_port());
    let mut cmd = Command::new(bin("b24watch-collector"));
    cmd.arg("--config")
        .arg(dir.path().join("absent.toml"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--grpc-listen")
        .arg(&grpc)
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{}", b24watch_e2e::free_port()))
        .env("NOTIFY_SOCKET", &sock_path);
    let collector = ProcessGuard::spawn("b24watch-collector", cmd, &dir.path().join("collector.log"));
    expect_datagram(&socket, "READY=1");
    let mut cmd = Command::new(bin("b24watch-agent"));
    cmd.arg("--config")
        .arg(dir.path().join("absent.toml"))
        .arg("--collector-url")
        .arg(format!("http://{grpc}"))
        .arg("--token-file")
        .arg(&token)
        .arg("--state-dir")
        .arg(dir.path().join("agent-state"))
        .env("NOTIFY_SOCKET", &sock_path);
    let agent = ProcessGuard::spawn("b24watch-agent", cmd, &dir.path().join("agent.log"));
    expect_datagram(&socket, "READY=1");
    agent.signal(rustix::process::Signal::TERM);
    expect_datagram(&socket, "STOPPING=1");
    collector.signal(rustix::process::Signal::TERM);
    expect_datagram(&socket, "STOPPING=1");
}
