//! Web workers: nginx `stub_status`, Apache `server-status?auto` and PHP-FPM's status page, read
//! where BitrixVM puts them, and whether the workers stay saturated.
//!
//! ## Where and what (sources)
//!
//! - **nginx** `stub_status`: BitrixVM's `monitor` role serves it on `127.0.0.1:8885` at `/`
//!   (bitrix-env `etc/ansible/roles/web/templates/nginx/nginx_server_status.conf.j2`,
//!   `roles/monitor/defaults/main.yml` `nginx_monitoring_port: 8885`); the push server's front
//!   also has `/nginx_status` on 8895. Format (nginx docs, `ngx_http_stub_status_module`):
//!   `Active connections: N`, then `server accepts handled requests` and three numbers, then
//!   `Reading: r Writing: w Waiting: i`.
//! - **Apache** `mod_status`: `127.0.0.1:8886/server-status` with `ExtendedStatus On` (bitrix-env
//!   `etc/ansible/library/bx_apache_status.conf.j2`, `apache_monitoring_port: 8886`); the `?auto`
//!   form is `Key: value` lines (`Total Accesses`, `BusyWorkers`, `IdleWorkers`, `Scoreboard`).
//!   The scoreboard has one character per slot (ServerLimit × ThreadsPerChild): `_` waiting,
//!   `.` open slot, anything else busy. Saturation = BusyWorkers / slots.
//! - **PHP-FPM**: only where `pm.status_path` is set and routed (BitrixVM runs mod_php, so no
//!   default URL); plain-text format of `fpm_status.c`: `pool:`, `accepted conn:`,
//!   `listen queue:`, `idle processes:`, `active processes:`, `total processes:`,
//!   `max children reached:`, `slow requests:`. Saturated when requests wait in the listen
//!   queue, or when `active / total` reaches the ratio while `max children reached` grew.
//!
//! A status page that does not answer is skipped silently (the service check says whether the
//! daemon runs). The check `web_workers` (medium, target `apache` or `php-fpm/<pool>`) fails
//! when saturation lasts `saturated_for_secs`: users see slowness before errors.

use std::collections::HashMap;
use std::time::Duration;

use b24watch_common::config::Problems;
use b24watch_proto::catalog::{
    APACHE_ACCESSES_TOTAL, APACHE_WORKERS, NGINX_CONNECTIONS, NGINX_REQUESTS_TOTAL, PHPFPM_LISTEN_QUEUE,
    PHPFPM_MAX_CHILDREN_REACHED_TOTAL, PHPFPM_PROCESSES, PHPFPM_SLOW_REQUESTS_TOTAL, WEB_WORKERS_SATURATION_RATIO,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Check, Checker, Findings};
use crate::observation::{Severity, UnixMs};

/// Largest status page read.
const MAX_BODY: usize = 256 * 1024;

/// nginx `stub_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NginxStatus {
    /// Open client connections.
    pub active: u64,
    /// Accepted connections since start.
    pub accepts: u64,
    /// Handled connections since start.
    pub handled: u64,
    /// Requests since start.
    pub requests: u64,
    /// Connections reading the request.
    pub reading: u64,
    /// Connections writing the response.
    pub writing: u64,
    /// Idle keep-alive connections.
    pub waiting: u64,
}

/// Parses `stub_status` text. Pure.
pub fn parse_nginx(text: &str) -> Option<NginxStatus> {
    let mut lines = text.lines().map(str::trim);
    let active = lines.next()?.strip_prefix("Active connections:")?.trim().parse().ok()?;
    if !lines.next()?.starts_with("server accepts handled requests") {
        return None;
    }
    let mut counts = lines.next()?.split_whitespace().map(|n| n.parse::<u64>().ok());
    let (accepts, handled, requests) = (counts.next()??, counts.next()??, counts.next()??);
    let words: Vec<&str> = lines.next()?.split_whitespace().collect();
    let field = |name: &str| words.iter().position(|w| *w == name).and_then(|i| words.get(i + 1)?.parse().ok());
    Some(NginxStatus {
        active,
        accepts,
        handled,
        requests,
        reading: field("Reading:")?,
        writing: field("Writing:")?,
        waiting: field("Waiting:")?,
    })
}

/// Apache `server-status?auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApacheStatus {
    /// Requests since start (`Total Accesses`; only with ExtendedStatus).
    pub accesses: Option<u64>,
    /// Workers serving a request.
    pub busy: u64,
    /// Workers waiting for one.
    pub idle: u64,
    /// Scoreboard slots.
    pub slots: u64,
}

