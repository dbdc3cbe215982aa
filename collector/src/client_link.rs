//! Client links over HTTP: `/c/<token>/` shows one client its status page, its monthly report
//! (HTML, CSV, JSON) and the read API, without a login, and only its own hosts.
//!
//! The access guard (`crate::access`) checks the token against the stored links before anything
//! here runs, refuses every method but GET and HEAD, and hands over the link's client as a
//! [`LinkScope`]; a handler without one answers 404. The client's hosts come from the
//! configuration (`[[client]] hosts`, then the client recorded at enrolment) at each request,
//! so moving a host to another client moves it out of the link at once. Every handler takes the
//! host set as an allowlist: lists are filtered to it, and a host outside it is "unknown"
//! (404, the same answer as for a host that does not exist, so a link does not reveal other
//! clients' host names).
//!
//! Links on the pages are relative (`./reports/sla`), so they stay within the link, also behind
//! a reverse proxy serving the collector under a path.
//!
//! | path under `/c/<token>` | what |
//! |---|---|
//! | `/` | the status page of the client's hosts (no forms) |
//! | `/reports/sla?month=&format=html\|csv\|json&lang=` | the client's monthly report (`crate::client_report`) |
//! | `/reports/sla?host=...` | one of its hosts' section of the collector's report, on its contract |
//! | `/api/v1/hosts`, `/api/v1/uptime`, `/api/v1/incidents`, `/api/v1/maintenance` | as the API, its hosts only |
//! | `/api/v1/hosts/{host}/series\|errors\|checks\|gaps` | as the API, for its hosts |

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::{
    AppState, ErrorsQuery, PageQuery, Refusal, ReportAsk, ReportQuery, SeriesQuery, WindowQuery, csv_response, error,
};
use crate::i18n::{Msg, Page};
use crate::report::{StatusView, html_escape};

/// Where client links live.
pub const PREFIX: &str = "/c/";

/// The link a request came through (set by the access guard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkScope {
    /// The link's id.
    pub id: i64,
    /// The client it shows.
    pub client: String,
}

/// The routes of client links.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/c/{token}", get(to_page))
        .route("/c/{token}/", get(status))
        .route("/c/{token}/reports/sla", get(report))
        .route("/c/{token}/api/v1/hosts", get(hosts))
        .route("/c/{token}/api/v1/uptime", get(uptime))
        .route("/c/{token}/api/v1/incidents", get(incidents))
        .route("/c/{token}/api/v1/maintenance", get(maintenance))
        .route("/c/{token}/api/v1/hosts/{host}/series", get(series))
        .route("/c/{token}/api/v1/hosts/{host}/errors", get(errors))
        .route("/c/{token}/api/v1/hosts/{host}/checks", get(checks))
        .route("/c/{token}/api/v1/hosts/{host}/gaps", get(gaps))
}

/// The client of the link and its hosts (the allowlist of every handler here).
struct Scope {
    client: String,
    hosts: BTreeSet<String>,
}

impl Scope {
    /// `host` if it is the client's, else the 404 of an unknown host.
    fn host(&self, host: &str) -> Result<(), Refusal> {
        if self.hosts.contains(host) { Ok(()) } else { Err((StatusCode::NOT_FOUND, format!("unknown host {host:?}"))) }
    }

    /// The client's hosts, or just `host` when it is one of them.
    fn hosts_or(&self, host: Option<&str>) -> Result<Vec<String>, Refusal> {
        match host {
            Some(h) => self.host(h).map(|()| vec![h.to_owned()]),
            None => Ok(self.hosts.iter().cloned().collect()),
        }
    }

    /// The window and hosts of an uptime or incidents query through the link.
    fn resolve(&self, q: &WindowQuery, now: i64) -> Result<(i64, i64, Vec<String>), Refusal> {
        let (from, to) = crate::http::window(q, now)?;
        Ok((from, to, self.hosts_or(q.host.as_deref())?))
    }

    /// `then` with the `{host}` of `path` when it is one of the client's hosts, else the 404 of
    /// an unknown host.
    async fn on_host(self, path: Path<(String, String)>, then: impl AsyncFnOnce(Path<String>) -> Response) -> Response {
        let Path((_, host)) = path;
        match self.host(&host) {
            Ok(()) => then(Path(host)).await,
            Err((code, message)) => error(code, message),
        }
    }
}

/// The scope of the link a request came through: 404 without one, or when its client is no
/// longer configured. Handlers take it after their other extractors, so a malformed query is
/// refused first.
impl FromRequestParts<AppState> for Scope {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(link) = parts.extensions.get::<LinkScope>().cloned() else {
            return Err(error(StatusCode::NOT_FOUND, "not a client link".into()));
        };
        let uptime = Arc::clone(&state.uptime);
        let client = link.client.clone();
        match crate::http::blocking(move || uptime.hosts_of_client(&client)).await? {
            Some(hosts) => Ok(Scope { client: link.client, hosts: hosts.into_iter().collect() }),
            None => Err(error(
                StatusCode::NOT_FOUND,
                format!("client {:?} is no longer configured on this collector", link.client),
            )),
        }
    }
}

