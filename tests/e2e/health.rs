//! Issue #4: MySQL and Bitrix health against a real MariaDB of the test's own.

use std::path::Path;
use std::time::{Duration, Instant};

use b24watch_e2e::mariadb::{BITRIX_SCHEMA, MariaDb};
use b24watch_e2e::{Agent, Collector, enroll, eventually, metric};

const MONITOR_PASSWORD: &str = "m0n!t{or+[pw'";

/// A least-privilege monitoring user, as the README tells users to create it.
fn create_monitor_user(db: &MariaDb) {
    db.sql(&format!(
        "CREATE USER 'b24watch'@'localhost' IDENTIFIED BY '{}' WITH MAX_USER_CONNECTIONS 3;
         GRANT PROCESS, REPLICATION CLIENT, SELECT ON *.* TO 'b24watch'@'localhost';",
        MONITOR_PASSWORD.replace('\'', "\\'")
    ));
}

fn mysql_config(dir: &Path, db: &MariaDb, interval: u64, timeout: u64) -> String {
    let password_file = dir.join("mysql.password");
    std::fs::write(&password_file, format!("{MONITOR_PASSWORD}\n")).expect("password file");
    format!(
        "[logs]\nenabled = false\n[services]\nenabled = false\n[mysql]\nsockets = [\"{}\"]\nuser = \"b24watch\"\n\
         password_file = \"{}\"\ninterval_secs = {interval}\ntimeout_secs = {timeout}\n",
        db.socket.display(),
        password_file.display()
    )
}

/// Bitrix databases: `sitemanager` with every problem, `healthy` without any.
fn load_bitrix(db: &MariaDb) {
    for name in ["sitemanager", "healthy"] {
        db.sql(&format!("CREATE DATABASE {name}; USE {name}; {BITRIX_SCHEMA}"));
    }
    db.sql(
        "USE sitemanager;
         INSERT INTO b_agent(MODULE_ID, NAME, ACTIVE, LAST_EXEC, NEXT_EXEC, AGENT_INTERVAL, RUNNING, RETRY_COUNT) VALUES
           ('main', 'CEvent::CleanUpAgent();', 'Y', NOW() - INTERVAL 2 HOUR, NOW() - INTERVAL 2 HOUR, 60, 'N', 0),
           ('crm', '\\\\Bitrix\\\\Crm\\\\Agent::run();', 'Y', NOW() - INTERVAL 2 HOUR, NOW() - INTERVAL 90 MINUTE, 60, 'N', 0),
           ('im', 'CIMMail::MailMessageAgent();', 'Y', NOW() - INTERVAL 2 HOUR, NOW() - INTERVAL 1 HOUR, 600, 'N', 0),
           ('main', 'CSiteCheckerTest::CommonTest();', 'Y', NOW() - INTERVAL 3 HOUR, NOW() + INTERVAL 1 HOUR, 86400, 'N', 0);
         -- stuck: picked up 30 min ago, lease (DATE_CHECK) expired, not yet due again
         INSERT INTO b_agent(MODULE_ID, NAME, ACTIVE, LAST_EXEC, NEXT_EXEC, DATE_CHECK, RUNNING, RETRY_COUNT) VALUES
           ('search', 'CSearch::ReindexAgent();', 'Y', NOW() - INTERVAL 1 DAY, NOW() + INTERVAL 1 HOUR, NOW() - INTERVAL 20 MINUTE, 'Y', 1);
         -- auto-disabled by Bitrix after 3 failures (keeps RUNNING='Y')
         INSERT INTO b_agent(MODULE_ID, NAME, ACTIVE, LAST_EXEC, NEXT_EXEC, DATE_CHECK, RUNNING, RETRY_COUNT) VALUES
           ('sale', 'CSaleRecurring::AgentCheckRecurring();', 'N', NOW() - INTERVAL 2 DAY, NOW() - INTERVAL 2 DAY, NOW() - INTERVAL 2 DAY, 'Y', 3);
         INSERT INTO b_event(EVENT_NAME, LID, DATE_INSERT, SUCCESS_EXEC)
           SELECT 'NEW_USER', 's1', NOW() - INTERVAL 3 HOUR, 'N' FROM seq_1_to_150;
         INSERT INTO b_option(MODULE_ID, NAME, VALUE) VALUES ('main', 'site_checker_success', 'N');",
    );
    db.sql(
        "USE healthy;
         INSERT INTO b_agent(MODULE_ID, NAME, ACTIVE, LAST_EXEC, NEXT_EXEC, AGENT_INTERVAL, RUNNING, RETRY_COUNT) VALUES
           ('main', 'CEvent::CleanUpAgent();', 'Y', NOW() - INTERVAL 30 SECOND, NOW() + INTERVAL 30 SECOND, 60, 'N', 0),
           ('main', 'CUser::CleanUpHitAuthAgent();', 'Y', NOW() - INTERVAL 5 MINUTE, NOW() + INTERVAL 1 DAY, 86400, 'N', 0);
         INSERT INTO b_event(EVENT_NAME, LID, DATE_INSERT, DATE_EXEC, SUCCESS_EXEC) VALUES
           ('NEW_USER', 's1', NOW() - INTERVAL 2 MINUTE, NOW() - INTERVAL 1 MINUTE, 'Y');
         INSERT INTO b_option(MODULE_ID, NAME, VALUE) VALUES ('main', 'site_checker_success', 'Y');
         INSERT INTO b_event_log(TIMESTAMP_X, SEVERITY, AUDIT_TYPE_ID, MODULE_ID, ITEM_ID) VALUES
           (NOW() - INTERVAL 2 DAY, 'INFO', 'SITE_CHECKER_ERROR', 'main', ''),
           (NOW() - INTERVAL 5 HOUR, 'INFO', 'SITE_CHECKER_SUCCESS', 'main', '');",
    );
}

