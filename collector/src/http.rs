//! HTTP: `/metrics`, `/-/healthy`, `/-/ready` and the JSON API under `/api/v1`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::i18n::Lang;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::now_ms;
use crate::store::Store;
use crate::store::query::Reader;

/// Bytes of a maintenance window's `reason` at most (longer: 400).
pub const MAX_REASON_BYTES: usize = 1024;
/// Bytes of an acknowledgement's `by` at most (longer: 400).
pub const MAX_BY_BYTES: usize = 256;
/// Bytes of the `host`, `check` and `target` of a write body at most (longer: 400).
pub const MAX_NAME_BYTES: usize = 2048;

/// Refuses a free-text field longer than `max` bytes.
pub(crate) fn bounded(name: &str, value: &str, max: usize) -> Result<(), Refusal> {
    if value.len() > max {
        return Err((StatusCode::BAD_REQUEST, format!("{name}: {} bytes, at most {max} allowed", value.len())));
    }
    Ok(())
}

/// Points one series query may return at most.
const MAX_POINTS_LIMIT: usize = 100_000;
/// Latest time a request may name, unix ms: 9999-12-31T23:59:59.999Z. Earliest: 0.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;
/// Longest window of one uptime or incidents request: 400 days.
const MAX_WINDOW_MS: i64 = 400 * DAY_MS;
const DAY_MS: i64 = 86_400_000;

/// The absolute URLs alert pages link to (`b24watch_collector_links`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    /// The collector's URL as people open it (`collector.external_url` or derived).
    pub external_url: String,
    /// The runbooks (`collector.runbook_url` or `<external_url>/runbooks`).
    pub runbook_url: String,
}

/// docs/runbooks.md, served at `/runbooks` so that alert pages link to something a phone opens.
const RUNBOOKS: &str = include_str!("../../docs/runbooks.md");

/// Shared state of the HTTP handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Links for alert pages.
    pub links: Arc<Links>,
    /// Latest values.
    pub live: Arc<Live>,
    /// Self-metrics.
    pub metrics: Arc<Metrics>,
    /// Read side.
    pub reader: Arc<Reader>,
    /// Store handle (health, file paths).
    pub store: Store,
    /// Silence after which an agent is down.
    pub agent_timeout: Duration,
    /// Cancelled on shutdown (readiness turns false).
    pub shutdown: CancellationToken,
    /// Uptime, incidents, maintenance and reports.
    pub uptime: Arc<crate::uptime::Uptime>,
    /// Maintenance windows and acknowledgements.
    pub admin: Arc<crate::store::admin::Admin>,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "ok\n" }))
        .route("/-/ready", get(ready))
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/hosts/{host}/series", get(series))
        .route("/api/v1/hosts/{host}/gaps", get(gaps))
        .route("/api/v1/hosts/{host}/errors", get(errors))
        .route("/api/v1/hosts/{host}/checks", get(checks))
        .route("/api/v1/uptime", get(uptime))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/incidents/ack", axum::routing::post(acknowledge))
        .route("/api/v1/maintenance", get(maintenance_list).post(maintenance_add))
        .route("/api/v1/maintenance/{id}", axum::routing::delete(maintenance_delete).put(maintenance_update))
        .route("/api/v1/clients", get(clients))
        .route("/reports/sla", get(sla_report))
        .route("/runbooks", get(runbooks))
        .layer(axum::middleware::from_fn(crate::listener::bounded_body))
        .with_state(state)
}

fn is_ready(state: &AppState) -> bool {
    state.store.is_healthy() && !state.shutdown.is_cancelled()
}

/// Query of the pages for people (`/`, `/reports/sla` in HTML).
#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    pub(crate) lang: Option<String>,
}

/// The language a page asks for with `lang=`, else the configured one; 400 for an unknown one.
pub(crate) fn page_lang(state: &AppState, lang: Option<&str>) -> Result<Lang, Box<Response>> {
    match lang {
        None => Ok(state.uptime.cfg.language),
        Some(code) => Lang::parse(code).map_err(|err| Box::new(error(StatusCode::BAD_REQUEST, format!("lang {err}")))),
    }
}

