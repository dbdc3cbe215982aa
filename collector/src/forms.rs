//! The status page's forms: acknowledge an incident and declare maintenance from the page, as
//! server-rendered HTML forms (no script), safe against cross-site request forgery.
//!
//! ## How a browser user is known
//! The collector keeps no sessions and sets no cookies. A browser signs in with HTTP Basic: the
//! user name and the token printed by `user add` (`access.rs`). `/ops` is the status page that
//! insists on a credential: without one it answers 401 with `WWW-Authenticate: Basic`, the
//! browser asks for the user name and token once and then answers every later challenge of the
//! collector (the form posts, which redirect back to `/ops`) from its cache. `/` stays readable
//! without signing in when `http.anonymous_read` is on, and shows the forms too when the browser
//! sends an operator's credential. Without users on a loopback listener (the quick start) every
//! request from the machine is an admin, as for the API, and `/ops` needs no sign-in.
//!
//! ## Why a form needs more than the credential
//! A browser attaches cached Basic credentials to requests other sites make it send (and
//! loopback trust needs none at all), so a page elsewhere could post a form here. Every form
//! therefore carries a token: `<expiry ms>.<HMAC-SHA256 of the user name and expiry>` under a
//! key kept in the database (`http_secret`, [`crate::store::credential::form_key`]). Another site
//! cannot read the page, so it cannot learn a token. A post is refused with 403, changing
//! nothing, when the token is missing, altered, expired or another user's, when
//! `Sec-Fetch-Site` says the request came from another site, or when `Origin` is neither the
//! collector's own (the `Host` it was asked at) nor `collector.external_url`'s. Refusals and
//! successes are audited like every write (the token itself is not kept in the audit).
//!
//! The page shows the forms to operators and admins only; a viewer sees who acknowledged what,
//! and a viewer's post is refused by the guard (403) before it reaches a form handler.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::Role;
use crate::http::AppState;
use crate::i18n::{Lang, Msg, Page};
use crate::report::{StatusRow, StatusView, html_escape};
use crate::sla::Ms;
use crate::uptime::{IncidentRef, IncidentRow};

/// Who a request was let in as: the guard puts it in the request's extensions, where the status
/// page and its forms (`crate::forms`) read it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// User name (`anonymous` without a credential).
    pub user: String,
    /// Role judged with.
    pub role: Role,
    /// Whether the request carried a credential (a browser signed in with HTTP Basic).
    pub signed_in: bool,
    /// Signs and checks the form tokens.
    pub forms: Arc<FormKey>,
}

