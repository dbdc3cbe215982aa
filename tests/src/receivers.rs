//! Remote-write receivers for the tests: Debian's Prometheus (remote-write receiver, out-of-order
//! window) and VictoriaMetrics on loopback, their raw samples read back through their APIs, and an
//! HTTP stand-in that forwards to one of them but refuses chosen requests.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{ProcessGuard, free_port, http_get};

/// Starts Prometheus as a remote-write receiver (`--web.enable-remote-write-receiver`) with an
/// out-of-order window of one hour (backfilled samples are older than what it already has),
/// data in `dir/prometheus`; returns the guard and its address (write path `/api/v1/write`).
pub fn start_prometheus_receiver(dir: &Path) -> (ProcessGuard, SocketAddr) {
    let config = dir.join("prometheus-receiver.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\nstorage:\n  tsdb:\n    out_of_order_time_window: 1h\n")
        .expect("prometheus config");
    let port = free_port();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("prometheus").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver");
    let process = ProcessGuard::spawn("prometheus", cmd, &dir.join("prometheus.log"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    crate::eventually("prometheus ready", Duration::from_secs(30), || {
        http_get(addr, "/-/ready").ok().filter(|(status, _)| *status == 200)
    });
    (process, addr)
}

/// Starts VictoriaMetrics (Debian's `victoria-metrics`) on `port` with its data in `dir` (start
/// it again on the same port and directory after a stop); samples are searchable at once and
/// identical timestamps of a series are stored once. Write path `/api/v1/write`.
pub fn start_victoria_metrics(dir: &Path, port: u16) -> (ProcessGuard, SocketAddr) {
    let mut cmd = Command::new("victoria-metrics");
    cmd.arg(format!("-storageDataPath={}", dir.join("vm").display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=100y")
        .arg("-search.latencyOffset=0s")
        .arg("-search.disableCache")
        .arg("-dedup.minScrapeInterval=1ms");
    let process = ProcessGuard::spawn("victoria-metrics", cmd, &dir.join("victoria-metrics.log"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    crate::eventually("victoria-metrics ready", Duration::from_secs(30), || {
        http_get(addr, "/health").ok().filter(|(status, _)| *status == 200)
    });
    (process, addr)
}

/// Percent-encodes a query parameter.
pub fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Every raw sample `(timestamp ms, value)` of the series `selector` selects on a Prometheus-API
/// receiver (a range selector over the last `hours`), sorted and unique; empty when none.
pub fn raw_samples(addr: SocketAddr, selector: &str, hours: u32) -> BTreeSet<(i64, String)> {
    let query = encode(&format!("{selector}[{hours}h]"));
    let Ok((200, body)) = http_get(addr, &format!("/api/v1/query?query={query}")) else { return BTreeSet::new() };
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let mut out = BTreeSet::new();
    for series in json["data"]["result"].as_array().cloned().unwrap_or_default() {
        for value in series["values"].as_array().cloned().unwrap_or_default() {
            let ts = (value[0].as_f64().unwrap_or_default() * 1000.0).round() as i64;
            out.insert((ts, value[1].as_str().unwrap_or_default().to_owned()));
        }
    }
    out
}

/// Timestamps of every raw sample the selector selects, over all its series, as `(series, ts)`.
pub fn raw_points(addr: SocketAddr, selector: &str, hours: u32) -> BTreeSet<(String, i64)> {
    let query = encode(&format!("{selector}[{hours}h]"));
    let Ok((200, body)) = http_get(addr, &format!("/api/v1/query?query={query}")) else { return BTreeSet::new() };
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let mut out = BTreeSet::new();
    for series in json["data"]["result"].as_array().cloned().unwrap_or_default() {
        let metric = series["metric"].to_string();
        for value in series["values"].as_array().cloned().unwrap_or_default() {
            out.insert((metric.clone(), (value[0].as_f64().unwrap_or_default() * 1000.0).round() as i64));
        }
    }
    out
}

/// An HTTP/1.1 stand-in in front of a receiver: forwards every request, except that it answers
/// the requests whose number (from 1) is in `refuse` itself with `400` (or another status) and
/// `message`.
#[derive(Debug)]
pub struct RefusingProxy {
    /// Where the collector sends.
    pub addr: SocketAddr,
    /// Requests seen.
    pub requests: Arc<AtomicUsize>,
    /// Requests refused.
    pub refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl RefusingProxy {
    /// Starts the stand-in.
    ///
    /// # Panics
    /// When no port can be bound.
    pub fn start(upstream: SocketAddr, refuse: Vec<usize>, message: &'static str) -> RefusingProxy {
        RefusingProxy::start_answering(upstream, refuse, "400 Bad Request", message)
    }

    /// Like [`RefusingProxy::start`], answering the chosen requests with `status` (e.g.
    /// `"503 Service Unavailable"`) instead of 400.
    ///
    /// # Panics
    /// When no port can be bound.
    pub fn start_answering(
        upstream: SocketAddr,
        refuse: Vec<usize>,
        status: &'static str,
        message: &'static str,
    ) -> RefusingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let refuse = Arc::new(Mutex::new(refuse));
        {
            let (requests, refused, stop) = (Arc::clone(&requests), Arc::clone(&refused), Arc::clone(&stop));
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let (requests, refused, refuse) =
                        (Arc::clone(&requests), Arc::clone(&refused), Arc::clone(&refuse));
                    std::thread::spawn(move || {
                        let _ = serve(client, upstream, &requests, &refused, &refuse, status, message);
                    });
                }
            });
        }
        RefusingProxy { addr, requests, refused, stop }
    }
}

impl Drop for RefusingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads one request (head and `Content-Length` body); `None` at the end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<(Vec<String>, Vec<u8>)>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let length = head
        .iter()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>()))
        .transpose()
        .map_err(std::io::Error::other)?
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    requests: &AtomicUsize,
    refused: &AtomicUsize,
    refuse: &Mutex<Vec<usize>>,
    status: &str,
    message: &str,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = client.try_clone()?;
    let mut reader = BufReader::new(client);
    while let Some((head, body)) = read_request(&mut reader)? {
        let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
        if refuse.lock().expect("refuse").contains(&n) {
            refused.fetch_add(1, Ordering::SeqCst);
            write!(
                writer,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{message}",
                message.len()
            )?;
            continue;
        }
        let mut up = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))?;
        up.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut out = Vec::new();
        for line in &head {
            if !line.to_ascii_lowercase().starts_with("connection:") {
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&body);
        up.write_all(&out)?;
        let mut up = BufReader::new(up);
        let Some((status_head, response)) = read_request(&mut up)? else { return Ok(()) };
        let mut answer = Vec::new();
        for line in &status_head {
            let lower = line.to_ascii_lowercase();
            if !lower.starts_with("connection:") && !lower.starts_with("transfer-encoding:") {
                answer.extend_from_slice(line.as_bytes());
                answer.extend_from_slice(b"\r\n");
            }
        }
        answer.extend_from_slice(b"\r\n");
        answer.extend_from_slice(&response);
        writer.write_all(&answer)?;
    }
    Ok(())
}

