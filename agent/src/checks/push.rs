//! The push server (Bitrix "Push & Pull", the Node.js `bx-push-server`): is it answering behind
//! BitrixVM's nginx front?
//!
//! BitrixVM's `push-server` role puts an nginx front on `listen 8895` with `location /server-stat
//! { proxy_pass http://nodejs_pub; }` and `location /nginx_status { stub_status on; }` (bitrix-env
//! `etc/ansible/roles/push-server/templates/nginx-rtc-server.conf.j2`); the push server's own
//! config is `/etc/sysconfig/push-server-multi` (`roles/push-server/defaults/main.yml`).
//!
//! - 200 from `/server-stat`: up (`push_server_up` 1, with the answer time).
//! - nginx answers but not with 200 (502/504: the Node.js processes behind it are down or
//!   stuck): `push_server` fails, reason `down`.
//! - nothing listens (connection refused) or no answer in time: reason `refused` or `timeout`.
//!
//! Severity high: chats, notifications and live feeds stop. The check runs only where a push
//! server is configured (its sysconfig file exists) or its status page answered once, so a
//! portal without one is not reported. The body of `/server-stat` is the push server's own JSON;
//! its field layout was not found in public sources, so it is not interpreted (only its status).

use std::path::PathBuf;
use std::time::Duration;

use b24watch_common::config::Problems;
use b24watch_proto::catalog::{PUSH_SERVER_RESPONSE_SECONDS, PUSH_SERVER_UP};
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
            status_url: "http://127.0.0.1:8895/server-stat".into(),
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

/// The check result for one answer (`Ok(())` for a 200, else the reason text from
/// [`super::workers::get`]). Pure.
pub fn judge(outcome: &Result<(), String>, at: UnixMs) -> Check {
    let target = "push-server";
    match outcome {
        Ok(()) => Check::ok("push_server", target, Severity::High, "The push server answers.".into(), at),
        Err(reason) if reason.starts_with("status ") => Check::failed(
            "push_server",
            target,
            Severity::High,
            "down",
            format!(
                "nginx answers /server-stat with {reason}: the push server behind it is down; chats and notifications stop."
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
        let outcome = get(&url, self.cfg.timeout).await.map(|_| ());
        let elapsed = started.elapsed();
        self.seen |= outcome.is_ok();
        if !self.seen && !self.cfg.config_files.iter().any(|f| f.exists()) {
            return;
        }
        out.observe(PUSH_SERVER_UP, Vec::new(), f64::from(u8::from(outcome.is_ok())), at);
        if outcome.is_ok() {
            out.observe(PUSH_SERVER_RESPONSE_SECONDS, Vec::new(), elapsed.as_secs_f64(), at);
        }
        out.checks.push(judge(&outcome, at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A stand-in for BitrixVM's nginx front on 8895: `/server-stat` proxied to Node.js, 502 Bad
    /// Gateway (nginx's own page) when Node.js is down.
    async fn front(node_up: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let reply = if node_up.load(std::sync::atomic::Ordering::SeqCst) {
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]".to_owned()
                } else {
                    let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
                    format!(
                        "HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{page}",
                        page.len()
                    )
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

    #[tokio::test]
    async fn up_down_and_refused_push_server() {
        let node_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let addr = front(node_up.clone()).await;
        let mut push = checker(format!("http://{addr}/server-stat"), Vec::new());
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

        // Nothing listening: a configured push server is reported as refusing connections ...
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
        let dir = tempfile::tempdir().expect("tempdir");
        let sysconfig = dir.path().join("push-server-multi");
        std::fs::write(&sysconfig, "WS_PORT=8010\n").expect("sysconfig");
        let mut configured = checker(format!("http://{closed}/server-stat"), vec![sysconfig]);
        let out = run(&mut configured).await;
        assert_eq!((out.checks[0].status, out.checks[0].reason), (Status::Failed, "refused"));
        assert!(out.observations.iter().any(|o| o.name == PUSH_SERVER_UP && o.value == 0.0));
        // ... and a server without a push server is not reported at all.
        let mut absent = checker(format!("http://{closed}/server-stat"), vec![dir.path().join("none")]);
        let out = run(&mut absent).await;
        assert!(out.checks.is_empty() && out.observations.is_empty(), "{out:?}");
    }
}
