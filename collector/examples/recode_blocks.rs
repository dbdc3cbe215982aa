//! Re-encodes every sample block of a kept database (`KEEP=1 make bench-ingest`) with this
//! build's codec without tick sets (format 3) and prints bytes per sample as stored (format 4
//! blocks without their shared tick sets) and re-encoded, by value shape of the block.
//!
//!   cargo run --release -p b24watch-collector --example recode_blocks -- /tmp/.tmpXXXX/data

use b24watch_collector::store::{block, series};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: recode_blocks DATA_DIR");
    let conn = rusqlite::Connection::open_with_flags(
        std::path::Path::new(&dir).join("b24watch.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open");
    let mut stmt = conn
        .prepare("SELECT s.name, b.id, b.data FROM series_hour b JOIN series s ON s.id = b.id % 16777216")
        .expect("prepare");
    let mut rows = stmt.query([]).expect("query");
    let mut by_name: std::collections::BTreeMap<String, (u64, u64, u64)> = std::collections::BTreeMap::new();
    let (mut n, mut before, mut after) = (0u64, 0u64, 0u64);
    let started = std::time::Instant::now();
    let mut encode_time = std::time::Duration::ZERO;
    while let Some(row) = rows.next().expect("row") {
        let name: String = row.get(0).expect("name");
        let id: i64 = row.get(1).expect("id");
        let data: Vec<u8> = row.get(2).expect("data");
        let points = series::decode_stored(&conn, id, &data).expect("decode");
        let t = std::time::Instant::now();
        let recoded = block::encode(&points).expect("encode");
        encode_time += t.elapsed();
        let back = block::decode(&recoded).expect("decode recoded");
        assert!(
            back.len() == points.len()
                && back.iter().zip(&points).all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits()),
            "round trip of {name}"
        );
        let e = by_name.entry(name).or_default();
        e.0 += points.len() as u64;
        e.1 += data.len() as u64;
        e.2 += recoded.len() as u64;
        n += points.len() as u64;
        before += data.len() as u64;
        after += recoded.len() as u64;
    }
    for (name, (n, b, a)) in &by_name {
        println!(
            "{name:45} samples={n:9} before={:.3} after={:.3} B/sample",
            *b as f64 / *n as f64,
            *a as f64 / *n as f64
        );
    }
    println!(
        "all samples={n} before={:.3} after={:.3} B/sample; encode {:.0} ns/sample ({:.1} s in all)",
        before as f64 / n as f64,
        after as f64 / n as f64,
        encode_time.as_nanos() as f64 / n as f64,
        started.elapsed().as_secs_f64()
    );
}
