//! Issue #13 items 1, 4 and 6: HTTP access control (roles, credentials, the safe default
//! beyond loopback, the audit of writes, TLS, Prometheus with credentials), CSV formula
//! injection and security headers, bounded free-text fields (RELIABILITY.md T41, T44).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use b24watch_e2e::{Collector, HttpResponse, collector_cmd, eventually, free_addr, http_call, now_ms, write_pki};

/// Creates user `name` with `role`; returns its token.
fn add_user(data: &Path, name: &str, role: &str) -> String {
    let out = collector_cmd(data, &["user", "add", name, "--role", role]);
    assert!(out.status.success(), "user add: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("token is ASCII").trim().to_owned()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn basic(name: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}")))
}

fn window(reason: &str) -> String {
    let now = now_ms();
    format!("{{\"from\": {}, \"to\": {}, \"reason\": \"{reason}\"}}", now - 3_600_000, now - 1_800_000)
}

fn windows(addr: SocketAddr, auth: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let r = http_call(addr, "GET", "/api/v1/maintenance", auth, "").expect("GET maintenance");
    assert_eq!(r.status, 200, "{}", r.body);
    let json: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    json["windows"].as_array().cloned().unwrap_or_default()
}

fn audit_cli(data: &Path) -> String {
    let out = collector_cmd(data, &["audit", "--limit", "100"]);
    assert!(out.status.success(), "audit: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Bound to 0.0.0.0 with no user: an anonymous write (here from 127.0.0.1) is refused with 403
/// naming the command that creates an operator, nothing changes, the refusal is audited with
/// the peer address, and the startup log says why writes are refused.
#[test]
fn anonymous_writes_beyond_loopback_are_refused_audited_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let port = free_addr().port();
    let collector = Collector::start_on(&data, free_addr(), SocketAddr::from(([0, 0, 0, 0], port)), "");
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    let r = http_call(local, "POST", "/api/v1/maintenance", &[], &window("hide the outage")).expect("POST");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("user add NAME --role operator"), "{}", r.body);
    let r = http_call(local, "DELETE", "/api/v1/maintenance/1", &[], "").expect("DELETE");
    assert_eq!(r.status, 403, "{}", r.body);
    let ack = "{\"host\":\"x\",\"check\":\"c\",\"start_ms\":1,\"by\":\"me\"}";
    let r = http_call(local, "POST", "/api/v1/incidents/ack", &[], ack).expect("ack");
    assert_eq!(r.status, 403, "{}", r.body);
    // Reads stay open (http.anonymous_read defaults to true), and nothing was stored.
    assert!(windows(local, &[]).is_empty());
    let audit = audit_cli(&data);
    for line in ["POST    /api/v1/maintenance", "DELETE  /api/v1/maintenance/1", "POST    /api/v1/incidents/ack"] {
        let row = audit.lines().find(|l| l.contains(line)).unwrap_or_else(|| panic!("{line} not audited:\n{audit}"));
        assert!(row.contains("anonymous") && row.contains("127.0.0.1:") && row.contains("403 refused"), "{row}");
    }
    let log = collector.process.log_text();
    assert!(log.contains("HTTP writes are refused") && log.contains("WARN"), "{log}");
}

