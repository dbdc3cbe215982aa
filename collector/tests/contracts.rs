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
