//! b24watch-collector: receives agent streams, stores history in SQLite, serves Prometheus
//! metrics and a JSON API.
//!
//! # Layout
//! - [`config`]: TOML config, raw and validated.
//! - [`auth`]: token format, hashing, constant-time verification (pure).
//! - [`grpc`]: the ingest service and batch validation (the only file naming proto types).
//! - [`store`]: SQLite: one writer thread, read connections, migrations, administration writes.
//! - [`live`]: latest values per host for `/metrics`, liveness by receive time.
//! - [`metrics`]: the collector's own metrics.
//! - [`http`]: `/metrics`, probes, `/api/v1`.
//! - [`resources`]: a host's resources over a report period from the hour tier of the history.
//! - [`client_link`]: read-only links showing one client its own status page, reports and API.
//! - [`forms`]: the status page's forms (acknowledge, declare maintenance, sign in), CSRF-safe.
//! - [`access`]: HTTP roles, credentials, the guard and audit of writes, security headers.
//! - [`http_tls`]: TLS for the HTTP listener.
//! - [`i18n`]: English and Russian texts, readable identifiers, numbers, dates and durations per language.
//! - [`listener`]: the HTTP listener's connection cap, timeouts and body bound.
//! - [`contract`]: clients and their contracts (plans, support hours, targets per priority).
//! - [`support_clock`]: support time elapsed between instants and deadlines in support time (pure).
//! - [`incident`]: incidents on the contract's clock: reaction and resolution against targets, breaches, their series.
//! - [`client_report`]: the monthly report per client and the fleet summary.
//! - [`http_contracts`]: incidents opened and resolved by hand, client reports over HTTP.
//! - [`remote_write`]: Prometheus remote write of every stored sample to `[[remote_write]]` targets.
#![warn(missing_docs)]

pub mod access;
pub mod auth;
pub mod client_link;
pub mod client_report;
pub mod config;
pub mod contract;
pub mod forms;
pub mod grpc;
pub mod http;
pub mod http_contracts;
pub mod http_tls;
pub mod i18n;
pub mod incident;
pub mod listener;
pub mod live;
pub mod metrics;
pub mod remote_write;
pub mod report;
pub mod resources;
pub mod sla;
pub mod store;
pub mod support_clock;
pub mod uptime;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::Config;

/// How often the list of enrolled agents (liveness, `/api/v1/hosts`) is re-read. Credentials have
/// a faster refresh of their own ([`auth::CREDENTIAL_REFRESH`]).
const AGENT_REFRESH: Duration = Duration::from_secs(10);
/// Credential lookups (stream starts) running at once; more wait without holding a worker.
const CREDENTIAL_LOOKUPS: usize = 2;
/// How often the collector records that it is alive and recomputes uptime metrics.
const SLA_REFRESH: Duration = Duration::from_secs(10);
/// HTTP/2 receive window of an agent stream and connection: the next batch waits in it while the
/// stream's current one is stored (an agent batch of 300 series is ~40 KB), so pipelining keeps the
/// writer fed without parking memory. 64 KiB rather than 128: 25 MiB less peak RSS under
/// `make bench-ingest` (200 agents at saturation), the same samples/s.
const GRPC_WINDOW_BYTES: u32 = 64 * 1024;

/// The collector's wall clock in unix milliseconds. Only edges call it; pure code takes times as
/// arguments.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// PEM bytes of a listener's certificate chain, private key and client CA.
type TlsPem = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// Reads the PEM files named in the config: certificate chain, key and client CA (`keys` name
/// the config keys in errors).
fn read_tls_pem(files: &config::TlsFiles, keys: [&str; 3]) -> anyhow::Result<TlsPem> {
    let read = |path: &std::path::Path, key: &str| {
        std::fs::read(path).with_context(|| format!("reading {} ({key})", path.display()))
    };
    let ca = files.client_ca_file.as_deref().map(|ca| read(ca, keys[2])).transpose()?;
    Ok((read(&files.cert_file, keys[0])?, read(&files.key_file, keys[1])?, ca))
}

/// The gRPC listener's TLS from the PEM files named in `[tls]`.
fn tls_config(files: &config::TlsFiles) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let (cert, key, ca) = read_tls_pem(files, ["tls.cert_file", "tls.key_file", "tls.client_ca_file"])?;
    let mut tls = tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert, key));
    if let Some(ca) = ca {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(ca));
    }
    Ok(tls)
}

