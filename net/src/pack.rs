//! One entity's update in a snapshot after its handle delta, as bits: the
//! encoder sizes a candidate by counting the bits its update would take
//! ([`update_bits`], the writing code run over a counter), and writes the
//! chosen straight into the datagram once they are in handle order (the
//! handle delta is known only then).
//!
//! Layout (LSB first): new (1); new: archetype (2), shape (gamma), position
//! (3 x 32), rotation (32), velocity (3 x 16, cm/s); existing: per axis
//! zigzag-gamma mm delta, rotation mode (2: same / per-component delta /
//! full) [+ deltas or 32 bits], velocity changed (1) [+ per axis
//! zigzag-gamma cm/s delta].

use crate::bits::BitSink;
#[cfg(test)]
use crate::bits::BitWriter;
use crate::quant::QEntity;

/// A sink that only counts: an update's exact size from the very code
/// that writes it (the values' bits are never assembled).
#[derive(Clone, Copy, Debug, Default)]
struct BitCount(u32);

impl BitSink for BitCount {
    #[inline(always)]
    fn write(&mut self, _v: u64, n: u32) {
        self.0 += n;
    }
}

/// The bits `e`'s update against its baseline value (`None`: new to the
/// client) takes.
#[inline]
pub(crate) fn update_bits(e: &QEntity, base: Option<&QEntity>) -> usize {
    let mut c = BitCount(0);
    write_update(&mut c, e, base);
    c.0 as usize
}

/// A smallest-three rotation: (index of the dropped component, the three
/// fields).
pub(crate) fn rot_parts(r: u32) -> (u32, [i64; 3]) {
    let b = crate::quant::rot_bits();
    let m = (1u32 << b) - 1;
    (r >> 30, [i64::from((r >> (2 * b)) & m), i64::from((r >> b) & m), i64::from(r & m)])
}

/// Writes `e`'s update against its baseline value into `w`.
#[inline(always)]
pub(crate) fn write_update<S: BitSink>(w: &mut S, e: &QEntity, base: Option<&QEntity>) {
    match base {
        None => {
            w.bit(true);
            w.write(u64::from(e.archetype), 2);
            w.gamma(u64::from(e.shape));
            for p in e.pos {
                w.write(u64::from(p as u32), 32);
            }
            w.write(u64::from(e.rot), 32);
            for v in e.vel {
                w.write(u64::from(v as u16), 16);
            }
        }
        Some(b) => {
            w.bit(false);
            for k in 0..3 {
                w.sgamma(i64::from(e.pos[k]) - i64::from(b.pos[k]));
            }
            let (ia, ca) = rot_parts(e.rot);
            let (ib, cb) = rot_parts(b.rot);
            if e.rot == b.rot {
                w.write(0, 2);
            } else if ia == ib && (0..3).all(|k| (ca[k] - cb[k]).abs() < 64) {
                w.write(1, 2);
                for k in 0..3 {
                    w.sgamma(ca[k] - cb[k]);
                }
            } else {
                w.write(2, 2);
                w.write(u64::from(e.rot), 32);
            }
            // Velocity: 1 bit "same as the baseline", else per-axis deltas.
            if e.vel == b.vel {
                w.bit(false);
            } else {
                w.bit(true);
                for k in 0..3 {
                    w.sgamma(i64::from(e.vel[k]) - i64::from(b.vel[k]));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entity() -> impl Strategy<Value = QEntity> {
        (any::<u8>(), any::<u32>(), any::<[i32; 3]>(), any::<u32>(), any::<[i16; 3]>()).prop_map(|(a, shape, pos, rot, vel)| QEntity { handle: 7, archetype: a % 4, shape, pos, rot, vel })
    }

    proptest! {
        /// The count is what writing takes, at any offset in the datagram,
        /// for any values (extremes too).
        #[test]
        fn counting_is_writing(e in entity(), b in entity(), near in any::<bool>(), lead in 0u32..64, new in any::<bool>()) {
            // Near: small deltas, the common case (the rotation's index kept).
            let b = if near { QEntity { pos: [e.pos[0].wrapping_sub(3), e.pos[1], e.pos[2].wrapping_add(200)], rot: e.rot ^ 0x5, vel: [e.vel[0], e.vel[1].wrapping_add(1), e.vel[2]], ..e } } else { b };
            let base = if new { None } else { Some(&b) };
            let mut w = BitWriter::new();
            w.write(0x5a5a, lead);
            write_update(&mut w, &e, base);
            prop_assert_eq!(w.bit_len(), lead as usize + update_bits(&e, base));
        }
    }

    #[test]
    fn the_largest_updates_fit() {
        let far = QEntity { handle: 1, archetype: 3, shape: u32::MAX, pos: [i32::MAX; 3], rot: 0x3fff_ffff, vel: [i16::MAX; 3] };
        let near = QEntity { pos: [i32::MIN; 3], rot: 0x4000_0000, vel: [i16::MIN; 3], ..far };
        assert_eq!(update_bits(&far, None), 244);
        assert_eq!(update_bits(&far, Some(&near)), 1 + 3 * 65 + 2 + 32 + 1 + 3 * 33);
        // The same dropped component, each field 63 apart: the longest
        // rotation (per-component deltas, not the 32-bit form).
        let (a, b) = (0x4000_0000 | (70 << 20) | (70 << 10) | 70, 0x4000_0000 | (7 << 20) | (7 << 10) | 7);
        let widest = update_bits(&QEntity { rot: a, ..far }, Some(&QEntity { rot: b, ..near }));
        assert_eq!(widest, 1 + 3 * 65 + 2 + 3 * 13 + 1 + 3 * 33);
    }
}