/// Document roots shaped like BitrixVM: the default site with `.settings.php` (its own login
/// is unused: the [mysql] user wins), an extra site with an old `dbconn.php`.
fn write_sites(dir: &Path, db: &MariaDb) {
    let default = dir.join("sites/www/bitrix");
    std::fs::create_dir_all(&default).expect("site dir");
    std::fs::write(
        default.join(".settings.php"),
        format!(
            "<?php\nreturn array (\n  'connections' => array ('value' => array ('default' => array (\n    \
             'className' => '\\\\Bitrix\\\\Main\\\\DB\\\\MysqliConnection',\n    'host' => 'localhost:{}',\n    \
             'database' => 'sitemanager',\n    'login' => 'bitrix0',\n    'password' => 'site-secret-1',\n    \
             'options' => 2,\n  ),), 'readonly' => true),\n  'exception_handling' => array('value' => array(\n    \
             'log' => array('settings' => array('file' => '{}/exceptions.log', 'log_size' => 1000000)))),\n);\n",
            db.socket.display(),
            dir.display()
        ),
    )
    .expect("settings");
    let old = dir.join("sites/ext_www/healthy.example.com/bitrix/php_interface");
    std::fs::create_dir_all(&old).expect("site dir");
    std::fs::write(
        old.join("dbconn.php"),
        "<?\n$DBType = \"mysql\";\n$DBHost = \"localhost\";\n$DBLogin = 'bitrix1';\n$DBPassword = \"site-secret-2\";\n\
         $DBName = \"healthy\";\ndefine(\"BX_CRONTAB_SUPPORT\", true);\n?>",
    )
    .expect("dbconn");
    // Not a site: no settings file.
    std::fs::create_dir_all(dir.join("sites/ext_www/static.example.com")).expect("dir");
}

