//! Sample block codec: sorted unique `(ts_ms, value)` points, written in an adaptive format (3) or as format 3 with shared timestamps (4); the Gorilla (1) and scaled-decimal (2) formats of earlier versions still decode.
//!
//! ## Format 3 (written now)
//! `3 | n (varint) | value kind | first timestamp | interval | stream codes | value header | bits`.
//! Timestamps: each gap minus the block's interval (the median gap: the agent's tick), zigzag.
//! Values, whichever is shortest of:
//! * decimal (`KIND_DECIMAL`): values that are exactly `m / 10^k` (k ≤ 9: integers, `12.34`,
//!   most of what agents send) as the change of `m` divided by the block's common divisor,
//!   zigzag or minus the smallest change (a counter's changes are never negative);
//! * rational (`KIND_RATIONAL`): values that are exactly `p / q` as a double division with
//!   `q` ≤ 2^32 (a CPU mode's share, `jiffies / total`): the change of `q` (kept near the last
//!   one by taking a multiple of the smallest denominator) and `p` minus the numerator the
//!   previous value predicts for `q`;
//! * XOR (`KIND_XOR`): Gorilla's XOR of each value with the one before (anything else).
//!
//! Each stream of integers is coded with a prefix code chosen per block from the bit lengths
//! present (`0` for zero, then two widths and an escape to 64 bits), or, when at least half are
//! zeros, as runs of zeros each ended by its nonzero value: a constant hour costs a few bytes.
//! Blocks of at most `LEGACY_POINTS` points (a pending row's share of a group commit) are also
//! tried in formats 1 and 2, whose headers are shorter.
//!
//! ## Format 4 (stored raw blocks)
//! `4 | n (varint) | value kind | group (varint) | index (varint) | value header | value bits`:
//! format 3 without its timestamps, which are tick set `index` of `group` in the block's hour
//! ([`TickRef`]). The store keeps the sets (`tick_hour`, see `store/series.rs`): all series of an
//! agent are sampled on the agent's tick, so one set serves the blocks of an agent-hour.
//! [`encode_ticked`] writes it, [`tick_ref`] reads the reference and [`decode_ticked`] decodes
//! with the set; [`decode`] refuses such a block. A set is coded by [`encode_ticks`] (a format-3
//! block of the timestamps with zero values).
//!
//! ## Formats 1 and 2 (earlier versions)
//! `version (1 byte) | n (varint) | bit stream`. The bit stream holds the first timestamp and
//! value in 64 bits each, then per point a delta-of-delta timestamp code and an XOR value code:
//!
//! * timestamp: `0` (same interval), `10`+4 bits, `110`+8, `1110`+14, `11110`+24, `11111`+64, the
//!   value being the zigzag of the change of interval;
//! * value: `0` (same bits as the previous value), `10` + the meaningful bits inside the previous
//!   window, `11` + 5 bits leading zeros + 6 bits length + the meaningful bits.
//!
//! Format 2 stores decimal values as scaled integers: the change from the previous value divided
//! by the block's common divisor, zigzag, in `0` / `10`+6 / `110`+12 / `1110`+24 / `11110`+40 /
//! `11111`+64 bits.
//!
//! Values round-trip bit for bit (±0, subnormals, ±MAX): a value that is not exactly a decimal
//! or a fraction makes the block XOR. Blocks hold sorted, unique timestamps: [`normalize`] and
//! [`merge`] make them so, the first point stored for a timestamp winning. Measured on the
//! `ingest_bench` mix (`examples/recode_blocks.rs` over a kept database): 0.627 bytes per sample
//! against 1.167 in formats 1 and 2. A general compressor over the bit stream was measured
//! earlier and did not pay (see `examples/block_size.rs`).

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

#[derive(Debug)]
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
    if points.is_empty() {
        return Ok(encode_gorilla(points));
    }
    let adaptive = encode_v3(points);
    // A few points (a pending row's share of a group commit): the older formats' shorter
    // headers may win.
    if points.len() > LEGACY_POINTS {
        return Ok(adaptive);
    }
    let legacy = encode_legacy(points);
    Ok(if legacy.len() < adaptive.len() { legacy } else { adaptive })
}

/// Encodes points in format 1 (Gorilla) only: one pass and one allocation, for the rows that
/// live until the next seal (pending and carry rows: a group commit's few points per series,
/// where trying every format cost more CPU than the bytes it saved). Any order is taken.
pub(crate) fn encode_fast(points: &[(i64, f64)]) -> Vec<u8> {
    encode_gorilla(points)
}

/// Blocks of at most this many points are also tried in formats 1 and 2.
const LEGACY_POINTS: usize = 64;

/// The shorter of formats 1 and 2 (what earlier versions wrote; tests write old databases).
pub(crate) fn encode_legacy(points: &[(i64, f64)]) -> Vec<u8> {
    let gorilla = encode_gorilla(points);
    if points.len() > 1
        && let Some((k, ints)) = scaled(points)
    {
        let decimal = encode_decimal(points, k, &ints);
        if decimal.len() < gorilla.len() {
            return decimal;
        }
    }
    gorilla
}

fn encode_gorilla(points: &[(i64, f64)]) -> Vec<u8> {
    let mut appender = Appender::default();
    for &(ts, value) in points {
        appender.push(ts, value);
    }
    appender.to_block()
}

/// Bytes one [`Appender::push`] may flush at most: up to 63 bits waiting in the accumulator,
/// a timestamp code of 69 bits and a value of 77 bits (or the first point's 128 bits).
const PUSH_BYTES: usize = 24;
/// An appender's stream grows by at least this many bytes.
const GROW_MIN_BYTES: usize = 64;

