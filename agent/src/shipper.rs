//! Streams spooled batches to the collector and deletes each one when its ack arrives.
//!
//! One bidirectional stream at a time with up to [`WINDOW`] batches in flight. Any stream error
//! ends the session; the next session resends every batch still in the spool, oldest first, so
//! a lost ack leads to a resend that the collector recognises as a duplicate.
//!
//! A batch the collector refuses as a whole is never resent unchanged: `INVALID_ARGUMENT` and
//! `ALREADY_EXISTS` drop it (a gap record reports it), `OUT_OF_RANGE` (larger than the collector's
//! `max_message_bytes`, compressed or not) splits it in two, again and again while the parts are
//! still refused, and drops only a part that cannot be split (`too_large` gap).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use b24watch_common::config::Problems;
use b24watch_proto::AUTHORIZATION;
use b24watch_proto::v1::ingest_client::IngestClient;
use b24watch_proto::v1::{Ack, Batch, RejectReason};

/// The names of every reason the collector may reject points for (the label values of
/// `agent_rejected_points_total`), so that each counter is reported from 0.
pub fn reject_reason_names() -> Vec<&'static str> {
    (1..).map_while(|n| RejectReason::try_from(n).ok()).map(|r| r.as_str_name()).collect()
}
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::Endpoint;
use tonic::{Code, Status};
use tracing::{debug, error, info, warn};

use crate::spool::{Split, Spool};
use crate::telemetry::Telemetry;

/// Batches sent but not yet acknowledged, per stream.
pub const WINDOW: usize = 16;

/// Retry delays after transport errors and overload.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Retry delay after the collector refused our credential: an operator has to act.
const AUTH_RETRY: Duration = Duration::from_secs(60);

/// Sends the spool to the collector.
#[derive(Debug)]
pub struct Shipper {
    /// Collector endpoint.
    pub url: String,
    /// Credential.
    pub token: String,
    /// The spool shared with the scheduler.
    pub spool: Arc<Mutex<Spool>>,
    /// Woken when the scheduler pushed a batch.
    pub pushed: Arc<Notify>,
    /// Shared self-telemetry.
    pub telemetry: Arc<Telemetry>,
    /// Time to keep sending after shutdown.
    pub grace: Duration,
    /// TLS settings, loaded at startup (used for https:// URLs).
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

/// Why a session ended.
#[derive(Debug)]
enum SessionEnd {
    /// Shutdown with nothing left in flight, or the grace period ran out.
    Shutdown,
    /// The connection or the stream failed.
    Failed(Status),
    /// The collector refused the batch `seq` as a whole; resending it unchanged cannot help.
    Refused(u64, Status),
    /// The batch `seq` is larger than the collector accepts (`OUT_OF_RANGE`): it is split, or
    /// dropped as a gap when it cannot be.
    TooLarge(u64, Status),
}

impl Shipper {
    /// Runs sessions until `shutdown` is cancelled and the grace period is over.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut delay = BACKOFF_MIN;
        let mut failing: Option<Code> = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let mut acked_any = false;
            let end = self.session(&shutdown, &mut acked_any).await;
            if acked_any {
                delay = BACKOFF_MIN;
                if failing.take().is_some() {
                    info!(collector = %self.url, "delivering again");
                }
            }
            let status = match end {
                SessionEnd::Shutdown => break,
                SessionEnd::Failed(status) => status,
                SessionEnd::Refused(seq, status) => {
                    error!(seq, code = ?status.code(), error = %status.message(),
                        "collector refused a batch as a whole; dropped it and will report the gap");
                    let dropped = self.spool.lock().expect("spool lock is never poisoned").reject(seq);
                    match dropped {
                        Ok(dropped) if dropped.batches > 0 => {
                            self.telemetry.spool_dropped(dropped.reason, dropped.batches)
                        }
                        Ok(_) => {}
                        Err(err) => error!(error = %err, "could not drop the refused batch"),
                    }
                    continue;
                }
                SessionEnd::TooLarge(seq, status) => {
                    let split = self.spool.lock().expect("spool lock is never poisoned").split(seq);
                    match split {
                        Ok(Split::Parts(parts)) => {
                            warn!(seq, parts, error = %status.message(),
                                "collector refused a batch as too large; split it and will send the parts");
                            continue;
                        }
                        Ok(Split::Dropped(dropped)) => {
                            error!(seq, error = %status.message(),
                                "collector refused a batch as too large and it cannot be split; dropped it and will report the gap");
                            if dropped.batches > 0 {
                                self.telemetry.spool_dropped(dropped.reason, dropped.batches);
                            }
                            continue;
                        }
                        Err(err) => {
                            error!(error = %err, "could not split the oversized batch");
                            status
                        }
                    }
                }
            };
            let wait = match status.code() {
                Code::Unauthenticated | Code::PermissionDenied => {
                    if failing != Some(status.code()) {
                        error!(collector = %self.url, code = ?status.code(), error = %status.message(),
                            "collector refused this agent's credential; data stays in the spool; check the token");
                    }
                    AUTH_RETRY
                }
                code => {
                    if failing != Some(code) {
                        warn!(collector = %self.url, code = ?code, error = %status.message(), "delivery failing, will retry");
                    }
                    let hinted = retry_hint(&status).unwrap_or_default();
                    let wait = jitter(delay).max(hinted);
                    delay = (delay * 2).min(BACKOFF_MAX);
                    wait
                }
            };
            failing = Some(status.code());
            debug!(?wait, "retrying later");
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        let pending = self.spool.lock().expect("spool lock is never poisoned").pending_batches();
        info!(pending, "shipper stopped; pending batches stay in the spool");
    }