/// How long a form token is accepted after the page was served: a working day.
pub const TOKEN_LIFETIME_MS: Ms = 8 * 3_600_000;
/// The form field holding the token.
pub const TOKEN_FIELD: &str = "csrf";

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts` under `key`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Signs and checks form tokens bound to a user name.
pub struct FormKey(Vec<u8>);

impl std::fmt::Debug for FormKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FormKey(..)")
    }
}

/// Why a form token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// No token in the form.
    Missing,
    /// Not shaped like a token, or signed for someone else or with another key.
    Invalid,
    /// Past its expiry (or with an expiry further ahead than tokens are issued for).
    Expired,
}

impl TokenError {
    /// What the refusal says.
    pub fn message(self) -> &'static str {
        match self {
            TokenError::Missing => "the form token is missing: post the forms of the status page",
            TokenError::Invalid => "the form token is not valid for this user: reload the page and try again",
            TokenError::Expired => "the form has expired: reload the page and try again",
        }
    }
}

impl FormKey {
    /// A key of these bytes.
    pub fn new(key: Vec<u8>) -> Self {
        FormKey(key)
    }

    fn mac(&self, user: &str, expiry: Ms) -> [u8; 32] {
        hmac_sha256(&self.0, &[b"b24watch form\0", user.as_bytes(), b"\0", expiry.to_string().as_bytes()])
    }

    /// A token for `user`, valid for [`TOKEN_LIFETIME_MS`] from `now`.
    pub fn token(&self, user: &str, now: Ms) -> String {
        let expiry = now.saturating_add(TOKEN_LIFETIME_MS);
        format!("{expiry}.{}", hex(&self.mac(user, expiry)))
    }

    /// Whether `token` was issued to `user` by this key and is still valid at `now`; the MAC is
    /// compared in constant time.
    ///
    /// # Errors
    /// Why it is not.
    pub fn check(&self, user: &str, token: Option<&str>, now: Ms) -> Result<(), TokenError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        let (expiry, mac) = token.split_once('.').ok_or(TokenError::Invalid)?;
        let expiry: Ms = expiry.parse().map_err(|_| TokenError::Invalid)?;
        let expected = hex(&self.mac(user, expiry));
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return Err(TokenError::Invalid);
        }
        if expiry <= now || expiry > now.saturating_add(TOKEN_LIFETIME_MS + 60_000) {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

/// Whether a request's body is an HTML form (`application/x-www-form-urlencoded`).
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// A form body as the audit keeps it: without its token, bounded.
pub fn without_token(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let kept: Vec<&str> =
        text.split('&').filter(|pair| pair.split('=').next() != Some(TOKEN_FIELD) && !pair.is_empty()).collect();
    let mut kept = kept.join("&");
    let max = crate::store::credential::AUDIT_DETAIL_BYTES;
    if kept.len() > max {
        let mut end = max;
        while !kept.is_char_boundary(end) {
            end -= 1;
        }
        kept.truncate(end);
    }
    kept
}

/// The origin (`scheme://host[:port]`) of a URL.
fn origin_of(url: &str) -> &str {
    match url.find("://") {
        Some(at) => url[at + 3..].find('/').map_or(url, |end| &url[..at + 3 + end]),
        None => url,
    }
}

/// Refuses a post another site made the browser send: `Sec-Fetch-Site` other than
/// `same-origin` or `none`, or an `Origin` that is neither the collector's own (the `Host` asked
/// at) nor `external_url`'s. Requests with neither header (command-line clients) pass here and
/// still need a valid token.
///
/// # Errors
/// Why the request is refused.
pub fn same_origin(headers: &HeaderMap, external_url: &str) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        if !matches!(site, "same-origin" | "none") {
            return Err(format!("a form posted from another site is refused (Sec-Fetch-Site: {site})"));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let authority = origin.split_once("://").map(|(_, a)| a);
        let own = (!host.is_empty() && authority.is_some_and(|a| a.eq_ignore_ascii_case(host)))
            || origin.eq_ignore_ascii_case(origin_of(external_url));
        if !own {
            return Err(format!("a form posted from another origin is refused (Origin: {origin})"));
        }
    }
    Ok(())
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/ops", get(ops))
        .route("/actions/ack", axum::routing::post(acknowledge))
        .route("/actions/resolve", axum::routing::post(resolve))
        .route("/actions/maintenance", get(maintenance_page).post(declare_maintenance))
}

/// What the status page says after a form did its work (post-redirect-get): `done=acknowledged`
/// with `incident`, or `done=maintenance` with `window`.
#[derive(Debug, Default, Deserialize)]
pub struct Notice {
    done: Option<String>,
    incident: Option<String>,
    window: Option<i64>,
}

