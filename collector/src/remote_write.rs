//! Prometheus remote write: every sample the store commits, backfill included, sent with its
//! own timestamp to each `[[remote_write]]` target (Prometheus, VictoriaMetrics, Mimir, Thanos).
//!
//! ## Design
//! Each target is a task of its own with its own store connection ([`crate::store::outbox`]) and
//! HTTP connection ([`wire`]): it reads the pending log in commit order after its persisted
//! cursor, converts the rows into `WriteRequest`s (series named as on `/metrics`: `b24watch_`
//! prefix, `host` label, then the external labels), sends them, and moves its cursor only after
//! the receiver accepted every request of the rows read (at-least-once: after a crash, rows are
//! sent again, never skipped). Nothing here writes ingested data or waits in the ingest path: a
//! slow or down target only falls behind, its backlog kept by the store up to
//! `max_backlog_bytes` (beyond, the oldest are dropped and counted).
//!
//! Failures: network errors, timeouts, 5xx and 429 are retried with exponential backoff
//! (`Retry-After` honoured); any other non-2xx answer drops that request (its samples counted
//! as `rejected`, the receiver's message logged) and the flow goes on.
//!
//! The series the collector computes itself (liveness, uptime, incidents, its own metrics) are
//! not stored samples: [`computed`] evaluates them every `computed_interval_secs` into a bounded
//! queue per target that the same sender drains, in order, between reads of stored samples.

pub mod computed;
pub mod wire;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use b24watch_common::config::Problems;
use serde::{Deserialize, Serialize};
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::metrics::{Metrics, RemoteWriteStats};
use crate::store::outbox::{Outbox, SeriesInfo};

/// One `[[remote_write]]` table as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawRemoteWrite {
    /// Names the target in metrics, logs and its stored cursor; defaults to the URL.
    pub name: String,
    /// The receiver's write endpoint.
    pub url: String,
    /// File holding a bearer token.
    pub bearer_token_file: PathBuf,
    /// HTTP Basic authentication.
    pub basic_auth: RawBasicAuth,
    /// TLS client settings.
    pub tls: RawRemoteTls,
    /// Extra headers (e.g. `X-Scope-OrgID`).
    pub headers: BTreeMap<String, String>,
    /// Labels added to every series (a series' own label of the same name wins).
    pub external_labels: BTreeMap<String, String>,
    /// Samples per request at most.
    pub max_samples_per_send: u64,
    /// Bytes of sealed samples kept for this target while it is behind; 0: no bound but the disk.
    pub max_backlog_bytes: u64,
    /// Seconds one request may take.
    pub timeout_secs: u64,
    /// First retry delay in milliseconds.
    pub min_backoff_ms: u64,
    /// Longest retry delay in milliseconds.
    pub max_backoff_ms: u64,
    /// Milliseconds between looks for new samples when caught up.
    pub poll_interval_ms: u64,
    /// Seconds between evaluations of the computed series sent (0: not sent).
    pub computed_interval_secs: u64,
    /// Bytes of encoded computed evaluations queued while the target is behind.
    pub computed_backlog_bytes: u64,
}

impl Default for RawRemoteWrite {
    fn default() -> Self {
        RawRemoteWrite {
            name: String::new(),
            url: String::new(),
            bearer_token_file: PathBuf::new(),
            basic_auth: RawBasicAuth::default(),
            tls: RawRemoteTls::default(),
            headers: BTreeMap::new(),
            external_labels: BTreeMap::new(),
            max_samples_per_send: 5000,
            max_backlog_bytes: 1 << 30,
            timeout_secs: 30,
            min_backoff_ms: 500,
            max_backoff_ms: 60_000,
            poll_interval_ms: 1000,
            computed_interval_secs: 15,
            computed_backlog_bytes: 64 << 20,
        }
    }
}

/// `basic_auth` of a target.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawBasicAuth {
    /// User name.
    pub username: String,
    /// File holding the password.
    pub password_file: PathBuf,
}