pub(crate) fn html_page(body: String, lang: Lang) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CONTENT_LANGUAGE, lang.code())], body)
        .into_response()
}

/// Runs a store call on the blocking pool (never on the async workers): its value, or the
/// error response (503 on a store error).
pub(crate) async fn blocking<T, F>(query: F) -> Result<T, Response>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, crate::store::Error> + Send + 'static,
{
    blocking_refusal(query).await.map_err(|(code, message)| error(code, message))
}

/// [`blocking`], refused as a status and message (for handlers that combine it with other checks).
async fn blocking_refusal<T, F>(query: F) -> Result<T, Refusal>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, crate::store::Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(query).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err((StatusCode::SERVICE_UNAVAILABLE, format!("query failed: {err}"))),
        Err(err) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("query task failed: {err}"))),
    }
}

/// [`blocking`], answered as JSON.
pub(crate) async fn blocking_json<T, F>(query: F) -> Response
where
    T: serde::Serialize + Send + 'static,
    F: FnOnce() -> Result<T, crate::store::Error> + Send + 'static,
{
    match blocking(query).await {
        Ok(value) => axum::Json(value).into_response(),
        Err(response) => response,
    }
}

/// Query of `/api/v1/uptime` and `/api/v1/incidents`.
#[derive(Debug, Deserialize)]
pub(crate) struct WindowQuery {
    pub(crate) host: Option<String>,
    pub(crate) from: Option<i64>,
    pub(crate) to: Option<i64>,
    pub(crate) timeline: Option<bool>,
}

/// Resolves a window: default the last 30 days; `from < to` required.
/// A refusal: status and message, turned into a JSON error by [`error`].
pub(crate) type Refusal = (StatusCode, String);

pub(crate) fn window(q: &WindowQuery, now: i64) -> Result<(i64, i64), Refusal> {
    let to = time_param("to", q.to.unwrap_or(now))?;
    let from = time_param("from", q.from.unwrap_or(to.saturating_sub(30 * DAY_MS).max(0)))?;
    if from >= to {
        return Err((StatusCode::BAD_REQUEST, format!("from {from} must be before to {to} (unix ms)")));
    }
    if to - from > MAX_WINDOW_MS {
        return Err((StatusCode::BAD_REQUEST, format!("from {from} to {to}: a window is at most 400 days")));
    }
    Ok((from, to))
}

/// A time named by a request: unix ms from 0 to [`MAX_TIME_MS`], or a 400.
fn time_param(name: &str, value: i64) -> Result<i64, Refusal> {
    if (0..=MAX_TIME_MS).contains(&value) {
        Ok(value)
    } else {
        Err((StatusCode::BAD_REQUEST, format!("{name} {value}: expected unix ms from 0 to {MAX_TIME_MS}")))
    }
}

/// Runs `query` for a host enrolled with the collector (revoked or not), 404 for any other.
async fn for_known_host<T, F>(reader: Arc<Reader>, host: String, query: F) -> Response
where
    T: serde::Serialize + Send + 'static,
    F: FnOnce(&Reader, String) -> Result<T, crate::store::Error> + Send + 'static,
{
    let found = blocking(move || match reader.credential(&host)? {
        Some(_) => query(&reader, host).map(Ok),
        None => Ok(Err(host)),
    })
    .await;
    match found {
        Ok(Ok(value)) => axum::Json(value).into_response(),
        Ok(Err(host)) => error(StatusCode::NOT_FOUND, format!("unknown host {host:?}")),
        Err(response) => response,
    }
}

/// Every host, or the one named (404 when it is not enrolled). The lookup reads the store, so it
/// runs on the blocking pool like every other query.
async fn hosts_of(state: &AppState, host: Option<String>) -> Result<Vec<String>, Refusal> {
    let uptime = Arc::clone(&state.uptime);
    let all = blocking_refusal(move || uptime.hosts()).await?;
    match host {
        None => Ok(all),
        Some(h) if all.contains(&h) => Ok(vec![h]),
        Some(h) => Err((StatusCode::NOT_FOUND, format!("unknown host {h:?}"))),
    }
}

