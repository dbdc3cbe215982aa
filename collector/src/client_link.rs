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
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::{AppState, ErrorsQuery, PageQuery, Refusal, ReportQuery, SeriesQuery, WindowQuery, error};
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
}

async fn scope(state: &AppState, link: Option<Extension<LinkScope>>) -> Result<Scope, Response> {
    let Some(Extension(link)) = link else {
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

/// `/c/<token>` without the slash: to the page, so its relative links resolve inside the link.
async fn to_page(Path(token): Path<String>) -> Response {
    match HeaderValue::from_str(&format!("{token}/")) {
        Ok(location) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn status(
    State(state): State<AppState>,
    link: Option<Extension<LinkScope>>,
    Query(q): Query<PageQuery>,
) -> Response {
    let scope = match scope(&state, link).await {
        Ok(scope) => scope,
        Err(response) => return response,
    };
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
async fn report(
    State(state): State<AppState>,
    link: Option<Extension<LinkScope>>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let scope = match scope(&state, link).await {
        Ok(scope) => scope,
        Err(response) => return response,
    };
    let now = crate::now_ms();
    let Some(client) = state.uptime.cfg.contracts.client(&scope.client).cloned() else {
        return error(StatusCode::NOT_FOUND, format!("client {:?} is no longer configured", scope.client));
    };
    let month = q.month.clone().unwrap_or_else(|| {
        jiff::Timestamp::from_millisecond(now).map_or_else(
            |_| String::new(),
            |t| t.to_zoned(client.contract.timezone.clone()).strftime("%Y-%m").to_string(),
        )
    });
    let format = q.format.clone().unwrap_or_else(|| "html".into());
    if !matches!(format.as_str(), "html" | "csv" | "json") {
        return error(StatusCode::BAD_REQUEST, format!("format {format:?}: expected html, csv or json"));
    }
    let lang = match crate::http::page_lang(&state, q.lang.as_deref()) {
        Ok(lang) => lang,
        Err(response) => return *response,
    };
    let uptime = Arc::clone(&state.uptime);
    let name = scope.client.clone();
    let Some(host) = q.host.clone() else {
        let built = crate::http::blocking(move || Ok(crate::client_report::build(&uptime, &name, &month, now))).await;
        let report = match built {
            Ok(Ok(report)) => report,
            Ok(Err(message)) => return error(StatusCode::BAD_REQUEST, message),
            Err(response) => return response,
        };
        return match format.as_str() {
            "json" => axum::Json(report).into_response(),
            "csv" => csv_response(
                &format!("b24watch-{}-{}", report.client, report.month),
                crate::client_report::csv(&report),
            ),
            _ => crate::http::html_page(crate::client_report::html(&report, lang), lang),
        };
    };
    if let Err((code, message)) = scope.host(&host) {
        return error(code, message);
    }
    let built = crate::http::blocking(move || {
        let service = uptime.with_config(contract_config(&uptime.cfg, &client.contract, &host));
        Ok(crate::report::build(&service, &month, Some(&host), now))
    })
    .await;
    let report = match built {
        Ok(Ok(report)) => report,
        Ok(Err(message)) if message.starts_with("unknown host") => return error(StatusCode::NOT_FOUND, message),
        Ok(Err(message)) => return error(StatusCode::BAD_REQUEST, message),
        Err(response) => return response,
    };
    match format.as_str() {
        "json" => axum::Json(report).into_response(),
        "csv" => csv_response(
            &format!(
                "b24watch-{}-{}-{}",
                scope.client,
                report.hosts.first().map_or("", |h| h.host.as_str()),
                report.month
            ),
            crate::report::csv(&report),
        ),
        _ => crate::http::html_page(crate::report::html(&report, lang), lang),
    }
}

/// The SLA settings of `host` under `contract`: its target, service hours and time zone (as
/// the client report computes them).
fn contract_config(
    sla: &crate::config::SlaConfig,
    contract: &crate::contract::Contract,
    host: &str,
) -> crate::config::SlaConfig {
    let mut cfg = sla.clone();
    cfg.target = contract.target;
    cfg.targets = std::iter::once((host.to_owned(), contract.target)).collect();
    cfg.calendar.clone_from(&contract.calendar);
    cfg.timezone = contract.timezone.clone();
    cfg
}

/// A CSV attachment named `name.csv` (characters outside `[A-Za-z0-9._-]` left out).
fn csv_response(name: &str, body: String) -> Response {
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

async fn hosts(State(state): State<AppState>, link: Option<Extension<LinkScope>>) -> Response {
    let scope = match scope(&state, link).await {
        Ok(scope) => scope,
        Err(response) => return response,
    };
    let timeout_ms = i64::try_from(state.agent_timeout.as_millis()).unwrap_or(i64::MAX);
    let mine: Vec<_> = state
        .live
        .statuses(crate::now_ms(), timeout_ms)
        .into_iter()
        .filter(|h| scope.hosts.contains(&h.host))
        .collect();
    axum::Json(mine).into_response()
}

/// The window and hosts of an uptime or incidents query through a link.
async fn resolve(
    state: &AppState,
    link: Option<Extension<LinkScope>>,
    q: &WindowQuery,
    now: i64,
) -> Result<(i64, i64, Vec<String>), Response> {
    let scope = scope(state, link).await?;
    let (from, to) = crate::http::window(q, now).map_err(|(code, message)| error(code, message))?;
    let hosts = scope.hosts_or(q.host.as_deref()).map_err(|(code, message)| error(code, message))?;
    Ok((from, to, hosts))
}

async fn uptime(
    State(state): State<AppState>,
    link: Option<Extension<LinkScope>>,
    Query(q): Query<WindowQuery>,
) -> Response {
    let now = crate::now_ms();
    let (from, to, hosts) = match resolve(&state, link, &q, now).await {
        Ok(resolved) => resolved,
        Err(response) => return response,
    };
    let uptime = Arc::clone(&state.uptime);
    let with_timeline = q.timeline.unwrap_or(false);
    crate::http::blocking_json(move || {
        let mut out = Vec::new();
        for host in hosts {
            let signals = uptime.host_uptime(&host, from, to, now, with_timeline)?;
            out.push(serde_json::json!({ "host": host, "target": uptime.cfg.target_of(&host), "signals": signals }));
        }
        Ok(serde_json::json!({ "from": from, "to": to, "hosts": out }))
    })
    .await
}

async fn incidents(
    State(state): State<AppState>,
    link: Option<Extension<LinkScope>>,
    Query(q): Query<WindowQuery>,
) -> Response {
    let now = crate::now_ms();
    let (from, to, hosts) = match resolve(&state, link, &q, now).await {
        Ok(resolved) => resolved,
        Err(response) => return response,
    };
    let uptime = Arc::clone(&state.uptime);
    crate::http::blocking_json(move || {
        let mut all = Vec::new();
        for host in hosts {
            all.extend(uptime.incidents(&host, from, to, now)?);
        }
        Ok(serde_json::json!({ "from": from, "to": to, "incidents": all }))
    })
    .await
}

/// Maintenance windows of the client's hosts and those for every host.
async fn maintenance(
    State(state): State<AppState>,
    link: Option<Extension<LinkScope>>,
    Query(q): Query<WindowQuery>,
) -> Response {
    let scope = match scope(&state, link).await {
        Ok(scope) => scope,
        Err(response) => return response,
    };
    let (from, to) = (q.from.unwrap_or(i64::MIN), q.to.unwrap_or(i64::MAX));
    let uptime = Arc::clone(&state.uptime);
    crate::http::blocking_json(move || {
        let mut windows = uptime.maintenance_windows(from, to)?;
        windows.retain(|w| w.host.is_empty() || scope.hosts.contains(&w.host));
        Ok(serde_json::json!({ "windows": windows }))
    })
    .await
}

/// Runs `then` for one of the client's hosts, 404 for any other.
async fn for_host<F>(state: AppState, link: Option<Extension<LinkScope>>, host: &str, then: F) -> Response
where
    F: AsyncFnOnce(AppState) -> Response,
{
    match scope(&state, link).await.map(|scope| scope.host(host)) {
        Ok(Ok(())) => then(state).await,
        Ok(Err((code, message))) => error(code, message),
        Err(response) => response,
    }
}

async fn series(
    State(state): State<AppState>,
    link: Option<Extension<LinkScope>>,
    Path((_, host)): Path<(String, String)>,
    q: Query<SeriesQuery>,
) -> Response {
    let h = host.clone();
    for_host(state, link, &h, async move |state| crate::http::series(State(state), Path(host), q).await).await
}

async fn errors(
    State(state): State<AppState>,
    link: Option<Extension<LinkScope>>,
    Path((_, host)): Path<(String, String)>,
    q: Query<ErrorsQuery>,
) -> Response {
    let h = host.clone();
    for_host(state, link, &h, async move |state| crate::http::errors(State(state), Path(host), q).await).await
}

async fn checks(
    State(state): State<AppState>,
    link: Option<Extension<LinkScope>>,
    Path((_, host)): Path<(String, String)>,
) -> Response {
    let h = host.clone();
    for_host(state, link, &h, async move |state| crate::http::checks(State(state), Path(host)).await).await
}

async fn gaps(
    State(state): State<AppState>,
    link: Option<Extension<LinkScope>>,
    Path((_, host)): Path<(String, String)>,
) -> Response {
    let h = host.clone();
    for_host(state, link, &h, async move |state| crate::http::gaps(State(state), Path(host)).await).await
}
