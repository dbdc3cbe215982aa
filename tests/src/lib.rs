//! Harness for b24watch end-to-end tests: real binaries, loopback ports, temp directories.
//!
//! # Layout
//! - [`ProcessGuard`]: a child process killed (by PID) when dropped.
//! - [`Collector`], [`Agent`]: start the real binaries with an explicit environment.
//! - [`http_get`], [`metric`]: a tiny HTTP client and a metric matcher for `/metrics`.
//! - [`eventually`]: polls a condition against a deadline (`RUST_TEST_PATIENCE_MS` scales it).
//! - [`Collector::check`], [`Collector::check_status`]: the latest result of a health check.
//! - [`workspace_root`]: where `deploy/`, `docs/` and `target/package/` are.
//! - [`mariadb::MariaDb`]: a real MariaDB server of the test's own.
//! - [`portal::Portal`]: a stand-in portal (HTTP or HTTPS) for probe tests.
//! - [`proxy::Proxy`]: a TCP proxy a test can cut, to simulate a network outage.
//! - [`start_prometheus`], [`start_alertmanager`]: Debian's real Prometheus and Alertmanager;
//!   [`Webhook`]: the receiver Alertmanager pages, recording every notification.
//! - [`receivers`]: remote-write receivers (Prometheus, VictoriaMetrics), their raw samples, an
//!   HTTP stand-in refusing chosen requests, the dashboard queries.

pub mod mariadb;
pub mod portal;
pub mod proxy;
pub mod receivers;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of one of our binaries: beside the test executable's `deps/` directory.
///
/// # Panics
/// When the binary was not built; the message says how to build it.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --bins` first", path.display());
    path
}

/// Scales test deadlines on slow machines: `RUST_TEST_PATIENCE_MS=2000` doubles them.
pub fn patience(base: Duration) -> Duration {
    let factor = std::env::var("RUST_TEST_PATIENCE_MS").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(1000);
    base * u32::try_from(factor).unwrap_or(1000) / 1000
}

/// Polls `check` every 100 ms until it returns `Some` or `within` (scaled by patience) passes.
///
/// # Panics
/// When the deadline passes; the message names `what`.
pub fn eventually<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience(within);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The workspace root: where `deploy/`, `docs/` and `target/` are.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// A free loopback port (bound then released; the small race is acceptable in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free loopback port")
}

/// Writes a CA (`ca.pem`), a server certificate for 127.0.0.1/localhost (`server.pem`,
/// `server.key`) and a client certificate (`client.pem`, `client.key`) into `dir`.
pub fn write_pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    for (name, sans) in
        [("server", vec!["localhost".to_owned(), "127.0.0.1".to_owned()]), ("client", vec!["agent".to_owned()])]
    {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(sans).expect("params").signed_by(&key, &issuer).expect("sign");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write cert");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write key");
    }
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write ca");
}