/// `tls` of a target.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawRemoteTls {
    /// CA bundle (PEM) the receiver's certificate must chain to; empty: the system's.
    pub ca_file: PathBuf,
    /// Client certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Client private key (PEM).
    pub key_file: PathBuf,
    /// Name to check the certificate against; empty: the URL's host.
    pub server_name: String,
}

/// How a target authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Nothing.
    None,
    /// `Authorization: Bearer <file content>`.
    Bearer(PathBuf),
    /// `Authorization: Basic`, the password read from a file.
    Basic(String, PathBuf),
}

/// A validated target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Stable name.
    pub name: String,
    /// The URL as written.
    pub url: String,
    /// `https`.
    pub https: bool,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query.
    pub path: String,
    /// Authentication.
    pub auth: Auth,
    /// TLS settings.
    pub tls: RawRemoteTls,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// External labels, sorted.
    pub external_labels: Vec<(String, String)>,
    /// Samples per request.
    pub max_samples_per_send: usize,
    /// Backlog bound in bytes (0: none).
    pub max_backlog_bytes: u64,
    /// Request timeout.
    pub timeout: Duration,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Idle poll interval.
    pub poll_interval: Duration,
    /// Evaluation interval of the computed series (`None`: not sent).
    pub computed_interval: Option<Duration>,
    /// Bound of the computed series' queue, bytes.
    pub computed_backlog_bytes: usize,
}

/// Headers the client sets itself.
const OWN_HEADERS: [&str; 7] = [
    "host",
    "content-encoding",
    "content-type",
    "content-length",
    "x-prometheus-remote-write-version",
    "user-agent",
    "transfer-encoding",
];

fn label_name_ok(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
}

