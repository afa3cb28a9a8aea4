//! Bit-level writer and reader for the snapshot codec. The reader never
//! panics on malformed input: every read past the end is an error.

#[derive(Debug, Default, Clone)]
pub struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    nbits: u32,
}

impl BitWriter {
    #[must_use]
    pub fn new() -> BitWriter {
        BitWriter::default()
    }

    /// A writer whose buffer holds `bytes` before it grows.
    #[must_use]
    pub fn with_capacity(bytes: usize) -> BitWriter {
        BitWriter { bytes: Vec::with_capacity(bytes), ..BitWriter::default() }
    }

    /// Writes the low `n` bits of `v` (n <= 64). Bits gather in `acc`
    /// (fewer than 64 between calls) and leave it 64 at a time.
    #[inline(always)]
    pub fn write(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64);
        let v = if n >= 64 { v } else { v & ((1u64 << n) - 1) };
        self.acc |= v << self.nbits;
        let total = self.nbits + n;
        if total >= 64 {
            self.bytes.extend_from_slice(&self.acc.to_le_bytes());
            // What did not fit (none when the accumulator was empty).
            self.acc = v.checked_shr(64 - self.nbits).unwrap_or(0);
            self.nbits = total - 64;
        } else {
            self.nbits = total;
        }
    }

    pub fn bit(&mut self, b: bool) {
        BitSink::bit(self, b);
    }

    /// Elias-gamma code of `v + 1` ([`BitSink::gamma`]).
    #[inline(always)]
    pub fn gamma(&mut self, v: u64) {
        BitSink::gamma(self, v);
    }

    /// Zigzag + gamma for signed values.
    #[inline(always)]
    pub fn sgamma(&mut self, v: i64) {
        BitSink::sgamma(self, v);
    }

    #[must_use]
    pub fn bit_len(&self) -> usize {
        self.bytes.len() * 8 + self.nbits as usize
    }

    #[must_use]
    pub fn finish(mut self) -> Vec<u8> {
        let tail = self.nbits.div_ceil(8) as usize;
        self.bytes.extend_from_slice(&self.acc.to_le_bytes()[..tail]);
        self.bytes
    }
}

/// Where bits are written, LSB first: the datagram's [`BitWriter`], or a
/// counter that sizes one entity's update (`pack::update_bits`). The codes
/// are defined once, here.
pub trait BitSink {
    /// Writes the low `n` bits of `v` (n <= 64).
    fn write(&mut self, v: u64, n: u32);

    #[inline(always)]
    fn bit(&mut self, b: bool) {
        self.write(u64::from(b), 1);
    }

    /// Elias-gamma code of `v + 1` (so 0 costs 1 bit, 1..2 cost 3, ...):
    /// `n` zeros, then the value's `n + 1` bits, most significant (the
    /// leading 1) first, written as one bit-reversed field.
    #[inline(always)]
    fn gamma(&mut self, v: u64) {
        let x = v.saturating_add(1);
        let n = 63 - x.leading_zeros();
        let value = x.reverse_bits() >> (63 - n);
        if n < 32 {
            // The zeros and the value in one field (all but huge values).
            self.write(value << n, 2 * n + 1);
        } else {
            self.write(0, n);
            self.write(value, n + 1);
        }
    }

    /// Zigzag + gamma for signed values.
    #[inline(always)]
    fn sgamma(&mut self, v: i64) {
        self.gamma(((v << 1) ^ (v >> 63)) as u64);
    }
}

impl BitSink for BitWriter {
    #[inline(always)]
    fn write(&mut self, v: u64, n: u32) {
        BitWriter::write(self, v, n);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bitstream ends early (wanted {wanted} bits at bit {at}, {len} bits present)")]
pub struct BitError {
    pub wanted: u32,
    pub at: usize,
    pub len: usize,
}

#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> BitReader<'a> {
        BitReader { bytes, pos: 0 }
    }