/// Whether `id` looks like an incident id (what the redirect may carry).
fn incident_id_shaped(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn notice_html(notice: &Notice, p: &Page) -> String {
    let text = match (notice.done.as_deref(), &notice.incident, notice.window) {
        (Some("acknowledged"), Some(id), _) if incident_id_shaped(id) => p.f(Msg::DoneAcknowledged, &[id]),
        (Some("maintenance"), _, Some(id)) => p.f(Msg::DoneMaintenance, &[&id]),
        (Some("resolved"), Some(id), _) if incident_id_shaped(id) => p.f(Msg::DoneResolved, &[id]),
        _ => return String::new(),
    };
    format!("<p class=\"notice\" role=\"status\">{}</p>", html_escape(&text))
}

/// Whether `principal` may use the forms.
fn may_act(principal: Option<&Principal>) -> bool {
    principal.is_some_and(|p| p.role >= Role::Operator)
}

/// The status page for the collector's own users: with the acknowledge forms and the link to
/// declare maintenance for an operator, a sign-in link otherwise.
pub fn status_page(
    rows: &[StatusRow],
    remote_write: &[Arc<crate::metrics::RemoteWriteStats>],
    now: Ms,
    p: &Page,
    principal: Option<&Principal>,
    notice: &Notice,
) -> String {
    let lang = p.lang.code();
    let mut top = notice_html(notice, p);
    top.push_str("<p class=\"actions\">");
    match principal {
        Some(who) if may_act(principal) => {
            if who.signed_in {
                top.push_str(&html_escape(&p.f(Msg::SignedInAs, &[&who.user, &who.role.as_str()])));
                top.push(' ');
            }
            let _ = write!(top, "<a href=\"/actions/maintenance?lang={lang}\">{}</a>", p.t(Msg::DeclareMaintenance));
        }
        Some(who) if who.signed_in => {
            let _ = write!(
                top,
                "{} {}",
                html_escape(&p.f(Msg::SignedInAs, &[&who.user, &who.role.as_str()])),
                p.t(Msg::NeedsOperator)
            );
        }
        _ => {
            let _ = write!(top, "{} <a href=\"/ops?lang={lang}\">{}</a>", p.t(Msg::SignInToAct), p.t(Msg::SignIn));
        }
    }
    top.push_str("</p>");
    let form = |i: &IncidentRow| -> String {
        let who = principal.filter(|_| may_act(principal));
        // An incident opened by hand is resolved by hand (one opened by a check ends with it).
        let resolve = match who {
            Some(who) if i.check == "manual" && i.end_ms.is_none() => format!(
                "<form class=\"inline resolve\" method=\"post\" action=\"/actions/resolve\">\
                 <input type=\"hidden\" name=\"{TOKEN_FIELD}\" value=\"{token}\">\
                 <input type=\"hidden\" name=\"id\" value=\"{id}\"><input type=\"hidden\" name=\"lang\" value=\"{lang}\">\
                 <button type=\"submit\">{label}</button></form>",
                token = html_escape(&who.forms.token(&who.user, now)),
                id = html_escape(&i.id),
                label = p.t(Msg::Resolve),
            ),
            _ => String::new(),
        };
        if let (Some(at), Some(by)) = (i.ack_ms, &i.ack_by) {
            return format!(
                " <span class=\"detail acknowledged\">{}</span>{resolve}",
                html_escape(&p.f(Msg::AcknowledgedBy, &[by, &p.time(at)]))
            );
        }
        let Some(who) = who else { return String::new() };
        let by = if who.signed_in {
            String::new()
        } else {
            format!(
                "<input name=\"by\" placeholder=\"{}\" required maxlength=\"{}\" size=\"10\"> ",
                p.t(Msg::By),
                crate::http::MAX_BY_BYTES
            )
        };
        format!(
            "<form class=\"inline ack\" method=\"post\" action=\"/actions/ack\">\
             <input type=\"hidden\" name=\"{TOKEN_FIELD}\" value=\"{token}\">\
             <input type=\"hidden\" name=\"id\" value=\"{id}\"><input type=\"hidden\" name=\"lang\" value=\"{lang}\">\
             {by}<button type=\"submit\">{label}</button></form>{resolve}",
            token = html_escape(&who.forms.token(&who.user, now)),
            id = html_escape(&i.id),
            label = p.t(Msg::Acknowledge),
        )
    };
    let view = StatusView { top, incident_actions: Some(&form), ..StatusView::default() };
    crate::report::status_html_with(rows, remote_write, now, p, &view)
}

fn html_response(status: StatusCode, body: String, lang: Lang) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CONTENT_LANGUAGE, lang.code())], body)
        .into_response()
}

/// A page saying why a form did nothing, linking back to the status page.
fn refused(status: StatusCode, p: &Page, message: &str) -> Response {
    let mut out = String::new();
    crate::report::head(&mut out, p, p.t(Msg::NotDone), false);
    let _ = write!(
        out,
        "<p class=\"refused\" role=\"alert\">{}</p><p><a href=\"/ops?lang={}\">{}</a></p></body></html>",
        html_escape(message),
        p.lang.code(),
        p.t(Msg::BackToStatus)
    );
    html_response(status, out, p.lang)
}

