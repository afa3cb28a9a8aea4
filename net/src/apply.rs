//! A snapshot applied to a view: the merge both the encoder and the
//! decoder build the next view with ([`crate::delta`]), so their views
//! cannot disagree.

use crate::quant::{entity_hash, QEntity};

/// The view after a snapshot, built in `view` (cleared first; its capacity
/// is reused): `base` without `removals`, with `updates` replacing or
/// inserting entities (all three sorted by handle). Encoder and decoder
/// both use this, so their views cannot disagree. Returns what the view
/// hash changes by (wrapping): the hashes of the records that came in
/// minus those of the records that went out.
pub(crate) fn apply_into(base: &[QEntity], removals: &[u64], updates: &[QEntity], view: &mut Vec<QEntity>) -> u64 {
    let mut delta = 0u64;
    view.clear();
    view.reserve(base.len() + updates.len());
    // Runs of untouched baseline entities are copied whole; each removal or
    // update finds its place by a galloping search from the last one (a
    // snapshot touches a few hundred of a view's thousands of entities).
    let (mut bi, mut ri, mut ui) = (0, 0, 0);
    loop {
        let (r, u) = (removals.get(ri).copied(), updates.get(ui));
        let h = match (r, u) {
            (None, None) => break,
            (Some(r), None) => r,
            (None, Some(u)) => u.handle,
            (Some(r), Some(u)) => r.min(u.handle),
        };
        let k = seek(base, bi, h);
        view.extend_from_slice(&base[bi..k]);
        bi = k;
        let old = base.get(bi).filter(|b| b.handle == h);
        if let Some(b) = old {
            delta = delta.wrapping_sub(entity_hash(b));
            bi += 1;
        }
        match u {
            // An update wins over a removal of the same handle.
            Some(u) if u.handle == h => {
                delta = delta.wrapping_add(entity_hash(u));
                view.push(*u);
                ui += 1;
                if r == Some(h) {
                    ri += 1;
                }
            }
            _ => ri += 1,
        }
    }
    view.extend_from_slice(&base[bi..]);
    delta
}

/// Most events (removals and new entities) the encoder patches; more
/// (a resync's) take the merge.
pub(crate) const PATCH_EVENTS: usize = 16;

/// What [`apply_into`] builds when each update's place is known: the
/// `replaced` by their index in `base` (ascending; their new value and its
/// entity hash), the `inserted` (new to `base`, ascending by handle, with
/// their hashes) and the `removals` (sorted by handle; one not in `base`
/// removes nothing, as in the merge); best for a few events.
/// `base` is copied in as many runs as there are events (a settled
/// world's snapshot: one), then the replaced are written over their
/// entries in place, with no search. Returns the same hash change. No
/// handle may be both replaced and removed (the encoder's removals are
/// entities gone from the world, its replaced are in it). Allocates only to
/// grow `view` (a fresh buffer, a bigger world) and when there are
/// events.
pub(crate) fn patch_into(
    base: &[QEntity],
    removals: &[u64],
    inserted: impl Iterator<Item = (QEntity, u64)>,
    replaced: impl Iterator<Item = (usize, QEntity, u64)>,
    view: &mut Vec<QEntity>,
) -> u64 {
    view.clear();
    let mut delta = 0u64;
    // Where each event fell in `base`, and whether it added an entry or
    // took one away, in order (no allocation without events).
    let mut events: Vec<(usize, bool)> = Vec::new();
    let (mut from, mut ri) = (0, 0);
    let mut inserted = inserted.peekable();
    loop {
        let (r, i) = (removals.get(ri).copied(), inserted.peek().map(|(e, _)| e.handle));
        let (h, is_removal) = match (r, i) {
            (None, None) => break,
            (Some(r), Some(i)) if r < i => (r, true),
            (Some(r), None) => (r, true),
            (_, Some(i)) => (i, false),
        };
        let at = seek(base, from, h);
        view.extend_from_slice(&base[from..at]);
        from = at;
        if is_removal {
            ri += 1;
            if base.get(at).is_none_or(|b| b.handle != h) {
                continue;
            }
            delta = delta.wrapping_sub(entity_hash(&base[at]));
            from = at + 1;
        } else if let Some((e, hash)) = inserted.next() {
            delta = delta.wrapping_add(hash);
            view.push(e);
        }
        events.push((at, !is_removal));
    }
    view.extend_from_slice(&base[from..]);
    // An entry of `base` at `b` moved by the inserts at or before it less
    // the removals before it.
    let (mut shift, mut k) = (0isize, 0);
    for (b, e, hash) in replaced {
        while let Some(&(at, added)) = events.get(k).filter(|ev| ev.0 <= b) {
            debug_assert!(added || at < b, "a replaced entry is never removed");
            shift += if added { 1 } else { -1 };
            k += 1;
        }
        let at = b.wrapping_add_signed(shift);
        delta = delta.wrapping_sub(entity_hash(&view[at])).wrapping_add(hash);
        view[at] = e;
    }
    delta
}

