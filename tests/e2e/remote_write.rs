//! Remote write (issue #17): every stored sample, backfill included, reaches real receivers
//! (Debian's Prometheus with its remote-write receiver, VictoriaMetrics) at its own timestamp,
//! through receiver outages, refusals and `kill -9` of the collector; one target down holds back
//! neither ingest nor another target.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use b24watch_e2e::proxy::Proxy;
use b24watch_e2e::receivers::{
    RefusingProxy, dashboard_queries, known_series, raw_points, raw_samples, run_dashboard_query,
    start_prometheus_receiver, start_victoria_metrics,
};
use b24watch_e2e::{Agent, Collector, enroll, eventually, free_port, metric, now_ms};

/// A `[[remote_write]]` table with quick retries (the semantics are those of the defaults).
fn target(name: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        "[[remote_write]]\nname = \"{name}\"\nurl = \"http://{addr}/api/v1/write\"\nmin_backoff_ms = 100\n\
         max_backoff_ms = 1000\npoll_interval_ms = 200\n{extra}\n"
    )
}

/// Stored `load1` points of `host` as `(ts, value)`.
fn stored(collector: &Collector, host: &str) -> BTreeSet<(i64, String)> {
    collector.points(host, "load1").into_iter().map(|(_, ts, v)| (ts, format!("{v}"))).collect()
}

/// The receiver's `load1` samples of `host`, values normalised like [`stored`].
fn received(addr: SocketAddr, host: &str) -> BTreeSet<(i64, String)> {
    raw_samples(addr, &format!("b24watch_load1{{host=\"{host}\"}}"), 2)
        .into_iter()
        .map(|(ts, v)| (ts, format!("{}", v.parse::<f64>().unwrap_or(f64::NAN))))
        .collect()
}

fn counter(collector: &Collector, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(&collector.metrics(), name, labels).unwrap_or(0.0)
}

/// Waits until every stored `load1` point of `host` is on the receiver; returns them.
fn all_arrive(collector: &Collector, receiver: SocketAddr, host: &str, within: Duration) -> BTreeSet<(i64, String)> {
    eventually(&format!("every stored load1 point of {host} on the receiver"), within, || {
        let want = stored(collector, host);
        let got = received(receiver, host);
        (!want.is_empty() && want.is_subset(&got)).then_some(want)
    })
}

/// Agent cut off for 60 s, then backfilled from its spool: the Prometheus receiver (out-of-order
/// window) has the backfilled minute at the original timestamps, `query_range` shows no hole.
#[test]
fn backfilled_minute_reaches_prometheus_at_its_original_timestamps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_prometheus, prom) = start_prometheus_receiver(dir.path());
    let data = dir.path().join("collector");
    let token = enroll(&data, "rw-backfill");
    let collector = Collector::start(&data, &target("prom", prom, "external_labels = { cluster = \"test\" }"));
    let proxy = Proxy::start(collector.grpc);
    let _agent = Agent::start(dir.path(), &format!("http://{}", proxy.addr), &token, 1, "");
    eventually("samples on the receiver", Duration::from_secs(30), || {
        (received(prom, "rw-backfill").len() >= 3).then_some(())
    });
    let cut_at = now_ms();
    proxy.cut();
    std::thread::sleep(Duration::from_secs(60));
    let healed_at = now_ms();
    proxy.restore();
    eventually("the agent backfilled the cut", Duration::from_secs(60), || {
        let points = stored(&collector, "rw-backfill");
        (points.iter().filter(|(ts, _)| (cut_at + 2000..healed_at - 2000).contains(ts)).count() >= 50).then_some(())
    });
    let want = all_arrive(&collector, prom, "rw-backfill", Duration::from_secs(60));
    let got = received(prom, "rw-backfill");
    let in_cut = |set: &BTreeSet<(i64, String)>| set.iter().filter(|(ts, _)| (cut_at..healed_at).contains(ts)).count();
    assert!(in_cut(&got) >= 50, "the backfilled minute on the receiver: {} points", in_cut(&got));
    assert_eq!(in_cut(&got), in_cut(&want), "same points at the same timestamps");
    // query_range over the cut: one sample in every 5 s step (no hole).
    let (start, end) = (cut_at / 1000 + 1, healed_at / 1000 - 1);
    let query = b24watch_e2e::receivers::encode("count_over_time(b24watch_load1{host=\"rw-backfill\"}[5s])");
    let (status, body) =
        b24watch_e2e::http_get(prom, &format!("/api/v1/query_range?query={query}&start={start}&end={end}&step=5"))
            .expect("query_range");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    let values = json["data"]["result"][0]["values"].as_array().cloned().unwrap_or_default();
    assert!(values.len() >= 10, "a value at every step of the cut: {body}");
    assert!(
        values.iter().all(|v| v[1].as_str().and_then(|c| c.parse::<f64>().ok()).is_some_and(|c| c >= 1.0)),
        "{body}"
    );
    let labels = raw_points(prom, "b24watch_load1{host=\"rw-backfill\",cluster=\"test\"}", 1);
    assert!(!labels.is_empty(), "external label on every series");
    let body = collector.metrics();
    assert!(
        metric(&body, "b24watch_collector_remote_write_samples_sent_total", &[("target", "prom")])
            .is_some_and(|n| n > 0.0)
    );
    assert!(
        metric(&body, "b24watch_collector_remote_write_last_success_timestamp_seconds", &[("target", "prom")])
            .is_some_and(|t| t > 1.7e9)
    );
}

