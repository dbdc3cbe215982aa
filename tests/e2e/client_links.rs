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
    // 22:00 and 23:30 in Moscow (UTC+3) on 2026-11-30.
    assert_eq!(w["from_ms"], 1_796_065_200_000_i64);
    assert_eq!(w["to_ms"], 1_796_070_600_000_i64);
    let after = get(addr, &location, &operator);
    assert!(after.body.contains(&format!("Maintenance window {} declared.", w["id"])), "{}", after.body);
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
