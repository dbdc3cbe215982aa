//! Sample block codec: sorted unique `(ts_ms, value)` points packed as delta-of-delta timestamps and XOR floats (Gorilla).
//!
//! ## Format
//! `version (1 byte) | n (varint) | bit stream`. The bit stream holds the first timestamp and
//! value in 64 bits each, then per point a delta-of-delta timestamp code and an XOR value code:
//!
//! * timestamp: `0` (same interval), `10`+7 bits, `110`+9, `1110`+12, `11110`+20, `11111`+64, the
//!   value being the zigzag of the change of interval;
//! * value: `0` (same bits as the previous value), `10` + the meaningful bits inside the previous
//!   window, `11` + 5 bits leading zeros + 6 bits length + the meaningful bits.
//!
//! Values round-trip bit for bit (±0, subnormals, ±MAX). Blocks hold sorted, unique timestamps:
//! [`normalize`] and [`merge`] make them so, the first point stored for a timestamp winning.
//! A general compressor over the bit stream was measured and does not pay (see
//! `examples/block_size.rs`): the stream is already near its entropy.

/// Format byte of a Gorilla block.
const VERSION_GORILLA: u8 = 1;

/// Why a block could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The bytes are not a block this build understands.
    #[error("corrupt sample block: {0}")]
    Corrupt(&'static str),
    /// Timestamps not strictly increasing.
    #[error("sample block points must have strictly increasing timestamps")]
    Unsorted,
}

struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    bits: u32,
}

impl BitWriter {
    fn write(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        let value = if n == 64 { value } else { value & ((1u64 << n) - 1) };
        let free = 64 - self.bits;
        if n <= free {
            self.acc |= if n == 64 { value } else { value << (free - n) };
            self.bits += n;
        } else {
            let high = n - free;
            self.acc |= value >> high;
            self.bits = 64;
            self.flush_full();
            self.acc = value << (64 - high);
            self.bits = high;
        }
        if self.bits == 64 {
            self.flush_full();
        }
    }

    fn flush_full(&mut self) {
        self.out.extend_from_slice(&self.acc.to_be_bytes());
        self.acc = 0;
        self.bits = 0;
    }

    fn finish(mut self) -> Vec<u8> {
        let bytes = self.bits.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_be_bytes()[..bytes]);
        self.out
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read(&mut self, n: u32) -> Result<u64, BlockError> {
        if self.pos + n as usize > self.data.len() * 8 {
            return Err(BlockError::Corrupt("truncated bit stream"));
        }
        let mut out = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.data[self.pos / 8];
            let offset = (self.pos % 8) as u32;
            let take = (8 - offset).min(left);
            let chunk = (u64::from(byte) >> (8 - offset - take)) & ((1u64 << take) - 1);
            out = if take == 64 { chunk } else { (out << take) | chunk };
            self.pos += take as usize;
            left -= take;
        }
        Ok(out)
    }

    fn bit(&mut self) -> Result<bool, BlockError> {
        Ok(self.read(1)? == 1)
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_varint(data: &[u8], pos: &mut usize) -> Result<u64, BlockError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*pos).ok_or(BlockError::Corrupt("truncated varint"))?;
        *pos += 1;
        out |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(out);
        }
    }
    Err(BlockError::Corrupt("varint too long"))
}

/// Timestamp codes: (prefix, prefix bits, payload bits), tried in order.
const TS_CODES: [(u64, u32, u32); 5] =
    [(0b10, 2, 7), (0b110, 3, 9), (0b1110, 4, 12), (0b11110, 5, 20), (0b11111, 5, 64)];