/// VictoriaMetrics stopped for 2 minutes: the collector keeps every sample, counts the failures,
/// shows the backlog, and sends everything once the receiver is back.
#[test]
fn receiver_down_two_minutes_then_everything_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (vm, addr) = start_victoria_metrics(dir.path(), port);
    let data = dir.path().join("collector");
    let token = enroll(&data, "rw-down");
    let collector = Collector::start(&data, &target("vm", addr, ""));
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
    all_arrive(&collector, addr, "rw-down", Duration::from_secs(30));
    // Stopped cleanly (VictoriaMetrics flushes what it accepted), down for two minutes.
    vm.terminate(Duration::from_secs(30));
    let down_at = Instant::now();
    let body = eventually("backlog and failures shown", Duration::from_secs(30), || {
        let body = collector.metrics();
        let pending = metric(&body, "b24watch_collector_remote_write_pending_samples", &[("target", "vm")])?;
        let failed = metric(
            &body,
            "b24watch_collector_remote_write_samples_failed_total",
            &[("target", "vm"), ("reason", "network")],
        )?;
        let age = metric(&body, "b24watch_collector_remote_write_oldest_unsent_age_seconds", &[("target", "vm")])?;
        (pending > 0.0 && failed > 0.0 && age > 0.0).then_some(body)
    });
    b24watch_e2e::promtool_check_metrics(&body).unwrap_or_else(|p| panic!("promtool:\n{p}"));
    let (status, page) = b24watch_e2e::http_get(collector.http, "/").expect("status page");
    assert_eq!(status, 200);
    assert!(page.contains("data-target=\"vm\"") && page.contains("retrying"), "{page}");
    std::thread::sleep(Duration::from_secs(120).saturating_sub(down_at.elapsed()));
    let (_vm, addr) = start_victoria_metrics(dir.path(), port);
    let want = all_arrive(&collector, addr, "rw-down", Duration::from_secs(60));
    assert!(want.len() >= 120, "two minutes and more of points: {}", want.len());
    eventually("nothing pending", Duration::from_secs(20), || {
        (counter(&collector, "b24watch_collector_remote_write_pending_samples", &[("target", "vm")]) == 0.0)
            .then_some(())
    });
}

