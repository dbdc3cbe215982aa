//! Benchmark: end-to-end ingest (gRPC → committed → acked) of N simulated agents, disk use per sample, and VictoriaMetrics on the same samples.
//!
//! Starts the release collector binary on loopback in a temp directory, connects `CONNECTED`
//! agents (default 1,000: each opens its stream and sends one batch, then stays connected) and
//! lets `AGENTS` of them (default 200) stream time-compressed history over their own gRPC stream
//! (16 batches in flight, as the agent does): `SERIES` series per agent, `POINTS` points per series
//! per batch at the agent's default 10 s tick, `BATCHES` batches (default 420: seven hours,
//! aligned; 151.2 M samples), in three phases:
//! 1. warm-up: the first `WARMUP_BATCHES` (default one hour, 60 at 6 points; none in runs shorter
//!    than three hours, whose last sixth is paced) as fast as the collector acks them, not
//!    measured: the store then holds an hour, as a collector up for an hour does, and every
//!    measured hour has a closed hour to seal (a fresh store's first hour has none and is faster:
//!    run with `WARMUP_BATCHES=0` to see it);
//! 2. saturated: all but the last `PACED_BATCHES` (default one hour), as fast as the collector
//!    acks them (108 M samples by default, so the flatness figure reaches the hundredth million
//!    before the agents near their end);
//! 3. paced: the last ones at `PACE_PERCENT` (default 70) % of the measured saturated rate, for
//!    the ack latency below saturation (this hour's points close the saturated phase's last hour).
//!
//! ## Series mix
//! The agent's own series of a Bitrix host with 4 disks, 6 mounts, MySQL, 2 sites and 5 logs, in
//! proportion ([`MIX`]): 24 % constant (sizes, totals, `*_up`, `service_up`, TLS expiry), 5 % CPU
//! shares at full double precision (`jiffies / total`, as `node_cpu_*_ratio`) and 3 % CPU modes at
//! zero (nice, irq, steal), 3 % load averages (two decimals), 8 % page-multiple byte gauges that
//! drift (free space, available memory, RSS), 12 % small integers that rarely change (inodes
//! free, Bitrix agents, mail queue, threads), counters: 7 % sector byte counters (idle a third of
//! the ticks), 9 % event counters (log lines, MySQL questions), 20 % rarely moving counters (log
//! errors, exceptions, check failures), 4 % millisecond counters (io time, CPU seconds), 3 %
//! measured durations in nanoseconds (probe, MySQL connect) and 2 % minute timestamps (cron last
//! run). All series of a tick share its timestamp, read from the wall clock right after the
//! tick: the lag behind the 10 s grid stays put for many ticks and moves by a millisecond now and
//! then (clock slew), with an occasional spike of a few milliseconds (a busy host). Both stores
//! get exactly these samples.
//!
//! Prints, in one run:
//!
//! `samples_per_s=` (stored and acked, saturated), `ack_p50_ms=`, `ack_p99_ms=` (saturated and
//! `_below_saturation`), the ingest rate of each million and of each ten million samples acked
//! in the saturated phase and `ingest_flatness_pct=` (the largest deviation of a ten million's
//! rate from their mean, over the ten millions acked while every agent was still sending; from
//! the first ten million too), with what each ten million's time went to (collector and bench
//! CPU, the store writer's steps, the head, the WAL), `bytes_per_sample=`
//! (pages in use after the collector's clean stop, which seals the head, and a WAL checkpoint,
//! / samples in blocks; the file size too, whose free pages are reused by later writes),
//! `disk_write_bytes_per_sample=` (`write_bytes` of `/proc/PID/io` of the collector during the
//! run), `collector_rss_mib=` (peak, with `CONNECTED` agents connected), `max_step_ms_*=` (the
//! longest run of each store writer step: seal, rollup, retention, conversion, commit, from
//! `/metrics`), `head_peak_points=` and `head_peak_mib=` (the most unsealed points the
//! collector held in memory, from its gauges), `render_us_per_series=` (one `/metrics` render of 1,000 hosts × 100 series), and,
//! when `victoria-metrics` is installed, `vm_samples_per_s=` and `vm_bytes_per_sample=` for the
//! same samples sent through its `/api/v1/import` and force-merged.
//!
//!   make bench-ingest            # AGENTS=200 SERIES=300 POINTS=6 BATCHES=420 CONNECTED=1000
//!   BATCHES=60 WARMUP_BATCHES=0 NO_VM=1 make bench-ingest   # a quicker run: one hour
//!   BATCHES=240 PACED_BATCHES=60 NO_VM=1 make bench-ingest  # one hour warm-up, two saturated, one paced
//!   AGENTS=1 POINTS=360 BATCHES=720 WARMUP_BATCHES=0 make bench-ingest  # one host, a time-compressed month
//!   (KEEP=1 keeps the database and prints where; NO_VM=1 skips VictoriaMetrics; NO_PACED=1
//!   sends everything saturated)

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use b24watch_proto::v1::ingest_client::IngestClient;
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
    /// Uniform in `[-n, n]`.
    fn signed(&mut self, n: u64) -> i64 {
        self.below(2 * n + 1) as i64 - n as i64
    }
}

