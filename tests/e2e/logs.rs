//! Issue #3: error logs reach the collector exactly once through real rotations and kills.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use b24watch_e2e::{Agent, Collector, enroll, eventually, metric};

/// Agent config tailing `path` with `preset`, reading from the beginning, 1 s ticks.
fn agent_config(name: &str, path: &Path, preset: &str) -> String {
    format!(
        "[logs]\nread_from = \"beginning\"\n[[logs.file]]\nname = \"{name}\"\npaths = [\"{}\"]\npreset = \"{preset}\"\n",
        path.display()
    )
}

/// Appends numbered nginx lines at about `per_sec`, one in ten an error, reopening the path
/// for every line (as nginx does after USR1), until `stop`. Returns lines written. With
/// `tagged`, each error line carries its number spelled in letters (`tag=bcd`), which the
/// fingerprint keeps: every error line is then a group of its own.
fn writer(path: PathBuf, per_sec: u64, stop: Arc<AtomicBool>, tagged: bool) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut seq = 0u64;
        let pause = Duration::from_micros(1_000_000 / per_sec);
        while !stop.load(Ordering::Relaxed) {
            let line = if seq.is_multiple_of(10) {
                let tag = if tagged { format!("tag={} ", letters(seq)) } else { String::new() };
                format!(
                    "2024/05/01 10:00:00 [error] 77#0: {tag}*{seq} upstream timed out seq={seq} while reading upstream\n"
                )
            } else {
                format!("2024/05/01 10:00:00 [info] 77#0: *{seq} client closed keepalive seq={seq}\n")
            };
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("open log");
            file.write_all(line.as_bytes()).expect("write log");
            seq += 1;
            std::thread::sleep(pause);
        }
        seq
    })
}

/// `n` in base 26 with the letters a..z (no digits, so fingerprints keep it).
fn letters(mut n: u64) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// Texts of every file of the rotation family of `path` (`app.log`, `app.log.1`, ...).
fn rotation_family(path: &Path) -> Vec<String> {
    let dir = path.parent().expect("dir");
    let name = path.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&name)))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// Tags of the tagged error lines present in the rotation family of `path`.
fn tags_on_disk(path: &Path) -> std::collections::BTreeSet<String> {
    rotation_family(path).iter().flat_map(|text| text.lines().filter_map(tag_of)).collect()
}

fn tag_of(line: &str) -> Option<String> {
    let rest = &line[line.find("tag=")? + 4..];
    Some(rest.split_whitespace().next()?.to_owned())
}

/// Error lines present in every file of the rotation family: the lines that exist anywhere on
/// disk, which the agent must deliver exactly once.
fn error_lines_on_disk(path: &Path) -> u64 {
    rotation_family(path).iter().map(|text| text.matches("[error]").count() as u64).sum()
}

/// A collector with `host` enrolled (its token file), and the path of `logs/app.log` (not
/// created) in a fresh directory.
fn setup(host: &str) -> (tempfile::TempDir, Collector, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, host);
    let collector = Collector::start(&data, "");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    (dir, collector, token, logs.join("app.log"))
}

/// Tags of the tagged error lines of log `app` the collector holds for `host`, asserting that
/// each arrived once: one group per tag, counted 1.
fn delivered_once(collector: &Collector, host: &str) -> std::collections::BTreeSet<String> {
    let body = collector.api(&format!("/api/v1/hosts/{host}/errors?since=0&limit=1000"));
    let mut delivered = std::collections::BTreeSet::new();
    for group in body["groups"].as_array().expect("groups").iter().filter(|g| g["log"] == "app") {
        let tag = tag_of(group["example"].as_str().expect("example")).expect("tagged example");
        assert_eq!(group["count"], 1, "error line tag={tag} delivered more than once: {group}");
        assert!(delivered.insert(tag.clone()), "tag={tag} in two groups");
    }
    delivered
}