/// One query of a shipped Grafana dashboard: a panel's target, or the metric of a
/// `label_values` template variable.
#[derive(Debug, Clone)]
pub struct DashboardQuery {
    /// Dashboard file name.
    pub file: String,
    /// Panel title (`$name` for a template variable).
    pub panel: String,
    /// The expression as written.
    pub expr: String,
}

/// Every query of the shipped dashboards. Checks what every dashboard needs: a `uid`, and a
/// `$host` variable (the fleet overview aside).
///
/// # Panics
/// On an unreadable dashboard or a missing `uid` or `$host`.
pub fn dashboard_queries() -> Vec<DashboardQuery> {
    let mut out = Vec::new();
    let mut paths: Vec<std::path::PathBuf> =
        std::fs::read_dir(crate::workspace_root().join("deploy/grafana/dashboards"))
            .expect("dashboards dir")
            .map(|e| e.expect("entry").path())
            .collect();
    paths.sort();
    for path in paths {
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read dashboard")).expect("dashboard JSON");
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()), "{file}: uid");
        let variables = dashboard["templating"]["list"].as_array().expect("templating");
        if file != "b24watch-fleet.json" {
            assert!(variables.iter().any(|v| v["name"] == "host"), "{file} has no $host variable");
        }
        for panel in dashboard["panels"].as_array().expect("panels") {
            let title = panel["title"].as_str().unwrap_or_default();
            for target in panel["targets"].as_array().cloned().unwrap_or_default() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(DashboardQuery { file: file.clone(), panel: title.to_owned(), expr: expr.to_owned() });
                }
            }
        }
        for var in variables {
            if let Some(q) = var["query"]["query"].as_str() {
                let inner = q.strip_prefix("label_values(").and_then(|q| q.split(',').next()).unwrap_or(q);
                let panel = format!("${}", var["name"].as_str().unwrap_or_default());
                out.push(DashboardQuery { file: file.clone(), panel, expr: inner.to_owned() });
            }
        }
    }
    out
}

/// The series names b24watch exposes: the agent catalog's and every family on the collector's
/// `/metrics` (`exposition`).
pub fn known_series(exposition: &str) -> BTreeSet<String> {
    let mut known: BTreeSet<String> =
        b24watch_proto::catalog::SERIES.iter().map(|d| format!("b24watch_{}", d.name)).collect();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            known.insert(rest.split_whitespace().next().unwrap_or_default().to_owned());
        }
    }
    known
}

/// Runs one dashboard query as Grafana would (`$host` set to `host`, `$__rate_interval` 1m) at
/// the Prometheus-API server `addr`: it must succeed and name only series in `known`. Returns
/// its result (empty: no data).
///
/// # Panics
/// On a failing query or an unknown series name.
pub fn run_dashboard_query(
    addr: SocketAddr,
    host: &str,
    known: &BTreeSet<String>,
    q: &DashboardQuery,
) -> Vec<serde_json::Value> {
    let (file, expr) = (&q.file, &q.expr);
    for name in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("b24watch_")) {
        assert!(known.contains(name), "{file}: {name} is not a series b24watch exposes ({expr})");
    }
    let query = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("$host", host);
    let (status, body) = http_get(addr, &format!("/api/v1/query?query={}", encode(&query))).expect("query");
    assert_eq!(status, 200, "{file}: {query}: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("query JSON");
    assert_eq!(json["status"], "success", "{file}: {query}: {body}");
    json["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Runs every query of the shipped Grafana dashboards against the Prometheus-API server at
/// `addr` (`$host` set to `host`): each must succeed and name only series in `known`; returns
/// how many ran.
///
/// # Panics
/// On a failing query or an unknown series name.
pub fn check_dashboard_queries(addr: SocketAddr, host: &str, known: &BTreeSet<String>) -> usize {
    let queries = dashboard_queries();
    for q in &queries {
        run_dashboard_query(addr, host, known, q);
    }
    queries.len()
}