/// A receiver answering 400 to one request: those samples are dropped and counted, the
/// receiver's message is logged, and later samples flow.
#[test]
fn a_refused_request_is_dropped_counted_and_later_samples_flow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_vm, vm) = start_victoria_metrics(dir.path(), free_port());
    let stand_in = RefusingProxy::start(vm, vec![3], "out of bounds: sample too old");
    let data = dir.path().join("collector");
    let token = enroll(&data, "rw-refused");
    let collector = Collector::start(&data, &target("refusing", stand_in.addr, "max_samples_per_send = 20"));
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
    eventually("the third request refused", Duration::from_secs(30), || {
        (stand_in.refused.load(std::sync::atomic::Ordering::SeqCst) == 1).then_some(())
    });
    let labels = [("target", "refusing"), ("reason", "rejected")];
    let dropped = eventually("dropped samples counted", Duration::from_secs(10), || {
        let n = counter(&collector, "b24watch_collector_remote_write_samples_dropped_total", &labels);
        (n > 0.0).then_some(n)
    });
    assert!(dropped <= 20.0, "one request's samples at most: {dropped}");
    let seen = stand_in.requests.load(std::sync::atomic::Ordering::SeqCst);
    eventually("later requests flow", Duration::from_secs(30), || {
        (stand_in.requests.load(std::sync::atomic::Ordering::SeqCst) >= seen + 5).then_some(())
    });
    let log = collector.process.log_text();
    assert!(log.contains("out of bounds: sample too old"), "the receiver's message is logged: {log}");
    // Every sample but the dropped ones is on the receiver.
    let body = collector.metrics();
    let sent =
        metric(&body, "b24watch_collector_remote_write_samples_sent_total", &[("target", "refusing")]).expect("sent");
    assert_eq!(
        counter(&collector, "b24watch_collector_remote_write_samples_dropped_total", &labels),
        dropped,
        "one refusal, counted once"
    );
    assert!(sent > dropped, "{sent} sent");
}

/// A receiver answering 503 twice: the requests are retried (counted as failed with
/// `reason="server_error"`), nothing is dropped, and every stored sample arrives.
#[test]
fn a_server_error_is_retried_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_vm, vm) = start_victoria_metrics(dir.path(), free_port());
    let stand_in = RefusingProxy::start_answering(vm, vec![2, 3], "503 Service Unavailable", "overloaded, try later");
    let data = dir.path().join("collector");
    let token = enroll(&data, "rw-503");
    let collector = Collector::start(&data, &target("busy", stand_in.addr, "max_samples_per_send = 20"));
    let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
    eventually("two requests answered 503", Duration::from_secs(30), || {
        (stand_in.refused.load(std::sync::atomic::Ordering::SeqCst) == 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    agent.process.kill();
    all_arrive(&collector, vm, "rw-503", Duration::from_secs(30));
    let body = collector.metrics();
    let failed = metric(
        &body,
        "b24watch_collector_remote_write_samples_failed_total",
        &[("target", "busy"), ("reason", "server_error")],
    );
    assert!(failed.is_some_and(|n| n > 0.0), "{body}");
    for reason in ["rejected", "invalid_series", "backlog_full"] {
        assert_eq!(
            metric(
                &body,
                "b24watch_collector_remote_write_samples_dropped_total",
                &[("target", "busy"), ("reason", reason)]
            ),
            Some(0.0),
            "{reason}"
        );
    }
}

/// `kill -9` of the collector while it sends, three times: after the last restart every stored
/// sample reaches the receiver (duplicates are at-least-once, and VictoriaMetrics stores a
/// timestamp once).
#[test]
fn collector_killed_while_sending_loses_no_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_vm, vm) = start_victoria_metrics(dir.path(), free_port());
    let data = dir.path().join("collector");
    let token = enroll(&data, "rw-kill");
    // Small requests, so that a kill lands between requests of one read as well as between reads.
    let config = target("vm", vm, "max_samples_per_send = 7");
    let mut collector = Collector::start(&data, &config);
    let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
    for round in 0..3 {
        eventually(&format!("round {round}: sending"), Duration::from_secs(30), || {
            (counter(&collector, "b24watch_collector_remote_write_samples_sent_total", &[("target", "vm")]) > 0.0)
                .then_some(())
        });
        std::thread::sleep(Duration::from_millis(1500 + 700 * round));
        let (grpc, http) = (collector.grpc, collector.http);
        collector.process.kill();
        collector = Collector::start_on(&data, grpc, http, &config);
    }
    std::thread::sleep(Duration::from_secs(3));
    agent.process.kill();
    let want = all_arrive(&collector, vm, "rw-kill", Duration::from_secs(60));
    assert!(want.len() >= 8, "{}", want.len());
    // Every series, not only load1: the receiver has every stored point of memory_total_bytes too.
    let mem: BTreeSet<i64> = collector.points("rw-kill", "memory_total_bytes").into_iter().map(|p| p.1).collect();
    eventually("memory_total_bytes too", Duration::from_secs(30), || {
        let got: BTreeSet<i64> =
            raw_points(vm, "b24watch_memory_total_bytes{host=\"rw-kill\"}", 2).into_iter().map(|p| p.1).collect();
        mem.is_subset(&got).then_some(())
    });
}