/// A format-1 (Gorilla) block built one point at a time, in arrival order (timestamps may go
/// back: the codes take any change). The in-memory head keeps each series' unsealed points in
/// one, about 1-2 bytes a point.
#[derive(Debug)]
pub(crate) struct Appender {
    w: BitWriter,
    n: usize,
    prev_ts: i64,
    prev_delta: i64,
    prev_bits: u64,
    lead: u32,
    trail: u32,
}

impl Default for Appender {
    fn default() -> Self {
        Appender {
            w: BitWriter { out: Vec::new(), acc: 0, bits: 0 },
            n: 0,
            prev_ts: 0,
            prev_delta: 0,
            prev_bits: 0,
            lead: u32::MAX,
            trail: 0,
        }
    }
}

impl Appender {
    /// Appends a point.
    pub(crate) fn push(&mut self, ts: i64, value: f64) {
        self.reserve();
        let bits = value.to_bits();
        let w = &mut self.w;
        if self.n == 0 {
            w.write(ts as u64, 64);
            w.write(bits, 64);
        } else {
            let delta = ts.wrapping_sub(self.prev_ts);
            write_code(w, &TS_CODES, zigzag(delta.wrapping_sub(self.prev_delta)));
            self.prev_delta = delta;
            let xor = bits ^ self.prev_bits;
            if xor == 0 {
                w.write(0, 1);
            } else {
                let (l, t) = (xor.leading_zeros().min(31), xor.trailing_zeros());
                if self.lead != u32::MAX && l >= self.lead && t >= self.trail {
                    w.write(0b10, 2);
                    w.write(xor >> self.trail, 64 - self.lead - self.trail);
                } else {
                    let len = 64 - l - t;
                    w.write(0b11, 2);
                    w.write(u64::from(l), 5);
                    w.write(u64::from(len & 63), 6); // 64 is written as 0
                    w.write(xor >> t, len);
                    self.lead = l;
                    self.trail = t;
                }
            }
        }
        self.prev_ts = ts;
        self.prev_bits = bits;
        self.n += 1;
    }

    /// Makes room for one push ([`PUSH_BYTES`]), growing the stream by a quarter of its length
    /// (at least [`GROW_MIN_BYTES`]) rather than doubling it: the head holds tens of thousands
    /// of streams that grow in step, and doubling left a third of the head's memory unused
    /// (`make bench-ingest`, issue #15).
    fn reserve(&mut self) {
        let out = &mut self.w.out;
        if out.capacity() - out.len() < PUSH_BYTES {
            out.reserve_exact((out.len() / 4).max(GROW_MIN_BYTES));
        }
    }

    /// Points appended.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// Bytes allocated for the bit stream.
    pub(crate) fn stream_bytes(&self) -> usize {
        self.w.out.capacity()
    }

    /// The points as a format-1 block.
    fn to_block(&self) -> Vec<u8> {
        let mut block = vec![VERSION_GORILLA];
        put_varint(&mut block, self.n as u64);
        block.extend_from_slice(&self.w.out);
        block.extend_from_slice(&self.w.acc.to_be_bytes()[..self.w.bits.div_ceil(8) as usize]);
        block
    }

    /// Appends every point to `out`, in arrival order.
    pub(crate) fn decode_into(&self, out: &mut Vec<(i64, f64)>) -> Result<(), BlockError> {
        decode_into(&self.to_block(), out)
    }
}

// ---- Format 3: adaptive codes, timestamps against the block's interval, rational values ----

/// Format byte of an adaptive block (see [`encode`]).
const VERSION_ADAPTIVE: u8 = 3;
/// Value kinds of an adaptive block.
const KIND_XOR: u8 = 0;
const KIND_DECIMAL: u8 = 1;
const KIND_RATIONAL: u8 = 2;
/// Largest denominator of a rational value (a CPU share is jiffies over total jiffies).
const MAX_DENOMINATOR: u64 = 1 << 32;
/// Points of a block that may code runs of zeros (an hour at one point per millisecond fits):
/// a corrupt count above it cannot make the decoder reserve more than the data holds.
const RUN_POINTS: usize = 3_600_001;
/// Integers below this are exact doubles.
const EXACT: u64 = 1 << 53;

/// A prefix code for non-negative integers, chosen per block and stream from the bit lengths
/// of its values. With `zero`: `0` is 0, `10`+`w1` bits, `110`+`w2` bits, `111`+64 bits;
/// without: `0`+`w1` bits, `10`+`w2` bits, `11`+64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Code {
    zero: bool,
    w1: u32,
    w2: u32,
}

fn bit_len(v: u64) -> u32 {
    64 - v.leading_zeros()
}

impl Code {
    /// The cheapest code for these values (widths among the lengths present).
    fn best(values: &[u64]) -> Code {
        Code::best_cost(values).0
    }

    /// The cheapest code for these values and the bits it takes.
    fn best_cost(values: &[u64]) -> (Code, u64) {
        let mut count = [0u64; 65];
        for &v in values {
            count[bit_len(v) as usize] += 1;
        }
        let mut at_most = [0u64; 65];
        let mut acc = 0;
        for (len, c) in count.iter().enumerate() {
            acc += c;
            at_most[len] = acc;
        }
        let n = acc;
        let lens: Vec<u32> = (1..=64u32).filter(|&l| count[l as usize] > 0).collect();
        let mut best = (u64::MAX, Code { zero: true, w1: 1, w2: 1 });
        let candidates = if lens.is_empty() { vec![1] } else { lens };
        for (i, &w1) in candidates.iter().enumerate() {
            for &w2 in &candidates[i..] {
                let (c1, c2) = (at_most[w1 as usize], at_most[w2 as usize]);
                let with_zero =
                    count[0] + (c1 - count[0]) * u64::from(2 + w1) + (c2 - c1) * u64::from(3 + w2) + (n - c2) * 67;
                let without = c1 * u64::from(1 + w1) + (c2 - c1) * u64::from(2 + w2) + (n - c2) * 66;
                if with_zero < best.0 {
                    best = (with_zero, Code { zero: true, w1, w2 });
                }
                if without < best.0 {
                    best = (without, Code { zero: false, w1, w2 });
                }
            }
        }
        (best.1, best.0)
    }

