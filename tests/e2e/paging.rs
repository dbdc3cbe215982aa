//! Issue #19, paging: the shipped rules and Alertmanager example with a real Prometheus and a real
//! Alertmanager paging a webhook. Only the delays are shortened (rendered rules file, 1 s intervals);
//! the expressions, labels and inhibit rule are the shipped ones.

use std::path::Path;
use std::time::{Duration, Instant};

use b24watch_e2e::portal::Portal;
use b24watch_e2e::{
    Agent, Collector, Webhook, enroll, eventually, http_get, metric, start_alertmanager, start_prometheus,
    workspace_root,
};

/// The agent-down delay of the test rules, seconds (shipped: 300).
const AGENT_DOWN_SECS: f64 = 20.0;

/// Replaces `from` by `to` in `text`, which must hold it: the shipped file changed otherwise.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "shipped file no longer has {from:?}");
    text.replace(from, to)
}

/// The shipped rules with test delays: agent down after 20 s, `for:` of 2 minutes as 3 s.
fn test_rules(dir: &Path) -> std::path::PathBuf {
    let shipped =
        std::fs::read_to_string(workspace_root().join("deploy/prometheus/b24watch.rules.yml")).expect("rules");
    let rules = replaced(
        &shipped,
        "time() - b24watch_agent_last_seen_timestamp_seconds > 300",
        "time() - b24watch_agent_last_seen_timestamp_seconds > 20",
    );
    let rules = replaced(&rules, "for: 2m", "for: 3s");
    let path = dir.join("b24watch.rules.yml");
    std::fs::write(&path, rules).expect("write rules");
    path
}

/// The shipped Alertmanager example with 1 s grouping and the webhook as both receivers.
fn test_alertmanager(dir: &Path, webhook: &Webhook) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(workspace_root().join("deploy/alertmanager/alertmanager.yml"))
        .expect("alertmanager example");
    let config = replaced(&shipped, "group_wait: 30s", "group_wait: 1s");
    let config = replaced(&config, "group_interval: 5m", "group_interval: 1s");
    let config = replaced(&config, "http://127.0.0.1:9095", &format!("http://{}", webhook.addr));
    let path = dir.join("alertmanager.yml");
    std::fs::write(&path, config).expect("write alertmanager config");
    path
}

