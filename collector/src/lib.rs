//! b24watch-collector: receives agent streams, stores history in SQLite, serves Prometheus
//! metrics and a JSON API.
//!
//! # Layout
//! - [`config`]: TOML config, raw and validated.
//! - [`auth`]: token format, hashing, constant-time verification (pure).
//! - [`grpc`]: the ingest service and batch validation (the only file naming proto types).
//! - [`store`]: SQLite: one writer thread, read connections, migrations, agent admin.
//! - [`live`]: latest values per host for `/metrics`, liveness by receive time.
//! - [`metrics`]: the collector's own metrics.
//! - [`http`]: `/metrics`, probes, `/api/v1`.
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod grpc;
pub mod http;
pub mod live;
pub mod metrics;
pub mod report;
pub mod sla;
pub mod store;
pub mod uptime;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use b24watch_proto::v1::ingest_server::IngestServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::codec::CompressionEncoding;
use tracing::{info, warn};

use crate::config::Config;

/// How often enrolment and revocation changes are picked up from the database.
const AGENT_REFRESH: Duration = Duration::from_secs(10);
/// How often the collector records that it is alive and recomputes uptime metrics.
const SLA_REFRESH: Duration = Duration::from_secs(10);

/// The collector's wall clock in unix milliseconds. Only edges call it; pure code takes times as
/// arguments.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Reads the PEM files named in the config.
fn tls_config(files: &config::TlsFiles) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let read = |path: &std::path::Path, key: &str| {
        std::fs::read(path).with_context(|| format!("reading {} ({key})", path.display()))
    };
    let identity = tonic::transport::Identity::from_pem(
        read(&files.cert_file, "tls.cert_file")?,
        read(&files.key_file, "tls.key_file")?,
    );
    let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca_file {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(ca, "tls.client_ca_file")?));
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
    let uptime = Arc::new(
        uptime::Uptime::open(&cfg.data_dir, cfg.sla.clone(), Arc::clone(&reader), true, now_ms())
            .context("recording this collector run")?,
    );
    let live = Arc::new(live::Live::default());
    live.set_agents(&reader.agents().context("reading enrolled agents")?);
    let metrics = Arc::new(metrics::Metrics::default());
    let tracker = TaskTracker::new();

    let grpc_addr = grpc.local_addr().context("reading the gRPC address")?;
    let http_addr = http.local_addr().context("reading the HTTP address")?;
    let service = grpc::IngestService {
        store: store.clone(),
        reader: Arc::clone(&reader),
        live: Arc::clone(&live),
        metrics: Arc::clone(&metrics),
        limits: cfg.limits,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        streams: Arc::default(),
    };
    let ingest = IngestServer::new(service)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(cfg.limits.max_message_bytes);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &cfg.tls {
        builder = builder.tls_config(tls_config(tls)?).context("configuring TLS for the gRPC listener")?;
    }
    let grpc_server = builder
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(ingest)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc),
            shutdown.clone().cancelled_owned(),
        );
    let app = http::router(http::AppState {
        live: Arc::clone(&live),
        metrics,
        reader: Arc::clone(&reader),
        store: store.clone(),
        agent_timeout: cfg.agent_timeout,
        shutdown: shutdown.clone(),
        uptime: Arc::clone(&uptime),
    });
    let http_server = axum::serve(http, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
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
    let sla_refresh = {
        let (uptime, shutdown) = (Arc::clone(&uptime), shutdown.clone());
        async move {
            let mut ticker = tokio::time::interval(SLA_REFRESH);
            let mut beats = 0u64;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let uptime = Arc::clone(&uptime);
                // Uptime metrics are recomputed every third beat (30 s): windows are days long.
                let recompute = beats.is_multiple_of(3);
                beats += 1;
                let result = tokio::task::spawn_blocking(move || {
                    let now = now_ms();
                    uptime.heartbeat(now)?;
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
    let grpc_task = tracker.spawn(grpc_server);
    let http_task = tracker.spawn(async move { http_server.await });

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
    info!("collector stopped");
    Ok(())
}
