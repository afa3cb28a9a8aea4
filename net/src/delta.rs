//! The snapshot delta codec (Quake 3 / Fiedler model).
//!
//! A snapshot datagram updates the client's view from a baseline the
//! client acknowledged (or from nothing: a resync). It carries removals and
//! the highest-priority changed entities that fit in the byte budget; every
//! other entity keeps its baseline value. The datagram names the hash of the
//! exact view the client must hold after applying it.
//!
//! Layout (bit-packed, LSB first): type (8) = 1, seq (32), has_baseline (1)
//! [+ baseline age (6)], tick (64), view hash (64), removals: count (gamma),
//! handle deltas (gamma); updates: count (gamma), per update: handle delta
//! (gamma), new (1); new: archetype (2), shape (gamma), position (3 x 32),
//! rotation (32), velocity (3 x 16, cm/s); existing: per axis zigzag-gamma
//! mm delta, rotation mode (2: same / per-component delta / full) [+ deltas
//! or 32 bits], velocity changed (1) [+ per axis zigzag-gamma cm/s delta].

use crate::bits::{BitError, BitReader, BitWriter};
use crate::pack::{rot_parts, update_bits, write_update};
use crate::apply::{apply_into, patch_into, seek, PATCH_EVENTS};
use crate::quant::QEntity;
pub use crate::priority::Priorities;
use crate::priority::weight;
#[cfg(test)]
use crate::quant::view_hash;

pub const SNAPSHOT_TYPE: u8 = 1;

/// Header bits before removals: type, seq, baseline flag+age, tick, hash.
const HEADER_BITS: usize = 8 + 32 + 1 + 6 + 64 + 64;
/// Baselines older than this many snapshots cannot be named (ring size).
pub const MAX_BASELINE_AGE: u32 = 63;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeltaError {
    #[error("not a snapshot datagram (type {0})")]
    WrongType(u8),
    #[error(transparent)]
    Bits(#[from] BitError),
    #[error("malformed snapshot: {0}")]
    Malformed(&'static str),
}

/// A decoded snapshot header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub seq: u32,
    /// `Some(seq)` of the baseline, `None` for a resync from nothing.
    pub baseline: Option<u32>,
    pub tick: u64,
    pub hash: u64,
}

/// What one encode produced.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// The view the client will hold after applying it.
    pub view: Vec<QEntity>,
    pub hash: u64,
    pub updates: u32,
    pub new_entities: u32,
    pub removals: u32,
    /// Entities that differ from the baseline but did not fit.
    pub deferred: u32,
    /// Bits spent on updates of entities already in the baseline.
    pub changed_bits: u64,
}

fn gamma_bits(v: u64) -> usize {
    let x = v.saturating_add(1);
    2 * (63 - x.leading_zeros()) as usize + 1
}

/// The fewest bits any entity update can take (handle delta, flag, three
/// unchanged axes, rotation mode, velocity flag): below this much room the
/// budget is full.
const MIN_ENTITY_BITS: usize = 1 + 1 + 3 + 2 + 1;

/// Buffers one client's encodes reuse: once warm, an encode allocates
/// only the datagram it returns (and the view, when the session has no
/// evicted one to hand back).
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    candidates: Vec<u64>,
    base_of: Vec<u32>,
    removals: Vec<u64>,
    /// (index in current, new, its place in `sizes`).
    chosen: Vec<(usize, bool, usize)>,
    /// The chosen's update sizes in bits (in priority order).
    sizes: Vec<u32>,
    /// `chosen` in handle order (= index order in current).
    by_handle: Vec<(usize, bool, usize)>,
    /// Bit k: entry k of current is chosen (orders `chosen` by handle
    /// without a sort).
    marks: Vec<u64>,
    /// Per entry of current, its (new, place in `sizes`) while it is chosen.
    info: Vec<(bool, usize)>,
    /// The chosen entities' values, in handle order.
    updates: Vec<QEntity>,
    /// How many the last encode chose: how far the next one sorts first.
    last_chosen: u32,
}