/// How a simulated series moves from one tick to the next (modelled on the agent's samplers).
#[derive(Clone, Copy)]
enum Shape {
    /// Never changes in the run: sizes, totals, core count, `*_up`, `service_up`, TLS expiry.
    Constant,
    /// A share of CPU jiffies (`d / total`, full double precision), as `node_cpu_*_ratio`.
    JiffyRatio,
    /// A CPU mode that stays at zero on most hosts (nice, irq, steal).
    ZeroRatio,
    /// `/proc/loadavg` (two decimals) moving by up to this many hundredths a tick: load1, load5, load15.
    Load(i64),
    /// Bytes in 4 KiB pages that drift slowly: available memory, agent RSS, filesystem free space.
    PageDrift,
    /// A small integer that rarely changes: threads connected, Bitrix agents overdue, mail queue.
    SmallInt,
    /// A byte counter in 512-byte sectors, idle a third of the ticks (disk read/written bytes).
    SectorCounter,
    /// A counter of events that grows by a few per tick (log lines, MySQL questions).
    EventCounter,
    /// A counter that rarely moves (log errors, Bitrix exceptions, check failures).
    RareCounter,
    /// Seconds with three decimals that grow (disk io time, agent CPU seconds).
    MillisCounter,
    /// A measured duration in seconds at full precision (probe, MySQL connect).
    Duration,
    /// A Unix time in seconds that jumps once a minute (`bitrix_cron_last_run_timestamp_seconds`).
    MinuteStamp,
}

/// Share of one host's series, per shape, in hundredths (sums to 100): the agent's series of a
/// Bitrix host with 4 disks, 6 mounts, MySQL, 2 sites, 5 logs and its own telemetry.
const MIX: [(&str, i32, Shape, u32); 14] = [
    ("node_filesystem_size_bytes", 1, Shape::Constant, 24),
    ("node_cpu_mode_ratio", 1, Shape::JiffyRatio, 5),
    ("node_cpu_mode_ratio", 1, Shape::ZeroRatio, 3),
    ("node_load1", 1, Shape::Load(10), 1),
    ("node_load5", 1, Shape::Load(3), 1),
    ("node_load15", 1, Shape::Load(1), 1),
    ("node_filesystem_avail_bytes", 1, Shape::PageDrift, 8),
    ("bitrix_agents_overdue", 1, Shape::SmallInt, 12),
    ("node_disk_read_bytes_total", 2, Shape::SectorCounter, 7),
    ("log_lines_total", 2, Shape::EventCounter, 9),
    ("log_errors_total", 2, Shape::RareCounter, 20),
    ("node_disk_io_time_seconds_total", 2, Shape::MillisCounter, 4),
    ("probe_duration_seconds", 1, Shape::Duration, 3),
    ("bitrix_cron_last_run_timestamp_seconds", 1, Shape::MinuteStamp, 2),
];

/// One simulated series: name, kind, labels and its value generator state.
struct SimSeries {
    name: &'static str,
    kind: i32,
    labels: Vec<Label>,
    shape: Shape,
    /// Current value in the shape's integer unit (jiffies, hundredths, bytes, milliseconds, ...).
    units: i64,
}

