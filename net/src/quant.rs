//! Quantized replication state: positions to 1 mm, rotations as
//! smallest-three quaternions (IDL `quant`), entities sorted by handle.
//! Clients hold exactly this, so the hash of a quantized view is what a
//! client proves it reconstructed.

use sim_core::schema::Quant;
use sim_core::{Archetype, ColumnId, World};

/// One replicated entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct QEntity {
    pub handle: u64,
    pub archetype: u8,
    pub shape: u32,
    /// Position in units of 1 / scale metres (mm by the IDL).
    pub pos: [i32; 3],
    /// Smallest-three: index of the dropped component in bits 30..32, then
    /// three `ROT_BITS` fields.
    pub rot: u32,
    /// Linear velocity in units of 1 / scale m/s (cm/s by the IDL), for
    /// extrapolating past the newest snapshot.
    pub vel: [i16; 3],
}

/// A sorted set of quantized entities (a client's view).
pub type QView = Vec<QEntity>;

/// Position scale from the IDL (`pos_x` is `fixed` with `scale`).
#[must_use]
pub fn pos_scale() -> f32 {
    match ColumnId::PosX.desc().quant {
        Quant::Fixed { scale, .. } => scale,
        _ => 1000.0,
    }
}

/// Bits per smallest-three component from the IDL.
#[must_use]
pub fn rot_bits() -> u32 {
    match ColumnId::RotX.desc().quant {
        Quant::Smallest3 { bits } => u32::from(bits),
        _ => 10,
    }
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Quantizes a unit quaternion (x, y, z, w) to smallest-three.
#[must_use]
pub fn quantize_rot(q: [f32; 4]) -> u32 {
    let bits = rot_bits();
    let max = ((1u32 << bits) - 1) as f32;
    let mut largest = 0;
    for i in 1..4 {
        if q[i].abs() > q[largest].abs() {
            largest = i;
        }
    }
    let sign = if q[largest] < 0.0 { -1.0 } else { 1.0 };
    let mut out = (largest as u32) << 30;
    let mut shift = 0;
    for (i, &c) in q.iter().enumerate() {
        if i == largest {
            continue;
        }
        let v = (c * sign / FRAC_1_SQRT_2).clamp(-1.0, 1.0);
        let qv = ((v * 0.5 + 0.5) * max).round() as u32;
        out |= qv << (bits * (2 - shift));
        shift += 1;
    }
    out
}

/// Back to a unit quaternion (for rendering and interpolation).
#[must_use]
pub fn dequantize_rot(r: u32) -> [f32; 4] {
    let bits = rot_bits();
    let max = ((1u32 << bits) - 1) as f32;
    let mask = (1u32 << bits) - 1;
    let largest = (r >> 30) as usize;
    let mut q = [0.0f32; 4];
    let mut k = 0;
    let mut sum = 0.0;
    for (i, slot) in q.iter_mut().enumerate() {
        if i == largest {
            continue;
        }
        let v = ((r >> (bits * (2 - k))) & mask) as f32;
        let c = (v / max * 2.0 - 1.0) * FRAC_1_SQRT_2;
        *slot = c;
        sum += c * c;
        k += 1;
    }
    q[largest] = (1.0 - sum).max(0.0).sqrt();
    q
}

#[must_use]
pub fn quantize_pos(p: [f32; 3]) -> [i32; 3] {
    let s = pos_scale();
    p.map(|x| (x * s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32)
}

/// Velocity scale from the IDL (`linvel_x` is `fixed` with `scale`).
#[must_use]
pub fn vel_scale() -> f32 {
    match ColumnId::LinvelX.desc().quant {
        Quant::Fixed { scale, .. } => scale,
        _ => 100.0,
    }
}

#[must_use]
pub fn quantize_vel(v: [f32; 3]) -> [i16; 3] {
    let s = vel_scale();
    // NaN becomes 0 under `as`; out of range saturates.
    v.map(|x| (x * s).round() as i16)
}

#[must_use]
pub fn dequantize_vel(v: [i16; 3]) -> [f32; 3] {
    let s = vel_scale();
    v.map(|x| f32::from(x) / s)
}

#[must_use]
pub fn dequantize_pos(p: [i32; 3]) -> [f32; 3] {
    let s = pos_scale();
    p.map(|x| x as f32 / s)
}

/// Quantizes every entity of the world, sorted by handle.
#[must_use]
pub fn quantize_world(w: &World) -> QView {
    let mut out = Vec::with_capacity(w.entity_count());
    for a in Archetype::ALL {
        let t = w.table(a);
        let (px, py, pz) = (t.f32(ColumnId::PosX), t.f32(ColumnId::PosY), t.f32(ColumnId::PosZ));
        let (rx, ry, rz, rw) = (t.f32(ColumnId::RotX), t.f32(ColumnId::RotY), t.f32(ColumnId::RotZ), t.f32(ColumnId::RotW));
        let shape = t.u32(ColumnId::Shape);
        let (vx, vy, vz) = (t.f32(ColumnId::LinvelX), t.f32(ColumnId::LinvelY), t.f32(ColumnId::LinvelZ));
        for (i, &h) in t.handles().iter().enumerate() {
            out.push(QEntity {
                handle: h,
                archetype: a as u8,
                shape: shape[i],
                pos: quantize_pos([px[i], py[i], pz[i]]),
                rot: quantize_rot([rx[i], ry[i], rz[i], rw[i]]),
                vel: quantize_vel([vx[i], vy[i], vz[i]]),
            });
        }
    }
    out.sort_unstable_by_key(|e| e.handle);
    out
}

/// Bytes of one entity's record in [`view_hash`].
pub const RECORD_BYTES: usize = 40;

/// One entity's fixed little-endian record (what [`view_hash`] hashes).
#[must_use]
pub fn record(e: &QEntity) -> [u8; RECORD_BYTES] {
    let mut rec = [0u8; RECORD_BYTES];
    rec[0..8].copy_from_slice(&e.handle.to_le_bytes());
    rec[8] = e.archetype;
    rec[12..16].copy_from_slice(&e.shape.to_le_bytes());
    rec[16..20].copy_from_slice(&e.pos[0].to_le_bytes());
    rec[20..24].copy_from_slice(&e.pos[1].to_le_bytes());
    rec[24..28].copy_from_slice(&e.pos[2].to_le_bytes());
    rec[28..32].copy_from_slice(&e.rot.to_le_bytes());
    for (k, v) in e.vel.iter().enumerate() {
        rec[32 + 2 * k..34 + 2 * k].copy_from_slice(&v.to_le_bytes());
    }
    rec
}

/// One entity's hash: xxh3-64 of its [`record`].
#[must_use]
pub fn entity_hash(e: &QEntity) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&record(e))
}

