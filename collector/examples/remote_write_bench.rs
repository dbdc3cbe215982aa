//! Benchmark: remote write to a local VictoriaMetrics next to the store's ingest rate, on the same machine.
//!
//! Opens a store in a temp directory, starts remote write to a `victoria-metrics` it starts on
//! loopback, then commits `AGENTS` × `BATCHES` batches of `SERIES` series × `POINTS` points (10 s
//! apart, as agents send them) through `Store::ingest` from one task per agent, while remote write
//! sends concurrently. Prints:
//!
//! `ingest_samples_per_s=` (committed by the store's writer: the collector's ingest ceiling, gRPC
//! decoding left out), `remote_write_samples_per_s=` (samples accepted by VictoriaMetrics / time
//! from the first commit until the last sample was accepted), `remote_write_lag_s=` (how long after
//! the last commit the last sample was accepted), `vm_samples=` (samples VictoriaMetrics reports).
//!
//!   make bench-remote-write          # AGENTS=20 BATCHES=50 SERIES=300 POINTS=6
//!   MAX_SAMPLES_PER_SEND=20000 make bench-remote-write

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use b24watch_collector::remote_write::{self, RawRemoteWrite};
use b24watch_collector::store::{IngestBatch, Retention, SeriesIn, Store};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

/// Kills VictoriaMetrics when the bench ends.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_vm(dir: &Path) -> (Vm, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let child = Command::new("victoria-metrics")
        .arg(format!("-storageDataPath={}", dir.join("vm").display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=100y")
        .arg("-search.latencyOffset=0s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("victoria-metrics not found: apt-get install victoria-metrics (scripts/install-test-deps.sh)");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let vm = Vm(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(addr, "/health").is_none() {
        assert!(Instant::now() < deadline, "victoria-metrics did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (vm, addr)
}

fn batch(agent: usize, seq: u64, series: usize, points: usize, t0: i64) -> IngestBatch {
    let start = t0 + seq as i64 * points as i64 * 10_000;
    let series = (0..series)
        .map(|i| {
            let points = (0..points)
                .map(|k| {
                    let ts = start + k as i64 * 10_000;
                    let v = if i % 3 == 0 {
                        (seq as f64 * 6.0 + k as f64) * 4096.0
                    } else {
                        ((i + k) % 100) as f64 / 100.0
                    };
                    (ts, v)
                })
                .collect();
            let (name, kind) = if i % 3 == 0 { ("bench_bytes_total", 2) } else { ("bench_ratio", 1) };
            SeriesIn::new(i as u32, name, format!("i=\"{i}\""), kind, points)
        })
        .collect();
    IngestBatch::direct(format!("bench-{agent:04}"), seq, start, series)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let agents = env_num("AGENTS", 20) as usize;
    let batches = env_num("BATCHES", 50);
    let series = env_num("SERIES", 300) as usize;
    let points = env_num("POINTS", 6) as usize;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_vm, vm) = start_vm(dir.path());
    let data = dir.path().join("collector");
    let (store, _reader, writer) =
        Store::open(&data, 1_000_000, None, 60_000, Retention::default()).expect("open store");
    let raw = RawRemoteWrite {
        name: "vm".into(),
        url: format!("http://{vm}/api/v1/write"),
        max_samples_per_send: env_num("MAX_SAMPLES_PER_SEND", 5000),
        poll_interval_ms: 50,
        ..RawRemoteWrite::default()
    };
    let mut problems = b24watch_common::config::Problems::new(Path::new("<bench>"));
    let targets = remote_write::validate(&[raw], &mut problems);
    let targets = problems.finish(targets).expect("valid target");
    let metrics = Arc::new(b24watch_collector::metrics::Metrics::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    remote_write::start(&targets, &data, &metrics, None, &shutdown, &tracker).expect("remote write");
    let total = (agents as u64) * batches * (series * points) as u64;
    let t0 = b24watch_collector::now_ms() - (batches as i64 * points as i64 * 10_000) - 3_600_000;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for agent in 0..agents {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 1..=batches {
                loop {
                    match store.ingest(batch(agent, seq, series, points, t0)).await {
                        Ok(_) => break,
                        Err(b24watch_collector::store::Error::Busy) => {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(err) => panic!("ingest: {err}"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("agent task");
    }
    let ingest_s = started.elapsed().as_secs_f64();
    let stats = Arc::clone(&metrics.remote_write()[0]);
    let deadline = Instant::now() + Duration::from_secs(600);
    while stats.sent.load(Ordering::Relaxed) < total {
        assert!(
            Instant::now() < deadline,
            "remote write did not finish: {} of {total}",
            stats.sent.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rw_s = started.elapsed().as_secs_f64();
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    drop(store);
    tokio::task::spawn_blocking(move || writer.join()).await.expect("writer");
    // VictoriaMetrics makes what it accepted searchable after its in-memory buffers are flushed:
    // flush, then count (again for a few seconds while the count still grows).
    let count = || {
        let _ = http_get(vm, "/internal/force_flush");
        http_get(vm, "/api/v1/query?query=sum(count_over_time(%7B__name__%3D~%22b24watch_bench.*%22%7D%5B100d%5D))")
            .and_then(|body| body.split("\"value\":[").nth(1).and_then(|v| v.split('"').nth(1)).map(str::to_owned))
            .unwrap_or_else(|| "unknown".into())
    };
    let mut vm_samples = count();
    for _ in 0..20 {
        if vm_samples == total.to_string() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        vm_samples = count();
    }
    let failed: u64 = stats.failed.iter().map(|f| f.load(Ordering::Relaxed)).sum();
    println!(
        "agents={agents} batches={batches} series={series} points={points} samples={total} max_samples_per_send={}",
        env_num("MAX_SAMPLES_PER_SEND", 5000)
    );
    println!("ingest_samples_per_s={:.0}", total as f64 / ingest_s);
    println!("remote_write_samples_per_s={:.0}", total as f64 / rw_s);
    println!("remote_write_lag_s={:.2}", rw_s - ingest_s);
    println!("remote_write_failed_samples={failed}");
    println!("vm_samples={vm_samples}");
}