/// Acceptance 1 and 4: cron stopped, a stuck agent, an auto-disabled agent and a mail backlog
/// are each found with their severity; the healthy site and the server pass every check with
/// only PROCESS, REPLICATION CLIENT and SELECT; the monitoring user cannot write.
#[test]
fn bitrix_problems_are_found_with_their_severity_and_a_healthy_site_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = MariaDb::start(&dir.path().join("db"));
    load_bitrix(&db);
    create_monitor_user(&db);
    write_sites(dir.path(), &db);
    let data = dir.path().join("collector");
    let token = enroll(&data, "bx-01");
    let collector = Collector::start(&data, "");
    let config = format!(
        "{}[bitrix]\nsite_roots = [\"{root}/sites/www\", \"{root}/sites/ext_www/*\"]\ninterval_secs = 10\n",
        mysql_config(dir.path(), &db, 2, 5),
        root = dir.path().display()
    );
    let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    let host = "bx-01";
    eventually("Bitrix checks of both sites", Duration::from_secs(30), || {
        collector.check_status(host, "bitrix_cron", "healthy.example.com")?;
        collector.check_status(host, "bitrix_cron", "default")
    });
    let expect = |name: &str, target: &str, status: &str, reason: &str, severity: &str| {
        let got = collector.check_status(host, name, target);
        assert_eq!(
            got,
            Some((status.to_owned(), reason.to_owned(), severity.to_owned())),
            "{name} on {target}; all checks: {}",
            collector.api(&format!("/api/v1/hosts/{host}/checks"))
        );
    };
    // Agents due and none run for 2 hours: cron has stopped; the overdue agents are their own finding.
    expect("bitrix_cron", "default", "failed", "cron_stopped", "high");
    expect("bitrix_agents_overdue", "default", "failed", "overdue", "medium");
    expect("bitrix_agents_stuck", "default", "failed", "stuck", "medium");
    expect("bitrix_agents_disabled", "default", "failed", "auto_disabled", "medium");
    expect("bitrix_mail_queue", "default", "failed", "backlog", "medium");
    expect("bitrix_site_checker", "default", "failed", "site_checker_failed", "low");
    for name in [
        "bitrix_db",
        "bitrix_cron",
        "bitrix_agents_overdue",
        "bitrix_agents_stuck",
        "bitrix_agents_disabled",
        "bitrix_agents_failing",
        "bitrix_mail_queue",
        "bitrix_mail_failed",
        "bitrix_site_checker",
    ] {
        expect(
            name,
            "healthy.example.com",
            "ok",
            "",
            collector.check(host, name, "healthy.example.com").expect("present")["severity"]
                .as_str()
                .unwrap_or_default(),
        );
    }
    expect("mysql_up", "mysql", "ok", "", "high");
    expect("bitrix_db_config", "mysql", "ok", "", "low");
    let failing_server_checks: Vec<serde_json::Value> =
        collector.api(&format!("/api/v1/hosts/{host}/checks"))["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter(|c| c["target"] == "mysql" && c["status"] != "ok")
            .cloned()
            .collect();
    assert!(failing_server_checks.is_empty(), "with the least-privilege grants: {failing_server_checks:?}");

    let body = collector.metrics();
    let site = |s: &'static str| [("host", host), ("site", s)];
    assert_eq!(metric(&body, "b24watch_mysql_up", &[("host", host)]), Some(1.0), "{body}");
    assert!(metric(&body, "b24watch_mysql_threads_connected", &[("host", host)]).is_some_and(|v| v >= 1.0));
    assert_eq!(metric(&body, "b24watch_bitrix_agents_overdue", &site("default")), Some(3.0));
    assert_eq!(metric(&body, "b24watch_bitrix_agents_overdue", &site("healthy.example.com")), Some(0.0));
    assert_eq!(metric(&body, "b24watch_bitrix_mail_queue_pending", &site("default")), Some(150.0));
    let last_run = metric(&body, "b24watch_bitrix_cron_last_run_timestamp_seconds", &site("healthy.example.com"))
        .expect("cron last run");
    let now = b24watch_e2e::now_ms() as f64 / 1000.0;
    assert!((now - 120.0..=now + 5.0).contains(&last_run), "last run {last_run} vs now {now}");
    let checked =
        metric(&body, "b24watch_bitrix_site_checker_last_run_timestamp_seconds", &site("healthy.example.com"))
            .expect("site checker last run");
    assert!((checked - (now - 5.0 * 3600.0)).abs() < 120.0, "site checker ran 5 h ago: {checked} vs {now}");
    b24watch_e2e::promtool_check_metrics(&body).expect("promtool accepts the exposition");

    // Config drift is noticed (and is a low-severity finding).
    db.sql("SET GLOBAL innodb_strict_mode = ON");
    eventually("config drift reported", Duration::from_secs(15), || {
        let (status, reason, severity) = collector.check_status(host, "bitrix_db_config", "mysql")?;
        (status == "failed").then(|| assert_eq!((reason.as_str(), severity.as_str()), ("config_drift", "low")))
    });

    // The monitoring user can read but not write.
    let denied = |sql: &str| {
        let err = db.sql_as("b24watch", MONITOR_PASSWORD, sql).expect_err("write must be refused");
        assert!(err.contains("denied"), "{sql}: {err}");
    };
    denied("INSERT INTO sitemanager.b_option(MODULE_ID, NAME, VALUE) VALUES ('x', 'y', 'z')");
    denied("CREATE TABLE sitemanager.b_b24watch_probe (id int)");
    denied("UPDATE healthy.b_agent SET ACTIVE = 'N'");
    let log = agent.process.log_text();
    for secret in [MONITOR_PASSWORD, "site-secret-1", "site-secret-2"] {
        assert!(!log.contains(secret), "the agent log shows a password");
    }
    let exposition = collector.metrics();
    assert!(!exposition.contains("site-secret"), "a password reached /metrics");
}

