//! The tonic ingest service: authenticate the stream, validate each batch, store it, ack it.
//!
//! The only collector file that names proto types. Status codes (DESIGN.md 3):
//! `UNAUTHENTICATED`/`PERMISSION_DENIED` for credentials, `INVALID_ARGUMENT` for a malformed batch
//! (nothing of it stored), `UNAVAILABLE` with a `retry-after-ms` hint when the store cannot commit,
//! `ALREADY_EXISTS` when a stored key is resent with different content, `OUT_OF_RANGE` for a
//! message larger than `max_message_bytes` (compressed or not).
//!
//! Nothing here waits on SQLite on the async workers: a new stream's credential is read on a
//! blocking thread with a connection of its own (never the shared reader a slow report may hold),
//! at most [`CREDENTIAL_LOOKUPS`](IngestService::lookups) at once; every open stream re-checks it
//! against [`auth::Credentials`] (memory, refreshed every [`auth::CREDENTIAL_REFRESH`]) every
//! [`auth::CREDENTIAL_RECHECK`] and before every batch.
//!
//! Memory: a stream handles one batch at a time (the next stays in its HTTP/2 window, bounded in
//! `lib.rs`), and every batch holds its encoded size of the shared [`IngestBudget`]
//! ([`INGEST_BUDGET_BYTES`]) from validation until its ack; the writer reads the decoded batch
//! through an `Arc` rather than a copy. A batch that finds the budget spent waits (counted), it is
//! never refused for it. The batch waiting is already decoded (its size is known only then):
//! outside the budget, each stream holds at most that one batch.

use std::sync::Arc;
use std::time::Duration;

use b24watch_proto::AUTHORIZATION;
use b24watch_proto::v1::ingest_server::{Ingest, IngestServer};
use b24watch_proto::v1::{Ack, Batch, RejectReason, Rejection, Series};
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::auth::Standing;
use crate::config::Limits;
use crate::live::{Live, escape};
use crate::metrics::{AuthFailure, BatchResult, Corrections, Metrics};
use crate::store::{self, CheckIn, GapIn, IngestBatch, LogGroupIn, Outcome, SeriesIn, Store};
use crate::{auth, now_ms};

/// Retry hint sent with `UNAVAILABLE`.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The ingest service; one instance per collector.
#[derive(Debug, Clone)]
pub struct IngestService {
    /// Store handle.
    pub store: Store,
    /// Stored credentials as of the last refresh; read without touching SQLite.
    pub credentials: Arc<auth::Credentials>,
    /// The credential cache's own read connection, used only on blocking threads.
    pub credential_db: Arc<std::sync::Mutex<rusqlite::Connection>>,
    /// Bounds concurrent credential lookups (one per stream start).
    pub lookups: Arc<tokio::sync::Semaphore>,
    /// Latest values for /metrics.
    pub live: Arc<Live>,
    /// Self-metrics.
    pub metrics: Arc<Metrics>,
    /// Input limits.
    pub limits: Limits,
    /// Cancelled on shutdown; each stream finishes its current batch and ends.
    pub shutdown: CancellationToken,
    /// Tracks stream tasks for the grace period.
    pub tracker: TaskTracker,
    /// Open streams per agent, bounded by [`MAX_STREAMS_PER_AGENT`].
    pub streams: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// Bytes of batches received and not yet acked, all streams together ([`INGEST_BUDGET_BYTES`]).
    pub budget: Arc<IngestBudget>,
}

/// Bytes (as encoded on the wire) of the batches being validated, queued for the writer or
/// committed, all streams together. A stream whose batch finds the budget spent waits for it
/// before decoding further: it reads nothing more, so HTTP/2 flow control holds the agent's next
/// batches in the agent's spool, and the agent is never refused for it
/// (`b24watch_collector_ingest_budget_waits_total`). 16 MiB is ~400 batches of 300 series,
/// more than the writer commits in one group ([`store::GROUP_MAX`]), so it only holds back a
/// burst the writer could not take anyway.
pub const INGEST_BUDGET_BYTES: usize = 16 << 20;

/// The shared budget of [`INGEST_BUDGET_BYTES`]: a semaphore of bytes.
#[derive(Debug)]
pub struct IngestBudget {
    bytes: u32,
    semaphore: Arc<tokio::sync::Semaphore>,
}

impl Default for IngestBudget {
    fn default() -> Self {
        IngestBudget::new(INGEST_BUDGET_BYTES)
    }
}

/// Bytes of the budget held by one batch; given back when dropped.
struct Held {
    bytes: u32,
    metrics: Arc<Metrics>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.metrics.ingest_released(u64::from(self.bytes));
    }
}

/// One batch counted as waiting for the budget while this lives.
struct Waiting<'a>(&'a Metrics);

impl<'a> Waiting<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.ingest_waiting(1);
        Waiting(metrics)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.ingest_waiting(-1);
    }
}

impl IngestBudget {
    /// A budget of `bytes` (at least 1).
    pub fn new(bytes: usize) -> Self {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
        IngestBudget { bytes, semaphore: Arc::new(tokio::sync::Semaphore::new(bytes as usize)) }
    }

    /// Takes `bytes` of the budget (all of it for a batch larger than the whole budget, which
    /// then goes alone), waiting while it is spent.
    async fn acquire(&self, bytes: usize, metrics: &Arc<Metrics>) -> Result<Held, Status> {
        let n = u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, self.bytes);
        let closed = |_| Status::unavailable("the collector is shutting down");
        let permit = match Arc::clone(&self.semaphore).try_acquire_many_owned(n) {
            Ok(permit) => permit,
            Err(_) => {
                let started = Instant::now();
                let waiting = Waiting::new(metrics);
                let permit = Arc::clone(&self.semaphore).acquire_many_owned(n).await;
                drop(waiting);
                metrics.ingest_waited(started.elapsed());
                permit.map_err(closed)?
            }
        };
        metrics.ingest_held(u64::from(n));
        Ok(Held { bytes: n, metrics: Arc::clone(metrics), _permit: permit })
    }
}