/// 303 to the operators' status page with a notice.
fn done(query: &str, lang: Lang) -> Response {
    let location = format!("/ops?{query}&lang={}", lang.code());
    match HeaderValue::from_str(&location) {
        Ok(value) => (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn page_of(state: &AppState, lang: Option<&str>) -> Page {
    let lang = lang.and_then(|code| Lang::parse(code).ok()).unwrap_or(state.uptime.cfg.language);
    Page::new(lang, state.uptime.cfg.timezone.clone())
}

/// Query of the pages of this module.
#[derive(Debug, Default, Deserialize)]
struct FormQuery {
    lang: Option<String>,
    host: Option<String>,
}

/// The status page (`/`, and `/ops` for a signed-in operator).
async fn index(
    State(state): State<AppState>,
    Query(q): Query<crate::http::PageQuery>,
    Query(notice): Query<Notice>,
    principal: Option<Extension<Principal>>,
) -> Response {
    let lang = match crate::http::page_lang(&state, q.lang.as_deref()) {
        Ok(lang) => lang,
        Err(response) => return *response,
    };
    let timeout_ms = i64::try_from(state.agent_timeout.as_millis()).unwrap_or(i64::MAX);
    let now = crate::now_ms();
    let up: std::collections::HashSet<String> =
        state.live.statuses(now, timeout_ms).into_iter().filter(|h| h.up).map(|h| h.host).collect();
    let uptime = Arc::clone(&state.uptime);
    let page = Page::new(lang, uptime.cfg.timezone.clone());
    match crate::http::blocking(move || crate::report::status_rows(&uptime, &|host: &str| up.contains(host), now)).await
    {
        Ok(rows) => {
            let principal = principal.map(|Extension(p)| p);
            let remote_write = state.metrics.remote_write();
            crate::http::html_page(status_page(&rows, remote_write, now, &page, principal.as_ref(), &notice), lang)
        }
        Err(response) => response,
    }
}

/// `GET /ops`: the status page with the forms, asking the browser for a credential (HTTP Basic)
/// when it sent none. On a loopback listener without users there is nothing to sign in to.
async fn ops(
    state: State<AppState>,
    q: Query<crate::http::PageQuery>,
    notice: Query<Notice>,
    principal: Option<Extension<Principal>>,
) -> Response {
    let signed_in = principal.as_ref().is_some_and(|who| who.signed_in);
    let quick_start = principal.as_ref().is_some_and(|who| !who.signed_in && who.role == Role::Admin);
    if signed_in || quick_start {
        return index(state, q, notice, principal).await;
    }
    let p = page_of(&state, q.lang.as_deref());
    let mut response = refused(
        StatusCode::UNAUTHORIZED,
        &p,
        "Sign in with your b24watch user name and, as password, the token `b24watch-collector user add` printed.",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"b24watch\", charset=\"UTF-8\""));
    response
}

/// The checks every form post passes before it changes anything: an operator, from the
/// collector's own pages, an HTML form, with this user's valid token. Returns who posted and
/// the form.
async fn admit<T: serde::de::DeserializeOwned>(
    state: &AppState,
    principal: Option<Extension<Principal>>,
    headers: &HeaderMap,
    body: &Bytes,
    p: &Page,
) -> Result<(Principal, T), Response> {
    let Some(Extension(who)) = principal else {
        return Err(refused(StatusCode::FORBIDDEN, p, "no user: the request did not pass access control"));
    };
    if who.role < Role::Operator {
        return Err(refused(
            StatusCode::FORBIDDEN,
            p,
            &format!("user {:?} has role {}; this needs operator", who.user, who.role.as_str()),
        ));
    }
    same_origin(headers, &state.links.external_url).map_err(|m| refused(StatusCode::FORBIDDEN, p, &m))?;
    if !is_form(headers) {
        return Err(refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            p,
            "expected an HTML form (application/x-www-form-urlencoded); the JSON API is under /api/v1",
        ));
    }
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|err| refused(StatusCode::BAD_REQUEST, p, &format!("the form does not parse: {err}")))?;
    let token = fields.iter().find(|(k, _)| k == TOKEN_FIELD).map(|(_, v)| v.as_str());
    who.forms.check(&who.user, token, crate::now_ms()).map_err(|e| refused(StatusCode::FORBIDDEN, p, e.message()))?;
    let form: T = serde_urlencoded::from_bytes(body)
        .map_err(|err| refused(StatusCode::BAD_REQUEST, p, &format!("the form does not parse: {err}")))?;
    Ok((who, form))
}

