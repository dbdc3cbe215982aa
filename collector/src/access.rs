//! HTTP access control: roles, user credentials (Basic and Bearer), the request guard with the
//! audit of every write, the admin-only audit API, and the security headers of every response.
//!
//! ## Rules
//! - `/-/healthy` and `/-/ready` are open (probes).
//! - `/c/<token>/...` (client links, `crate::client_link`) needs no user: the token is the
//!   credential, checked here; GET and HEAD only, whatever the user.
//! - GET and HEAD need `viewer` (`/api/v1/audit`: `admin`); every other method needs `operator`.
//! - Without a credential a request is anonymous: while no user exists and the listener is bound
//!   to a loopback address, anonymous requests may do everything (the quick start); otherwise
//!   they may read when `http.anonymous_read` is true, and nothing else.
//! - A credential that does not verify is refused (401) even where anonymous access would do.
//!
//! Users are read from the database at start and every [`REFRESH`]; a secret is 256 random bits
//! stored as SHA-256 of a per-user salt and the secret, compared in constant time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::{self, Role, salted_hash};
use crate::config::HttpConfig;
use crate::store::credential::{AccessStore, AuditEntry, StoredUser};
use crate::store::{self, Error};

/// How often user changes made with the CLI are picked up.
pub const REFRESH: Duration = Duration::from_secs(10);
/// Largest body of a write request, in bytes; larger bodies are refused with 413.
pub const MAX_WRITE_BODY: usize = 64 * 1024;

/// Whether `secret` is the user's secret (constant-time comparison of the hashes).
pub fn verify_user(user: &StoredUser, secret: &str) -> bool {
    auth::verify_salted(&user.salt, &user.secret_hash, secret)
}

