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
        .with_state(state)
}

fn is_ready(state: &AppState) -> bool {
    state.store.is_healthy() && !state.shutdown.is_cancelled()
}

async fn index() -> &'static str {
    "b24watch collector\n\n/metrics               Prometheus exposition\n/-/healthy /-/ready    probes\n\
     /api/v1/hosts          agents and liveness (JSON)\n\
     /api/v1/hosts/{host}/series?name=load1&from=<unix ms>&to=<unix ms>\n\
     /api/v1/hosts/{host}/gaps\n/api/v1/hosts/{host}/errors?since=<unix ms>&limit=50\n/api/v1/hosts/{host}/checks          latest check results\n"
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
