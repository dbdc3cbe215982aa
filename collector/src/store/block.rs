//! Sample block codec: sorted unique `(ts_ms, value)` points packed as delta-of-delta timestamps and XOR floats (Gorilla).
//!
//! ## Format
//! `version (1 byte) | n (varint) | bit stream`. The bit stream holds the first timestamp and
//! value in 64 bits each, then per point a delta-of-delta timestamp code and an XOR value code:
//!
//! * timestamp: `0` (same interval), `10`+4 bits, `110`+8, `1110`+14, `11110`+24, `11111`+64, the
//!   value being the zigzag of the change of interval;
//! * value: `0` (same bits as the previous value), `10` + the meaningful bits inside the previous
//!   window, `11` + 5 bits leading zeros + 6 bits length + the meaningful bits.
//!
//! A second format stores values that are decimals with at most nine digits after the point
//! (`12.34`, integers, most of what agents send) as scaled integers: the change from the previous
//! value divided by the block's common divisor, zigzag, in `0` / `10`+6 / `110`+12 / `1110`+24 /
//! `11110`+40 / `11111`+64 bits. [`encode`] writes whichever format is shorter.
//!
//! Values round-trip bit for bit (±0, subnormals, ±MAX). Blocks hold sorted, unique timestamps:
//! [`normalize`] and [`merge`] make them so, the first point stored for a timestamp winning.
//! A general compressor over the bit stream was measured and does not pay (see
//! `examples/block_size.rs`): the stream is already near its entropy.