/// Two targets, one down (it accepts connections and never answers): the other receives every
/// sample within seconds and ingest goes on at the agent's pace.
#[test]
fn one_target_down_holds_back_neither_ingest_nor_the_other_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_vm, vm) = start_victoria_metrics(dir.path(), free_port());
    // A receiver that hangs: accepts, reads nothing, answers nothing.
    let hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hole_addr = hole.local_addr().expect("addr");
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = std::sync::Arc::clone(&held);
        std::thread::spawn(move || {
            for conn in hole.incoming().flatten() {
                held.lock().expect("held").push(conn);
            }
        });
    }
    let data = dir.path().join("collector");
    let token = enroll(&data, "rw-two");
    let config = format!("{}{}", target("vm", vm, ""), target("hung", hole_addr, "timeout_secs = 2"));
    let collector = Collector::start(&data, &config);
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
    all_arrive(&collector, vm, "rw-two", Duration::from_secs(30));
    let start = now_ms();
    std::thread::sleep(Duration::from_secs(15));
    // Ingest at the agent's pace (1 s), the healthy target current.
    let recent = stored(&collector, "rw-two").into_iter().filter(|(ts, _)| *ts >= start).count();
    assert!(recent >= 12, "ingest went on: {recent} points in 15 s");
    let newest = stored(&collector, "rw-two").into_iter().map(|p| p.0).max().expect("points");
    eventually("the healthy target is current", Duration::from_secs(5), || {
        received(vm, "rw-two").iter().any(|p| p.0 >= newest).then_some(())
    });
    let body = collector.metrics();
    assert_eq!(metric(&body, "b24watch_collector_batches_total", &[("result", "unavailable")]), Some(0.0));
    assert!(
        metric(
            &body,
            "b24watch_collector_remote_write_samples_failed_total",
            &[("target", "hung"), ("reason", "timeout")]
        )
        .is_some_and(|n| n > 0.0),
        "{body}"
    );
    assert!(
        metric(&body, "b24watch_collector_remote_write_pending_samples", &[("target", "hung")])
            .is_some_and(|n| n > 0.0)
    );
    assert_eq!(metric(&body, "b24watch_collector_remote_write_samples_sent_total", &[("target", "hung")]), Some(0.0));
}

/// Panels whose series cannot exist in [`every_dashboard_panel_and_the_agent_down_rule_work_on_remote_write_alone`],
/// with the reason. Everything else must have data.
const NO_DATA_HERE: [(&str, &str); 3] = [
    ("b24watch_mysql_replication_io_running", "the test's MariaDB is not a replica"),
    ("b24watch_mysql_replication_sql_running", "the test's MariaDB is not a replica"),
    ("b24watch_mysql_replication_lag_seconds", "the test's MariaDB is not a replica"),
];

/// The agent's Bitrix site, backups, PHP, status pages and logs, laid out as on a BitrixVM server.
struct Site {
    config: String,
    exceptions: std::path::PathBuf,
    _portals: Vec<b24watch_e2e::portal::Portal>,
}

