//! The portal seen from outside PHP: one HTTP(S) GET per interval (no redirects followed), with
//! status, latency, an optional keyword in the body and the TLS certificate's expiry.
//!
//! A failing probe is a `critical` check: the portal is unavailable. Reasons: `dns`, `down`
//! (connection refused or reset), `timeout`, `tls_invalid`, `http_status` (>= 400),
//! `keyword_missing`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use b24watch_common::config::Problems;
use b24watch_proto::catalog::{
    PROBE_DURATION_SECONDS, PROBE_FAILURE_REASON, PROBE_HTTP_STATUS, PROBE_SUCCESS, PROBE_TLS_EXPIRY_TIMESTAMP_SECONDS,
};
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;

use super::{Check, Checker, Findings};
use crate::observation::{Severity, UnixMs};

/// Body bytes searched for the keyword at most.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Check names.
pub const PORTAL_CHECK: &str = "portal_probe";
/// TLS certificate check.
pub const TLS_CHECK: &str = "tls_certificate";

/// The server certificate seen in the last handshake (DER), filled by the verifier.
type SeenCert = Arc<Mutex<Option<Vec<u8>>>>;

/// One probe target.
#[derive(Debug)]
pub struct Probe {
    cfg: ProbeConfig,
    tls: Option<(Arc<rustls::ClientConfig>, SeenCert)>,
}

/// What one request found.
#[derive(Debug, Default)]
struct Outcome {
    status: Option<u16>,
    keyword_found: bool,
    cert_not_after: Option<i64>,
}

/// Every [`Failure::reason`]: the `reason` label of `probe_failure_reason`.
pub const FAILURE_REASONS: [&str; 7] =
    ["dns", "down", "timeout", "tls_invalid", "http_status", "keyword_missing", "error"];

/// A failed request.
#[derive(Debug)]
struct Failure {
    reason: &'static str,
    message: String,
}

impl Probe {
    /// A probe for one target.
    pub fn new(cfg: ProbeConfig) -> Self {
        let tls = cfg.tls.then(|| {
            let seen = Arc::new(Mutex::new(None));
            (Arc::new(client_config(cfg.verify_tls, Arc::clone(&seen))), seen)
        });
        Probe { cfg, tls }
    }

    async fn request(&self, outcome: &mut Outcome) -> Result<(), Failure> {
        let addr = format!("{}:{}", self.cfg.connect.as_deref().unwrap_or(&self.cfg.host), self.cfg.port);
        let tcp = tokio::net::TcpStream::connect(addr.as_str()).await.map_err(|err| Failure {
            reason: if err.kind() == std::io::ErrorKind::Other || err.to_string().contains("lookup") {
                "dns"
            } else {
                "down"
            },
            message: format!("The portal could not be reached at {addr} ({}).", err.kind()),
        })?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.exchange(tcp, outcome).await,
            Some((config, seen)) => {
                let name = rustls::pki_types::ServerName::try_from(self.cfg.host.clone()).map_err(|err| Failure {
                    reason: "tls_invalid",
                    message: format!("{:?} is not a valid TLS server name: {err}", self.cfg.host),
                })?;
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                let result = connector.connect(name, tcp).await;
                outcome.cert_not_after = seen.lock().expect("never poisoned").take().and_then(|der| not_after(&der));
                let stream = result.map_err(|err| Failure {
                    reason: if err.kind() == std::io::ErrorKind::InvalidData { "tls_invalid" } else { "down" },
                    message: format!("TLS handshake with {addr}: {err}"),
                })?;
                self.exchange(stream, outcome).await
            }
        }
    }

    async fn exchange<S>(&self, stream: S, outcome: &mut Outcome) -> Result<(), Failure>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(io)
            .await
            .map_err(|err| Failure { reason: "down", message: format!("HTTP handshake: {err}") })?;
        let driver = tokio::spawn(conn);
        let host = if (self.cfg.tls && self.cfg.port == 443) || (!self.cfg.tls && self.cfg.port == 80) {
            self.cfg.host.clone()
        } else {
            format!("{}:{}", self.cfg.host, self.cfg.port)
        };
        let request = http::Request::get(self.cfg.path.as_str())
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, concat!("b24watch-agent/", env!("CARGO_PKG_VERSION")))
            .header(http::header::CONNECTION, "close")
            .body(http_body_util::Empty::new())
            .map_err(|err| Failure { reason: "error", message: format!("building the request: {err}") })?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|err| Failure { reason: "down", message: format!("HTTP request: {err}") })?;
            outcome.status = Some(response.status().as_u16());
            if self.cfg.keyword.is_empty() {
                return Ok(());
            }
            let mut body = response.into_body();
            let mut seen: Vec<u8> = Vec::new();
            let needle = self.cfg.keyword.as_bytes();
            while let Some(frame) = body.frame().await {
                let frame =
                    frame.map_err(|err| Failure { reason: "down", message: format!("reading the body: {err}") })?;
                if let Some(data) = frame.data_ref() {
                    seen.extend_from_slice(data);
                    if memchr::memmem::find(&seen, needle).is_some() {
                        outcome.keyword_found = true;
                        break;
                    }
                    if seen.len() > MAX_BODY_BYTES {
                        break;
                    }
                    // Keep only what a match across the next frame boundary could need.
                    let keep = needle.len().saturating_sub(1);
                    if seen.len() > keep {
                        seen.drain(..seen.len() - keep);
                    }
                }
            }
            Ok(())
        }
        .await;
        driver.abort();
        result
    }
}