/// Concurrent streams one agent may hold. An agent needs one; a few more cover a reconnect while
/// the old connection is not yet known to be dead. More means a copied token or a flood.
pub const MAX_STREAMS_PER_AGENT: usize = 4;

/// Releases an agent's stream slot when the stream task ends.
struct StreamSlot {
    streams: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    agent_id: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = streams.get_mut(&self.agent_id) {
            *count -= 1;
            if *count == 0 {
                streams.remove(&self.agent_id);
            }
        }
    }
}

/// The label of a rejection reason in `b24watch_collector_points_rejected_total`: its wire name
/// without the prefix, lowercase (one of [`crate::metrics::REJECT_REASONS`]).
fn reject_label(reason: RejectReason) -> String {
    reason.as_str_name().trim_start_matches("REJECT_REASON_").to_ascii_lowercase()
}

/// Maps a store error to the status the agent acts on.
pub fn status_for(err: &store::Error) -> Status {
    match err {
        store::Error::Busy | store::Error::Full | store::Error::Unavailable(_) => {
            let mut status = Status::unavailable(format!("store cannot commit now: {err}"));
            status
                .metadata_mut()
                .insert("retry-after-ms", RETRY_AFTER.as_millis().to_string().parse().expect("digits"));
            status
        }
        store::Error::Failed(_) => {
            let mut status = Status::unavailable(format!("store failed: {err}"));
            status
                .metadata_mut()
                .insert("retry-after-ms", RETRY_AFTER.as_millis().to_string().parse().expect("digits"));
            status
        }
    }
}