fn firing_in_prometheus(prometheus: std::net::SocketAddr, alertname: &str, host: &str) -> bool {
    let Ok((_, body)) = http_get(prometheus, "/api/v1/alerts") else { return false };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else { return false };
    json["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["labels"]["alertname"] == alertname && a["labels"]["host"] == host && a["state"] == "firing")
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("append to the exception log");
}

/// An agent killed while its host's portal-down and MySQL-down alerts fire: neither resolves, the
/// agent-down page arrives within its stated delay of the last batch and holds them; after a
/// restart, the first burst of PHP fatals fires its alert.
#[test]
fn a_dead_agent_holds_its_host_alerts_and_pages_within_its_delay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let portal = Portal::start(None);
    portal.set_status(502);
    let data = dir.path().join("collector");
    let host = "web-pg";
    let token = enroll(&data, host);
    let collector = Collector::start(&data, "[collector]\nagent_timeout_secs = 10\n");
    let exceptions = dir.path().join("exceptions.log");
    std::fs::write(&exceptions, "").expect("exception log");
    let portal_url = format!("http://127.0.0.1:{}/", portal.addr.port());
    let agent_config = format!(
        "[services]\nenabled = false\n[bitrix]\nenabled = false\n\
         [mysql]\nsockets = [\"{}\"]\nuser = \"b24watch\"\ninterval_secs = 2\ntimeout_secs = 1\n\
         [probe]\ninterval_secs = 5\ntimeout_secs = 2\ntargets = [{{ url = \"{portal_url}\" }}]\n\
         [[logs.file]]\nname = \"bitrix_exceptions\"\npaths = [\"{}\"]\npreset = \"bitrix_exceptions\"\n",
        dir.path().join("no-such-mysqld.sock").display(),
        exceptions.display()
    );
    let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &agent_config);

    let webhook = Webhook::start();
    let (_alertmanager, am) = start_alertmanager(&test_alertmanager(dir.path(), &webhook), dir.path());
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [\"{}\"]\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{am}\"]\n\
             scrape_configs:\n  - job_name: b24watch\n    honor_labels: true\n    static_configs:\n      - targets: [\"{}\"]\n",
            test_rules(dir.path()).display(),
            collector.http
        ),
    )
    .expect("prometheus config");
    let (_prometheus, prometheus) = start_prometheus(&prom_config, dir.path());

    // Two host alerts page.
    eventually("portal-down and MySQL-down paged", Duration::from_secs(60), || {
        let portal = webhook.find("B24WatchPortalDown", host, "firing");
        let mysql = webhook.find("B24WatchMysqlDown", host, "firing");
        (!portal.is_empty() && !mysql.is_empty()).then_some(())
    });
    let portal_page = &webhook.find("B24WatchPortalDown", host, "firing")[0];
    let description = portal_page.annotations["description"].as_str().unwrap_or_default();
    assert!(description.contains("the portal answers HTTP 502"), "the page says why: {description}");
    assert!(
        description.contains(&format!("{}/api/v1/hosts/{host}/checks", collector_url(&collector))),
        "absolute link to the checks: {description}"
    );
    let runbook = portal_page.annotations["runbook_url"].as_str().unwrap_or_default();
    assert_eq!(runbook, format!("{}/runbooks#b24watchportaldown", collector_url(&collector)));
    let (status, page) = http_get(collector.http, "/runbooks").expect("runbooks page");
    assert_eq!(status, 200);
    assert!(page.contains("id=\"b24watchportaldown\""), "the runbook link opens its section");

    // The agent dies.
    agent.process.kill();
    let killed = Instant::now();
    let body = collector.metrics();
    let last_seen = metric(&body, "b24watch_agent_last_seen_timestamp_seconds", &[("host", host)]).expect("last seen");
    let last_seen_ago = b24watch_e2e::now_ms() as f64 / 1000.0 - last_seen;

    // The agent-down page arrives within its delay of the last batch (plus an evaluation, a
    // scrape and Alertmanager's group_wait of 1 s each, and some slack for a loaded machine).
    let page = eventually("agent-down paged", Duration::from_secs(60), || {
        webhook.find("B24WatchAgentDown", host, "firing").into_iter().next()
    });
    let silent = last_seen_ago + page.at.duration_since(killed).as_secs_f64();
    assert!(
        (AGENT_DOWN_SECS..AGENT_DOWN_SECS + 8.0).contains(&silent),
        "agent-down paged {silent:.1} s after the last batch, stated delay {AGENT_DOWN_SECS} s"
    );
    // Past the collector's agent timeout (10 s) and the agent-down page: the host alerts still
    // fire in Prometheus, and Alertmanager sent no RESOLVED for them.
    std::thread::sleep(Duration::from_secs(5));
    assert!(killed.elapsed() > Duration::from_secs(20));
    for alert in ["B24WatchPortalDown", "B24WatchMysqlDown"] {
        assert!(firing_in_prometheus(prometheus, alert, host), "{alert} stopped firing after the agent died");
        let resolved = webhook.find(alert, host, "resolved");
        let timeline: Vec<String> = webhook
            .pages()
            .iter()
            .map(|p| {
                let at = p.at.checked_duration_since(killed).map_or_else(
                    || format!("-{:.1}", killed.duration_since(p.at).as_secs_f64()),
                    |d| format!("+{:.1}", d.as_secs_f64()),
                );
                format!("{at} s {} {}", p.status, p.labels["alertname"])
            })
            .collect();
        assert!(resolved.is_empty(), "{alert} was resolved by the agent's death; pages since the kill: {timeline:#?}");
    }
    // Alertmanager holds them by the shipped inhibit rule.
    let (_, alerts) = http_get(am, "/api/v2/alerts").expect("alertmanager alerts");
    let alerts: serde_json::Value = serde_json::from_str(&alerts).expect("alerts JSON");
    for alert in ["B24WatchPortalDown", "B24WatchMysqlDown"] {
        let held = alerts.as_array().into_iter().flatten().any(|a| {
            a["labels"]["alertname"] == alert
                && a["labels"]["host"] == host
                && a["status"]["inhibitedBy"].as_array().is_some_and(|by| !by.is_empty())
        });
        assert!(held, "{alert} is not inhibited by the agent-down alert: {alerts}");
    }

    // The agent comes back; counters are exposed from 0 before any record, so the first burst of
    // PHP fatals after the restart is an increase and pages.
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &agent_config);
    eventually("agent-down resolved", Duration::from_secs(60), || {
        (!webhook.find("B24WatchAgentDown", host, "resolved").is_empty()).then_some(())
    });
    eventually("the restarted agent's FATAL counter scraped at 0", Duration::from_secs(30), || {
        let (_, body) = http_get(
            prometheus,
            "/api/v1/query?query=count_over_time(b24watch_bitrix_exceptions_total%7Btype%3D%22FATAL%22%7D%5B5s%5D)",
        )
        .ok()?;
        body.contains(host).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(webhook.find("B24WatchPhpFatalErrors", host, "firing").is_empty(), "no fatal yet");
    let records: String = (0..8)
        .map(|n| format!("2026-11-29 10:00:0{n} - Host: portal.example - FATAL - [Error] Call to undefined function f{n}()\n#0 /home/bitrix/www/local/php_interface/init.php(12)\n"))
        .collect();
    append(&exceptions, &records);
    append(&exceptions, "2026-11-29 10:00:09 - Host: portal.example - CAUGHT_EXCEPTION - [E] end\n");
    let fatal = eventually("PHP fatals paged", Duration::from_secs(40), || {
        webhook.find("B24WatchPhpFatalErrors", host, "firing").into_iter().next()
    });
    assert_eq!(fatal.labels["type"], "FATAL");
    // The host's alerts went on with fresh values: the portal still answers 502.
    assert!(webhook.find("B24WatchPortalDown", host, "resolved").is_empty());
}

/// The collector's external URL as derived in the test (no `external_url` set).
fn collector_url(collector: &Collector) -> String {
    format!("http://{}", collector.http)
}