/// Acceptance 2 (T35–T37): MariaDB stopped, frozen and given a wrong password: three distinct
/// reasons, each within a few intervals; host sampling goes on; recovery is noticed.
#[test]
fn mysql_down_stalled_and_refusing_are_distinct_and_host_sampling_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = MariaDb::start(&dir.path().join("db"));
    create_monitor_user(&db);
    let data = dir.path().join("collector");
    let token = enroll(&data, "db-01");
    let collector = Collector::start(&data, "");
    let config = format!("{}[bitrix]\nenabled = false\n", mysql_config(dir.path(), &db, 1, 2));
    let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    let host = "db-01";
    let mysql_up = || collector.check_status(host, "mysql_up", "mysql");
    let wait_for = |what: &str, status: &str, reason: &str| -> Duration {
        let started = Instant::now();
        eventually(what, Duration::from_secs(15), || {
            mysql_up().filter(|(s, r, _)| s == status && r == reason).map(|_| ())
        });
        started.elapsed()
    };
    wait_for("mysql up", "ok", "");

    db.stop();
    let took = wait_for("mysql down", "failed", "down");
    assert_eq!(metric(&collector.metrics(), "b24watch_mysql_up", &[("host", host)]), Some(0.0));
    let before = collector.points(host, "load1").len();
    std::thread::sleep(Duration::from_secs(3));
    assert!(collector.points(host, "load1").len() >= before + 2, "host sampling stalled while MySQL was down");
    eprintln!("down noticed after {took:?}");
    db.restart();
    wait_for("mysql back after restart", "ok", "");

    db.pause(true);
    let took = wait_for("mysql stalled", "failed", "timeout");
    let before = collector.points(host, "load1").len();
    std::thread::sleep(Duration::from_secs(4));
    let during = collector.points(host, "load1").len() - before;
    db.pause(false);
    assert!(during >= 3, "only {during} host samples in 4 s while MySQL was frozen");
    eprintln!("stall noticed after {took:?}");
    wait_for("mysql back after the stall", "ok", "");
    // At most 3 monitoring connections at any time (MAX_USER_CONNECTIONS would refuse a 4th,
    // which would show as too_many_connections).
    let history: String = b24watch_e2e::integrity_check(&collector.db_path());
    assert_eq!(history, "ok");

    std::fs::write(dir.path().join("mysql.password"), "wrong-password\n").expect("password file");
    let took = wait_for("wrong password", "failed", "auth_failed");
    eprintln!("auth failure noticed after {took:?}");
    std::fs::write(dir.path().join("mysql.password"), format!("{MONITOR_PASSWORD}\n")).expect("password file");
    wait_for("mysql back with the right password", "ok", "");

    let failures = collector.metrics();
    for reason in ["down", "timeout", "auth_failed"] {
        assert!(
            metric(&failures, "b24watch_mysql_check_failures_total", &[("host", host), ("reason", reason)])
                .is_some_and(|n| n >= 1.0),
            "no {reason} counted: {failures}"
        );
    }
    // Reported from 0 like every known reason, and never counted.
    assert_eq!(
        metric(&failures, "b24watch_mysql_check_failures_total", &[("host", host), ("reason", "too_many_connections")]),
        Some(0.0),
        "more than 3 monitoring connections were open at once"
    );
    let log = agent.process.log_text();
    assert!(!log.contains(MONITOR_PASSWORD) && !log.contains("wrong-password"), "a password reached the log");
}