/// The user name and secret of an `authorization` header: `Bearer <name>.<secret>`, or `Basic`
/// with the user name and, as password, the secret or the whole token.
pub fn presented(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        let (name, secret) = crate::auth::parse(value)?;
        return Some((name.to_owned(), secret.to_owned()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(value).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    let secret = match crate::auth::parse(password) {
        Some((token_name, secret)) if token_name == name => secret,
        _ => password,
    };
    Some((name.to_owned(), secret.to_owned()))
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing (probes).
    Open,
    /// At least this role.
    Role(Role),
}

/// Whether `method` changes something (and is audited).
pub fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// What `method path` needs.
pub fn need(method: &Method, path: &str) -> Need {
    if is_write(method) {
        return Need::Role(Role::Operator);
    }
    match path {
        "/-/healthy" | "/-/ready" => Need::Open,
        "/api/v1/audit" => Need::Role(Role::Admin),
        _ => Need::Role(Role::Viewer),
    }
}

/// The guard's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on as this user (`anonymous` without a credential) with this role.
    Allow {
        /// User name.
        user: String,
        /// Role judged with.
        role: Role,
    },
    /// 401: no or a wrong credential where one is needed.
    Unauthorized(String),
    /// 403: the credential (or its absence) does not allow this.
    Forbidden(String),
}

/// Users, configuration and the audit connection of the HTTP listener.
#[derive(Debug)]
pub struct Access {
    store: AccessStore,
    forms: Arc<crate::forms::FormKey>,
    users: RwLock<HashMap<String, StoredUser>>,
    anonymous_read: bool,
    bind: SocketAddr,
    refusals: std::sync::Mutex<RefusalBudget>,
}

/// Refused writes audited per second at most: a flood of refused requests must not turn into a
/// flood of database writes competing with ingest. The excess is counted and reported in the next
/// refusal's row.
pub const REFUSALS_AUDITED_PER_SEC: u32 = 20;

/// Rows of refusals written in the current second, and refusals not written since the last row.
#[derive(Debug, Default)]
struct RefusalBudget {
    second: i64,
    written: u32,
    suppressed: u64,
}

impl RefusalBudget {
    /// Whether a refusal at `now_ms` gets its own row; `Some(n)`: yes, and `n` refusals before it
    /// did not.
    fn take(&mut self, now_ms: i64) -> Option<u64> {
        let second = now_ms.div_euclid(1000);
        if second != self.second {
            self.second = second;
            self.written = 0;
        }
        if self.written >= REFUSALS_AUDITED_PER_SEC {
            self.suppressed += 1;
            return None;
        }
        self.written += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Access {
    /// Opens the access store in `data_dir` and loads the users.
    ///
    /// # Errors
    /// When the database cannot be opened or read.
    pub fn open(
        data_dir: &std::path::Path,
        http: &HttpConfig,
        bind: SocketAddr,
        max_db_bytes: Option<u64>,
    ) -> Result<Arc<Access>, Error> {
        let conn = store::open_connection(data_dir)?;
        let forms = Arc::new(crate::forms::FormKey::new(store::credential::form_key(&conn, crate::now_ms())?));
        // Audit rows stop at the database bound like every other write.
        store::bound_size(&conn, max_db_bytes)?;
        let access = Access {
            store: AccessStore::new(conn),
            forms,
            users: RwLock::default(),
            anonymous_read: http.anonymous_read,
            bind,
            refusals: std::sync::Mutex::default(),
        };
        access.reload()?;
        Ok(Arc::new(access))
    }

    /// An access state over `users` without a database (tests of the rules).
    #[cfg(test)]
    fn with_users(users: Vec<StoredUser>, anonymous_read: bool, bind: SocketAddr) -> Access {
        let conn = rusqlite::Connection::open_in_memory().expect("in-memory database");
        Access {
            store: AccessStore::new(conn),
            forms: Arc::new(crate::forms::FormKey::new(vec![7; 32])),
            users: RwLock::new(users.into_iter().map(|u| (u.name.clone(), u)).collect()),
            anonymous_read,
            bind,
            refusals: std::sync::Mutex::default(),
        }
    }

    /// Re-reads the users from the database; returns how many there are. Blocking.
    ///
    /// # Errors
    /// SQLite errors (the previous users stay in force).
    pub fn reload(&self) -> Result<usize, Error> {
        let users: HashMap<String, StoredUser> = self.store.users()?.into_iter().map(|u| (u.name.clone(), u)).collect();
        let n = users.len();
        *self.users.write().unwrap_or_else(std::sync::PoisonError::into_inner) = users;
        Ok(n)
    }

    fn loopback(&self) -> bool {
        self.bind.ip().to_canonical().is_loopback()
    }

    /// Logs how access is configured, with a warning when writes are refused to everyone.
    pub fn log_startup(&self, tls: bool) {
        let users = self.users.read().unwrap_or_else(std::sync::PoisonError::into_inner).len();
        if users == 0 && self.loopback() {
            info!(
                http = %self.bind,
                "no HTTP user exists and the listener is on loopback: requests from this machine may write; \
                 create users with `b24watch-collector user add NAME --role operator` before binding elsewhere"
            );
        } else if users == 0 {
            warn!(
                http = %self.bind,
                "HTTP writes are refused: the listener is not on a loopback address and no user exists; \
                 create one with `b24watch-collector user add NAME --role operator`"
            );
        } else {
            info!(users, anonymous_read = self.anonymous_read, "HTTP access control on");
        }
        if !self.loopback() && !tls && users > 0 {
            warn!(
                http = %self.bind,
                "HTTP credentials cross the network in clear text: set http.tls_cert_file and http.tls_key_file"
            );
        }
    }

    /// Decides whether a request needing `need` may go on, given its `authorization` header
    /// (`Some("")` when the header was not valid text).
    pub fn judge(&self, need: Role, authorization: Option<&str>) -> Verdict {
        let users = self.users.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(header) = authorization {
            let user = presented(header).and_then(|(name, secret)| match users.get(&name) {
                Some(u) => verify_user(u, &secret).then_some(u),
                None => {
                    // The same work as for a known name, so timing does not tell which names exist.
                    std::hint::black_box(salted_hash(&[0; 16], &secret));
                    None
                }
            });
            return match user {
                None => Verdict::Unauthorized(
                    "invalid credential: expected HTTP Basic (user name and secret) or Bearer <name>.<secret> \
                     of a user created with `b24watch-collector user add`"
                        .into(),
                ),
                Some(u) if u.role >= need => Verdict::Allow { user: u.name.clone(), role: u.role },
                Some(u) => Verdict::Forbidden(format!(
                    "user {:?} has role {}; this request needs {}",
                    u.name,
                    u.role.as_str(),
                    need.as_str()
                )),
            };
        }
        let anonymous = if users.is_empty() && self.loopback() {
            Some(Role::Admin)
        } else if self.anonymous_read {
            Some(Role::Viewer)
        } else {
            None
        };
        match anonymous {
            Some(role) if role >= need => Verdict::Allow { user: "anonymous".into(), role },
            _ if users.is_empty() => Verdict::Forbidden(format!(
                "refused: the HTTP listener {} is not a loopback address and no user exists; create one with \
                 `b24watch-collector user add NAME --role {}` and send its credential (HTTP Basic or Bearer)",
                self.bind,
                need.as_str()
            )),
            _ => Verdict::Unauthorized(format!(
                "a credential is needed: HTTP Basic or Bearer of a user with role {} or higher",
                need.as_str()
            )),
        }
    }

    /// The audit log, newest first. Blocking.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn audit_entries(&self, since_ms: i64, limit: usize) -> Result<Vec<AuditEntry>, Error> {
        self.store.audit_entries(since_ms, limit)
    }
}

/// Re-reads the users every [`REFRESH`] until `shutdown`.
pub async fn refresh_loop(access: Arc<Access>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(REFRESH);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let access = Arc::clone(&access);
        match tokio::task::spawn_blocking(move || access.reload()).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => warn!(error = %err, "refreshing HTTP users"),
            Err(err) => warn!(error = %err, "refreshing HTTP users"),
        }
    }
}

