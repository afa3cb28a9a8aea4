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

/// What [`apply_into`] builds when every update replaces an entity of
/// `base` at a known index (no removals, nothing new: a settled world's
/// snapshot): `base` copied whole, then `(index in base, new value, its
/// entity hash)` written over it in place, with no search. Returns the
/// same hash change.
pub(crate) fn replace_into(base: &[QEntity], replaced: impl Iterator<Item = (usize, QEntity, u64)>, view: &mut Vec<QEntity>) -> u64 {
    view.clear();
    view.extend_from_slice(base);
    let mut delta = 0u64;
    for (at, e, hash) in replaced {
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
    use super::{apply_into, replace_into, seek};
    use crate::quant::QEntity;
    use proptest::prelude::any;

    proptest::proptest! {
        /// Replacing in place builds the view and hash change the merge
        /// builds, for any replaced subset of a view.
        #[test]
        fn replacing_in_place_is_the_merge(n in 0usize..120, picks in proptest::collection::vec((any::<proptest::sample::Index>(), any::<i32>()), 0..40)) {
            let base: Vec<QEntity> = (0..n as u64).map(|k| QEntity { handle: 3 * k + 1, archetype: 0, shape: 1, pos: [k as i32, 2, -1], rot: 7, vel: [1; 3] }).collect();
            let mut at: Vec<usize> = if n == 0 { Vec::new() } else { picks.iter().map(|(i, _)| i.index(n)).collect() };
            at.sort_unstable();
            at.dedup();
            let updates: Vec<QEntity> = at.iter().zip(&picks).map(|(&i, &(_, x))| QEntity { pos: [x, x / 3, 5], ..base[i] }).collect();
            let (mut merged, mut replaced) = (Vec::new(), Vec::new());
            let d1 = apply_into(&base, &[], &updates, &mut merged);
            let d2 = replace_into(&base, at.iter().copied().zip(updates.iter().copied()).map(|(i, e)| (i, e, crate::quant::entity_hash(&e))), &mut replaced);
            proptest::prop_assert_eq!(merged, replaced);
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
