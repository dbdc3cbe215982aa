//! The push server (Bitrix "Push & Pull", the Node.js `bx-push-server`): is it answering behind
//! BitrixVM's nginx front, and how many clients does it hold?
//!
//! BitrixVM's `push-server` role puts an nginx front on `listen 8895` with `location /server-stat
//! { proxy_pass http://nodejs_pub; }` and `location /nginx_status { stub_status on; }` (bitrix-env
//! `etc/ansible/roles/push-server/templates/nginx-rtc-server.conf.j2`); the push server's own
//! config is `/etc/sysconfig/push-server-multi` (`roles/push-server/defaults/main.yml`).
//!
//! ## `/server-stat/` (Bitrix push server 1.0, the `push-server` package BitrixVM installs; its
//! sources as published in `faew/bitrix-push-server`, `opt/push-server/lib/`)
//!
//! - The route is `"stat": "/server-stat/"` in the publisher's config
//!   (`etc/push-server/push-server-pub-__PORT__.json`), matched as a *prefix* by `router.js`
//!   (`path.indexOf(route) === 0`). nginx passes the URI unchanged, so `/server-stat` without the
//!   slash reaches Node.js and gets its 404: the default URL ends with a slash.
//! - The body (`application.js` `getStat`) is `JSON.stringify` of an array with one object per
//!   push server process that reported within the last 40 s (`adapters/cluster.js`: each process
//!   writes its figures to the Redis hash `stats` every 30 s; older entries are dropped):
//!   `{"pid":1234,"date":<ms>,"processUniqueId":"sub-8010","websockets":12,"pollings":3,"channels":14}`
//!   (`adapters/adapter.js`: `websockets` and `pollings` are the open subscriber connections by
//!   transport, `channels` the channels they listen on). Publisher processes (`pub-*`) hold no
//!   connections. When the process cannot read Redis the array is empty (`[]`).
//!
//! ## Results (target `push-server`, severity high: chats, notifications and live feeds stop)
//!
//! - 200 with at least one process: up (`push_server_up` 1, the answer time, clients by
//!   transport, channels, processes).
//! - 200 with an empty list: fails, reason `no_processes`: no process could report through Redis,
//!   so messages are not stored or delivered either (`storage.set` fails the same way).
//! - nginx answers but not with 200 (502/504: the Node.js processes behind it are down or
//!   stuck): fails, reason `down`.
//! - nothing listens (connection refused) or no answer in time: reason `refused` or `timeout`.
//!
//! The check runs only where a push server is configured (its sysconfig file exists) or its
//! status page answered once, so a portal without one is not reported.

use std::path::PathBuf;
use std::time::Duration;

use b24watch_common::config::Problems;
use b24watch_proto::catalog::{
    PUSH_SERVER_CHANNELS, PUSH_SERVER_CLIENTS, PUSH_SERVER_PROCESSES, PUSH_SERVER_RESPONSE_SECONDS, PUSH_SERVER_UP,
};
use serde::{Deserialize, Serialize};

use super::workers::{LocalUrl, get, parse_url};
use super::{Check, Checker, Findings};
use crate::observation::{Severity, UnixMs};

/// `[push]` section as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawPush {
    /// Whether the push server is checked.
    pub enabled: bool,
    /// Seconds between runs.
    pub interval_secs: u64,
    /// Seconds per request.
    pub timeout_secs: u64,
    /// The status URL.
    pub status_url: String,
    /// Files whose presence means a push server is configured here.
    pub config_files: Vec<PathBuf>,
}

impl Default for RawPush {
    fn default() -> Self {
        RawPush {
            enabled: true,
            interval_secs: 30,
            timeout_secs: 5,
            status_url: "http://127.0.0.1:8895/server-stat/".into(),
            config_files: vec!["/etc/sysconfig/push-server-multi".into(), "/etc/default/push-server-multi".into()],
        }
    }
}

/// Validated `[push]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// Whether the push server is checked.
    pub enabled: bool,
    /// Time between runs.
    pub interval: Duration,
    /// Bound of one request.
    pub timeout: Duration,
    /// The status URL.
    pub status: Option<LocalUrl>,
    /// Files whose presence means a push server is configured here.
    pub config_files: Vec<PathBuf>,
}

impl RawPush {
    /// The validated form; problems go to `problems`.
    pub fn validate(&self, problems: &mut Problems) -> PushConfig {
        let status = parse_url(&self.status_url);
        if status.is_none() {
            problems.bad("push.status_url", format!("{:?}: expected an http:// URL", self.status_url));
        }
        PushConfig {
            enabled: self.enabled,
            interval: problems.secs("push.interval_secs", self.interval_secs, 5, 3600),
            timeout: problems.secs("push.timeout_secs", self.timeout_secs, 1, 60),
            status,
            config_files: self.config_files.clone(),
        }
    }
}