fn json_error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

fn refusal(verdict: Verdict) -> Response {
    match verdict {
        Verdict::Allow { .. } => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Verdict::Unauthorized(message) => {
            let mut response = json_error(StatusCode::UNAUTHORIZED, message);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"b24watch\", charset=\"UTF-8\""),
            );
            response
        }
        Verdict::Forbidden(message) => json_error(StatusCode::FORBIDDEN, message),
    }
}

async fn write_audit(access: &Arc<Access>, entry: AuditEntry) {
    let access = Arc::clone(access);
    match tokio::task::spawn_blocking(move || access.store.audit(&entry)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn!(error = %err, "writing the HTTP audit log"),
        Err(err) => warn!(error = %err, "writing the HTTP audit log"),
    }
}

/// The guard of client links: read-only methods, a token naming an unrevoked link whose secret
/// matches, else 404 (the same for a forged, mistyped or revoked link). Tells the handlers the
/// link's client ([`crate::client_link::LinkScope`]); responses are not to be cached or indexed.
async fn link_guard(access: Arc<Access>, mut request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, "a client link is read-only".into());
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let path = request.uri().path();
    let token = path[crate::client_link::PREFIX.len()..].split('/').next().unwrap_or("").to_owned();
    let found = {
        let access = Arc::clone(&access);
        tokio::task::spawn_blocking(move || access.store.client_link(&token)).await
    };
    let (id, client) = match found {
        Ok(Ok(Some(link))) => link,
        Ok(Ok(None)) => {
            return (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "This link is not valid: it was revoked, or it is mistyped. Ask your support contractor for a new one.\n",
            )
                .into_response();
        }
        Ok(Err(err)) => return json_error(StatusCode::SERVICE_UNAVAILABLE, format!("query failed: {err}")),
        Err(err) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("query task failed: {err}")),
    };
    request.extensions_mut().insert(crate::client_link::LinkScope { id, client });
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    headers.insert("x-robots-tag", HeaderValue::from_static("noindex, nofollow"));
    response
}

