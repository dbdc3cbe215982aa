//! Measures whether a general compressor (deflate, pure Rust) over sealed sample blocks pays: bytes per sample with and without it.
//!
//! Hour blocks at 10 s of the same series mix as `ingest_bench` (two-decimal gauges, byte
//! counters, near-constant values, small integers), 3,000 series.
//!
//!   cargo run --release -p b24watch-collector --example block_size

use b24watch_collector::store::block;

fn main() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rng = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    let (mut samples, mut plain, mut deflated, mut deflated_all) = (0usize, 0usize, 0usize, Vec::new());
    for i in 0..3000u64 {
        let mut value = match i % 10 {
            7 | 8 => (rng(1000) * 1_073_741_824) as f64,
            _ => rng(100) as f64,
        };
        let points: Vec<(i64, f64)> = (0..360i64)
            .map(|p| {
                value = match i % 10 {
                    0..=3 => ((value * 100.0 + rng(41) as f64 - 20.0).max(0.0)).round() / 100.0,
                    4..=6 => value + (rng(4096) * 512) as f64,
                    7 | 8 => value + if rng(200) == 0 { 4096.0 } else { 0.0 },
                    _ => (value + rng(3) as f64 - 1.0).max(0.0),
                };
                (1_795_000_000_000 + p * 10_000 + rng(5) as i64, value)
            })
            .collect();
        let data = block::encode(&points).expect("sorted");
        samples += points.len();
        plain += data.len();
        deflated += miniz_oxide::deflate::compress_to_vec(&data, 6).len().min(data.len() + 1);
        deflated_all.extend_from_slice(&data);
    }
    let whole = miniz_oxide::deflate::compress_to_vec(&deflated_all, 9).len();
    println!("samples={samples} blocks=3000");
    println!("block_bytes_per_sample={:.3}", plain as f64 / samples as f64);
    println!("deflate_per_block_bytes_per_sample={:.3}", deflated as f64 / samples as f64);
    println!("deflate_all_blocks_bytes_per_sample={:.3}", whole as f64 / samples as f64);
}