    fn put(self, out: &mut Vec<u8>) {
        out.push(if self.zero { 0x80 } else { 0 } | self.w1 as u8);
        out.push(self.w2 as u8);
    }

    fn get(data: &[u8], pos: &mut usize) -> Result<Code, BlockError> {
        let bytes = data.get(*pos..*pos + 2).ok_or(BlockError::Corrupt("truncated header"))?;
        *pos += 2;
        let code = Code { zero: bytes[0] & 0x80 != 0, w1: u32::from(bytes[0] & 0x7f), w2: u32::from(bytes[1]) };
        if code.w1 > 64 || code.w2 > 64 {
            return Err(BlockError::Corrupt("code width"));
        }
        Ok(code)
    }

    fn write(self, w: &mut BitWriter, v: u64) {
        let len = bit_len(v);
        if self.zero {
            if v == 0 {
                w.write(0, 1);
            } else if len <= self.w1 {
                w.write(0b10, 2);
                w.write(v, self.w1);
            } else if len <= self.w2 {
                w.write(0b110, 3);
                w.write(v, self.w2);
            } else {
                w.write(0b111, 3);
                w.write(v, 64);
            }
        } else if len <= self.w1 {
            w.write(0, 1);
            w.write(v, self.w1);
        } else if len <= self.w2 {
            w.write(0b10, 2);
            w.write(v, self.w2);
        } else {
            w.write(0b11, 2);
            w.write(v, 64);
        }
    }

    fn read(self, r: &mut BitReader<'_>) -> Result<u64, BlockError> {
        if self.zero {
            if !r.bit()? {
                return Ok(0);
            }
            if !r.bit()? {
                return r.read(self.w1);
            }
            if !r.bit()? { r.read(self.w2) } else { r.read(64) }
        } else {
            if !r.bit()? {
                return r.read(self.w1);
            }
            if !r.bit()? { r.read(self.w2) } else { r.read(64) }
        }
    }
}

/// How a whole stream of non-negative integers is coded: each value with a [`Code`], or, when
/// zeros come in long runs (a constant value, a counter that rarely moves), as runs of zeros
/// each followed by the nonzero value that ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seq {
    Plain(Code),
    Runs { run: Code, value: Code },
}

impl Seq {
    /// The cheaper of the two for these values (runs only in a stream of at most
    /// [`RUN_POINTS`] values).
    fn best(values: &[u64]) -> Seq {
        Seq::best_cost(values).0
    }

    /// The cheaper of the two and the bits it takes (runs tried when at least half the values
    /// are zeros).
    fn best_cost(values: &[u64]) -> (Seq, u64) {
        let (plain, plain_bits) = Code::best_cost(values);
        let zeros = values.iter().filter(|&&v| v == 0).count();
        if values.len() >= RUN_POINTS || zeros * 2 < values.len() {
            return (Seq::Plain(plain), plain_bits);
        }
        let (mut runs, mut nonzero) = (Vec::new(), Vec::new());
        let mut zeros = 0u64;
        for &v in values {
            if v == 0 {
                zeros += 1;
            } else {
                runs.push(zeros);
                nonzero.push(v);
                zeros = 0;
            }
        }
        if zeros > 0 {
            runs.push(zeros);
        }
        let ((run, run_bits), (value, value_bits)) = (Code::best_cost(&runs), Code::best_cost(&nonzero));
        let runs_bits = 16 + run_bits + value_bits;
        if runs_bits < plain_bits { (Seq::Runs { run, value }, runs_bits) } else { (Seq::Plain(plain), plain_bits) }
    }

    fn put(self, out: &mut Vec<u8>) {
        match self {
            Seq::Plain(code) => {
                out.push(0);
                code.put(out);
            }
            Seq::Runs { run, value } => {
                out.push(1);
                run.put(out);
                value.put(out);
            }
        }
    }

    fn get(data: &[u8], pos: &mut usize) -> Result<Seq, BlockError> {
        let mode = *data.get(*pos).ok_or(BlockError::Corrupt("truncated header"))?;
        *pos += 1;
        match mode {
            0 => Ok(Seq::Plain(Code::get(data, pos)?)),
            1 => Ok(Seq::Runs { run: Code::get(data, pos)?, value: Code::get(data, pos)? }),
            _ => Err(BlockError::Corrupt("stream mode")),
        }
    }

    fn write_all(self, w: &mut BitWriter, values: &[u64]) {
        match self {
            Seq::Plain(code) => values.iter().for_each(|&v| code.write(w, v)),
            Seq::Runs { run, value } => {
                let mut zeros = 0u64;
                for &v in values {
                    if v == 0 {
                        zeros += 1;
                    } else {
                        run.write(w, zeros);
                        value.write(w, v);
                        zeros = 0;
                    }
                }
                if zeros > 0 {
                    run.write(w, zeros);
                }
            }
        }
    }

    /// Reads `n` values.
    fn read_all(self, r: &mut BitReader<'_>, n: usize, out: &mut Vec<u64>) -> Result<(), BlockError> {
        out.clear();
        match self {
            Seq::Plain(code) => {
                for _ in 0..n {
                    out.push(code.read(r)?);
                }
            }
            Seq::Runs { run, value } => {
                while out.len() < n {
                    let zeros = usize::try_from(run.read(r)?).map_err(|_| BlockError::Corrupt("run"))?;
                    if zeros > n - out.len() {
                        return Err(BlockError::Corrupt("run longer than the block"));
                    }
                    out.resize(out.len() + zeros, 0);
                    if out.len() < n {
                        let v = value.read(r)?;
                        if v == 0 {
                            return Err(BlockError::Corrupt("zero ending a run"));
                        }
                        out.push(v);
                    }
                }
            }
        }
        Ok(())
    }
}