/// Starts a real Prometheus (Debian's `prometheus`) with `config`, its data and log in `dir`,
/// listening on a free loopback port; returns its guard and API address.
pub fn start_prometheus(config: &Path, dir: &Path) -> (ProcessGuard, SocketAddr) {
    let port = free_port();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let process = ProcessGuard::spawn("prometheus", cmd, &dir.join("prometheus.log"));
    (process, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Starts a real Alertmanager (Debian's `prometheus-alertmanager`) with `config`, its data and
/// log in `dir`, listening on a free loopback port, clustering off; returns its guard and address.
pub fn start_alertmanager(config: &Path, dir: &Path) -> (ProcessGuard, SocketAddr) {
    let port = free_port();
    let binary =
        if Path::new("/usr/bin/prometheus-alertmanager").exists() { "prometheus-alertmanager" } else { "alertmanager" };
    let mut cmd = Command::new(binary);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("alertmanager").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=");
    let process = ProcessGuard::spawn("alertmanager", cmd, &dir.join("alertmanager.log"));
    (process, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// One alert of a notification Alertmanager sent to a [`Webhook`].
#[derive(Debug, Clone)]
pub struct Page {
    /// When it arrived.
    pub at: Instant,
    /// `firing` or `resolved`.
    pub status: String,
    /// The alert's labels.
    pub labels: serde_json::Value,
    /// The alert's annotations.
    pub annotations: serde_json::Value,
}

/// A webhook receiver on loopback: records every alert of every notification. Its thread ends
/// with the process (it only ever serves loopback).
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Where Alertmanager posts.
    pub addr: SocketAddr,
    pages: std::sync::Arc<std::sync::Mutex<Vec<Page>>>,
}

impl Webhook {
    /// Listens on a free loopback port.
    ///
    /// # Panics
    /// When it cannot bind.
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook");
        let addr = listener.local_addr().expect("webhook address");
        let pages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&pages);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                if let Some(body) = read_request_body(&stream) {
                    let at = Instant::now();
                    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) {
                        let mut pages = sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        for alert in json["alerts"].as_array().into_iter().flatten() {
                            pages.push(Page {
                                at,
                                status: alert["status"].as_str().unwrap_or_default().to_owned(),
                                labels: alert["labels"].clone(),
                                annotations: alert["annotations"].clone(),
                            });
                        }
                    }
                }
                let mut stream = stream;
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Webhook { addr, pages }
    }

    /// Every alert received so far, in order.
    pub fn pages(&self) -> Vec<Page> {
        self.pages.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The alerts received so far named `alertname` for `host` with `status`.
    pub fn find(&self, alertname: &str, host: &str, status: &str) -> Vec<Page> {
        self.pages()
            .into_iter()
            .filter(|p| p.labels["alertname"] == alertname && p.labels["host"] == host && p.status == status)
            .collect()
    }
}

/// Reads one HTTP/1.1 request and returns its body (by `content-length`).
fn read_request_body(stream: &TcpStream) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; length.min(16 << 20)];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

/// A child process that is killed when dropped.
#[derive(Debug)]
pub struct ProcessGuard {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl ProcessGuard {
    /// Spawns `cmd` with stdout/stderr appended to `log`.
    ///
    /// # Panics
    /// When the process cannot be started.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> ProcessGuard {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .env("B24WATCH_LOG", "info,b24watch_agent=debug")
            .env("NO_COLOR", "1");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("B24WATCH_") {
                cmd.env_remove(&key);
            }
        }
        let child = cmd.spawn().unwrap_or_else(|err| panic!("starting {name}: {err}"));
        ProcessGuard { child: Some(child), name: name.to_owned(), log: log.to_path_buf() }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Peak resident memory of the process in KiB (`VmHWM`); 0 once it has exited.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid() as i32) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Sends SIGTERM and waits up to `within` for the exit; returns the status and the time taken.
    ///
    /// # Panics
    /// When the process does not exit in time (it is killed then).
    pub fn terminate(mut self, within: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        self.signal(rustix::process::Signal::TERM);
        let deadline = started + patience(within);
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                return (status, started.elapsed());
            }
            if Instant::now() > deadline {
                let log = self.log_text();
                panic!("{} did not exit within {within:?} of SIGTERM; log:\n{log}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A collector process on loopback ports with its own data directory.
#[derive(Debug)]
pub struct Collector {
    /// The process.
    pub process: ProcessGuard,
    /// gRPC address.
    pub grpc: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
}

/// Runs `b24watch-collector <args>` to completion with an explicit environment.
///
/// # Panics
/// When it cannot be run.
pub fn collector_cmd(data_dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(bin("b24watch-collector"));
    cmd.arg("--config").arg(data_dir.join("absent.toml")).arg("--data-dir").arg(data_dir).args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("B24WATCH_") {
            cmd.env_remove(&key);
        }
    }
    cmd.output().expect("running b24watch-collector")
}

/// Enrols `agent_id` and writes its token to `<dir>/<agent_id>.token`; returns the path.
///
/// # Panics
/// When enrolment fails.
pub fn enroll(data_dir: &Path, agent_id: &str) -> PathBuf {
    let out = collector_cmd(data_dir, &["enroll", agent_id]);
    assert!(out.status.success(), "enroll failed: {}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).expect("token is ASCII");
    let path = data_dir.parent().unwrap_or(data_dir).join(format!("{agent_id}.token"));
    std::fs::write(&path, token).expect("writing token file");
    path
}

impl Collector {
    /// Starts a collector on fresh loopback ports with `config` as its config file text (empty for
    /// all defaults) and waits until `/-/ready` answers 200.
    ///
    /// # Panics
    /// When it does not become ready.
    pub fn start(data_dir: &Path, config: &str) -> Collector {
        Collector::start_on(data_dir, free_addr(), free_addr(), config)
    }

    /// Starts a collector on the given ports (to restart one where agents expect it).
    ///
    /// # Panics
    /// When it does not become ready.
    pub fn start_on(data_dir: &Path, grpc: SocketAddr, http: SocketAddr, config: &str) -> Collector {
        let collector = Collector::spawn_on(data_dir, grpc, http, config);
        eventually("collector ready", Duration::from_secs(20), || {
            http_get(collector.http, "/-/ready").ok().filter(|(status, _)| *status == 200)
        });
        collector
    }

    /// Starts a collector like [`Collector::start_on`] without waiting for it (for a TLS HTTP
    /// listener, or one expected to fail).
    pub fn spawn_on(data_dir: &Path, grpc: SocketAddr, http: SocketAddr, config: &str) -> Collector {
        let config_path = data_dir.parent().unwrap_or(data_dir).join("collector.toml");
        std::fs::write(&config_path, config).expect("writing collector config");
        let mut cmd = Command::new(bin("b24watch-collector"));
        cmd.arg("--config")
            .arg(config_path)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--grpc-listen")
            .arg(grpc.to_string())
            .arg("--http-listen")
            .arg(http.to_string());
        let log = data_dir.parent().unwrap_or(data_dir).join("collector.log");
        let process = ProcessGuard::spawn("b24watch-collector", cmd, &log);
        Collector { process, grpc, http, data_dir: data_dir.to_path_buf() }
    }

    /// `http://` URL of the gRPC endpoint.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// The current `/metrics` text.
    ///
    /// # Panics
    /// When the request fails.
    pub fn metrics(&self) -> String {
        let (status, body) = http_get(self.http, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// GETs an API path and parses the JSON.
    ///
    /// # Panics
    /// When the request fails or the body is not JSON.
    pub fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(self.http, path).expect("GET api");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|err| panic!("GET {path}: {err}: {body}"))
    }

    /// Peak resident memory of the process in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        self.process.peak_rss_kib()
    }

    /// The latest result of `check` on `target` for `host`, as JSON (`/api/v1/hosts/<host>/checks`).
    pub fn check(&self, host: &str, check: &str, target: &str) -> Option<serde_json::Value> {
        let body = self.api(&format!("/api/v1/hosts/{host}/checks"));
        body["checks"].as_array()?.iter().find(|c| c["check"] == check && c["target"] == target).cloned()
    }

    /// The latest result of `check` on `target` for `host` as `(status, reason, severity)`.
    pub fn check_status(&self, host: &str, check: &str, target: &str) -> Option<(String, String, String)> {
        self.check(host, check, target).map(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (field("status"), field("reason"), field("severity"))
        })
    }

    /// Path of the SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("b24watch.db")
    }

    /// Waits until `host` has at least `n` points of `load1` stored.
    ///
    /// # Panics
    /// When they do not arrive within 20 s (scaled by patience).
    pub fn wait_for_load_points(&self, host: &str, n: usize) {
        eventually(&format!("{host}: {n} load1 points stored"), Duration::from_secs(20), || {
            (self.points(host, "load1").len() >= n).then_some(())
        });
    }

    /// Timestamps of `load1` for `host`.
    ///
    /// # Panics
    /// When a timestamp is stored twice (a duplicate delivery).
    pub fn unique_load_ts(&self, host: &str) -> std::collections::BTreeSet<i64> {
        let points = self.points(host, "load1");
        let unique: std::collections::BTreeSet<i64> = points.iter().map(|p| p.1).collect();
        assert_eq!(unique.len(), points.len(), "{host}: duplicate points stored: {points:?}");
        unique
    }

    /// Points of series `name` of `host` (all label sets), as `(labels, ts, value)`.
    pub fn points(&self, host: &str, name: &str) -> Vec<(String, i64, f64)> {
        let body =
            self.api(&format!("/api/v1/hosts/{host}/series?name={name}&from=0&to=9999999999999&max_points=100000"));
        let mut out = Vec::new();
        for series in body["series"].as_array().expect("series array") {
            let labels = series["labels"].as_str().unwrap_or_default().to_owned();
            for point in series["points"].as_array().expect("points array") {
                out.push((labels.clone(), point[0].as_i64().expect("ts"), point[1].as_f64().expect("value")));
            }
        }
        out
    }
}