fn write_site(dir: &std::path::Path, db: &b24watch_e2e::mariadb::MariaDb, portal: SocketAddr) -> Site {
    use b24watch_e2e::portal::Portal;
    db.sql(&format!("CREATE DATABASE sitemanager; USE sitemanager; {}", b24watch_e2e::mariadb::BITRIX_SCHEMA));
    // A table with reclaimable space (most rows deleted).
    db.sql(
        "USE sitemanager;
         CREATE TABLE b_crm_timeline_bloat (ID int NOT NULL PRIMARY KEY, BODY varchar(2000)) ENGINE=MyISAM;
         INSERT INTO b_crm_timeline_bloat SELECT seq, REPEAT('t', 2000) FROM seq_1_to_3000;
         DELETE FROM b_crm_timeline_bloat WHERE ID > 100;",
    );
    // The site checker's latest run, recorded in the event log (the host dashboard's panel).
    db.sql(
        "USE sitemanager;
         INSERT INTO b_event_log(TIMESTAMP_X, SEVERITY, AUDIT_TYPE_ID, MODULE_ID, ITEM_ID) VALUES
           (NOW() - INTERVAL 3 HOUR, 'WARNING', 'SITE_CHECKER_ERROR', 'main', '');",
    );
    let www = dir.join("sites/www");
    let exceptions = dir.join("exceptions.log");
    std::fs::write(&exceptions, "").expect("exception log");
    std::fs::create_dir_all(www.join("bitrix")).expect("site dir");
    std::fs::write(
        www.join("bitrix/.settings.php"),
        format!(
            "<?php\nreturn array (\n  'connections' => array ('value' => array ('default' => array (\n    \
             'className' => '\\\\Bitrix\\\\Main\\\\DB\\\\MysqliConnection',\n    'host' => 'localhost:{}',\n    \
             'database' => 'sitemanager',\n    'login' => 'root',\n    'password' => '',\n    \
             'options' => 2,\n  ),), 'readonly' => true),\n  'exception_handling' => array('value' => array(\n    \
             'log' => array('settings' => array('file' => '{}', 'log_size' => 1000000)))),\n);\n",
            db.socket.display(),
            exceptions.display()
        ),
    )
    .expect("settings");
    let version = www.join("bitrix/modules/main/classes/general/version.php");
    std::fs::create_dir_all(version.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &version,
        "<?\ndefine(\"SM_VERSION\",\"24.100.0\");\ndefine(\"SM_VERSION_DATE\",\"2024-06-01 10:00:00\");\n?>",
    )
    .expect("version.php");
    // Two Bitrix backups (a newest and the one before it).
    for (name, size) in
        [("20240114_031500_full_a1B2c3D4e5F6g7H8.tar.gz", 4000), ("20240115_031500_full_q1W2e3R4t5Y6u7I8.tar.gz", 5000)]
    {
        let path = www.join("bitrix/backup").join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, vec![0x1f; size]).expect("archive");
    }
    let php = dir.join("php");
    std::fs::write(&php, "#!/bin/sh\nprintf 8.2.20\n").expect("php");
    std::fs::set_permissions(&php, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let error_log = dir.join("error.log");
    std::fs::write(&error_log, "2024/05/01 10:00:00 [error] 1#0: upstream timed out\n").expect("error log");
    // A PHP fatal error in PHP's own log (the host dashboard's "PHP fatal errors" panel).
    let php_log = dir.join("php_error.log");
    std::fs::write(
        &php_log,
        "[01-May-2024 10:00:00 UTC] PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted \
         (tried to allocate 20480 bytes) in /home/bitrix/www/bitrix/modules/main/lib/db.php on line 12\n",
    )
    .expect("php error log");
    // An HTTPS portal (the certificate's days left).
    let https = {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("certificate");
        Portal::start(Some((vec![cert.der().to_vec()], key.serialize_der())))
    };
    // nginx stub_status, a PHP-FPM pool's status page and the push server's, each a stand-in.
    let page = |body: &str| {
        let p = Portal::start(None);
        *p.body.lock().expect("body") = body.to_owned();
        p
    };
    let nginx = page(
        "Active connections: 3 \nserver accepts handled requests\n 10 10 25 \nReading: 0 Writing: 1 Waiting: 2 \n",
    );
    let fpm = page(
        "pool:                 www\nprocess manager:      dynamic\nstart time:           01/May/2024:10:00:00 +0000\n\
         start since:          3600\naccepted conn:        100\nlisten queue:         0\nmax listen queue:     0\n\
         listen queue len:     511\nidle processes:       3\nactive processes:     1\ntotal processes:      4\n\
         max active processes: 2\nmax children reached: 0\nslow requests:        0\n",
    );
    let push = page("[]");
    let config = format!(
        "[mysql]\nsockets = [\"{sock}\"]\ninterval_secs = 2\n\
         [bitrix]\nsite_roots = [\"{www}\"]\ninterval_secs = 10\n\
         [probe]\ninterval_secs = 5\ntimeout_secs = 2\ntargets = [{{ url = \"http://{portal}/\" }}, \
         {{ url = \"https://localhost:{https_port}/\", verify_tls = false }}]\n\
         [backup]\ncrontabs = []\n[database]\ntop_tables = 3\n[versions]\nphp_binary = \"{php}\"\n\
         [workers]\ninterval_secs = 5\nnginx_status_url = \"http://{nginx}/\"\napache_status_url = \"\"\n\
         php_fpm_status_urls = [\"http://{fpm}/status\"]\n\
         [push]\ninterval_secs = 5\nstatus_url = \"http://{push}/server-stat\"\n\
         [logs]\nread_from = \"beginning\"\n\
         [[logs.file]]\nname = \"nginx_error\"\npaths = [\"{error_log}\"]\npreset = \"nginx\"\n\
         [[logs.file]]\nname = \"php_error\"\npaths = [\"{php_log}\"]\npreset = \"php\"\n\
         [[logs.file]]\nname = \"bitrix_exceptions\"\npaths = [\"{exceptions}\"]\npreset = \"bitrix_exceptions\"\n",
        sock = db.socket.display(),
        www = www.display(),
        php = php.display(),
        nginx = nginx.addr,
        fpm = fpm.addr,
        push = push.addr,
        error_log = error_log.display(),
        php_log = php_log.display(),
        https_port = https.addr.port(),
        exceptions = exceptions.display(),
    );
    Site { config, exceptions, _portals: vec![nginx, fpm, push, https] }
}