/// `p / q` (as a double division) giving exactly `v`, with `q` near `hint` when a multiple of
/// the smallest denominator is (so a share of a total that changes a little keeps its
/// denominator close to the last one, and the numerator close to the one predicted).
fn rational(v: f64, hint: u64) -> Option<(i64, u64)> {
    if !v.is_finite() || v.abs() >= EXACT as f64 {
        return None;
    }
    let exact = |p: i64, q: u64| (p as f64 / q as f64).to_bits() == v.to_bits();
    if hint > 0 {
        let p = (v * hint as f64).round();
        if p.abs() < EXACT as f64 && exact(p as i64, hint) {
            return Some((p as i64, hint));
        }
    }
    // Convergents of the continued fraction of |v|.
    let sign = if v.is_sign_negative() { -1 } else { 1 };
    let mut x = v.abs();
    let (mut h0, mut h1, mut k0, mut k1) = (0u64, 1u64, 1u64, 0u64);
    let mut found = None;
    for _ in 0..64 {
        let a = x.floor();
        if !(0.0..EXACT as f64).contains(&a) {
            break;
        }
        let a = a as u64;
        let (Some(h), Some(k)) =
            (a.checked_mul(h1).and_then(|t| t.checked_add(h0)), a.checked_mul(k1).and_then(|t| t.checked_add(k0)))
        else {
            break;
        };
        if k > MAX_DENOMINATOR || h >= EXACT {
            break;
        }
        if exact(sign * h as i64, k) {
            found = Some((sign * h as i64, k));
            break;
        }
        (h0, h1, k0, k1) = (h1, h, k1, k);
        let frac = x - a as f64;
        if frac <= 0.0 {
            break;
        }
        x = 1.0 / frac;
    }
    let (p, q) = found?;
    if hint > q {
        let m = (hint as f64 / q as f64).round() as u64;
        if let (Some(pm), Some(qm)) = (p.checked_mul(m as i64), q.checked_mul(m))
            && qm <= MAX_DENOMINATOR
            && pm.unsigned_abs() < EXACT
            && exact(pm, qm)
        {
            return Some((pm, qm));
        }
    }
    Some((p, q))
}

/// The numerator predicted for denominator `q` from the value before.
fn predict(prev: f64, q: u64) -> i64 {
    let p = (prev * q as f64).round();
    if p.is_finite() && p.abs() < EXACT as f64 { p as i64 } else { 0 }
}

/// Encodes sorted unique points (at least one) in the adaptive format with the given values.
fn encode_adaptive(
    points: &[(i64, f64)],
    ts_residuals: &[u64],
    interval: i64,
    ts_code: Seq,
    kind: u8,
    values: &Values,
    tick: Option<TickRef>,
) -> Vec<u8> {
    let mut out = vec![if tick.is_some() { VERSION_TICKED } else { VERSION_ADAPTIVE }];
    put_varint(&mut out, points.len() as u64);
    out.push(kind);
    match tick {
        Some(tick) => {
            put_varint(&mut out, tick.group);
            put_varint(&mut out, u64::from(tick.index));
        }
        None => {
            put_varint(&mut out, zigzag(points[0].0));
            put_varint(&mut out, zigzag(interval));
            ts_code.put(&mut out);
        }
    }
    match values {
        Values::Xor => {}
        Values::Decimal { k, divisor, first, offset, code, .. } => {
            out.push(*k);
            put_varint(&mut out, *divisor);
            put_varint(&mut out, zigzag(*first));
            match offset {
                None => out.push(0),
                Some(o) => {
                    out.push(1);
                    put_varint(&mut out, zigzag(*o));
                }
            }
            code.put(&mut out);
        }
        Values::Rational { first, q_code, p_code, .. } => {
            put_varint(&mut out, first.1);
            put_varint(&mut out, zigzag(first.0));
            q_code.put(&mut out);
            p_code.put(&mut out);
        }
    }
    let mut w = BitWriter { out, acc: 0, bits: 0 };
    if tick.is_none() {
        ts_code.write_all(&mut w, ts_residuals);
    }
    match values {
        Values::Xor => xor_values(&mut w, points),
        Values::Decimal { codes, code, .. } => code.write_all(&mut w, codes),
        Values::Rational { q_codes, p_codes, q_code, p_code, .. } => {
            for (&q, &p) in q_codes.iter().zip(p_codes) {
                q_code.write(&mut w, q);
                p_code.write(&mut w, p);
            }
        }
    }
    w.finish()
}

/// How an adaptive block holds its values.
enum Values {
    Xor,
    Decimal { k: u8, divisor: u64, first: i64, offset: Option<i64>, code: Seq, codes: Vec<u64> },
    Rational { first: (i64, u64), q_code: Code, p_code: Code, q_codes: Vec<u64>, p_codes: Vec<u64> },
}

fn decimal_values(k: u8, ints: &[i64]) -> Values {
    let divisor = ints.windows(2).fold(0u64, |g, w| gcd(g, w[1].wrapping_sub(w[0]).unsigned_abs())).max(1);
    let changes: Vec<i64> = ints.windows(2).map(|w| w[1].wrapping_sub(w[0]) / divisor as i64).collect();
    let zig: Vec<u64> = changes.iter().map(|&c| zigzag(c)).collect();
    let min = changes.iter().copied().min().unwrap_or(0);
    let shifted: Vec<u64> = changes.iter().map(|&c| c.wrapping_sub(min) as u64).collect();
    let ((zc, z_bits), (sc, s_bits)) = (Seq::best_cost(&zig), Seq::best_cost(&shifted));
    if s_bits + 8 < z_bits {
        Values::Decimal { k, divisor, first: ints[0], offset: Some(min), code: sc, codes: shifted }
    } else {
        Values::Decimal { k, divisor, first: ints[0], offset: None, code: zc, codes: zig }
    }
}

