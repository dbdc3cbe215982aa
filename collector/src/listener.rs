//! The HTTP listener: a connection cap, header-read and idle timeouts, and a bounded request body.
//!
//! gRPC ingest has a listener of its own; the cap keeps HTTP clients from taking the file
//! descriptors agents need (a connection past it is answered 503 and closed at once, counted in
//! `b24watch_collector_http_connections_refused_total`).
//!
//! Per connection (HTTP/1.1):
//! - the request headers must arrive within `header_timeout`; the same timer runs while a
//!   kept-alive connection waits for its next request, so idle keep-alive connections close too;
//! - a request body must arrive within `idle_timeout` and is at most [`MAX_BODY_BYTES`]
//!   (408 and 413 otherwise, before any handler runs);
//! - a connection without a byte read or written for `idle_timeout` while no request is being
//!   answered (a client that stops reading its response) is closed.
//!
//! With TLS ([`crate::http_tls::server_config`]), each connection's handshake runs in its own task
//! under the cap and within [`HANDSHAKE_TIMEOUT`], so a slow client holds up nobody else. Every
//! request carries its peer address as axum's `ConnectInfo<SocketAddr>` (the access guard and the
//! audit read it).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::config::HttpLimits;
use crate::metrics::Metrics;

/// Largest request body, bytes (larger: 413).
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// Time a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed to send a request body, when the router runs outside [`serve`] (tests).
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// The answer to a connection past the cap, written without waiting before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: text/plain\r\n\
content-length: 28\r\n\r\ntoo many connections, retry\n";

/// Time allowed for a request body, set by [`serve`] in each request's extensions.
#[derive(Debug, Clone, Copy)]
struct BodyTimeout(Duration);

/// Serves `app` on `listener` (over TLS when `tls` is set) within `limits` until `shutdown` is
/// cancelled, then lets open connections finish their current request.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors or a connection reset before accept: back off, never spin.
                warn!(error = %err, "accepting an HTTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            metrics.http_connection_refused();
            let _ = stream.try_write(REFUSED);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, metrics, shutdown, tls) = (app.clone(), Arc::clone(&metrics), shutdown.clone(), tls.clone());
        connections.spawn(async move {
            metrics.http_connection_opened();
            match tls {
                None => connection(stream, peer, app, limits, shutdown).await,
                Some(config) => {
                    let handshake = TlsAcceptor::from(config).accept(stream);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => connection(stream, peer, app, limits, shutdown).await,
                        Ok(Err(err)) => debug!(%peer, error = %err, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            metrics.http_connection_closed();
            drop(permit);
        });
    }
    connections.close();
    connections.wait().await;
}

/// Warns when the HTTP connection cap could take more than half of the process's file
/// descriptors (the soft `RLIMIT_NOFILE`, `LimitNOFILE=` under systemd): ingest needs the rest.
pub fn check_descriptor_budget(max_connections: usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft
        && max_connections > soft / 2
    {
        warn!(
            http_max_connections = max_connections,
            open_files_limit = soft,
            "collector.http_max_connections is more than half the open-files limit: HTTP clients could starve gRPC ingest; lower it or raise LimitNOFILE"
        );
    }
}

/// Serves one connection until it ends, times out or the collector stops.
async fn connection<S>(stream: S, peer: SocketAddr, app: Router, limits: HttpLimits, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked { inner: stream, activity: Arc::clone(&activity) });
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let busy = activity.busy();
            request.extensions_mut().insert(BodyTimeout(limits.idle_timeout));
            request.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let response = tower::ServiceExt::oneshot(app, request.map(Body::new)).await;
                drop(busy);
                response
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    debug!(error = %err, "HTTP connection ended");
                }
                break;
            }
            () = shutdown.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.idle_for(limits.idle_timeout) => {
                debug!("closing an idle HTTP connection");
                break;
            }
        }
    }
}

/// Middleware: reads the whole request body within the body timeout and [`MAX_BODY_BYTES`]
/// before any handler runs (408, 413), so a handler never waits on a slow client.
pub async fn bounded_body(request: Request, next: Next) -> Response {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(serde_json::json!({
                "error": format!("request body larger than {MAX_BODY_BYTES} bytes")
            })),
        )
            .into_response()
    };
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let timeout = request.extensions().get::<BodyTimeout>().map_or(DEFAULT_BODY_TIMEOUT, |t| t.0);
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        // Past the limit, or the client went away (then nobody reads the answer).
        Ok(Err(_)) => too_large(),
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            axum::Json(serde_json::json!({ "error": format!("request body not received within {timeout:?}") })),
        )
            .into_response(),
    }
}

/// When a connection last moved a byte, and how many of its requests are being answered.
#[derive(Debug)]
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity { start: Instant::now(), last_ms: AtomicU64::new(0), busy: AtomicUsize::new(0) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(self))
    }

    /// Resolves once nothing moved for `idle` while no request was being answered.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline && self.busy.load(Ordering::Relaxed) == 0 {
                return;
            }
            let wake = if Instant::now() >= deadline { Instant::now() + idle } else { deadline };
            tokio::time::sleep_until(wake.into()).await;
        }
    }
}

/// A request being answered.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A stream that records when it last read or wrote a byte.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