/// With users: anonymous and wrong secrets get 401, a viewer 403, an operator writes (Basic or
/// Bearer); every write is audited with user, role, peer and body; only an admin reads the
/// audit; free text over its bound is refused with 400; a removed user is refused within the
/// refresh interval.
#[test]
fn roles_decide_writes_and_every_write_is_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let viewer = add_user(&data, "ann", "viewer");
    let operator = add_user(&data, "duty", "operator");
    let admin = add_user(&data, "root", "admin");
    let secret = operator.rsplit_once('.').expect("token").1.to_owned();
    let collector = Collector::start(&data, "");
    let addr = collector.http;
    let post = |auth: &[(&str, &str)], body: &str| {
        http_call(addr, "POST", "/api/v1/maintenance", auth, body).expect("POST maintenance")
    };
    let r = post(&[], &window("anonymous"));
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")), "{r:?}");
    assert_eq!(post(&[("Authorization", &bearer(&viewer))], &window("viewer")).status, 403);
    let wrong = format!("{}{}", &secret[..63], if secret.ends_with('0') { "1" } else { "0" });
    assert_eq!(post(&[("Authorization", &basic("duty", &wrong))], &window("wrong")).status, 401);
    assert_eq!(post(&[("Authorization", &format!("Bearer duty.{wrong}"))], &window("wrong")).status, 401);
    assert!(windows(addr, &[]).is_empty(), "a refused write changed something");

    let r = post(&[("Authorization", &basic("duty", &secret))], &window("planned upgrade"));
    assert_eq!(r.status, 201, "{}", r.body);
    let id = serde_json::from_str::<serde_json::Value>(&r.body).expect("json")["id"].as_i64().expect("id");
    let r = http_call(addr, "DELETE", &format!("/api/v1/maintenance/{id}"), &[("Authorization", &bearer(&viewer))], "")
        .expect("DELETE");
    assert_eq!(r.status, 403);
    assert_eq!(windows(addr, &[]).len(), 1);

    // Free text is bounded: 400, nothing stored.
    let long = "x".repeat(1025);
    let r = post(&[("Authorization", &bearer(&operator))], &window(&long));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("reason") && r.body.contains("1024"), "{}", r.body);
    let ack = format!("{{\"host\":\"x\",\"check\":\"c\",\"start_ms\":1,\"by\":\"{}\"}}", "b".repeat(257));
    let r =
        http_call(addr, "POST", "/api/v1/incidents/ack", &[("Authorization", &bearer(&operator))], &ack).expect("ack");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(windows(addr, &[]).len(), 1);

    // The audit: admin only.
    let audit =
        |auth: &str| http_call(addr, "GET", "/api/v1/audit?limit=100", &[("Authorization", auth)], "").expect("audit");
    assert_eq!(audit(&bearer(&operator)).status, 403);
    let r = audit(&basic("root", &admin));
    assert_eq!(r.status, 200, "{}", r.body);
    let json: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    let entries = json["entries"].as_array().expect("entries");
    let find = |user: &str, status: u64| {
        entries
            .iter()
            .find(|e| e["user"] == user && e["status"] == status && e["path"] == "/api/v1/maintenance")
            .unwrap_or_else(|| panic!("no audit of {user} {status}: {entries:?}"))
    };
    assert_eq!(find("anonymous", 401)["outcome"], "refused");
    assert_eq!(find("ann", 403)["role"], "none");
    let done = find("duty", 201);
    assert_eq!(done["role"], "operator");
    assert_eq!(done["method"], "POST");
    assert!(done["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{done}");
    assert!(done["detail"].as_str().is_some_and(|d| d.contains("planned upgrade")), "{done}");
    assert!(done["at_ms"].as_i64().is_some_and(|t| t > now_ms() - 60_000));
    assert_eq!(find("duty", 400)["outcome"], "failed");
    assert!(entries.iter().any(|e| e["user"] == "ann" && e["method"] == "DELETE" && e["status"] == 403));

    // A removed user is refused once the collector has re-read the users (10 s).
    let out = collector_cmd(&data, &["user", "remove", "duty"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually("the removed operator is refused", Duration::from_secs(25), || {
        (post(&[("Authorization", &bearer(&operator))], &window("after removal")).status == 401).then_some(())
    });
    let list = collector_cmd(&data, &["user", "list"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("ann") && list.contains("root") && !list.contains("duty"), "{list}");
}

/// TLS on the HTTP listener with anonymous reads off: plain HTTP gets nothing, probes stay
/// open, `/metrics` needs a credential and answers to Bearer and Basic, and a real Prometheus
/// scrapes it over TLS with `authorization` and with `basic_auth` (and fails without).
#[test]
fn metrics_over_tls_need_a_credential_and_prometheus_scrapes_with_bearer_and_basic_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).expect("pki dir");
    write_pki(&pki);
    let data = dir.path().join("collector");
    let token = add_user(&data, "prometheus", "viewer");
    let http = free_addr();
    let collector = Collector::spawn_on(
        &data,
        free_addr(),
        http,
        &format!(
            "[http]\nanonymous_read = false\ntls_cert_file = \"{0}/server.pem\"\ntls_key_file = \"{0}/server.key\"\n",
            pki.display()
        ),
    );
    let ca = pki.join("ca.pem");
    let get = |path: &str, auth: &[(&str, &str)]| b24watch_e2e::https_call(http, &ca, "GET", path, auth, "");
    eventually("collector ready over TLS", Duration::from_secs(20), || {
        get("/-/ready", &[]).ok().filter(|r| r.status == 200)
    });
    assert!(
        b24watch_e2e::http_get(http, "/-/ready").map_or(true, |(status, _)| status != 200),
        "plain HTTP answered on a TLS listener"
    );
    let r = get("/metrics", &[]).expect("anonymous");
    assert_eq!(r.status, 401, "{}", r.body);
    let metrics_ok = |r: HttpResponse| r.status == 200 && r.body.contains("b24watch_collector_ready 1");
    assert!(metrics_ok(get("/metrics", &[("Authorization", &bearer(&token))]).expect("bearer")));
    assert!(metrics_ok(get("/metrics", &[("Authorization", &basic("prometheus", &token))]).expect("basic")));
    assert_eq!(get("/", &[]).expect("page").status, 401);

    let token_file = dir.path().join("prometheus.token");
    std::fs::write(&token_file, &token).expect("token file");
    let prom_config = dir.path().join("prometheus.yml");
    let tls =
        format!("    scheme: https\n    tls_config:\n      ca_file: {}\n      server_name: localhost\n", ca.display());
    let target = format!("    static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n", http.port());
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n\
             \x20 - job_name: bearer\n{tls}    authorization:\n      credentials_file: {tf}\n{target}\
             \x20 - job_name: basic\n{tls}    basic_auth:\n      username: prometheus\n      password_file: {tf}\n{target}\
             \x20 - job_name: anonymous\n{tls}{target}",
            tf = token_file.display()
        ),
    )
    .expect("prometheus config");
    let check = Command::new("promtool").arg("check").arg("config").arg(&prom_config).output().expect("promtool");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let (_prometheus, prom) = b24watch_e2e::start_prometheus(&prom_config, dir.path());
    let up = eventually("prometheus scraped every job", Duration::from_secs(60), || {
        let (_, body) = b24watch_e2e::http_get(prom, "/api/v1/query?query=up").ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = json["data"]["result"].as_array()?.clone();
        (result.len() == 3).then_some(result)
    });
    let up_of = |job: &str| {
        up.iter().find(|s| s["metric"]["job"] == job).map(|s| s["value"][1].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(up_of("bearer").as_deref(), Some("1"), "{up:?}");
    assert_eq!(up_of("basic").as_deref(), Some("1"), "{up:?}");
    assert_eq!(up_of("anonymous").as_deref(), Some("0"), "{up:?}");
    let (_, body) = b24watch_e2e::http_get(prom, "/api/v1/query?query=b24watch_collector_ready").expect("query");
    assert!(body.contains("\"bearer\"") && body.contains("\"basic\""), "{body}");
    drop(collector);
}

/// A check target and reason starting with `=`/`-` reach the CSV report as text (a leading
/// `'`), the CSV is an attachment, and pages carry CSP (no scripts, the stylesheet by hash),
/// frame, nosniff and referrer headers.
#[test]
fn csv_report_neutralises_formulas_and_pages_carry_security_headers() {
    use b24watch_proto::v1::{Batch, CheckResult};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token_path = b24watch_e2e::enroll(&data, "web-01");
    let collector = Collector::start(&data, "");
    let token = std::fs::read_to_string(token_path).expect("token");
    let now = now_ms();
    let target = "=HYPERLINK(\"http://evil.example/\",\"open\")";
    let batch = Batch {
        spool_epoch: 1,
        seq: 1,
        agent_id: "web-01".into(),
        created_unix_ms: now,
        checks: vec![CheckResult {
            check: "portal_probe".into(),
            target: target.into(),
            status: 2,
            severity: 4,
            reason: "-2+3+cmd|' /C calc'!A0".into(),
            message: "@SUM(1+1)".into(),
            at_unix_ms: now - 1_000,
        }],
        ..Batch::default()
    };
    b24watch_e2e::send(&collector.grpc_url(), token.trim(), vec![batch]).expect("send");
    let csv = eventually("the incident is in the CSV report", Duration::from_secs(20), || {
        let r = http_call(collector.http, "GET", "/reports/sla?format=csv", &[], "").ok()?;
        r.body.contains("HYPERLINK").then_some(r)
    });
    assert_eq!(csv.status, 200);
    let disposition = csv.header("content-disposition").unwrap_or_default();
    assert!(disposition.starts_with("attachment;") && disposition.contains(".csv"), "{disposition}");
    assert!(csv.body.contains("\"'=HYPERLINK(\"\"http://evil.example/\"\",\"\"open\"\")\""), "{}", csv.body);
    assert!(csv.body.contains("\"'-2+3+cmd|' /C calc'!A0\""), "{}", csv.body);
    for line in csv.body.lines() {
        for bad in [",=", ",+", ",-", ",@", ",\t"] {
            assert!(!line.contains(bad), "a cell starts with a formula character: {line}");
        }
    }

    for path in ["/", "/reports/sla?format=html", "/api/v1/hosts"] {
        let r = http_call(collector.http, "GET", path, &[], "").expect("GET");
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let csp = r.header("content-security-policy").unwrap_or_default();
        for directive in ["default-src 'none'", "frame-ancestors 'none'", "style-src 'sha256-"] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("script-src"), "{path}: {csp}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        if path != "/api/v1/hosts" {
            assert!(!r.body.contains("<script"), "{path} has a script");
            // The one inline stylesheet is the one the policy allows by hash.
            let style = r.body.split("<style>").nth(1).and_then(|s| s.split("</style>").next()).expect("style");
            use base64::Engine as _;
            use sha2::Digest as _;
            let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style.as_bytes()));
            assert!(csp.contains(&format!("'sha256-{hash}'")), "{path}: {csp} does not allow the page's style");
            assert!(!r.body.contains(" style=\""), "{path} has inline style attributes");
        }
    }
}