/// A candidate's sort key, one u64 so the priority sort compares plain
/// integers: inverted priority (high bits: highest first), then the index
/// in `current` (handle order breaks ties, reproducibly), then bit 0 = new.
#[inline]
fn key(p: u32, idx: usize, new: bool) -> u64 {
    (u64::from(!p) << 32) | ((idx as u64 & 0x7fff_ffff) << 1) | u64::from(new)
}

/// Merge-joins `base` and `current` (both sorted by handle): bumps the
/// priority of every entity that differs from the baseline or is new, by
/// its weight shifted left by `shift(index in current)`, and writes its
/// [`key`] into `candidates` (sized to `current` here; returns how many
/// count), its index in `base` into `base_of`, and the baseline handles
/// gone from `current` into `removals`.
#[inline]
fn diff(base: &[QEntity], current: &[QEntity], prio: &mut Priorities, candidates: &mut Vec<u64>, base_of: &mut [u32], removals: &mut Vec<u64>, shift: impl Fn(usize) -> u32) -> usize {
    // Every slot is written before it counts (the list is cut to `n`):
    // resized only up to the world's size, so a call zeroes at most the
    // slots past the last call's count, not the whole list.
    if candidates.len() < current.len() {
        candidates.resize(current.len(), 0);
    }
    let mut n = 0;
    let (mut i, mut j) = (0, 0);
    while i < base.len() && j < current.len() {
        let (b, c) = (&base[i], &current[j]);
        if b.handle == c.handle {
            // Written without a branch on whether it changed (most of a busy
            // world does, unpredictably): the key goes in the next slot,
            // which counts only if it did.
            let d = (b.pos[0] ^ c.pos[0]) as u32 | (b.pos[1] ^ c.pos[1]) as u32 | (b.pos[2] ^ c.pos[2]) as u32 | (b.rot ^ c.rot) | (b.shape ^ c.shape);
            let dv = (b.vel[0] ^ c.vel[0]) as u16 | (b.vel[1] ^ c.vel[1]) as u16 | (b.vel[2] ^ c.vel[2]) as u16 | u16::from(b.archetype ^ c.archetype);
            let changed = (d | u32::from(dv)) != 0;
            candidates[n] = key(prio.bump(c.handle, (weight(c, false) << shift(j)) * u32::from(changed)), j, false);
            base_of[j] = i as u32;
            n += usize::from(changed);
            i += 1;
            j += 1;
        } else if b.handle < c.handle {
            removals.push(b.handle);
            i += 1;
        } else {
            candidates[n] = key(prio.bump(c.handle, weight(c, true) << shift(j)), j, true);
            n += 1;
            j += 1;
        }
    }
    removals.extend(base[i..].iter().map(|b| b.handle));
    for (j, c) in current.iter().enumerate().skip(j) {
        candidates[n] = key(prio.bump(c.handle, weight(c, true) << shift(j)), j, true);
        n += 1;
    }
    n
}

