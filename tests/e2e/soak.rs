//! Issue #18, acceptance 2: the agent's memory stays flat while everything it watches moves.
//!
//! One real agent with every check on (MySQL, Bitrix, services, logs, backups, database upkeep,
//! versions, web workers, push server) on short intervals (1 s ticks, the checks on their
//! shortest allowed intervals) against a MariaDB of the test's own, real files and stand-in status
//! pages, for about two and a half minutes while: three logs are written (about 70 lines a second)
//! and one is rotated, MariaDB is stopped and started twice, and new backup archives appear
//! every 15 s. The agent's VmRSS is read from `/proc/<pid>/status` every second.
//!
//! Flatness is judged on the trend, not on exact figures: after a 60 s warm-up (every checker,
//! the 60 s ones included, has run at least once, the log was rotated and MySQL restarted once,
//! so the code of every path is resident), the median RSS of the last 20 samples may exceed the
//! median of the first 20 after warm-up by at most 1 MiB. Why 1 MiB: allocator noise between two
//! medians is a few hundred KiB (malloc keeps freed memory, a MySQL reconnect allocates its
//! buffers again), while a leak of 15 KiB per tick or more (a leaked batch, for example) exceeds
//! it over the ~70 one-second ticks between the two windows. Slower leaks need longer runs.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use b24watch_e2e::mariadb::{BITRIX_SCHEMA, MariaDb};
use b24watch_e2e::{Agent, Collector, enroll, eventually};

/// nginx's documented stub_status example (ngx_http_stub_status_module).
const NGINX_STATUS: &str = "Active connections: 291 \nserver accepts handled requests\n 16630948 16630948 31070465 \nReading: 6 Writing: 179 Waiting: 106 \n";
/// Apache 2.4 `server-status?auto` (mod_status, ExtendedStatus On).
const APACHE_STATUS: &str = "localhost\nServerVersion: Apache/2.4.57\nServerMPM: prefork\nTotal Accesses: 123456\nBusyWorkers: 3\nIdleWorkers: 7\nScoreboard: WWW_______......\n";
/// The push server's `/server-stat/`: one object per process (`Adapter.prototype.getStat` of
/// Bitrix push server 1.0, `lib/adapters/adapter.js`, as published in faew/bitrix-push-server).
const PUSH_STAT: &str = r#"[{"pid":2101,"date":1700000000000,"processUniqueId":"sub-8010","websockets":12,"pollings":3,"channels":14},{"pid":2102,"date":1700000000000,"processUniqueId":"pub-9010","websockets":0,"pollings":0,"channels":0}]"#;

/// Serves the three status pages until `stop`.
fn status_pages(stop: Arc<AtomicBool>) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let handle = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let body = if path.starts_with("/nginx_status") {
                Some(NGINX_STATUS)
            } else if path.starts_with("/server-status") {
                Some(APACHE_STATUS)
            } else if path.starts_with("/server-stat/") {
                Some(PUSH_STAT)
            } else {
                None
            };
            let reply = match body {
                Some(body) => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned(),
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (port, handle)
}

/// Appends to three logs about 30 lines a second until `stop`; rotates the nginx log once
/// (rename, new file) after `rotate_after`.
fn log_writer(dir: &Path, stop: Arc<AtomicBool>, rotate_after: Duration) -> std::thread::JoinHandle<u64> {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut rotated = false;
        let mut n = 0u64;
        let append = |name: &str, text: &str| {
            let mut file =
                std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).expect("open log");
            file.write_all(text.as_bytes()).expect("write log");
        };
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            append(
                "nginx_error.log",
                &format!(
                    "2026/11/29 10:00:00 [info] 1#1: *{n} client closed keepalive connection\n\
                     2026/11/29 10:00:00 [error] 1#1: *{n} open() \"/home/bitrix/www/x{n}.png\" failed (2: No such file or directory)\n"
                ),
            );
            append("httpd_error_log", "[Sun Nov 29 10:00:00.000 2026] [mpm_prefork:notice] [pid 7] AH00163: running\n");
            append(
                "exceptions.log",
                &format!(
                    "2026-11-29 10:00:00 - Host: portal.example.com - UNCAUGHT_EXCEPTION - [Bitrix\\Main\\SystemException] \nrecord {n}\n/home/bitrix/www/bitrix/modules/main/lib/x.php:1\n\t#0: trace\n"
                ),
            );
            if !rotated && started.elapsed() > rotate_after {
                let _ = std::fs::rename(dir.join("nginx_error.log"), dir.join("nginx_error.log.1"));
                rotated = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        n
    })
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Writes a Bitrix backup archive named after `n` into the site's `bitrix/backup/`.
fn new_backup(site: &Path, n: u32) {
    let path = site.join(format!("bitrix/backup/20261129_{n:06}_full_a1B2c3D4e5F6g7H8.tar.gz"));
    std::fs::write(path, vec![0x1f; 50_000 + n as usize]).expect("backup archive");
}

fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

#[test]
fn agent_rss_stays_flat_while_logs_grow_mysql_restarts_and_backups_appear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = MariaDb::start(&dir.path().join("db"));
    db.sql(&format!("CREATE DATABASE sitemanager; USE sitemanager; {BITRIX_SCHEMA}"));
    db.sql(
        "USE sitemanager;
         INSERT INTO b_agent(MODULE_ID, NAME, LAST_EXEC, NEXT_EXEC, RETRY_COUNT)
           SELECT 'main', CONCAT('Agent', seq, '();'), NOW(), NOW() + INTERVAL 1 HOUR, 0 FROM seq_1_to_100;
         INSERT INTO b_event(EVENT_NAME, LID, DATE_INSERT, SUCCESS_EXEC) SELECT 'E', 's1', NOW(), 'Y' FROM seq_1_to_500;",
    );
    let site = dir.path().join("www");
    let conf = site.join("bitrix/php_interface");
    std::fs::create_dir_all(&conf).expect("site dir");
    std::fs::write(
        conf.join("dbconn.php"),
        format!(
            "<?\n$DBType = \"mysql\";\n$DBHost = \"localhost:{}\";\n$DBLogin = 'root';\n$DBPassword = '';\n$DBName = \"sitemanager\";\n?>",
            db.socket.display()
        ),
    )
    .expect("dbconn");
    let version = site.join("bitrix/modules/main/classes/general/version.php");
    std::fs::create_dir_all(version.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &version,
        "<?\ndefine(\"SM_VERSION\",\"25.100.0\");\ndefine(\"SM_VERSION_DATE\",\"2026-11-01 10:00:00\");\n?>",
    )
    .expect("version.php");
    std::fs::create_dir_all(site.join("bitrix/backup")).expect("backup dir");
    new_backup(&site, 0);
    let vm = dir.path().join("backup/archive");
    std::fs::create_dir_all(&vm).expect("vm backup dir");
    std::fs::write(vm.join("www_backup_sitemanager_29.11.2026_a1b2c3d4.tar.gz"), vec![0x1f; 40_000]).expect("vm");
    let crontab = dir.path().join("crontab");
    std::fs::write(&crontab, format!("10 22 * * * bitrix /opt/webdir/bin/bx_backup.sh sitemanager {}\n", vm.display()))
        .expect("crontab");
    let php = dir.path().join("php");
    std::fs::write(&php, "#!/bin/sh\nprintf 8.2.28\n").expect("php");
    std::fs::set_permissions(&php, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");

    let stop = Arc::new(AtomicBool::new(false));
    let (status_port, pages) = status_pages(Arc::clone(&stop));
    // The rotation comes before the end of the warm-up, so its code is resident by then.
    let writer = log_writer(&logs, Arc::clone(&stop), Duration::from_secs(25));

    let data = dir.path().join("collector");
    let token = enroll(&data, "soak-1");
    let collector = Collector::start(&data, "");
    let config = format!(
        "[logs]\nread_from = \"beginning\"\n\
         [[logs.file]]\nname = \"nginx_error\"\npaths = [\"{logs}/nginx_error.log\"]\npreset = \"nginx\"\n\
         [[logs.file]]\nname = \"httpd_error\"\npaths = [\"{logs}/httpd_error_log\"]\npreset = \"httpd\"\n\
         [[logs.file]]\nname = \"bitrix_exceptions\"\npaths = [\"{logs}/exceptions.log\"]\npreset = \"bitrix_exceptions\"\n\
         [mysql]\nsockets = [\"{sock}\"]\ninterval_secs = 1\n\
         [bitrix]\nsite_roots = [\"{site}\"]\ninterval_secs = 10\n\
         [services]\ninterval_secs = 10\n\
         [backup]\ncrontabs = [\"{crontab}\"]\ninterval_secs = 60\n\
         [database]\ninterval_secs = 60\n\
         [versions]\nphp_binary = \"{php}\"\ninterval_secs = 60\n\
         [workers]\nnginx_status_url = \"http://127.0.0.1:{status_port}/nginx_status\"\n\
         apache_status_url = \"http://127.0.0.1:{status_port}/server-status?auto\"\ninterval_secs = 5\n\
         [push]\nstatus_url = \"http://127.0.0.1:{status_port}/server-stat/\"\ninterval_secs = 5\n",
        logs = logs.display(),
        sock = db.socket.display(),
        site = site.display(),
        crontab = crontab.display(),
        php = php.display(),
    );
    let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    let pid = agent.process.pid();

    // Every ~second: one RSS sample; the faults and the new backups at fixed times.
    let started = Instant::now();
    let total = Duration::from_secs(150);
    let warm_up = Duration::from_secs(60);
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let mut events: Vec<(u64, &str)> = Vec::new();
    let (mut stop1, mut start1, mut stop2, mut start2) = (false, false, false, false);
    let mut backups = 1;
    while started.elapsed() < total {
        let t = started.elapsed().as_secs();
        let rss = vm_rss_kib(pid).unwrap_or_else(|| panic!("agent exited; log:\n{}", agent.process.log_text()));
        samples.push((t, rss));
        if t >= 35 && !stop1 {
            db.stop();
            stop1 = true;
            events.push((t, "mysql stopped"));
        } else if t >= 45 && !start1 {
            db.restart();
            start1 = true;
            events.push((started.elapsed().as_secs(), "mysql started"));
        } else if t >= 95 && !stop2 {
            db.stop();
            stop2 = true;
            events.push((t, "mysql stopped"));
        } else if t >= 105 && !start2 {
            db.restart();
            start2 = true;
            events.push((started.elapsed().as_secs(), "mysql started"));
        }
        if t >= u64::from(backups) * 15 {
            new_backup(&site, backups);
            backups += 1;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Ordering::Relaxed);
    let lines = writer.join().expect("log writer");
    pages.join().expect("status pages");

    // Every check family ran and MySQL's recovery was seen (so the soak exercised them).
    let host = "soak-1";
    eventually("bitrix_db ok again after the restarts", Duration::from_secs(30), || {
        (collector.check_status(host, "bitrix_db", "default")?.0 == "ok").then_some(())
    });
    let checks = collector.api(&format!("/api/v1/hosts/{host}/checks"));
    let names: Vec<&str> =
        checks["checks"].as_array().expect("checks").iter().filter_map(|c| c["check"].as_str()).collect();
    for want in [
        "mysql_up",
        "bitrix_cron",
        "service",
        "backup_age",
        "db_engine",
        "bitrix_core_age",
        "php_version",
        "mysql_version",
        "web_workers",
        "push_server",
    ] {
        assert!(names.contains(&want), "{want} never reported; checks: {names:?}");
    }
    assert!(lines > 500, "the log writer wrote {lines} rounds");

    let after: Vec<u64> = samples.iter().filter(|(t, _)| *t >= warm_up.as_secs()).map(|(_, r)| *r).collect();
    assert!(after.len() >= 60, "only {} samples after warm-up", after.len());
    let early = median(&after[..20]);
    let late = median(&after[after.len() - 20..]);
    let trace: Vec<String> = samples.iter().map(|(t, r)| format!("{t}s:{r}")).collect();
    println!(
        "agent VmRSS KiB: warm-up peak {}, after warm-up first-20 median {early}, last-20 median {late}; events {events:?}",
        samples.iter().filter(|(t, _)| *t < warm_up.as_secs()).map(|(_, r)| *r).max().unwrap_or(0)
    );
    assert!(
        late <= early + 1024,
        "agent RSS grew from {early} KiB to {late} KiB after warm-up (tolerance 1 MiB); events {events:?}; samples {}",
        trace.join(" ")
    );
}