fn rational_values(points: &[(i64, f64)]) -> Option<Values> {
    let mut hint = 0;
    let mut pairs = Vec::with_capacity(points.len());
    for &(_, v) in points {
        let (p, q) = rational(v, hint)?;
        hint = q;
        pairs.push((p, q));
    }
    let mut q_codes = Vec::with_capacity(points.len());
    let mut p_codes = Vec::with_capacity(points.len());
    for i in 1..pairs.len() {
        let (p, q) = pairs[i];
        q_codes.push(zigzag((q as i64).wrapping_sub(pairs[i - 1].1 as i64)));
        p_codes.push(zigzag(p.wrapping_sub(predict(points[i - 1].1, q))));
    }
    Some(Values::Rational {
        first: pairs[0],
        q_code: Code::best(&q_codes),
        p_code: Code::best(&p_codes),
        q_codes,
        p_codes,
    })
}

/// Gorilla XOR values (the value half of format 1).
fn xor_values(w: &mut BitWriter, points: &[(i64, f64)]) {
    let mut prev_bits = points[0].1.to_bits();
    w.write(prev_bits, 64);
    let (mut lead, mut trail) = (u32::MAX, 0u32);
    for &(_, value) in &points[1..] {
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
}

fn read_xor_values(r: &mut BitReader<'_>, out: &mut [(i64, f64)]) -> Result<(), BlockError> {
    let mut bits = r.read(64)?;
    out[0].1 = f64::from_bits(bits);
    let (mut lead, mut trail) = (0u32, 0u32);
    for point in &mut out[1..] {
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
        point.1 = f64::from_bits(bits);
    }
    Ok(())
}

/// The shortest adaptive encoding of sorted unique points (at least one).
fn encode_v3(points: &[(i64, f64)]) -> Vec<u8> {
    encode_adaptive_any(points, None)
}

/// Format 3, or format 4 with the timestamps replaced by `tick`.
fn encode_adaptive_any(points: &[(i64, f64)], tick: Option<TickRef>) -> Vec<u8> {
    let deltas: Vec<i64> =
        if tick.is_some() { Vec::new() } else { points.windows(2).map(|w| w[1].0.wrapping_sub(w[0].0)).collect() };
    // The block's interval: the median gap (the agent's tick), so jitter costs a short code once.
    let interval = if deltas.is_empty() {
        0
    } else {
        let mid = deltas.len() / 2;
        *deltas.clone().select_nth_unstable(mid).1
    };
    let residuals: Vec<u64> = deltas.iter().map(|d| zigzag(d.wrapping_sub(interval))).collect();
    let ts_code = Seq::best(&residuals);
    let xor = encode_adaptive(points, &residuals, interval, ts_code, KIND_XOR, &Values::Xor, tick);
    if points.len() < 2 {
        return xor;
    }
    let other = if let Some((k, ints)) = scaled(points) {
        Some((KIND_DECIMAL, decimal_values(k, &ints)))
    } else {
        rational_values(points).map(|v| (KIND_RATIONAL, v))
    };
    match other {
        Some((kind, values)) => {
            let data = encode_adaptive(points, &residuals, interval, ts_code, kind, &values, tick);
            if data.len() < xor.len() { data } else { xor }
        }
        None => xor,
    }
}

// ---- Format 4: format 3 whose timestamps are a tick set shared by the blocks of an agent-hour ----

/// Format byte of a block whose timestamps are a shared tick set.
const VERSION_TICKED: u8 = 4;

/// Where a format-4 block's timestamps are: set `index` of the tick sets of `group` in the
/// block's hour (the store keeps them, see `store/series.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TickRef {
    /// The group of series sharing tick sets (the store uses the agent's first series id).
    pub group: u64,
    /// Position of the set in the group's list for the hour.
    pub index: u32,
}

/// Encodes sorted unique points (at least one) in format 4: values as format 3, timestamps as
/// a reference to a tick set equal to them (the caller keeps the set).
///
/// # Errors
/// [`BlockError::Unsorted`] when timestamps are not strictly increasing.
pub fn encode_ticked(points: &[(i64, f64)], tick: TickRef) -> Result<Vec<u8>, BlockError> {
    if points.is_empty() || points.windows(2).any(|w| w[1].0 <= w[0].0) {
        return Err(BlockError::Unsorted);
    }
    Ok(encode_adaptive_any(points, Some(tick)))
}

/// The tick set a block refers to (`None` for blocks holding their own timestamps).
///
/// # Errors
/// A truncated block.
pub fn tick_ref(data: &[u8]) -> Result<Option<TickRef>, BlockError> {
    if data.first() != Some(&VERSION_TICKED) {
        return Ok(None);
    }
    let mut pos = 1;
    get_varint(data, &mut pos)?;
    pos += 1; // value kind
    let group = get_varint(data, &mut pos)?;
    let index = u32::try_from(get_varint(data, &mut pos)?).map_err(|_| BlockError::Corrupt("tick set index"))?;
    Ok(Some(TickRef { group, index }))
}

/// Decodes a block, appending its points to `out`; a format-4 block takes its timestamps from
/// `ticks` (the set [`tick_ref`] names), others ignore it.
///
/// # Errors
/// A truncated or unknown block, or a tick set of another length.
pub fn decode_ticked(data: &[u8], ticks: &[i64], out: &mut Vec<(i64, f64)>) -> Result<(), BlockError> {
    if data.first() == Some(&VERSION_TICKED) { decode_v3(data, Some(ticks), out) } else { decode_into(data, out) }
}