/// Runs the collector on already-bound listeners until `shutdown` is cancelled, then lets open
/// streams finish their current batch within the grace period and closes the store.
///
/// # Errors
/// Startup failures (store cannot be opened) and server failures.
pub async fn run(cfg: Config, grpc: TcpListener, http: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let evidence_span = i64::try_from(cfg.agent_timeout.as_millis()).unwrap_or(i64::MAX);
    let (store, reader, writer) = store::Store::open(
        &cfg.data_dir,
        cfg.limits.max_series_per_agent,
        cfg.max_db_bytes,
        evidence_span,
        cfg.retention,
    )
    .with_context(|| format!("opening the store in {}", cfg.data_dir.display()))?;
    let reader = Arc::new(reader);
    let admin = Arc::new(
        store::admin::Admin::open(&cfg.data_dir)
            .with_context(|| format!("opening the store in {}", cfg.data_dir.display()))?,
    );
    let run = admin.start_run(now_ms()).context("recording this collector run")?;
    admin.limit(cfg.max_db_bytes).context("bounding the administration connection")?;
    let uptime = Arc::new(uptime::Uptime::new(cfg.sla.clone(), Arc::clone(&reader)));
    let live = Arc::new(live::Live::default());
    live.set_agent_timeout(i64::try_from(cfg.agent_timeout.as_millis()).unwrap_or(i64::MAX));
    live.set_agents(&reader.agents().context("reading enrolled agents")?);
    // Credentials are read on blocking threads with this connection of their own, never waiting
    // behind a report on the shared reader: at every stream start, and every 2 s into the cache
    // that open streams re-check.
    let credential_db = store::open_connection(&cfg.data_dir).context("opening the credential connection")?;
    let credentials = Arc::new(auth::Credentials::default());
    credentials.replace(store::credentials(&credential_db).context("reading agent credentials")?);
    let credential_db = Arc::new(std::sync::Mutex::new(credential_db));
    let metrics = Arc::new(metrics::Metrics::default());
    let tracker = TaskTracker::new();

    let grpc_addr = grpc.local_addr().context("reading the gRPC address")?;
    let http_addr = http.local_addr().context("reading the HTTP address")?;
    let service = grpc::IngestService {
        store: store.clone(),
        credentials: Arc::clone(&credentials),
        credential_db: Arc::clone(&credential_db),
        lookups: Arc::new(tokio::sync::Semaphore::new(CREDENTIAL_LOOKUPS)),
        live: Arc::clone(&live),
        metrics: Arc::clone(&metrics),
        limits: cfg.limits,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        streams: Arc::default(),
        budget: Arc::default(),
    };
    let ingest = service.into_server(cfg.limits.max_message_bytes);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &cfg.tls {
        builder = builder.tls_config(tls_config(tls)?).context("configuring TLS for the gRPC listener")?;
    }
    // HTTP/2 flow-control windows bound what a stream can have received but not yet stored:
    // the stream handles one batch at a time, and hyper's default 1 MiB per stream (and per
    // connection) let 200 busy agents park ~200 MiB of batches in the collector's memory.
    let grpc_server = builder
        .initial_stream_window_size(Some(GRPC_WINDOW_BYTES))
        .initial_connection_window_size(Some(GRPC_WINDOW_BYTES))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(ingest)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc),
            shutdown.clone().cancelled_owned(),
        );
    let access =
        access::Access::open(&cfg.data_dir, &cfg.http, http_addr, cfg.max_db_bytes).context("reading HTTP users")?;
    access.log_startup(cfg.http.tls.is_some());
    let http_tls = cfg
        .http
        .tls
        .as_ref()
        .map(|files| {
            http_tls::server_config(files, ["http.tls_cert_file", "http.tls_key_file", "http.tls_client_ca_file"])
        })
        .transpose()
        .context("configuring TLS for the HTTP listener")?;
    let external_url = config::external_url(cfg.external_url.as_deref(), http_addr, cfg.http.tls.is_some());
    let runbook_url = cfg.runbook_url.clone().unwrap_or_else(|| format!("{external_url}/runbooks"));
    let state = http::AppState {
        links: Arc::new(http::Links { external_url, runbook_url }),
        live: Arc::clone(&live),
        metrics: Arc::clone(&metrics),
        reader: Arc::clone(&reader),
        store: store.clone(),
        agent_timeout: cfg.agent_timeout,
        shutdown: shutdown.clone(),
        uptime: Arc::clone(&uptime),
        admin: Arc::clone(&admin),
    };
    // Started before any listener serves: nothing is ingested yet. The computed series are
    // rendered as `/metrics` renders them, without the agents' series (those go from the store).
    let computed: remote_write::computed::Render = {
        let state = state.clone();
        Arc::new(move |out: &mut String| http::render_metrics(&state, false, out))
    };
    remote_write::start(&cfg.remote_write, &cfg.data_dir, &metrics, Some(computed), &shutdown, &tracker)
        .context("starting remote write")?;
    // The status page and its forms, client links and the contract routes, beside the API (their
    // modules use the API's state; the API does not know them).
    let app = http::router(state.clone())
        .merge(http_contracts::routes(state.clone()))
        .merge(forms::routes().with_state(state.clone()))
        .merge(client_link::routes().with_state(state));
    let app = access::protect(app, Arc::clone(&access));
    listener::check_descriptor_budget(cfg.http_limits.max_connections);
    let http_server = listener::serve(http, http_tls, app, cfg.http_limits, metrics, shutdown.clone());
    info!(grpc = %grpc_addr, http = %http_addr, data_dir = %cfg.data_dir.display(), "collector listening");

    let refresh = {
        let (reader, live, shutdown) = (Arc::clone(&reader), Arc::clone(&live), shutdown.clone());
        async move {
            let mut ticker = tokio::time::interval(AGENT_REFRESH);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let reader = Arc::clone(&reader);
                match tokio::task::spawn_blocking(move || reader.agents()).await {
                    Ok(Ok(agents)) => live.set_agents(&agents),
                    Ok(Err(err)) => warn!(error = %err, "refreshing enrolled agents"),
                    Err(err) => warn!(error = %err, "refreshing enrolled agents"),
                }
            }
        }
    };
    tracker.spawn(refresh);
    let credential_refresh = {
        let (db, credentials, shutdown) = (Arc::clone(&credential_db), Arc::clone(&credentials), shutdown.clone());
        async move {
            let mut ticker = tokio::time::interval(auth::CREDENTIAL_REFRESH);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let db = Arc::clone(&db);
                let read = tokio::task::spawn_blocking(move || {
                    store::credentials(&db.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
                });
                match read.await {
                    Ok(Ok(rows)) => credentials.replace(rows),
                    Ok(Err(err)) => warn!(error = %err, "refreshing agent credentials"),
                    Err(err) => warn!(error = %err, "refreshing agent credentials"),
                }
            }
        }
    };
    tracker.spawn(credential_refresh);
    let sla_refresh = {
        let (uptime, admin, shutdown) = (Arc::clone(&uptime), Arc::clone(&admin), shutdown.clone());
        async move {
            let mut ticker = tokio::time::interval(SLA_REFRESH);
            let mut beats = 0u64;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let (uptime, admin) = (Arc::clone(&uptime), Arc::clone(&admin));
                // Uptime metrics are recomputed every third beat (30 s): windows are days long.
                let recompute = beats.is_multiple_of(3);
                beats += 1;
                let result = tokio::task::spawn_blocking(move || {
                    let now = now_ms();
                    admin.heartbeat(run, now)?;
                    if !recompute {
                        return Ok(());
                    }
                    let hosts = uptime.hosts()?;
                    uptime.refresh_metrics(&hosts, now)
                })
                .await;
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => warn!(error = %err, "refreshing uptime"),
                    Err(err) => warn!(error = %err, "refreshing uptime"),
                }
            }
        }
    };
    tracker.spawn(sla_refresh);
    tracker.spawn(access::refresh_loop(access, shutdown.clone()));
    let grpc_task = tracker.spawn(grpc_server);
    let http_task = tracker.spawn(http_server);

    if let Err(err) = b24watch_common::systemd::notify("READY=1") {
        warn!(error = %err, "could not notify systemd of readiness");
    }
    shutdown.cancelled().await;
    let _ = b24watch_common::systemd::notify("STOPPING=1");
    info!("shutdown started");
    tracker.close();
    if tokio::time::timeout(cfg.shutdown_grace, tracker.wait()).await.is_err() {
        warn!(grace = ?cfg.shutdown_grace, "grace period elapsed with streams still open");
    }
    grpc_task.abort();
    http_task.abort();
    drop(store);
    // Stream tasks that outlived the grace period still hold store handles; the writer thread
    // ends once they are gone. Batches they were committing are committed before the process
    // exits, or not acked.
    let joined = tokio::task::spawn_blocking(move || writer.join());
    if tokio::time::timeout(Duration::from_secs(5), joined).await.is_err() {
        warn!("store writer still busy after shutdown; exiting without waiting");
    }
    // The SLA counts the time from here to the next start as collector downtime (unknown).
    let stopped = tokio::task::spawn_blocking(move || admin.stop_run(run, now_ms()));
    match tokio::time::timeout(Duration::from_secs(5), stopped).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => warn!(error = %err, "recording the clean stop"),
        _ => warn!("recording the clean stop timed out"),
    }
    info!("collector stopped");
    Ok(())
}