    /// The bits from the read position on, LSB first (bits past the end
    /// read as zero), and how many of them are real (at least 57 unless
    /// the end is near).
    #[inline]
    fn peek(&self) -> (u64, usize) {
        let (byte, off) = (self.pos / 8, self.pos % 8);
        let tail = self.bytes.get(byte..).unwrap_or(&[]);
        if let Some(word) = tail.first_chunk::<8>() {
            return (u64::from_le_bytes(*word) >> off, 64 - off);
        }
        let take = tail.len().min(8);
        let mut buf = [0u8; 8];
        buf[..take].copy_from_slice(&tail[..take]);
        (u64::from_le_bytes(buf) >> off, (take * 8).saturating_sub(off))
    }

    #[inline]
    pub fn read(&mut self, n: u32) -> Result<u64, BitError> {
        if n == 0 {
            return Ok(0);
        }
        if n <= 56 {
            let (v, real) = self.peek();
            if n as usize <= real {
                self.pos += n as usize;
                return Ok(v & ((1u64 << n) - 1));
            }
        }
        self.read_slow(n)
    }

    /// [`Self::read`] a byte at a time (near the end, and past 56 bits).
    fn read_slow(&mut self, n: u32) -> Result<u64, BitError> {
        let len = self.bytes.len() * 8;
        if n > 64 || self.pos + n as usize > len {
            return Err(BitError { wanted: n, at: self.pos, len });
        }
        // A byte at a time (at most 9 bytes for 64 bits).
        let (mut v, mut got, mut pos) = (0u64, 0u32, self.pos);
        while got < n {
            let byte = u64::from(self.bytes[pos / 8]);
            let off = (pos % 8) as u32;
            let take = (8 - off).min(n - got);
            v |= ((byte >> off) & ((1u64 << take) - 1)) << got;
            got += take;
            pos += take as usize;
        }
        self.pos = pos;
        Ok(v)
    }

    pub fn bit(&mut self) -> Result<bool, BitError> {
        Ok(self.read(1)? == 1)
    }

    #[inline]
    pub fn gamma(&mut self) -> Result<u64, BitError> {
        // The common case from one peek: the zeros, the 1 and the value
        // bits all within the bits at hand.
        let (v, real) = self.peek();
        let zeros = v.trailing_zeros();
        if zeros < 28 && (2 * zeros + 1) as usize <= real {
            self.pos += (2 * zeros + 1) as usize;
            if zeros == 0 {
                return Ok(0);
            }
            let low = ((v >> (zeros + 1)) & ((1u64 << zeros) - 1)).reverse_bits() >> (64 - zeros);
            return Ok(((1u64 << zeros) | low) - 1);
        }
        self.gamma_slow()
    }