/// A free port on loopback.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// An agent process with its own state directory.
#[derive(Debug)]
pub struct Agent {
    /// The process.
    pub process: ProcessGuard,
}

impl Agent {
    /// Starts an agent sending to `collector_url` every `interval_secs`, with `config` as its
    /// config file text (empty for all defaults). Unless `config` has a `[spool]` section, the
    /// free-space reserve is switched off so the suite behaves the same on a nearly full disk.
    pub fn start(dir: &Path, collector_url: &str, token_file: &Path, interval_secs: u64, config: &str) -> Agent {
        let config_path = dir.join("agent.toml");
        let text = if config.contains("[spool]") {
            config.to_owned()
        } else {
            format!("{config}\n[spool]\nmin_free_bytes = 0\n")
        };
        std::fs::write(&config_path, text).expect("writing agent config");
        let mut cmd = Command::new(bin("b24watch-agent"));
        cmd.arg("--config")
            .arg(config_path)
            .arg("--collector-url")
            .arg(collector_url)
            .arg("--token-file")
            .arg(token_file)
            .arg("--state-dir")
            .arg(dir.join("agent-state"))
            .arg("--interval-secs")
            .arg(interval_secs.to_string());
        Agent { process: ProcessGuard::spawn("b24watch-agent", cmd, &dir.join("agent.log")) }
    }
}

