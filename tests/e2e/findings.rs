//! Issue #18 item 7: what the existing Bitrix checks got wrong, each against a real MariaDB (or a
//! real stand-in portal) with the fault laid out as Bitrix writes it.

use std::path::Path;
use std::time::Duration;

use b24watch_e2e::mariadb::{BITRIX_SCHEMA, MariaDb};
use b24watch_e2e::portal::Portal;
use b24watch_e2e::{Agent, Collector, enroll, eventually, metric};

/// A BitrixVM-shaped default site (`<dir>/www`) whose `.settings.php` logs in as root over the
/// test server's socket to database `portal`, loaded with `data` on top of the Bitrix schema.
fn portal_site(dir: &Path, db: &MariaDb, data: &str) {
    db.sql(&format!("CREATE DATABASE portal; USE portal; {BITRIX_SCHEMA} {data}"));
    let bitrix = dir.join("www/bitrix");
    std::fs::create_dir_all(&bitrix).expect("site dir");
    std::fs::write(
        bitrix.join(".settings.php"),
        format!(
            "<?php\nreturn array (\n  'connections' => array ('value' => array ('default' => array (\n    \
             'host' => 'localhost:{}',\n    'database' => 'portal',\n    'login' => 'root',\n    'password' => '',\n  \
             ),), 'readonly' => true),\n);\n",
            db.socket.display()
        ),
    )
    .expect("settings");
}

/// Starts a collector and an agent checking the site at `<dir>/www` every 10 s.
fn start(dir: &Path, db: &MariaDb, host: &str, extra: &str) -> (Collector, Agent) {
    let data = dir.join("collector");
    let token = enroll(&data, host);
    let collector = Collector::start(&data, "");
    let config = format!(
        "[logs]\nenabled = false\n[services]\nenabled = false\n[mysql]\nsockets = [\"{sock}\"]\ninterval_secs = 10\n\
         [bitrix]\nsite_roots = [\"{root}/www\"]\ninterval_secs = 10\ntimeout_secs = 3\n{extra}",
        sock = db.socket.display(),
        root = dir.display()
    );
    let agent = Agent::start(dir, &collector.grpc_url(), &token, 1, &config);
    (collector, agent)
}

fn all_checks(collector: &Collector, host: &str) -> String {
    collector.api(&format!("/api/v1/hosts/{host}/checks")).to_string()
}

/// Bullet 3: cron ran seconds ago, one agent is stuck: cron is fine (ok, not high), the stuck
/// agent and the overdue agent are findings of their own.
#[test]
fn a_stuck_agent_is_not_a_stopped_cron() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = MariaDb::start(&dir.path().join("db"));
    portal_site(
        dir.path(),
        &db,
        "INSERT INTO b_agent(MODULE_ID, NAME, ACTIVE, LAST_EXEC, NEXT_EXEC, AGENT_INTERVAL, RUNNING, RETRY_COUNT) VALUES
           ('main', 'CEvent::CleanUpAgent();', 'Y', NOW() - INTERVAL 10 SECOND, NOW() + INTERVAL 50 SECOND, 60, 'N', 0);
         INSERT INTO b_agent(MODULE_ID, NAME, ACTIVE, LAST_EXEC, NEXT_EXEC, DATE_CHECK, AGENT_INTERVAL, RUNNING, RETRY_COUNT) VALUES
           ('search', 'CSearch::ReindexAgent();', 'Y', NOW() - INTERVAL 1 DAY, NOW() - INTERVAL 30 MINUTE,
            NOW() - INTERVAL 20 MINUTE, 60, 'Y', 1);",
    );
    let host = "cron-01";
    let (collector, _agent) = start(dir.path(), &db, host, "");
    let cron = eventually("bitrix_cron", Duration::from_secs(30), || collector.check(host, "bitrix_cron", "default"));
    assert_eq!(cron["status"], "ok", "cron ran 10 s ago: {}", all_checks(&collector, host));
    assert_eq!(
        collector.check_status(host, "bitrix_agents_stuck", "default"),
        Some(("failed".into(), "stuck".into(), "medium".into()))
    );
    assert_eq!(
        collector.check_status(host, "bitrix_agents_overdue", "default"),
        Some(("failed".into(), "overdue".into(), "medium".into())),
        "{}",
        all_checks(&collector, host)
    );
}