/// The window and hosts of an uptime or incidents query.
async fn resolve(state: &AppState, q: &WindowQuery, now: i64) -> Result<(i64, i64, Vec<String>), Refusal> {
    let (from, to) = window(q, now)?;
    Ok((from, to, hosts_of(state, q.host.clone()).await?))
}

async fn uptime(State(state): State<AppState>, Query(q): Query<WindowQuery>) -> Response {
    let now = now_ms();
    match resolve(&state, &q, now).await {
        Ok((from, to, hosts)) => uptime_of(&state, (from, to), hosts, now, q.timeline.unwrap_or(false)).await,
        Err((code, message)) => error(code, message),
    }
}

/// The answer of `/api/v1/uptime`: each of `hosts`' target and signals in `[from, to)`.
pub(crate) async fn uptime_of(
    state: &AppState,
    (from, to): (i64, i64),
    hosts: Vec<String>,
    now: i64,
    with_timeline: bool,
) -> Response {
    let uptime = Arc::clone(&state.uptime);
    blocking_json(move || {
        let mut out = Vec::new();
        for host in hosts {
            let signals = uptime.host_uptime(&host, from, to, now, with_timeline)?;
            out.push(serde_json::json!({ "host": host, "target": uptime.cfg.target_of(&host), "signals": signals }));
        }
        Ok(serde_json::json!({ "from": from, "to": to, "hosts": out }))
    })
    .await
}

async fn incidents(State(state): State<AppState>, Query(q): Query<WindowQuery>) -> Response {
    let now = now_ms();
    match resolve(&state, &q, now).await {
        Ok((from, to, hosts)) => incidents_of(&state, (from, to), hosts, now).await,
        Err((code, message)) => error(code, message),
    }
}

/// The answer of `/api/v1/incidents`: the incidents of `hosts` overlapping `[from, to)`.
pub(crate) async fn incidents_of(state: &AppState, (from, to): (i64, i64), hosts: Vec<String>, now: i64) -> Response {
    let uptime = Arc::clone(&state.uptime);
    blocking_json(move || {
        let mut all = Vec::new();
        for host in hosts {
            all.extend(uptime.incidents(&host, from, to, now)?);
        }
        Ok(serde_json::json!({ "from": from, "to": to, "incidents": all }))
    })
    .await
}

/// Body of `POST /api/v1/incidents/ack`: `{"id", "by"}` with an id from the incidents API, or
/// (older clients) `{"host", "check", "target", "start_ms", "by"}` naming an incident's true start.
#[derive(Debug, Deserialize)]
struct AckBody {
    id: Option<String>,
    host: Option<String>,
    check: Option<String>,
    #[serde(default)]
    target: String,
    start_ms: Option<i64>,
    #[serde(default)]
    by: String,
    /// When the acknowledgement was made, if it is recorded after the fact (default: now).
    at: Option<serde_json::Value>,
}