/// `n` series in the proportions of [`MIX`], grouped by shape.
fn series_mix(n: usize, rng: &mut Rng) -> Vec<SimSeries> {
    let mut slots: Vec<usize> = Vec::with_capacity(n);
    for (idx, (.., weight)) in MIX.iter().enumerate() {
        slots.extend(std::iter::repeat_n(idx, (n * *weight as usize).div_ceil(100)));
    }
    slots.truncate(n);
    while slots.len() < n {
        slots.push(0);
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, idx)| {
            let (name, kind, shape, _) = MIX[idx];
            let units = match shape {
                Shape::Constant => (rng.below(2000) as i64 + 1) * 1_073_741_824,
                Shape::JiffyRatio => rng.below(4000) as i64,
                Shape::ZeroRatio => 0,
                Shape::Load(_) => rng.below(400) as i64,
                Shape::PageDrift => (rng.below(1 << 20) as i64 + (1 << 16)) * 4096,
                Shape::SmallInt => rng.below(12) as i64,
                Shape::SectorCounter | Shape::EventCounter | Shape::RareCounter | Shape::MillisCounter => {
                    rng.below(1 << 30) as i64
                }
                Shape::Duration => 2_000_000,
                Shape::MinuteStamp => 0,
            };
            SimSeries { name, kind, labels: vec![Label { name: "i".into(), value: i.to_string() }], shape, units }
        })
        .collect()
}

/// The next value of a series at time `t` (ms).
fn step(s: &mut SimSeries, t: i64, rng: &mut Rng) -> f64 {
    match s.shape {
        Shape::Constant => s.units as f64,
        Shape::ZeroRatio => 0.0,
        Shape::JiffyRatio => {
            // 4 cores at USER_HZ 100: about 4,000 jiffies a tick, this mode's share drifting.
            let total = 4000 + rng.signed(3);
            s.units = (s.units + rng.signed(40)).clamp(0, 4000);
            s.units.min(total) as f64 / total as f64
        }
        Shape::Load(cents) => {
            s.units = (s.units + rng.signed(cents as u64)).max(0);
            s.units as f64 / 100.0
        }
        Shape::PageDrift => {
            if rng.below(2) == 0 {
                s.units += rng.signed(64) * 4096;
            }
            s.units as f64
        }
        Shape::SmallInt => {
            if rng.below(30) == 0 {
                s.units = (s.units + rng.signed(1)).max(0);
            }
            s.units as f64
        }
        Shape::SectorCounter => {
            if rng.below(3) != 0 {
                s.units += rng.below(2000) as i64 * 512;
            }
            s.units as f64
        }
        Shape::EventCounter => {
            s.units += rng.below(20) as i64;
            s.units as f64
        }
        Shape::RareCounter => {
            if rng.below(500) == 0 {
                s.units += 1 + rng.below(3) as i64;
            }
            s.units as f64
        }
        Shape::MillisCounter => {
            s.units += rng.below(200) as i64;
            s.units as f64 / 1000.0
        }
        Shape::Duration => {
            // `Duration::as_secs_f64` of a measured time: nanoseconds.
            (s.units + rng.below(3_000_000) as i64) as f64 / 1e9
        }
        Shape::MinuteStamp => (t / 60_000 * 60) as f64,
    }
}