/// Hash of a view: the wrapping sum of its entities' [`entity_hash`]es.
/// A sum does not depend on order, so both ends keep it current from the
/// entities a snapshot changes (add the new records' hashes, subtract the
/// replaced and removed ones') instead of rehashing the whole view.
#[must_use]
pub fn view_hash(v: &[QEntity]) -> u64 {
    v.iter().fold(0u64, |h, e| h.wrapping_add(entity_hash(e)))
}

/// Each entity's [`entity_hash`], in order: computed once per tick and
/// shared by every client's encode (each adds the hashes of the records it
/// sends to its view's hash).
#[must_use]
pub fn entity_hashes(v: &[QEntity]) -> Vec<u64> {
    v.iter().map(entity_hash).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_roundtrip_is_close_and_requantizes_identically() {
        let mut rng = sim_core::rng::WorldRng::from_seed(3);
        for _ in 0..2000 {
            let mut q = [rng.range_f32(-1.0, 1.0), rng.range_f32(-1.0, 1.0), rng.range_f32(-1.0, 1.0), rng.range_f32(-1.0, 1.0)];
            let n = q.iter().map(|x| x * x).sum::<f32>().sqrt();
            if n < 0.1 {
                continue;
            }
            q = q.map(|x| x / n);
            let r = quantize_rot(q);
            let d = dequantize_rot(r);
            let dot: f32 = q.iter().zip(&d).map(|(a, b)| a * b).sum::<f32>().abs();
            assert!(dot > 0.9995, "{q:?} -> {d:?}");
        }
    }

    #[test]
    fn view_hash_is_the_wrapping_sum_of_xxh3_over_each_record() {
        let v: Vec<QEntity> = (0..200u64).map(|h| QEntity { handle: h * 3 + 1, archetype: (h % 3) as u8, shape: h as u32, pos: [h as i32, -(h as i32), 7], rot: h as u32 * 77, vel: [h as i16, 0, -1] }).collect();
        for n in [0, 1, 63, 64, 65, 200] {
            let sum = v[..n].iter().map(|e| xxhash_rust::xxh3::xxh3_64(&record(e))).fold(0u64, u64::wrapping_add);
            assert_eq!(view_hash(&v[..n]), sum, "{n} entities");
        }
        // The record: handle, archetype, 3 zero bytes, shape, pos, rot, vel, 2 zero bytes.
        let r = record(&v[5]);
        assert_eq!(r[..8], 16u64.to_le_bytes());
        assert_eq!(r[8..12], [2, 0, 0, 0]);
        assert_eq!(r[38..], [0, 0]);
        let mut moved = v[5];
        moved.pos[1] += 1;
        assert_ne!(entity_hash(&moved), entity_hash(&v[5]), "a millimetre changes the hash");
    }

    #[test]
    fn positions_are_millimetres() {
        assert_eq!(quantize_pos([1.0, -0.0004, 2.3456]), [1000, 0, 2346]);
    }
}