/// A minimal HTTP/1.1 GET over loopback (`Connection: close`), bounded by a 10 s timeout.
///
/// # Errors
/// IO errors and malformed responses.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path, "")
}

/// POSTs a JSON body; returns status and body.
///
/// # Errors
/// IO errors and malformed responses.
pub fn http_post(addr: SocketAddr, path: &str, json: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "POST", path, json)
}

/// A minimal HTTP/1.1 request with an optional JSON body (`Connection: close`), bounded by a
/// 10 s timeout.
///
/// # Errors
/// IO errors and malformed responses.
pub fn http_request(addr: SocketAddr, method: &str, path: &str, json: &str) -> std::io::Result<(u16, String)> {
    http_call(addr, method, path, &[], json).map(|r| (r.status, r.body))
}

/// An HTTP response as [`http_call`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header fields, names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// Body (lossy UTF-8).
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 request with extra header fields and a JSON body over plain TCP
/// (`Connection: close`), bounded by a 10 s timeout.
///
/// # Errors
/// IO errors and malformed responses.
pub fn http_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json: &str,
) -> std::io::Result<HttpResponse> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    exchange(stream, &addr.to_string(), method, path, headers, json)
}

/// [`http_call`] over TLS, trusting the CA certificates in `ca_pem`, with server name `localhost`.
///
/// # Errors
/// IO and TLS errors, malformed responses.
pub fn https_call(
    addr: SocketAddr,
    ca_pem: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json: &str,
) -> std::io::Result<HttpResponse> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_pem).map_err(std::io::Error::other)? {
        roots.add(cert.map_err(std::io::Error::other)?).map_err(std::io::Error::other)?;
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    exchange(rustls::StreamOwned::new(conn, tcp), &addr.to_string(), method, path, headers, json)
}

fn exchange(
    mut stream: impl Read + Write,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json: &str,
) -> std::io::Result<HttpResponse> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        json.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(json);
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut fields = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let chunked = fields.iter().any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        match reader.read_to_end(&mut body) {
            Ok(_) => {}
            // A TLS peer closing without close_notify after a complete response.
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(err) => return Err(err),
        }
    }
    Ok(HttpResponse { status, headers: fields, body: String::from_utf8_lossy(&body).into_owned() })
}

/// The value of the sample `name{labels...}` in an exposition, matching the given labels exactly
/// as a subset of the sample's labels.
pub fn metric(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric_name != name {
            return None;
        }
        let all = labels.iter().all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}