/// Everything one agent sends: its batches, pre-built so building is not measured. All series of
/// a tick share its timestamp: the 10 s grid plus a lag that moves by a millisecond in one tick
/// of ten, and a spike of 1-5 ms in one tick of thirty.
fn agent_batches(agent: &str, seed: u64, series: usize, points: usize, batches: usize, t0: i64) -> Vec<Batch> {
    let mut rng = Rng(seed | 1);
    let mut mix = series_mix(series, &mut rng);
    let (mut tick, mut lag) = (t0, rng.below(3) as i64);
    (1..=batches as u64)
        .map(|seq| {
            let ts: Vec<i64> = (0..points)
                .map(|_| {
                    tick += 10_000;
                    if rng.below(10) == 0 {
                        lag = (lag + rng.signed(1)).clamp(0, 3);
                    }
                    let spike = if rng.below(30) == 0 { 1 + rng.below(5) as i64 } else { 0 };
                    tick + lag + spike
                })
                .collect();
            Batch {
                spool_epoch: 1,
                seq,
                agent_id: agent.into(),
                created_unix_ms: *ts.last().expect("points"),
                agent_version: "bench".into(),
                series: mix
                    .iter_mut()
                    .map(|s| {
                        let values = ts.iter().map(|&t| step(s, t, &mut rng)).collect();
                        Series {
                            name: s.name.into(),
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

/// Samples acked so far by all agents, and when each million was reached (ingest flatness);
/// batches acked per agent (how far apart the agents are in data time).
struct Progress {
    acked: std::sync::atomic::AtomicU64,
    millions: std::sync::Mutex<Vec<Instant>>,
    batches: Vec<std::sync::atomic::AtomicU64>,
}

impl Progress {
    fn new(agents: usize) -> Self {
        Progress {
            acked: std::sync::atomic::AtomicU64::new(0),
            millions: std::sync::Mutex::new(Vec::new()),
            batches: (0..agents).map(|_| std::sync::atomic::AtomicU64::new(0)).collect(),
        }
    }

    /// Batches acked by the agent furthest ahead less those of the one furthest behind.
    fn spread(&self) -> u64 {
        let acked = self.batches.iter().map(|b| b.load(std::sync::atomic::Ordering::Relaxed));
        let (low, high) = acked.fold((u64::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)));
        high.saturating_sub(low)
    }

    fn add(&self, agent: usize, n: u64) {
        self.batches[agent].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let before = self.acked.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        let crossed = (before + n) / 1_000_000 - before / 1_000_000;
        if crossed > 0 {
            let now = Instant::now();
            self.millions.lock().expect("lock").extend(std::iter::repeat_n(now, crossed as usize));
        }
    }
}

/// Streams `batches` (16 in flight, as the agent does); with `pace`, one batch per `pace` at
/// most (a rate below saturation). Returns the points acked, each batch's ack latency (ms) and
/// when its last ack arrived.
async fn run_agent(
    mut client: IngestClient<tonic::transport::Channel>,
    token: String,
    batches: Vec<Batch>,
    pace: Option<Duration>,
    progress: std::sync::Arc<Progress>,
    agent: usize,
) -> (u64, Vec<f64>, Instant) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(16);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    let total = batches.len();
    let sent_at = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let window = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let sender = {
        let (sent_at, window) = (std::sync::Arc::clone(&sent_at), std::sync::Arc::clone(&window));
        tokio::spawn(async move {
            let mut ticker = pace.map(|p| {
                let mut t = tokio::time::interval(p);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            for batch in batches {
                if let Some(ticker) = &mut ticker {
                    ticker.tick().await;
                }
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
        progress.add(agent, ack.stored_points);
        window.add_permits(1);
    }
    let done = Instant::now();
    drop(sender.await);
    (stored, latencies, done)
}

async fn connect(url: &str) -> IngestClient<tonic::transport::Channel> {
    let channel =
        tonic::transport::Endpoint::from_shared(url.to_owned()).expect("url").connect().await.expect("connect");
    IngestClient::new(channel).max_encoding_message_size(64 << 20)
}

/// Runs every agent's batches at once; returns (points acked, sorted ack latencies, seconds, when
/// the first agent was done: until then every agent was sending).
fn phase(
    runtime: &tokio::runtime::Runtime,
    clients: &[IngestClient<tonic::transport::Channel>],
    tokens: &[String],
    batches: Vec<Vec<Batch>>,
    pace: Option<Duration>,
    progress: &std::sync::Arc<Progress>,
) -> (u64, Vec<f64>, f64, Instant) {
    let start = Instant::now();
    let results: Vec<(u64, Vec<f64>, Instant)> = runtime.block_on(async {
        let tasks: Vec<_> = batches
            .into_iter()
            .zip(clients.iter().zip(tokens))
            .enumerate()
            .map(|(agent, (b, (client, token)))| {
                let progress = std::sync::Arc::clone(progress);
                tokio::spawn(run_agent(client.clone(), token.clone(), b, pace, progress, agent))
            })
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.expect("agent task"));
        }
        out
    });
    let elapsed = start.elapsed().as_secs_f64();
    let stored = results.iter().map(|r| r.0).sum();
    let first_done = results.iter().map(|r| r.2).min().unwrap_or(start);
    let mut latencies: Vec<f64> = results.into_iter().flat_map(|r| r.1).collect();
    latencies.sort_by(f64::total_cmp);
    (stored, latencies, elapsed, first_done)
}

/// Opens a stream for each idle agent and sends one batch of one point: the agent is then
/// connected (its stream open) for the rest of the run, as a real agent between ticks.
fn connect_idle(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    tokens: &[(String, String)],
    t0: i64,
) -> Vec<tokio::sync::mpsc::Sender<Batch>> {
    runtime.block_on(async {
        let mut out = Vec::new();
        for (agent, token) in tokens {
            let mut client = connect(url).await;
            let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(1);
            let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
            tx.send(Batch {
                spool_epoch: 1,
                seq: 1,
                agent_id: agent.clone(),
                created_unix_ms: t0,
                agent_version: "bench".into(),
                series: vec![Series {
                    name: "node_load1".into(),
                    kind: 1,
                    labels: Vec::new(),
                    timestamps_unix_ms: vec![t0],
                    values: vec![0.5],
                }],
                ..Batch::default()
            })
            .await
            .expect("queue");
            let mut acks = client.stream(request).await.expect("stream").into_inner();
            acks.message().await.expect("ack").expect("one ack");
            // Keep the response stream alive with the agent.
            tokio::spawn(async move { while let Ok(Some(_)) = acks.message().await {} });
            out.push(tx);
        }
        out
    })
}

/// `(step, longest run, total)` of the store writer's work, from the collector's `/metrics`.
fn store_steps(port: u16) -> Vec<(String, f64, f64)> {
    let Some((_, body)) = http(port, "GET", "/metrics", b"") else { return Vec::new() };
    let text = String::from_utf8_lossy(&body);
    let totals = step_metric(&text, "b24watch_collector_store_step_seconds_total");
    step_metric(&text, "b24watch_collector_store_step_max_seconds")
        .into_iter()
        .map(|(step, max)| {
            let total = totals.iter().find(|t| t.0 == step).map_or(0.0, |t| t.1);
            (step, max, total)
        })
        .collect()
}

/// One look at the run: CPU seconds of the collector and of the bench (its
/// agents share the 2 cores), the store writer's busy seconds per step, the head and the WAL.
#[derive(Clone)]
struct Snap {
    at: Instant,
    collector_cpu: f64,
    bench_cpu: f64,
    /// `(step, seconds in all)` from `/metrics`.
    steps: Vec<(String, f64)>,
    head_points: u64,
    head_bytes: u64,
    wal_bytes: u64,
    /// [`Progress::spread`]: batches between the agent furthest ahead and the one furthest behind.
    spread: u64,
}

/// CPU seconds (user + system) of a process from `/proc/PID/stat` (clock ticks of 10 ms).
fn cpu_seconds(pid: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        text.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / 100.0
}

/// Looks at the run every [`Timeline::EVERY`] (one `/metrics` scrape each: the render of every
/// agent's live series costs the collector some CPU, so not more often).
struct Timeline {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Snap>>,
}

impl Timeline {
    const EVERY: Duration = Duration::from_millis(500);

    fn start(port: u16, pid: u32, wal: PathBuf, progress: std::sync::Arc<Progress>) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut snaps = Vec::new();
            let pid = pid.to_string();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let at = Instant::now();
                let (collector_cpu, bench_cpu) = (cpu_seconds(&pid), cpu_seconds("self"));
                let wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
                if let Some((_, body)) = http(port, "GET", "/metrics", b"") {
                    let text = String::from_utf8_lossy(&body);
                    let gauge = |name: &str| -> u64 {
                        text.lines()
                            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                            .unwrap_or(0)
                    };
                    snaps.push(Snap {
                        at,
                        collector_cpu,
                        bench_cpu,
                        steps: step_metric(&text, "b24watch_collector_store_step_seconds_total"),
                        head_points: gauge("b24watch_collector_store_head_points"),
                        head_bytes: gauge("b24watch_collector_store_head_bytes"),
                        wal_bytes,
                        spread: progress.spread(),
                    });
                }
                std::thread::sleep(Self::EVERY.saturating_sub(at.elapsed()));
            }
            snaps
        });
        Timeline { stop, thread }
    }

    fn stop(self) -> Vec<Snap> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The last look taken at or before `at` (the first one when none is).
fn snap_at(snaps: &[Snap], at: Instant) -> Option<&Snap> {
    snaps.iter().take_while(|s| s.at <= at).last().or(snaps.first())
}

/// `(step, value)` of a per-step metric in an exposition.
fn step_metric(text: &str, metric: &str) -> Vec<(String, f64)> {
    let prefix = format!("{metric}{{step=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str())?.split_once("\"} "))
        .filter_map(|(step, v)| Some((step.to_owned(), v.trim().parse().ok()?)))
        .collect()
}

/// Prints the ingest rate of each million and of each ten million samples acked in the saturated
/// phase, counted from its start (`marks[i]`: when the (i+1)-th million was acked), and the
/// flatness: the largest deviation of a ten million's rate from their mean and from the first,
/// over the ten millions acked before the first agent was done (`first_done`; after that fewer
/// agents send, the writer's queue runs dry now and then and the rate is the bench's, not the
/// collector's), and over all of them. A group commit acks up to ~0.5 M samples at once, so
/// single millions are noisy; the ten millions are the figure. Then, per ten million, what the
/// time went to (from `snaps`).
fn flatness(start: Instant, marks: &[Instant], first_done: Instant, snaps: &[Snap]) {
    let at = |m: usize| if m == 0 { start } else { marks[m - 1] };
    let deviation = |rates: &[f64]| -> (f64, f64) {
        let Some(first) = rates.first() else { return (f64::NAN, f64::NAN) };
        let mean = rates.iter().sum::<f64>() / rates.len() as f64;
        let worst = rates.iter().map(|r| (r / mean - 1.0).abs()).fold(0.0, f64::max);
        (worst * 100.0, rates.iter().map(|r| (r / first - 1.0).abs()).fold(0.0, f64::max) * 100.0)
    };
    for (width, label) in [(1, "million"), (10, "10_million")] {
        let windows: Vec<(usize, usize)> = (0..marks.len() / width).map(|k| (k * width, (k + 1) * width)).collect();
        let rates: Vec<f64> =
            windows.iter().map(|&(a, b)| (b - a) as f64 * 1e6 / (at(b) - at(a)).as_secs_f64()).collect();
        if rates.is_empty() {
            continue;
        }
        let (worst, from_first) = deviation(&rates);
        let shown: Vec<String> = rates.iter().map(|r| format!("{:.0}", r / 1000.0)).collect();
        println!(
            "ingest_k_per_s_per_{label}=[{}] max_deviation_from_mean={worst:.0}% max_deviation_from_first={from_first:.0}%",
            shown.join(",")
        );
        if width != 10 {
            continue;
        }
        let streaming = windows.iter().take_while(|&&(_, b)| at(b) <= first_done).count();
        let (worst, from_first) = deviation(&rates[..streaming]);
        let done_at = marks.iter().take_while(|m| **m <= first_done).count();
        println!(
            "ingest_flatness_pct={worst:.1} (largest deviation of a ten million's rate from their mean, {from_first:.1} from the first; samples stored and acked per ten million from the start of the saturated phase, millions 0-{} while all agents were sending; the first agent was done at million {done_at} of {})",
            streaming * 10,
            marks.len()
        );
        for (k, &(a, b)) in windows.iter().enumerate() {
            let (Some(s0), Some(s1)) = (snap_at(snaps, at(a)), snap_at(snaps, at(b))) else { continue };
            let secs = (s1.at - s0.at).as_secs_f64().max(1e-3);
            let step = |s: &Snap, name: &str| s.steps.iter().find(|t| t.0 == name).map_or(0.0, |t| t.1);
            let busy: Vec<String> = s1
                .steps
                .iter()
                .filter(|(name, _)| step(s1, name) - step(s0, name) > 0.0)
                .map(|(name, _)| format!("{name}={:.0}%", (step(s1, name) - step(s0, name)) / secs * 100.0))
                .collect();
            let inside = snaps.iter().filter(|s| s.at >= s0.at && s.at <= s1.at);
            let (head, wal, spread) =
                inside.fold((0, 0, 0), |(h, w, d), s| (h.max(s.head_points), w.max(s.wal_bytes), d.max(s.spread)));
            println!(
                "  ten_million_{k}: k_per_s={:.0}{} collector_cpu={:.0}% bench_cpu={:.0}% (of one core) writer: {} head_max_mpoints={:.1} wal_max_mib={:.0} agents_apart_max_batches={spread}",
                rates[k] / 1000.0,
                if k < streaming { "" } else { " (agents done)" },
                (s1.collector_cpu - s0.collector_cpu) / secs * 100.0,
                (s1.bench_cpu - s0.bench_cpu) / secs * 100.0,
                busy.join(" "),
                head as f64 / 1e6,
                wal as f64 / 1048576.0
            );
        }
    }
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

/// The import bodies for VictoriaMetrics, built before the run so building is not measured.
fn vm_bodies(all: &[Vec<Batch>]) -> Vec<Vec<Vec<u8>>> {
    // JSON lines: one line per series per batch.
    all.iter()
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
        .collect()
}

/// VictoriaMetrics next to us: the same samples through `/api/v1/import`, then a force merge.
fn victoria(bodies: Vec<Vec<Vec<u8>>>, samples: u64) {
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

/// The load generator's own allocator: no fastbins (glibc).
///
/// The bench builds every batch before the run (gigabytes of small strings and vectors) and frees
/// each one as it is sent. glibc keeps small freed chunks in fastbins and merges them all at the
/// next large request: late in a long run one such merge stopped the bench's senders for 1-3 s
/// (`perf`: `malloc_consolidate`, `unlink_chunk` on a bench thread, the collector idle), a ten
/// million acked ~40 % slower than the others. Without fastbins frees merge as they happen.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn no_fastbins() {
    /// From glibc's `malloc.h`.
    const M_MXFAST: std::ffi::c_int = 1;
    unsafe extern "C" {
        /// glibc: sets an allocator parameter; returns 1 on success, 0 on error.
        safe fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    mallopt(M_MXFAST, 0);
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn no_fastbins() {}

fn main() {
    no_fastbins();
    let agents = env_num("AGENTS", 200) as usize;
    let series = env_num("SERIES", 300) as usize;
    let points = env_num("POINTS", 6) as usize;
    let batches = env_num("BATCHES", 420) as usize;
    let connected = (env_num("CONNECTED", 1000) as usize).max(agents);
    let pace_share = env_num("PACE_PERCENT", 70) as f64 / 100.0;
    // The last hour of every agent's batches is sent paced below saturation, the first one as a
    // warm-up; the rest saturated, for the rate and the flatness figure (an hour: 60 batches at
    // 6 points). Runs shorter than three hours: no warm-up, the last sixth paced.
    let hour_batches = 3600 / (points * 10).max(1);
    let (warmup_default, paced_default) =
        if batches >= 3 * hour_batches { (hour_batches, hour_batches) } else { (0, batches / 6) };
    let paced_batches = if std::env::var_os("NO_PACED").is_some() {
        0
    } else {
        (env_num("PACED_BATCHES", paced_default as u64) as usize).min(batches)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let admin = b24watch_collector::store::admin::Admin::open(&data).expect("database");
    let names: Vec<String> = (0..connected).map(|a| format!("bench-{a:04}")).collect();
    let tokens: Vec<String> = names.iter().map(|n| admin.enroll(n, false, 0).expect("enroll")).collect();
    drop(admin);
    // Samples end more than an hour ago (inside the collector's past bound), starting on an hour.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let hour = 3_600_000;
    let t0 = (now - (batches * points) as i64 * 10_000 - 2 * hour).div_euclid(hour) * hour - 10_000;
    let mut all: Vec<Vec<Batch>> =
        (0..agents).map(|a| agent_batches(&names[a], 0x9e37_79b9 + a as u64, series, points, batches, t0)).collect();
    let vm_bodies = if std::env::var_os("NO_VM").is_none() { Some(vm_bodies(&all)) } else { None };
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
    let url = format!("http://127.0.0.1:{grpc}");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let idle: Vec<(String, String)> = names[agents..].iter().cloned().zip(tokens[agents..].iter().cloned()).collect();
    let idle_streams = connect_idle(&runtime, &url, &idle, t0);
    let rss_idle_kib = proc_field(pid, "status", "VmRSS:");
    let clients: Vec<_> = runtime.block_on(async {
        let mut out = Vec::new();
        for _ in 0..agents {
            out.push(connect(&url).await);
        }
        out
    });
    let paced: Vec<Vec<Batch>> = all.iter_mut().map(|b| b.split_off(b.len() - paced_batches)).collect();
    let warmup_batches = (env_num("WARMUP_BATCHES", warmup_default as u64) as usize).min(batches - paced_batches);
    let warmup: Vec<Vec<Batch>> = all.iter_mut().map(|b| b.drain(..warmup_batches).collect()).collect();
    let io_before = proc_field(pid, "io", "write_bytes:");
    let progress = std::sync::Arc::new(Progress::new(agents));
    let wal = data.join(format!("{}-wal", b24watch_collector::store::DB_FILE));
    let timeline = Timeline::start(http_port, pid, wal, std::sync::Arc::clone(&progress));
    let warmed = if warmup_batches > 0 {
        let unmeasured = std::sync::Arc::new(Progress::new(agents));
        phase(&runtime, &clients, &tokens[..agents], warmup, None, &unmeasured).0
    } else {
        0
    };
    let saturated_start = Instant::now();
    let (stored, latencies, elapsed, first_done) = phase(&runtime, &clients, &tokens[..agents], all, None, &progress);
    let saturated_millions = progress.millions.lock().expect("lock").clone();
    let rate = stored as f64 / elapsed;
    let (paced_stored, paced_latencies, paced_rate) = if paced_batches > 0 {
        // One batch per agent every `pace`: `pace_share` of the saturated rate in all.
        let per_batch = (series * points) as f64;
        let pace = Duration::from_secs_f64(per_batch * agents as f64 / (rate * pace_share));
        let (n, lat, secs, _) = phase(&runtime, &clients, &tokens[..agents], paced, Some(pace), &progress);
        (n, lat, n as f64 / secs)
    } else {
        (0, Vec::new(), 0.0)
    };
    let written = proc_field(pid, "io", "write_bytes:").saturating_sub(io_before);
    let rss_kib = proc_field(pid, "status", "VmHWM:");
    let steps = store_steps(http_port);
    let snaps = timeline.stop();
    let (head_points, head_bytes) =
        snaps.iter().map(|s| (s.head_points, s.head_bytes)).max_by_key(|p| p.1).unwrap_or((0, 0));
    drop(idle_streams);
    drop(clients);
    let acked = warmed + stored + paced_stored;
    // A clean stop seals the head into blocks; then the file is what history costs.
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let status = collector.wait().expect("collector exit");
    assert!(status.success(), "collector exited with {status}");
    let conn = b24watch_collector::store::open_connection(&data).expect("reopen");
    let in_blocks = b24watch_collector::store::series::stored_samples(&conn).expect("n");
    let (block_bytes, tick_bytes, minute_bytes, hour_bytes): (i64, i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT COALESCE(SUM(length(data)), 0) FROM series_hour),
                    (SELECT COALESCE(SUM(length(data)), 0) FROM tick_hour),
                    (SELECT COALESCE(SUM(length(data)), 0) FROM rollup WHERE tier = 1),
                    (SELECT COALESCE(SUM(length(data)), 0) FROM rollup WHERE tier = 2)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("sizes");
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").expect("checkpoint");
    let (page_count, freelist, page_size): (i64, i64, i64) = conn
        .query_row("SELECT * FROM pragma_page_count, pragma_freelist_count, pragma_page_size", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("pages");
    let tables: Vec<(String, i64)> = conn
        .prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 8")
        .and_then(|mut stmt| stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .unwrap_or_default();
    drop(conn);
    let db_bytes = dir_bytes(&data);
    let used = (page_count - freelist) * page_size;
    let per = |bytes: i64| bytes as f64 / in_blocks.max(1) as f64;
    println!(
        "agents={agents} connected={connected} series_per_agent={series} points_per_batch_per_series={points} batches_per_agent={batches} (first {warmup_batches} warm-up, last {paced_batches} paced)"
    );
    println!("samples_sent={samples} samples_acked={acked} samples_in_blocks={in_blocks} seconds={elapsed:.1}");
    println!("samples_per_s={rate:.0}");
    println!("ack_p50_ms={:.1} (saturated)", percentile(&latencies, 0.5));
    println!("ack_p99_ms={:.1} (saturated)", percentile(&latencies, 0.99));
    if paced_batches > 0 {
        println!("paced_samples_per_s={paced_rate:.0} (target {:.0})", rate * pace_share);
        println!("ack_p50_ms_below_saturation={:.1}", percentile(&paced_latencies, 0.5));
        println!("ack_p99_ms_below_saturation={:.1}", percentile(&paced_latencies, 0.99));
    }
    flatness(saturated_start, &saturated_millions, first_done, &snaps);
    println!(
        "bytes_per_sample={:.3} (used pages {used} B after the clean stop and a checkpoint; file {db_bytes} B = {:.3}/sample, {} free pages)",
        per(used),
        per(db_bytes as i64),
        freelist
    );
    println!(
        "payload_bytes_per_sample: raw_blocks={:.3} tick_sets={:.4} minute_rollups={:.3} hour_rollups={:.3}",
        per(block_bytes),
        per(tick_bytes),
        per(minute_bytes),
        per(hour_bytes)
    );
    let shown: Vec<String> = tables.iter().map(|(t, b)| format!("{t}={:.3}", per(*b))).collect();
    println!("pages_per_sample_by_table: {}", shown.join(" "));
    println!("disk_write_bytes_per_sample={:.2}", written as f64 / acked.max(1) as f64);
    println!(
        "collector_rss_mib={:.1} (peak; {:.1} with {connected} agents connected before the run)",
        rss_kib as f64 / 1024.0,
        rss_idle_kib as f64 / 1024.0
    );
    println!(
        "head_peak_points={head_points} head_peak_mib={:.1} ({:.2} bytes per point held)",
        head_bytes as f64 / 1048576.0,
        head_bytes as f64 / head_points.max(1) as f64
    );
    for (step, max, total) in &steps {
        println!("max_step_ms_{step}={:.1} (writer busy {total:.1} s in all)", max * 1000.0);
    }
    println!("render_us_per_series={:.3}", render_us_per_series());
    if std::env::var_os("KEEP").is_some() {
        println!("kept={}", dir.keep().display());
    }
    if let Some(bodies) = vm_bodies {
        victoria(bodies, samples);
    }
}
