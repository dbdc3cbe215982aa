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

use crate::live::Live;
use crate::metrics::Metrics;
use crate::now_ms;
use crate::store::Store;
use crate::store::query::Reader;

/// Points one series query may return at most.
const MAX_POINTS_LIMIT: usize = 100_000;

/// Shared state of the HTTP handlers.
#[derive(Debug, Clone)]
pub struct AppState {
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
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
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
        .route("/reports/sla", get(sla_report))
        .with_state(state)
}

fn is_ready(state: &AppState) -> bool {
    state.store.is_healthy() && !state.shutdown.is_cancelled()
}

async fn index(State(state): State<AppState>) -> Response {
    let timeout_ms = i64::try_from(state.agent_timeout.as_millis()).unwrap_or(i64::MAX);
    let now = now_ms();
    let up: std::collections::HashSet<String> =
        state.live.statuses(now, timeout_ms).into_iter().filter(|h| h.up).map(|h| h.host).collect();
    let uptime = Arc::clone(&state.uptime);
    let rows =
        tokio::task::spawn_blocking(move || crate::report::status_rows(&uptime, &|host: &str| up.contains(host), now))
            .await;
    match rows {
        Ok(Ok(rows)) => html_page(crate::report::status_html(&rows, now)),
        Ok(Err(err)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("query failed: {err}")),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("query task failed: {err}")),
    }
}

fn html_page(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// Runs a blocking query and answers its JSON, 503 on a store error.
async fn blocking_json<T, F>(query: F) -> Response
where
    T: serde::Serialize + Send + 'static,
    F: FnOnce() -> Result<T, crate::store::Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(query).await {
        Ok(Ok(value)) => axum::Json(value).into_response(),
        Ok(Err(err)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("query failed: {err}")),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("query task failed: {err}")),
    }
}

/// Query of `/api/v1/uptime` and `/api/v1/incidents`.
#[derive(Debug, Deserialize)]
struct WindowQuery {
    host: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    timeline: Option<bool>,
}

/// Resolves a window: default the last 30 days; `from < to` required.
/// A refusal: status and message, turned into a JSON error by [`error`].
type Refusal = (StatusCode, String);

fn window(q: &WindowQuery, now: i64) -> Result<(i64, i64), Refusal> {
    let to = q.to.unwrap_or(now);
    let from = q.from.unwrap_or(to - 30 * 86_400_000);
    if from >= to {
        return Err((StatusCode::BAD_REQUEST, format!("from {from} must be before to {to} (unix ms)")));
    }
    Ok((from, to))
}

fn hosts_of(state: &AppState, host: Option<&String>) -> Result<Vec<String>, Refusal> {
    let all = state.uptime.hosts().map_err(|err| (StatusCode::SERVICE_UNAVAILABLE, format!("query failed: {err}")))?;
    match host {
        None => Ok(all),
        Some(h) if all.contains(h) => Ok(vec![h.clone()]),
        Some(h) => Err((StatusCode::NOT_FOUND, format!("unknown host {h:?}"))),
    }
}