/// Encodes points with strictly increasing timestamps.
///
/// # Errors
/// [`BlockError::Unsorted`] when timestamps are not strictly increasing.
pub fn encode(points: &[(i64, f64)]) -> Result<Vec<u8>, BlockError> {
    if points.windows(2).any(|w| w[1].0 <= w[0].0) {
        return Err(BlockError::Unsorted);
    }
    let mut head = vec![VERSION_GORILLA];
    put_varint(&mut head, points.len() as u64);
    let mut w = BitWriter { out: head, acc: 0, bits: 0 };
    let Some(&(first_ts, first_value)) = points.first() else {
        return Ok(w.finish());
    };
    w.write(first_ts as u64, 64);
    w.write(first_value.to_bits(), 64);
    let (mut prev_ts, mut prev_delta) = (first_ts, 0i64);
    let mut prev_bits = first_value.to_bits();
    let (mut lead, mut trail) = (u32::MAX, 0u32);
    for &(ts, value) in &points[1..] {
        let delta = ts.wrapping_sub(prev_ts);
        let dod = zigzag(delta.wrapping_sub(prev_delta));
        if dod == 0 {
            w.write(0, 1);
        } else {
            let &(prefix, prefix_bits, payload) = TS_CODES
                .iter()
                .find(|(_, _, payload)| *payload == 64 || dod < (1u64 << payload))
                .expect("the last code takes any value");
            w.write(prefix, prefix_bits);
            w.write(dod, payload);
        }
        prev_ts = ts;
        prev_delta = delta;
        let bits = value.to_bits();
        let xor = bits ^ prev_bits;
        prev_bits = bits;
        if xor == 0 {
            w.write(0, 1);
            continue;
        }
        let (l, t) = (xor.leading_zeros().min(31), xor.trailing_zeros());
        if lead != u32::MAX && l >= lead && t >= trail {
            w.write(0b10, 2);
            w.write(xor >> trail, 64 - lead - trail);
        } else {
            let len = 64 - l - t;
            w.write(0b11, 2);
            w.write(u64::from(l), 5);
            w.write(u64::from(len & 63), 6); // 64 is written as 0
            w.write(xor >> t, len);
            lead = l;
            trail = t;
        }
    }
    Ok(w.finish())
}

/// Number of points in a block without decoding it.
///
/// # Errors
/// A block this build does not understand.
pub fn count(data: &[u8]) -> Result<usize, BlockError> {
    if data.first() != Some(&VERSION_GORILLA) {
        return Err(BlockError::Corrupt("unknown block version"));
    }
    let mut pos = 1;
    Ok(get_varint(data, &mut pos)? as usize)
}

/// Decodes a block, appending its points to `out`.
///
/// # Errors
/// A truncated or unknown block.
pub fn decode_into(data: &[u8], out: &mut Vec<(i64, f64)>) -> Result<(), BlockError> {
    if data.first() != Some(&VERSION_GORILLA) {
        return Err(BlockError::Corrupt("unknown block version"));
    }
    let mut pos = 1;
    let n = usize::try_from(get_varint(data, &mut pos)?).map_err(|_| BlockError::Corrupt("count"))?;
    if n == 0 {
        return Ok(());
    }
    // Every point takes at least two bits: refuse counts the bytes cannot hold before reserving.
    if n > (data.len() - pos) * 4 + 1 {
        return Err(BlockError::Corrupt("count larger than the data"));
    }
    out.reserve(n);
    let mut r = BitReader { data: &data[pos..], pos: 0 };
    let mut ts = r.read(64)? as i64;
    let mut bits = r.read(64)?;
    out.push((ts, f64::from_bits(bits)));
    let mut delta = 0i64;
    let (mut lead, mut trail) = (0u32, 0u32);
    for _ in 1..n {
        let mut ones = 0;
        while ones < 5 && r.bit()? {
            ones += 1;
        }
        if ones > 0 {
            let payload = TS_CODES[ones - 1].2;
            delta = delta.wrapping_add(unzigzag(r.read(payload)?));
        }
        ts = ts.wrapping_add(delta);
        if r.bit()? {
            if r.bit()? {
                lead = r.read(5)? as u32;
                let len = match r.read(6)? as u32 {
                    0 => 64,
                    len => len,
                };
                if lead + len > 64 {
                    return Err(BlockError::Corrupt("xor window"));
                }
                trail = 64 - lead - len;
            }
            let meaningful = r.read(64 - lead - trail)?;
            bits ^= if trail == 64 { 0 } else { meaningful << trail };
        }
        out.push((ts, f64::from_bits(bits)));
    }
    Ok(())
}

/// Decodes a block.
///
/// # Errors
/// A truncated or unknown block.
pub fn decode(data: &[u8]) -> Result<Vec<(i64, f64)>, BlockError> {
    let mut out = Vec::new();
    decode_into(data, &mut out)?;
    Ok(out)
}

/// Sorts points by timestamp, keeping the first of each timestamp (arrival order).
pub fn normalize(points: &mut Vec<(i64, f64)>) {
    points.sort_by_key(|p| p.0); // stable: the earliest arrival stays first
    points.dedup_by_key(|p| p.0);
}