/// `Key: value` lines into a lookup. Pure.
fn key_values(text: &str) -> HashMap<&str, &str> {
    text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim(), v.trim())).collect()
}

/// Parses `server-status?auto` text. Pure.
pub fn parse_apache(text: &str) -> Option<ApacheStatus> {
    let kv = key_values(text);
    let busy = kv.get("BusyWorkers")?.parse().ok()?;
    let idle = kv.get("IdleWorkers")?.parse().ok()?;
    let slots = kv.get("Scoreboard").map_or(busy + idle, |s| s.len() as u64).max(busy + idle);
    Some(ApacheStatus { accesses: kv.get("Total Accesses").and_then(|v| v.parse().ok()), busy, idle, slots })
}

/// PHP-FPM status page (plain text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpmStatus {
    /// Pool name.
    pub pool: String,
    /// Requests waiting for a free process.
    pub listen_queue: u64,
    /// Idle processes.
    pub idle: u64,
    /// Active processes.
    pub active: u64,
    /// All processes.
    pub total: u64,
    /// Times `pm.max_children` was hit since start.
    pub max_children_reached: u64,
    /// Requests slower than `request_slowlog_timeout` since start.
    pub slow_requests: u64,
}

/// Parses PHP-FPM's plain-text status. Pure.
pub fn parse_fpm(text: &str) -> Option<FpmStatus> {
    let kv = key_values(text);
    let n = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok());
    Some(FpmStatus {
        pool: kv.get("pool")?.to_string(),
        listen_queue: n("listen queue")?,
        idle: n("idle processes")?,
        active: n("active processes")?,
        total: n("total processes")?,
        max_children_reached: n("max children reached").unwrap_or(0),
        slow_requests: n("slow requests").unwrap_or(0),
    })
}

/// `[workers]` section as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawWorkers {
    /// Whether web workers are read.
    pub enabled: bool,
    /// Seconds between runs.
    pub interval_secs: u64,
    /// Seconds per status request.
    pub timeout_secs: u64,
    /// nginx stub_status URL.
    pub nginx_status_url: String,
    /// Apache server-status?auto URL.
    pub apache_status_url: String,
    /// PHP-FPM status URLs.
    pub php_fpm_status_urls: Vec<String>,
    /// Saturation share.
    pub saturation_ratio: f64,
    /// Seconds of saturation before the check fails.
    pub saturated_for_secs: u64,
}

impl Default for RawWorkers {
    fn default() -> Self {
        RawWorkers {
            enabled: true,
            interval_secs: 30,
            timeout_secs: 5,
            nginx_status_url: "http://127.0.0.1:8885/".into(),
            apache_status_url: "http://127.0.0.1:8886/server-status?auto".into(),
            php_fpm_status_urls: Vec::new(),
            saturation_ratio: 0.9,
            saturated_for_secs: 300,
        }
    }
}

/// A plain-HTTP URL on this host, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUrl {
    /// `host:port` to connect to.
    pub authority: String,
    /// Path and query.
    pub path: String,
}

/// Parses `http://host[:port]/path`; `None` for anything else. Pure.
pub fn parse_url(url: &str) -> Option<LocalUrl> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(idx) => (&rest[..idx], &rest[idx..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return None;
    }
    let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Some(LocalUrl { authority, path: path.to_owned() })
}

/// Validated `[workers]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkersConfig {
    /// Whether web workers are read.
    pub enabled: bool,
    /// Time between runs.
    pub interval: Duration,
    /// Bound of one status request.
    pub timeout: Duration,
    /// nginx stub_status (`None`: not read).
    pub nginx: Option<LocalUrl>,
    /// Apache server-status?auto (`None`: not read).
    pub apache: Option<LocalUrl>,
    /// PHP-FPM status pages.
    pub php_fpm: Vec<LocalUrl>,
    /// Busy share counted as saturated.
    pub saturation_ratio: f64,
    /// How long saturation must last.
    pub saturated_for: Duration,
}

impl Eq for WorkersConfig {}