#[async_trait::async_trait]
impl Checker for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    async fn run(&mut self, at: UnixMs, out: &mut Findings) {
        let target = self.cfg.url.clone();
        let label = || vec![("target", target.clone())];
        let started = Instant::now();
        let mut outcome = Outcome::default();
        let result = match tokio::time::timeout(self.cfg.timeout, self.request(&mut outcome)).await {
            Ok(result) => result,
            Err(_) => Err(Failure { reason: "timeout", message: format!("no answer within {:?}", self.cfg.timeout) }),
        };
        let took = started.elapsed().as_secs_f64();
        let result = result.and_then(|()| match outcome.status {
            Some(status) if status >= 400 => {
                Err(Failure { reason: "http_status", message: format!("HTTP {status} in {took:.3} s") })
            }
            _ if !self.cfg.keyword.is_empty() && !outcome.keyword_found => Err(Failure {
                reason: "keyword_missing",
                message: format!("HTTP {} without {:?} in the body", outcome.status.unwrap_or(0), self.cfg.keyword),
            }),
            _ => Ok(()),
        });
        out.observe(PROBE_SUCCESS, label(), f64::from(u8::from(result.is_ok())), at);
        // Why it failed, as a series an alert can name (every reason from 0).
        let failed = result.as_ref().err().map(|f| f.reason);
        for reason in FAILURE_REASONS {
            let labels = vec![("target", target.clone()), ("reason", reason.to_owned())];
            out.observe(PROBE_FAILURE_REASON, labels, f64::from(u8::from(failed == Some(reason))), at);
        }
        out.observe(PROBE_DURATION_SECONDS, label(), took, at);
        if let Some(status) = outcome.status {
            out.observe(PROBE_HTTP_STATUS, label(), f64::from(status), at);
        }
        out.checks.push(match result {
            Ok(()) => Check::ok(
                PORTAL_CHECK,
                &target,
                Severity::Critical,
                format!("HTTP {} in {took:.3} s", outcome.status.unwrap_or(0)),
                at,
            ),
            Err(f) => Check::failed(PORTAL_CHECK, &target, Severity::Critical, f.reason, f.message, at),
        });
        if let Some(not_after) = outcome.cert_not_after {
            out.observe(PROBE_TLS_EXPIRY_TIMESTAMP_SECONDS, label(), not_after as f64, at);
            out.checks.push(tls_check(&target, not_after, self.cfg.tls_expiry_warn_days, at));
        }
    }
}

/// Judges a certificate's expiry: expired is high, within `warn_days` low.
fn tls_check(target: &str, not_after: i64, warn_days: u64, at: UnixMs) -> Check {
    let days_left = (not_after - at.0 / 1000) as f64 / 86_400.0;
    if days_left <= 0.0 {
        Check::failed(
            TLS_CHECK,
            target,
            Severity::High,
            "expired",
            format!("certificate expired {:.0} days ago", -days_left),
            at,
        )
    } else if days_left <= warn_days as f64 {
        Check::failed(
            TLS_CHECK,
            target,
            Severity::Low,
            "expiring",
            format!("certificate expires in {days_left:.1} days"),
            at,
        )
    } else {
        Check::ok(TLS_CHECK, target, Severity::Low, format!("certificate valid for {days_left:.0} more days"), at)
    }
}

/// A rustls client config that records the server's end-entity certificate and verifies it
/// against the system's roots only when `verify` is set (self-signed portals are common).
fn client_config(verify: bool, seen: SeenCert) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if verify {
        let native = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            tracing::warn!("no system CA certificates found: TLS probes with verify_tls = true will fail");
        }
    }
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .ok();
    let verifier = Arc::new(Recording { inner, verify, seen, provider: Arc::clone(&provider) });
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

