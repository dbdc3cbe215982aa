//! Benchmark: the 30-day SLA of 1,000 hosts (DESIGN.md section 7: at most 50 ms).
//!
//! Each host gets a month of evidence for three signals (agent, portal, mysql) shaped like a
//! real fleet: mostly up, a few outages and flaps, agent restarts (short silences), one longer
//! silence, collector downtime and a maintenance window, with Mon–Fri service hours in a time
//! zone. Prints the time for the whole fleet (best of 5) next to a baseline in the same run: a
//! plain pass that only sums the span lengths (the memory-bandwidth floor of any method).
//!
//!   cargo run --release -p b24watch-collector --example sla_bench

use std::hint::black_box;
use std::time::Instant;

use b24watch_collector::sla::{self, Calendar, Inputs, Rules, Span, State};

const MIN: i64 = 60_000;
const DAY: i64 = 24 * 60 * MIN;
const HOSTS: usize = 1_000;

/// Deterministic pseudo-random numbers (xorshift), so every run measures the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: i64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below.max(1) as u64) as i64
    }
}

fn evidence(rng: &mut Rng, from: i64, to: i64) -> Vec<Span> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        let up_len = (6 * 60 + rng.next(72 * 60)) * MIN;
        out.push(Span { from: t, to: (t + up_len).min(to), state: State::Up });
        t += up_len;
        match rng.next(10) {
            0..=5 => t += rng.next(3) * MIN / 2, // agent restart: a short silence
            6 | 7 => {
                let down = (1 + rng.next(30)) * MIN;
                out.push(Span { from: t, to: (t + down).min(to), state: State::Down });
                t += down;
            }
            8 => t += (20 + rng.next(120)) * MIN, // long silence
            _ => {}
        }
    }
    out.retain(|s| s.to > s.from);
    out
}

fn main() {
    let now = 1_795_000_000_000;
    let (from, to) = (now - 30 * DAY, now);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let fleet: Vec<[Vec<Span>; 3]> = (0..HOSTS)
        .map(|_| [evidence(&mut rng, from, to), evidence(&mut rng, from, to), evidence(&mut rng, from, to)])
        .collect();
    let spans: usize = fleet.iter().flat_map(|h| h.iter()).map(Vec::len).sum();
    let collector_down =
        vec![(from + 3 * DAY, from + 3 * DAY + 40 * MIN), (from + 17 * DAY, from + 17 * DAY + 5 * MIN)];
    let maintenance = vec![(from + 10 * DAY, from + 10 * DAY + 4 * 60 * MIN)];
    let calendar = Calendar::parse("Mon-Fri 09:00-20:00", "Europe/Moscow").expect("calendar");
    let rules = Rules::default();

    let sla_pass = || {
        let hours = calendar.intervals(from, to);
        let mut met = 0usize;
        for host in &fleet {
            for evidence in host {
                let inputs =
                    Inputs { evidence, collector_down: &collector_down, maintenance: &maintenance, rules, now };
                let timeline = sla::timeline(&inputs, from, to);
                let all = sla::summarize(&timeline, None);
                let in_hours = sla::summarize(&timeline, Some(&hours));
                met += usize::from(all.ratio().unwrap_or(0.0) >= 0.995) + usize::from(in_hours.ratio().is_some());
            }
        }
        met
    };
    let baseline_pass = || fleet.iter().flat_map(|h| h.iter()).flatten().map(|s| s.to - s.from).sum::<i64>();

    let best = |f: &dyn Fn() -> usize| {
        (0..5)
            .map(|_| {
                let started = Instant::now();
                black_box(f());
                started.elapsed()
            })
            .min()
            .expect("five runs")
    };
    let sla_time = best(&|| sla_pass());
    let baseline = best(&|| baseline_pass() as usize);
    println!(
        "hosts={HOSTS} signals_per_host=3 spans={spans} window_days=30 sla_ms={:.2} baseline_sum_ms={:.3} budget_ms=50",
        sla_time.as_secs_f64() * 1000.0,
        baseline.as_secs_f64() * 1000.0
    );

    // The same through the collector's store: evidence read from SQLite, then computed.
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = b24watch_collector::store::open_connection(dir.path()).expect("database");
    conn.execute_batch("BEGIN").expect("begin");
    for (idx, host) in fleet.iter().enumerate() {
        conn.execute("INSERT INTO agent(id, token_hash, created_ms) VALUES (?1, x'00', 0)", [format!("host-{idx:04}")])
            .expect("agent");
        for (signal, spans) in ["agent", "portal", "mysql"].iter().zip(host) {
            for s in spans {
                conn.execute(
                    "INSERT INTO evidence(agent_id, signal, target, up, from_ms, to_ms) VALUES (?1, ?2, '', ?3, ?4, ?5)",
                    rusqlite::params![format!("host-{idx:04}"), signal, s.state == State::Up, s.from, s.to],
                )
                .expect("evidence");
            }
        }
    }
    // One collector run over the whole month, alive now (time outside any run is unknown).
    conn.execute("INSERT INTO collector_run(started_ms, alive_ms) VALUES (?1, ?2)", [from - DAY, now]).expect("run");
    conn.execute_batch("COMMIT").expect("commit");
    let reader = std::sync::Arc::new(b24watch_collector::store::query::Reader::new(
        b24watch_collector::store::open_connection(dir.path()).expect("reader"),
    ));
    let cfg = b24watch_collector::config::Config::parse(
        "[sla]\nservice_hours = \"Mon-Fri 09:00-20:00\"\ntimezone = \"Europe/Moscow\"\n",
        std::path::Path::new("bench.toml"),
    )
    .expect("config")
    .sla;
    let uptime = b24watch_collector::uptime::Uptime::new(cfg, reader);
    let hosts = uptime.hosts().expect("hosts");
    let stored = best(&|| {
        let shared = uptime.shared(from, to, now).expect("shared");
        hosts
            .iter()
            .map(|h| uptime.host_uptime_with(&shared, h, from, to, now, false).expect("uptime").len())
            .sum::<usize>()
    });
    println!("stored_hosts={} sla_from_sqlite_ms={:.1}", hosts.len(), stored.as_secs_f64() * 1000.0);
}
