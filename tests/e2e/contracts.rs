//! Issue #16: clients and contracts with the real binaries: `enroll --client`, the clients API,
//! an incident opened, acknowledged and resolved by hand with its deadline series, the client
//! report over HTTP and the command line, and the print layout in headless Chromium.

use std::path::Path;
use std::time::Duration;

use b24watch_e2e::{Collector, bin, chromium, eventually, http_get, http_post, metric};

#[path = "../../collector/tests/support/report_figures.rs"]
mod report_figures;
use report_figures::{from_csv, from_json, want};

/// The contract tests' plans and clients: acme on premium (24/7 in UTC), globex (gx-01) on basic
/// (working days in Moscow); the collector's own contract tests read the same file.
const MONTH_CONFIG: &str = include_str!("../../collector/tests/fixtures/contracts.toml");

/// [`MONTH_CONFIG`] without globex's host in the config: the first test gives it gx-01 at
/// enrolment (`enroll --client globex`) instead.
fn enrolment_config() -> String {
    let config = MONTH_CONFIG.replace("hosts = [\"gx-01\"]", "hosts = []");
    assert_ne!(config, MONTH_CONFIG, "the fixture lists globex's host");
    config
}

fn collector_with_config(config: &Path, data_dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin("b24watch-collector"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("running b24watch-collector")
}

/// Pages of a PDF: its `/Type /Page` objects (not `/Pages`).
fn pdf_pages(pdf: &[u8]) -> usize {
    let text = String::from_utf8_lossy(pdf);
    text.matches("/Type /Page").count() - text.matches("/Type /Pages").count()
}

fn print_to_pdf(url: &str, out: &Path) -> Vec<u8> {
    let profile = tempfile::tempdir().expect("profile dir");
    let status = std::process::Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--no-pdf-header-footer")
        .arg(format!("--print-to-pdf={}", out.display()))
        .arg(url)
        .output()
        .expect("running chromium");
    assert!(status.status.success(), "chromium: {}", String::from_utf8_lossy(&status.stderr));
    std::fs::read(out).expect("pdf written")
}

#[test]
fn a_client_with_its_hosts_incidents_by_hand_deadlines_and_its_report() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let config = tmp.path().join("collector.toml");
    std::fs::write(&config, enrolment_config()).expect("config");
    for host in ["bx-01", "bx-02"] {
        let out = collector_with_config(&config, &data, &["enroll", host]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = collector_with_config(&config, &data, &["enroll", "gx-01", "--client", "globex"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = collector_with_config(&config, &data, &["enroll", "zz-01", "--client", "initech"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--client \"initech\": no such [[client]]"), "{out:?}");
    let out = collector_with_config(&config, &data, &["enroll", "bx-02", "--rotate", "--client", "globex"]);
    assert!(!out.status.success(), "the config gives bx-02 to acme");
    assert!(String::from_utf8_lossy(&out.stderr).contains("takes precedence"), "{out:?}");

    let collector = Collector::start(&data, &enrolment_config());
    let clients = collector.api("/api/v1/clients");
    let hosts: Vec<(String, serde_json::Value)> = clients["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| (c["name"].as_str().expect("name").to_owned(), c["hosts"].clone()))
        .collect();
    assert_eq!(
        hosts,
        [
            ("acme".to_owned(), serde_json::json!(["bx-01", "bx-02"])),
            ("globex".to_owned(), serde_json::json!(["gx-01"]))
        ]
    );

    // Opened by hand (loopback without users: the local operator).
    let (status, body) = http_post(
        collector.http,
        "/api/v1/incidents/open",
        r#"{"host": "bx-01", "priority": "critical", "title": "CRM import fails", "by": "anna"}"#,
    )
    .expect("open");
    assert_eq!(status, 201, "{body}");
    let opened: serde_json::Value = serde_json::from_str(&body).expect("json");
    let id = opened["id"].as_str().expect("id").to_owned();
    let opened_ms = opened["opened_ms"].as_i64().expect("ms");
    for (bad, code) in [
        (r#"{"host": "nope", "priority": "critical", "title": "x"}"#, 404),
        (r#"{"host": "bx-01", "priority": "urgent", "title": "x"}"#, 400),
        (r#"{"host": "bx-01", "priority": "low", "title": "  "}"#, 400),
    ] {
        let (status, body) = http_post(collector.http, "/api/v1/incidents/open", bad).expect("open");
        assert_eq!(status, code, "{bad}: {body}");
    }
    // Premium, 24/7: reaction due 30 minutes after the opening, resolution 4 hours.
    let labels = [("host", "bx-01"), ("client", "acme"), ("priority", "critical")];
    let due = eventually("deadline series", Duration::from_secs(75), || {
        metric(&collector.metrics(), "b24watch_incident_reaction_deadline_timestamp_seconds", &labels)
    });
    assert_eq!(due, (opened_ms + 1_800_000) as f64 / 1000.0);
    let resolution_due =
        metric(&collector.metrics(), "b24watch_incident_resolution_deadline_timestamp_seconds", &labels);
    assert_eq!(resolution_due, Some((opened_ms + 4 * 3_600_000) as f64 / 1000.0));
    assert_eq!(metric(&collector.metrics(), "b24watch_incident_reaction_breached", &labels), Some(0.0));

    let (status, body) =
        http_post(collector.http, "/api/v1/incidents/ack", &format!(r#"{{"id": "{id}", "by": "anna"}}"#)).expect("ack");
    assert_eq!(status, 200, "{body}");
    eventually("reaction series gone once acknowledged", Duration::from_secs(75), || {
        metric(&collector.metrics(), "b24watch_incident_reaction_deadline_timestamp_seconds", &labels)
            .is_none()
            .then_some(())
    });
    let (status, body) =
        http_post(collector.http, "/api/v1/incidents/resolve", &format!(r#"{{"id": "{id}", "by": "anna"}}"#))
            .expect("resolve");
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        http_post(collector.http, "/api/v1/incidents/resolve", &format!(r#"{{"id": "{id}", "by": "anna"}}"#))
            .expect("resolve");
    assert_eq!(status, 409, "already resolved: {body}");

    let month = collector.api("/reports/client/acme?format=json");
    let incident = &month["incidents"][0];
    assert_eq!(incident["id"], id.as_str());
    assert_eq!(incident["priority"], "critical");
    assert_eq!(incident["opened_by"], "anna");
    assert_eq!(incident["resolved_by"], "anna");
    assert_eq!(incident["clock"]["reacted"], true);
    assert_eq!(incident["clock"]["reaction_breached"], false);
    assert_eq!(incident["clock"]["resolution_breached"], false);
    assert_eq!(month["reaction_breaches"], 0);
    assert_eq!(month["open_incidents"], 0);
    let (status, _) = http_get(collector.http, "/reports/client/initech").expect("get");
    assert_eq!(status, 404);

    // The command line says the same.
    let out = collector_with_config(&config, &data, &["report", "--client", "acme", "--format", "csv"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8_lossy(&out.stdout);
    let row = csv.lines().find(|l| l.starts_with("incident,")).expect("incident row");
    assert!(row.contains(&format!(",critical,{id},manual,CRM import fails,")), "{row}");
    let out = collector_with_config(&config, &data, &["report", "--fleet", "--format", "csv"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fleet = String::from_utf8_lossy(&out.stdout);
    assert!(fleet.lines().any(|l| l.starts_with("acme,") && l.contains(",bx-01 bx-02,")), "{fleet}");
    assert!(fleet.lines().any(|l| l.starts_with("globex,") && l.contains(",gx-01,")), "{fleet}");

    // Printed by Chromium on A4: the two-host client's report and the fleet summary fit a few
    // pages and name the client's hosts (links to their sections).
    let base = format!("http://{}", collector.http);
    let pdf = print_to_pdf(&format!("{base}/reports/client/acme"), &tmp.path().join("acme.pdf"));
    let pages = pdf_pages(&pdf);
    assert!((1..=4).contains(&pages), "client report: {pages} pages");
    let text = String::from_utf8_lossy(&pdf);
    let boxes: Vec<&str> =
        text.match_indices("/MediaBox [").map(|(at, _)| &text[at..(at + 40).min(text.len())]).collect();
    assert!(
        !boxes.is_empty()
            && boxes.iter().all(|b| b.starts_with("/MediaBox [0 0 594.9") || b.starts_with("/MediaBox [0 0 595")),
        "A4 pages: {boxes:?}"
    );
    for host in ["bx-01", "bx-02"] {
        assert!(text.contains(&format!("host-{host}")), "the PDF names {host}");
    }
    assert!(!text.contains("host-gx-01"), "another client's host");
    let pdf = print_to_pdf(&format!("{base}/reports/fleet"), &tmp.path().join("fleet.pdf"));
    assert_eq!(pdf_pages(&pdf), 1, "fleet summary of two clients");
}

/// The month of the two clients of the contract tests, scripted against the running collector
/// over its HTTP API with times recorded after the fact (`"at"`). (host, priority, opened,
/// acknowledged, resolved), UTC; Moscow is UTC+3 all year. October 2026, so that every time is in
/// the past whenever the suite runs.
/// (host, priority, opened, acknowledged, resolved).
type Step = (&'static str, &'static str, &'static str, Option<&'static str>, Option<&'static str>);

const OCTOBER: [Step; 7] = [
    ("bx-01", "critical", "2026-10-06T10:00:00Z", Some("2026-10-06T10:20:00Z"), Some("2026-10-06T12:00:00Z")),
    ("bx-02", "high", "2026-10-13T08:00:00Z", Some("2026-10-13T09:30:00Z"), Some("2026-10-13T18:00:00Z")),
    // Never acknowledged: the reaction ends at the resolution.
    ("bx-01", "medium", "2026-10-23T00:00:00Z", None, Some("2026-10-23T01:00:00Z")),
    // Never acknowledged nor resolved: still open when the report is read.
    ("bx-02", "low", "2026-10-31T12:00:00Z", None, None),
    // Friday 17:00 MSK; acknowledged Monday 10:00, resolved Monday 16:00.
    ("gx-01", "critical", "2026-10-09T14:00:00Z", Some("2026-10-12T07:00:00Z"), Some("2026-10-12T13:00:00Z")),
    // Friday 19:00 MSK: the clock starts Monday 09:00; acknowledged Wednesday 11:00.
    ("gx-01", "low", "2026-10-16T16:00:00Z", Some("2026-10-21T08:00:00Z"), Some("2026-10-23T10:00:00Z")),
    // Tuesday 10:00 MSK, acknowledged 15:00 (5 h > 4 h), resolved Wednesday 13:00.
    ("gx-01", "high", "2026-10-27T07:00:00Z", Some("2026-10-27T12:00:00Z"), Some("2026-10-28T10:00:00Z")),
];

/// Acceptance 1, end to end: a month for two clients on different plans (24/7 in UTC, working
/// days in Moscow), incidents of each priority opened, acknowledged and resolved by hand through
/// the running collector's API with their own times, some acknowledged in time, some late, some
/// never. The JSON and CSV client reports equal the figures worked out by hand from the script to
/// the second, and the still-open incident's deadline series are exact.
#[test]
fn a_scripted_month_through_the_running_collector_equals_the_contract_to_the_second() {
    // "YYYY-MM-DDTHH:MM:SSZ" as unix ms.
    let t = |text: &str| -> i64 {
        let n = |range: std::ops::Range<usize>| text[range].parse::<u8>().expect("digits");
        let year: i32 = text[0..4].parse().expect("year");
        let month = time::Month::try_from(n(5..7)).expect("month");
        let date = time::Date::from_calendar_date(year, month, n(8..10)).expect("date");
        let at = date.with_hms(n(11..13), n(14..16), n(17..19)).expect("time").assume_utc();
        (at.unix_timestamp_nanos() / 1_000_000) as i64
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let config = tmp.path().join("collector.toml");
    std::fs::write(&config, MONTH_CONFIG).expect("config");
    for host in ["bx-01", "bx-02", "gx-01"] {
        let out = collector_with_config(&config, &data, &["enroll", host]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // The hosts have been monitored since September (a report covers a host from its enrolment):
    // the enrolment time is set back in the database before the collector starts.
    let db = rusqlite::Connection::open(data.join("b24watch.db")).expect("open db");
    db.execute("UPDATE agent SET created_ms = ?1", [t("2026-09-01T00:00:00Z")]).expect("backdate enrolment");
    drop(db);
    let collector = Collector::start(&data, MONTH_CONFIG);
    let post = |path: &str, body: String| -> serde_json::Value {
        let (status, text) = http_post(collector.http, path, &body).expect("post");
        assert!(status == 200 || status == 201, "{path} {body}: {status} {text}");
        serde_json::from_str(&text).expect("json")
    };
    for (host, priority, opened, ack, resolved) in OCTOBER {
        let incident = post(
            "/api/v1/incidents/open",
            format!(
                r#"{{"host":"{host}","priority":"{priority}","title":"{priority} on {host}","by":"ops","at":"{opened}"}}"#
            ),
        );
        assert_eq!(incident["opened_ms"].as_i64(), Some(t(opened)), "{incident}");
        let id = incident["id"].as_str().expect("id").to_owned();
        if let Some(at) = ack {
            let done = post("/api/v1/incidents/ack", format!(r#"{{"id":"{id}","by":"duty","at":"{at}"}}"#));
            assert_eq!(done["ack_ms"].as_i64(), Some(t(at)), "{done}");
        }
        if let Some(at) = resolved {
            let done = post("/api/v1/incidents/resolve", format!(r#"{{"id":"{id}","by":"duty","at":{}}}"#, t(at)));
            assert_eq!(done["resolved_ms"].as_i64(), Some(t(at)), "{done}");
        }
    }
    // Times after the fact are checked: not in the future, not before the incident.
    let open = post(
        "/api/v1/incidents/open",
        r#"{"host":"bx-01","priority":"low","title":"probe","at":"2026-09-02T00:00:00Z"}"#.to_owned(),
    );
    let probe_id = open["id"].as_str().expect("id").to_owned();
    for (path, body, code) in [
        (
            "/api/v1/incidents/open",
            r#"{"host":"bx-01","priority":"low","title":"x","at":"2999-01-01T00:00:00Z"}"#.to_owned(),
            400,
        ),
        ("/api/v1/incidents/open", r#"{"host":"bx-01","priority":"low","title":"x","at":"yesterday"}"#.to_owned(), 400),
        ("/api/v1/incidents/ack", format!(r#"{{"id":"{probe_id}","at":"2026-09-01T00:00:00Z"}}"#), 400),
        ("/api/v1/incidents/resolve", format!(r#"{{"id":"{probe_id}","at":"2026-09-01T00:00:00Z"}}"#), 409),
    ] {
        let (status, text) = http_post(collector.http, path, &body).expect("post");
        assert_eq!(status, code, "{path} {body}: {text}");
    }
    post("/api/v1/incidents/resolve", format!(r#"{{"id":"{probe_id}","at":"2026-09-02T00:00:00Z"}}"#));

    let open_since = t("2026-10-31T12:00:00Z");
    let acme_report = collector.api("/reports/client/acme?month=2026-10&format=json");
    // The open incident's times run to the moment of the report (24/7: wall time), breached.
    let open_for = (acme_report["generated_ms"].as_i64().expect("generated_ms") - open_since) / 1000;
    // acme, 24/7: critical acknowledged in 20 min of 30, resolved in 2 h of 4; high acknowledged
    // in 1 h 30 of 1 h (late) and resolved in 10 h of 8 (late); medium never acknowledged,
    // resolved in 1 h (its reaction ends there, within 2 h).
    let acme = from_json(&acme_report);
    assert_eq!(acme.len(), 4, "{acme_report}");
    assert_eq!(
        acme[..3],
        want(&[
            ("critical", 1200, false, 7200, false),
            ("high", 5400, true, 36_000, true),
            ("medium", 3600, false, 3600, false)
        ])[..],
        "{acme_report}"
    );
    assert_eq!(acme[3], ("low".to_owned(), open_for, true, open_for, true), "the open incident: {acme_report}");
    assert_eq!(
        (
            acme_report["reaction_breaches"].as_u64(),
            acme_report["resolution_breaches"].as_u64(),
            acme_report["open_incidents"].as_u64()
        ),
        (Some(2), Some(2), Some(1)),
        "{acme_report}"
    );
    // globex, Mon-Fri 09:00-18:00 Moscow: critical Fri 1 h + Mon 1 h = 2 h of 4, resolved Fri 1 h
    // + Mon 7 h = 8 h of 8 (met); low Mon 9 h + Tue 9 h + Wed 2 h = 20 h of 24, resolved
    // 4 x 9 h + Fri 4 h = 40 h of 80; high 5 h of 4 (late), resolved Tue 8 h + Wed 4 h = 12 h of 16.
    let globex_report = collector.api("/reports/client/globex?month=2026-10&format=json");
    assert_eq!(
        from_json(&globex_report),
        want(&[
            ("critical", 7200, false, 28_800, false),
            ("low", 72_000, false, 144_000, false),
            ("high", 18_000, true, 43_200, false)
        ]),
        "{globex_report}"
    );
    assert_eq!(
        (
            globex_report["reaction_breaches"].as_u64(),
            globex_report["resolution_breaches"].as_u64(),
            globex_report["open_incidents"].as_u64()
        ),
        (Some(1), Some(0), Some(0)),
        "{globex_report}"
    );
    // The CSV says the same, in seconds.
    let (status, csv) = http_get(collector.http, "/reports/client/globex?month=2026-10&format=csv").expect("csv");
    assert_eq!(status, 200, "{csv}");
    assert_eq!(from_csv(&csv), from_json(&globex_report), "globex CSV");
    // The open incident's deadlines, exported for Alertmanager: 8 h and 48 h after its opening.
    let labels = [("host", "bx-02"), ("client", "acme"), ("priority", "low")];
    let due = eventually(
        "the open incident's deadline series (uptime series are recomputed every 30 s)",
        Duration::from_secs(75),
        || metric(&collector.metrics(), "b24watch_incident_reaction_deadline_timestamp_seconds", &labels),
    );
    assert_eq!(due, (open_since + 8 * 3_600_000) as f64 / 1000.0);
    let exposition = collector.metrics();
    assert_eq!(
        metric(&exposition, "b24watch_incident_resolution_deadline_timestamp_seconds", &labels),
        Some((open_since + 48 * 3_600_000) as f64 / 1000.0)
    );
}