async fn acknowledge(
    State(state): State<AppState>,
    body: Result<axum::Json<AckBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    use crate::uptime::IncidentRef;
    let now = now_ms();
    let at = match &body {
        Ok(axum::Json(b)) => past_time(b.at.as_ref(), now),
        Err(_) => Ok(now),
    };
    let at = match at {
        Ok(at) => at,
        Err((code, message)) => return error(code, message),
    };
    let named = match body {
        Ok(axum::Json(AckBody { id: Some(id), by, .. })) => (IncidentRef::Id(id), by),
        Ok(axum::Json(AckBody {
            host: Some(host), check: Some(check), target, start_ms: Some(start_ms), by, ..
        })) => (IncidentRef::Key { host, check, target, start_ms }, by),
        Ok(_) => return error(StatusCode::BAD_REQUEST, "expected JSON {\"id\", \"by\"}".into()),
        Err(err) => return error(StatusCode::BAD_REQUEST, format!("expected JSON {{\"id\", \"by\"}}: {err}")),
    };
    let (named, by) = named;
    let checked = match &named {
        IncidentRef::Id(id) => bounded("id", id, MAX_NAME_BYTES),
        IncidentRef::Key { host, check, target, start_ms } => bounded("host", host, MAX_NAME_BYTES)
            .and_then(|()| bounded("check", check, MAX_NAME_BYTES))
            .and_then(|()| bounded("target", target, MAX_NAME_BYTES))
            .and_then(|()| time_param("start_ms", *start_ms).map(drop)),
    }
    .and_then(|()| bounded("by", &by, MAX_BY_BYTES));
    if let Err((code, message)) = checked {
        return error(code, message);
    }
    if let IncidentRef::Key { host, .. } = &named
        && let Err((code, message)) = hosts_of(&state, Some(host.clone())).await
    {
        return error(code, message);
    }
    let (uptime, admin) = (Arc::clone(&state.uptime), Arc::clone(&state.admin));
    let found = blocking(move || {
        let Some(incident) = uptime.find_incident(&named, now)? else { return Ok(None) };
        if at < incident.start_ms {
            return Ok(Some(Err(incident.start_ms)));
        }
        admin.acknowledge(&incident.host, &incident.check, &incident.target, incident.start_ms, &by, at)?;
        Ok(Some(Ok(incident.id)))
    })
    .await;
    match found {
        Ok(Some(Ok(id))) => {
            axum::Json(serde_json::json!({ "acknowledged": true, "id": id, "ack_ms": at })).into_response()
        }
        Ok(Some(Err(start))) => {
            error(StatusCode::BAD_REQUEST, format!("at {at}: before the incident started ({start})"))
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such incident: use an id from GET /api/v1/incidents".into()),
        Err(response) => response,
    }
}

/// Body of `POST /api/v1/maintenance`: times as unix ms or RFC 3339.
#[derive(Debug, Deserialize)]
struct MaintenanceBody {
    #[serde(default)]
    host: String,
    from: serde_json::Value,
    to: serde_json::Value,
    #[serde(default)]
    reason: String,
    /// Who declares it (default: the request's user).
    #[serde(default)]
    by: String,
}

/// When something happened, as a request gives it (`"at"`: unix ms or RFC 3339; absent: `now`):
/// an acknowledgement, opening or resolution recorded after the fact. Never after `now`.
pub(crate) fn past_time(at: Option<&serde_json::Value>, now: i64) -> Result<i64, Refusal> {
    let Some(value) = at else { return Ok(now) };
    let at = time_value(value)
        .ok_or_else(|| (StatusCode::BAD_REQUEST, "at: expected unix ms or an RFC 3339 time".to_owned()))?;
    let at = time_param("at", at)?;
    if at > now {
        return Err((StatusCode::BAD_REQUEST, format!("at {at}: in the future (now is {now})")));
    }
    Ok(at)
}

fn time_value(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => crate::config::parse_time(s),
        _ => None,
    }
}

async fn maintenance_list(State(state): State<AppState>, Query(q): Query<WindowQuery>) -> Response {
    let from = q.from.unwrap_or(i64::MIN);
    let to = q.to.unwrap_or(i64::MAX);
    let uptime = Arc::clone(&state.uptime);
    blocking_json(move || Ok(serde_json::json!({ "windows": uptime.maintenance_windows(from, to)? }))).await
}

