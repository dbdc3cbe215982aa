//! Issue #16 items 4 and 5, acceptance 2: the status page's forms (acknowledge, declare
//! maintenance) refuse viewers and posts without this user's form token, from another site or
//! expired, and change nothing when they refuse; an operator's post works and says so.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use b24watch_e2e::{Collector, HttpResponse, collector_cmd, eventually, http_call, now_ms};

/// Creates user `name` with `role`; returns its token.
fn add_user(data: &Path, name: &str, role: &str) -> String {
    let out = collector_cmd(data, &["user", "add", name, "--role", role]);
    assert!(out.status.success(), "user add: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("token is ASCII").trim().to_owned()
}

/// HTTP Basic with the token as password, as a browser sends it after `/login`.
fn basic(name: &str, token: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{name}:{token}")))
}

/// POSTs an HTML form body (`application/x-www-form-urlencoded`) with extra header fields.
fn post_form(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpResponse { status, headers, body: body.to_owned() }
}

/// Form-encodes `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// The value of the first `name="<field>" value="..."` input in a page.
fn field(page: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &page[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// GET with an `Authorization` header (none when `auth` is empty).
fn get(addr: SocketAddr, path: &str, auth: &str) -> HttpResponse {
    let headers: Vec<(&str, &str)> = if auth.is_empty() { Vec::new() } else { vec![("Authorization", auth)] };
    http_call(addr, "GET", path, &headers, "").expect("GET")
}

/// Sends a failing critical check for `host`: an open incident. Returns its id.
fn open_incident(collector: &Collector, host: &str, token: &str) -> String {
    use b24watch_proto::v1::{Batch, CheckResult};
    let now = now_ms();
    let batch = Batch {
        spool_epoch: 1,
        seq: 1,
        agent_id: host.into(),
        created_unix_ms: now,
        checks: vec![CheckResult {
            check: "portal_probe".into(),
            target: format!("https://{host}.example/"),
            status: 2,
            severity: 4,
            reason: "http_status".into(),
            message: "HTTP 502".into(),
            at_unix_ms: now - 60_000,
        }],
        ..Batch::default()
    };
    b24watch_e2e::send(&collector.grpc_url(), token, vec![batch]).expect("send");
    eventually("the incident is open", Duration::from_secs(20), || {
        let body = collector.api(&format!("/api/v1/incidents?host={host}"));
        body["incidents"].as_array()?.first().and_then(|i| i["id"].as_str().map(str::to_owned))
    })
}

/// The incident's `ack_by` as the API shows it.
fn ack_by(collector: &Collector, auth: &str, id: &str) -> Option<String> {
    let r = get(collector.http, "/api/v1/incidents", auth);
    assert_eq!(r.status, 200, "{}", r.body);
    let body: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    let incident = body["incidents"].as_array()?.iter().find(|i| i["id"] == id)?.clone();
    incident["ack_by"].as_str().map(str::to_owned)
}

fn windows(collector: &Collector, auth: &str) -> Vec<serde_json::Value> {
    let r = get(collector.http, "/api/v1/maintenance", auth);
    assert_eq!(r.status, 200, "{}", r.body);
    let body: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    body["windows"].as_array().cloned().unwrap_or_default()
}

/// Users on loopback, anonymous reads on: the page offers a sign-in link to anonymous readers, no
/// forms to a viewer; an operator's page has an acknowledge form per open incident. A viewer's
/// post is refused (403); an operator's post without the token, with a forged or expired token,
/// another user's token, or from another site is refused (403); none of them acknowledges or
/// declares anything, and the audit records each. A valid acknowledgement and a valid
/// maintenance window redirect to the status page, which says what was done.
#[test]
fn status_page_forms_refuse_viewers_and_posts_without_a_valid_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let viewer = basic("ann", &add_user(&data, "ann", "viewer"));
    let operator_token = add_user(&data, "duty", "operator");
    let operator = basic("duty", &operator_token);
    let other = basic("night", &add_user(&data, "night", "operator"));
    let admin = basic("root", &add_user(&data, "root", "admin"));
    let agent_token = std::fs::read_to_string(b24watch_e2e::enroll(&data, "web-01")).expect("token");
    let collector = Collector::start(&data, "[sla]\ntimezone = \"Europe/Moscow\"\n");
    let addr = collector.http;
    let id = open_incident(&collector, "web-01", agent_token.trim());

    let anonymous = get(addr, "/", "");
    assert_eq!(anonymous.status, 200);
    assert!(!anonymous.body.contains("<form"), "{}", anonymous.body);
    assert!(anonymous.body.contains("<a href=\"/ops?lang=en\">Sign in</a>"), "{}", anonymous.body);
    let csp = anonymous.header("content-security-policy").unwrap_or_default().to_owned();
    assert!(csp.contains("form-action 'self'"), "{csp}");
    // `/ops` makes the browser ask for the user name and token.
    let login = get(addr, "/ops", "");
    assert_eq!(login.status, 401);
    assert!(login.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")), "{login:?}");

    let page = get(addr, "/", &viewer);
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<form") && !page.body.contains("name=\"csrf\""), "a viewer got a form");
    assert!(page.body.contains("Signed in as ann (viewer)."), "{}", page.body);
    assert_eq!(get(addr, "/actions/maintenance", &viewer).status, 403);

    let page = get(addr, "/ops", &operator);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Signed in as duty (operator)."), "{}", page.body);
    assert!(page.body.contains("action=\"/actions/ack\""), "{}", page.body);
    assert_eq!(field(&page.body, "id").as_deref(), Some(id.as_str()));
    let token = field(&page.body, "csrf").expect("the operator's form has a token");
    // A real browser signing in at `/ops` (the credential answering the 401) gets the forms.
    let dom = b24watch_e2e::browser_dom(&format!("http://duty:{operator_token}@{addr}/ops"));
    assert!(dom.contains("Signed in as duty (operator).") && dom.contains("action=\"/actions/ack\""), "{dom}");
    let night_token = field(&get(addr, "/ops", &other).body, "csrf").expect("token");
    assert_ne!(token, night_token);

    let ack = |auth: &str, csrf: Option<&str>, extra: &[(&str, &str)]| {
        let mut pairs = vec![("id", id.as_str()), ("lang", "en")];
        if let Some(csrf) = csrf {
            pairs.push(("csrf", csrf));
        }
        let mut headers = vec![("Authorization", auth)];
        headers.extend_from_slice(extra);
        post_form(addr, "/actions/ack", &headers, &form(&pairs))
    };
    // A viewer is refused by access control, even with an operator's token.
    let r = ack(&viewer, Some(&token), &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    // No token, a forged one, an altered one, another user's, an expired one.
    let (expiry, mac) = token.split_once('.').expect("token shape");
    let altered = format!("{}.{mac}", expiry.parse::<i64>().expect("expiry") + 3_600_000);
    let expired = format!("{}.{mac}", now_ms() - 1_000);
    let refusals = [
        (None, "missing"),
        (Some("1.00"), "not valid"),
        (Some(altered.as_str()), "not valid"),
        (Some(night_token.as_str()), "not valid"),
        (Some(expired.as_str()), "not valid"),
    ];
    for (csrf, says) in refusals {
        let r = ack(&operator, csrf, &[]);
        assert_eq!(r.status, 403, "{csrf:?}: {}", r.body);
        assert!(r.body.contains(says), "{csrf:?}: {}", r.body);
    }
    // The right token from another site.
    for header in [("Origin", "http://evil.example"), ("Sec-Fetch-Site", "cross-site")] {
        let r = ack(&operator, Some(&token), &[header]);
        assert_eq!(r.status, 403, "{header:?}: {}", r.body);
        assert!(r.body.contains("another"), "{}", r.body);
    }
    let window_form = |csrf: &str| {
        form(&[
            ("csrf", csrf),
            ("host", "web-01"),
            ("from", "2026-11-30T22:00"),
            ("to", "2026-11-30T23:30"),
            ("reason", "kernel update"),
        ])
    };
    assert_eq!(
        post_form(addr, "/actions/maintenance", &[("Authorization", &viewer)], &window_form(&token)).status,
        403
    );
    assert_eq!(post_form(addr, "/actions/maintenance", &[("Authorization", &operator)], &window_form("")).status, 403);
    assert_eq!(
        post_form(addr, "/actions/maintenance", &[("Authorization", &operator)], &window_form(&night_token)).status,
        403
    );
    // Nothing changed.
    assert_eq!(ack_by(&collector, &operator, &id), None, "a refused form acknowledged the incident");
    assert!(windows(&collector, &operator).is_empty(), "a refused form declared maintenance");
    let audit = get(addr, "/api/v1/audit?limit=100", &admin);
    let audit: serde_json::Value = serde_json::from_str(&audit.body).expect("audit json");
    let rows = audit["entries"].as_array().expect("entries");
    let refused = |path: &str, user: &str| {
        rows.iter().filter(|e| e["path"] == path && e["user"] == user && e["status"] == 403).count()
    };
    assert_eq!(refused("/actions/ack", "ann"), 1, "{rows:?}");
    assert_eq!(refused("/actions/ack", "duty"), 7, "{rows:?}");
    assert_eq!(refused("/actions/maintenance", "duty"), 2, "{rows:?}");
    assert!(rows.iter().all(|e| !e["detail"].as_str().unwrap_or("").contains(mac)), "the audit keeps a form token");

    // The operator's own form, from the page: acknowledged, redirected, told.
    let r = ack(&operator, Some(&token), &[("Origin", &format!("http://{addr}")), ("Sec-Fetch-Site", "same-origin")]);
    assert_eq!(r.status, 303, "{}", r.body);
    let location = r.header("location").expect("location").to_owned();
    assert_eq!(location, format!("/ops?done=acknowledged&incident={id}&lang=en"));
    let after = get(addr, &location, &operator);
    assert!(after.body.contains(&format!("Incident {id} acknowledged.")), "{}", after.body);
    assert!(after.body.contains("acknowledged by duty"), "{}", after.body);
    assert_eq!(ack_by(&collector, &operator, &id).as_deref(), Some("duty"));
    let done = rows.len();
    let audit = get(addr, "/api/v1/audit?limit=100", &admin);
    let audit: serde_json::Value = serde_json::from_str(&audit.body).expect("audit json");
    let rows = audit["entries"].as_array().expect("entries");
    assert!(rows.len() > done);
    let row = rows.iter().find(|e| e["path"] == "/actions/ack" && e["status"] == 303).expect("the ack is audited");
    assert_eq!(row["user"], "duty");
    assert_eq!(row["detail"], format!("id={id}&lang=en"));

    // Maintenance: the form page, then the post; times are read in the SLA time zone.
    let page = get(addr, "/actions/maintenance?host=web-01", &operator);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<option value=\"web-01\" selected>"), "{}", page.body);
    assert!(page.body.contains("Europe/Moscow"), "{}", page.body);
    let token = field(&page.body, "csrf").expect("token");
    let r = post_form(addr, "/actions/maintenance", &[("Authorization", &operator)], &window_form(&token));
    assert_eq!(r.status, 303, "{}", r.body);
    let location = r.header("location").expect("location").to_owned();
    let windows = windows(&collector, &operator);
    assert_eq!(windows.len(), 1, "{windows:?}");
    let w = &windows[0];
    assert_eq!(location, format!("/ops?done=maintenance&window={}&lang=en", w["id"]));
    assert_eq!(w["host"], "web-01");
    assert_eq!(w["reason"], "kernel update");
    assert_eq!(w["declared_by"], "duty", "the signed-in operator declared it");
    // 22:00 and 23:30 in Moscow (UTC+3) on 2026-11-30.
    assert_eq!(w["from_ms"], 1_796_065_200_000_i64);
    assert_eq!(w["to_ms"], 1_796_070_600_000_i64);
    let after = get(addr, &location, &operator);
    assert!(after.body.contains(&format!("Maintenance window {} declared.", w["id"])), "{}", after.body);
    // An incident opened by hand is resolved from the page; one opened by a check is not.
    let body = "{\"host\":\"web-01\",\"priority\":\"high\",\"title\":\"mail relay down\",\"by\":\"duty\"}";
    let r = http_call(addr, "POST", "/api/v1/incidents/open", &[("Authorization", &operator)], body).expect("open");
    assert_eq!(r.status, 201, "{}", r.body);
    let manual =
        serde_json::from_str::<serde_json::Value>(&r.body).expect("json")["id"].as_str().expect("id").to_owned();
    // The page lists it once the incident is read back (it may lag the API's write briefly).
    let page = b24watch_e2e::eventually("the manual incident on the page", Duration::from_secs(60), || {
        let page = get(addr, "/ops", &operator);
        page.body.contains("action=\"/actions/resolve\"").then_some(page)
    });
    assert_eq!(page.body.matches("action=\"/actions/resolve\"").count(), 1, "only the manual incident: {}", page.body);
    let token = field(&page.body, "csrf").expect("token");
    let resolve = |csrf: &str, id: &str| {
        post_form(addr, "/actions/resolve", &[("Authorization", &operator)], &form(&[("csrf", csrf), ("id", id)]))
    };
    let open_manual = || {
        let body: serde_json::Value =
            serde_json::from_str(&get(addr, "/api/v1/incidents", &operator).body).expect("json");
        body["incidents"].as_array().expect("incidents").iter().any(|i| i["id"] == manual && i["end_ms"].is_null())
    };
    assert_eq!(resolve("", &manual).status, 403);
    assert_eq!(resolve(&night_token, &manual).status, 403);
    assert_eq!(
        post_form(addr, "/actions/resolve", &[("Authorization", &viewer)], &form(&[("csrf", &token), ("id", &manual)]))
            .status,
        403
    );
    assert!(open_manual(), "a refused form resolved the incident");
    assert_eq!(resolve(&token, &id).status, 409, "an incident of a check is not resolved by hand");
    let r = resolve(&token, &manual);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some(format!("/ops?done=resolved&incident={manual}&lang=en").as_str()));
    assert!(!open_manual(), "the incident is still open");
    // Bad input is a page saying why, nothing stored.
    let token = field(&get(addr, "/actions/maintenance", &operator).body, "csrf").expect("token");
    let backwards =
        form(&[("csrf", &token), ("from", "2026-11-30T23:00"), ("to", "2026-11-30T22:00"), ("reason", "x")]);
    let r = post_form(addr, "/actions/maintenance", &[("Authorization", &operator)], &backwards);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("must end after it starts"), "{}", r.body);
    drop(collector);
}