/// Validates the `[[remote_write]]` tables into `problems` (keys like `remote_write[0].url`).
pub fn validate(raw: &[RawRemoteWrite], problems: &mut Problems) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for (idx, r) in raw.iter().enumerate() {
        let key = |field: &str| format!("remote_write[{idx}].{field}");
        let uri: Option<hyper::Uri> = r.url.parse().ok();
        let parsed = uri.as_ref().and_then(|u| {
            let https = match u.scheme_str()? {
                "http" => false,
                "https" => true,
                _ => return None,
            };
            let host = u.host()?.to_owned();
            let port = u.port_u16().unwrap_or(if https { 443 } else { 80 });
            let path = u.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned());
            Some((https, host, port, path))
        });
        let Some((https, host, port, path)) = parsed else {
            problems.bad(
                key("url"),
                format!(
                    "{:?}: expected an http:// or https:// URL such as \"http://127.0.0.1:9090/api/v1/write\"",
                    r.url
                ),
            );
            continue;
        };
        if uri.as_ref().is_some_and(|u| u.authority().is_some_and(|a| a.as_str().contains('@'))) {
            problems.bad(key("url"), "credentials in the URL: use basic_auth or bearer_token_file");
        }
        let name = if r.name.is_empty() { r.url.clone() } else { r.name.clone() };
        if out.iter().any(|t| t.name == name) {
            problems.bad(key("name"), format!("{name:?}: two targets with one name (set `name` to tell them apart)"));
        }
        let set = |p: &Path| !p.as_os_str().is_empty();
        let b = &r.basic_auth;
        let auth = match (set(&r.bearer_token_file), !b.username.is_empty() || set(&b.password_file)) {
            (true, true) => {
                problems.bad(key("bearer_token_file"), "set together with basic_auth: choose one");
                Auth::None
            }
            (true, false) => Auth::Bearer(r.bearer_token_file.clone()),
            (false, true) => {
                if b.username.is_empty() || !set(&b.password_file) {
                    problems.bad(key("basic_auth"), "needs both username and password_file");
                }
                Auth::Basic(b.username.clone(), b.password_file.clone())
            }
            (false, false) => Auth::None,
        };
        let t = &r.tls;
        let tls_set = set(&t.ca_file) || set(&t.cert_file) || set(&t.key_file) || !t.server_name.is_empty();
        if tls_set && !https {
            problems.bad(key("tls"), "set for an http:// URL: use https:// or leave tls out");
        }
        problems.both_or_neither(
            (key("tls.cert_file").as_str(), set(&t.cert_file)),
            (key("tls.key_file").as_str(), set(&t.key_file)),
        );
        let mut headers = Vec::new();
        for (name, value) in &r.headers {
            let lower = name.to_ascii_lowercase();
            if OWN_HEADERS.contains(&lower.as_str()) || (lower == "authorization" && auth != Auth::None) {
                problems.bad(key(&format!("headers.{name}")), "set by the collector itself");
            } else if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || hyper::header::HeaderValue::from_str(value).is_err()
            {
                problems.bad(key(&format!("headers.{name}")), "not a valid HTTP header name and value");
            } else {
                headers.push((name.clone(), value.clone()));
            }
        }
        for label in r.external_labels.keys() {
            if !label_name_ok(label) || label == "host" {
                problems.bad(
                    key(&format!("external_labels.{label}")),
                    "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*, not __* nor host)",
                );
            }
        }
        out.push(Target {
            name,
            url: r.url.clone(),
            https,
            host,
            port,
            path,
            auth,
            tls: r.tls.clone(),
            headers,
            external_labels: r.external_labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            max_samples_per_send: problems.range(&key("max_samples_per_send"), r.max_samples_per_send, 1, 1_000_000)
                as usize,
            max_backlog_bytes: {
                if r.max_backlog_bytes != 0 && r.max_backlog_bytes < 1 << 20 {
                    problems.bad(
                        key("max_backlog_bytes"),
                        format!("{}: expected 0 (no bound) or at least 1048576", r.max_backlog_bytes),
                    );
                }
                r.max_backlog_bytes
            },
            timeout: problems.secs(&key("timeout_secs"), r.timeout_secs, 1, 600),
            min_backoff: Duration::from_millis(problems.range(&key("min_backoff_ms"), r.min_backoff_ms, 10, 600_000)),
            max_backoff: Duration::from_millis(problems.range(
                &key("max_backoff_ms"),
                r.max_backoff_ms,
                r.min_backoff_ms.max(10),
                3_600_000,
            )),
            poll_interval: Duration::from_millis(problems.range(
                &key("poll_interval_ms"),
                r.poll_interval_ms,
                10,
                60_000,
            )),
            computed_interval: (r.computed_interval_secs != 0)
                .then(|| problems.secs(&key("computed_interval_secs"), r.computed_interval_secs, 1, 3600)),
            computed_backlog_bytes: problems.range(
                &key("computed_backlog_bytes"),
                r.computed_backlog_bytes,
                1 << 20,
                1 << 30,
            ) as usize,
        });
    }
    out
}