#[derive(Debug)]
struct Recording {
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    verify: bool,
    seen: SeenCert,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("never poisoned") = Some(end_entity.to_vec());
        match (&self.inner, self.verify) {
            (Some(inner), true) => inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            (None, true) => Err(rustls::Error::General("no CA certificates to verify against".into())),
            (_, false) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `notAfter` of an X.509 certificate (DER) as unix seconds. Walks only the few DER elements on
/// the way: Certificate → TBSCertificate → [version], serial, signature, issuer, validity.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert, _) = element(der)?;
    let (_, tbs, _) = element(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = element(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit version
    }
    for _ in 0..3 {
        let (_, _, after) = element(rest)?; // serial, signature algorithm, issuer
        rest = after;
    }
    let (_, validity, _) = element(rest)?;
    let (_, _, after_not_before) = element(validity)?;
    let (tag, time, _) = element(after_not_before)?;
    parse_time(tag, time)
}

/// One DER element: (tag, contents, rest).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        (bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, input.get(header..end)?, input.get(end..)?))
}

/// UTCTime (0x17, YYMMDDHHMMSSZ) or GeneralizedTime (0x18, YYYYMMDDHHMMSSZ) to unix seconds.
fn parse_time(tag: u8, bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, minute, second) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    Some(days_from_civil(year, month, day)? * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// `[probe]` section as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawProbe {
    /// Targets.
    pub targets: Vec<RawProbeTarget>,
    /// Seconds between runs.
    pub interval_secs: u64,
    /// Seconds per request.
    pub timeout_secs: u64,
    /// Days before expiry that fail the TLS check.
    pub tls_expiry_warn_days: u64,
    /// Without `targets`, probe each discovered Bitrix site where nginx serves it.
    pub derive_from_sites: bool,
    /// Directories of nginx vhost files read to derive a site's URL.
    pub nginx_site_dirs: Vec<String>,
}

impl Default for RawProbe {
    fn default() -> Self {
        RawProbe {
            targets: Vec::new(),
            interval_secs: 30,
            timeout_secs: 10,
            tls_expiry_warn_days: 14,
            derive_from_sites: true,
            nginx_site_dirs: vec!["/etc/nginx/bx/site_enabled".to_owned()],
        }
    }
}

/// One probe target.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawProbeTarget {
    /// URL.
    pub url: String,
    /// Text the body must contain.
    #[serde(default)]
    pub keyword: String,
    /// Whether the certificate must verify.
    #[serde(default = "yes")]
    pub verify_tls: bool,
}

fn yes() -> bool {
    true
}

/// One validated probe target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    /// URL as written (`target` label).
    pub url: String,
    /// https?
    pub tls: bool,
    /// Host name from the URL (`Host` header and TLS name).
    pub host: String,
    /// Address to connect to instead of `host` (derived targets: nginx's listen address).
    pub connect: Option<String>,
    /// Port from the URL (or 80/443).
    pub port: u16,
    /// Path and query (`/` when empty).
    pub path: String,
    /// Text the body must contain; empty: none.
    pub keyword: String,
    /// Whether the certificate must verify.
    pub verify_tls: bool,
    /// Time between runs.
    pub interval: Duration,
    /// Bound of the request.
    pub timeout: Duration,
    /// Days before expiry that fail the TLS check.
    pub tls_expiry_warn_days: u64,
}

impl RawProbe {
    /// One validated probe per target; problems go to `problems`, each target's with its index.
    pub fn validate(&self, problems: &mut Problems) -> Vec<ProbeConfig> {
        let interval = problems.secs("probe.interval_secs", self.interval_secs, 5, 3600);
        let timeout = problems.secs("probe.timeout_secs", self.timeout_secs, 1, 60);
        let mut probes = Vec::new();
        for (idx, target) in self.targets.iter().enumerate() {
            match parse_url(&target.url) {
                Some((tls, host, port, path)) => probes.push(ProbeConfig {
                    url: target.url.clone(),
                    tls,
                    host,
                    connect: None,
                    port,
                    path,
                    keyword: target.keyword.clone(),
                    verify_tls: target.verify_tls,
                    interval,
                    timeout,
                    tls_expiry_warn_days: self.tls_expiry_warn_days,
                }),
                None => problems.bad(
                    format!("probe.targets[{idx}].url"),
                    format!("{:?}: expected http://host[:port]/path or https://...", target.url),
                ),
            }
        }
        probes
    }
}

/// How portal targets are derived from discovered sites when `[probe] targets` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeriveConfig {
    /// Whether to derive targets at all.
    pub enabled: bool,
    /// Directories of nginx vhost files.
    pub nginx_site_dirs: Vec<std::path::PathBuf>,
    /// Time between runs.
    pub interval: Duration,
    /// Bound of the request.
    pub timeout: Duration,
    /// Days before expiry that fail the TLS check.
    pub tls_expiry_warn_days: u64,
}