/// The quick start (no users, loopback): every local request is an admin, so the token is what
/// stops another site's page in the local browser. The page's forms ask who acknowledges; a post
/// without the token is refused and changes nothing; with it, the name typed is recorded.
#[test]
fn quick_start_forms_need_the_token_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let agent_token = std::fs::read_to_string(b24watch_e2e::enroll(&data, "web-01")).expect("token");
    let collector = Collector::start(&data, "");
    let id = open_incident(&collector, "web-01", agent_token.trim());
    let page = get(collector.http, "/ops", "");
    assert_eq!(page.status, 200, "nothing to sign in to: {}", page.body);
    assert!(page.body.contains("name=\"by\""), "{}", page.body);
    assert!(!page.body.contains("Sign in"), "nothing to sign in to: {}", page.body);
    let token = field(&page.body, "csrf").expect("token");
    let r = post_form(collector.http, "/actions/ack", &[], &form(&[("id", &id), ("by", "mallory")]));
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post_form(
        collector.http,
        "/actions/ack",
        &[("Origin", "http://evil.example")],
        &form(&[("id", &id), ("by", "mallory"), ("csrf", &token)]),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(ack_by(&collector, "", &id), None);
    let r = post_form(collector.http, "/actions/ack", &[], &form(&[("id", &id), ("by", "Olga"), ("csrf", &token)]));
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(ack_by(&collector, "", &id).as_deref(), Some("Olga"));
}