/// Reads the credential and TLS files of a target into its endpoint; the errors name the keys.
fn endpoint(target: &Target, idx: usize) -> anyhow::Result<wire::Endpoint> {
    use base64::Engine as _;
    use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let key = |field: &str| format!("remote_write[{idx}].{field}");
    let read = |path: &Path, field: &str| {
        std::fs::read(path).with_context(|| format!("{}: reading {}", key(field), path.display()))
    };
    let secret = |path: &Path, field: &str| -> anyhow::Result<String> {
        let text = String::from_utf8(read(path, field)?).with_context(|| format!("{}: not UTF-8", key(field)))?;
        Ok(text.trim().to_owned())
    };
    let mut headers = Vec::new();
    match &target.auth {
        Auth::None => {}
        Auth::Bearer(path) => {
            let token = secret(path, "bearer_token_file")?;
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .with_context(|| format!("{}: not a valid token", key("bearer_token_file")))?;
            headers.push((AUTHORIZATION, value));
        }
        Auth::Basic(user, path) => {
            let password = secret(path, "basic_auth.password_file")?;
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let value = HeaderValue::from_str(&format!("Basic {encoded}")).context("basic_auth")?;
            headers.push((AUTHORIZATION, value));
        }
    }
    for (name, value) in &target.headers {
        headers.push((HeaderName::from_bytes(name.as_bytes())?, HeaderValue::from_str(value)?));
    }
    let tls = if target.https {
        let t = &target.tls;
        let mut roots = rustls::RootCertStore::empty();
        if t.ca_file.as_os_str().is_empty() {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                warn!(target_name = %target.name, "no system CA certificates found: set tls.ca_file");
            }
        } else {
            let pem = read(&t.ca_file, "tls.ca_file")?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.with_context(|| format!("{}: not a PEM CA bundle", key("tls.ca_file")))?;
                roots.add(cert).with_context(|| format!("{}: certificate not usable as a CA", key("tls.ca_file")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots);
        let mut config = if t.cert_file.as_os_str().is_empty() {
            builder.with_no_client_auth()
        } else {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(&read(&t.cert_file, "tls.cert_file")?)
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("{}: not a PEM certificate chain", key("tls.cert_file")))?;
            let private = PrivateKeyDer::from_pem_slice(&read(&t.key_file, "tls.key_file")?)
                .with_context(|| format!("{}: no PEM private key in it", key("tls.key_file")))?;
            builder.with_client_auth_cert(chain, private).with_context(|| {
                format!("{} and {}: certificate and key do not match", key("tls.cert_file"), key("tls.key_file"))
            })?
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(Arc::new(config))
    } else {
        None
    };
    let server_name = if target.tls.server_name.is_empty() {
        target.host.trim_start_matches('[').trim_end_matches(']').to_owned()
    } else {
        target.tls.server_name.clone()
    };
    Ok(wire::Endpoint {
        https: target.https,
        host: target.host.clone(),
        port: target.port,
        path: target.path.clone(),
        server_name,
        tls,
        headers,
        timeout: target.timeout,
    })
}

/// Starts one sending task per target (none without targets): registers them in the store
/// (a target no longer configured stops holding rows), reads their credential files. With
/// `computed`, each target with a `computed_interval_secs` also gets the series it renders
/// ([`computed`]).
///
/// # Errors
/// Unreadable credential or TLS files, store errors.
pub fn start(
    targets: &[Target],
    data_dir: &Path,
    metrics: &Metrics,
    computed: Option<computed::Render>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    Outbox::open(data_dir)
        .and_then(|mut outbox| {
            outbox.register(&targets.iter().map(|t| (t.name.clone(), t.max_backlog_bytes)).collect::<Vec<_>>())
        })
        .context("registering the remote-write targets in the store")?;
    let mut all = Vec::new();
    let mut tasks = Vec::new();
    let mut producers = Vec::new();
    for (idx, target) in targets.iter().enumerate() {
        let endpoint = endpoint(target, idx)?;
        let stats =
            Arc::new(RemoteWriteStats { name: target.name.clone(), url: target.url.clone(), ..Default::default() });
        let outbox = Outbox::open(data_dir).context("opening the store for remote write")?;
        all.push(Arc::clone(&stats));
        let queue = Arc::new(computed::Queue::new(target.computed_backlog_bytes));
        if let (Some(render), Some(interval)) = (&computed, target.computed_interval) {
            let snapshotter = computed::Snapshotter::new(target.external_labels.clone(), target.max_samples_per_send);
            producers.push(computed::produce(
                Arc::clone(render),
                snapshotter,
                Arc::clone(&queue),
                Arc::clone(&stats),
                interval,
                shutdown.clone(),
            ));
        }
        tasks.push(Sender::new(target.clone(), wire::Client::new(endpoint), outbox, stats, queue, shutdown.clone()));
    }
    metrics.set_remote_write(all);
    for sender in tasks {
        info!(target_name = %sender.target.name, url = %sender.target.url, "remote write started");
        tracker.spawn(sender.run());
    }
    for producer in producers {
        tracker.spawn(producer);
    }
    Ok(())
}

/// Rows counted for the backlog figures per look.
const COUNT_ROWS: usize = 1000;

/// What a series id becomes on the wire (`None`: it cannot be sent).
type Converted = Option<(Arc<[wire::Label]>, String, i32)>;

/// One target's task.
struct Sender {
    target: Target,
    client: wire::Client,
    outbox: Arc<Mutex<Outbox>>,
    stats: Arc<RemoteWriteStats>,
    /// Evaluations of the computed series, sent before each read of stored rows.
    computed: Arc<computed::Queue>,
    shutdown: CancellationToken,
    /// The last row the target has whole.
    cursor: i64,
    /// Rows after the cursor counted so far: (id, points, first seen ms).
    backlog: VecDeque<(i64, usize, i64)>,
    counted_upto: i64,
    series: HashMap<i64, Converted>,
    metadata_sent: HashMap<String, Instant>,
}

impl Sender {
    fn new(
        target: Target,
        client: wire::Client,
        outbox: Outbox,
        stats: Arc<RemoteWriteStats>,
        computed: Arc<computed::Queue>,
        shutdown: CancellationToken,
    ) -> Self {
        Sender {
            target,
            client,
            outbox: Arc::new(Mutex::new(outbox)),
            stats,
            computed,
            shutdown,
            cursor: 0,
            backlog: VecDeque::new(),
            counted_upto: 0,
            series: HashMap::new(),
            metadata_sent: HashMap::new(),
        }
    }

    /// Runs a store call on the blocking pool with this target's connection.
    async fn store<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Outbox) -> Result<T, crate::store::Error> + Send + 'static,
    ) -> Result<T, crate::store::Error> {
        let outbox = Arc::clone(&self.outbox);
        tokio::task::spawn_blocking(move || call(&outbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner)))
            .await
            .unwrap_or_else(|err| Err(crate::store::Error::Failed(err.to_string())))
    }

    /// Sleeps unless shutdown comes first; false on shutdown.
    async fn pause(&self, how_long: Duration) -> bool {
        tokio::select! {
            () = self.shutdown.cancelled() => false,
            () = tokio::time::sleep(how_long) => true,
        }
    }

    async fn run(mut self) {
        let name = self.target.name.clone();
        while !self.shutdown.is_cancelled() {
            // The computed series first: a few small requests per interval, in evaluation order,
            // so they stay current while a long backlog of stored rows goes out.
            if !self.send_computed().await {
                break;
            }
            let n = name.clone();
            let (stored, dropped) = match self.store(move |o| o.cursor(&n)).await {
                Ok(found) => found,
                Err(err) => {
                    warn!(target_name = %name, error = %err, "remote write: reading the cursor");
                    if !self.pause(Duration::from_secs(5)).await {
                        break;
                    }
                    continue;
                }
            };
            // The store moves the cursor past rows dropped for the backlog bound.
            self.cursor = self.cursor.max(stored);
            let cursor = self.cursor;
            self.stats.dropped_backlog.store(dropped, Ordering::Relaxed);
            if let Err(err) = self.count_backlog().await {
                warn!(target_name = %name, error = %err, "remote write: counting the backlog");
            }
            let max = self.target.max_samples_per_send;
            let rows = match self.store(move |o| o.rows_after(cursor, max)).await {
                Ok(rows) => rows,
                Err(err) => {
                    warn!(target_name = %name, error = %err, "remote write: reading samples");
                    if !self.pause(Duration::from_secs(5)).await {
                        break;
                    }
                    continue;
                }
            };
            let Some(last) = rows.last().map(|r| r.id) else {
                if !self.idle().await {
                    break;
                }
                continue;
            };
            let requests = match self.requests(&rows).await {
                Ok(requests) => requests,
                Err(err) => {
                    warn!(target_name = %name, error = %err, "remote write: reading series");
                    if !self.pause(Duration::from_secs(5)).await {
                        break;
                    }
                    continue;
                }
            };
            let mut complete = true;
            for (request, samples) in requests {
                let body = match wire::encode(&request) {
                    Ok(body) => body,
                    Err(err) => {
                        warn!(target_name = %name, error = %err, samples, "remote write: encoding failed; samples dropped");
                        self.stats.dropped("rejected", samples);
                        continue;
                    }
                };
                if !self.deliver(body, samples).await {
                    complete = false;
                    break;
                }
            }
            if !complete {
                break; // shutdown while retrying: the rows are sent again at the next start
            }
            let n = name.clone();
            if let Err(err) = self.store(move |o| o.advance(&n, last)).await {
                // Not fatal: the rows are sent again later (at-least-once).
                warn!(target_name = %name, error = %err, "remote write: saving the cursor");
            }
            self.cursor = last;
            self.forget_sent();
        }
        info!(target_name = %name, "remote write stopped");
    }

    /// Extends the backlog figures with rows after what was counted, drops the sent ones.
    async fn count_backlog(&mut self) -> Result<(), crate::store::Error> {
        self.forget_sent();
        let after = self.counted_upto.max(self.cursor);
        let counts = self.store(move |o| o.counts_after(after, COUNT_ROWS)).await?;
        let now = crate::now_ms();
        for (id, points) in counts {
            self.backlog.push_back((id, points, now));
            self.counted_upto = id;
        }
        self.publish_backlog();
        Ok(())
    }

    fn forget_sent(&mut self) {
        let cursor = self.cursor;
        while self.backlog.front().is_some_and(|(id, _, _)| *id <= cursor) {
            self.backlog.pop_front();
        }
        self.publish_backlog();
    }

    fn publish_backlog(&self) {
        let pending: usize = self.backlog.iter().map(|(_, n, _)| n).sum();
        let (computed, computed_since) = self.computed.pending();
        self.stats.pending.store(pending as u64 + computed, Ordering::Relaxed);
        let oldest = self.backlog.iter().find(|(_, n, _)| *n > 0).map_or(0, |(_, _, seen)| *seen);
        let oldest = match (oldest, computed_since) {
            (0, c) => c,
            (o, 0) => o,
            (o, c) => o.min(c),
        };
        self.stats.oldest_unsent_ms.store(oldest, Ordering::Relaxed);
    }

    /// Waits for new stored rows (the poll interval) or a computed evaluation; false on shutdown.
    async fn idle(&self) -> bool {
        tokio::select! {
            () = self.shutdown.cancelled() => false,
            () = tokio::time::sleep(self.target.poll_interval) => true,
            () = self.computed.ready.notified() => true,
        }
    }

    /// Sends every queued computed evaluation in order; false on shutdown.
    async fn send_computed(&mut self) -> bool {
        while let Some(item) = self.computed.front() {
            if !self.deliver(item.body, item.samples).await {
                return false;
            }
            self.computed.sent(item.seq);
            self.publish_backlog();
        }
        true
    }

    /// The rows as requests of at most `max_samples_per_send` samples each.
    async fn requests(
        &mut self,
        rows: &[crate::store::outbox::Row],
    ) -> Result<Vec<(wire::WriteRequest, u64)>, crate::store::Error> {
        let unknown: Vec<i64> = rows
            .iter()
            .flat_map(|r| r.series.iter().map(|(id, _)| *id))
            .filter(|id| !self.series.contains_key(id))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !unknown.is_empty() {
            let infos = self
                .store(move |o| {
                    unknown
                        .into_iter()
                        .map(|id| -> Result<_, crate::store::Error> { Ok((id, o.series(id)?)) })
                        .collect::<Result<Vec<_>, _>>()
                })
                .await?;
            for (id, info) in infos {
                let converted = info.and_then(|info| self.convert(&info));
                self.series.insert(id, converted);
            }
        }
        let max = self.target.max_samples_per_send;
        let mut out = Vec::new();
        let mut current = wire::WriteRequest::default();
        // Where each series is in `current`: its points of several rows go into one entry.
        let mut at: HashMap<i64, usize> = HashMap::new();
        let mut samples = 0usize;
        let mut invalid = 0u64;
        let now = Instant::now();
        for row in rows {
            for (id, points) in &row.series {
                let Some(Some((labels, family, kind))) = self.series.get(id) else {
                    invalid += points.len() as u64;
                    continue;
                };
                let mut rest = &points[..];
                while !rest.is_empty() {
                    let take = rest.len().min(max - samples);
                    let due = self.metadata_sent.get(family).is_none_or(|at| now.duration_since(*at) > METADATA_EVERY);
                    if due {
                        self.metadata_sent.insert(family.clone(), now);
                        let name = family.strip_prefix("b24watch_").unwrap_or(family);
                        let help =
                            b24watch_proto::catalog::lookup(name).map_or("Series reported by the agent.", |d| d.help);
                        current.metadata.push(wire::MetricMetadata {
                            r#type: *kind,
                            metric_family_name: family.clone(),
                            help: help.to_owned(),
                            unit: String::new(),
                        });
                    }
                    let slot = *at.entry(*id).or_insert_with(|| {
                        current.timeseries.push(wire::TimeSeries { labels: labels.to_vec(), samples: Vec::new() });
                        current.timeseries.len() - 1
                    });
                    current.timeseries[slot]
                        .samples
                        .extend(rest[..take].iter().map(|(ts, v)| wire::Sample { value: *v, timestamp: *ts }));
                    samples += take;
                    rest = &rest[take..];
                    if samples >= max {
                        out.push((in_order(std::mem::take(&mut current)), samples as u64));
                        at.clear();
                        samples = 0;
                    }
                }
            }
        }
        if samples > 0 {
            out.push((in_order(current), samples as u64));
        }
        if invalid > 0 {
            self.stats.dropped("invalid_series", invalid);
        }
        Ok(out)
    }

    /// The wire labels, family name and metadata type of a stored series.
    fn convert(&self, info: &SeriesInfo) -> Converted {
        let mut pairs = crate::live::exposed_pairs(&info.agent_id, &info.name, &info.labels)?;
        for (name, value) in &self.target.external_labels {
            if !pairs.iter().any(|(n, _)| n == name) {
                pairs.push((name.clone(), value.clone()));
            }
        }
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let family = pairs.iter().find(|(n, _)| n == "__name__").map(|(_, v)| v.clone())?;
        let kind = match info.kind {
            1 => wire::TYPE_GAUGE,
            2 if info.name.ends_with("_total") => wire::TYPE_COUNTER,
            _ => wire::TYPE_UNKNOWN,
        };
        let labels: Arc<[wire::Label]> =
            pairs.into_iter().map(|(name, value)| wire::Label { name, value }).collect::<Vec<_>>().into();
        Some((labels, family, kind))
    }

    /// Sends one encoded request until it lands or is refused for good; false on shutdown.
    async fn deliver(&mut self, body: hyper::body::Bytes, samples: u64) -> bool {
        let mut backoff = self.target.min_backoff;
        loop {
            let answer = tokio::select! {
                answer = self.client.send(body.clone()) => answer,
                () = self.shutdown.cancelled() => return false,
            };
            let (reason, error, retry_after) = match answer {
                Ok(()) => {
                    self.stats.sent.fetch_add(samples, Ordering::Relaxed);
                    self.stats.last_success_ms.store(crate::now_ms(), Ordering::Relaxed);
                    self.stats.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
                    return true;
                }
                Err(wire::SendError::Network(err)) => ("network", err, None),
                Err(wire::SendError::Timeout) => {
                    ("timeout", format!("no answer within {:?}", self.target.timeout), None)
                }
                Err(wire::SendError::Status { code, retry_after, message }) if code == 429 || code >= 500 => {
                    let reason = if code == 429 { "too_many_requests" } else { "server_error" };
                    (reason, format!("HTTP {code}: {message}"), retry_after)
                }
                Err(wire::SendError::Status { code, message, .. }) => {
                    warn!(
                        target_name = %self.target.name,
                        status = code,
                        receiver_message = %message,
                        samples,
                        "remote write: the receiver refused a request; its samples are dropped"
                    );
                    self.stats.dropped("rejected", samples);
                    return true;
                }
            };
            self.stats.failed(reason, samples, error.clone());
            // The backlog figures stay current while the target is down.
            if let Err(err) = self.count_backlog().await {
                warn!(target_name = %self.target.name, error = %err, "remote write: counting the backlog");
            }
            let wait = retry_after.map_or(backoff, |ra| ra.min(MAX_RETRY_AFTER).max(self.target.min_backoff));
            warn!(target_name = %self.target.name, reason, error = %error, retry_in = ?wait, "remote write: request failed; retrying");
            if !self.pause(wait).await {
                return false;
            }
            backoff = (backoff * 2).min(self.target.max_backoff);
        }
    }
}