/// A validated maintenance window from a request body: (host, from, to, reason).
async fn maintenance_window(
    state: &AppState,
    body: Result<axum::Json<MaintenanceBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(String, i64, i64, String), Refusal> {
    let axum::Json(body) =
        body.map_err(|err| (StatusCode::BAD_REQUEST, format!("expected JSON {{host, from, to, reason}}: {err}")))?;
    let (Some(from), Some(to)) = (time_value(&body.from), time_value(&body.to)) else {
        return Err((StatusCode::BAD_REQUEST, "from and to: expected unix ms or RFC 3339 times".into()));
    };
    let (from, to) = (time_param("from", from)?, time_param("to", to)?);
    if from >= to {
        return Err((StatusCode::BAD_REQUEST, "from must be before to".into()));
    }
    bounded("reason", &body.reason, MAX_REASON_BYTES)?;
    bounded("host", &body.host, MAX_NAME_BYTES)?;
    if !body.host.is_empty() {
        hosts_of(state, Some(body.host.clone())).await?;
    }
    Ok((body.host, from, to, body.reason))
}

async fn maintenance_update(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    body: Result<axum::Json<MaintenanceBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (host, from, to, reason) = match maintenance_window(&state, body).await {
        Ok(window) => window,
        Err((code, message)) => return error(code, message),
    };
    let admin = Arc::clone(&state.admin);
    match blocking(move || admin.update_maintenance(id, &host, from, to, &reason)).await {
        Ok(true) => axum::Json(serde_json::json!({ "id": id, "from_ms": from, "to_ms": to })).into_response(),
        Ok(false) => no_window(id),
        Err(response) => response,
    }
}

async fn maintenance_add(
    State(state): State<AppState>,
    user: Option<axum::Extension<crate::auth::RequestUser>>,
    body: Result<axum::Json<MaintenanceBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let by = match &body {
        Ok(axum::Json(b)) if !b.by.trim().is_empty() => b.by.trim().to_owned(),
        _ => user.map_or_else(|| "api".to_owned(), |axum::Extension(u)| u.0),
    };
    if let Err((code, message)) = bounded("by", &by, MAX_BY_BYTES) {
        return error(code, message);
    }
    let (host, from, to, reason) = match maintenance_window(&state, body).await {
        Ok(window) => window,
        Err((code, message)) => return error(code, message),
    };
    let admin = Arc::clone(&state.admin);
    match blocking(move || admin.add_maintenance(&host, from, to, &reason, &by, now_ms())).await {
        Ok(id) => (StatusCode::CREATED, axum::Json(serde_json::json!({ "id": id, "from_ms": from, "to_ms": to })))
            .into_response(),
        Err(response) => response,
    }
}

async fn maintenance_delete(State(state): State<AppState>, Path(id): Path<i64>) -> Response {
    let admin = Arc::clone(&state.admin);
    match blocking(move || admin.delete_maintenance(id)).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => no_window(id),
        Err(response) => response,
    }
}

fn no_window(id: i64) -> Response {
    error(StatusCode::NOT_FOUND, format!("no maintenance window {id} (windows from the config file are changed there)"))
}

/// Query of `/reports/sla`.
#[derive(Debug, Deserialize)]
pub(crate) struct ReportQuery {
    pub(crate) month: Option<String>,
    pub(crate) format: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) lang: Option<String>,
}

/// What a report request asks for.
pub(crate) struct ReportAsk {
    /// `YYYY-MM`.
    pub(crate) month: String,
    /// html, csv or json.
    pub(crate) format: String,
    /// Language of the page.
    pub(crate) lang: Lang,
}

impl ReportAsk {
    /// A report request's `month` (default: the current one in `tz`), `format` (default: html)
    /// and `lang`.
    ///
    /// # Errors
    /// The 400 of a format other than html, csv or json, or of an unknown language (boxed: a
    /// response is large).
    pub(crate) fn of(
        state: &AppState,
        month: Option<String>,
        format: Option<String>,
        lang: Option<&str>,
        now: i64,
        tz: &jiff::tz::TimeZone,
    ) -> Result<ReportAsk, Box<Response>> {
        let month = month.unwrap_or_else(|| current_month(now, tz));
        let format = format.unwrap_or_else(|| "html".into());
        if !matches!(format.as_str(), "html" | "csv" | "json") {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("format {format:?}: expected html, csv or json"),
            )));
        }
        let lang = page_lang(state, lang)?;
        Ok(ReportAsk { month, format, lang })
    }
}

/// The month of `now` in `tz`, `YYYY-MM`.
pub(crate) fn current_month(now: i64, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_millisecond(now)
        .map_or_else(|_| String::new(), |t| t.to_zoned(tz.clone()).strftime("%Y-%m").to_string())
}

/// Builds `uptime`'s SLA report of `month` (one host's when `host` is set) on the blocking pool.
///
/// # Errors
/// The 404 of an unknown host, the 400 of a bad month, the store's failure.
pub(crate) async fn sla_report_of(
    uptime: Arc<crate::uptime::Uptime>,
    month: String,
    host: Option<String>,
    now: i64,
) -> Result<crate::report::Report, Response> {
    match blocking(move || Ok(crate::report::build(&uptime, &month, host.as_deref(), now))).await? {
        Ok(report) => Ok(report),
        Err(message) if message.starts_with("unknown host") => Err(error(StatusCode::NOT_FOUND, message)),
        Err(message) => Err(error(StatusCode::BAD_REQUEST, message)),
    }
}