impl RawWorkers {
    /// The validated form; problems go to `problems`.
    pub fn validate(&self, problems: &mut Problems) -> WorkersConfig {
        let mut url = |key: &str, text: &str| -> Option<LocalUrl> {
            if text.is_empty() {
                return None;
            }
            let parsed = parse_url(text);
            if parsed.is_none() {
                problems.bad(key, format!("{text:?}: expected an http:// URL or \"\""));
            }
            parsed
        };
        let nginx = url("workers.nginx_status_url", &self.nginx_status_url);
        let apache = url("workers.apache_status_url", &self.apache_status_url);
        let php_fpm = self.php_fpm_status_urls.iter().filter_map(|u| url("workers.php_fpm_status_urls", u)).collect();
        if !(self.saturation_ratio > 0.0 && self.saturation_ratio <= 1.0) {
            problems.bad(
                "workers.saturation_ratio",
                format!("{}: expected a number above 0, at most 1", self.saturation_ratio),
            );
        }
        WorkersConfig {
            enabled: self.enabled,
            interval: problems.secs("workers.interval_secs", self.interval_secs, 5, 3600),
            timeout: problems.secs("workers.timeout_secs", self.timeout_secs, 1, 60),
            nginx,
            apache,
            php_fpm,
            saturation_ratio: self.saturation_ratio,
            saturated_for: Duration::from_secs(self.saturated_for_secs),
        }
    }
}

/// GETs a status page over plain HTTP/1.0 within `limit`; the body when the status is 200.
/// (`AsyncReadExt`/`AsyncWriteExt` come with tokio's `io-util`, which mysql_async enables.)
///
/// # Errors
/// A short reason: `refused`, `timeout`, `status <code>`, `bad_response`.
pub async fn get(url: &LocalUrl, limit: Duration) -> Result<String, String> {
    tokio::time::timeout(limit, fetch(url)).await.map_err(|_| "timeout".to_owned())?
}

async fn fetch(url: &LocalUrl) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(url.authority.as_str()).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused { "refused".to_owned() } else { format!("connect: {e}") }
    })?;
    let host = url.authority.rsplit_once(':').map_or(url.authority.as_str(), |(h, _)| h);
    let request = format!("GET {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: b24watch-agent\r\n\r\n", url.path);
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut body = Vec::new();
    (&mut stream).take(MAX_BODY as u64).read_to_end(&mut body).await.map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&body).into_owned();
    let (head, content) = text.split_once("\r\n\r\n").ok_or("bad_response")?;
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok()).ok_or("bad_response")?;
    if code == 200 { Ok(content.to_owned()) } else { Err(format!("status {code}")) }
}

/// The web worker checker.
#[derive(Debug)]
pub struct WorkerChecker {
    cfg: WorkersConfig,
    /// Since when each target has been saturated.
    saturated_since: HashMap<String, UnixMs>,
    /// `max children reached` of each pool at the previous run.
    reached: HashMap<String, u64>,
}

impl WorkerChecker {
    /// A checker with the given settings.
    pub fn new(cfg: WorkersConfig) -> Self {
        WorkerChecker { cfg, saturated_since: HashMap::new(), reached: HashMap::new() }
    }

    /// Records one target's saturation and pushes its check result.
    fn judge(&mut self, target: String, ratio: f64, saturated: bool, why: String, at: UnixMs, out: &mut Findings) {
        out.observe(WEB_WORKERS_SATURATION_RATIO, vec![("server", target.clone())], ratio, at);
        let since = if saturated { Some(*self.saturated_since.entry(target.clone()).or_insert(at)) } else { None };
        if !saturated {
            self.saturated_since.remove(&target);
        }
        let lasting = since.map(|s| Duration::from_millis((at.0 - s.0).max(0) as u64));
        out.checks.push(match lasting {
            Some(d) if d >= self.cfg.saturated_for => Check::failed(
                "web_workers",
                &target,
                Severity::Medium,
                "saturated",
                format!("{why} for {} min: requests wait for a free worker and users see slowness.", d.as_secs() / 60),
                at,
            ),
            _ => Check::ok(
                "web_workers",
                &target,
                Severity::Medium,
                format!("{:.0} % of workers busy.", ratio * 100.0),
                at,
            ),
        });
    }
}