/// Encodes a tick set (sorted unique timestamps) for the store.
///
/// # Errors
/// [`BlockError::Unsorted`] when timestamps are not strictly increasing.
pub fn encode_ticks(ticks: &[i64]) -> Result<Vec<u8>, BlockError> {
    let points: Vec<(i64, f64)> = ticks.iter().map(|&t| (t, 0.0)).collect();
    if points.windows(2).any(|w| w[1].0 <= w[0].0) {
        return Err(BlockError::Unsorted);
    }
    Ok(if points.is_empty() { encode_gorilla(&points) } else { encode_v3(&points) })
}

/// Decodes a tick set written by [`encode_ticks`].
///
/// # Errors
/// A truncated or unknown set.
pub fn decode_ticks(data: &[u8]) -> Result<Vec<i64>, BlockError> {
    let mut points = Vec::new();
    decode_into(data, &mut points)?;
    Ok(points.into_iter().map(|p| p.0).collect())
}

fn decode_v3(data: &[u8], ticks: Option<&[i64]>, out: &mut Vec<(i64, f64)>) -> Result<(), BlockError> {
    let mut pos = 1;
    let n = usize::try_from(get_varint(data, &mut pos)?).map_err(|_| BlockError::Corrupt("count"))?;
    if n == 0 {
        return Ok(());
    }
    let kind = *data.get(pos).ok_or(BlockError::Corrupt("truncated header"))?;
    pos += 1;
    let (first_ts, interval, ts_code) = match ticks {
        Some(ticks) => {
            get_varint(data, &mut pos)?;
            get_varint(data, &mut pos)?;
            if ticks.len() != n {
                return Err(BlockError::Corrupt("tick set of another length"));
            }
            (0, 0, Seq::Plain(Code { zero: true, w1: 1, w2: 1 }))
        }
        None => {
            let first_ts = unzigzag(get_varint(data, &mut pos)?);
            let interval = unzigzag(get_varint(data, &mut pos)?);
            (first_ts, interval, Seq::get(data, &mut pos)?)
        }
    };
    enum Head {
        Xor,
        Decimal { pow: f64, divisor: i64, first: i64, offset: Option<i64>, code: Seq },
        Rational { first: (i64, u64), q_code: Code, p_code: Code },
    }
    let head = match kind {
        KIND_XOR => Head::Xor,
        KIND_DECIMAL => {
            let k = *data.get(pos).ok_or(BlockError::Corrupt("truncated header"))?;
            pos += 1;
            let pow = *POW10.get(usize::from(k)).ok_or(BlockError::Corrupt("scale"))?;
            let divisor = get_varint(data, &mut pos)?;
            if divisor == 0 || divisor > i64::MAX as u64 {
                return Err(BlockError::Corrupt("divisor"));
            }
            let first = unzigzag(get_varint(data, &mut pos)?);
            let mode = *data.get(pos).ok_or(BlockError::Corrupt("truncated header"))?;
            pos += 1;
            let offset = match mode {
                0 => None,
                1 => Some(unzigzag(get_varint(data, &mut pos)?)),
                _ => return Err(BlockError::Corrupt("value mode")),
            };
            let code = Seq::get(data, &mut pos)?;
            Head::Decimal { pow, divisor: divisor as i64, first, offset, code }
        }
        KIND_RATIONAL => {
            let q = get_varint(data, &mut pos)?;
            let p = unzigzag(get_varint(data, &mut pos)?);
            let q_code = Code::get(data, &mut pos)?;
            let p_code = Code::get(data, &mut pos)?;
            Head::Rational { first: (p, q), q_code, p_code }
        }
        _ => return Err(BlockError::Corrupt("value kind")),
    };
    // Without runs of zeros every point takes at least two bits; runs are written only in
    // blocks of up to RUN_POINTS points: refuse counts the bytes cannot hold before reserving.
    if n > (data.len() - pos) * 4 + 1 && n > RUN_POINTS {
        return Err(BlockError::Corrupt("count larger than the data"));
    }
    let base = out.len();
    out.reserve(n);
    let mut r = BitReader { data: &data[pos..], pos: 0 };
    let mut codes = Vec::new();
    match ticks {
        Some(ticks) => out.extend(ticks.iter().map(|&t| (t, 0.0))),
        None => {
            ts_code.read_all(&mut r, n - 1, &mut codes)?;
            let mut ts = first_ts;
            out.push((ts, 0.0));
            for &c in &codes {
                ts = ts.wrapping_add(interval).wrapping_add(unzigzag(c));
                out.push((ts, 0.0));
            }
        }
    }
    let points = &mut out[base..];
    match head {
        Head::Xor => read_xor_values(&mut r, points)?,
        Head::Decimal { pow, divisor, first, offset, code } => {
            code.read_all(&mut r, n - 1, &mut codes)?;
            let mut m = first;
            points[0].1 = m as f64 / pow;
            for (point, &raw) in points[1..].iter_mut().zip(&codes) {
                let change = match offset {
                    None => unzigzag(raw),
                    Some(o) => (raw as i64).wrapping_add(o),
                };
                m = m.wrapping_add(change.wrapping_mul(divisor));
                point.1 = m as f64 / pow;
            }
        }
        Head::Rational { first: (p0, q0), q_code, p_code } => {
            let (mut q, mut prev) = (q0 as i64, p0 as f64 / q0 as f64);
            points[0].1 = prev;
            for point in &mut points[1..] {
                q = q.wrapping_add(unzigzag(q_code.read(&mut r)?));
                let qu = q as u64;
                let p = predict(prev, qu).wrapping_add(unzigzag(p_code.read(&mut r)?));
                prev = p as f64 / qu as f64;
                point.1 = prev;
            }
        }
    }
    Ok(())
}