/// Encodes a snapshot of `current` against `baseline` within `budget` bytes.
/// `boost` (empty, or one per entry of `current`) shifts an entry's
/// priority weight left (interest management: near and fast first). The
/// resulting view is built in `spare` (cleared first): a session hands back
/// the view its baseline ring evicts, so once the ring is full the view
/// buffer is reused, as are the candidate lists in `scratch`.
#[allow(clippy::too_many_arguments)]
pub fn encode(
    seq: u32,
    tick: u64,
    baseline: Option<(u32, &[QEntity], u64)>,
    (current, hashes): (&[QEntity], &[u64]),
    prio: &mut Priorities,
    budget: usize,
    boost: &[u8],
    spare: Vec<QEntity>,
    scratch: &mut Scratch,
) -> Encoded {
    let empty: &[QEntity] = &[];
    let (base_seq, base, base_hash) = baseline.map_or((None, empty, 0), |(s, v, h)| (Some(s), v, h));
    let Scratch { candidates, base_of, removals, chosen, sizes, by_handle, marks, info, updates, last_chosen } = scratch;
    removals.clear();
    chosen.clear();
    sizes.clear();
    debug_assert!(current.len() < 1 << 31, "indices fit the key");
    // For each candidate in `current`, its index in `base` (the merge-join
    // knows it; no later binary search). Only candidates' entries are read.
    // Entries are written before they are read (only a candidate's is), so
    // the buffers only grow, never fill.
    if base_of.len() < current.len() {
        base_of.resize(current.len(), u32::MAX);
        info.resize(current.len(), (false, 0));
    }
    prio.set_base(base_seq, seq);
    let n = if boost.is_empty() {
        diff(base, current, prio, candidates, base_of, removals, |_| 0)
    } else {
        diff(base, current, prio, candidates, base_of, removals, |j| u32::from(boost.get(j).copied().unwrap_or(0).min(3)))
    };
    candidates.truncate(n);
    let budget_bits = budget * 8;
    // Removals: at most what fits in a quarter of the budget per snapshot.
    let max_removals = (budget_bits / 4) / 20;
    let deferred_removals = removals.len().saturating_sub(max_removals);
    removals.truncate(max_removals);
    let mut used = HEADER_BITS + 24 + removals.len() * 20 + 24;
    // Highest priority first (handle order breaks ties, reproducibly): the
    // keys ascend in that order. A budget takes a few hundred of a thousand
    // candidates, so only a prefix is put in order: the `guess` smallest
    // keys are selected in O(n) and sorted, and the rest only if the budget
    // reaches past them (the same order either way: keys are distinct).
    // Once `MISFITS_IN_A_ROW` candidates in a row did not fit what is left,
    // the rest are left for later snapshots.
    const MISFITS_IN_A_ROW: u32 = 64;
    let total_candidates = candidates.len();
    let guess = (*last_chosen as usize + *last_chosen as usize / 4 + MISFITS_IN_A_ROW as usize + 16).min(candidates.len());
    if guess < candidates.len() {
        candidates.select_nth_unstable(guess);
    }
    candidates[..guess].sort_unstable();
    let mut misfits = 0;
    let mut k = 0;
    while k < candidates.len() {
        if k == guess {
            candidates[guess..].sort_unstable();
        }
        if used + MIN_ENTITY_BITS > budget_bits || misfits == MISFITS_IN_A_ROW {
            break; // full: nothing more fits
        }
        let key = candidates[k];
        k += 1;
        let (idx, is_new) = (((key >> 1) & 0x7fff_ffff) as usize, key & 1 != 0);
        let e = &current[idx];
        // The real handle delta is known only once sorted: estimate 6 bits
        // here, exact below.
        let bits = update_bits(e, baseline_value(base, base_of, idx, is_new));
        if used + bits + 6 > budget_bits {
            misfits += 1;
            continue;
        }
        misfits = 0;
        used += bits + 6;
        chosen.push((idx, is_new, sizes.len()));
        sizes.push(bits as u32);
    }
    *last_chosen = chosen.len() as u32;
    // Exact size before building anything: header, removals, and the
    // chosen in handle order with their real handle deltas. Over budget,
    // the lowest priorities go (arithmetic only; the view is built once).
    let removal_bits = gamma_bits(removals.len() as u64) + removals.iter().scan(0u64, |prev, &h| Some(gamma_bits(h - std::mem::replace(prev, h)))).sum::<usize>();
    let header_bits = HEADER_BITS - if base_seq.is_none() { 6 } else { 0 };
    loop {
        in_handle_order(chosen, current.len(), marks, info, by_handle);
        let mut prev = 0u64;
        let mut total = header_bits + removal_bits + gamma_bits(chosen.len() as u64);
        for &(idx, _, k) in by_handle.iter() {
            let h = current[idx].handle;
            total += gamma_bits(h - prev) + sizes[k] as usize;
            prev = h;
        }
        if total.div_ceil(8) <= budget || chosen.is_empty() {
            break;
        }
        // Over by whole bytes, as the built datagram would be.
        let drop = ((total.div_ceil(8) - budget) * 8 / 40).clamp(1, chosen.len());
        chosen.truncate(chosen.len() - drop);
    }
    // `chosen` is in priority order; the size above is exact, so this
    // builds once (the loop is a guard, not a search).
    // (`by_handle` is already `chosen` in handle order: the size loop ended
    // on it.)
    let mut spare = spare;
    loop {
        let enc = encode_chosen(seq, tick, (base_seq, base_hash), (base, base_of), (current, hashes), removals, by_handle, (budget, updates), spare);
        if enc.bytes.len() <= budget || chosen.is_empty() {
            for &(idx, _, _) in chosen.iter() {
                prio.sent(current[idx].handle, seq);
            }
            let deferred = (total_candidates - chosen.len() + deferred_removals) as u32;
            return Encoded { deferred, ..enc };
        }
        debug_assert!(false, "the exact size said {} bytes fit", enc.bytes.len());
        spare = enc.view;
        chosen.truncate(chosen.len() - 1);
        in_handle_order(chosen, current.len(), marks, info, by_handle);
    }
}

