//! Issue #6: uptime from real processes: backfill is not downtime, a dead agent is, the
//! collector's own downtime is unknown, a failing portal is a critical incident.

use std::time::Duration;

use b24watch_e2e::portal::Portal;
use b24watch_e2e::proxy::Proxy;
use b24watch_e2e::{Agent, Collector, browser_dom, enroll, eventually, now_ms};

/// The `agent` (or other) signal of `host` over `[from, now)`: (up, down, unknown, maintenance) ms.
fn signal(collector: &Collector, host: &str, name: &str, from: i64) -> Option<(i64, i64, i64, i64)> {
    let body = collector.api(&format!("/api/v1/uptime?host={host}&from={from}"));
    let signals = body["hosts"][0]["signals"].as_array()?.clone();
    let s = signals.iter().find(|s| s["signal"] == name)?;
    let ms = |k: &str| s[k].as_i64().unwrap_or(-1);
    Some((ms("up_ms"), ms("down_ms"), ms("unknown_ms"), ms("maintenance_ms")))
}

const COLLECTOR: &str = "[collector]\nagent_timeout_secs = 10\n[sla]\nsilence_grace_secs = 60\n";

/// T40 (a): an agent cut off from the collector shows "no data" meanwhile, and after its
/// spool backfills, the time is computed from real samples: no downtime.
#[test]
fn outage_backfilled_from_the_spool_is_not_downtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "cut-01");
    let collector = Collector::start(&data, COLLECTOR);
    let proxy = Proxy::start(collector.grpc);
    let config = "[logs]\nenabled = false\n[mysql]\nenabled = false\n[services]\nenabled = false\n";
    let _agent = Agent::start(dir.path(), &format!("http://{}", proxy.addr), &token, 1, config);
    // A second back, so a query right away still has a window (from < to).
    let t0 = now_ms() - 1_000;
    collector.wait_for_load_points("cut-01", 3);
    proxy.cut();
    std::thread::sleep(Duration::from_secs(25));
    let during = signal(&collector, "cut-01", "agent", t0).expect("agent signal");
    assert_eq!(during.1, 0, "no downtime while the silence is within the grace: {during:?}");
    assert!(during.2 >= 8_000, "the cut shows as unknown (no data): {during:?}");
    let cut_end = now_ms();
    proxy.restore();
    eventually("spool backfilled", Duration::from_secs(30), || {
        let ts = collector.unique_load_ts("cut-01");
        (ts.last().copied().unwrap_or(0) >= cut_end).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let after = signal(&collector, "cut-01", "agent", t0).expect("agent signal");
    assert_eq!(after.1, 0, "backfilled time must not count as down: {after:?}");
    // What stays unknown is the time before the first batch (t0 is a second early), not the cut.
    assert!(after.2 < 3_000, "backfilled time is known now: {after:?}");
    let body = collector.api(&format!("/api/v1/uptime?host=cut-01&from={t0}"));
    let agent =
        body["hosts"][0]["signals"].as_array().expect("signals").iter().find(|s| s["signal"] == "agent").cloned();
    assert_eq!(agent.expect("agent")["availability"], 1.0);
}

/// T40 (b) and the collector's own downtime: agent and collector both stopped, the agent
/// started first (nothing to backfill for that time): unknown, not down. Then the agent
/// dies for good: past the grace its silence counts as down and opens an incident.
#[test]
fn collector_downtime_is_unknown_and_a_dead_agent_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "gone-01");
    let config_text = "[collector]\nagent_timeout_secs = 10\n[sla]\nsilence_grace_secs = 3\n";
    let collector = Collector::start(&data, config_text);
    let (grpc, http) = (collector.grpc, collector.http);
    let agent_config = "[logs]\nenabled = false\n[mysql]\nenabled = false\n[services]\nenabled = false\n";
    let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, agent_config);
    // A second back, so a query right away still has a window (from < to).
    let t0 = now_ms() - 1_000;
    collector.wait_for_load_points("gone-01", 3);
    agent.process.kill();
    collector.process.terminate(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(20));
    let agent = Agent::start(dir.path(), &format!("http://{grpc}"), &token, 1, agent_config);
    std::thread::sleep(Duration::from_secs(2));
    let collector = Collector::start_on(&data, grpc, http, config_text);
    collector.wait_for_load_points("gone-01", 8);
    std::thread::sleep(Duration::from_secs(3));
    let (up, down, unknown, _) = signal(&collector, "gone-01", "agent", t0).expect("agent signal");
    assert_eq!(down, 0, "the collector's downtime is unknown, never down (up {up}, unknown {unknown})");
    assert!(unknown >= 5_000, "unknown {unknown}");

    agent.process.kill();
    let killed = now_ms();
    eventually("dead agent counted as down", Duration::from_secs(40), || {
        let (_, down, _, _) = signal(&collector, "gone-01", "agent", t0)?;
        (down >= 3_000).then_some(())
    });
    let incidents = collector.api(&format!("/api/v1/incidents?host=gone-01&from={t0}"));
    let open: Vec<&serde_json::Value> = incidents["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .filter(|i| i["check"] == "agent" && i["end_ms"].is_null())
        .collect();
    assert_eq!(open.len(), 1, "{incidents}");
    assert_eq!(open[0]["severity"], "high");
    assert!(open[0]["start_ms"].as_i64().expect("start") >= killed, "{incidents}");
    // Uptime metrics are recomputed every 30 s.
    eventually("open incident in /metrics", Duration::from_secs(40), || {
        let metrics = collector.metrics();
        let open =
            b24watch_e2e::metric(&metrics, "b24watch_incidents_open", &[("host", "gone-01"), ("severity", "high")]);
        open.filter(|n| *n >= 1.0)
    });
    let metrics = collector.metrics();
    let ratio = b24watch_e2e::metric(
        &metrics,
        "b24watch_uptime_ratio",
        &[("host", "gone-01"), ("signal", "agent"), ("window", "1d")],
    )
    .expect("uptime ratio exposed");
    assert!(ratio < 1.0 && ratio > 0.0, "{ratio}");
    b24watch_e2e::promtool_check_metrics(&metrics).expect("promtool accepts the exposition");
}