    /// [`Self::gamma`] a bit at a time (long codes, and near the end).
    fn gamma_slow(&mut self) -> Result<u64, BitError> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros > 63 {
                return Err(BitError { wanted: 64, at: self.pos, len: self.bytes.len() * 8 });
            }
        }
        if zeros == 0 {
            return Ok(0);
        }
        // The bits after the leading 1 arrive most significant first.
        let low = self.read_slow(zeros)?.reverse_bits() >> (64 - zeros);
        Ok(((1u64 << zeros) | low) - 1)
    }

    #[inline]
    pub fn sgamma(&mut self) -> Result<i64, BitError> {
        let z = self.gamma()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    #[must_use]
    pub fn bits_left(&self) -> usize {
        (self.bytes.len() * 8).saturating_sub(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(vals in proptest::collection::vec((any::<u64>(), 0u32..=64, any::<i64>()), 0..50)) {
            let mut w = BitWriter::new();
            for (v, n, s) in &vals {
                w.write(*v, *n);
                w.gamma(*v >> 2);
                w.sgamma(*s >> 2);
            }
            let bytes = w.finish();
            let mut r = BitReader::new(&bytes);
            for (v, n, s) in &vals {
                let mask = if *n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                prop_assert_eq!(r.read(*n).unwrap(), v & mask);
                prop_assert_eq!(r.gamma().unwrap(), v >> 2);
                prop_assert_eq!(r.sgamma().unwrap(), s >> 2);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = BitReader::new(&bytes);
            while r.gamma().is_ok() {}
        }
    }

    /// The bit-at-a-time codes the fast paths replaced, as the reference.
    fn gamma_reference(w: &mut BitWriter, v: u64) {
        let x = v.saturating_add(1);
        let n = 63 - x.leading_zeros();
        w.write(0, n);
        for i in (0..=n).rev() {
            w.bit((x >> i) & 1 == 1);
        }
    }

    /// LSB-first, one bit at a time: the byte layout `write` must produce.
    fn bytes_reference(fields: &[(u64, u32)]) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::new();
        let mut at = 0usize;
        for &(v, n) in fields {
            for i in 0..n {
                if at.is_multiple_of(8) {
                    out.push(0);
                }
                if (v >> i) & 1 == 1 {
                    out[at / 8] |= 1 << (at % 8);
                }
                at += 1;
            }
        }
        out
    }

    proptest! {
        #[test]
        fn write_lays_bits_out_lsb_first_and_pads_the_last_byte(fields in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..60)) {
            let mut w = BitWriter::with_capacity(8);
            for &(v, n) in &fields {
                w.write(v, n);
            }
            let len = w.bit_len();
            prop_assert_eq!(len, fields.iter().map(|f| f.1 as usize).sum::<usize>());
            let bytes = w.finish();
            prop_assert_eq!(bytes.len(), len.div_ceil(8));
            prop_assert_eq!(bytes, bytes_reference(&fields));
        }

        #[test]
        fn gamma_matches_the_bitwise_reference(vals in proptest::collection::vec(any::<u64>(), 0..40), shift in 0u32..64) {
            let (mut fast, mut slow) = (BitWriter::new(), BitWriter::new());
            for v in &vals {
                fast.gamma(v >> shift);
                gamma_reference(&mut slow, v >> shift);
            }
            prop_assert_eq!(fast.finish(), slow.finish());
        }
    }

    proptest! {
        /// The one-peek paths of the reader answer exactly what the
        /// byte-at-a-time and bit-at-a-time paths answer, errors and
        /// positions included, on any bytes.
        #[test]
        fn fast_reads_match_the_slow_reads(bytes in proptest::collection::vec(any::<u8>(), 0..40), ops in proptest::collection::vec((any::<bool>(), 0u32..=70), 0..60)) {
            let (mut fast, mut slow) = (BitReader::new(&bytes), BitReader::new(&bytes));
            for &(is_gamma, n) in &ops {
                let (f, s) = if is_gamma { (fast.gamma(), slow.gamma_slow()) } else { (fast.read(n), slow.read_slow(n)) };
                prop_assert_eq!(f, s);
                prop_assert_eq!(fast.pos, slow.pos);
            }
        }
    }

    #[test]
    fn gamma_extremes_roundtrip() {
        for v in [0, 1, 2, u64::MAX - 1, u64::MAX, 1 << 63] {
            let mut w = BitWriter::new();
            w.write(5, 3);
            w.gamma(v);
            let bytes = w.finish();
            let mut r = BitReader::new(&bytes);
            assert_eq!(r.read(3).unwrap(), 5);
            // u64::MAX saturates to the code of u64::MAX - 1 + 1.
            assert_eq!(r.gamma().unwrap(), v.min(u64::MAX - 1), "{v}");
        }
    }

    #[test]
    fn gamma_sizes() {
        for (v, bits) in [(0u64, 1usize), (1, 3), (2, 3), (3, 5), (6, 5), (7, 7)] {
            let mut w = BitWriter::new();
            w.gamma(v);
            assert_eq!(w.bit_len(), bits, "{v}");
        }
    }
}