    async fn session(&self, shutdown: &CancellationToken, acked_any: &mut bool) -> SessionEnd {
        let endpoint = match Endpoint::from_shared(self.url.clone()) {
            Ok(endpoint) => endpoint,
            Err(err) => {
                return SessionEnd::Failed(Status::invalid_argument(format!("collector url: {err}")));
            }
        };
        let endpoint = match &self.tls {
            Some(tls) => match endpoint.tls_config(tls.clone()) {
                Ok(endpoint) => endpoint,
                Err(err) => return SessionEnd::Failed(Status::invalid_argument(format!("tls: {}", error_chain(&err)))),
            },
            None => endpoint,
        };
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let channel = tokio::select! {
            () = shutdown.cancelled() => return SessionEnd::Shutdown,
            conn = endpoint.connect() => match conn {
                Ok(channel) => channel,
                Err(err) => return SessionEnd::Failed(Status::unavailable(format!("connecting: {}", error_chain(&err)))),
            },
        };
        let mut client = IngestClient::new(channel).send_compressed(CompressionEncoding::Gzip);
        let (tx, rx) = mpsc::channel::<Batch>(WINDOW);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        match format!("Bearer {}", self.token).parse() {
            Ok(value) => {
                request.metadata_mut().insert(AUTHORIZATION, value);
            }
            Err(_) => {
                return SessionEnd::Failed(Status::unauthenticated(
                    "token contains characters not allowed in metadata",
                ));
            }
        }
        // Batches queued in the channel before the call so the first ones travel with the headers.
        let mut inflight = std::collections::VecDeque::new();
        let mut last_sent = 0u64;
        if let Err(status) = self.fill(&tx, &mut inflight, &mut last_sent) {
            return SessionEnd::Failed(status);
        }
        let mut acks = match client.stream(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return SessionEnd::Failed(status),
        };
        let mut deadline: Option<Instant> = None;
        loop {
            if let Err(status) = self.fill(&tx, &mut inflight, &mut last_sent) {
                return SessionEnd::Failed(status);
            }
            if deadline.is_some() && inflight.is_empty() {
                return SessionEnd::Shutdown;
            }
            let grace_over = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled(), if deadline.is_none() => {
                    deadline = Some(Instant::now() + self.grace);
                }
                () = grace_over => return SessionEnd::Shutdown,
                () = self.pushed.notified() => {}
                message = acks.message() => match message {
                    Ok(Some(ack)) => {
                        if let Err(status) = self.on_ack(&ack, &mut inflight) {
                            return SessionEnd::Failed(status);
                        }
                        *acked_any = true;
                    }
                    Ok(None) => return SessionEnd::Failed(Status::unavailable("collector closed the stream")),
                    Err(status) => return match (status.code(), inflight.front()) {
                        (Code::InvalidArgument | Code::AlreadyExists, Some(&seq)) => SessionEnd::Refused(seq, status),
                        (Code::OutOfRange, Some(&seq)) => SessionEnd::TooLarge(seq, status),
                        _ => SessionEnd::Failed(status),
                    },
                },
            }
        }
    }

    /// Queues spooled batches until the window is full.
    fn fill(
        &self,
        tx: &mpsc::Sender<Batch>,
        inflight: &mut std::collections::VecDeque<u64>,
        last_sent: &mut u64,
    ) -> Result<(), Status> {
        let room = WINDOW - inflight.len();
        if room == 0 {
            return Ok(());
        }
        let pending = self
            .spool
            .lock()
            .expect("spool lock is never poisoned")
            .pending_after(*last_sent, room)
            .map_err(|err| Status::internal(format!("reading spool: {err}")))?;
        for (seq, payload) in pending {
            // The spool wrote these bytes itself; a batch that no longer decodes is skipped by
            // acking it locally, since resending garbage would only block the queue.
            let batch = match Batch::decode(payload.as_slice()) {
                Ok(batch) => batch,
                Err(err) => {
                    error!(seq, error = %err, "dropping undecodable spooled batch");
                    self.ack_local(seq)?;
                    *last_sent = seq;
                    continue;
                }
            };
            tx.try_send(batch).map_err(|_| Status::internal("outbound window overflow"))?;
            inflight.push_back(seq);
            *last_sent = seq;
        }
        Ok(())
    }

    fn on_ack(&self, ack: &Ack, inflight: &mut std::collections::VecDeque<u64>) -> Result<(), Status> {
        if inflight.front() != Some(&ack.seq) {
            return Err(Status::internal(format!("ack for seq {} while expecting {:?}", ack.seq, inflight.front())));
        }
        inflight.pop_front();
        for rejection in &ack.rejections {
            let reason = RejectReason::try_from(rejection.reason).unwrap_or(RejectReason::Unspecified);
            self.telemetry.rejected(reason.as_str_name(), u64::from(rejection.points));
        }
        if !ack.rejections.is_empty() {
            warn!(seq = ack.seq, n_rejections = ack.rejections.len(), "collector rejected some points");
        }
        debug!(seq = ack.seq, duplicate = ack.duplicate, "acked");
        self.ack_local(ack.seq)
    }

    fn ack_local(&self, seq: u64) -> Result<(), Status> {
        let mut spool = self.spool.lock().expect("spool lock is never poisoned");
        spool.ack(seq).map_err(|err| Status::internal(format!("deleting acked batch: {err}")))?;
        self.telemetry.spool_depth(spool.pending_batches(), spool.pending_bytes());
        Ok(())
    }
}