async fn uptime(State(state): State<AppState>, Query(q): Query<WindowQuery>) -> Response {
    let now = now_ms();
    let (from, to, hosts) =
        match window(&q, now).and_then(|(from, to)| Ok((from, to, hosts_of(&state, q.host.as_ref())?))) {
            Ok(resolved) => resolved,
            Err((code, message)) => return error(code, message),
        };
    let uptime = Arc::clone(&state.uptime);
    let with_timeline = q.timeline.unwrap_or(false);
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
    let (from, to, hosts) =
        match window(&q, now).and_then(|(from, to)| Ok((from, to, hosts_of(&state, q.host.as_ref())?))) {
            Ok(resolved) => resolved,
            Err((code, message)) => return error(code, message),
        };
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

/// Body of `POST /api/v1/incidents/ack`.
#[derive(Debug, Deserialize)]
struct AckBody {
    host: String,
    check: String,
    #[serde(default)]
    target: String,
    start_ms: i64,
    #[serde(default)]
    by: String,
}

async fn acknowledge(
    State(state): State<AppState>,
    body: Result<axum::Json<AckBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let axum::Json(body) = match body {
        Ok(b) => b,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected JSON {{host, check, target, start_ms, by}}: {err}"),
            );
        }
    };
    if let Err((code, message)) = hosts_of(&state, Some(&body.host)) {
        return error(code, message);
    }
    let uptime = Arc::clone(&state.uptime);
    let now = now_ms();
    blocking_json(move || {
        let known = uptime
            .incidents(&body.host, body.start_ms, body.start_ms + 1, now)?
            .into_iter()
            .any(|i| i.check == body.check && i.target == body.target && i.start_ms == body.start_ms);
        if !known {
            return Ok(serde_json::json!({ "acknowledged": false, "error": "no such incident (host, check, target, start_ms)" }));
        }
        uptime.acknowledge(&body.host, &body.check, &body.target, body.start_ms, &body.by, now)?;
        Ok(serde_json::json!({ "acknowledged": true, "ack_ms": now }))
    })
    .await
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
fn maintenance_window(
    state: &AppState,
    body: Result<axum::Json<MaintenanceBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(String, i64, i64, String), Refusal> {
    let axum::Json(body) =
        body.map_err(|err| (StatusCode::BAD_REQUEST, format!("expected JSON {{host, from, to, reason}}: {err}")))?;
    let (Some(from), Some(to)) = (time_value(&body.from), time_value(&body.to)) else {
        return Err((StatusCode::BAD_REQUEST, "from and to: expected unix ms or RFC 3339 times".into()));
    };
    if from >= to {
        return Err((StatusCode::BAD_REQUEST, "from must be before to".into()));
    }
    if !body.host.is_empty() {
        hosts_of(state, Some(&body.host))?;
    }
    Ok((body.host, from, to, body.reason))
}

async fn maintenance_update(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    body: Result<axum::Json<MaintenanceBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (host, from, to, reason) = match maintenance_window(&state, body) {
        Ok(window) => window,
        Err((code, message)) => return error(code, message),
    };
    let uptime = Arc::clone(&state.uptime);
    match tokio::task::spawn_blocking(move || uptime.update_maintenance(id, &host, from, to, &reason)).await {
        Ok(Ok(true)) => axum::Json(serde_json::json!({ "id": id, "from_ms": from, "to_ms": to })).into_response(),
        Ok(Ok(false)) => error(
            StatusCode::NOT_FOUND,
            format!("no maintenance window {id} (windows from the config file are changed there)"),
        ),
        Ok(Err(err)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("store failed: {err}")),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("task failed: {err}")),
    }
}

async fn maintenance_add(
    State(state): State<AppState>,
    body: Result<axum::Json<MaintenanceBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let (host, from, to, reason) = match maintenance_window(&state, body) {
        Ok(window) => window,
        Err((code, message)) => return error(code, message),
    };
    let uptime = Arc::clone(&state.uptime);
    match tokio::task::spawn_blocking(move || uptime.add_maintenance(&host, from, to, &reason, now_ms())).await {
        Ok(Ok(id)) => (StatusCode::CREATED, axum::Json(serde_json::json!({ "id": id, "from_ms": from, "to_ms": to })))
            .into_response(),
        Ok(Err(err)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("store failed: {err}")),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("task failed: {err}")),
    }
}

async fn maintenance_delete(State(state): State<AppState>, Path(id): Path<i64>) -> Response {
    let uptime = Arc::clone(&state.uptime);
    match tokio::task::spawn_blocking(move || uptime.delete_maintenance(id)).await {
        Ok(Ok(true)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(false)) => error(
            StatusCode::NOT_FOUND,
            format!("no maintenance window {id} (windows from the config file are changed there)"),
        ),
        Ok(Err(err)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("store failed: {err}")),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("task failed: {err}")),
    }
}

/// Query of `/reports/sla`.
#[derive(Debug, Deserialize)]
struct ReportQuery {
    month: Option<String>,
    format: Option<String>,
    host: Option<String>,
}

async fn sla_report(State(state): State<AppState>, Query(q): Query<ReportQuery>) -> Response {
    let now = now_ms();
    let uptime = Arc::clone(&state.uptime);
    let month = q.month.unwrap_or_else(|| {
        jiff::Timestamp::from_millisecond(now)
            .map_or_else(|_| String::new(), |t| t.to_zoned(uptime.cfg.timezone.clone()).strftime("%Y-%m").to_string())
    });
    let format = q.format.unwrap_or_else(|| "html".into());
    if !matches!(format.as_str(), "html" | "csv" | "json") {
        return error(StatusCode::BAD_REQUEST, format!("format {format:?}: expected html, csv or json"));
    }
    let built =
        tokio::task::spawn_blocking(move || crate::report::build(&uptime, &month, q.host.as_deref(), now)).await;
    let report = match built {
        Ok(Ok(report)) => report,
        Ok(Err(message)) if message.starts_with("unknown host") => return error(StatusCode::NOT_FOUND, message),
        Ok(Err(message)) => return error(StatusCode::BAD_REQUEST, message),
        Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("report task failed: {err}")),
    };
    match format.as_str() {
        "json" => axum::Json(report).into_response(),
        "csv" => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], crate::report::csv(&report)).into_response(),
        _ => html_page(crate::report::html(&report)),
    }
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
    let timeout_ms = i64::try_from(state.agent_timeout.as_millis()).unwrap_or(i64::MAX);
    state.live.render(now_ms(), timeout_ms, &mut out);
    let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
    let db = state.store.path();
    let wal = std::path::PathBuf::from(format!("{}-wal", db.display()));
    state.metrics.render(&mut out, size(db), size(&wal), is_ready(&state));
    state.uptime.render(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}