/// A form post that passed [`admit`], for a form handler: the page it answers with, who posted
/// and the form. Extracted as the handlers before took the post apart (user, headers, body), so
/// a refusal is [`admit`]'s page, or the body's own rejection.
struct Posted<T> {
    /// In the language of the form (its hidden `lang` field).
    p: Page,
    who: Principal,
    form: T,
}

impl<T: serde::de::DeserializeOwned + Send> FromRequest<AppState> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let principal = req.extensions().get::<Principal>().cloned().map(Extension);
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        let p = posted_page(state, &body);
        let (who, form) = admit::<T>(state, principal, &headers, &body, &p).await?;
        Ok(Posted { p, who, form })
    }
}

/// Reads the language of a posted form (its hidden `lang` field) before anything else.
fn posted_page(state: &AppState, body: &Bytes) -> Page {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    page_of(state, fields.iter().find(|(k, _)| k == "lang").map(|(_, v)| v.as_str()))
}

/// Runs a store call on the blocking pool; a failure is a 503 page.
async fn blocking<T: Send + 'static>(
    p: &Page,
    query: impl FnOnce() -> Result<T, crate::store::Error> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(query).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(refused(StatusCode::SERVICE_UNAVAILABLE, p, &format!("the store failed: {err}"))),
        Err(err) => Err(refused(StatusCode::INTERNAL_SERVER_ERROR, p, &format!("the task failed: {err}"))),
    }
}

/// The acknowledge form (and the resolve form).
#[derive(Debug, Deserialize)]
struct AckForm {
    id: String,
    #[serde(default)]
    by: String,
}

impl AckForm {
    /// Who acts on the incident the form names: the signed-in user or, on a loopback listener
    /// without users, the name typed in the form (that user when none was typed).
    ///
    /// # Errors
    /// The 400 page of an id not shaped like one from the status page (boxed: a response is
    /// large).
    fn actor(&self, who: &Principal, p: &Page) -> Result<String, Box<Response>> {
        if !incident_id_shaped(&self.id) {
            return Err(Box::new(refused(
                StatusCode::BAD_REQUEST,
                p,
                "id: expected an incident id from the status page",
            )));
        }
        Ok(if who.signed_in || self.by.trim().is_empty() { who.user.clone() } else { self.by.trim().to_owned() })
    }
}

/// `POST /actions/ack`: acknowledges an open or past incident as the signed-in user (or, on a
/// loopback listener without users, as the name typed in the form).
async fn acknowledge(State(state): State<AppState>, Posted { p, who, form }: Posted<AckForm>) -> Response {
    let by = match form.actor(&who, &p) {
        Ok(by) => by,
        Err(response) => return *response,
    };
    if by.len() > crate::http::MAX_BY_BYTES {
        return refused(StatusCode::BAD_REQUEST, &p, &format!("by: at most {} bytes", crate::http::MAX_BY_BYTES));
    }
    let (uptime, admin, id) = (Arc::clone(&state.uptime), Arc::clone(&state.admin), form.id.clone());
    let now = crate::now_ms();
    let found = blocking(&p, move || {
        let Some(incident) = uptime.find_incident(&IncidentRef::Id(id), now)? else { return Ok(false) };
        admin.acknowledge(&incident.host, &incident.check, &incident.target, incident.start_ms, &by, now)?;
        Ok(true)
    })
    .await;
    match found {
        Ok(true) => done(&format!("done=acknowledged&incident={}", form.id), p.lang),
        Ok(false) => refused(StatusCode::NOT_FOUND, &p, &format!("no incident {:?}", form.id)),
        Err(response) => response,
    }
}