/// Format byte of a Gorilla block.
const VERSION_GORILLA: u8 = 1;
/// Format byte of a scaled-decimal block.
const VERSION_DECIMAL: u8 = 2;
/// Powers of ten a decimal block may scale by (exact doubles).
const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// Codes of a scaled value change: (prefix, prefix bits, payload bits).
const VALUE_CODES: [(u64, u32, u32); 5] =
    [(0b10, 2, 6), (0b110, 3, 12), (0b1110, 4, 24), (0b11110, 5, 40), (0b11111, 5, 64)];

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
        if n == 0 {
            return Ok(0);
        }
        // Up to 16 bytes from the current byte, big-endian: the n <= 64 bits after the offset.
        let byte = self.pos / 8;
        let end = (byte + 16).min(self.data.len());
        let mut window = [0u8; 16];
        window[..end - byte].copy_from_slice(&self.data[byte..end]);
        let bits = (u128::from_be_bytes(window) << (self.pos % 8)) >> (128 - n);
        self.pos += n as usize;
        Ok(bits as u64)
    }

    fn bit(&mut self) -> Result<bool, BlockError> {
        let byte = *self.data.get(self.pos / 8).ok_or(BlockError::Corrupt("truncated bit stream"))?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
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
    [(0b10, 2, 4), (0b110, 3, 8), (0b1110, 4, 14), (0b11110, 5, 24), (0b11111, 5, 64)];

fn write_code(w: &mut BitWriter, codes: &[(u64, u32, u32); 5], value: u64) {
    if value == 0 {
        w.write(0, 1);
        return;
    }
    let &(prefix, prefix_bits, payload) = codes
        .iter()
        .find(|(_, _, payload)| *payload == 64 || value < (1u64 << payload))
        .expect("the last code takes any value");
    w.write(prefix, prefix_bits);
    w.write(value, payload);
}

fn read_code(r: &mut BitReader<'_>, codes: &[(u64, u32, u32); 5]) -> Result<u64, BlockError> {
    let mut ones = 0;
    while ones < 5 && r.bit()? {
        ones += 1;
    }
    if ones == 0 { Ok(0) } else { r.read(codes[ones - 1].2) }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Whether `v` is exactly `m / 10^k` for an integer `m` below 2^53 (checked through the
/// integer, as decoding computes it: -0 is not).
fn fits(v: f64, k: usize) -> Option<i64> {
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact
    let pow = POW10[k];
    let m = (v * pow).round();
    if m.is_nan() || m.abs() >= LIMIT || ((m as i64) as f64 / pow).to_bits() != v.to_bits() {
        return None;
    }
    Some(m as i64)
}

/// The values as integers scaled by `10^k`, when every value round-trips exactly that way.
fn scaled(points: &[(i64, f64)]) -> Option<(u8, Vec<i64>)> {
    // The smallest scale that fits the values seen so far, raised as values need it: a value
    // exact at k is exact at every larger k below the limit, checked again below.
    let mut k = 0;
    for &(_, v) in points {
        while fits(v, k).is_none() {
            k += 1;
            if k == POW10.len() {
                return None;
            }
        }
    }
    let ints: Option<Vec<i64>> = points.iter().map(|&(_, v)| fits(v, k)).collect();
    Some((k as u8, ints?))
}

fn encode_decimal(points: &[(i64, f64)], k: u8, ints: &[i64]) -> Vec<u8> {
    let mut head = vec![VERSION_DECIMAL];
    put_varint(&mut head, points.len() as u64);
    head.push(k);
    let divisor = ints.windows(2).fold(0u64, |g, w| gcd(g, w[1].wrapping_sub(w[0]).unsigned_abs())).max(1);
    put_varint(&mut head, divisor);
    let mut w = BitWriter { out: head, acc: 0, bits: 0 };
    w.write(points[0].0 as u64, 64);
    w.write(ints[0] as u64, 64);
    let (mut prev_ts, mut prev_delta) = (points[0].0, 0i64);
    for (i, &(ts, _)) in points.iter().enumerate().skip(1) {
        let delta = ts.wrapping_sub(prev_ts);
        write_code(&mut w, &TS_CODES, zigzag(delta.wrapping_sub(prev_delta)));
        prev_ts = ts;
        prev_delta = delta;
        let change = ints[i].wrapping_sub(ints[i - 1]) / divisor as i64;
        write_code(&mut w, &VALUE_CODES, zigzag(change));
    }
    w.finish()
}

fn decode_decimal(data: &[u8], out: &mut Vec<(i64, f64)>) -> Result<(), BlockError> {
    let mut pos = 1;
    let n = usize::try_from(get_varint(data, &mut pos)?).map_err(|_| BlockError::Corrupt("count"))?;
    let k = *data.get(pos).ok_or(BlockError::Corrupt("truncated header"))?;
    pos += 1;
    let pow = *POW10.get(usize::from(k)).ok_or(BlockError::Corrupt("scale"))?;
    let divisor = get_varint(data, &mut pos)?;
    if divisor == 0 || divisor > i64::MAX as u64 {
        return Err(BlockError::Corrupt("divisor"));
    }
    if n > (data.len() - pos) * 4 + 1 {
        return Err(BlockError::Corrupt("count larger than the data"));
    }
    out.reserve(n);
    let mut r = BitReader { data: &data[pos..], pos: 0 };
    let mut ts = r.read(64)? as i64;
    let mut m = r.read(64)? as i64;
    out.push((ts, m as f64 / pow));
    let mut delta = 0i64;
    for _ in 1..n {
        delta = delta.wrapping_add(unzigzag(read_code(&mut r, &TS_CODES)?));
        ts = ts.wrapping_add(delta);
        m = m.wrapping_add(unzigzag(read_code(&mut r, &VALUE_CODES)?).wrapping_mul(divisor as i64));
        out.push((ts, m as f64 / pow));
    }
    Ok(())
}

/// Encodes points with strictly increasing timestamps, in the shorter of the two formats.
///
/// # Errors
/// [`BlockError::Unsorted`] when timestamps are not strictly increasing.
pub fn encode(points: &[(i64, f64)]) -> Result<Vec<u8>, BlockError> {
    if points.windows(2).any(|w| w[1].0 <= w[0].0) {
        return Err(BlockError::Unsorted);
    }
    let gorilla = encode_gorilla(points);
    if points.len() > 1
        && let Some((k, ints)) = scaled(points)
    {
        let decimal = encode_decimal(points, k, &ints);
        if decimal.len() < gorilla.len() {
            return Ok(decimal);
        }
    }
    Ok(gorilla)
}

fn encode_gorilla(points: &[(i64, f64)]) -> Vec<u8> {
    let mut head = vec![VERSION_GORILLA];
    put_varint(&mut head, points.len() as u64);
    let mut w = BitWriter { out: head, acc: 0, bits: 0 };
    let Some(&(first_ts, first_value)) = points.first() else {
        return w.finish();
    };
    w.write(first_ts as u64, 64);
    w.write(first_value.to_bits(), 64);
    let (mut prev_ts, mut prev_delta) = (first_ts, 0i64);
    let mut prev_bits = first_value.to_bits();
    let (mut lead, mut trail) = (u32::MAX, 0u32);
    for &(ts, value) in &points[1..] {
        let delta = ts.wrapping_sub(prev_ts);
        write_code(&mut w, &TS_CODES, zigzag(delta.wrapping_sub(prev_delta)));
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
    w.finish()
}

/// Number of points in a block without decoding it.
///
/// # Errors
/// A block this build does not understand.
pub fn count(data: &[u8]) -> Result<usize, BlockError> {
    if !matches!(data.first(), Some(&(VERSION_GORILLA | VERSION_DECIMAL))) {
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
    if data.first() == Some(&VERSION_DECIMAL) {
        return decode_decimal(data, out);
    }
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
        delta = delta.wrapping_add(unzigzag(read_code(&mut r, &TS_CODES)?));
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

    proptest! {
        #[test]
        fn decimal_values_round_trip_in_the_decimal_format(
            cents in prop::collection::vec(-1_000_000i64..1_000_000, 2..500),
            scale in 0usize..4,
            factor in prop_oneof![Just(1i64), Just(512), Just(4096)],
        ) {
            let points: Vec<(i64, f64)> = cents
                .iter()
                .enumerate()
                .map(|(i, c)| (i as i64 * 10_000, (c * factor) as f64 / POW10[scale]))
                .collect();
            let data = encode(&points).expect("sorted");
            prop_assert!(same(&decode(&data).expect("decode"), &points));
        }
    }

    #[test]
    fn decimal_format_is_chosen_for_two_decimal_random_walks_and_is_smaller() {
        let mut v = 1234i64;
        let points: Vec<(i64, f64)> = (0..360)
            .map(|i| {
                v += (i * 7919 % 41) - 20;
                (i * 10_000, v as f64 / 100.0)
            })
            .collect();
        let data = encode(&points).expect("sorted");
        assert_eq!(data[0], VERSION_DECIMAL);
        assert!(data.len() < encode_gorilla(&points).len() / 2, "{} bytes", data.len());
        assert!(same(&decode(&data).expect("decode"), &points));
        // -0 and values like 0.1 + 0.2 are not decimals: Gorilla keeps their bits.
        for odd in [-0.0, 0.1 + 0.2, f64::MAX, 5e-324] {
            let points = [(0, 1.0), (1, odd), (2, 2.0)];
            assert!(same(&decode(&encode(&points).expect("sorted")).expect("decode"), &points), "{odd}");
        }
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