/// The push server checker.
#[derive(Debug)]
pub struct PushChecker {
    cfg: PushConfig,
    /// The status page answered at least once.
    seen: bool,
}

impl PushChecker {
    /// A checker with the given settings.
    pub fn new(cfg: PushConfig) -> Self {
        PushChecker { cfg, seen: false }
    }
}

/// What `/server-stat/` says, summed over the push server's processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStat {
    /// Processes that reported (publishers and subscribers).
    pub processes: u64,
    /// Subscriber connections over WebSocket.
    pub websockets: u64,
    /// Subscriber connections by long polling.
    pub pollings: u64,
    /// Channels listened on.
    pub channels: u64,
}

/// Parses the body of `/server-stat/` (see the module docs); `None` when it is not that format.
/// A lone object (the handler wraps non-arrays into one) counts as one process. Pure.
pub fn parse_stat(body: &str) -> Option<PushStat> {
    let mut json = Json { s: body.as_bytes(), i: 0 };
    let mut stat = PushStat::default();
    let mut read_object = |json: &mut Json<'_>| -> Option<()> {
        let fields = json.object()?;
        let get = |key: &str| fields.iter().find(|(k, _)| k == key).and_then(|(_, v)| *v);
        if get("websockets").is_none() && get("pollings").is_none() && get("pid").is_none() {
            return None;
        }
        stat.processes += 1;
        stat.websockets += get("websockets").unwrap_or(0);
        stat.pollings += get("pollings").unwrap_or(0);
        stat.channels += get("channels").unwrap_or(0);
        Some(())
    };
    json.ws();
    match json.peek()? {
        b'[' => {
            json.i += 1;
            json.ws();
            if json.peek()? == b']' {
                json.i += 1;
            } else {
                loop {
                    json.ws();
                    read_object(&mut json)?;
                    json.ws();
                    match json.next()? {
                        b',' => {}
                        b']' => break,
                        _ => return None,
                    }
                }
            }
        }
        b'{' => read_object(&mut json)?,
        _ => return None,
    }
    json.ws();
    (json.i == json.s.len()).then_some(stat)
}

/// Just enough JSON for flat objects of strings and numbers (other values are skipped).
struct Json<'a> {
    s: &'a [u8],
    i: usize,
}

impl Json<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    /// A string; escapes are kept as written (keys here have none).
    fn string(&mut self) -> Option<String> {
        if self.next()? != b'"' {
            return None;
        }
        let start = self.i;
        loop {
            match self.next()? {
                b'\\' => {
                    self.next()?;
                }
                b'"' => return Some(String::from_utf8_lossy(&self.s[start..self.i - 1]).into_owned()),
                _ => {}
            }
        }
    }

    /// A value: a non-negative integer as `Some`, anything else (string, float, bool, null,
    /// nested value) skipped as `None`.
    fn value(&mut self) -> Option<Option<u64>> {
        match self.peek()? {
            b'"' => self.string().map(|_| None),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                    self.i += 1;
                    if depth == 0 {
                        return Some(None);
                    }
                }
            }
            _ => {
                let start = self.i;
                while self.peek().is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace()) {
                    self.i += 1;
                }
                let token = std::str::from_utf8(&self.s[start..self.i]).ok()?;
                if token.is_empty() {
                    return None;
                }
                Some(token.parse::<u64>().ok())
            }
        }
    }

    /// An object's fields with their integer values.
    fn object(&mut self) -> Option<Vec<(String, Option<u64>)>> {
        if self.next()? != b'{' {
            return None;
        }
        let mut fields = Vec::new();
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(fields);
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            if self.next()? != b':' {
                return None;
            }
            self.ws();
            fields.push((key, self.value()?));
            self.ws();
            match self.next()? {
                b',' => {}
                b'}' => return Some(fields),
                _ => return None,
            }
        }
    }
}

