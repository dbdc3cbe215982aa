//! Clients and contracts over a real store: the host → client assignment (config first, then the
//! client recorded at enrolment) and `GET /api/v1/clients`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use b24watch_collector::access::{Need, need};
use b24watch_collector::auth::Role;
use b24watch_collector::config::Config;
use b24watch_collector::http::{AppState, router};
use b24watch_collector::live::Live;
use b24watch_collector::metrics::Metrics;
use b24watch_collector::store::Store;
use b24watch_collector::store::admin::Admin;
use b24watch_collector::uptime::Uptime;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

#[path = "support/report_figures.rs"]
mod report_figures;

const CONFIG: &str = r#"
[sla]
timezone = "Europe/Moscow"

[[plan]]
name = "basic"
support_hours = "Mon-Fri 09:00-18:00"
reaction = { critical = "4h", high = "4h", medium = "8h", low = "24h" }
resolution = { critical = "8h", high = "16h", medium = "40h", low = "80h" }

[[plan]]
name = "premium"
target = 0.999
support_hours = "24/7"
reaction = { critical = "30m", high = "1h", medium = "2h", low = "8h" }
resolution = { critical = "4h", high = "8h", medium = "24h", low = "48h" }

[[client]]
name = "acme"
plan = "premium"
hosts = ["bx-01", "bx-02"]

[[client]]
name = "globex"
plan = "basic"
hosts = ["gx-01"]
reaction = { critical = "2h" }
"#;

#[test]
fn clients_list_their_hosts_from_the_config_and_from_enrolment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, reader, _writer) =
        Store::open(dir.path(), 10_000, None, 60_000, b24watch_collector::store::Retention::default()).expect("store");
    let admin = Arc::new(Admin::open(dir.path()).expect("admin"));
    for host in ["bx-01", "gx-01", "gx-02", "lone-01", "gone-01"] {
        admin.enroll(host, false, 1).expect("enroll");
    }
    // Recorded at enrolment: gx-02 for globex; gx-01 for acme, but the config lists it under globex.
    admin.set_client("gx-02", Some("globex")).expect("client");
    admin.set_client("gx-01", Some("acme")).expect("client");
    admin.set_client("gone-01", Some("globex")).expect("client");
    admin.revoke("gone-01", 2).expect("revoke");
    assert!(admin.set_client("nobody", Some("acme")).is_err(), "unknown agent");
    let reader = Arc::new(reader);
    let sla = Config::parse(CONFIG, Path::new("test.toml")).expect("valid").sla;
    let uptime = Arc::new(Uptime::new(sla, Arc::clone(&reader)));
    assert_eq!(uptime.client_of_host("gx-02").expect("read").map(|c| c.name.as_str()), Some("globex"));
    assert_eq!(uptime.client_of_host("gx-01").expect("read").map(|c| c.name.as_str()), Some("globex"));
    assert!(uptime.client_of_host("lone-01").expect("read").is_none());
    assert_eq!(uptime.hosts_of_client("acme").expect("read"), Some(vec!["bx-01".to_owned(), "bx-02".to_owned()]));
    assert_eq!(uptime.hosts_of_client("globex").expect("read"), Some(vec!["gx-01".to_owned(), "gx-02".to_owned()]));
    assert_eq!(uptime.hosts_of_client("initech").expect("read"), None);

    let app = router(AppState {
        links: Arc::new(b24watch_collector::http::Links {
            external_url: "http://127.0.0.1".into(),
            runbook_url: "http://127.0.0.1/runbooks".into(),
        }),
        live: Arc::new(Live::default()),
        metrics: Arc::new(Metrics::default()),
        reader,
        store,
        agent_timeout: Duration::from_secs(60),
        shutdown: CancellationToken::new(),
        uptime,
        admin,
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (status, body) = runtime.block_on(async {
        let request = Request::builder().uri("/api/v1/clients").body(Body::empty()).expect("request");
        let response = app.oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice::<serde_json::Value>(&bytes).expect("json"))
    });
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected = serde_json::json!({ "clients": [
        { "name": "acme", "hosts": ["bx-01", "bx-02"], "contract": {
            "plan": "premium", "target": 0.999, "service_hours": "24/7", "timezone": "Europe/Moscow",
            "support_hours": "24/7", "holidays": [],
            "reaction_secs": { "critical": 1800, "high": 3600, "medium": 7200, "low": 28800 },
            "resolution_secs": { "critical": 14400, "high": 28800, "medium": 86400, "low": 172800 } } },
        { "name": "globex", "hosts": ["gx-01", "gx-02"], "contract": {
            "plan": "basic", "target": 0.995, "service_hours": "24/7", "timezone": "Europe/Moscow",
            "support_hours": "Mon-Fri 09:00-18:00", "holidays": [],
            "reaction_secs": { "critical": 7200, "high": 14400, "medium": 28800, "low": 86400 },
            "resolution_secs": { "critical": 28800, "high": 57600, "medium": 144000, "low": 288000 } } },
    ]});
    assert_eq!(body, expected);
    assert_eq!(need(&Method::GET, "/api/v1/clients"), Need::Role(Role::Viewer), "viewers list clients");
}