/// Each series' samples in timestamp order, one per timestamp (the first stored wins, as in the
/// store): a receiver without an out-of-order window refuses a request going back in time.
fn in_order(mut request: wire::WriteRequest) -> wire::WriteRequest {
    for series in &mut request.timeseries {
        series.samples.sort_by_key(|s| s.timestamp);
        series.samples.dedup_by_key(|s| s.timestamp);
    }
    request
}

/// A target's metadata is sent again after this long (with the next samples of its family).
const METADATA_EVERY: Duration = Duration::from_secs(600);
/// `Retry-After` values above this are cut to it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Target>, b24watch_common::config::ConfigErrors> {
        let raw: Vec<RawRemoteWrite> = toml::from_str::<BTreeMap<String, Vec<RawRemoteWrite>>>(text)
            .map(|mut t| t.remove("remote_write").unwrap_or_default())
            .expect("toml");
        let mut problems = Problems::new(Path::new("/etc/b24watch/collector.toml"));
        let targets = validate(&raw, &mut problems);
        problems.finish(targets)
    }

    #[test]
    fn a_mimir_target_with_basic_auth_tenant_header_and_labels_is_accepted() {
        let targets = parse(
            "[[remote_write]]\nurl = \"https://mimir.example:8443/api/v1/push\"\nheaders = { \"X-Scope-OrgID\" = \"acme\" }\n\
             external_labels = { cluster = \"msk-1\" }\nbasic_auth = { username = \"u\", password_file = \"/p\" }\n\
             tls = { ca_file = \"/ca.pem\", server_name = \"mimir\" }\n",
        )
        .expect("valid");
        let t = &targets[0];
        assert_eq!((t.https, t.host.as_str(), t.port, t.path.as_str()), (true, "mimir.example", 8443, "/api/v1/push"));
        assert_eq!(t.name, "https://mimir.example:8443/api/v1/push");
        assert_eq!(t.auth, Auth::Basic("u".into(), "/p".into()));
        assert_eq!(t.headers, vec![("X-Scope-OrgID".to_owned(), "acme".to_owned())]);
    }

    #[test]
    fn every_bad_target_setting_is_reported_with_its_key() {
        let err = parse(
            "[[remote_write]]\nurl = \"ftp://x\"\n[[remote_write]]\nurl = \"http://a/w\"\nbearer_token_file = \"/t\"\n\
             basic_auth = { username = \"u\" }\ntls = { ca_file = \"/ca\" }\nheaders = { \"Content-Type\" = \"x\" }\n\
             external_labels = { host = \"h\" }\nmax_samples_per_send = 0\ncomputed_interval_secs = 7200\n\
             computed_backlog_bytes = 5\n[[remote_write]]\nurl = \"http://a/w\"\n",
        )
        .expect_err("invalid");
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "remote_write[0].url",
                "remote_write[1].bearer_token_file",
                "remote_write[1].tls",
                "remote_write[1].headers.Content-Type",
                "remote_write[1].external_labels.host",
                "remote_write[1].max_samples_per_send",
                "remote_write[1].computed_interval_secs",
                "remote_write[1].computed_backlog_bytes",
                "remote_write[2].name",
            ]
        );
    }
}