/// The client's value of entry `idx` of current, the one its update is a
/// delta against (None: new to the client). Sizing and writing both take
/// it from here, so the exact size is the written size.
fn baseline_value<'a>(base: &'a [QEntity], base_of: &[u32], idx: usize, is_new: bool) -> Option<&'a QEntity> {
    if is_new { None } else { base.get(base_of[idx] as usize) }
}

/// `chosen` (in priority order) into `out` in handle order: indices in
/// `current` follow handle order, so a bitset over them sorts in one pass
/// over n / 64 words.
fn in_handle_order(chosen: &[(usize, bool, usize)], n: usize, marks: &mut Vec<u64>, info: &mut [(bool, usize)], out: &mut Vec<(usize, bool, usize)>) {
    marks.clear();
    marks.resize(n.div_ceil(64), 0);
    for &(idx, new, bits) in chosen {
        marks[idx / 64] |= 1 << (idx % 64);
        info[idx] = (new, bits);
    }
    out.clear();
    for (w, &word) in marks.iter().enumerate() {
        let mut m = word;
        while m != 0 {
            let idx = w * 64 + m.trailing_zeros() as usize;
            out.push((idx, info[idx].0, info[idx].1));
            m &= m - 1;
        }
    }
}

/// Writes the snapshot of `chosen` ((index in current, new, place in
/// `sizes`), sorted by handle).
#[allow(clippy::too_many_arguments)]
fn encode_chosen(
    seq: u32,
    tick: u64,
    (base_seq, base_hash): (Option<u32>, u64),
    (base, base_of): (&[QEntity], &[u32]),
    (current, hashes): (&[QEntity], &[u64]),
    removals: &[u64],
    chosen: &[(usize, bool, usize)],
    (budget, updates): (usize, &mut Vec<QEntity>),
    spare: Vec<QEntity>,
) -> Encoded {
    // The view after applying: what the client will compute in `decode`.
    let mut view = spare;
    // A snapshot whose updates mostly replace baseline entities (a settled
    // world's, perhaps with a few removed or new) copies the baseline in a
    // few runs and writes the replaced in place; one with many new
    // entities (a resync) takes the merge the decoder runs. (Hashes not
    // aligned with `current` would be a caller's bug: the merge, which
    // hashes what it sends itself, is right either way.)
    debug_assert_eq!(hashes.len(), current.len(), "one hash per entity");
    let events = removals.len() + chosen.iter().filter(|c| c.1).count();
    let delta = if hashes.len() == current.len() && events <= PATCH_EVENTS {
        let inserted = chosen.iter().filter(|c| c.1).map(|&(k, _, _)| (current[k], hashes[k]));
        let replaced = chosen.iter().filter(|c| !c.1).map(|&(k, _, _)| (base_of[k] as usize, current[k], hashes[k]));
        patch_into(base, removals, inserted, replaced, &mut view)
    } else {
        updates.clear();
        updates.extend(chosen.iter().map(|&(k, _, _)| current[k]));
        apply_into(base, removals, updates, &mut view)
    };
    let hash = base_hash.wrapping_add(delta);
    let mut w = BitWriter::with_capacity(budget + 8);
    w.write(u64::from(SNAPSHOT_TYPE), 8);
    w.write(u64::from(seq), 32);
    match base_seq {
        Some(b) => {
            w.bit(true);
            w.write(u64::from(seq.wrapping_sub(b)), 6);
        }
        None => w.bit(false),
    }
    w.write(tick, 64);
    w.write(hash, 64);
    w.gamma(removals.len() as u64);
    let mut prev = 0u64;
    for &h in removals {
        w.gamma(h - prev);
        prev = h;
    }
    w.gamma(chosen.len() as u64);
    let mut prev = 0u64;
    let mut changed_bits = 0u64;
    let mut new_entities = 0;
    for &(idx, is_new, _) in chosen {
        let e = &current[idx];
        let before = w.bit_len();
        w.gamma(e.handle - prev);
        write_update(&mut w, e, baseline_value(base, base_of, idx, is_new));
        if is_new {
            new_entities += 1;
        } else {
            changed_bits += (w.bit_len() - before) as u64;
        }
        prev = e.handle;
    }
    Encoded {
        bytes: w.finish(),
        view,
        hash,
        updates: chosen.len() as u32,
        new_entities,
        removals: removals.len() as u32,
        deferred: 0,
        changed_bits,
    }
}