/// Two clients on one plan: acme (acme-01, acme-02) and globex (globex-01). Anonymous reads are
/// off, so nothing is visible without a login but through a link.
const CLIENTS: &str = r#"
[collector]
external_url = "https://mon.example.com/"

[http]
anonymous_read = false

[[plan]]
name = "basic"
support_hours = "Mon-Fri 09:00-18:00"
reaction = { critical = "4h", high = "4h", medium = "8h", low = "24h" }
resolution = { critical = "8h", high = "16h", medium = "40h", low = "80h" }

[[client]]
name = "acme"
plan = "basic"
hosts = ["acme-01", "acme-02"]

[[client]]
name = "globex"
plan = "basic"
hosts = ["globex-01"]
"#;

const HOSTS: [&str; 3] = ["acme-01", "acme-02", "globex-01"];

/// A collector with the two clients, each host with an open incident; returns it and an
/// admin's `Authorization`.
fn two_clients(data: &Path) -> (Collector, String) {
    let admin = basic("root", &add_user(data, "root", "admin"));
    let tokens: Vec<String> = HOSTS
        .iter()
        .map(|h| std::fs::read_to_string(b24watch_e2e::enroll(data, h)).expect("token").trim().to_owned())
        .collect();
    let collector = Collector::start(data, CLIENTS);
    for (host, token) in HOSTS.iter().zip(&tokens) {
        use b24watch_proto::v1::{Batch, CheckResult};
        let now = now_ms();
        let batch = Batch {
            spool_epoch: 1,
            seq: 1,
            agent_id: (*host).into(),
            created_unix_ms: now,
            checks: vec![CheckResult {
                check: "portal_probe".into(),
                target: format!("https://{host}.example/"),
                status: 2,
                severity: 4,
                reason: "http_status".into(),
                message: format!("HTTP 502 at {host}"),
                at_unix_ms: now - 60_000,
            }],
            ..Batch::default()
        };
        b24watch_e2e::send(&collector.grpc_url(), token, vec![batch]).expect("send");
    }
    eventually("every host has its incident", Duration::from_secs(20), || {
        let r = get(collector.http, "/api/v1/incidents", &admin);
        let body: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        (body["incidents"].as_array()?.len() == HOSTS.len()).then_some(())
    });
    (collector, admin)
}