/// The check result for one answer: the parsed `/server-stat/` for a 200 (`None` when its body
/// is not the push server's format: the front answers, which is all that can be said), else the
/// reason text from [`super::workers::get`]. Pure.
pub fn judge(outcome: &Result<Option<PushStat>, String>, at: UnixMs) -> Check {
    let target = "push-server";
    match outcome {
        Ok(Some(stat)) if stat.processes == 0 => Check::failed(
            "push_server",
            target,
            Severity::High,
            "no_processes",
            "The push server answers but lists no running process: it cannot reach its Redis storage, so chats and notifications are not delivered.".into(),
            at,
        ),
        Ok(Some(stat)) => Check::ok(
            "push_server",
            target,
            Severity::High,
            format!(
                "The push server answers: {} clients connected ({} WebSocket, {} long polling) over {} processes.",
                stat.websockets + stat.pollings,
                stat.websockets,
                stat.pollings,
                stat.processes
            ),
            at,
        ),
        Ok(None) => Check::ok("push_server", target, Severity::High, "The push server answers.".into(), at),
        Err(reason) if reason.starts_with("status ") => Check::failed(
            "push_server",
            target,
            Severity::High,
            "down",
            format!(
                "nginx answers /server-stat/ with {reason}: the push server behind it is down; chats and notifications stop."
            ),
            at,
        ),
        Err(reason) if reason == "timeout" => Check::failed(
            "push_server",
            target,
            Severity::High,
            "timeout",
            "The push server did not answer in time: chats and notifications stall.".into(),
            at,
        ),
        Err(reason) => Check::failed(
            "push_server",
            target,
            Severity::High,
            "refused",
            format!("The push server's front refuses connections ({reason}): chats and notifications stop."),
            at,
        ),
    }
}