/// The request guard: applies the rules of this module, audits every write, and tells the
/// handlers who the request came from ([`crate::forms::Principal`]).
pub async fn guard(State(access): State<Arc<Access>>, mut request: Request, next: Next) -> Response {
    if request.uri().path().starts_with(crate::client_link::PREFIX) {
        return link_guard(access, request, next).await;
    }
    let Need::Role(need) = need(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let authorization = request.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("").to_owned());
    let authorization = authorization.as_deref();
    let verdict = access.judge(need, authorization);
    let signed_in = authorization.is_some();
    let principal = |user: &str, role: Role| crate::forms::Principal {
        user: user.to_owned(),
        role,
        signed_in,
        forms: Arc::clone(&access.forms),
    };
    if !is_write(request.method()) {
        return match verdict {
            Verdict::Allow { user, role } => {
                let principal = principal(&user, role);
                request.extensions_mut().insert(crate::auth::RequestUser(user));
                request.extensions_mut().insert(principal);
                next.run(request).await
            }
            refused => refusal(refused),
        };
    }
    let presented_name = authorization.and_then(presented).map(|(name, _)| name);
    let mut entry = AuditEntry {
        at_ms: crate::now_ms(),
        user: presented_name.unwrap_or_else(|| "anonymous".into()),
        role: "none".into(),
        peer: request.extensions().get::<ConnectInfo<SocketAddr>>().map_or_else(|| "-".into(), |c| c.0.to_string()),
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        status: 0,
        outcome: "refused".into(),
        detail: String::new(),
    };
    let (user, role) = match verdict {
        Verdict::Allow { user, role } => (user, role),
        refused => {
            let response = refusal(refused.clone());
            entry.status = response.status().as_u16();
            entry.detail = match refused {
                Verdict::Unauthorized(m) | Verdict::Forbidden(m) => m,
                Verdict::Allow { .. } => String::new(),
            };
            let budget = access.refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take(entry.at_ms);
            match budget {
                Some(0) => write_audit(&access, entry).await,
                Some(suppressed) => {
                    entry.detail = format!(
                        "{} (and {suppressed} refused writes before this one, over the audit rate)",
                        entry.detail
                    );
                    write_audit(&access, entry).await;
                }
                None => {}
            }
            return response;
        }
    };
    let principal = principal(&user, role);
    entry.user = user;
    entry.role = role.as_str().into();
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(principal);
    parts.extensions.insert(crate::auth::RequestUser(entry.user.clone()));
    let bytes = match axum::body::to_bytes(body, MAX_WRITE_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let message = format!("request body over {MAX_WRITE_BODY} bytes (or not readable)");
            entry.status = StatusCode::PAYLOAD_TOO_LARGE.as_u16();
            entry.detail.clone_from(&message);
            write_audit(&access, entry).await;
            return json_error(StatusCode::PAYLOAD_TOO_LARGE, message);
        }
    };
    entry.detail = if crate::forms::is_form(&parts.headers) {
        // A form's token is a credential of sorts: it is not kept.
        crate::forms::without_token(&bytes)
    } else {
        String::from_utf8_lossy(&bytes[..bytes.len().min(store::credential::AUDIT_DETAIL_BYTES)]).into_owned()
    };
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    entry.status = response.status().as_u16();
    // A form's success is a redirect to the page saying what was done.
    let done = response.status().is_success() || response.status().is_redirection();
    entry.outcome = if done { "done" } else { "failed" }.into();
    entry.at_ms = crate::now_ms();
    write_audit(&access, entry).await;
    response
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Deserialize)]
struct AuditQuery {
    /// Unix ms; default: everything kept.
    since: Option<i64>,
    /// Rows at most, newest first (1..=1000, default 100).
    limit: Option<usize>,
}

async fn audit_api(State(access): State<Arc<Access>>, Query(q): Query<AuditQuery>) -> Response {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return json_error(StatusCode::BAD_REQUEST, format!("limit {limit}: expected 1..=1000"));
    }
    let since = q.since.unwrap_or(0);
    match tokio::task::spawn_blocking(move || access.audit_entries(since, limit)).await {
        Ok(Ok(entries)) => axum::Json(serde_json::json!({ "since": since, "entries": entries })).into_response(),
        Ok(Err(err)) => json_error(StatusCode::SERVICE_UNAVAILABLE, format!("query failed: {err}")),
        Err(err) => json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("query task failed: {err}")),
    }
}

/// The Content-Security-Policy of every response: no scripts at all, the pages' one stylesheet
/// by its hash, forms posting only to the collector itself, no framing.
fn content_security_policy() -> &'static str {
    static CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(crate::report::STYLE.as_bytes()));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self'; base-uri 'none'; form-action 'self'; \
             frame-ancestors 'none'"
        )
    });
    &CSP
}