/// Acceptance 4: a Prometheus fed only by remote write (it scrapes nothing) answers every panel
/// query of the shipped dashboards with data, the computed series (liveness, uptime, SLA,
/// incidents, the collector's own and process metrics) included; and the alert rules' key
/// expressions work on it: B24WatchAgentDown fires from the remote-written last-seen time once
/// the agent dies, the SLA rule finds the host whose portal was down, and
/// `b24watch_collector_links` (the alert pages' links) is there.
#[test]
fn every_dashboard_panel_and_the_agent_down_rule_work_on_remote_write_alone() {
    use b24watch_e2e::portal::Portal;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_prometheus, prom) = start_prometheus_receiver(dir.path());
    let db = b24watch_e2e::mariadb::MariaDb::start(&dir.path().join("db"));
    // The portal fails first (an incident, a failure reason, the month's uptime under target).
    let portal = Portal::start(None);
    portal.set_status(502);
    let site = write_site(dir.path(), &db, portal.addr);
    let data = dir.path().join("collector");
    let host = "rw-panels";
    let token = enroll(&data, host);
    let config = format!(
        "[collector]\nagent_timeout_secs = 10\nexternal_url = \"https://watch.example\"\n{}\n\
         [[plan]]\nname = \"premium\"\nsupport_hours = \"24/7\"\n\
         reaction = {{ critical = \"30m\", high = \"1h\", medium = \"4h\", low = \"1s\" }}\n\
         resolution = {{ critical = \"4h\", high = \"8h\", medium = \"24h\", low = \"72h\" }}\n\
         [[client]]\nname = \"acme\"\nplan = \"premium\"\nhosts = [\"{host}\"]\n",
        target("prom", prom, "computed_interval_secs = 1")
    );
    let collector = Collector::start(&data, &config);
    let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &site.config);
    eventually("the portal's failure recorded", Duration::from_secs(30), || {
        let (status, _, _) = collector.check_status(host, "portal_probe", &format!("http://{}/", portal.addr))?;
        (status == "failed").then_some(())
    });
    portal.set_status(200);
    {
        use std::io::Write as _;
        let mut log = std::fs::OpenOptions::new().append(true).open(&site.exceptions).expect("exception log");
        log.write_all(
            b"2024-05-01 10:00:00 - Host: portal.example.com - UNCAUGHT_EXCEPTION - [Bitrix\\Main\\SystemException] \n\
              boom (0)\n/home/bitrix/www/index.php:5\n----------\n",
        )
        .expect("append");
    }
    let known = known_series(&collector.metrics());
    let queries = dashboard_queries();
    assert!(queries.len() >= 40, "only {} dashboard queries", queries.len());
    let excepted =
        |q: &b24watch_e2e::receivers::DashboardQuery| NO_DATA_HERE.iter().any(|(name, _)| q.expr.contains(name));
    let deadline = Instant::now() + b24watch_e2e::patience(Duration::from_secs(120));
    loop {
        let empty: Vec<String> = queries
            .iter()
            .filter(|q| !excepted(q))
            .filter(|q| run_dashboard_query(prom, host, &known, q).is_empty())
            .map(|q| format!("{} / {}: {}", q.file, q.panel, q.expr))
            .collect();
        if empty.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "panels without data on the remote store:\n{}", empty.join("\n"));
        std::thread::sleep(Duration::from_secs(2));
    }
    // The exceptions are exactly what cannot exist here: no excepted panel has data.
    for q in queries.iter().filter(|q| excepted(q)) {
        assert!(
            run_dashboard_query(prom, host, &known, q).is_empty(),
            "{} has data: drop it from NO_DATA_HERE",
            q.expr
        );
    }
    // Nothing was scraped: the collector's own series came by remote write, with no instance.
    let query = |expr: &str| -> Vec<serde_json::Value> {
        let (status, body) =
            b24watch_e2e::http_get(prom, &format!("/api/v1/query?query={}", b24watch_e2e::receivers::encode(expr)))
                .expect("query");
        assert_eq!(status, 200, "{expr}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).expect("json")["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert!(query("count({instance!=\"\"})").is_empty(), "something was scraped");
    let links = query("b24watch_collector_links");
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["metric"]["external_url"], "https://watch.example");

    // The alert rules' expressions, as written in the shipped rules file.
    let rules = std::fs::read_to_string(b24watch_e2e::workspace_root().join("deploy/prometheus/b24watch.rules.yml"))
        .expect("rules");
    let expr_of = |alert: &str| -> String {
        let at = rules.find(&format!("- alert: {alert}\n")).expect("alert in the rules");
        let rest = &rules[at..];
        let expr = &rest[rest.find("expr:").expect("expr") + 5..];
        let end = expr.find("\n        for:").into_iter().chain(expr.find("\n        labels:")).min().expect("end");
        expr[..end].trim().trim_start_matches('|').trim().to_owned()
    };
    let sla = expr_of("B24WatchSlaBelowTarget");
    assert!(
        query(&sla).iter().any(|r| r["metric"]["host"] == host && r["metric"]["signal"] == "portal"),
        "B24WatchSlaBelowTarget's expression finds the host on remote data: {sla}"
    );
    let down = expr_of("B24WatchAgentDown");
    assert_eq!(down, "time() - b24watch_agent_last_seen_timestamp_seconds > 300");
    assert!(query(&down).is_empty(), "the agent reports: no AgentDown");
    assert!(query(&format!("b24watch_agent_up{{host=\"{host}\"}} == 1")).len() == 1);
    let killed = Instant::now();
    agent.process.kill();
    // The same expression with 5 s for 300 s: it fires on the remote-written last-seen time.
    let quick = down.replace("> 300", "> 5");
    let fired = eventually("AgentDown's expression fires on remote data", Duration::from_secs(30), || {
        let r = query(&quick);
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(fired[0]["metric"]["host"], host);
    let since = fired[0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).expect("value");
    assert!(since <= killed.elapsed().as_secs_f64() + 3.0, "measured from the last batch: {since}");
    eventually("agent_up 0 on the remote store (agent timeout 10 s)", Duration::from_secs(30), || {
        (query(&format!("b24watch_agent_up{{host=\"{host}\"}} == 0")).len() == 1).then_some(())
    });
}