/// Reads just the header (to find the baseline before decoding).
pub fn read_header(bytes: &[u8]) -> Result<SnapshotHeader, DeltaError> {
    let mut r = BitReader::new(bytes);
    let t = r.read(8)? as u8;
    if t != SNAPSHOT_TYPE {
        return Err(DeltaError::WrongType(t));
    }
    let seq = r.read(32)? as u32;
    let baseline = if r.bit()? { Some(seq.wrapping_sub(r.read(6)? as u32)) } else { None };
    if baseline == Some(seq) {
        return Err(DeltaError::Malformed("baseline age 0"));
    }
    let tick = r.read(64)?;
    let hash = r.read(64)?;
    Ok(SnapshotHeader { seq, baseline, tick, hash })
}

/// Applies a snapshot to its baseline view; returns the header and the new
/// view. The caller checks `view_hash(view) == header.hash`.
pub fn decode(bytes: &[u8], baseline: &[QEntity]) -> Result<(SnapshotHeader, Vec<QEntity>), DeltaError> {
    decode_hashed(bytes, baseline, 0).map(|(h, view, _)| (h, view))
}

/// [`decode`], also keeping the view hash current: given the baseline's
/// hash (0 for a resync from nothing), returns the new view's hash,
/// computed from what the snapshot changed (the caller compares it with
/// `header.hash`). Equal to `view_hash(view)` when `baseline_hash` is
/// `view_hash(baseline)`.
pub fn decode_hashed(bytes: &[u8], baseline: &[QEntity], baseline_hash: u64) -> Result<(SnapshotHeader, Vec<QEntity>, u64), DeltaError> {
    let mut view = Vec::new();
    decode_hashed_into(bytes, baseline, baseline_hash, &mut view).map(|(h, hash)| (h, view, hash))
}