/// `POST /actions/resolve`: resolves an incident opened by hand (`POST /api/v1/incidents/open`)
/// as the signed-in user; one opened by a check ends when the check is ok again (409).
async fn resolve(State(state): State<AppState>, Posted { p, who, form }: Posted<AckForm>) -> Response {
    let by = match form.actor(&who, &p) {
        Ok(by) => by,
        Err(response) => return *response,
    };
    let (uptime, admin, id) = (Arc::clone(&state.uptime), Arc::clone(&state.admin), form.id.clone());
    let now = crate::now_ms();
    let done_or = blocking(&p, move || {
        let Some(incident) = uptime.find_incident(&IncidentRef::Id(id.clone()), now)? else {
            return Ok(Err((StatusCode::NOT_FOUND, format!("no incident {id:?}"))));
        };
        if incident.check != "manual" {
            return Ok(Err((
                StatusCode::CONFLICT,
                format!("incident {id} was opened by a check: it ends when the check is ok again"),
            )));
        }
        match admin.resolve_incident(incident.target.parse().unwrap_or_default(), &by, now) {
            Ok(()) => Ok(Ok(())),
            Err(crate::store::Error::Failed(message)) => Ok(Err((StatusCode::CONFLICT, message))),
            Err(err) => Err(err),
        }
    })
    .await;
    match done_or {
        Ok(Ok(())) => done(&format!("done=resolved&incident={}", form.id), p.lang),
        Ok(Err((code, message))) => refused(code, &p, &message),
        Err(response) => response,
    }
}

/// `datetime-local` text (`2026-11-30T22:00`, seconds optional) in `tz`, RFC 3339, or unix ms.
fn form_time(text: &str, tz: &jiff::tz::TimeZone) -> Option<Ms> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<Ms>() {
        return Some(ms);
    }
    if let Some(ms) = crate::config::parse_time(text) {
        return Some(ms);
    }
    let civil: jiff::civil::DateTime = text.parse().ok()?;
    Some(civil.to_zoned(tz.clone()).ok()?.timestamp().as_millisecond())
}

fn local_input(ms: Ms, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| String::new(), |t| t.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M").to_string())
}

