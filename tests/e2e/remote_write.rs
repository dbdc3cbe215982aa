//! Remote write (issue #17): every stored sample, backfill included, reaches real receivers
//! (Debian's Prometheus with its remote-write receiver, VictoriaMetrics) at its own timestamp,
//! through receiver outages, refusals and `kill -9` of the collector; one target down holds back
//! neither ingest nor another target.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use b24watch_e2e::proxy::Proxy;
use b24watch_e2e::receivers::{
    RefusingProxy, check_dashboard_queries, raw_points, raw_samples, start_prometheus_receiver, start_victoria_metrics,
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
/// window) has the backfilled minute at the original timestamps, `query_range` shows no hole; the
/// shipped dashboards' queries run on the data it received.
#[test]
fn backfilled_minute_reaches_prometheus_at_its_original_timestamps_and_dashboards_work_on_it() {
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
    // The dashboards, pointed at the receiver fed by remote write.
    let mut known: BTreeSet<String> =
        b24watch_proto::catalog::SERIES.iter().map(|d| format!("b24watch_{}", d.name)).collect();
    for line in collector.metrics().lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            known.insert(rest.split_whitespace().next().unwrap_or_default().to_owned());
        }
    }
    assert!(check_dashboard_queries(prom, "rw-backfill", &known) >= 40);
    let (_, cpu) = b24watch_e2e::http_get(
        prom,
        &format!(
            "/api/v1/query?query={}",
            b24watch_e2e::receivers::encode("b24watch_cpu_usage_ratio{host=\"rw-backfill\"}")
        ),
    )
    .expect("query");
    assert!(cpu.contains("\"host\":\"rw-backfill\""), "the host dashboard's series has data: {cpu}");
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