/// One incident of the script: host, priority, opened, acknowledged, resolved.
type Step<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

/// A scripted November 2026 for two clients on different plans: acme on premium (24/7, UTC) and
/// globex on basic (Mon-Fri 09:00-18:00 Moscow time), incidents of every priority, some
/// acknowledged in time, some late, some never. The expected figures below are worked out by
/// hand from the script (support hours counted on the calendar), not by the code under test.
#[test]
fn a_scripted_month_gives_reaction_resolution_and_breaches_to_the_second() {
    const MONTH_CONFIG: &str = include_str!("fixtures/contracts.toml");
    let t = |text: &str| text.parse::<jiff::Timestamp>().expect("time").as_millisecond();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, reader, _writer) =
        Store::open(dir.path(), 10_000, None, 60_000, b24watch_collector::store::Retention::default()).expect("store");
    let admin = Admin::open(dir.path()).expect("admin");
    for host in ["bx-01", "bx-02", "gx-01"] {
        admin.enroll(host, false, t("2026-10-01T00:00:00Z")).expect("enroll");
    }
    // (host, priority, opened, acknowledged, resolved) — UTC; Moscow is UTC+3 all year.
    let script: [Step<'_>; 8] = [
        ("bx-01", "critical", "2026-11-03T10:00:00Z", Some("2026-11-03T10:20:00Z"), Some("2026-11-03T12:00:00Z")),
        ("bx-02", "high", "2026-11-10T08:00:00Z", Some("2026-11-10T09:30:00Z"), Some("2026-11-10T18:00:00Z")),
        ("bx-01", "medium", "2026-11-20T00:00:00Z", None, Some("2026-11-20T01:00:00Z")),
        ("bx-02", "low", "2026-11-28T12:00:00Z", None, None),
        // Friday 17:00 MSK; acknowledged Monday 10:00, resolved Monday 16:00.
        ("gx-01", "critical", "2026-11-06T14:00:00Z", Some("2026-11-09T07:00:00Z"), Some("2026-11-09T13:00:00Z")),
        // Friday 19:00 MSK: the clock starts Monday 09:00.
        ("gx-01", "low", "2026-11-13T16:00:00Z", Some("2026-11-18T08:00:00Z"), Some("2026-11-20T10:00:00Z")),
        ("gx-01", "high", "2026-11-24T07:00:00Z", Some("2026-11-24T12:00:00Z"), Some("2026-11-25T10:00:00Z")),
        ("gx-01", "medium", "2026-11-30T06:00:00Z", None, None),
    ];
    for (host, priority, opened, ack, resolved) in script {
        let id = admin.open_incident(host, priority, &format!("{priority} on {host}"), "ops", t(opened)).expect("open");
        if let Some(at) = ack {
            admin.acknowledge(host, "manual", &id.to_string(), t(opened), "duty", t(at)).expect("ack");
        }
        if let Some(at) = resolved {
            admin.resolve_incident(id, "duty", t(at)).expect("resolve");
        }
    }
    admin
        .add_maintenance("bx-01", t("2026-11-15T01:00:00Z"), t("2026-11-15T02:00:00Z"), "kernel update", "ops.anna", 0)
        .expect("maintenance");
    let now = t("2026-12-05T00:00:00Z");
    let sla = Config::parse(MONTH_CONFIG, Path::new("test.toml")).expect("valid").sla;
    let uptime = Uptime::new(sla, Arc::new(reader));

    // (priority, reaction s, reaction breached, resolution s, resolution breached) by start.
    let acme = [
        ("critical", 1200, false, 7200, false),
        ("high", 5400, true, 36_000, true),
        ("medium", 3600, false, 3600, false),
        // Open since Nov 28 12:00 until the report at Dec 5 00:00: 6 d 12 h.
        ("low", 561_600, true, 561_600, true),
    ];
    let globex = [
        // Fri 1 h + Mon 1 h; resolution Fri 1 h + Mon 7 h = 8 h, exactly the target: not breached.
        ("critical", 7200, false, 28_800, false),
        // Mon 9 h + Tue 9 h + Wed 2 h; resolution 4 × 9 h + Fri 4 h.
        ("low", 72_000, false, 144_000, false),
        ("high", 18_000, true, 43_200, false),
        // Mon Nov 30 9 h + Tue..Fri 4 × 9 h = 45 h, still open.
        ("medium", 162_000, true, 162_000, true),
    ];
    for (client, expected, breaches) in [("acme", &acme, (2, 2, 1)), ("globex", &globex, (2, 1, 1))] {
        let report = b24watch_collector::client_report::build(&uptime, client, "2026-11", now).expect("report");
        let json = serde_json::to_value(&report).expect("json");
        let want = report_figures::want(expected);
        assert_eq!(report_figures::from_json(&json), want, "{client}");
        for i in json["incidents"].as_array().expect("incidents") {
            assert_eq!(i["clock"]["reaction_support_ms"].as_i64().expect("ms") % 1000, 0, "whole seconds: {i}");
        }
        assert_eq!(
            (json["reaction_breaches"].as_u64(), json["resolution_breaches"].as_u64(), json["open_incidents"].as_u64()),
            (Some(breaches.0), Some(breaches.1), Some(breaches.2)),
            "{client}"
        );
        // The CSV says the same, in seconds.
        let csv = b24watch_collector::client_report::csv(&report);
        let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
        assert_eq!(report_figures::from_csv(&csv), want, "{client} CSV");
        let client_row: Vec<&str> = csv.lines().nth(1).expect("client row").split(',').collect();
        assert_eq!(client_row[0], "client");
        assert_eq!(client_row[col("reaction_breached")], breaches.0.to_string(), "{client} CSV totals");
        assert_eq!(client_row[col("resolution_breached")], breaches.1.to_string(), "{client} CSV totals");
    }
    let acme = b24watch_collector::client_report::build(&uptime, "acme", "2026-11", now).expect("report");
    assert_eq!(acme.maintenance.len(), 1);
    assert_eq!(acme.maintenance[0].reason, "kernel update");
    assert_eq!(acme.maintenance[0].declared_by, "ops.anna", "who declared the window");
    let json = serde_json::to_value(&acme).expect("json");
    assert_eq!(json["maintenance"][0]["declared_by"], "ops.anna", "{json}");
    let csv = b24watch_collector::client_report::csv(&acme);
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let window: Vec<&str> =
        csv.lines().find(|l| l.starts_with("maintenance,")).expect("maintenance row").split(',').collect();
    let at = |name: &str| window[header.iter().position(|h| *h == name).expect("column")];
    assert_eq!((at("reason"), at("source"), at("declared_by")), ("kernel update", "api", "ops.anna"));
    let html = b24watch_collector::client_report::html(&acme, b24watch_collector::i18n::Lang::En);
    assert!(html.contains("<th>Declared by</th>") && html.contains("<td>ops.anna</td>"), "{html}");
    let globex = b24watch_collector::client_report::build(&uptime, "globex", "2026-11", now).expect("report");
    assert!(globex.maintenance.is_empty(), "bx-01's window is not globex's");
    assert_eq!(globex.hosts.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), ["gx-01"]);
    assert_eq!(globex.period.from_iso, "2026-11-01T00:00:00+03:00", "the month in the contract's time zone");
    let fleet = b24watch_collector::client_report::fleet(&uptime, "2026-11", now).expect("fleet");
    let rows: Vec<(&str, usize, usize, usize)> = fleet
        .clients
        .iter()
        .map(|c| (c.client.as_str(), c.totals.reaction_breaches, c.totals.resolution_breaches, c.totals.open_incidents))
        .collect();
    assert_eq!(rows, [("acme", 2, 2, 1), ("globex", 2, 1, 1)]);
    assert!(b24watch_collector::client_report::fleet_csv(&fleet).contains("\nacme,2026-11,premium,bx-01 bx-02,"));

    // The series at Dec 5: December's incidents are the two still open.
    let hosts = uptime.hosts().expect("hosts");
    uptime.refresh_metrics(&hosts, now).expect("metrics");
    let mut text = String::new();
    uptime.render(&mut text);
    let value = |name: &str, host: &str, client: &str, priority: &str| {
        let prefix = format!("{name}{{host=\"{host}\",client=\"{client}\",priority=\"{priority}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.parse::<f64>().expect("number"))
    };
    let secs = |text: &str| (t(text) / 1000) as f64;
    assert_eq!(value("b24watch_incident_reaction_breached", "bx-02", "acme", "low"), Some(1.0));
    assert_eq!(value("b24watch_incident_resolution_breached", "bx-02", "acme", "low"), Some(1.0));
    assert_eq!(value("b24watch_incident_reaction_breached", "bx-01", "acme", "critical"), Some(0.0));
    assert_eq!(value("b24watch_incident_reaction_breached", "gx-01", "globex", "medium"), Some(1.0));
    assert_eq!(value("b24watch_incident_resolution_breached", "gx-01", "globex", "medium"), Some(1.0));
    // Deadlines: acme low 8 h / 48 h of wall time; globex medium 8 h (Mon 09:00-17:00 MSK) and
    // 40 h (Mon..Thu 36 h, Fri 09:00-13:00 MSK).
    assert_eq!(
        value("b24watch_incident_reaction_deadline_timestamp_seconds", "bx-02", "acme", "low"),
        Some(secs("2026-11-28T20:00:00Z"))
    );
    assert_eq!(
        value("b24watch_incident_resolution_deadline_timestamp_seconds", "bx-02", "acme", "low"),
        Some(secs("2026-11-30T12:00:00Z"))
    );
    assert_eq!(
        value("b24watch_incident_reaction_deadline_timestamp_seconds", "gx-01", "globex", "medium"),
        Some(secs("2026-11-30T14:00:00Z"))
    );
    assert_eq!(
        value("b24watch_incident_resolution_deadline_timestamp_seconds", "gx-01", "globex", "medium"),
        Some(secs("2026-12-04T10:00:00Z"))
    );
    assert_eq!(value("b24watch_incident_reaction_deadline_timestamp_seconds", "bx-01", "acme", "critical"), None);
}