/// `/c/<token>` without the slash: to the page, so its relative links resolve inside the link.
async fn to_page(Path(token): Path<String>) -> Response {
    match HeaderValue::from_str(&format!("{token}/")) {
        Ok(location) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn status(State(state): State<AppState>, Query(q): Query<PageQuery>, scope: Scope) -> Response {
    let lang = match crate::http::page_lang(&state, q.lang.as_deref()) {
        Ok(lang) => lang,
        Err(response) => return *response,
    };
    let timeout_ms = i64::try_from(state.agent_timeout.as_millis()).unwrap_or(i64::MAX);
    let now = crate::now_ms();
    let up: BTreeSet<String> = state
        .live
        .statuses(now, timeout_ms)
        .into_iter()
        .filter(|h| h.up && scope.hosts.contains(&h.host))
        .map(|h| h.host)
        .collect();
    let uptime = Arc::clone(&state.uptime);
    let page = Page::new(lang, uptime.cfg.timezone.clone());
    let hosts = scope.hosts.clone();
    let rows = crate::http::blocking(move || {
        crate::report::status_rows_of(&uptime, &|h: &str| up.contains(h), &|h: &str| hosts.contains(h), now)
    })
    .await;
    match rows {
        Ok(rows) => {
            let view = StatusView {
                base: ".",
                client_link: true,
                top: format!("<p class=\"client\">{}</p>", html_escape(&page.f(Msg::LinkClient, &[&scope.client]))),
                incident_actions: None,
            };
            crate::http::html_page(crate::report::status_html_with(&rows, &[], now, &page, &view), lang)
        }
        Err(response) => response,
    }
}

/// The client's monthly report (`crate::client_report`: its hosts, availability against its
/// contract, incidents by priority with breaches, maintenance); with `host=`, that one host's
/// section of the collector's report, on the client's contract. Formats html, csv and json.
async fn report(State(state): State<AppState>, Query(q): Query<ReportQuery>, scope: Scope) -> Response {
    let now = crate::now_ms();
    let Some(client) = state.uptime.cfg.contracts.client(&scope.client).cloned() else {
        return error(StatusCode::NOT_FOUND, format!("client {:?} is no longer configured", scope.client));
    };
    let contract = &client.contract;
    let ask = match ReportAsk::of(&state, q.month, q.format, q.lang.as_deref(), now, &contract.timezone) {
        Ok(ask) => ask,
        Err(response) => return *response,
    };
    let Some(host) = q.host else {
        return crate::http_contracts::client_report_as(&state, scope.client, ask, now).await;
    };
    if let Err((code, message)) = scope.host(&host) {
        return error(code, message);
    }
    let service = Arc::new(state.uptime.with_config(crate::client_report::on_contract(
        &state.uptime.cfg,
        contract,
        std::slice::from_ref(&host),
    )));
    let report = match crate::http::sla_report_of(service, ask.month, Some(host), now).await {
        Ok(report) => report,
        Err(response) => return response,
    };
    match ask.format.as_str() {
        "json" => axum::Json(report).into_response(),
        "csv" => csv_response(
            &format!(
                "b24watch-{}-{}-{}",
                scope.client,
                report.hosts.first().map_or("", |h| h.host.as_str()),
                report.period.month
            ),
            crate::report::csv(&report),
        ),
        _ => crate::http::html_page(crate::report::html(&report, ask.lang), ask.lang),
    }
}

async fn hosts(State(state): State<AppState>, scope: Scope) -> Response {
    let timeout_ms = i64::try_from(state.agent_timeout.as_millis()).unwrap_or(i64::MAX);
    let mine: Vec<_> = state
        .live
        .statuses(crate::now_ms(), timeout_ms)
        .into_iter()
        .filter(|h| scope.hosts.contains(&h.host))
        .collect();
    axum::Json(mine).into_response()
}

async fn uptime(State(state): State<AppState>, Query(q): Query<WindowQuery>, scope: Scope) -> Response {
    let now = crate::now_ms();
    match scope.resolve(&q, now) {
        Ok((from, to, hosts)) => {
            crate::http::uptime_of(&state, (from, to), hosts, now, q.timeline.unwrap_or(false)).await
        }
        Err((code, message)) => error(code, message),
    }
}

async fn incidents(State(state): State<AppState>, Query(q): Query<WindowQuery>, scope: Scope) -> Response {
    let now = crate::now_ms();
    match scope.resolve(&q, now) {
        Ok((from, to, hosts)) => crate::http::incidents_of(&state, (from, to), hosts, now).await,
        Err((code, message)) => error(code, message),
    }
}

/// Maintenance windows of the client's hosts and those for every host.
async fn maintenance(State(state): State<AppState>, Query(q): Query<WindowQuery>, scope: Scope) -> Response {
    let (from, to) = (q.from.unwrap_or(i64::MIN), q.to.unwrap_or(i64::MAX));
    let uptime = Arc::clone(&state.uptime);
    crate::http::blocking_json(move || {
        let mut windows = uptime.maintenance_windows(from, to)?;
        windows.retain(|w| w.host.is_empty() || scope.hosts.contains(&w.host));
        Ok(serde_json::json!({ "windows": windows }))
    })
    .await
}

async fn series(state: State<AppState>, path: Path<(String, String)>, q: Query<SeriesQuery>, scope: Scope) -> Response {
    scope.on_host(path, async move |host| crate::http::series(state, host, q).await).await
}

async fn errors(state: State<AppState>, path: Path<(String, String)>, q: Query<ErrorsQuery>, scope: Scope) -> Response {
    scope.on_host(path, async move |host| crate::http::errors(state, host, q).await).await
}

async fn checks(state: State<AppState>, path: Path<(String, String)>, scope: Scope) -> Response {
    scope.on_host(path, async move |host| crate::http::checks(state, host).await).await
}

async fn gaps(state: State<AppState>, path: Path<(String, String)>, scope: Scope) -> Response {
    scope.on_host(path, async move |host| crate::http::gaps(state, host).await).await
}