/// A CSV attachment named `name.csv` (characters outside `[A-Za-z0-9._-]` left out).
pub(crate) fn csv_response(name: &str, body: String) -> Response {
    let name: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')).collect();
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.csv\"")),
        ],
        body,
    )
        .into_response()
}

async fn sla_report(State(state): State<AppState>, Query(q): Query<ReportQuery>) -> Response {
    let now = now_ms();
    let uptime = Arc::clone(&state.uptime);
    let ask = match ReportAsk::of(&state, q.month, q.format, q.lang.as_deref(), now, &uptime.cfg.timezone) {
        Ok(ask) => ask,
        Err(response) => return *response,
    };
    let report = match sla_report_of(uptime, ask.month, q.host, now).await {
        Ok(report) => report,
        Err(response) => return response,
    };
    match ask.format.as_str() {
        "json" => axum::Json(report).into_response(),
        "csv" => csv_response(&format!("b24watch-sla-{}", report.period.month), crate::report::csv(&report)),
        _ => html_page(crate::report::html(&report, ask.lang), ask.lang),
    }
}

/// The runbooks as a page: each `## Alert` heading gets the id alert links point at
/// (`#b24watchagentdown`), the rest is shown as written.
async fn runbooks() -> Response {
    // The runbooks are written in English.
    html_page(runbooks_html(RUNBOOKS), Lang::En)
}

