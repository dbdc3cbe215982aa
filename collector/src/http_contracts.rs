//! HTTP of clients and contracts: incidents opened and resolved by hand, the client report and
//! the fleet summary. Writes need the operator role (access.rs: every non-GET request).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::contract::Priority;
use crate::http::{
    AppState, MAX_BY_BYTES, MAX_NAME_BYTES, MAX_REASON_BYTES, ReportAsk, blocking, bounded, csv_response, error,
    html_page, past_time,
};
use crate::now_ms;
use crate::uptime::{IncidentRef, incident_id};

/// The routes, to merge with [`crate::http::router`] (kept apart so that `http` does not
/// import this module back).
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/incidents/open", post(open))
        .route("/api/v1/incidents/resolve", post(resolve))
        .route("/reports/client/{client}", get(client_report))
        .route("/reports/fleet", get(fleet_report))
        .layer(axum::middleware::from_fn(crate::listener::bounded_body))
        .with_state(state)
}

/// Body of `POST /api/v1/incidents/open`.
#[derive(Debug, Deserialize)]
struct OpenBody {
    host: String,
    priority: String,
    title: String,
    #[serde(default)]
    by: String,
    /// When the problem started, if it is recorded after the fact (default: now).
    at: Option<serde_json::Value>,
}

async fn open(
    State(state): State<AppState>,
    body: Result<axum::Json<OpenBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let body = match body {
        Ok(axum::Json(body)) => body,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected JSON {{\"host\", \"priority\", \"title\", \"by\"}}: {err}"),
            );
        }
    };
    let checked = bounded("host", &body.host, MAX_NAME_BYTES)
        .and_then(|()| bounded("title", &body.title, MAX_REASON_BYTES))
        .and_then(|()| bounded("by", &body.by, MAX_BY_BYTES));
    if let Err((code, message)) = checked {
        return error(code, message);
    }
    let Some(priority) = Priority::parse(&body.priority) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("priority {:?}: expected critical, high, medium or low", body.priority),
        );
    };
    if body.title.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "title: empty; say what the problem is".into());
    }
    let (uptime, admin) = (Arc::clone(&state.uptime), Arc::clone(&state.admin));
    let now = match past_time(body.at.as_ref(), now_ms()) {
        Ok(at) => at,
        Err((code, message)) => return error(code, message),
    };
    let opened = blocking(move || {
        if !uptime.hosts()?.contains(&body.host) {
            return Ok(None);
        }
        let number = admin.open_incident(&body.host, priority.as_str(), body.title.trim(), &body.by, now)?;
        Ok(Some((incident_id(&body.host, "manual", &number.to_string(), now), number)))
    })
    .await;
    match opened {
        Ok(Some((id, number))) => (
            StatusCode::CREATED,
            axum::Json(
                serde_json::json!({ "id": id, "number": number, "opened_ms": now, "priority": priority.as_str() }),
            ),
        )
            .into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "unknown host: use one from GET /api/v1/hosts".into()),
        Err(response) => response,
    }
}

/// Body of `POST /api/v1/incidents/resolve`.
#[derive(Debug, Deserialize)]
struct ResolveBody {
    id: String,
    #[serde(default)]
    by: String,
    /// When it was resolved, if it is recorded after the fact (default: now; not before it opened).
    at: Option<serde_json::Value>,
}