#[async_trait::async_trait]
impl Checker for WorkerChecker {
    fn name(&self) -> &'static str {
        "workers"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    async fn run(&mut self, at: UnixMs, out: &mut Findings) {
        let limit = self.cfg.timeout;
        if let Some(url) = &self.cfg.nginx
            && let Some(s) = get(url, limit).await.ok().as_deref().and_then(parse_nginx)
        {
            for (state, value) in
                [("active", s.active), ("reading", s.reading), ("writing", s.writing), ("waiting", s.waiting)]
            {
                out.observe(NGINX_CONNECTIONS, vec![("state", state.to_owned())], value as f64, at);
            }
            out.observe(NGINX_REQUESTS_TOTAL, Vec::new(), s.requests as f64, at);
        }
        if let Some(url) = self.cfg.apache.clone()
            && let Some(s) = get(&url, limit).await.ok().as_deref().and_then(parse_apache)
        {
            out.observe(APACHE_WORKERS, vec![("state", "busy".to_owned())], s.busy as f64, at);
            out.observe(APACHE_WORKERS, vec![("state", "idle".to_owned())], s.idle as f64, at);
            if let Some(accesses) = s.accesses {
                out.observe(APACHE_ACCESSES_TOTAL, Vec::new(), accesses as f64, at);
            }
            let ratio = if s.slots == 0 { 0.0 } else { s.busy as f64 / s.slots as f64 };
            let why = format!("{} of {} Apache workers busy", s.busy, s.slots);
            self.judge("apache".into(), ratio, ratio >= self.cfg.saturation_ratio, why, at, out);
        }
        for url in self.cfg.php_fpm.clone() {
            let Some(s) = get(&url, limit).await.ok().as_deref().and_then(parse_fpm) else { continue };
            let pool = || vec![("pool", s.pool.clone())];
            for (state, value) in [("active", s.active), ("idle", s.idle)] {
                out.observe(
                    PHPFPM_PROCESSES,
                    vec![("pool", s.pool.clone()), ("state", state.to_owned())],
                    value as f64,
                    at,
                );
            }
            out.observe(PHPFPM_LISTEN_QUEUE, pool(), s.listen_queue as f64, at);
            out.observe(PHPFPM_MAX_CHILDREN_REACHED_TOTAL, pool(), s.max_children_reached as f64, at);
            out.observe(PHPFPM_SLOW_REQUESTS_TOTAL, pool(), s.slow_requests as f64, at);
            let grew = self
                .reached
                .insert(s.pool.clone(), s.max_children_reached)
                .is_some_and(|before| s.max_children_reached > before);
            let ratio = if s.total == 0 { 0.0 } else { s.active as f64 / s.total as f64 };
            let (saturated, why) = if s.listen_queue > 0 {
                (true, format!("{} requests queued for PHP-FPM pool {}", s.listen_queue, s.pool))
            } else {
                (
                    ratio >= self.cfg.saturation_ratio && grew,
                    format!("all {} processes of PHP-FPM pool {} busy and pm.max_children reached", s.total, s.pool),
                )
            };
            self.judge(format!("php-fpm/{}", s.pool), ratio, saturated, why, at, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    /// nginx's documented example (ngx_http_stub_status_module).
    const NGINX: &str = "Active connections: 291 \nserver accepts handled requests\n 16630948 16630948 31070465 \nReading: 6 Writing: 179 Waiting: 106 \n";

    /// Apache 2.4 `server-status?auto` with ExtendedStatus On (prefork, 8 slots shown).
    fn apache(busy: usize, idle: usize, open: usize) -> String {
        format!(
            "127.0.0.1\nServerVersion: Apache/2.4.57 (AlmaLinux)\nServerMPM: prefork\nServer Built: Jan 1 2024\n\
             CurrentTime: Monday, 15-Jan-2024 10:00:00 UTC\nServerUptimeSeconds: 86400\nLoad1: 0.5\n\
             Total Accesses: 123456\nTotal kBytes: 789012\nTotal Duration: 1000\nCPUUser: 10\nUptime: 86400\n\
             ReqPerSec: 1.42\nBytesPerSec: 9000\nBusyWorkers: {busy}\nIdleWorkers: {idle}\nScoreboard: {}{}{}\n",
            "W".repeat(busy),
            "_".repeat(idle),
            ".".repeat(open)
        )
    }

    /// PHP-FPM 8.x plain status (fpm_status.c field order).
    fn fpm(queue: u64, idle: u64, active: u64, reached: u64) -> String {
        format!(
            "pool:                 www\nprocess manager:      dynamic\nstart time:           15/Jan/2024:09:00:00 +0000\n\
             start since:          3600\naccepted conn:        12073\nlisten queue:         {queue}\nmax listen queue:     3\n\
             listen queue len:     511\nidle processes:       {idle}\nactive processes:     {active}\ntotal processes:      {}\n\
             max active processes: 5\nmax children reached: {reached}\nslow requests:        2\n",
            idle + active
        )
    }

    #[test]
    fn status_pages_are_parsed_in_their_real_formats() {
        assert_eq!(
            parse_nginx(NGINX),
            Some(NginxStatus {
                active: 291,
                accepts: 16_630_948,
                handled: 16_630_948,
                requests: 31_070_465,
                reading: 6,
                writing: 179,
                waiting: 106
            })
        );
        assert_eq!(
            parse_apache(&apache(3, 5, 248)),
            Some(ApacheStatus { accesses: Some(123_456), busy: 3, idle: 5, slots: 256 })
        );
        let f = parse_fpm(&fpm(0, 3, 2, 1)).expect("fpm");
        assert_eq!((f.pool.as_str(), f.active, f.total, f.max_children_reached), ("www", 2, 5, 1));
        assert_eq!(parse_nginx("<html>not found</html>"), None);
        assert_eq!(parse_apache("<html>"), None);
        assert_eq!(
            parse_url("http://127.0.0.1:8886/server-status?auto").map(|u| u.authority),
            Some("127.0.0.1:8886".into())
        );
        assert_eq!(
            parse_url("http://localhost/status").map(|u| (u.authority, u.path)),
            Some(("localhost:80".into(), "/status".into()))
        );
        assert_eq!(parse_url("https://x/"), None);
    }

    /// A stand-in status server on loopback answering with `body()` each time.
    async fn serve(body: std::sync::Arc<std::sync::Mutex<String>>) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let text = body.lock().expect("lock").clone();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            }
        });
        (format!("http://{addr}"), task)
    }

    async fn run(checker: &mut WorkerChecker, at: i64) -> Findings {
        let mut out = Findings::default();
        checker.run(UnixMs(at), &mut out).await;
        out
    }

    #[tokio::test]
    async fn saturation_that_lasts_fails_and_a_missing_page_is_skipped() {
        let nginx_body = std::sync::Arc::new(std::sync::Mutex::new(NGINX.to_owned()));
        let apache_body = std::sync::Arc::new(std::sync::Mutex::new(apache(250, 2, 4)));
        let fpm_body = std::sync::Arc::new(std::sync::Mutex::new(fpm(0, 0, 5, 1)));
        let (nginx_url, t1) = serve(nginx_body).await;
        let (apache_url, t2) = serve(apache_body.clone()).await;
        let (fpm_url, t3) = serve(fpm_body.clone()).await;
        // A closed port stands for a page that is not configured on this server.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
        let raw = RawWorkers {
            nginx_status_url: format!("{nginx_url}/"),
            apache_status_url: format!("{apache_url}/server-status?auto"),
            php_fpm_status_urls: vec![format!("{fpm_url}/status"), format!("http://{closed}/status")],
            saturated_for_secs: 60,
            ..RawWorkers::default()
        };
        let mut problems = Problems::new(std::path::Path::new("agent.toml"));
        let cfg = raw.validate(&mut problems);
        problems.finish(()).expect("valid");
        let mut checker = WorkerChecker::new(cfg);
        let result = |out: &Findings, target: &str| {
            out.checks.iter().find(|c| c.target == target).map(|c| (c.status, c.reason, c.severity))
        };
        let first = run(&mut checker, 0).await;
        // Saturated, but not for long yet.
        assert_eq!(result(&first, "apache"), Some((Status::Ok, "", Severity::Medium)));
        assert_eq!(result(&first, "php-fpm/www"), Some((Status::Ok, "", Severity::Medium)));
        assert_eq!(first.checks.len(), 2, "the closed page is skipped: {:?}", first.checks);
        let nginx_active = first
            .observations
            .iter()
            .find(|o| o.name == NGINX_CONNECTIONS && o.labels == [("state", "active".to_owned())])
            .map(|o| o.value);
        assert_eq!(nginx_active, Some(291.0));
        // A minute later Apache is still saturated; PHP-FPM hit max_children again and queues.
        *fpm_body.lock().expect("lock") = fpm(4, 0, 5, 2);
        let later = run(&mut checker, 61_000).await;
        assert_eq!(result(&later, "apache"), Some((Status::Failed, "saturated", Severity::Medium)));
        assert_eq!(result(&later, "php-fpm/www"), Some((Status::Ok, "", Severity::Medium)), "queueing just began");
        let msg = &later.checks.iter().find(|c| c.target == "apache").expect("apache").message;
        assert!(msg.starts_with("250 of 256 Apache workers busy for 1 min"), "{msg}");
        // Apache recovers: the check passes again at once.
        *apache_body.lock().expect("lock") = apache(10, 200, 46);
        let recovered = run(&mut checker, 125_000).await;
        assert_eq!(result(&recovered, "apache"), Some((Status::Ok, "", Severity::Medium)));
        assert_eq!(result(&recovered, "php-fpm/www"), Some((Status::Failed, "saturated", Severity::Medium)));
        for task in [t1, t2, t3] {
            task.abort();
        }
    }
}
