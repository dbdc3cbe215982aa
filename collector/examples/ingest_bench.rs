//! Benchmark: end-to-end ingest (gRPC → committed → acked) of N simulated agents, disk use per sample, and VictoriaMetrics on the same samples.
//!
//! Starts the release collector binary on loopback in a temp directory, enrols N agents (default
//! 200) and lets each stream time-compressed history over its own gRPC stream (16 batches in
//! flight, as the agent does): per agent `SERIES` series of a realistic mix (host gauges with two
//! decimals, byte and request counters with occasional resets, near-constant values such as
//! disk sizes and `mysql_up`, small integers such as process counts), `POINTS` points per series
//! per batch at 10 s. Prints, in one run:
//!
//! `samples_per_s=` (stored and acked), `ack_p50_ms=`, `ack_p99_ms=`, `bytes_per_sample=`
//! (database after the collector's clean stop, which seals the head, / samples stored),
//! `disk_write_bytes_per_sample=` (`write_bytes` of `/proc/PID/io` of the collector during the
//! run), `collector_rss_mib=` (peak), `render_us_per_series=` (one `/metrics` render of 1,000
//! hosts × 100 series), and, when `victoria-metrics` is installed, `vm_samples_per_s=` and
//! `vm_bytes_per_sample=` for the same samples sent through its `/api/v1/import` and force-merged.
//!
//!   make bench-ingest            # AGENTS=200 SERIES=300 POINTS=6 BATCHES=30
//!   AGENTS=1000 BATCHES=3 make bench-ingest
//!   AGENTS=1 POINTS=360 BATCHES=720 make bench-ingest   # one host, a time-compressed month
//!   (KEEP=1 keeps the database and prints where; NO_VM=1 skips VictoriaMetrics)

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use b24watch_proto::v1::{Batch, Label, Series};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Deterministic pseudo-random numbers (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One simulated series: name, kind, labels and its value generator state.
struct SimSeries {
    name: String,
    kind: i32,
    labels: Vec<Label>,
    shape: u8,
    value: f64,
}

fn series_mix(n: usize, rng: &mut Rng) -> Vec<SimSeries> {
    (0..n)
        .map(|i| {
            let shape = (i % 10) as u8;
            let (name, kind) = match shape {
                0..=3 => ("node_load_or_ratio", 1),
                4..=6 => ("node_bytes_total", 2),
                7 | 8 => ("node_size_bytes", 1),
                _ => ("mysql_threads", 1),
            };
            SimSeries {
                name: name.into(),
                kind,
                labels: vec![Label { name: "i".into(), value: i.to_string() }],
                shape,
                value: match shape {
                    7 | 8 => (rng.below(1000) * 1_073_741_824) as f64,
                    _ => rng.below(100) as f64,
                },
            }
        })
        .collect()
}

fn step(s: &mut SimSeries, rng: &mut Rng) -> f64 {
    s.value = match s.shape {
        0..=3 => ((s.value * 100.0 + rng.below(41) as f64 - 20.0).max(0.0)).round() / 100.0,
        4..=6 => {
            if rng.below(20_000) == 0 {
                0.0
            } else {
                s.value + (rng.below(4096) * 512) as f64
            }
        }
        7 | 8 => {
            if rng.below(200) == 0 {
                s.value + 4096.0
            } else {
                s.value
            }
        }
        _ => (s.value + rng.below(3) as f64 - 1.0).max(0.0),
    };
    s.value
}

/// Everything one agent sends: its batches, pre-built so building is not measured.
fn agent_batches(agent: &str, seed: u64, series: usize, points: usize, batches: usize, t0: i64) -> Vec<Batch> {
    let mut rng = Rng(seed | 1);
    let mut mix = series_mix(series, &mut rng);
    let mut t = t0;
    (1..=batches as u64)
        .map(|seq| {
            let ts: Vec<i64> = (0..points)
                .map(|_| {
                    t += 10_000;
                    t + rng.below(5) as i64
                })
                .collect();
            Batch {
                spool_epoch: 1,
                seq,
                agent_id: agent.into(),
                created_unix_ms: t,
                agent_version: "bench".into(),
                series: mix
                    .iter_mut()
                    .map(|s| {
                        let values = ts.iter().map(|_| step(s, &mut rng)).collect();
                        Series {
                            name: s.name.clone(),
                            kind: s.kind,
                            labels: s.labels.clone(),
                            timestamps_unix_ms: ts.clone(),
                            values,
                        }
                    })
                    .collect(),
                ..Batch::default()
            }
        })
        .collect()
}

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.trim_end_matches(':').parse().ok())
        .unwrap_or(0)
}

fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn wait_http(port: u16, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if http(port, "GET", path, b"").is_some_and(|(status, _)| status == 200 || status == 204) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("127.0.0.1:{port}{path} did not answer");
}