#[async_trait::async_trait]
impl Checker for PushChecker {
    fn name(&self) -> &'static str {
        "push"
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    async fn run(&mut self, at: UnixMs, out: &mut Findings) {
        let Some(url) = self.cfg.status.clone() else { return };
        let started = tokio::time::Instant::now();
        let outcome = get(&url, self.cfg.timeout).await.map(|body| parse_stat(&body));
        let elapsed = started.elapsed();
        self.seen |= outcome.is_ok();
        if !self.seen && !self.cfg.config_files.iter().any(|f| f.exists()) {
            return;
        }
        out.observe(PUSH_SERVER_UP, Vec::new(), f64::from(u8::from(outcome.is_ok())), at);
        if outcome.is_ok() {
            out.observe(PUSH_SERVER_RESPONSE_SECONDS, Vec::new(), elapsed.as_secs_f64(), at);
        }
        if let Ok(Some(stat)) = &outcome {
            for (transport, n) in [("websocket", stat.websockets), ("polling", stat.pollings)] {
                out.observe(PUSH_SERVER_CLIENTS, vec![("transport", transport.to_owned())], n as f64, at);
            }
            out.observe(PUSH_SERVER_CHANNELS, Vec::new(), stat.channels as f64, at);
            out.observe(PUSH_SERVER_PROCESSES, Vec::new(), stat.processes as f64, at);
        }
        out.checks.push(judge(&outcome, at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// `/server-stat/` of a BitrixVM push server with one subscriber and one publisher process, as
    /// `Adapter.prototype.getStat` writes each entry (`pid`, `date`, `processUniqueId`, then
    /// `websockets`, `pollings`, `channels`; Bitrix push server 1.0, `lib/adapters/adapter.js`
    /// in faew/bitrix-push-server) and `ClusterAdapter.prototype.getStat` lists them.
    const STAT: &str = r#"[{"pid":2101,"date":1700000000000,"processUniqueId":"sub-8010","websockets":12,"pollings":3,"channels":14},{"pid":2102,"date":1700000000000,"processUniqueId":"pub-9010","websockets":0,"pollings":0,"channels":0}]"#;

    /// A stand-in for BitrixVM's nginx front on 8895 and the Node.js publisher behind it:
    /// nginx passes the URI unchanged (`proxy_pass http://nodejs_pub;`); Node.js's router serves
    /// `/server-stat/` and any path under it (a prefix match, `lib/router.js`) and answers 404
    /// otherwise; nginx's own 502 page when Node.js is down.
    async fn front(node_up: std::sync::Arc<std::sync::atomic::AtomicBool>, body: &'static str) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let mut buf = [0u8; 1024];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let reply = if !node_up.load(std::sync::atomic::Ordering::SeqCst) {
                    let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
                    format!(
                        "HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{page}",
                        page.len()
                    )
                } else if path.starts_with("/server-stat/") {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n".to_owned()
                };
                let _ = stream.write_all(reply.as_bytes()).await;
            }
        });
        addr
    }

    fn checker(url: String, config_files: Vec<PathBuf>) -> PushChecker {
        let mut problems = Problems::new(std::path::Path::new("agent.toml"));
        let cfg = RawPush { status_url: url, config_files, ..RawPush::default() }.validate(&mut problems);
        problems.finish(()).expect("valid");
        PushChecker::new(cfg)
    }

    async fn run(checker: &mut PushChecker) -> Findings {
        let mut out = Findings::default();
        checker.run(UnixMs(1), &mut out).await;
        out
    }

    fn value(out: &Findings, name: &str, label: Option<&str>) -> Option<f64> {
        out.observations
            .iter()
            .find(|o| o.name == name && label.is_none_or(|l| o.labels.iter().any(|(_, v)| v == l)))
            .map(|o| o.value)
    }

    #[test]
    fn server_stat_is_summed_over_processes() {
        assert_eq!(parse_stat(STAT), Some(PushStat { processes: 2, websockets: 12, pollings: 3, channels: 14 }));
        // Redis unreadable: `getStat` answers an empty list.
        assert_eq!(parse_stat("[]"), Some(PushStat::default()));
        // A lone object (the handler wraps it into an array; accepted either way), spaces.
        assert_eq!(
            parse_stat(
                r#" { "pid": 7, "processUniqueId": "sub-8011", "websockets": 2, "pollings": 0, "channels": 2 } "#
            ),
            Some(PushStat { processes: 1, websockets: 2, pollings: 0, channels: 2 })
        );
        for garbage in ["", "<html>502</html>", "[{\"pid\":1}", "[1,2]", "{\"infos\": []}", "[{\"pid\":1}]x"] {
            assert_eq!(parse_stat(garbage), None, "{garbage:?}");
        }
    }

    /// Before the fix the default URL was `/server-stat`: Node.js's prefix router answers it
    /// with 404, and a healthy push server was reported down (high).
    #[tokio::test]
    async fn the_default_path_reaches_the_stat_route_and_clients_are_counted() {
        let node_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let addr = front(node_up, STAT).await;
        let default = parse_url(&RawPush::default().status_url).expect("default URL");
        let mut push = checker(format!("http://{addr}{}", default.path), Vec::new());
        let out = run(&mut push).await;
        assert_eq!((out.checks[0].status, out.checks[0].reason), (Status::Ok, ""), "{:?}", out.checks);
        assert!(out.checks[0].message.contains("15 clients connected"), "{}", out.checks[0].message);
        assert_eq!(value(&out, PUSH_SERVER_CLIENTS, Some("websocket")), Some(12.0));
        assert_eq!(value(&out, PUSH_SERVER_CLIENTS, Some("polling")), Some(3.0));
        assert_eq!(value(&out, PUSH_SERVER_CHANNELS, None), Some(14.0));
        assert_eq!(value(&out, PUSH_SERVER_PROCESSES, None), Some(2.0));
    }

    #[tokio::test]
    async fn an_empty_process_list_fails() {
        let node_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let addr = front(node_up, "[]").await;
        let mut push = checker(format!("http://{addr}/server-stat/"), Vec::new());
        let out = run(&mut push).await;
        assert_eq!(
            (out.checks[0].status, out.checks[0].reason, out.checks[0].severity),
            (Status::Failed, "no_processes", Severity::High)
        );
        assert_eq!(value(&out, PUSH_SERVER_UP, None), Some(1.0));
        assert_eq!(value(&out, PUSH_SERVER_PROCESSES, None), Some(0.0));
    }

    #[tokio::test]
    async fn up_down_and_refused_push_server() {
        let node_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let addr = front(node_up.clone(), STAT).await;
        let mut push = checker(format!("http://{addr}/server-stat/"), Vec::new());
        let out = run(&mut push).await;
        assert_eq!(out.checks[0].status, Status::Ok);
        assert!(out.observations.iter().any(|o| o.name == PUSH_SERVER_UP && o.value == 1.0));
        node_up.store(false, std::sync::atomic::Ordering::SeqCst);
        let out = run(&mut push).await;
        assert_eq!(
            (out.checks[0].status, out.checks[0].reason, out.checks[0].severity),
            (Status::Failed, "down", Severity::High)
        );
        assert!(out.checks[0].message.contains("status 502"), "{}", out.checks[0].message);
        assert_eq!(value(&out, PUSH_SERVER_CLIENTS, None), None, "no client figures without an answer");

        // Nothing listening: a configured push server is reported as refusing connections ...
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
        let dir = tempfile::tempdir().expect("tempdir");
        let sysconfig = dir.path().join("push-server-multi");
        std::fs::write(&sysconfig, "WS_PORT=8010\n").expect("sysconfig");
        let mut configured = checker(format!("http://{closed}/server-stat/"), vec![sysconfig]);
        let out = run(&mut configured).await;
        assert_eq!((out.checks[0].status, out.checks[0].reason), (Status::Failed, "refused"));
        assert!(out.observations.iter().any(|o| o.name == PUSH_SERVER_UP && o.value == 0.0));
        // ... and a server without a push server is not reported at all.
        let mut absent = checker(format!("http://{closed}/server-stat/"), vec![dir.path().join("none")]);
        let out = run(&mut absent).await;
        assert!(out.checks.is_empty() && out.observations.is_empty(), "{out:?}");
    }
}