impl RawProbe {
    /// The settings of derived targets; an empty `targets` list is what turns them on.
    pub fn derive(&self, problems: &mut Problems) -> DeriveConfig {
        if self.nginx_site_dirs.iter().any(|d| !d.starts_with('/')) {
            problems.bad("probe.nginx_site_dirs", format!("{:?}: expected absolute paths", self.nginx_site_dirs));
        }
        DeriveConfig {
            enabled: self.derive_from_sites && self.targets.is_empty(),
            nginx_site_dirs: self.nginx_site_dirs.iter().map(std::path::PathBuf::from).collect(),
            interval: Duration::from_secs(self.interval_secs.clamp(5, 3600)),
            timeout: Duration::from_secs(self.timeout_secs.clamp(1, 60)),
            tls_expiry_warn_days: self.tls_expiry_warn_days,
        }
    }
}

/// One probe per discovered site, at the URL nginx serves it under: the vhost whose `root` is
/// the site's document root gives `server_name` (its first plain name) and `listen` (plain HTTP
/// preferred, connected on loopback for a wildcard address). The default site (`www`) without a
/// vhost is probed at `http://127.0.0.1/`; other sites without one are not probed.
pub fn derive_targets(cfg: &DeriveConfig, sites: &[super::discover::Site]) -> Vec<ProbeConfig> {
    if !cfg.enabled || sites.is_empty() {
        return Vec::new();
    }
    let vhosts = super::discover::nginx_vhosts(&cfg.nginx_site_dirs);
    let same_dir = |a: &std::path::Path, b: &std::path::Path| {
        a == b || std::fs::canonicalize(a).ok().is_some_and(|a| std::fs::canonicalize(b).ok() == Some(a))
    };
    let mut targets: Vec<ProbeConfig> = Vec::new();
    for site in sites {
        let vhost = vhosts.iter().find(|v| v.root.as_deref().is_some_and(|root| same_dir(root, &site.root)));
        let (tls, connect, port, name) = match vhost {
            Some(vhost) => {
                let Some((connect, port, tls)) =
                    vhost.listen.iter().find(|l| !l.2).or_else(|| vhost.listen.first()).cloned()
                else {
                    continue;
                };
                let name = vhost
                    .names
                    .iter()
                    .find(|n| !n.is_empty() && *n != "_" && !n.contains(['*', '~', '$']) && !n.starts_with('.'))
                    .cloned();
                (tls, connect.clone(), port, name.unwrap_or(connect))
            }
            None if site.name == "default" => (false, "127.0.0.1".to_owned(), 80, "127.0.0.1".to_owned()),
            None => continue,
        };
        let default_port = if tls { 443 } else { 80 };
        let scheme = if tls { "https" } else { "http" };
        let url =
            if port == default_port { format!("{scheme}://{name}/") } else { format!("{scheme}://{name}:{port}/") };
        if targets.iter().any(|t| t.url == url) {
            continue;
        }
        tracing::info!(site = %site.name, url = %url, connect = %connect, "probing the portal at the address nginx serves it");
        targets.push(ProbeConfig {
            url,
            tls,
            host: name,
            connect: Some(connect),
            port,
            path: "/".to_owned(),
            keyword: String::new(),
            // Derived targets are reached on loopback, often with a self-signed certificate.
            verify_tls: false,
            interval: cfg.interval,
            timeout: cfg.timeout,
            tls_expiry_warn_days: cfg.tls_expiry_warn_days,
        });
    }
    targets
}

/// Splits `http(s)://host[:port][/path]` into (tls, host, port, path).
fn parse_url(url: &str) -> Option<(bool, String, u16, String)> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        (false, url.strip_prefix("http://")?)
    };
    let (authority, path) = match rest.find('/') {
        Some(idx) => (&rest[..idx], &rest[idx..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => {
                if tls {
                    443
                } else {
                    80
                }
            }
            None => return None,
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().ok()?),
            None => (authority.to_owned(), if tls { 443 } else { 80 }),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((tls, host, port, path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_times_convert_to_unix_seconds() {
        assert_eq!(parse_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, b"261127120000Z"), Some(1_795_780_800));
        assert_eq!(parse_time(0x18, b"20500101000000Z"), Some(2_524_608_000));
        assert_eq!(parse_time(0x17, b"991301000000Z"), None);
        assert_eq!(parse_time(0x17, b"garbage"), None);
    }

    #[test]
    fn truncated_or_garbage_der_is_none_not_a_panic() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x30, 0x01]), None);
    }

    #[test]
    fn expiry_judgement() {
        let now = UnixMs(1_000_000_000_000);
        let day = 86_400;
        assert_eq!(tls_check("t", 1_000_000_000 + 30 * day, 14, now).status, super::super::Status::Ok);
        let soon = tls_check("t", 1_000_000_000 + 3 * day, 14, now);
        assert_eq!((soon.reason, soon.severity), ("expiring", Severity::Low));
        let gone = tls_check("t", 1_000_000_000 - day, 14, now);
        assert_eq!((gone.reason, gone.severity), ("expired", Severity::High));
    }
}