/// Adds the security headers to every response.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(content_security_policy()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// Puts `router` behind access control: adds `GET /api/v1/audit`, the guard and the security
/// headers.
pub fn protect(router: Router, access: Arc<Access>) -> Router {
    router
        .merge(Router::new().route("/api/v1/audit", axum::routing::get(audit_api)).with_state(Arc::clone(&access)))
        .layer(axum::middleware::from_fn_with_state(access, guard))
        .layer(axum::middleware::from_fn(security_headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role) -> (StoredUser, String) {
        let (token, salt, hash) = auth::generate_user(name).expect("random");
        (StoredUser { name: name.into(), role, salt: salt.to_vec(), secret_hash: hash.to_vec() }, token)
    }

    fn basic(name: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}")))
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn loopback_without_users_may_write_and_elsewhere_nobody_may() {
        let local = Access::with_users(Vec::new(), true, addr("127.0.0.1:10061"));
        assert!(matches!(local.judge(Role::Operator, None), Verdict::Allow { role: Role::Admin, .. }));
        let v6 = Access::with_users(Vec::new(), true, addr("[::1]:10061"));
        assert!(matches!(v6.judge(Role::Operator, None), Verdict::Allow { .. }));
        let open = Access::with_users(Vec::new(), true, addr("0.0.0.0:10061"));
        match open.judge(Role::Operator, None) {
            Verdict::Forbidden(m) => assert!(m.contains("user add NAME --role operator"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(open.judge(Role::Viewer, None), Verdict::Allow { role: Role::Viewer, .. }));
        let closed = Access::with_users(Vec::new(), false, addr("0.0.0.0:10061"));
        assert!(matches!(closed.judge(Role::Viewer, None), Verdict::Forbidden(_)));
    }

    #[test]
    fn roles_basic_and_bearer_decide_and_a_wrong_secret_is_401() {
        let (viewer, viewer_token) = user("ann", Role::Viewer);
        let (operator, operator_token) = user("op.1", Role::Operator);
        let access = Access::with_users(vec![viewer, operator], false, addr("127.0.0.1:1"));
        // A user exists: anonymous requests on loopback no longer write, nor read here.
        assert!(matches!(access.judge(Role::Operator, None), Verdict::Unauthorized(_)));
        assert!(matches!(access.judge(Role::Viewer, None), Verdict::Unauthorized(_)));
        let bearer = format!("Bearer {operator_token}");
        assert!(matches!(access.judge(Role::Operator, Some(&bearer)), Verdict::Allow { role: Role::Operator, .. }));
        assert!(matches!(access.judge(Role::Admin, Some(&bearer)), Verdict::Forbidden(_)));
        let secret = viewer_token.rsplit_once('.').expect("token").1;
        assert!(matches!(access.judge(Role::Viewer, Some(&basic("ann", secret))), Verdict::Allow { .. }));
        assert!(matches!(access.judge(Role::Viewer, Some(&basic("ann", &viewer_token))), Verdict::Allow { .. }));
        assert!(matches!(access.judge(Role::Operator, Some(&basic("ann", secret))), Verdict::Forbidden(_)));
        let wrong = format!("{}0", &secret[..63]);
        for header in [basic("ann", &wrong), basic("nobody", secret), format!("Bearer ann.{wrong}"), "Digest x".into()]
        {
            assert!(matches!(access.judge(Role::Viewer, Some(&header)), Verdict::Unauthorized(_)), "{header}");
        }
    }

    #[test]
    fn refusals_over_the_audit_rate_are_counted_into_the_next_row() {
        let mut budget = RefusalBudget::default();
        for _ in 0..REFUSALS_AUDITED_PER_SEC {
            assert_eq!(budget.take(5_000), Some(0));
        }
        assert_eq!(budget.take(5_500), None);
        assert_eq!(budget.take(5_999), None);
        assert_eq!(budget.take(6_000), Some(2), "the next second's first row carries the count");
        assert_eq!(budget.take(6_001), Some(0));
    }

    #[test]
    fn reads_writes_probes_and_audit_need_their_roles() {
        assert_eq!(need(&Method::GET, "/-/ready"), Need::Open);
        assert_eq!(need(&Method::GET, "/metrics"), Need::Role(Role::Viewer));
        assert_eq!(need(&Method::GET, "/api/v1/audit"), Need::Role(Role::Admin));
        assert_eq!(need(&Method::POST, "/-/ready"), Need::Role(Role::Operator));
        assert_eq!(need(&Method::DELETE, "/api/v1/maintenance/1"), Need::Role(Role::Operator));
    }
}