impl IngestService {
    /// The tonic service for this handler: gzip both ways, decoded messages bounded by
    /// `max_message_bytes` (a larger one, compressed or not, is answered `OUT_OF_RANGE`).
    pub fn into_server(self, max_message_bytes: usize) -> IngestServer<Self> {
        IngestServer::new(self)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max_message_bytes)
    }

    /// Resolves the credential to an agent id and the stored hash it matched, counting every
    /// refusal by reason.
    async fn authenticate(&self, metadata: &MetadataMap) -> Result<(String, Vec<u8>), Status> {
        let fail = |failure: AuthFailure, status: Status| {
            self.metrics.auth_failure(failure);
            Err(status)
        };
        let Some(header) = metadata.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return fail(AuthFailure::Missing, Status::unauthenticated("missing authorization metadata"));
        };
        let Some((agent_id, secret)) = auth::bearer(header).and_then(auth::parse) else {
            return fail(AuthFailure::Malformed, Status::unauthenticated("malformed token"));
        };
        // Read from the database at every stream start (a revocation or rotation refuses new streams
        // at once), on a blocking thread; open streams re-check against the refreshed cache.
        match self.lookup(agent_id).await? {
            None => fail(AuthFailure::UnknownAgent, Status::unauthenticated("unknown agent or wrong token")),
            Some(stored) if stored.revoked => fail(AuthFailure::Revoked, Status::permission_denied("token revoked")),
            Some(stored) if auth::verify(secret, &stored.hash) => Ok((agent_id.to_owned(), stored.hash)),
            Some(_) => fail(AuthFailure::BadSecret, Status::unauthenticated("unknown agent or wrong token")),
        }
    }

    /// Reads one credential from the database on a blocking thread, with the credential
    /// connection (never the shared reader), and updates the cache.
    async fn lookup(&self, agent_id: &str) -> Result<Option<auth::Stored>, Status> {
        let _permit =
            self.lookups.acquire().await.map_err(|_| Status::unavailable("the collector is shutting down"))?;
        let (db, id) = (Arc::clone(&self.credential_db), agent_id.to_owned());
        let stored = tokio::task::spawn_blocking(move || {
            let conn = db.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            store::credential(&conn, &id)
        })
        .await
        .map_err(|err| Status::internal(format!("credential lookup: {err}")))?
        .map_err(|err| status_for(&err))?;
        self.credentials.set(agent_id, stored.clone());
        Ok(stored)
    }

    /// Whether a stream authenticated with `hash` may go on; counts a refusal.
    fn check_standing(&self, agent_id: &str, hash: &[u8]) -> Result<(), Status> {
        match self.credentials.standing(agent_id, hash) {
            Standing::Valid => Ok(()),
            Standing::Revoked => {
                self.metrics.auth_failure(AuthFailure::Revoked);
                Err(Status::permission_denied("token revoked"))
            }
            Standing::Replaced => {
                self.metrics.auth_failure(AuthFailure::Rotated);
                Err(Status::unauthenticated(
                    "this stream's token is no longer valid (rotated, or the agent was removed); reconnect with the current token",
                ))
            }
        }
    }

    /// Validates, stores and acks one batch. `Err` ends the stream.
    async fn handle(&self, agent_id: &str, hash: &[u8], batch: Batch) -> Result<Ack, Status> {
        if batch.agent_id != agent_id && !batch.agent_id.is_empty() {
            self.metrics.auth_failure(AuthFailure::AgentMismatch);
            warn!(claimed = %batch.agent_id, "batch claims another agent's id; refused");
            return Err(Status::permission_denied(format!(
                "this credential belongs to agent {agent_id:?}, the batch claims {:?}",
                batch.agent_id
            )));
        }
        self.check_standing(agent_id, hash)?;
        // Held until the batch is acked: its decoded form, the writer's queue and group.
        let _held = self.budget.acquire(batch.encoded_len(), &self.metrics).await?;
        let received_ms = now_ms();
        let mut corrections = Corrections::default();
        let (ingest, mut rejections) =
            match validate_counted(agent_id, batch, received_ms, &self.limits, &mut corrections) {
                Ok(valid) => valid,
                Err(status) => {
                    self.metrics.batch(BatchResult::Invalid);
                    return Err(status);
                }
            };
        let (epoch, seq) = (ingest.epoch, ingest.seq);
        let dropped: u64 = ingest.gaps.iter().map(|g| g.dropped_points).sum();
        let started = Instant::now();
        let ingest = Arc::new(ingest);
        let outcome = self.store.ingest_shared(Arc::clone(&ingest)).await;
        self.metrics.commit_latency(started.elapsed());
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(err) => {
                self.metrics.batch(BatchResult::Unavailable);
                return Err(status_for(&err));
            }
        };
        let mut ack = Ack { spool_epoch: epoch, seq, ..Ack::default() };
        match outcome {
            Outcome::Stored { points, series_limited } => {
                self.metrics.batch(BatchResult::Stored);
                self.metrics.corrections(&corrections);
                self.metrics.points_stored(points);
                self.metrics.agent_dropped_points(dropped);
                for (series_index, telemetry, points) in series_limited {
                    rejections.push(Rejection {
                        series_index,
                        points,
                        reason: RejectReason::SeriesLimit as i32,
                        telemetry,
                    });
                }
                ack.stored_points = points;
                let limited: Vec<(u32, bool)> = rejections
                    .iter()
                    .filter(|r| r.reason == RejectReason::SeriesLimit as i32)
                    .map(|r| (r.series_index, r.telemetry))
                    .collect();
                if limited.is_empty() {
                    self.live.observe(agent_id, received_ms, &ingest.series);
                } else {
                    let stored: Vec<SeriesIn> =
                        ingest.series.iter().filter(|s| !limited.contains(&(s.index, s.telemetry))).cloned().collect();
                    self.live.observe(agent_id, received_ms, &stored);
                }
            }
            Outcome::Duplicate => {
                self.metrics.batch(BatchResult::Duplicate);
                ack.duplicate = true;
                // The values are the stored ones; they only refresh liveness and latest values.
                self.live.observe(agent_id, received_ms, &ingest.series);
                return Ok(ack);
            }
            Outcome::Conflict => {
                self.metrics.batch(BatchResult::Conflict);
                return Err(Status::already_exists(format!(
                    "batch epoch={epoch} seq={seq} was stored before with different content; nothing stored"
                )));
            }
        }
        for rejection in &rejections {
            let reason = RejectReason::try_from(rejection.reason).unwrap_or(RejectReason::Unspecified);
            self.metrics.points_rejected(&reject_label(reason), u64::from(rejection.points));
        }
        ack.rejections = rejections;
        Ok(ack)
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = ReceiverStream<Result<Ack, Status>>;

    async fn stream(&self, request: Request<Streaming<Batch>>) -> Result<Response<Self::StreamStream>, Status> {
        let peer = request.remote_addr().map(|addr| addr.to_string()).unwrap_or_default();
        let (agent_id, hash) = match self.authenticate(request.metadata()).await {
            Ok(found) => found,
            Err(status) => {
                warn!(peer = %peer, code = ?status.code(), error = %status.message(), "stream refused");
                return Err(status);
            }
        };
        let slot = {
            let mut streams = self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let count = streams.entry(agent_id.clone()).or_default();
            if *count >= MAX_STREAMS_PER_AGENT {
                self.metrics.stream_refused();
                warn!(agent_id = %agent_id, peer = %peer, "too many concurrent streams for this agent; refused");
                let mut status = Status::resource_exhausted(format!(
                    "agent {agent_id:?} already has {MAX_STREAMS_PER_AGENT} open streams"
                ));
                status
                    .metadata_mut()
                    .insert("retry-after-ms", RETRY_AFTER.as_millis().to_string().parse().expect("digits"));
                return Err(status);
            }
            *count += 1;
            StreamSlot { streams: Arc::clone(&self.streams), agent_id: agent_id.clone() }
        };
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let service = self.clone();
        let span = info_span!("stream", agent_id = %agent_id, peer = %peer);
        self.tracker.spawn(
            async move {
                let _slot = slot;
                service.metrics.stream_opened();
                debug!("stream opened");
                let mut recheck =
                    tokio::time::interval_at(Instant::now() + auth::CREDENTIAL_RECHECK, auth::CREDENTIAL_RECHECK);
                recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    let message = tokio::select! {
                        () = service.shutdown.cancelled() => break,
                        _ = recheck.tick() => {
                            // An idle stream is cut off too, not only one that sends.
                            if let Err(status) = service.check_standing(&agent_id, &hash) {
                                info!(code = ?status.code(), error = %status.message(), "credential no longer valid; stream closed");
                                let _ = tx.send(Err(status)).await;
                                break;
                            }
                            continue;
                        }
                        message = inbound.message() => message,
                    };
                    let reply = match message {
                        Ok(Some(batch)) => service.handle(&agent_id, &hash, batch).await,
                        Ok(None) => break,
                        Err(status) => Err(inbound_error(status)),
                    };
                    let end = reply.is_err();
                    if let Err(status) = &reply
                        && status.code() != Code::Unavailable
                    {
                        info!(code = ?status.code(), error = %status.message(), "stream ended with an error");
                    }
                    if tx.send(reply).await.is_err() || end {
                        break;
                    }
                }
                service.metrics.stream_closed();
                debug!("stream closed");
            }
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A decode failure of the inbound stream is the client's fault: INVALID_ARGUMENT, not INTERNAL.
/// A message over `max_message_bytes` is OUT_OF_RANGE whether it was compressed or not (tonic says
/// RESOURCE_EXHAUSTED when the limit is hit while inflating): the agent then splits the batch
/// rather than resending it forever. RESOURCE_EXHAUSTED stays reserved for "too many streams".
fn inbound_error(status: Status) -> Status {
    match status.code() {
        Code::Internal if status.message().contains("decode") => {
            Status::invalid_argument(format!("malformed batch: {}", status.message()))
        }
        Code::ResourceExhausted => Status::out_of_range(format!("batch too large: {}", status.message())),
        _ => status,
    }
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 200
}

/// Byte bounds of free-text fields; longer text is cut on a character boundary and counted
/// (`b24watch_collector_fields_truncated_total`).
pub mod text_bounds {
    /// Log name.
    pub const LOG_NAME: usize = 256;
    /// Log group fingerprint.
    pub const LOG_FINGERPRINT: usize = 1024;
    /// Log group example line (the agent's default `max_line_bytes`).
    pub const LOG_EXAMPLE: usize = 16_384;
    /// File the example was read from.
    pub const LOG_FILE: usize = 4096;
    /// Check name.
    pub const CHECK_NAME: usize = 128;
    /// Check target (site, URL, service).
    pub const CHECK_TARGET: usize = 1024;
    /// Check reason.
    pub const CHECK_REASON: usize = 128;
    /// Check message.
    pub const CHECK_MESSAGE: usize = 4096;
    /// Gap reason.
    pub const GAP_REASON: usize = 128;
    /// Agent version.
    pub const AGENT_VERSION: usize = 64;
}

/// Cuts `text` to at most `bound` bytes on a character boundary, counting a cut.
fn cut(mut text: String, bound: usize, count: &mut u64) -> String {
    if text.len() > bound {
        let mut end = bound;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        *count += 1;
    }
    text
}

/// Validates a batch. Pure: `now_ms` is the receive time.
///
/// Returns the storable part and the per-item rejections, or `INVALID_ARGUMENT` for a batch that
/// is malformed as a whole (nothing of it is stored then).
///
/// # Errors
/// `INVALID_ARGUMENT` with a readable message.
pub fn validate(
    agent_id: &str,
    batch: Batch,
    now_ms: i64,
    limits: &Limits,
) -> Result<(IngestBatch, Vec<Rejection>), Status> {
    validate_counted(agent_id, batch, now_ms, limits, &mut Corrections::default())
}

/// [`validate`], also adding what it cut, dropped or replaced to `corrections`.
///
/// Times: a point, check result or log group stamped at or before 0, before
/// `now_ms - max_past_ms` or after `now_ms + max_future_ms` is not stored (points are rejected with
/// `TOO_OLD`/`TOO_FAR_IN_FUTURE`, records are counted). A gap's bounds are clamped into that
/// window (its counts matter more than its times). A `created_unix_ms` outside the window is not
/// evidence of when the agent ran: the receive time is used instead (RELIABILITY.md T45).
///
/// # Errors
/// `INVALID_ARGUMENT` with a readable message.
pub fn validate_counted(
    agent_id: &str,
    batch: Batch,
    now_ms: i64,
    limits: &Limits,
    corrections: &mut Corrections,
) -> Result<(IngestBatch, Vec<Rejection>), Status> {
    if batch.spool_epoch == 0 || batch.seq == 0 {
        return Err(Status::invalid_argument("spool_epoch and seq must be non-zero"));
    }
    let payload_hash: [u8; 32] = Sha256::digest(batch.encode_to_vec()).into();
    // Nothing at or before 1970 is ever stored, whatever `max_past_ms` says.
    let oldest = now_ms.saturating_sub(limits.max_past_ms).max(1);
    let newest = now_ms.saturating_add(limits.max_future_ms).max(oldest);
    let in_window = |ts: i64| (oldest..=newest).contains(&ts);
    let mut rejections = Vec::new();
    let mut series = Vec::with_capacity(batch.series.len() + batch.telemetry.len());
    let all = batch.series.into_iter().enumerate().map(|(i, s)| (i, false, s));
    let all = all.chain(batch.telemetry.into_iter().enumerate().map(|(i, s)| (i, true, s)));
    for (idx, telemetry, s) in all {
        let index = idx as u32;
        let reject = |reason: RejectReason, points: usize| Rejection {
            series_index: index,
            points: points as u32,
            reason: reason as i32,
            telemetry,
        };
        let n = s.values.len().max(s.timestamps_unix_ms.len());
        if let Some(reason) = series_problem(&s, limits) {
            rejections.push(reject(reason, n));
            continue;
        }
        let mut labels: Vec<(String, String)> = s.labels.into_iter().map(|l| (l.name, l.value)).collect();
        labels.sort();
        let labels = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect::<Vec<_>>().join(",");
        let (mut non_finite, mut future, mut old) = (0, 0, 0);
        let mut points = Vec::with_capacity(n);
        for (ts, value) in s.timestamps_unix_ms.into_iter().zip(s.values) {
            if !value.is_finite() {
                non_finite += 1;
            } else if ts > newest {
                future += 1;
            } else if ts < oldest {
                old += 1;
            } else {
                // -0.0 is stored as 0 (RELIABILITY.md T29).
                points.push((ts, value + 0.0));
            }
        }
        if non_finite > 0 {
            rejections.push(reject(RejectReason::NonFiniteValue, non_finite));
        }
        if future > 0 {
            rejections.push(reject(RejectReason::TooFarInFuture, future));
        }
        if old > 0 {
            rejections.push(reject(RejectReason::TooOld, old));
        }
        if !points.is_empty() {
            series.push(SeriesIn { name: s.name, labels, kind: s.kind, points, index, telemetry });
        }
    }
    let t = &mut corrections.truncated;
    let mut gaps = Vec::with_capacity(batch.gaps.len());
    for g in batch.gaps {
        let (from, to) = (g.from_unix_ms.clamp(oldest, newest), g.to_unix_ms.clamp(oldest, newest));
        if (from, to) != (g.from_unix_ms, g.to_unix_ms) {
            corrections.replaced[1] += 1;
        }
        gaps.push(GapIn {
            reason: cut(g.reason, text_bounds::GAP_REASON, &mut t[8]),
            from_ms: from.min(to),
            to_ms: to.max(from),
            dropped_batches: g.dropped_batches,
            dropped_points: g.dropped_samples,
        });
    }
    let mut log_groups = Vec::with_capacity(batch.log_groups.len());
    for g in batch.log_groups {
        if !in_window(g.first_seen_unix_ms) || !in_window(g.last_seen_unix_ms) {
            corrections.dropped[1] += 1;
            continue;
        }
        log_groups.push(LogGroupIn {
            log: cut(g.log, text_bounds::LOG_NAME, &mut t[0]),
            fingerprint: cut(g.fingerprint, text_bounds::LOG_FINGERPRINT, &mut t[1]),
            severity: g.severity,
            count: g.count,
            first_ms: g.first_seen_unix_ms,
            last_ms: g.last_seen_unix_ms,
            example: cut(g.example, text_bounds::LOG_EXAMPLE, &mut t[2]),
            file: cut(g.file, text_bounds::LOG_FILE, &mut t[3]),
        });
    }
    let mut checks = Vec::with_capacity(batch.checks.len());
    for c in batch.checks {
        if !in_window(c.at_unix_ms) {
            corrections.dropped[0] += 1;
            continue;
        }
        checks.push(CheckIn {
            check: cut(c.check, text_bounds::CHECK_NAME, &mut t[4]),
            target: cut(c.target, text_bounds::CHECK_TARGET, &mut t[5]),
            status: c.status,
            severity: c.severity,
            reason: cut(c.reason, text_bounds::CHECK_REASON, &mut t[6]),
            message: cut(c.message, text_bounds::CHECK_MESSAGE, &mut t[7]),
            at_ms: c.at_unix_ms,
        });
    }
    let agent_version = cut(batch.agent_version, text_bounds::AGENT_VERSION, &mut t[9]);
    let created_ms = if in_window(batch.created_unix_ms) {
        batch.created_unix_ms
    } else {
        corrections.replaced[0] += 1;
        now_ms
    };
    let ingest = IngestBatch {
        agent_id: agent_id.to_owned(),
        epoch: batch.spool_epoch,
        seq: batch.seq,
        payload_hash,
        received_ms: now_ms,
        created_ms,
        agent_version,
        series,
        gaps,
        log_groups,
        checks,
    };
    Ok((ingest, rejections))
}

/// Why a whole series is unacceptable, if it is.
fn series_problem(s: &Series, limits: &Limits) -> Option<RejectReason> {
    if s.values.len() != s.timestamps_unix_ms.len() {
        return Some(RejectReason::LengthMismatch);
    }
    if !valid_name(&s.name) {
        return Some(RejectReason::InvalidName);
    }
    if crate::live::reserved(&s.name) {
        return Some(RejectReason::ReservedName);
    }
    if s.labels.len() > limits.max_labels_per_series {
        return Some(RejectReason::TooManyLabels);
    }
    let mut names: Vec<&str> = Vec::with_capacity(s.labels.len());
    for label in &s.labels {
        if !valid_name(&label.name) || label.name == "host" || names.contains(&label.name.as_str()) {
            return Some(RejectReason::InvalidName);
        }
        if label.name.starts_with("__") {
            return Some(RejectReason::ReservedName);
        }
        if label.value.len() > limits.max_label_value_bytes {
            return Some(RejectReason::LabelTooLong);
        }
        names.push(&label.name);
    }
    None
}

#[cfg(test)]
mod tests {
    use b24watch_proto::v1::Label;

    #[test]
    fn every_reject_reason_has_its_counter_label() {
        let reasons = (1..64).filter_map(|n| RejectReason::try_from(n).ok());
        let labels: Vec<String> = reasons.map(reject_label).collect();
        assert_eq!(labels.len(), crate::metrics::REJECT_REASONS.len(), "labels {labels:?}");
        for label in &labels {
            assert!(crate::metrics::REJECT_REASONS.contains(&label.as_str()), "{label} has no counter");
        }
    }

    use super::*;

    fn series(name: &str, points: &[(i64, f64)]) -> Series {
        Series {
            name: name.into(),
            timestamps_unix_ms: points.iter().map(|p| p.0).collect(),
            values: points.iter().map(|p| p.1).collect(),
            kind: 1,
            ..Series::default()
        }
    }

    fn batch(series: Vec<Series>) -> Batch {
        Batch { spool_epoch: 7, seq: 1, series, ..Batch::default() }
    }

    #[test]
    fn invalid_points_are_rejected_one_by_one_and_the_rest_kept() {
        let now = 1_000_000;
        let b = batch(vec![series(
            "load1",
            &[(1, 0.5), (2, f64::NAN), (3, f64::INFINITY), (now + 700_000, 1.0), (4, -0.0)],
        )]);
        let (ingest, rejections) = validate("web", b, now, &Limits::default()).expect("valid batch");
        assert_eq!(ingest.series[0].points, [(1, 0.5), (4, 0.0)]);
        assert!(ingest.series[0].points[1].1.is_sign_positive(), "-0.0 stored as 0");
        let reasons: Vec<(i32, u32)> = rejections.iter().map(|r| (r.reason, r.points)).collect();
        assert_eq!(reasons, [(RejectReason::NonFiniteValue as i32, 2), (RejectReason::TooFarInFuture as i32, 1)]);
    }

    #[test]
    fn bad_series_are_rejected_whole() {
        let mut long = series("fs", &[(1, 1.0)]);
        long.labels = vec![Label { name: "mountpoint".into(), value: "x".repeat(3000) }];
        let mut host = series("fs", &[(1, 1.0)]);
        host.labels = vec![Label { name: "host".into(), value: "other".into() }];
        let mut mismatch = series("fs", &[(1, 1.0)]);
        mismatch.values.push(2.0);
        let b = batch(vec![long, host, mismatch, series("bad-name", &[(1, 1.0)]), series("ok", &[(1, 1.0)])]);
        let (ingest, rejections) = validate("web", b, 10, &Limits::default()).expect("valid batch");
        let reasons: Vec<i32> = rejections.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            [
                RejectReason::LabelTooLong as i32,
                RejectReason::InvalidName as i32,
                RejectReason::LengthMismatch as i32,
                RejectReason::InvalidName as i32
            ]
        );
        assert_eq!(ingest.series.len(), 1);
        assert_eq!(ingest.series[0].index, 4);
    }

    #[test]
    fn labels_are_sorted_and_escaped() {
        let mut s = series("fs", &[(1, 1.0)]);
        s.labels = vec![
            Label { name: "mountpoint".into(), value: "/a \"b\"\\".into() },
            Label { name: "device".into(), value: "/dev/vda".into() },
        ];
        let (ingest, _) = validate("web", batch(vec![s]), 10, &Limits::default()).expect("valid");
        assert_eq!(ingest.series[0].labels, r#"device="/dev/vda",mountpoint="/a \"b\"\\""#);
    }

    #[test]
    fn zero_key_is_a_malformed_batch() {
        let mut b = batch(vec![]);
        b.seq = 0;
        let status = validate("web", b, 10, &Limits::default()).expect_err("malformed");
        assert_eq!(status.code(), Code::InvalidArgument);
    }

    #[test]
    fn same_content_hashes_the_same() {
        let a = validate("web", batch(vec![series("x", &[(1, 1.0)])]), 10, &Limits::default()).expect("valid").0;
        let b = validate("web", batch(vec![series("x", &[(1, 1.0)])]), 99, &Limits::default()).expect("valid").0;
        let c = validate("web", batch(vec![series("x", &[(1, 2.0)])]), 10, &Limits::default()).expect("valid").0;
        assert_eq!(a.payload_hash, b.payload_hash);
        assert_ne!(a.payload_hash, c.payload_hash);
    }

    #[test]
    fn reserved_series_and_label_names_are_rejected_per_point() {
        let mut dunder = series("load1", &[(1_000, 1.0)]);
        dunder.labels = vec![Label { name: "__name__".into(), value: "load5".into() }];
        let mut meta = series("load1", &[(1_000, 1.0)]);
        meta.labels = vec![Label { name: "__meta".into(), value: "x".into() }];
        let b = batch(vec![
            series("agent_up", &[(1_000, 1.0)]),
            series("agent_last_seen_timestamp_seconds", &[(1_000, 1.0)]),
            series("collector_ready", &[(1_000, 1.0)]),
            series("collector_anything_total", &[(1_000, 1.0), (1_001, 2.0)]),
            series("uptime_ratio", &[(1_000, 1.0)]),
            dunder,
            meta,
            series("__hidden", &[(1_000, 1.0)]),
            series("load1", &[(1_000, 1.0)]),
        ]);
        let (ingest, rejections) = validate("web", b, 1_000, &Limits::default()).expect("valid batch");
        assert_eq!(ingest.series.len(), 1, "{:?}", ingest.series);
        assert_eq!(ingest.series[0].index, 8);
        assert_eq!(rejections.iter().map(|r| r.points).sum::<u32>(), 9, "{rejections:?}");
    }

    #[test]
    fn times_at_or_before_zero_and_older_than_the_bound_are_rejected_per_point() {
        const DAY: i64 = 86_400_000;
        let now = 30 * DAY;
        let points = [(0, 1.0), (-1, 1.0), (i64::MIN, 1.0), (now - 8 * DAY, 1.0), (now - 6 * DAY, 2.0), (now, 3.0)];
        let (ingest, rejections) =
            validate("web", batch(vec![series("load1", &points)]), now, &Limits::default()).expect("valid");
        assert_eq!(ingest.series[0].points, [(now - 6 * DAY, 2.0), (now, 3.0)]);
        assert_eq!(rejections.iter().map(|r| r.points).sum::<u32>(), 4, "{rejections:?}");
    }

    #[test]
    fn free_text_is_cut_at_its_bound_on_a_char_boundary() {
        use b24watch_proto::v1::{CheckResult, LogGroup};
        let long = |n: usize| format!("a{}", "ж".repeat(n));
        let mut b = batch(vec![]);
        b.log_groups = vec![LogGroup {
            example: long(100_000),
            fingerprint: long(10_000),
            first_seen_unix_ms: 5,
            last_seen_unix_ms: 5,
            ..LogGroup::default()
        }];
        b.checks =
            vec![CheckResult { message: long(100_000), target: long(10_000), at_unix_ms: 5, ..CheckResult::default() }];
        let (ingest, _) = validate("web", b, 10, &Limits::default()).expect("valid");
        let cut = |text: &str, bound: usize| {
            assert!(text.len() <= bound && text.len() + 2 > bound, "{} bytes, bound {bound}", text.len());
            assert!(long(100_000).starts_with(text));
        };
        cut(&ingest.log_groups[0].example, 16_384);
        cut(&ingest.log_groups[0].fingerprint, 1024);
        cut(&ingest.checks[0].message, 4096);
        cut(&ingest.checks[0].target, 1024);
    }

    /// T48: a slow report holding the shared read connection does not stall stream
    /// authentication, nor anything else on the async workers (issue 13 item 9).
    #[test]
    fn stream_authentication_does_not_wait_for_a_busy_reader() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().expect("tempdir");
        let admin = store::admin::Admin::open(dir.path()).expect("db");
        let token = admin.enroll("web", false, 1).expect("enroll");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let _guard = runtime.enter();
        let (store, reader, _writer) =
            Store::open(dir.path(), 100, None, 60_000, store::Retention::default()).expect("store");
        let reader = Arc::new(reader);
        let credential_db = store::open_connection(dir.path()).expect("db");
        let credentials = Arc::new(auth::Credentials::default());
        credentials.replace(store::credentials(&credential_db).expect("credentials"));
        // Enrolled after the last refresh: found by a lookup on the credential connection.
        let fresh = admin.enroll("new", false, 1).expect("enroll");
        let service = IngestService {
            store,
            credentials,
            credential_db: Arc::new(std::sync::Mutex::new(credential_db)),
            lookups: Arc::new(tokio::sync::Semaphore::new(2)),
            live: Arc::default(),
            metrics: Arc::default(),
            limits: Limits::default(),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            streams: Arc::default(),
            budget: Arc::default(),
        };
        let ran = Arc::new(AtomicBool::new(false));
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let holder = {
            let (reader, ran) = (Arc::clone(&reader), Arc::clone(&ran));
            std::thread::spawn(move || {
                let guard = reader.hold();
                held_tx.send(()).expect("held");
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while !ran.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let ran_while_held = ran.load(Ordering::SeqCst);
                drop(guard);
                ran_while_held
            })
        };
        held_rx.recv().expect("reader held");
        let metadata = |token: &str| {
            let mut metadata = MetadataMap::new();
            metadata.insert(AUTHORIZATION, format!("Bearer {token}").parse().expect("ascii"));
            metadata
        };
        let (known, new) = (metadata(&token), metadata(&fresh));
        let agents = runtime.block_on(async move {
            let auth = tokio::spawn(async move {
                let known = service.authenticate(&known).await.map(|found| found.0);
                let new = service.authenticate(&new).await.map(|found| found.0);
                (known, new)
            });
            let other = tokio::spawn(async move { ran.store(true, Ordering::SeqCst) });
            let agents = auth.await.expect("task");
            other.await.expect("task");
            agents
        });
        assert_eq!(agents.0.expect("authenticated"), "web");
        assert_eq!(agents.1.expect("authenticated"), "new");
        assert!(holder.join().expect("holder"), "other tasks could not run while authentication waited for the reader");
    }

    /// Issue 15: batches beyond the ingest budget wait for it instead of being refused. With a
    /// budget smaller than what the agents send at once (one batch larger than all of it), every
    /// batch is stored and acked, and the bytes held never exceed the budget.
    #[test]
    fn batches_beyond_the_ingest_budget_wait_and_are_all_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let admin = store::admin::Admin::open(dir.path()).expect("db");
        let names: Vec<String> = (0..6).map(|i| format!("web{i}")).collect();
        for name in &names {
            admin.enroll(name, false, 1).expect("enroll");
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let _guard = runtime.enter();
        let (store, _reader, _writer) =
            Store::open(dir.path(), 1_000, None, 60_000, store::Retention::default()).expect("store");
        let credential_db = store::open_connection(dir.path()).expect("db");
        let stored = store::credentials(&credential_db).expect("credentials");
        let credentials = Arc::new(auth::Credentials::default());
        credentials.replace(stored.clone());
        let now = now_ms();
        // 40 series of 10 points: a few KB encoded; the last agent sends four times as many.
        let agent_batch = |n: usize| {
            let points: Vec<(i64, f64)> = (0..10).map(|i| (now - 10_000 * (10 - i), i as f64 + 0.5)).collect();
            batch((0..n).map(|i| series(&format!("m{i}"), &points)).collect())
        };
        let batches: Vec<Batch> = (0..names.len()).map(|i| agent_batch(if i == 5 { 160 } else { 40 })).collect();
        let one = batches[0].encoded_len();
        let budget = 5 * one / 2;
        assert!(batches[5].encoded_len() > budget, "one batch is larger than the whole budget");
        let service = IngestService {
            store,
            credentials,
            credential_db: Arc::new(std::sync::Mutex::new(credential_db)),
            lookups: Arc::new(tokio::sync::Semaphore::new(2)),
            live: Arc::default(),
            metrics: Arc::default(),
            limits: Limits::default(),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            streams: Arc::default(),
            budget: Arc::new(IngestBudget::new(budget)),
        };
        let hash = |name: &str| stored.iter().find(|(id, _)| id == name).map(|(_, s)| s.hash.clone()).expect("hash");
        let acks = runtime.block_on(async {
            // The budget is spent (a burst before these batches): every batch waits for it.
            let burst = service.budget.acquire(budget, &service.metrics).await.expect("budget");
            let tasks: Vec<_> = names
                .iter()
                .zip(batches)
                .map(|(name, batch)| {
                    let (service, name, hash) = (service.clone(), name.clone(), hash(name));
                    tokio::spawn(async move { service.handle(&name, &hash, batch).await })
                })
                .collect();
            for _ in 0..10_000 {
                if service.metrics.ingest_budget().2 == 6 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert_eq!(service.metrics.ingest_budget().2, 6, "every batch waits for the budget");
            assert!(tasks.iter().all(|t| !t.is_finished()), "no batch is answered while the budget is spent");
            drop(burst);
            let mut acks = Vec::new();
            for task in tasks {
                acks.push(task.await.expect("task"));
            }
            acks
        });
        for (i, ack) in acks.into_iter().enumerate() {
            let ack = ack.expect("stored, not refused");
            let series = if i == 5 { 160 } else { 40 };
            assert_eq!(ack.stored_points, series * 10, "agent {i}");
            assert!(!ack.duplicate && ack.rejections.is_empty(), "{ack:?}");
        }
        let (held, held_max, waiting) = service.metrics.ingest_budget();
        assert_eq!((held, waiting), (0, 0), "everything given back");
        assert!(held_max <= budget as u64, "held {held_max} bytes at once, budget {budget}");
        let mut text = String::new();
        service.metrics.render(&mut text, 0, 0, 0, true);
        assert!(text.contains("b24watch_collector_ingest_budget_waits_total 6\n"), "{text}");
    }

    mod property {
        use proptest::prelude::*;

        use super::*;

        fn arb_series() -> impl Strategy<Value = Series> {
            let point = (any::<i64>(), prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(-0.0)]);
            (
                "[a-z_]{0,8}|[^\\x00]{0,4}",
                proptest::collection::vec(("[a-z_]{1,6}|host|[0-9]", "[^\\x00]{0,12}"), 0..4),
                proptest::collection::vec(point, 0..12),
                0usize..2,
            )
                .prop_map(|(name, labels, points, extra)| Series {
                    name,
                    labels: labels.into_iter().map(|(name, value)| Label { name, value }).collect(),
                    kind: 1,
                    timestamps_unix_ms: points.iter().map(|p| p.0).chain((0..extra).map(|_| 0)).collect(),
                    values: points.iter().map(|p| p.1).collect(),
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Arbitrary bytes either fail to decode or validate without panicking.
            #[test]
            fn property_test_decode_and_validate_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(batch) = Batch::decode(bytes.as_slice()) {
                    let _ = validate("agent", batch, 1_000_000, &Limits::default());
                }
            }

            /// Whatever times a batch carries, nothing at or before 1970 or older than the bound is kept.
            #[test]
            fn property_test_no_stored_time_is_out_of_bounds(
                times in proptest::collection::vec(any::<i64>(), 1..16),
                created in any::<i64>(),
            ) {
                use b24watch_proto::v1::{CheckResult, Gap, LogGroup};
                let now = 40 * 86_400_000_i64;
                let limits = Limits::default();
                let batch = Batch {
                    spool_epoch: 1,
                    seq: 1,
                    created_unix_ms: created,
                    checks: times.iter().map(|t| CheckResult { at_unix_ms: *t, ..CheckResult::default() }).collect(),
                    log_groups: times
                        .iter()
                        .map(|t| LogGroup { first_seen_unix_ms: *t, last_seen_unix_ms: *t, ..LogGroup::default() })
                        .collect(),
                    gaps: times.iter().map(|t| Gap { from_unix_ms: *t, to_unix_ms: t.wrapping_neg(), ..Gap::default() }).collect(),
                    ..Batch::default()
                };
                let (ingest, _) = validate("agent", batch, now, &limits).expect("well-formed key");
                let window = (now - limits.max_past_ms)..=(now + limits.max_future_ms);
                prop_assert!(window.contains(&ingest.created_ms));
                prop_assert_eq!(ingest.gaps.len(), times.len());
                for c in &ingest.checks {
                    prop_assert!(window.contains(&c.at_ms));
                }
                for g in &ingest.log_groups {
                    prop_assert!(window.contains(&g.first_ms) && window.contains(&g.last_ms));
                }
                for g in &ingest.gaps {
                    prop_assert!(window.contains(&g.from_ms) && window.contains(&g.to_ms) && g.from_ms <= g.to_ms);
                }
            }

            /// Every point is either stored or counted in exactly one rejection; stored values are finite.
            #[test]
            fn property_test_points_are_stored_or_rejected_never_both(series in proptest::collection::vec(arb_series(), 0..8)) {
                let total: usize = series.iter().map(|s| s.values.len().max(s.timestamps_unix_ms.len())).sum();
                let batch = Batch { spool_epoch: 1, seq: 1, series, ..Batch::default() };
                let limits = Limits { max_label_value_bytes: 8, ..Limits::default() };
                let (ingest, rejections) = validate("agent", batch, 1_000_000, &limits).expect("well-formed key");
                let stored: usize = ingest.series.iter().map(|s| s.points.len()).sum();
                let rejected: usize = rejections.iter().map(|r| r.points as usize).sum();
                prop_assert_eq!(stored + rejected, total);
                for s in &ingest.series {
                    prop_assert!(valid_name(&s.name));
                    for (ts, value) in &s.points {
                        prop_assert!(value.is_finite());
                        prop_assert!(*ts <= 1_000_000 + limits.max_future_ms);
                        prop_assert!(*ts >= 1, "no time at or before 1970 is stored");
                    }
                }
            }
        }
    }
}