/// Renders docs/runbooks.md: headings as headings with lower-case ids, other lines escaped.
fn runbooks_html(markdown: &str) -> String {
    let escape = |t: &str| t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>b24watch runbooks</title><style>body{font-family:sans-serif;max-width:50em;margin:auto;padding:1em}\
         pre{white-space:pre-wrap}</style></head><body>\n",
    );
    let mut text = String::new();
    let flush = |text: &mut String, out: &mut String| {
        if !text.trim().is_empty() {
            out.push_str(&format!("<pre>{}</pre>\n", escape(text.trim_end())));
        }
        text.clear();
    };
    for line in markdown.lines() {
        let level = line.bytes().take_while(|b| *b == b'#').count();
        if (1..=3).contains(&level) && line.as_bytes().get(level) == Some(&b' ') {
            flush(&mut text, &mut out);
            let title = line[level + 1..].trim();
            let id: String = title
                .chars()
                .filter_map(|c| match c {
                    c if c.is_alphanumeric() => Some(c.to_ascii_lowercase()),
                    ' ' | '-' | '_' => Some('-'),
                    _ => None,
                })
                .collect();
            out.push_str(&format!("<h{level} id=\"{}\">{}</h{level}>\n", escape(&id), escape(title)));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    flush(&mut text, &mut out);
    out.push_str("</body></html>\n");
    out
}

async fn ready(State(state): State<AppState>) -> Response {
    if is_ready(&state) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: store failed or shutting down\n").into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(64 * 1024);
    render_metrics(&state, true, &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}

/// The `/metrics` exposition. Without `agent_series`, only the series the collector computes
/// itself (liveness, uptime and incidents, its own metrics): what remote write sends besides the
/// agents' stored samples ([`crate::remote_write::computed`]), named and labelled the same.
pub fn render_metrics(state: &AppState, agent_series: bool, out: &mut String) {
    let timeout_ms = i64::try_from(state.agent_timeout.as_millis()).unwrap_or(i64::MAX);
    if agent_series {
        state.live.render(now_ms(), timeout_ms, &crate::metrics::own_build_info(), out);
    } else {
        state.live.render_computed(now_ms(), timeout_ms, &crate::metrics::own_build_info(), out);
    }
    let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
    let db = state.store.path();
    let wal = std::path::PathBuf::from(format!("{}-wal", db.display()));
    state.metrics.render(out, size(db), size(&wal), state.store.check_results_dropped(), is_ready(state));
    crate::metrics::render_store_steps(out, &state.store.step_seconds(), state.store.head_size());
    crate::metrics::render_store_full(out, state.store.fullness());
    state.uptime.render(out);
    crate::metrics::render_links(out, &state.links.external_url, &state.links.runbook_url);
    crate::metrics::render_process(out);
}

async fn hosts(State(state): State<AppState>) -> Response {
    let timeout_ms = i64::try_from(state.agent_timeout.as_millis()).unwrap_or(i64::MAX);
    axum::Json(state.live.statuses(now_ms(), timeout_ms)).into_response()
}

/// Query of `/api/v1/hosts/{host}/series`.
#[derive(Debug, Deserialize)]
pub(crate) struct SeriesQuery {
    name: String,
    from: Option<i64>,
    to: Option<i64>,
    max_points: Option<usize>,
    /// Milliseconds per step: min/max/avg per step from raw samples or rollups.
    step: Option<i64>,
}

/// `GET /api/v1/clients`: every configured client with its hosts and contract.
async fn clients(State(state): State<AppState>) -> Response {
    let uptime = Arc::clone(&state.uptime);
    blocking_json(move || Ok(serde_json::json!({ "clients": uptime.client_views()? }))).await
}

pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

pub(crate) async fn series(
    State(state): State<AppState>,
    Path(host): Path<String>,
    Query(q): Query<SeriesQuery>,
) -> Response {
    let (from, to) = match time_param("to", q.to.unwrap_or_else(now_ms))
        .and_then(|to| Ok((time_param("from", q.from.unwrap_or(to.saturating_sub(3_600_000).max(0)))?, to)))
    {
        Ok(window) => window,
        Err((code, message)) => return error(code, message),
    };
    if from > to {
        return error(StatusCode::BAD_REQUEST, format!("from ({from}) is after to ({to})"));
    }
    let max_points = q.max_points.unwrap_or(10_000);
    if max_points == 0 || max_points > MAX_POINTS_LIMIT {
        return error(StatusCode::BAD_REQUEST, format!("max_points {max_points}: expected 1..={MAX_POINTS_LIMIT}"));
    }
    if let Some(step) = q.step {
        if step <= 0 || to.saturating_sub(from) / step >= crate::store::history::MAX_STEPS {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "step {step}: expected a positive number of milliseconds making at most {} steps from {from} to {to}",
                    crate::store::history::MAX_STEPS
                ),
            );
        }
        return for_known_host(Arc::clone(&state.reader), host, move |reader, host| {
            let series = reader.series_steps(&host, &q.name, from, to, step)?;
            Ok(serde_json::json!({
                "host": host, "name": q.name, "from": from, "to": to, "step": step, "series": series,
            }))
        })
        .await;
    }
    for_known_host(Arc::clone(&state.reader), host, move |reader, host| {
        let (series, truncated) = reader.series_points(&host, &q.name, from, to, max_points)?;
        Ok(serde_json::json!({
            "host": host, "name": q.name, "from": from, "to": to, "truncated": truncated, "series": series,
        }))
    })
    .await
}

/// Query of `/api/v1/hosts/{host}/errors`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorsQuery {
    /// Unix ms; default: 24 hours ago.
    since: Option<i64>,
    /// Groups returned at most (1..=1000, default 50).
    limit: Option<usize>,
}

pub(crate) async fn errors(
    State(state): State<AppState>,
    Path(host): Path<String>,
    Query(q): Query<ErrorsQuery>,
) -> Response {
    let since = q.since.unwrap_or_else(|| now_ms() - 86_400_000);
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return error(StatusCode::BAD_REQUEST, format!("limit {limit}: expected 1..=1000"));
    }
    for_known_host(Arc::clone(&state.reader), host, move |reader, host| {
        let groups = reader.error_groups(&host, since, limit)?;
        Ok(serde_json::json!({ "host": host, "since": since, "groups": groups }))
    })
    .await
}

pub(crate) async fn checks(State(state): State<AppState>, Path(host): Path<String>) -> Response {
    for_known_host(Arc::clone(&state.reader), host, |reader, host| {
        let checks = reader.checks(&host)?;
        Ok(serde_json::json!({ "host": host, "checks": checks }))
    })
    .await
}

pub(crate) async fn gaps(State(state): State<AppState>, Path(host): Path<String>) -> Response {
    for_known_host(Arc::clone(&state.reader), host, |reader, host| reader.gaps(&host)).await
}