/// A minimal HTTP/1.0 client (status, body).
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let head = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some((status, out[split..].to_vec()))
}

fn collector_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("b24watch-collector")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
}

async fn run_agent(url: String, token: String, batches: Vec<Batch>) -> (u64, Vec<f64>) {
    let channel = tonic::transport::Endpoint::from_shared(url).expect("url").connect().await.expect("connect");
    let mut client = b24watch_proto::v1::ingest_client::IngestClient::new(channel).max_encoding_message_size(64 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(16);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    let total = batches.len();
    let sent_at = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let window = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let sender = {
        let (sent_at, window) = (std::sync::Arc::clone(&sent_at), std::sync::Arc::clone(&window));
        tokio::spawn(async move {
            for batch in batches {
                window.acquire().await.expect("open").forget();
                sent_at.lock().expect("lock").insert(batch.seq, Instant::now());
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
            // Keep the stream open until every ack arrived.
            tx
        })
    };
    let mut acks = client.stream(request).await.expect("stream").into_inner();
    let (mut stored, mut latencies) = (0u64, Vec::with_capacity(total));
    for _ in 0..total {
        let ack = acks.message().await.expect("ack").expect("stream ended early");
        let at = sent_at.lock().expect("lock").remove(&ack.seq).expect("sent");
        latencies.push(at.elapsed().as_secs_f64() * 1000.0);
        stored += ack.stored_points;
        window.add_permits(1);
    }
    drop(sender.await);
    (stored, latencies)
}

fn render_us_per_series() -> f64 {
    use b24watch_collector::live::Live;
    use b24watch_collector::store::SeriesIn;
    let live = Live::default();
    let now = 1_795_000_000_000;
    for h in 0..1000 {
        let series: Vec<SeriesIn> = (0..100)
            .map(|i| SeriesIn {
                name: format!("node_metric_{}", i % 20),
                labels: format!("device=\"d{i}\""),
                kind: 1,
                points: vec![(now, f64::from(i) * 1.5)],
                index: i,
                telemetry: false,
            })
            .collect();
        live.observe(&format!("host-{h:04}"), now, &series);
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let mut out = String::new();
        let start = Instant::now();
        live.render(now, 60_000, "", &mut out);
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / 100_000.0);
        std::hint::black_box(&out);
    }
    best
}

/// VictoriaMetrics next to us: the same samples through `/api/v1/import`, then a force merge.
fn victoria(all: &[Vec<Batch>], samples: u64) {
    let Some(binary) =
        ["/usr/bin/victoria-metrics", "/usr/bin/victoria-metrics-prod"].iter().map(PathBuf::from).find(|p| p.exists())
    else {
        println!("vm_status=not_installed (apt-get install victoria-metrics to measure it in the same run)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut vm: Child = Command::new(binary)
        .arg(format!("-storageDataPath={}", dir.path().display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=100y")
        .arg("-search.disableCache")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start victoria-metrics");
    wait_http(port, "/health");
    // JSON lines: one line per series per batch; agents in parallel like ours.
    let bodies: Vec<Vec<Vec<u8>>> = all
        .iter()
        .map(|batches| {
            batches
                .iter()
                .map(|b| {
                    let mut body = Vec::new();
                    for s in &b.series {
                        let line = serde_json::json!({
                            "metric": { "__name__": s.name, "host": b.agent_id, "i": s.labels[0].value },
                            "values": s.values, "timestamps": s.timestamps_unix_ms,
                        });
                        body.extend_from_slice(line.to_string().as_bytes());
                        body.push(b'\n');
                    }
                    body
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for chunk in bodies.chunks(bodies.len().div_ceil(16).max(1)) {
            scope.spawn(move || {
                for agent in chunk {
                    for body in agent {
                        let (status, _) = http(port, "POST", "/api/v1/import", body).expect("import");
                        assert_eq!(status, 204, "import refused");
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    // Flush in-memory parts, then merge; give the merge time to finish.
    http(port, "GET", "/internal/force_flush", b"");
    http(port, "GET", "/internal/force_merge", b"");
    let mut last = 0;
    for _ in 0..60 {
        std::thread::sleep(Duration::from_secs(2));
        let now = dir_bytes(dir.path());
        if now == last {
            break;
        }
        last = now;
    }
    println!("vm_samples_per_s={:.0}", samples as f64 / elapsed);
    println!("vm_bytes_per_sample={:.3}", dir_bytes(dir.path()) as f64 / samples as f64);
    let _ = vm.kill();
    let _ = vm.wait();
}

fn main() {
    let agents = env_num("AGENTS", 200) as usize;
    let series = env_num("SERIES", 300) as usize;
    let points = env_num("POINTS", 6) as usize;
    let batches = env_num("BATCHES", 30) as usize;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let admin = b24watch_collector::store::admin::Admin::open(&data).expect("database");
    let tokens: Vec<String> =
        (0..agents).map(|a| admin.enroll(&format!("bench-{a:04}"), false, 0).expect("enroll")).collect();
    drop(admin);
    // Samples end an hour ago: inside the collector's default past bound ([limits] max_past_secs).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let t0 = now - (batches * points) as i64 * 10_000 - 3_600_000;
    let all: Vec<Vec<Batch>> = (0..agents)
        .map(|a| agent_batches(&format!("bench-{a:04}"), 0x9e37_79b9 + a as u64, series, points, batches, t0))
        .collect();
    let samples = (agents * series * points * batches) as u64;
    let (grpc, http_port) = (free_port(), free_port());
    let config = dir.path().join("collector.toml");
    std::fs::write(&config, "[limits]\nmax_message_bytes = 67108864\n# a time-compressed month of history is older than the default bound\nmax_past_secs = 31536000\n").expect("config");
    let mut collector = Command::new(collector_binary())
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--grpc-listen")
        .arg(format!("127.0.0.1:{grpc}"))
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{http_port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the collector (build it: cargo build --release -p b24watch-collector)");
    let pid = collector.id();
    wait_http(http_port, "/-/ready");
    let io_before = proc_field(pid, "io", "write_bytes:");
    let url = format!("http://127.0.0.1:{grpc}");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let start = Instant::now();
    let results: Vec<(u64, Vec<f64>)> = runtime.block_on(async {
        let tasks: Vec<_> = all
            .iter()
            .zip(&tokens)
            .map(|(batches, token)| tokio::spawn(run_agent(url.clone(), token.clone(), batches.clone())))
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.expect("agent task"));
        }
        out
    });
    let elapsed = start.elapsed().as_secs_f64();
    let written = proc_field(pid, "io", "write_bytes:").saturating_sub(io_before);
    let rss_kib = proc_field(pid, "status", "VmHWM:");
    let stored: u64 = results.iter().map(|r| r.0).sum();
    let mut latencies: Vec<f64> = results.into_iter().flat_map(|r| r.1).collect();
    latencies.sort_by(f64::total_cmp);
    // A clean stop seals the head into blocks; then the file is what history costs.
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let status = collector.wait().expect("collector exit");
    assert!(status.success(), "collector exited with {status}");
    let conn = b24watch_collector::store::open_connection(&data).expect("reopen");
    let in_blocks: i64 = conn.query_row("SELECT COALESCE(SUM(n), 0) FROM sample_block", [], |r| r.get(0)).expect("n");
    let (block_bytes, minute_bytes, hour_bytes): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT COALESCE(SUM(length(data)), 0) FROM sample_block),
                    (SELECT COALESCE(SUM(length(data)), 0) FROM rollup WHERE tier = 1),
                    (SELECT COALESCE(SUM(length(data)), 0) FROM rollup WHERE tier = 2)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("sizes");
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").expect("checkpoint");
    let (page_count, freelist, page_size): (i64, i64, i64) = conn
        .query_row("SELECT * FROM pragma_page_count, pragma_freelist_count, pragma_page_size", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("pages");
    drop(conn);
    let db_bytes = dir_bytes(&data);
    println!(
        "agents={agents} series_per_agent={series} points_per_batch_per_series={points} batches_per_agent={batches}"
    );
    println!("samples_sent={samples} samples_acked={stored} samples_in_blocks={in_blocks} seconds={elapsed:.1}");
    println!("samples_per_s={:.0}", stored as f64 / elapsed);
    println!("ack_p50_ms={:.1}", percentile(&latencies, 0.5));
    println!("ack_p99_ms={:.1}", percentile(&latencies, 0.99));
    println!(
        "bytes_per_sample={:.3} (file {db_bytes} B, used pages {} B)",
        db_bytes as f64 / in_blocks.max(1) as f64,
        (page_count - freelist) * page_size
    );
    let per = |bytes: i64| bytes as f64 / in_blocks.max(1) as f64;
    println!(
        "payload_bytes_per_sample: raw_blocks={:.3} minute_rollups={:.3} hour_rollups={:.3}",
        per(block_bytes),
        per(minute_bytes),
        per(hour_bytes)
    );
    println!("disk_write_bytes_per_sample={:.2}", written as f64 / stored.max(1) as f64);
    println!("collector_rss_mib={:.1}", rss_kib as f64 / 1024.0);
    println!("render_us_per_series={:.3}", render_us_per_series());
    if std::env::var_os("KEEP").is_some() {
        println!("kept={}", dir.keep().display());
    }
    if std::env::var_os("NO_VM").is_none() {
        victoria(&all, samples);
    }
}