async fn resolve(
    State(state): State<AppState>,
    body: Result<axum::Json<ResolveBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let body = match body {
        Ok(axum::Json(body)) => body,
        Err(err) => return error(StatusCode::BAD_REQUEST, format!("expected JSON {{\"id\", \"by\"}}: {err}")),
    };
    if let Err((code, message)) =
        bounded("id", &body.id, MAX_NAME_BYTES).and_then(|()| bounded("by", &body.by, MAX_BY_BYTES))
    {
        return error(code, message);
    }
    let (uptime, admin) = (Arc::clone(&state.uptime), Arc::clone(&state.admin));
    let now = now_ms();
    let at = match past_time(body.at.as_ref(), now) {
        Ok(at) => at,
        Err((code, message)) => return error(code, message),
    };
    let done = blocking(move || {
        let Some(incident) = uptime.find_incident(&IncidentRef::Id(body.id.clone()), now)? else {
            return Ok(Err((
                StatusCode::NOT_FOUND,
                "no such incident: use an id from GET /api/v1/incidents".to_owned(),
            )));
        };
        if incident.check != "manual" {
            return Ok(Err((
                StatusCode::CONFLICT,
                format!(
                    "incident {} was opened by check {:?}: it is resolved when the check is ok again",
                    incident.id, incident.check
                ),
            )));
        }
        let number: i64 = incident.target.parse().unwrap_or_default();
        match admin.resolve_incident(number, &body.by, at) {
            Ok(()) => Ok(Ok(incident.id)),
            Err(crate::store::Error::Failed(message)) => Ok(Err((StatusCode::CONFLICT, message))),
            Err(err) => Err(err),
        }
    })
    .await;
    match done {
        Ok(Ok(id)) => axum::Json(serde_json::json!({ "resolved": true, "id": id, "resolved_ms": at })).into_response(),
        Ok(Err((code, message))) => error(code, message),
        Err(response) => response,
    }
}

/// Query of the client report and the fleet summary.
#[derive(Debug, Deserialize)]
struct ReportQuery {
    month: Option<String>,
    format: Option<String>,
    lang: Option<String>,
}

/// `client`'s report (a configured client) as `ask` says; a bad month is a 400.
pub(crate) async fn client_report_as(state: &AppState, client: String, ask: ReportAsk, now: i64) -> Response {
    let uptime = Arc::clone(&state.uptime);
    let month = ask.month;
    let report = match blocking(move || Ok(crate::client_report::build(&uptime, &client, &month, now))).await {
        Ok(Ok(report)) => report,
        Ok(Err(message)) => return error(StatusCode::BAD_REQUEST, message),
        Err(response) => return response,
    };
    match ask.format.as_str() {
        "json" => axum::Json(report).into_response(),
        "csv" => csv_response(
            &format!("b24watch-{}-{}", report.client, report.period.month),
            crate::client_report::csv(&report),
        ),
        _ => html_page(crate::client_report::html(&report, ask.lang), ask.lang),
    }
}

async fn client_report(
    State(state): State<AppState>,
    Path(client): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let now = now_ms();
    let Some(c) = state.uptime.cfg.contracts.client(&client) else {
        return error(StatusCode::NOT_FOUND, format!("unknown client {client:?}"));
    };
    match ReportAsk::of(&state, q.month, q.format, q.lang.as_deref(), now, &c.contract.timezone) {
        Ok(ask) => client_report_as(&state, client, ask, now).await,
        Err(response) => *response,
    }
}

async fn fleet_report(State(state): State<AppState>, Query(q): Query<ReportQuery>) -> Response {
    let now = now_ms();
    let tz = state.uptime.cfg.timezone.clone();
    let ask = match ReportAsk::of(&state, q.month, q.format, q.lang.as_deref(), now, &tz) {
        Ok(ask) => ask,
        Err(response) => return *response,
    };
    let (uptime, month) = (Arc::clone(&state.uptime), ask.month);
    let fleet = match blocking(move || Ok(crate::client_report::fleet(&uptime, &month, now))).await {
        Ok(Ok(fleet)) => fleet,
        Ok(Err(message)) => return error(StatusCode::BAD_REQUEST, message),
        Err(response) => return response,
    };
    match ask.format.as_str() {
        "json" => axum::Json(fleet).into_response(),
        "csv" => csv_response(&format!("b24watch-fleet-{}", fleet.month), crate::client_report::fleet_csv(&fleet)),
        _ => html_page(crate::client_report::fleet_html(&fleet, ask.lang, tz), ask.lang),
    }
}