/// Runs `promtool check metrics` on an exposition; returns its combined output on failure.
///
/// # Panics
/// When promtool is not installed (`make test` installs it).
pub fn promtool_check_metrics(exposition: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: run `make test`, which installs the prometheus package");
    child.stdin.take().expect("stdin").write_all(exposition.as_bytes()).expect("writing to promtool");
    let out = child.wait_with_output().expect("promtool output");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// Runs a future on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

/// The wall clock in unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// A batch with one `load1{probe="e2e"}` series whose values are the timestamps in seconds.
pub fn load_batch(agent_id: &str, epoch: u64, seq: u64, ts: &[i64]) -> b24watch_proto::v1::Batch {
    use b24watch_proto::v1::{Batch, Label, Series};
    Batch {
        spool_epoch: epoch,
        seq,
        agent_id: agent_id.to_owned(),
        series: vec![Series {
            name: "load1".into(),
            kind: 1,
            labels: vec![Label { name: "probe".into(), value: "e2e".into() }],
            timestamps_unix_ms: ts.to_vec(),
            values: ts.iter().map(|t| *t as f64 / 1000.0).collect(),
        }],
        ..Batch::default()
    }
}

/// An already-encoded protobuf message, sent as is (to send malformed or oversized payloads).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawMessage(pub Vec<u8>);

impl prost::Message for RawMessage {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// Opens one stream, sends `messages` (raw protobuf bytes), closes the sending side and collects
/// the acks. `gzip` compresses each message on the wire.
///
/// # Errors
/// The stream's status when the collector refuses or fails it.
pub fn send_raw(
    url: &str,
    token: &str,
    messages: Vec<Vec<u8>>,
    gzip: bool,
) -> Result<Vec<b24watch_proto::v1::Ack>, tonic::Status> {
    block_on(send_raw_async(url, token, messages, gzip))
}

/// [`send_raw`] for callers already inside a runtime.
///
/// # Errors
/// The stream's status when the collector refuses or fails it.
pub async fn send_raw_async(
    url: &str,
    token: &str,
    messages: Vec<Vec<u8>>,
    gzip: bool,
) -> Result<Vec<b24watch_proto::v1::Ack>, tonic::Status> {
    {
        let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
            .expect("url")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|err| tonic::Status::unavailable(err.to_string()))?;
        let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
        if gzip {
            grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
        }
        grpc.ready().await.map_err(|err| tonic::Status::unavailable(err.to_string()))?;
        let (tx, rx) = tokio::sync::mpsc::channel(messages.len().max(1));
        for message in messages {
            tx.send(RawMessage(message)).await.expect("queue");
        }
        drop(tx);
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
        let codec = tonic_prost::ProstCodec::<RawMessage, b24watch_proto::v1::Ack>::default();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/b24watch.v1.Ingest/Stream");
        let mut acks = grpc.streaming(request, path, codec).await?.into_inner();
        let mut out = Vec::new();
        while let Some(ack) =
            tokio::time::timeout(Duration::from_secs(20), acks.message()).await.expect("ack in time")?
        {
            out.push(ack);
        }
        Ok(out)
    }
}

/// Sends batches on one stream (see [`send_raw`]).
///
/// # Errors
/// The stream's status when the collector refuses or fails it.
pub fn send(
    url: &str,
    token: &str,
    batches: Vec<b24watch_proto::v1::Batch>,
) -> Result<Vec<b24watch_proto::v1::Ack>, tonic::Status> {
    use prost::Message as _;
    send_raw(url, token, batches.iter().map(|b| b.encode_to_vec()).collect(), false)
}

/// `PRAGMA integrity_check` of a SQLite file, opened read-only.
///
/// # Panics
/// When the file cannot be opened.
pub fn integrity_check(path: &Path) -> String {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|err| panic!("opening {}: {err}", path.display()));
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check")
}

/// Chromium's path: Debian's `chromium` package (`make test` installs it).
///
/// # Panics
/// When it is not installed.
pub fn chromium() -> std::path::PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .expect("Chromium not installed: run `make test`, which installs Debian's chromium package")
}

/// The page as a real headless browser sees it (the DOM after parsing and layout).
///
/// # Panics
/// When Chromium fails.
pub fn browser_dom(url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = std::process::Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=2000", "--dump-dom"])
        .arg(url)
        .output()
        .expect("running chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