fn delivered_errors(collector: &Collector, host: &str, log: &str) -> u64 {
    let body = collector.api(&format!("/api/v1/hosts/{host}/errors?since=0&limit=1000"));
    body["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter(|g| g["log"] == log)
        .map(|g| g["count"].as_u64().expect("count"))
        .sum()
}

fn logrotate(dir: &Path, log: &Path, mode: &str) {
    let conf = dir.join(format!("logrotate-{mode}.conf"));
    std::fs::write(
        &conf,
        format!("{} {{\n    rotate 10\n    {mode}\n    missingok\n    nocompress\n}}\n", log.display()),
    )
    .expect("write logrotate config");
    let logrotate = ["/usr/sbin/logrotate", "/sbin/logrotate"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("logrotate not installed: run `make test`, which installs it");
    let out = std::process::Command::new(logrotate)
        .arg("-f")
        .arg("-s")
        .arg(dir.join("logrotate.state"))
        .arg(&conf)
        .output()
        .expect("run logrotate");
    assert!(out.status.success(), "logrotate {mode}: {}", String::from_utf8_lossy(&out.stderr));
}

/// T15 and T17: a real logrotate with `create` and then `copytruncate` at 1,000 lines/s.
#[test]
fn logrotate_create_and_copytruncate_lose_and_duplicate_no_error_line() {
    let (dir, collector, token, log) = setup("rot");
    let stop = Arc::new(AtomicBool::new(false));
    let handle = writer(log.clone(), 1000, Arc::clone(&stop), true);
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &agent_config("app", &log, "nginx"));
    std::thread::sleep(Duration::from_millis(2500));
    logrotate(dir.path(), &log, "create");
    std::thread::sleep(Duration::from_millis(2500));
    logrotate(dir.path(), &log, "copytruncate");
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    let written = handle.join().expect("writer");
    let on_disk = error_lines_on_disk(&log);
    assert!(
        on_disk >= written / 10 - 2,
        "logrotate itself lost more than its copytruncate window: {on_disk} of {}",
        written / 10
    );
    eventually("every error line on disk delivered", Duration::from_secs(20), || {
        (delivered_errors(&collector, "rot", "app") >= on_disk).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    // Every error line is a group of its own: none may arrive twice, and none that is still on
    // disk may be missing. Lines appended between logrotate's copy and its truncate are in
    // neither file afterwards; the agent may have read them first and rightly delivered them.
    let written_errors = written.div_ceil(10);
    let delivered_tags = delivered_once(&collector, "rot");
    let on_disk_tags = tags_on_disk(&log);
    let missing: Vec<&String> = on_disk_tags.difference(&delivered_tags).collect();
    assert!(missing.is_empty(), "error lines on disk never delivered: {missing:?}");
    let delivered = delivered_tags.len() as u64;
    assert!(delivered <= written_errors, "delivered {delivered} of {written_errors} written");
    let body = collector.metrics();
    let errors = metric(&body, "b24watch_log_errors_total", &[("host", "rot"), ("log", "app"), ("severity", "high")]);
    assert_eq!(errors, Some(delivered as f64));
    assert!(
        metric(&body, "b24watch_log_truncations_total", &[("host", "rot"), ("log", "app")]).is_some_and(|n| n >= 1.0)
    );
}

/// Acceptance 1 and T16 together: logrotate `create` runs while the agent is killed with
/// SIGKILL again and again, sometimes twice while it is down, with the default
/// `read_from = "end"`. The history before the first start is not reported; afterwards every
/// error line on disk arrives exactly once: the rest of a file that rotated out of the pattern
/// while the agent was down (found again as `app.log.1` or `app.log.2`) and all of every file
/// that appeared meanwhile.
#[test]
fn logrotate_while_the_agent_is_killed_and_down_loses_and_duplicates_no_error_line() {
    let (dir, collector, token, log) = setup("down");
    std::fs::write(&log, "2024/05/01 10:00:00 [error] 1#0: tag=history before the agent\n").expect("history");
    let config =
        format!("[logs]\n[[logs.file]]\nname = \"app\"\npaths = [\"{}\"]\npreset = \"nginx\"\n", log.display());
    let lines_seen = || metric(&collector.metrics(), "b24watch_log_lines_total", &[("host", "down"), ("log", "app")]);
    let mut agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    eventually("the agent has read the log once", Duration::from_secs(15), lines_seen);
    let stop = Arc::new(AtomicBool::new(false));
    let handle = writer(log.clone(), 1000, Arc::clone(&stop), true);
    let mut seed = b24watch_e2e::now_ms() as u64 | 1;
    for round in 0..4 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(600 + seed % 600));
        if round == 2 {
            // A rotation while the agent runs, too.
            logrotate(dir.path(), &log, "create");
            std::thread::sleep(Duration::from_millis(500));
        }
        agent.process.kill();
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..(1 + round % 2) {
            logrotate(dir.path(), &log, "create");
            std::thread::sleep(Duration::from_millis(300));
        }
        agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let written = handle.join().expect("writer");
    let on_disk = tags_on_disk(&log);
    assert_eq!(on_disk.len() as u64, written.div_ceil(10) + 1, "logrotate create loses nothing on disk");
    assert!(written.div_ceil(10) < 1000, "more error lines than the errors API lists at once");
    eventually("every error line delivered", Duration::from_secs(30), || {
        (delivered_errors(&collector, "down", "app") >= written.div_ceil(10)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let delivered = delivered_once(&collector, "down");
    assert!(!delivered.contains("history"), "history before the first start is not reported");
    let missing: Vec<&String> = on_disk.iter().filter(|t| *t != "history" && !delivered.contains(*t)).collect();
    assert!(missing.is_empty(), "{} error lines never delivered: {missing:?}", missing.len());
    drop(agent);
}

/// T21: a 10 MiB and a 100 MiB line without newline. Memory stays flat, each is cut and
/// counted once, the lines after them arrive, and an agent killed while skipping the rest of
/// the 100 MiB line does not read it again when it comes back.
#[test]
fn giant_lines_are_cut_once_in_flat_memory_even_across_a_kill() {
    const MAX_LINE: u64 = 16384;
    let (dir, collector, token, log) = setup("giant");
    let append = |bytes: &[u8]| {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open log");
        file.write_all(bytes).expect("write log");
    };
    let giant = |label: &str, mib: usize| {
        let mut line = format!("2024/05/01 10:00:00 [error] 1#0: giant {label} ").into_bytes();
        line.resize(mib << 20, b'x');
        line
    };
    let groups = |collector: &Collector| -> Vec<(String, u64)> {
        let body = collector.api("/api/v1/hosts/giant/errors?since=0&limit=100");
        let mut groups: Vec<(String, u64)> = body["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| {
                let example = g["example"].as_str().expect("example");
                (example.split_whitespace().take(6).collect::<Vec<_>>().join(" "), g["count"].as_u64().expect("count"))
            })
            .collect();
        groups.sort();
        groups
    };
    let long_lines = |collector: &Collector| {
        metric(&collector.metrics(), "b24watch_log_long_lines_total", &[("host", "giant"), ("log", "app")])
    };
    // 10 MiB read per tick: the 100 MiB line takes ten ticks to skip.
    let config =
        agent_config("app", &log, "nginx").replacen("[logs]\n", "[logs]\nmax_read_bytes_per_tick = 10485760\n", 1);
    append(b"2024/05/01 10:00:00 [error] 1#0: warm up\n");
    let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    eventually("the first line", Duration::from_secs(15), || (!groups(&collector).is_empty()).then_some(()));
    std::thread::sleep(Duration::from_secs(2));
    let baseline = agent.process.peak_rss_kib();
    append(&giant("ten", 10));
    append(b"\n2024/05/01 10:00:00 [error] 1#0: after ten\n");
    eventually("the line after the 10 MiB one", Duration::from_secs(20), || {
        groups(&collector).iter().any(|g| g.0.ends_with("after ten")).then_some(())
    });
    assert_eq!(long_lines(&collector), Some(1.0));
    let peak = agent.process.peak_rss_kib();
    eprintln!("agent peak RSS: {baseline} KiB before the 10 MiB line, {peak} KiB after");
    assert!(peak < baseline + MAX_LINE / 1024 + 1024, "peak RSS {peak} KiB after a 10 MiB line, {baseline} KiB before");
    // The 100 MiB line: the agent is killed once it has cut the line and is skipping the rest.
    append(&giant("hundred", 100));
    eventually("the 100 MiB line cut", Duration::from_secs(20), || (long_lines(&collector) == Some(2.0)).then_some(()));
    agent.process.kill();
    append(b"\n2024/05/01 10:00:00 [error] 1#0: after hundred\n");
    let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    eventually("the line after the 100 MiB one", Duration::from_secs(40), || {
        groups(&collector).iter().any(|g| g.0.ends_with("after hundred")).then_some(())
    });
    let names: Vec<(String, u64)> = groups(&collector);
    let expected: Vec<(String, u64)> = [
        "2024/05/01 10:00:00 [error] 1#0: after hundred",
        "2024/05/01 10:00:00 [error] 1#0: after ten",
        "2024/05/01 10:00:00 [error] 1#0: giant hundred",
        "2024/05/01 10:00:00 [error] 1#0: giant ten",
        "2024/05/01 10:00:00 [error] 1#0: warm up",
    ]
    .map(|e| (e.to_owned(), 1))
    .to_vec();
    assert_eq!(names, expected, "every line once, each giant line cut once");
    let body = collector.api("/api/v1/hosts/giant/errors?since=0&limit=100");
    for group in body["groups"].as_array().expect("groups") {
        assert_eq!(group["file"], log.display().to_string(), "each group names the file of its example");
    }
    assert_eq!(long_lines(&collector), Some(0.0), "the restarted agent did not count the rest as a new long line");
    let peak = agent.process.peak_rss_kib();
    eprintln!("restarted agent peak RSS after skipping the 100 MiB line: {peak} KiB");
    assert!(
        peak < baseline + MAX_LINE / 1024 + 1024,
        "peak RSS {peak} KiB after skipping 100 MiB, {baseline} KiB before"
    );
}

/// T09 for logs: the agent killed with SIGKILL again and again while lines are written.
#[test]
fn agent_killed_repeatedly_neither_loses_nor_repeats_error_lines() {
    let (dir, collector, token, log) = setup("kill");
    let stop = Arc::new(AtomicBool::new(false));
    let handle = writer(log.clone(), 1000, Arc::clone(&stop), false);
    let config = agent_config("app", &log, "nginx");
    let mut seed = b24watch_e2e::now_ms() as u64 | 1;
    for _ in 0..8 {
        let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(800 + seed % 1500));
        agent.process.kill();
    }
    stop.store(true, Ordering::Relaxed);
    let written = handle.join().expect("writer");
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    let expected = written.div_ceil(10);
    eventually("every error line delivered", Duration::from_secs(20), || {
        (delivered_errors(&collector, "kill", "app") >= expected).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(delivered_errors(&collector, "kill", "app"), expected);
}

/// Acceptance 4: Bitrix's own rotation (copy to `.old`, truncate in place) loses no record,
/// and records are counted by type.
#[test]
fn bitrix_exception_log_self_rotation_keeps_every_record_counted_by_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "bx");
    let collector = Collector::start(&data, "");
    let logs = dir.path().join("php");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let log = logs.join("exceptions.log");
    let _agent = Agent::start(
        dir.path(),
        &collector.grpc_url(),
        &token,
        1,
        &agent_config("bitrix_exceptions", &log, "bitrix_exceptions"),
    );
    let types = ["UNCAUGHT_EXCEPTION", "FATAL", "CAUGHT_EXCEPTION", "LOW_PRIORITY_ERROR"];
    let mut written = [0u64; 4];
    for idx in 0..400usize {
        let kind = idx % 4;
        let record = format!(
            "2024-05-01 10:00:{:02} - Host: portal.example.com - {} - [Bitrix\\Main\\SystemException] \nCall to undefined method item {idx} (0)\n/home/bitrix/www/bitrix/modules/main/lib/x.php:{idx}\n#0: Bitrix\\Main\\Application->run()\n\t/home/bitrix/www/index.php:5\n----------\n",
            idx % 60,
            types[kind]
        );
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open");
        file.write_all(record.as_bytes()).expect("write");
        drop(file);
        written[kind] += 1;
        // Bitrix: when the file exceeds log_size, copy it to .old and truncate in place.
        if std::fs::metadata(&log).expect("stat").len() > 16_000 {
            std::fs::copy(&log, logs.join("exceptions.log.old")).expect("copy to .old");
            std::fs::OpenOptions::new().write(true).open(&log).expect("open").set_len(0).expect("truncate");
        }
        // About 5 KB per 0.7 s: a rotation every 2 s or so, slower than the agent's 1 s poll.
        // (Bitrix keeps one generation: two rotations within one poll would lose the older
        // copy on disk itself; at the default log_size of 1 MB that takes 100 KB/s.)
        if idx.is_multiple_of(20) {
            std::thread::sleep(Duration::from_millis(700));
        }
    }
    for (kind, count) in types.iter().zip(written) {
        let labels = [("host", "bx"), ("log", "bitrix_exceptions"), ("type", *kind)];
        let last = std::cell::Cell::new(None);
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually(&format!("{kind} counted"), Duration::from_secs(20), || {
                let value = metric(&collector.metrics(), "b24watch_bitrix_exceptions_total", &labels);
                last.set(value);
                (value == Some(count as f64)).then_some(())
            })
        }));
        assert!(found.is_ok(), "{kind}: expected {count}, last seen {:?}", last.get());
    }
    let high = written[0] + written[1];
    let body = collector.metrics();
    let labels = [("host", "bx"), ("log", "bitrix_exceptions"), ("severity", "high")];
    assert_eq!(metric(&body, "b24watch_log_errors_total", &labels), Some(high as f64));
    let groups = collector.api("/api/v1/hosts/bx/errors?since=0");
    let top = &groups["groups"][0];
    assert!(top["example"].as_str().is_some_and(|e| e.contains("Call to undefined method")), "{groups}");
}
