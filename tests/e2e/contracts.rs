//! Issue #16: clients and contracts with the real binaries: `enroll --client`, the clients API,
//! an incident opened, acknowledged and resolved by hand with its deadline series, the client
//! report over HTTP and the command line, and the print layout in headless Chromium.

use std::path::Path;
use std::time::Duration;

use b24watch_e2e::{Collector, bin, chromium, eventually, http_get, http_post, metric};

const CONFIG: &str = r#"
[sla]
timezone = "UTC"

[[plan]]
name = "premium"
target = 0.999
support_hours = "24/7"
reaction = { critical = "30m", high = "1h", medium = "2h", low = "8h" }
resolution = { critical = "4h", high = "8h", medium = "24h", low = "48h" }

[[plan]]
name = "basic"
timezone = "Europe/Moscow"
support_hours = "Mon-Fri 09:00-18:00"
reaction = { critical = "4h", high = "4h", medium = "8h", low = "24h" }
resolution = { critical = "8h", high = "16h", medium = "40h", low = "80h" }

[[client]]
name = "acme"
plan = "premium"
hosts = ["bx-01", "bx-02"]

[[client]]
name = "globex"
plan = "basic"
hosts = []
"#;

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
    std::fs::write(&config, CONFIG).expect("config");
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

    let collector = Collector::start(&data, CONFIG);
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
    let due = eventually("deadline series", Duration::from_secs(30), || {
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
    eventually("reaction series gone once acknowledged", Duration::from_secs(30), || {
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