/// Reads the PEM files of `cfg` into a client TLS configuration.
///
/// # Errors
/// When a file cannot be read.
pub fn load_tls(cfg: &TlsConfig) -> Result<tonic::transport::ClientTlsConfig, std::io::Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|err| std::io::Error::new(err.kind(), format!("reading {}: {err}", path.display())))
    };
    let mut tls = ClientTlsConfig::new();
    tls = match &cfg.ca_file {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca)?)),
        None => tls.with_native_roots(),
    };
    if let Some((cert, key)) = &cfg.identity {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(name) = &cfg.server_name {
        tls = tls.domain_name(name.clone());
    }
    Ok(tls)
}

/// The collector's retry hint, from the `retry-after-ms` metadata of an UNAVAILABLE status.
fn retry_hint(status: &Status) -> Option<Duration> {
    let value = status.metadata().get("retry-after-ms")?.to_str().ok()?;
    value.parse().ok().map(Duration::from_millis)
}

/// Equal jitter: half fixed, half random, so agents restarted together spread out.
fn jitter(delay: Duration) -> Duration {
    let half = delay / 2;
    let random = getrandom::u32().unwrap_or(0);
    half + half.mul_f64(f64::from(random) / f64::from(u32::MAX))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `[tls]` section as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// CA bundle for the collector's certificate.
    pub ca_file: PathBuf,
    /// Client certificate.
    pub cert_file: PathBuf,
    /// Client key.
    pub key_file: PathBuf,
    /// Expected server name.
    pub server_name: String,
}

/// TLS settings of the connection to the collector: validated `[tls]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// CA bundle; `None` means the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Expected server name.
    pub server_name: Option<String>,
}

impl RawTls {
    /// The validated form; problems go to `problems`.
    pub fn validate(&self, problems: &mut Problems) -> TlsConfig {
        let set = |p: &PathBuf| (!p.as_os_str().is_empty()).then(|| p.clone());
        let pair = problems.both_or_neither(
            ("tls.cert_file", set(&self.cert_file).is_some()),
            ("tls.key_file", set(&self.key_file).is_some()),
        );
        TlsConfig {
            ca_file: set(&self.ca_file),
            identity: (pair == Some(true)).then(|| (self.cert_file.clone(), self.key_file.clone())),
            server_name: (!self.server_name.is_empty()).then(|| self.server_name.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_full_delay() {
        for _ in 0..100 {
            let wait = jitter(Duration::from_secs(10));
            assert!(wait >= Duration::from_secs(5) && wait <= Duration::from_secs(10), "{wait:?}");
        }
    }

    #[test]
    fn retry_hint_is_read_from_metadata() {
        let mut status = Status::unavailable("busy");
        status.metadata_mut().insert("retry-after-ms", "5000".parse().expect("ascii"));
        assert_eq!(retry_hint(&status), Some(Duration::from_secs(5)));
        assert_eq!(retry_hint(&Status::unavailable("busy")), None);
    }
}