/// [`decode_hashed`] into a reused buffer (its contents are replaced):
/// returns the header and the new view's hash.
pub fn decode_hashed_into(bytes: &[u8], baseline: &[QEntity], baseline_hash: u64, view: &mut Vec<QEntity>) -> Result<(SnapshotHeader, u64), DeltaError> {
    let header = read_header(bytes)?;
    let mut r = BitReader::new(bytes);
    r.read(8 + 32)?;
    if r.bit()? {
        r.read(6)?;
    }
    r.read(64)?;
    r.read(64)?;
    let nrem = r.gamma()?;
    if nrem > baseline.len() as u64 {
        return Err(DeltaError::Malformed("more removals than baseline entities"));
    }
    let mut removals = Vec::with_capacity(nrem as usize);
    let mut prev = 0u64;
    for _ in 0..nrem {
        prev = prev.checked_add(r.gamma()?).ok_or(DeltaError::Malformed("handle overflow"))?;
        removals.push(prev);
    }
    let nupd = r.gamma()?;
    // Every update takes at least 5 bits: refuse counts the bytes cannot hold.
    if nupd > r.bits_left() as u64 / 5 {
        return Err(DeltaError::Malformed("update count exceeds the datagram"));
    }
    let mut updates: Vec<QEntity> = Vec::with_capacity(nupd as usize);
    let mut prev = 0u64;
    let mut cursor = 0;
    for _ in 0..nupd {
        let d = r.gamma()?;
        if !updates.is_empty() && d == 0 {
            return Err(DeltaError::Malformed("updates not strictly ascending"));
        }
        let handle = prev.checked_add(d).ok_or(DeltaError::Malformed("handle overflow"))?;
        prev = handle;
        let is_new = r.bit()?;
        let e = if is_new {
            let archetype = r.read(2)? as u8;
            let shape = u32::try_from(r.gamma()?).map_err(|_| DeltaError::Malformed("shape"))?;
            let pos = [r.read(32)? as u32 as i32, r.read(32)? as u32 as i32, r.read(32)? as u32 as i32];
            let rot = r.read(32)? as u32;
            let vel = [r.read(16)? as u16 as i16, r.read(16)? as u16 as i16, r.read(16)? as u16 as i16];
            QEntity { handle, archetype, shape, pos, rot, vel }
        } else {
            // Updates ascend: search on from the last one found.
            let k = seek(baseline, cursor, handle);
            let b = baseline.get(k).filter(|x| x.handle == handle).copied().ok_or(DeltaError::Malformed("delta for an entity not in the baseline"))?;
            cursor = k + 1;
            let mut pos = [0i32; 3];
            for (p, base) in pos.iter_mut().zip(b.pos) {
                let d = r.sgamma()?;
                *p = i64::from(base).checked_add(d).and_then(|v| i32::try_from(v).ok()).ok_or(DeltaError::Malformed("position overflow"))?;
            }
            let rot = match r.read(2)? {
                0 => b.rot,
                1 => {
                    let bits = crate::quant::rot_bits();
                    let (idx, cb) = rot_parts(b.rot);
                    let mut out = idx << 30;
                    for (k, c) in cb.iter().enumerate() {
                        let v = c.checked_add(r.sgamma()?).ok_or(DeltaError::Malformed("rotation overflow"))?;
                        if !(0..(1i64 << bits)).contains(&v) {
                            return Err(DeltaError::Malformed("rotation component out of range"));
                        }
                        out |= (v as u32) << (bits * (2 - k as u32));
                    }
                    out
                }
                2 => r.read(32)? as u32,
                _ => return Err(DeltaError::Malformed("rotation mode")),
            };
            let mut vel = b.vel;
            if r.bit()? {
                for (v, base) in vel.iter_mut().zip(b.vel) {
                    *v = i64::from(base).checked_add(r.sgamma()?).and_then(|x| i16::try_from(x).ok()).ok_or(DeltaError::Malformed("velocity out of range"))?;
                }
            }
            QEntity { handle, archetype: b.archetype, shape: b.shape, pos, rot, vel }
        };
        updates.push(e);
    }
    let delta = apply_into(baseline, &removals, &updates, view);
    Ok((header, baseline_hash.wrapping_add(delta)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(h: u64, x: i32) -> QEntity {
        QEntity { handle: h, archetype: 0, shape: 1, pos: [x, 2 * x, -x], rot: crate::quant::quantize_rot([0.0, 0.0, 0.0, 1.0]), vel: [(x % 7) as i16, 0, -(x % 5) as i16] }
    }

    #[test]
    fn view_hashes_kept_current_equal_the_hashes_of_whole_views() {
        // A world that moves, loses and gains entities under a budget that
        // defers most changes; each snapshot acked before the next.
        let mut rng = sim_core::rng::WorldRng::from_seed(3);
        let (mut p, mut scratch) = (Priorities::default(), Scratch::default());
        let mut cur: Vec<QEntity> = (0..300).map(|h| ent(h, h as i32)).collect();
        let (mut view, mut hash): (Vec<QEntity>, u64) = (Vec::new(), 0);
        let mut next = 300;
        for seq in 1..=80u32 {
            for e in &mut cur {
                if rng.range_f32(0.0, 1.0) < 0.5 {
                    e.pos[0] += rng.range_f32(-50.0, 50.0) as i32;
                }
            }
            cur.retain(|_| rng.range_f32(0.0, 1.0) > 0.02);
            for _ in 0..rng.range_f32(0.0, 6.0) as u64 {
                cur.push(ent(next, next as i32));
                next += 1;
            }
            let base = (seq > 1).then(|| (seq - 1, view.as_slice(), hash));
            let e = encode(seq, u64::from(seq), base, (&cur, &crate::quant::entity_hashes(&cur)), &mut p, 600, &[], Vec::new(), &mut scratch);
            let (h, v, got) = decode_hashed(&e.bytes, &view, hash).expect("decode");
            assert_eq!(v, e.view, "seq {seq}");
            assert_eq!((got, e.hash), (h.hash, h.hash), "seq {seq}: client and server keep the named hash");
            assert_eq!(got, view_hash(&v), "seq {seq}: the kept hash is the whole view's");
            (view, hash) = (v, got);
        }
        assert!(view.len() * 10 > cur.len() * 9, "the view filled: {} of {}", view.len(), cur.len());
    }

    #[test]
    fn delta_roundtrip_with_removals_and_new_entities() {
        let base: Vec<QEntity> = (0..50).map(|h| ent(h, h as i32 * 10)).collect();
        let mut cur: Vec<QEntity> = (5..60).map(|h| ent(h, h as i32 * 10 + (h % 3) as i32)).collect();
        cur[7].rot = crate::quant::quantize_rot([0.1, 0.2, 0.3, 0.927]);
        let mut p = Priorities::default();
        let e = encode(9, 100, Some((7, &base, view_hash(&base))), (&cur, &crate::quant::entity_hashes(&cur)), &mut p, 1100, &[], Vec::new(), &mut Scratch::default());
        let (h, view) = decode(&e.bytes, &base).expect("decode");
        assert_eq!(h, SnapshotHeader { seq: 9, baseline: Some(7), tick: 100, hash: e.hash });
        assert_eq!(view, e.view);
        assert_eq!(view_hash(&view), h.hash);
        assert_eq!(view, cur, "everything fits: the client holds the current state");
    }

    #[test]
    fn a_boost_decides_what_a_full_budget_sends_first() {
        // Two entities changed by the same amount; a budget that fits one.
        let base: Vec<QEntity> = vec![ent(1, 0), ent(2, 0)];
        let cur: Vec<QEntity> = vec![ent(1, 100), ent(2, 100)];
        let sent = |boost: &[u8], budget: usize| {
            let e = encode(2, 1, Some((1, &base, view_hash(&base))), (&cur, &crate::quant::entity_hashes(&cur)), &mut Priorities::default(), budget, boost, Vec::new(), &mut Scratch::default());
            e.view.iter().filter(|v| cur.contains(v)).map(|v| v.handle).collect::<Vec<u64>>()
        };
        let budget = (16..200).find(|&b| sent(&[], b).len() == 1).expect("a budget that fits exactly one update");
        assert_eq!(sent(&[], budget), vec![1], "unboosted: handle order breaks the tie");
        assert_eq!(sent(&[0, 2], budget), vec![2], "the boosted entity goes first");
        assert_eq!(sent(&[3, 1], budget), vec![1]);
        assert_eq!(sent(&[0, 9], budget), vec![2], "boosts above 3 are clamped, not overflowing");
    }

    /// Snapshots in flight are deltas against the same acked view: what one
    /// sent goes out again in the next until an ack covers it (else the
    /// client's value would go back to the acked one); then the others.
    #[test]
    fn what_a_snapshot_in_flight_sent_is_sent_again_until_acked() {
        let base: Vec<QEntity> = vec![ent(1, 0), ent(2, 0)];
        let cur: Vec<QEntity> = vec![ent(1, 100), ent(2, 100)];
        let hashes = crate::quant::entity_hashes(&cur);
        let mut p = Priorities::default();
        let enc = |seq: u32, (bseq, b): (u32, &[QEntity]), budget: usize, p: &mut Priorities| {
            let e = encode(seq, u64::from(seq), Some((bseq, b, view_hash(b))), (&cur, &hashes), p, budget, &[], Vec::new(), &mut Scratch::default());
            (e.view.iter().filter(|v| cur.contains(v)).map(|v| v.handle).collect::<Vec<u64>>(), e.view)
        };
        let budget = (16..200).find(|&b| enc(2, (1, &base), b, &mut Priorities::default()).0.len() == 1).expect("a budget that fits one update");
        let (sent, v2) = enc(2, (1, &base), budget, &mut p);
        assert_eq!(sent, vec![1]);
        // No ack yet: snapshot 3 is against snapshot 1's view too.
        assert_eq!(enc(3, (1, &base), budget, &mut p).0, vec![1], "entity 1 again: else the client's 1 goes back to 0");
        // Snapshot 2 acked: entity 1 is in the baseline; entity 2's turn.
        assert_eq!(enc(4, (2, &v2), budget, &mut p).0, vec![1, 2], "the baseline holds 1, the update sends 2");
    }

    /// A client whose acks never get through gets a resync every time;
    /// what the first sent must not hold the budget for good.
    #[test]
    fn without_acks_every_entity_is_still_sent_in_turn() {
        let cur: Vec<QEntity> = (0..300).map(|h| ent(h, h as i32)).collect();
        let hashes = crate::quant::entity_hashes(&cur);
        let (mut p, mut scratch) = (Priorities::default(), Scratch::default());
        let mut seen = std::collections::BTreeSet::new();
        for seq in 1..=400 {
            let e = encode(seq, u64::from(seq), None, (&cur, &hashes), &mut p, 1100, &[], Vec::new(), &mut scratch);
            assert!(e.view.len() < cur.len(), "a budget short of the whole world");
            seen.extend(e.view.iter().map(|v| v.handle));
        }
        assert_eq!(seen.len(), cur.len(), "every entity reached the client at some point");
    }

    #[test]
    fn budget_defers_changes_and_priorities_eventually_send_everything() {
        let base: Vec<QEntity> = Vec::new();
        let cur: Vec<QEntity> = (0..901).map(|h| ent(h, h as i32)).collect();
        let mut p = Priorities::default();
        let mut view = base.clone();
        for seq in 1..=40 {
            let e = encode(seq, 1, if seq == 1 { None } else { Some((seq - 1, &view, view_hash(&view))) }, (&cur, &crate::quant::entity_hashes(&cur)), &mut p, 1100, &[], Vec::new(), &mut Scratch::default());
            assert!(e.bytes.len() <= 1100, "{}", e.bytes.len());
            let (_, v) = decode(&e.bytes, &view).expect("decode");
            assert_eq!(view_hash(&v), e.hash);
            view = v;
            if view == cur {
                return;
            }
        }
        panic!("never converged: {} of {}", view.len(), cur.len());
    }
}
