//! Benchmark helper: scans one log file with the agent's tailer and rule set, as the agent does
//! on a tick, and prints the throughput. Used by `make bench-logs`.
//!
//! `cargo run --release -p b24watch-agent --example scan -- FILE [PRESET]`

use std::time::Instant;

use b24watch_agent::logs::LogSpec;
use b24watch_agent::logs::classify::Preset;
use b24watch_agent::logs::lines::Encoding;
use b24watch_agent::logs::tail::Tailer;
use b24watch_agent::observation::UnixMs;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: scan FILE [nginx|httpd|php|bitrix_exceptions|mysql]");
        std::process::exit(2);
    };
    let preset_name = args.next().unwrap_or_else(|| "nginx".to_owned());
    let Some(preset) = Preset::parse(&preset_name) else {
        eprintln!("unknown preset {preset_name:?}");
        std::process::exit(2);
    };
    let spec = LogSpec::new("bench", vec![path], preset, &[], Encoding::Utf8);
    let mut tailer = Tailer::new(vec![spec], Vec::new(), false, 16 * 1024, u64::MAX);
    let started = Instant::now();
    let poll = tailer.poll(UnixMs(0));
    let seconds = started.elapsed().as_secs_f64();
    let counters = &tailer.counters[0];
    let errors: u64 = counters.errors.iter().sum();
    let engine = if tailer.specs()[0].classifier().searches_strings() { "strings" } else { "regex" };
    println!(
        "lines={} errors={} groups={} engine={engine} seconds={seconds:.3} lines_per_s={:.0}",
        counters.lines,
        errors,
        poll.groups.len(),
        counters.lines as f64 / seconds
    );
}