/// Merges `new` points into sorted unique `old` ones; on an equal timestamp `old` wins.
pub fn merge(old: &[(i64, f64)], new: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let mut new = new.to_vec();
    normalize(&mut new);
    let mut out = Vec::with_capacity(old.len() + new.len());
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new.len() {
        match old[i].0.cmp(&new[j].0) {
            std::cmp::Ordering::Less => {
                out.push(old[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(new[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(old[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&old[i..]);
    out.extend_from_slice(&new[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn same(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
    }

    fn special() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(f64::MAX),
            Just(f64::MIN),
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
            Just(-5e-324),
            Just(2.2e-308),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            any::<f64>().prop_filter("nan is rejected at ingest", |v| !v.is_nan()),
            (0u32..1000).prop_map(f64::from),
        ]
    }

    proptest! {
        #[test]
        fn any_points_round_trip_sorted_unique_first_wins(
            raw in prop::collection::vec((-5i64..5_000, special()), 0..300),
            base in prop_oneof![Just(0i64), Just(1_795_000_000_000i64), Just(i64::MIN / 2), Just(-1i64)],
        ) {
            let raw: Vec<(i64, f64)> = raw.into_iter().map(|(t, v)| (base + t * 997, v)).collect();
            let mut points = raw.clone();
            normalize(&mut points);
            // Each timestamp once, with the value that arrived first.
            for (ts, value) in &points {
                let first = raw.iter().find(|p| p.0 == *ts).expect("from the input");
                prop_assert_eq!(first.1.to_bits(), value.to_bits());
            }
            let data = encode(&points).expect("sorted");
            prop_assert_eq!(count(&data).expect("count"), points.len());
            prop_assert!(same(&decode(&data).expect("decode"), &points));
        }

        #[test]
        fn jittered_intervals_and_counters_with_resets_round_trip(
            jitter in prop::collection::vec(-40i64..40, 1..2000),
            resets in prop::collection::vec(0usize..2000, 0..5),
            step in 1u32..5000,
        ) {
            let mut value = 0.0f64;
            let points: Vec<(i64, f64)> = jitter
                .iter()
                .enumerate()
                .map(|(i, j)| {
                    value = if resets.contains(&i) { 0.0 } else { value + f64::from(step) };
                    (1_795_000_000_000 + i as i64 * 10_000 + j, value)
                })
                .collect();
            let data = encode(&points).expect("sorted");
            prop_assert!(same(&decode(&data).expect("decode"), &points));
        }

        #[test]
        fn merge_equals_normalize_of_the_concatenation(
            old in prop::collection::vec((0i64..500, -3.0f64..3.0), 0..200),
            new in prop::collection::vec((0i64..500, -3.0f64..3.0), 0..200),
        ) {
            let mut old = old;
            normalize(&mut old);
            let mut all = old.clone();
            all.extend_from_slice(&new);
            normalize(&mut all);
            prop_assert!(same(&merge(&old, &new), &all));
        }
    }

    #[test]
    fn long_constant_run_costs_two_bits_a_point() {
        let points: Vec<(i64, f64)> = (0..100_000).map(|i| (1_795_000_000_000 + i * 10_000, 42.5)).collect();
        let data = encode(&points).expect("sorted");
        assert!(data.len() < 100_000 * 2 / 8 + 64, "{} bytes", data.len());
        assert!(same(&decode(&data).expect("decode"), &points));
    }

    #[test]
    fn unsorted_or_repeated_timestamps_are_refused() {
        assert_eq!(encode(&[(2, 1.0), (1, 1.0)]), Err(BlockError::Unsorted));
        assert_eq!(encode(&[(1, 1.0), (1, 2.0)]), Err(BlockError::Unsorted));
    }

    #[test]
    fn corrupt_blocks_are_errors_not_panics() {
        let points: Vec<(i64, f64)> = (0..50).map(|i| (i * 1000, i as f64 * 0.37)).collect();
        let data = encode(&points).expect("sorted");
        for cut in 0..data.len() {
            assert!(decode(&data[..cut]).is_err(), "truncated at {cut} decoded");
        }
        assert!(decode(&[9, 1]).is_err());
        assert!(decode(&[VERSION_GORILLA, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