async fn hosts(State(state): State<AppState>) -> Response {
    let timeout_ms = i64::try_from(state.agent_timeout.as_millis()).unwrap_or(i64::MAX);
    axum::Json(state.live.statuses(now_ms(), timeout_ms)).into_response()
}

/// Query of `/api/v1/hosts/{host}/series`.
#[derive(Debug, Deserialize)]
struct SeriesQuery {
    name: String,
    from: Option<i64>,
    to: Option<i64>,
    max_points: Option<usize>,
    /// Milliseconds per step: min/max/avg per step from raw samples or rollups.
    step: Option<i64>,
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

async fn series(State(state): State<AppState>, Path(host): Path<String>, Query(q): Query<SeriesQuery>) -> Response {
    let to = q.to.unwrap_or_else(now_ms);
    let from = q.from.unwrap_or(to - 3_600_000);
    if from > to {
        return error(StatusCode::BAD_REQUEST, format!("from ({from}) is after to ({to})"));
    }
    let max_points = q.max_points.unwrap_or(10_000);
    if max_points == 0 || max_points > MAX_POINTS_LIMIT {
        return error(StatusCode::BAD_REQUEST, format!("max_points {max_points}: expected 1..={MAX_POINTS_LIMIT}"));
    }
    if let Some(step) = q.step {
        if step <= 0 || (to - from) / step >= crate::store::history::MAX_STEPS {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "step {step}: expected a positive number of milliseconds making at most {} steps from {from} to {to}",
                    crate::store::history::MAX_STEPS
                ),
            );
        }
        let reader = Arc::clone(&state.reader);
        let (name, host_name) = (q.name.clone(), host.clone());
        let result = tokio::task::spawn_blocking(move || reader.series_steps(&host_name, &name, from, to, step)).await;
        return match result {
            Ok(Ok(series)) => axum::Json(serde_json::json!({
                "host": host, "name": q.name, "from": from, "to": to, "step": step, "series": series,
            }))
            .into_response(),
            Ok(Err(err)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("query failed: {err}")),
            Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("query task failed: {err}")),
        };
    }
    let reader = Arc::clone(&state.reader);
    let name = q.name.clone();
    let host_name = host.clone();
    let result =
        tokio::task::spawn_blocking(move || reader.series_points(&host_name, &name, from, to, max_points)).await;
    match result {
        Ok(Ok((series, truncated))) => axum::Json(serde_json::json!({
            "host": host, "name": q.name, "from": from, "to": to, "truncated": truncated, "series": series,
        }))
        .into_response(),
        Ok(Err(err)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("query failed: {err}")),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("query task failed: {err}")),
    }
}

/// Query of `/api/v1/hosts/{host}/errors`.
#[derive(Debug, Deserialize)]
struct ErrorsQuery {
    /// Unix ms; default: 24 hours ago.
    since: Option<i64>,
    /// Groups returned at most (1..=1000, default 50).
    limit: Option<usize>,
}

async fn errors(State(state): State<AppState>, Path(host): Path<String>, Query(q): Query<ErrorsQuery>) -> Response {
    let since = q.since.unwrap_or_else(|| now_ms() - 86_400_000);
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return error(StatusCode::BAD_REQUEST, format!("limit {limit}: expected 1..=1000"));
    }
    let reader = Arc::clone(&state.reader);
    let host_name = host.clone();
    match tokio::task::spawn_blocking(move || reader.error_groups(&host_name, since, limit)).await {
        Ok(Ok(groups)) => {
            axum::Json(serde_json::json!({ "host": host, "since": since, "groups": groups })).into_response()
        }
        Ok(Err(err)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("query failed: {err}")),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("query task failed: {err}")),
    }
}

async fn checks(State(state): State<AppState>, Path(host): Path<String>) -> Response {
    let reader = Arc::clone(&state.reader);
    let host_name = host.clone();
    match tokio::task::spawn_blocking(move || reader.checks(&host_name)).await {
        Ok(Ok(checks)) => axum::Json(serde_json::json!({ "host": host, "checks": checks })).into_response(),
        Ok(Err(err)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("query failed: {err}")),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("query task failed: {err}")),
    }
}

async fn gaps(State(state): State<AppState>, Path(host): Path<String>) -> Response {
    let reader = Arc::clone(&state.reader);
    match tokio::task::spawn_blocking(move || reader.gaps(&host)).await {
        Ok(Ok(gaps)) => axum::Json(gaps).into_response(),
        Ok(Err(err)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("query failed: {err}")),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("query task failed: {err}")),
    }
}