/// Number of points in a block without decoding it.
///
/// # Errors
/// A block this build does not understand.
pub fn count(data: &[u8]) -> Result<usize, BlockError> {
    if !matches!(data.first(), Some(&(VERSION_GORILLA | VERSION_DECIMAL | VERSION_ADAPTIVE | VERSION_TICKED))) {
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
    if data.first() == Some(&VERSION_ADAPTIVE) {
        return decode_v3(data, None, out);
    }
    if data.first() == Some(&VERSION_TICKED) {
        return Err(BlockError::Corrupt("block needs its tick set"));
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

    /// Value kind of an adaptive block.
    fn kind(data: &[u8]) -> u8 {
        let mut pos = 1;
        get_varint(data, &mut pos).expect("count");
        data[pos]
    }

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
        fn appended_points_read_back_in_arrival_order(
            raw in prop::collection::vec((-5i64..5_000, special()), 0..300),
            base in prop_oneof![Just(0i64), Just(1_795_000_000_000i64), Just(i64::MIN / 2), Just(i64::MAX / 2)],
        ) {
            // Unsorted and repeated timestamps as they arrive; every bit of every value.
            let raw: Vec<(i64, f64)> = raw.into_iter().map(|(t, v)| (base + t * 997, v)).collect();
            let mut appender = Appender::default();
            let mut back = Vec::new();
            for (i, &(ts, value)) in raw.iter().enumerate() {
                appender.push(ts, value);
                // The stream grows by a quarter, not by doubling (issue #15: head memory).
                let used = appender.w.out.len();
                prop_assert!(appender.stream_bytes() <= used + (used / 4).max(GROW_MIN_BYTES));
                if i % 37 == 0 {
                    // Reads between appends see every point so far.
                    back.clear();
                    appender.decode_into(&mut back).expect("decode");
                    prop_assert!(same(&back, &raw[..=i]));
                }
            }
            back.clear();
            appender.decode_into(&mut back).expect("decode");
            prop_assert_eq!(appender.len(), raw.len());
            prop_assert!(same(&back, &raw));
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

    /// Format 4 round trip: the block's values and the tick set it refers to give back every
    /// point bit for bit; the block is no longer than format 3 and never decodes without its set.
    fn ticked_round_trip(points: &[(i64, f64)]) -> Result<(), TestCaseError> {
        if points.is_empty() {
            let tick = TickRef { group: 1, index: 0 };
            prop_assert!(encode_ticked(points, tick).is_err());
            return Ok(());
        }
        let ticks: Vec<i64> = points.iter().map(|p| p.0).collect();
        let set = encode_ticks(&ticks).expect("sorted");
        prop_assert_eq!(decode_ticks(&set).expect("set"), ticks.clone());
        let tick = TickRef { group: 16_777_215, index: 31 };
        let data = encode_ticked(points, tick).expect("sorted");
        prop_assert_eq!(tick_ref(&data).expect("ref"), Some(tick));
        prop_assert_eq!(count(&data).expect("count"), points.len());
        let mut back = Vec::new();
        decode_ticked(&data, &ticks, &mut back).expect("decode");
        prop_assert!(same(&back, points));
        prop_assert!(decode(&data).is_err(), "a format-4 block needs its tick set");
        prop_assert!(decode_ticked(&data, &ticks[1..], &mut Vec::new()).is_err(), "a set of another length");
        // Blocks of other formats ignore the set.
        let plain = encode(points).expect("sorted");
        prop_assert_eq!(tick_ref(&plain).expect("ref"), None);
        back.clear();
        decode_ticked(&plain, &[], &mut back).expect("decode");
        prop_assert!(same(&back, points));
        if points.len() > LEGACY_POINTS {
            prop_assert!(data.len() <= plain.len(), "{} > {}", data.len(), plain.len());
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn ticked_blocks_round_trip_any_values(
            raw in prop::collection::vec((-5i64..5_000, special()), 0..300),
            base in prop_oneof![Just(0i64), Just(1_795_000_000_000i64), Just(i64::MIN / 2), Just(-1i64)],
        ) {
            // Equal and out-of-order timestamps as they arrive, normalised as the store does.
            let mut points: Vec<(i64, f64)> = raw.into_iter().map(|(t, v)| (base + t * 997, v)).collect();
            normalize(&mut points);
            ticked_round_trip(&points)?;
        }

        #[test]
        fn ticked_blocks_round_trip_counters_with_resets_and_constant_runs(
            jitter in prop::collection::vec(-40i64..40, 1..2000),
            resets in prop::collection::vec(0usize..2000, 0..5),
            step in 0u32..5000,
            shares in any::<bool>(),
        ) {
            let mut value = 0.0f64;
            let points: Vec<(i64, f64)> = jitter
                .iter()
                .enumerate()
                .map(|(i, j)| {
                    value = if resets.contains(&i) { 0.0 } else { value + f64::from(step) };
                    let v = if shares { (value % 977.0) / 977.0 } else { value };
                    (1_795_000_000_000 + i as i64 * 10_000 + j, v)
                })
                .collect();
            ticked_round_trip(&points)?;
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
        assert_eq!((data[0], kind(&data)), (VERSION_ADAPTIVE, KIND_DECIMAL));
        assert_eq!(encode_legacy(&points)[0], VERSION_DECIMAL);
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

    /// Blocks written by earlier versions (formats 1 and 2, bytes as they wrote them) decode to
    /// the same points: a stored database reads after an upgrade.
    #[test]
    fn blocks_of_earlier_formats_still_decode() {
        let want: Vec<(i64, f64)> =
            (0..5).map(|i| (1_795_000_000_000 + i * 10_000 + (i % 2), 12.5 + i as f64 * 0.25)).collect();
        let decimal = [
            0x02, 0x05, 0x02, 0x19, 0x00, 0x00, 0x01, 0xa1, 0xee, 0x56, 0x5e, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x04, 0xe2, 0xf0, 0x02, 0x71, 0x14, 0x14, 0x70, 0x52, 0x41, 0x47, 0x04,
        ];
        let gorilla = [
            0x01, 0x05, 0x00, 0x00, 0x01, 0xa1, 0xee, 0x56, 0x5e, 0x00, 0x40, 0x29, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0xf0, 0x02, 0x71, 0x17, 0x00, 0x71, 0xee, 0x0f, 0xc9, 0x18, 0xe6,
        ];
        for old in [&decimal[..], &gorilla[..]] {
            assert!(same(&decode(old).expect("decode"), &want), "{old:02x?}");
            assert_eq!(count(old).expect("count"), 5);
        }
        assert_eq!(
            encode_legacy(&want),
            gorilla.to_vec(),
            "the earlier encoder still writes these bytes (the shorter)"
        );
        // Long blocks are written in the adaptive format now, which is shorter.
        let long: Vec<(i64, f64)> = (0..360).map(|i| (i * 10_000 + i % 3, (i * 7 % 41) as f64 / 100.0)).collect();
        let adaptive = encode(&long).expect("sorted");
        assert_eq!(adaptive[0], VERSION_ADAPTIVE);
        assert!(adaptive.len() < encode_legacy(&long).len());
        assert!(same(&decode(&encode_legacy(&long)).expect("legacy"), &long));
    }

    fn shares() -> impl Strategy<Value = Vec<(i64, f64)>> {
        // A CPU mode's share of the jiffies of a tick, `d / total`, as the agent computes it.
        prop::collection::vec((0u32..5000, 3900u32..4100, -3i64..3), 2..400).prop_map(|v| {
            v.iter()
                .enumerate()
                .map(|(i, &(d, total, jitter))| {
                    (i as i64 * 10_000 + jitter, f64::from(d.min(total)) / f64::from(total))
                })
                .collect()
        })
    }

    proptest! {
        /// The adaptive format: rational values, runs of equal values, jitter, specials mixed in
        /// (which fall back to XOR), each bit of the values back.
        #[test]
        fn adaptive_blocks_round_trip_bit_for_bit(
            points in prop_oneof![
                shares(),
                // Long constant runs with rare changes (a counter that rarely moves, with resets).
                prop::collection::vec((0u8..200, special()), 2..40).prop_map(|runs| {
                    let mut out = Vec::new();
                    for (len, v) in runs {
                        for _ in 0..=len {
                            out.push((out.len() as i64 * 10_000 + (out.len() as i64 % 7 == 0) as i64, v));
                        }
                    }
                    out
                }),
                prop::collection::vec((-2i64..3, special()), 2..300).prop_map(|v| {
                    v.into_iter().enumerate().map(|(i, (j, x))| (i as i64 * 1_000 + j, x)).collect()
                }),
            ],
        ) {
            let mut points = points;
            normalize(&mut points);
            let data = encode(&points).expect("sorted");
            prop_assert!(same(&decode(&data).expect("decode"), &points));
            prop_assert!(data.len() <= encode_legacy(&points).len() + 16, "never much longer than before");
            for cut in [1, data.len() / 2, data.len() - 1] {
                prop_assert!(decode(&data[..cut]).is_err() || data[..cut] == data[..]);
            }
        }
    }

    #[test]
    fn shares_of_a_total_are_stored_as_fractions() {
        let mut d = 1200u32;
        let points: Vec<(i64, f64)> = (0..360u32)
            .map(|i| {
                d = (d + i * 7919 % 81).saturating_sub(40);
                let total = 3997 + i * 31 % 7;
                (i64::from(i) * 10_000, f64::from(d) / f64::from(total))
            })
            .collect();
        let data = encode(&points).expect("sorted");
        assert_eq!((data[0], kind(&data)), (VERSION_ADAPTIVE, KIND_RATIONAL));
        assert!(data.len() * 3 < encode_legacy(&points).len(), "{} vs {}", data.len(), encode_legacy(&points).len());
        assert!(same(&decode(&data).expect("decode"), &points));
        // -0, subnormals, ±MAX and infinities are not fractions: the block keeps their bits.
        for odd in [-0.0, 5e-324, f64::MAX, f64::MIN, f64::INFINITY, 0.1 + 0.2] {
            let mut with = points.clone();
            with[100].1 = odd;
            assert!(same(&decode(&encode(&with).expect("sorted")).expect("decode"), &with), "{odd}");
        }
    }

    #[test]
    fn a_constant_hour_costs_a_few_bytes_of_values() {
        let points: Vec<(i64, f64)> = (0..360).map(|i| (i * 10_000, 1_073_741_824.0)).collect();
        let data = encode(&points).expect("sorted");
        assert!(data.len() < 32, "{} bytes", data.len());
        assert!(same(&decode(&data).expect("decode"), &points));
    }

    #[test]
    fn corrupt_blocks_are_errors_not_panics() {
        let points: Vec<(i64, f64)> = (0..50).map(|i| (i * 1000, i as f64 * 0.37)).collect();
        let data = encode(&points).expect("sorted");
        for cut in 0..data.len() {
            assert!(decode(&data[..cut]).is_err(), "truncated at {cut} decoded");
        }
        assert!(decode(&[9, 1]).is_err());
        let long: Vec<(i64, f64)> = (0..500).map(|i| (i * 1000 + i % 3, i as f64 * 0.37)).collect();
        let data = encode(&long).expect("sorted");
        assert_eq!(data[0], VERSION_ADAPTIVE);
        for cut in 0..data.len() {
            assert!(decode(&data[..cut]).is_err(), "truncated at {cut} decoded");
        }
        // A count far beyond the data is refused before anything is reserved.
        assert!(decode(&[VERSION_ADAPTIVE, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(decode(&[VERSION_GORILLA, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