/// `GET /actions/maintenance`: the form declaring a maintenance window, and the windows now and
/// to come. Operators only (a viewer is told what is needed).
async fn maintenance_page(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
    Query(q): Query<FormQuery>,
) -> Response {
    let p = page_of(&state, q.lang.as_deref());
    let Some(Extension(who)) = principal.filter(|who| who.role >= Role::Operator) else {
        return refused(StatusCode::FORBIDDEN, &p, p.t(Msg::NeedsOperator));
    };
    let now = crate::now_ms();
    let uptime = Arc::clone(&state.uptime);
    let (hosts, windows) =
        match blocking(&p, move || Ok((uptime.hosts()?, uptime.maintenance_windows(now, crate::http::MAX_TIME_MS)?)))
            .await
        {
            Ok(found) => found,
            Err(response) => return response,
        };
    let tz = &p.tz;
    let mut out = String::new();
    crate::report::head(&mut out, &p, p.t(Msg::DeclareMaintenance), false);
    let _ = write!(
        out,
        "<form class=\"maintenance\" method=\"post\" action=\"/actions/maintenance\">\
         <input type=\"hidden\" name=\"{TOKEN_FIELD}\" value=\"{token}\"><input type=\"hidden\" name=\"lang\" value=\"{lang}\">\
         <p><label>{host_label} <select name=\"host\"><option value=\"\">{all}</option>",
        token = html_escape(&who.forms.token(&who.user, now)),
        lang = p.lang.code(),
        host_label = p.t(Msg::Host),
        all = p.t(Msg::AllHosts),
    );
    for host in &hosts {
        let selected = if q.host.as_deref() == Some(host.as_str()) { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{0}\"{selected}>{0}</option>", html_escape(host));
    }
    let _ = write!(
        out,
        "</select></label></p><p><label>{from_label} <input type=\"datetime-local\" name=\"from\" value=\"{from}\" required></label> \
         <label>{to_label} <input type=\"datetime-local\" name=\"to\" value=\"{to}\" required></label> {zone}</p>\
         <p><label>{reason_label} <input name=\"reason\" required maxlength=\"{max}\" size=\"60\"></label></p>\
         <p><button type=\"submit\">{submit}</button></p></form>",
        from_label = p.t(Msg::From),
        from = local_input(now, tz),
        to_label = p.t(Msg::To),
        to = local_input(now + 3_600_000, tz),
        zone = p.f(Msg::TimesIn, &[&html_escape(tz.iana_name().unwrap_or("UTC"))]),
        reason_label = p.t(Msg::Reason),
        max = crate::http::MAX_REASON_BYTES,
        submit = p.t(Msg::DeclareMaintenance),
    );
    let _ = write!(
        out,
        "<h2>{}</h2><table id=\"maintenance\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        p.t(Msg::ComingMaintenance),
        p.t(Msg::Host),
        p.t(Msg::From),
        p.t(Msg::To),
        p.t(Msg::Reason)
    );
    for w in &windows {
        let host = if w.host.is_empty() { p.t(Msg::AllHosts).to_owned() } else { html_escape(&w.host) };
        let _ = write!(
            out,
            "<tr><td>{host}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            p.time(w.from_ms),
            p.time(w.to_ms),
            html_escape(&w.reason)
        );
    }
    let _ = write!(
        out,
        "</table><p><a href=\"/ops?lang={}\">{}</a></p></body></html>",
        p.lang.code(),
        p.t(Msg::BackToStatus)
    );
    html_response(StatusCode::OK, out, p.lang)
}

/// The maintenance form.
#[derive(Debug, Deserialize)]
struct MaintenanceForm {
    #[serde(default)]
    host: String,
    from: String,
    to: String,
    #[serde(default)]
    reason: String,
}