/// Bullet 4: mails that failed hours ago (`SUCCESS_EXEC='F'`, never retried) are a series and a
/// finding.
#[test]
fn mails_that_failed_hours_ago_are_a_series_and_a_finding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = MariaDb::start(&dir.path().join("db"));
    portal_site(
        dir.path(),
        &db,
        "INSERT INTO b_agent(MODULE_ID, NAME, ACTIVE, LAST_EXEC, NEXT_EXEC, AGENT_INTERVAL) VALUES
           ('main', 'CEvent::CleanUpAgent();', 'Y', NOW() - INTERVAL 10 SECOND, NOW() + INTERVAL 50 SECOND, 60);
         INSERT INTO b_event(EVENT_NAME, LID, DATE_INSERT, DATE_EXEC, SUCCESS_EXEC) VALUES
           ('NEW_USER', 's1', NOW() - INTERVAL 5 HOUR, NOW() - INTERVAL 5 HOUR, 'F'),
           ('NEW_USER', 's1', NOW() - INTERVAL 4 HOUR, NOW() - INTERVAL 4 HOUR, 'F'),
           ('TASK_REMINDER', 's1', NOW() - INTERVAL 3 HOUR, NOW() - INTERVAL 3 HOUR, 'F'),
           ('NEW_USER', 's1', NOW() - INTERVAL 3 HOUR, NOW() - INTERVAL 3 HOUR, 'Y');",
    );
    let host = "mail-01";
    let (collector, _agent) = start(dir.path(), &db, host, "");
    eventually("bitrix checks", Duration::from_secs(30), || collector.check(host, "bitrix_mail_queue", "default"));
    let body = collector.metrics();
    assert_eq!(
        metric(&body, "b24watch_bitrix_mail_failed", &[("host", host), ("site", "default")]),
        Some(3.0),
        "failed mails still in b_event"
    );
    let failed = collector.check(host, "bitrix_mail_failed", "default").unwrap_or_else(|| {
        panic!("no bitrix_mail_failed check: {}", all_checks(&collector, host));
    });
    assert_eq!((failed["status"].as_str(), failed["severity"].as_str()), (Some("failed"), Some("medium")));
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(message.contains("3 messages"), "{message}");
}

/// Bullet 5: `b_option` has no site checker result, `b_event_log` has its latest failure.
#[test]
fn the_site_checkers_latest_failure_in_the_event_log_is_a_finding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = MariaDb::start(&dir.path().join("db"));
    portal_site(
        dir.path(),
        &db,
        "INSERT INTO b_agent(MODULE_ID, NAME, ACTIVE, LAST_EXEC, NEXT_EXEC, AGENT_INTERVAL) VALUES
           ('main', 'CEvent::CleanUpAgent();', 'Y', NOW() - INTERVAL 10 SECOND, NOW() + INTERVAL 50 SECOND, 60);
         INSERT INTO b_event_log(TIMESTAMP_X, SEVERITY, AUDIT_TYPE_ID, MODULE_ID, ITEM_ID) VALUES
           (NOW() - INTERVAL 2 DAY, 'INFO', 'SITE_CHECKER_SUCCESS', 'main', ''),
           (NOW() - INTERVAL 3 HOUR, 'WARNING', 'SITE_CHECKER_ERROR', 'main', '');",
    );
    let host = "checker-01";
    let (collector, _agent) = start(dir.path(), &db, host, "");
    eventually("bitrix checks", Duration::from_secs(30), || collector.check(host, "bitrix_cron", "default"));
    assert_eq!(
        collector.check_status(host, "bitrix_site_checker", "default"),
        Some(("failed".into(), "site_checker_failed".into(), "low".into())),
        "{}",
        all_checks(&collector, host)
    );
    let body = collector.metrics();
    assert_eq!(metric(&body, "b24watch_bitrix_site_checker_ok", &[("host", host), ("site", "default")]), Some(0.0));
}