/// A portal answering 502 is a critical incident with the right duration; acknowledgement
/// gives the reaction time; maintenance over it removes the downtime; the report in HTML
/// (seen by Chromium), CSV and JSON agrees with the API, and so does the status page.
#[test]
fn failing_portal_is_a_critical_incident_and_reports_agree_with_the_api() {
    let portal = Portal::start(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "web-01");
    let collector = Collector::start(&data, COLLECTOR);
    let url = format!("http://127.0.0.1:{}/", portal.addr.port());
    let config = format!(
        "[logs]\nenabled = false\n[mysql]\nenabled = false\n[services]\nenabled = false\n[probe]\ninterval_secs = 5\n\
         timeout_secs = 2\ntargets = [{{ url = \"{url}\" }}]\n"
    );
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    // A second back, so a query right away still has a window (from < to).
    let t0 = now_ms() - 1_000;
    eventually("portal up", Duration::from_secs(20), || signal(&collector, "web-01", "portal", t0).filter(|s| s.0 > 0));
    portal.set_status(502);
    let failed_at = now_ms();
    std::thread::sleep(Duration::from_secs(12));
    portal.set_status(200);
    let incident = eventually("incident closed", Duration::from_secs(20), || {
        let body = collector.api(&format!("/api/v1/incidents?host=web-01&from={t0}"));
        body["incidents"].as_array()?.iter().find(|i| i["check"] == "portal_probe" && !i["end_ms"].is_null()).cloned()
    });
    assert_eq!(incident["severity"], "critical");
    assert_eq!(incident["reason"], "http_status");
    let (start, end) = (incident["start_ms"].as_i64().expect("start"), incident["end_ms"].as_i64().expect("end"));
    assert_eq!(incident["duration_ms"].as_i64(), Some(end - start));
    // Probes run every 5 s: the incident spans the 12 s of 502s, give or take one interval.
    assert!((7_000..=18_000).contains(&(end - start)), "duration {} ms", end - start);
    assert!(start >= failed_at, "{start} >= {failed_at}");
    let (_, down, _, _) = signal(&collector, "web-01", "portal", t0).expect("portal signal");
    assert!((end - start - 5_000..=end - start + 5_000).contains(&down), "down {down} vs incident {}", end - start);

    // Acknowledge: the reaction time is reported.
    let ack = format!(
        "{{\"host\":\"web-01\",\"check\":\"portal_probe\",\"target\":\"{url}\",\"start_ms\":{start},\"by\":\"duty\"}}"
    );
    let (status, body) = b24watch_e2e::http_post(collector.http, "/api/v1/incidents/ack", &ack).expect("ack");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"acknowledged\":true"), "{body}");

    let month = jiff_month(now_ms());
    let json = collector.api(&format!("/reports/sla?month={month}&format=json&host=web-01"));
    let host = &json["hosts"][0];
    assert_eq!(host["sla_signal"], "portal");
    let api_incidents = collector.api(&format!("/api/v1/incidents?host=web-01&from={}", json["from_ms"]));
    assert_eq!(host["incidents"], api_incidents["incidents"], "report and API disagree");
    assert_eq!(host["incidents_by_severity"]["critical"]["count"], 1);
    assert!(host["incidents_by_severity"]["critical"]["mean_reaction_ms"].as_i64().is_some());
    let api_portal = signal(&collector, "web-01", "portal", json["from_ms"].as_i64().expect("from")).expect("portal");
    assert_eq!(host["totals"]["down_ms"].as_i64(), Some(api_portal.1));

    let (status, csv) =
        b24watch_e2e::http_get(collector.http, &format!("/reports/sla?month={month}&format=csv")).expect("csv");
    assert_eq!(status, 200);
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == header.len()), "{csv}");
    let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
    let portal_row =
        rows.iter().find(|r| r[col("kind")] == "uptime" && r[col("signal")] == "portal").expect("portal row");
    assert_eq!(portal_row[col("down_ms")].parse::<i64>().ok(), host["totals"]["down_ms"].as_i64());
    assert_eq!(rows.iter().filter(|r| r[col("kind")] == "incident" && r[col("severity")] == "critical").count(), 1);

    let dom = browser_dom(&format!("http://{}/reports/sla?month={month}&format=html", collector.http));
    assert!(dom.contains("data-host=\"web-01\""), "{dom}");
    assert!(dom.contains("data-check=\"portal_probe\" data-reason=\"http_status\""), "{dom}");
    assert!(dom.contains("<td>critical</td><td>Portal availability</td>"), "{dom}");
    let status_dom = browser_dom(&format!("http://{}/", collector.http));
    assert!(status_dom.contains("data-host=\"web-01\""), "{status_dom}");
    assert!(status_dom.contains(">up<"), "{status_dom}");

    // Maintenance over the outage: not downtime any more; deleting the window restores it.
    let window =
        format!("{{\"host\":\"web-01\",\"from\":{},\"to\":{},\"reason\":\"planned\"}}", start - 10_000, end + 10_000);
    let (status, body) = b24watch_e2e::http_post(collector.http, "/api/v1/maintenance", &window).expect("maintenance");
    assert_eq!(status, 201, "{body}");
    let id: serde_json::Value = serde_json::from_str(&body).expect("json");
    let (_, down, _, maintenance) = signal(&collector, "web-01", "portal", t0).expect("portal");
    assert_eq!(down, 0);
    assert!(maintenance >= end - start, "{maintenance}");
    // Narrowed to the first half of the outage: the rest is downtime again.
    let half = format!(
        "{{\"host\":\"web-01\",\"from\":{},\"to\":{},\"reason\":\"planned\"}}",
        start - 10_000,
        start + (end - start) / 2
    );
    let (status, body) =
        b24watch_e2e::http_request(collector.http, "PUT", &format!("/api/v1/maintenance/{}", id["id"]), &half)
            .expect("update");
    assert_eq!(status, 200, "{body}");
    let (_, down_after, _, _) = signal(&collector, "web-01", "portal", t0).expect("portal");
    assert!(down_after > 0 && down_after < end - start + 5_000, "{down_after}");
    let windows = collector.api("/api/v1/maintenance");
    assert_eq!(windows["windows"].as_array().map(Vec::len), Some(1), "{windows}");
    let (status, _) =
        b24watch_e2e::http_request(collector.http, "DELETE", &format!("/api/v1/maintenance/{}", id["id"]), "")
            .expect("delete");
    assert_eq!(status, 204);
    assert!(signal(&collector, "web-01", "portal", t0).expect("portal").1 > 0);
    let (status, _) = b24watch_e2e::http_post(collector.http, "/api/v1/maintenance", "{\"from\": 5}").expect("bad");
    assert_eq!(status, 400);

    // The CLI writes the same JSON report.
    let out =
        b24watch_e2e::collector_cmd(&data, &["report", "--month", &month, "--format", "json", "--host", "web-01"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(cli["hosts"][0]["incidents"][0]["start_ms"], start);
}

/// `YYYY-MM` of a unix ms time in UTC.
fn jiff_month(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}