/// Each incident's id and acknowledgement (what a write could change).
fn acks(addr: SocketAddr, auth: &str) -> Vec<(String, String, String)> {
    let body: serde_json::Value = serde_json::from_str(&get(addr, "/api/v1/incidents", auth).body).expect("json");
    body["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .map(|i| (i["id"].to_string(), i["ack_ms"].to_string(), i["ack_by"].to_string()))
        .collect()
}

/// `client-link create <client>`: the URL's path (`/c/<token>/`), checked to start with the
/// configured external URL.
fn create_link(data: &Path, client: &str) -> String {
    let out = collector_cmd_with(data, &["client-link", "create", client, "--note", &format!("for {client}")]);
    assert!(out.status.success(), "client-link create: {}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8(out.stdout).expect("URL is ASCII").trim().to_owned();
    let path = url.strip_prefix("https://mon.example.com").unwrap_or_else(|| panic!("{url}")).to_owned();
    assert!(path.starts_with("/c/") && path.ends_with('/'), "{url}");
    let secret = path.trim_matches('/').rsplit('.').next().expect("secret");
    assert_eq!(secret.len(), 64, "a 256-bit secret: {url}");
    path
}

/// `b24watch-collector` with the test's config file (the clients) and data directory.
fn collector_cmd_with(data: &Path, args: &[&str]) -> std::process::Output {
    let config = data.parent().expect("parent").join("collector.toml");
    let mut cmd = std::process::Command::new(b24watch_e2e::bin("b24watch-collector"));
    cmd.arg("--config").arg(config).arg("--data-dir").arg(data).args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("B24WATCH_") {
            cmd.env_remove(&key);
        }
    }
    cmd.output().expect("running b24watch-collector")
}

/// Whether `text` names a globex host (or its probe target or message).
fn shows_globex(text: &str) -> bool {
    text.contains("globex")
}

/// A link shows its client's hosts and nothing of another client's, on the status page, the
/// report (HTML, CSV, JSON) and every read API, without a login while anonymous reads are off;
/// another client's host is "unknown" through it; nothing can be written through it.
#[test]
fn a_client_link_shows_only_its_clients_hosts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let (collector, admin) = two_clients(&data);
    let addr = collector.http;
    let link = create_link(&data, "acme");
    assert_eq!(get(addr, "/", "").status, 401, "anonymous reads are off");
    // Maintenance for each client's host and for every host (operator API).
    let now = now_ms();
    for (host, reason) in [("acme-01", "acme disk swap"), ("globex-01", "globex secret migration"), ("", "network")] {
        let body = format!(
            "{{\"host\":\"{host}\",\"from\":{},\"to\":{},\"reason\":\"{reason}\"}}",
            now + 3_600_000,
            now + 7_200_000
        );
        let r = http_call(addr, "POST", "/api/v1/maintenance", &[("Authorization", &admin)], &body).expect("POST");
        assert_eq!(r.status, 201, "{}", r.body);
    }

    // The status page.
    let page = get(addr, &link, "");
    assert_eq!(page.status, 200, "{}", page.body);
    for host in ["acme-01", "acme-02"] {
        assert!(page.body.contains(&format!("data-host=\"{host}\"")), "{host} missing: {}", page.body);
    }
    assert!(!shows_globex(&page.body), "another client's host on the page: {}", page.body);
    assert!(page.body.contains("Client: acme."), "{}", page.body);
    assert!(!page.body.contains("<form") && !page.body.contains("/metrics"), "{}", page.body);
    assert!(page.body.contains("href=\"./reports/sla?host=acme-01&amp;format=html&amp;lang=en\""), "{}", page.body);
    assert_eq!(page.header("cache-control"), Some("private, no-store"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let bare = get(addr, link.trim_end_matches('/'), "");
    assert_eq!(bare.status, 308);
    assert_eq!(
        bare.header("location"),
        Some(link.trim_end_matches('/').rsplit('/').next().map(|t| format!("{t}/")).as_deref().expect("token"))
    );

    // The report in each format.
    let month = {
        let r = get(addr, &format!("{link}reports/sla?format=json"), "");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(!shows_globex(&r.body), "another client's host in the JSON report: {}", r.body);
        let json: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        let hosts: Vec<&str> =
            json["hosts"].as_array().expect("hosts").iter().filter_map(|h| h["host"].as_str()).collect();
        assert_eq!(hosts, ["acme-01", "acme-02"]);
        assert_eq!(json["client"], "acme", "the client report");
        assert_eq!(json["open_incidents"], 2, "{json}");
        let critical = json["hosts"][0]["incidents_by_severity"]["critical"]["count"].as_i64();
        assert_eq!(critical, Some(1), "{}", json["hosts"][0]);
        json["month"].as_str().expect("month").to_owned()
    };
    let csv = get(addr, &format!("{link}reports/sla?format=csv&month={month}"), "");
    assert_eq!(csv.status, 200);
    assert!(csv.body.contains("acme-01") && csv.body.contains("acme-02"), "{}", csv.body);
    assert!(!shows_globex(&csv.body), "another client's host in the CSV report: {}", csv.body);
    assert!(csv.header("content-disposition").is_some_and(|d| d.contains(&format!("b24watch-acme-{month}.csv"))));
    let html = get(addr, &format!("{link}reports/sla?format=html&lang=ru"), "");
    assert_eq!(html.status, 200);
    assert!(html.body.contains("data-host=\"acme-01\""), "{}", html.body);
    assert!(!shows_globex(&html.body), "another client's host in the HTML report: {}", html.body);
    // Another client's host is unknown, like a host that does not exist.
    let theirs = get(addr, &format!("{link}reports/sla?format=json&host=globex-01"), "");
    let nobody = get(addr, &format!("{link}reports/sla?format=json&host=nobody-01"), "");
    assert_eq!((theirs.status, nobody.status), (404, 404));
    assert_eq!(theirs.body.replace("globex-01", "X"), nobody.body.replace("nobody-01", "X"));
    let one = get(addr, &format!("{link}reports/sla?format=json&host=acme-02"), "");
    assert_eq!(one.status, 200);
    assert!(one.body.contains("acme-02") && !one.body.contains("acme-01"), "{}", one.body);

    // The read API.
    for path in ["api/v1/hosts", "api/v1/incidents", "api/v1/uptime", "api/v1/maintenance"] {
        let r = get(addr, &format!("{link}{path}"), "");
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(r.body.contains("acme-01"), "{path}: {}", r.body);
        assert!(!shows_globex(&r.body), "{path} shows another client's host: {}", r.body);
    }
    let incidents: serde_json::Value =
        serde_json::from_str(&get(addr, &format!("{link}api/v1/incidents"), "").body).expect("json");
    assert_eq!(incidents["incidents"].as_array().map(Vec::len), Some(2), "{incidents}");
    let windows: serde_json::Value =
        serde_json::from_str(&get(addr, &format!("{link}api/v1/maintenance"), "").body).expect("json");
    let reasons: Vec<&str> =
        windows["windows"].as_array().expect("windows").iter().filter_map(|w| w["reason"].as_str()).collect();
    assert_eq!(reasons, ["acme disk swap", "network"]);
    for path in ["series?name=load1", "errors", "checks", "gaps"] {
        let mine = get(addr, &format!("{link}api/v1/hosts/acme-01/{path}"), "");
        assert_eq!(mine.status, 200, "{path}: {}", mine.body);
        let theirs = get(addr, &format!("{link}api/v1/hosts/globex-01/{path}"), "");
        assert_eq!(theirs.status, 404, "{path}: {}", theirs.body);
        assert!(!theirs.body.contains("502"), "{}", theirs.body);
    }
    for path in ["api/v1/incidents?host=globex-01", "api/v1/uptime?host=globex-01"] {
        assert_eq!(get(addr, &format!("{link}{path}"), "").status, 404, "{path}");
    }
    // Operator pages and the audit are not under the link.
    for path in ["metrics", "api/v1/audit", "api/v1/clients", "ops", "actions/maintenance"] {
        assert_eq!(get(addr, &format!("{link}{path}"), "").status, 404, "{path}");
    }

    // Nothing is writable through a link, whatever the credential.
    let acks_before = acks(addr, &admin);
    let incident = incidents["incidents"][0]["id"].as_str().expect("id").to_owned();
    let ack = format!("{{\"id\":\"{incident}\",\"by\":\"client\"}}");
    for (method, path, body) in [
        ("POST", "api/v1/incidents/ack", ack.as_str()),
        ("POST", "api/v1/maintenance", "{\"from\":1,\"to\":2,\"reason\":\"x\"}"),
        ("DELETE", "api/v1/maintenance/1", ""),
        ("PUT", "api/v1/maintenance/1", "{\"from\":1,\"to\":2}"),
        ("POST", "actions/ack", ""),
    ] {
        for auth in [vec![], vec![("Authorization", admin.as_str())]] {
            let r = http_call(addr, method, &format!("{link}{path}"), &auth, body).expect("write");
            assert_eq!(r.status, 405, "{method} {path}: {}", r.body);
        }
    }
    assert_eq!(acks(addr, &admin), acks_before, "a write through a link changed something");
    let r = get(addr, "/api/v1/maintenance", &admin);
    assert_eq!(r.body.matches("\"id\"").count(), 3, "{}", r.body);
}

/// A forged link (a made-up secret, another link's secret under this id, an unknown id) and a
/// revoked link are refused on every path with the same 404 and change nothing; another client's
/// link does not show this client's hosts; create and revoke are audited.
#[test]
fn forged_revoked_and_other_clients_links_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let (collector, admin) = two_clients(&data);
    let addr = collector.http;
    let acme = create_link(&data, "acme");
    let globex = create_link(&data, "globex");
    let token = |link: &str| link.trim_matches('/').trim_start_matches("c/").to_owned();
    let (acme_id, acme_secret) =
        token(&acme).split_once('.').map(|(a, b)| (a.to_owned(), b.to_owned())).expect("shape");
    let (globex_id, globex_secret) =
        token(&globex).split_once('.').map(|(a, b)| (a.to_owned(), b.to_owned())).expect("shape");
    let unknown = get(addr, &format!("/c/{acme_id}.{}/", "0".repeat(64)), "");
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("not valid"), "{}", unknown.body);

    let state = |collector: &Collector| {
        (
            acks(collector.http, &admin),
            get(collector.http, "/api/v1/maintenance", &admin).body,
            String::from_utf8_lossy(&collector_cmd_with(&data, &["client-link", "list"]).stdout).into_owned(),
        )
    };
    let before = state(&collector);
    let flipped = format!("{}{}", &acme_secret[..63], if acme_secret.ends_with('0') { '1' } else { '0' });
    let forged = [
        format!("/c/{acme_id}.{globex_secret}/"),
        format!("/c/{globex_id}.{acme_secret}/"),
        format!("/c/{acme_id}.{flipped}/"),
        format!("/c/999.{acme_secret}/"),
        format!("/c/{acme_secret}/"),
        format!("/c/{acme_id}/"),
        "/c//".to_owned(),
        format!("/c/{acme_id}.{}/", acme_secret.to_uppercase()),
    ];
    let paths = [
        "",
        "reports/sla?format=json",
        "reports/sla?format=csv",
        "api/v1/hosts",
        "api/v1/incidents",
        "api/v1/hosts/acme-01/checks",
    ];
    for link in &forged {
        for path in paths {
            let r = get(addr, &format!("{link}{path}"), "");
            assert_eq!(r.status, 404, "{link}{path}: {}", r.body);
            assert!(!r.body.contains("acme-01"), "{link}{path}: {}", r.body);
        }
        // With a credential too: a link is not a user's page.
        assert_eq!(get(addr, &format!("{link}api/v1/hosts"), &admin).status, 404, "{link}");
    }
    // The other client's link: its own hosts only, ours are unknown to it.
    let theirs = get(addr, &format!("{globex}api/v1/hosts"), "");
    assert_eq!(theirs.status, 200);
    assert!(theirs.body.contains("globex-01") && !theirs.body.contains("acme"), "{}", theirs.body);
    for path in ["reports/sla?format=json&host=acme-01", "api/v1/hosts/acme-01/checks", "api/v1/incidents?host=acme-01"]
    {
        assert_eq!(get(addr, &format!("{globex}{path}"), "").status, 404, "{path}");
    }
    let report = get(addr, &format!("{globex}reports/sla?format=csv"), "");
    assert!(report.body.contains("globex-01") && !report.body.contains("acme"), "{}", report.body);
    assert_eq!(state(&collector), before, "a refused link changed something");

    // Revoked by client name: refused at once on every path; the other client's link still works.
    let out = collector_cmd_with(&data, &["client-link", "revoke", "acme"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("revoked client link {acme_id}")));
    for path in paths {
        let r = get(addr, &format!("{acme}{path}"), "");
        assert_eq!(r.status, 404, "revoked {path}: {}", r.body);
        assert!(!r.body.contains("acme-01"), "{}", r.body);
    }
    assert_eq!(get(addr, &globex, "").status, 200);
    // By id.
    let out = collector_cmd_with(&data, &["client-link", "revoke", &globex_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(get(addr, &globex, "").status, 404);
    let out = collector_cmd_with(&data, &["client-link", "revoke", "acme"]);
    assert!(!out.status.success(), "revoking nothing succeeded");
    let list = String::from_utf8_lossy(&collector_cmd_with(&data, &["client-link", "list"]).stdout).into_owned();
    let lines: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{list}");
    for line in &lines {
        let revoked = line.split_whitespace().nth(3).expect("REVOKED_MS column");
        assert!(revoked.parse::<i64>().is_ok(), "not revoked: {line}");
    }
    assert!(list.contains("for acme") && list.contains("for globex"), "{list}");
    // An unknown client gets no link.
    let out = collector_cmd_with(&data, &["client-link", "create", "initech"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no client \"initech\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The audit: both creations and revocations, without secrets.
    let audit = String::from_utf8_lossy(&collector_cmd_with(&data, &["audit", "--limit", "100"]).stdout).into_owned();
    let rows: Vec<String> = audit.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    for row in [
        format!("cli admin local link create acme 0 done link {acme_id} for acme"),
        format!("cli admin local link create globex 0 done link {globex_id} for globex"),
        format!("cli admin local link revoke acme 0 done link {acme_id}"),
        format!("cli admin local link revoke globex 0 done link {globex_id}"),
    ] {
        assert!(rows.iter().any(|l| l.ends_with(&row)), "{row:?} not audited:\n{audit}");
    }
    assert!(!audit.contains(&acme_secret) && !audit.contains(&globex_secret), "{audit}");
}