/// `POST /actions/maintenance`: declares a window (times in the SLA time zone, as the form
/// shows them).
async fn declare_maintenance(
    State(state): State<AppState>,
    Posted { p, who, form }: Posted<MaintenanceForm>,
) -> Response {
    let (Some(from), Some(to)) = (form_time(&form.from, &p.tz), form_time(&form.to, &p.tz)) else {
        return refused(StatusCode::BAD_REQUEST, &p, "from and to: expected a date and time such as 2026-11-30T22:00");
    };
    if !(0..=crate::http::MAX_TIME_MS).contains(&from) || !(0..=crate::http::MAX_TIME_MS).contains(&to) {
        return refused(StatusCode::BAD_REQUEST, &p, "from and to: out of range");
    }
    if from >= to {
        return refused(StatusCode::BAD_REQUEST, &p, "the window must end after it starts");
    }
    // Declared by the signed-in user (the quick start's loopback user without sign-in).
    let by = who.user.clone();
    let reason = form.reason.trim().to_owned();
    if reason.is_empty() || reason.len() > crate::http::MAX_REASON_BYTES {
        return refused(
            StatusCode::BAD_REQUEST,
            &p,
            &format!("reason: say why, in at most {} bytes", crate::http::MAX_REASON_BYTES),
        );
    }
    let (uptime, admin, host) = (Arc::clone(&state.uptime), Arc::clone(&state.admin), form.host.clone());
    let added = blocking(&p, move || {
        if !host.is_empty() && !uptime.hosts()?.contains(&host) {
            return Ok(None);
        }
        admin.add_maintenance(&host, from, to, &reason, &by, crate::now_ms()).map(Some)
    })
    .await;
    match added {
        Ok(Some(id)) => done(&format!("done=maintenance&window={id}"), p.lang),
        Ok(None) => refused(StatusCode::NOT_FOUND, &p, &format!("unknown host {:?}", form.host)),
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let long = hmac_sha256(&[0xaa; 131], &[b"Test Using Larger Than Block-Size Key - Hash Key First"]);
        assert_eq!(hex(&long), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn a_token_holds_for_its_user_until_it_expires() {
        let key = FormKey::new(vec![1; 32]);
        let now = 1_800_000_000_000;
        let token = key.token("duty", now);
        assert_eq!(key.check("duty", Some(&token), now), Ok(()));
        assert_eq!(key.check("duty", Some(&token), now + TOKEN_LIFETIME_MS - 1), Ok(()));
        assert_eq!(key.check("duty", Some(&token), now + TOKEN_LIFETIME_MS), Err(TokenError::Expired));
        assert_eq!(key.check("ann", Some(&token), now), Err(TokenError::Invalid), "another user's token");
        assert_eq!(FormKey::new(vec![2; 32]).check("duty", Some(&token), now), Err(TokenError::Invalid));
        assert_eq!(key.check("duty", None, now), Err(TokenError::Missing));
        assert_eq!(key.check("duty", Some(""), now), Err(TokenError::Missing));
        // A later expiry with the old MAC, a flipped MAC digit, no dot: all invalid.
        let (expiry, mac) = token.split_once('.').expect("shape");
        let later = format!("{}.{mac}", expiry.parse::<i64>().expect("ms") + 1);
        assert_eq!(key.check("duty", Some(&later), now), Err(TokenError::Invalid));
        let flipped = format!("{expiry}.{}{}", &mac[..63], if mac.ends_with('0') { '1' } else { '0' });
        assert_eq!(key.check("duty", Some(&flipped), now), Err(TokenError::Invalid));
        assert_eq!(key.check("duty", Some(mac), now), Err(TokenError::Invalid));
        // A token signed far into the future (a stolen key would be needed) is not accepted either.
        let far = key.token("duty", now + 10 * TOKEN_LIFETIME_MS);
        assert_eq!(key.check("duty", Some(&far), now), Err(TokenError::Expired));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    #[test]
    fn posts_from_other_sites_are_refused() {
        let ext = "https://mon.example.com/b24watch";
        let ok = [
            headers(&[]),
            headers(&[("host", "127.0.0.1:10061"), ("origin", "http://127.0.0.1:10061")]),
            headers(&[
                ("host", "10.0.0.5:10061"),
                ("origin", "https://mon.example.com"),
                ("sec-fetch-site", "same-origin"),
            ]),
            headers(&[("sec-fetch-site", "none")]),
        ];
        for h in ok {
            assert_eq!(same_origin(&h, ext), Ok(()), "{h:?}");
        }
        let bad = [
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[("host", "127.0.0.1:10061"), ("origin", "http://evil.example")]),
            headers(&[("host", "127.0.0.1:10061"), ("origin", "null")]),
            headers(&[("host", "127.0.0.1:10061"), ("origin", "http://127.0.0.1:10062")]),
        ];
        for h in bad {
            assert!(same_origin(&h, ext).is_err(), "{h:?}");
        }
    }

    #[test]
    fn the_audit_keeps_a_form_without_its_token() {
        assert_eq!(without_token(b"csrf=123.abc&id=0f0f&lang=en"), "id=0f0f&lang=en");
        assert_eq!(without_token(b"id=1&csrf=x"), "id=1");
        assert!(is_form(&headers(&[("content-type", "application/x-www-form-urlencoded; charset=UTF-8")])));
        assert!(!is_form(&headers(&[("content-type", "application/json")])));
    }

    #[test]
    fn form_times_are_read_in_the_page_zone() {
        let tz = jiff::tz::TimeZone::get("Europe/Moscow").expect("zone");
        assert_eq!(form_time("2026-11-30T22:00", &tz), Some(1_796_065_200_000));
        assert_eq!(form_time("2026-11-30T22:00:30", &tz), Some(1_796_065_230_000));
        assert_eq!(form_time("2026-11-30T19:00:00Z", &tz), Some(1_796_065_200_000));
        assert_eq!(form_time("1796065200000", &tz), Some(1_796_065_200_000));
        assert_eq!(form_time("tomorrow", &tz), None);
        assert_eq!(local_input(1_796_065_200_000, &tz), "2026-11-30T22:00");
    }
}