/// The first index at or after `from` whose handle is at least `h` (`v`
/// sorted by handle): a galloping search, O(log distance from `from`).
pub(crate) fn seek(v: &[QEntity], from: usize, h: u64) -> usize {
    let (mut lo, mut hi, mut step) = (from, from, 1);
    while hi < v.len() && v[hi].handle < h {
        lo = hi + 1;
        hi += step;
        step *= 2;
    }
    let hi = hi.min(v.len());
    lo + v[lo..hi].partition_point(|b| b.handle < h)
}

#[cfg(test)]
mod tests {
    use super::{apply_into, patch_into, seek};
    use crate::quant::QEntity;
    use proptest::prelude::any;

    proptest::proptest! {
        /// Patching builds the view and hash change the merge builds, for
        /// any replaced subset of a view, removals (some not in it) and
        /// new entities anywhere among its handles.
        #[test]
        fn patching_is_the_merge(n in 0usize..120, picks in proptest::collection::vec((any::<proptest::sample::Index>(), any::<i32>()), 0..40), gone in proptest::collection::vec(0u64..400, 0..6), born in proptest::collection::vec(0u64..400, 0..6)) {
            let base: Vec<QEntity> = (0..n as u64).map(|k| QEntity { handle: 3 * k + 1, archetype: 0, shape: 1, pos: [k as i32, 2, -1], rot: 7, vel: [1; 3] }).collect();
            let mut at: Vec<usize> = if n == 0 { Vec::new() } else { picks.iter().map(|(i, _)| i.index(n)).collect() };
            at.sort_unstable();
            at.dedup();
            // Removals: handles of entries not replaced (some not in `base` at all).
            let mut removals: Vec<u64> = gone.into_iter().filter(|h| !at.iter().any(|&i| base[i].handle == *h)).collect();
            removals.sort_unstable();
            removals.dedup();
            // New entities: handles `base` lacks (3k + 1 never), some next to removed ones.
            let mut new: Vec<u64> = born.into_iter().map(|h| if h % 3 == 1 { h + 1 } else { h }).collect();
            new.sort_unstable();
            new.dedup();
            let fresh: Vec<QEntity> = new.iter().map(|&h| QEntity { handle: h, archetype: 2, shape: 3, pos: [h as i32, 0, 9], rot: 1, vel: [0; 3] }).collect();
            let replaced: Vec<QEntity> = at.iter().zip(&picks).map(|(&i, &(_, x))| QEntity { pos: [x, x / 3, 5], ..base[i] }).collect();
            let mut updates: Vec<QEntity> = replaced.iter().chain(&fresh).copied().collect();
            updates.sort_unstable_by_key(|e| e.handle);
            let (mut merged, mut patched) = (Vec::new(), [base[0..n.min(3)].to_vec(), base.clone()].concat());
            let d1 = apply_into(&base, &removals, &updates, &mut merged);
            let hashed = |e: QEntity| (e, crate::quant::entity_hash(&e));
            let d2 = patch_into(&base, &removals, fresh.iter().copied().map(hashed), at.iter().copied().zip(replaced.iter().copied()).map(|(i, e)| (i, e, crate::quant::entity_hash(&e))), &mut patched);
            proptest::prop_assert_eq!(merged, patched);
            proptest::prop_assert_eq!(d1, d2);
        }

        /// The galloping search finds what a partition point over the
        /// rest of the slice finds, wherever it starts.
        #[test]
        fn seek_is_a_partition_point(mut hs in proptest::collection::vec(0u64..500, 0..200), from in 0usize..220, h in 0u64..520) {
            hs.sort_unstable();
            hs.dedup();
            let v: Vec<QEntity> = hs.iter().map(|&x| QEntity { handle: x, archetype: 0, shape: 1, pos: [1, 2, -1], rot: 0, vel: [0; 3] }).collect();
            let from = from.min(v.len());
            proptest::prop_assert_eq!(seek(&v, from, h), from + v[from..].partition_point(|b| b.handle < h));
        }
    }
}