/// Bullet 7: MySQL stopped, then started again: `bitrix_db` fails with a sentence (no raw OS
/// error), then reports ok, so its incident closes.
#[test]
fn bitrix_db_reports_ok_again_after_mysql_comes_back_and_says_why_in_a_sentence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = MariaDb::start(&dir.path().join("db"));
    portal_site(
        dir.path(),
        &db,
        "INSERT INTO b_agent(MODULE_ID, NAME, ACTIVE, LAST_EXEC, NEXT_EXEC, AGENT_INTERVAL) VALUES
           ('main', 'CEvent::CleanUpAgent();', 'Y', NOW() - INTERVAL 10 SECOND, NOW() + INTERVAL 50 SECOND, 60);",
    );
    let host = "db-01";
    let (collector, _agent) = start(dir.path(), &db, host, "");
    eventually("bitrix checks", Duration::from_secs(30), || collector.check(host, "bitrix_cron", "default"));
    db.stop();
    let down = eventually("bitrix_db failing", Duration::from_secs(30), || {
        collector.check(host, "bitrix_db", "default").filter(|c| c["status"] == "failed")
    });
    let message = down["message"].as_str().unwrap_or_default().to_owned();
    assert_eq!(down["reason"], "down");
    assert!(
        !message.contains("os error")
            && message.chars().next().is_some_and(char::is_uppercase)
            && message.ends_with('.'),
        "not a sentence a client understands: {message:?}"
    );
    let mysql = collector.check(host, "mysql_up", "mysql").expect("mysql_up");
    let mysql_message = mysql["message"].as_str().unwrap_or_default();
    assert!(!mysql_message.contains("os error"), "{mysql_message:?}");
    db.restart();
    eventually("bitrix_db ok again", Duration::from_secs(40), || {
        collector.check(host, "bitrix_db", "default").filter(|c| c["status"] == "ok")
    });
}

/// Bullet 6: no `[probe]` targets: the discovered site is probed at the URL BitrixVM's nginx
/// serves it under (`server_name`, `listen`, `root` of its vhost in `site_enabled`).
#[test]
fn a_discovered_site_is_probed_without_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = MariaDb::start(&dir.path().join("db"));
    portal_site(dir.path(), &db, "");
    let portal = Portal::start(None);
    let nginx = dir.path().join("nginx/site_enabled");
    std::fs::create_dir_all(&nginx).expect("nginx dir");
    // As roles/web/templates/nginx/http_site_template.conf.j2 lays a site out (trimmed).
    std::fs::write(
        nginx.join("bx_ext_portal.example.com.conf"),
        format!(
            "# Ansible managed\nserver {{\n\tlisten {port};\n\tserver_name portal.example.com www.portal.example.com;\n\t\
             server_name_in_redirect off;\n\taccess_log /var/log/nginx/portal_access.log main;\n\t\
             error_log  /var/log/nginx/portal_error.log warn;\n\tset $docroot\t\t\"{root}\";\n\t\
             root \"{root}\";\n\tinclude bx/conf/bitrix.conf;\n}}\n",
            port = portal.addr.port(),
            root = dir.path().join("www").display()
        ),
    )
    .expect("vhost");
    let host = "zero-01";
    let extra = format!("[probe]\ninterval_secs = 5\nnginx_site_dirs = [\"{}\"]\n", nginx.display());
    let (collector, _agent) = start(dir.path(), &db, host, &extra);
    let url = format!("http://portal.example.com:{}/", portal.addr.port());
    let probe = eventually("derived probe", Duration::from_secs(30), || collector.check(host, "portal_probe", &url));
    assert_eq!((probe["status"].as_str(), probe["severity"].as_str()), (Some("ok"), Some("critical")), "{probe}");
}
