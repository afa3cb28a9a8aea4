//! Every entity by grid cell, built once per tick for the graphs'
//! neighbour sensors (push, nearest, count): square cells in the xz plane
//! laid out row by row (z rows, x along each), filled by a counting sort
//! (O(entities), no sort, no allocation once warm), so a query's 3 x 3
//! cells are 3 contiguous runs of items. The rows span the entities'
//! cells ([`CellBox`]: cut around the median, clamped onto its edge, when
//! an outlier is far away), so the 3 x 3 cells around a query still hold
//! everything within its radius (clamped ones only add candidates, each
//! tested by distance). A query visits what it finds in row order, so
//! every sensor built on it must be order-free (an exact fixed-point sum,
//! a min by (distance, handle), a count): results never depend on the
//! layout or row order.

use super::cells::CellBox;
use crate::schema::ColumnId;
use crate::table::Table;

/// One entity in the grid.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Item {
    pub(super) handle: u64,
    archetype: u8,
    x: f32,
    z: f32,
    /// Its place in the build's enumeration (tables in order, rows in
    /// order).
    index: u32,
}

#[derive(Debug, Default)]
pub(super) struct Grid {
    cell: f32,
    /// The box of cells the items are laid out in.
    b: CellBox,
    /// `starts[c]..starts[c + 1]`: cell `c`'s items (`c = row * w + col`).
    starts: Vec<u32>,
    /// The items by cell, as columns (a query's first pass reads only
    /// x, z and archetype).
    xs: Vec<f32>,
    zs: Vec<f32>,
    /// `1 << archetype`.
    bits: Vec<u32>,
    handles: Vec<u64>,
    /// Per entity in the build's enumeration, its slot (u32::MAX: not in
    /// the grid, its x or z not finite).
    slot_of: Vec<u32>,
    /// The entity enumeration index where each table's rows begin.
    table_start: Vec<u32>,
    /// (cell, item) before the counting sort.
    staged: Vec<(u32, Item)>,
    /// Cell coordinates, for the median when the box is cut.
    cells: Vec<(i32, i32)>,
    scratch: Vec<i32>,
}

/// Items a query tests per pass: the first pass keeps those in range
/// without branching on each, the second calls the visitor.
const BLOCK: usize = 64;

/// `floor(x / cell)` as an i32 (saturating, NaN: 0, as `floor() as i32`)
/// without libm's `floorf` call: truncate, then step down where that
/// rounded up.
pub(super) fn cell_of(x: f32, cell: f32) -> i32 {
    let q = x / cell;
    let i = q as i32;
    i.saturating_sub(i32::from(i as f32 > q))
}

/// Counting sort of (bucket, item) pairs into `buckets` buckets: bucket
/// `b`'s items go to slots `starts[b]..starts[b + 1]`, in staged order,
/// each handed to `place(slot, item)`. O(items + buckets), no allocation
/// once `starts` has grown.
pub(super) fn counting_sort<T: Copy>(staged: &[(u32, T)], buckets: usize, starts: &mut Vec<u32>, mut place: impl FnMut(usize, T)) {
    starts.clear();
    starts.resize(buckets + 1, 0);
    for &(b, _) in staged {
        starts[b as usize + 1] += 1;
    }
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    // starts[b] walks bucket b's slots, ending where bucket b + 1 begins;
    // then everything shifts back by one bucket.
    for &(b, item) in staged {
        let at = &mut starts[b as usize];
        place(*at as usize, item);
        *at += 1;
    }
    starts.rotate_right(1);
    starts[0] = 0;
}

impl Grid {
    /// Fills the grid with every entity of `tables` whose x and z are
    /// finite (no query can find another one), cells `cell` metres wide.
    pub(super) fn build(&mut self, tables: &[Table], cell: f32) {
        let n: usize = tables.iter().map(Table::len).sum();
        // Taken out while `fill` runs (the items borrow it).
        let mut starts = std::mem::take(&mut self.table_start);
        starts.clear();
        let mut at = 0u32;
        for t in tables {
            starts.push(at);
            at += t.len() as u32;
        }
        let all = tables.iter().zip(&starts).flat_map(|(t, &first)| {
            let (x, z) = (t.f32(ColumnId::PosX), t.f32(ColumnId::PosZ));
            t.handles().iter().enumerate().map(move |(row, &handle)| Item { handle, archetype: t.archetype() as u8, x: x[row], z: z[row], index: first + row as u32 })
        });
        self.fill(n, all, cell);
        self.table_start = starts;
    }

    fn fill(&mut self, n: usize, all: impl Iterator<Item = Item>, cell: f32) {
        self.cell = cell;
        self.staged.clear();
        self.cells.clear();
        for item in all {
            if item.x.is_finite() && item.z.is_finite() {
                self.cells.push((cell_of(item.x, cell), cell_of(item.z, cell)));
                self.staged.push((0, item));
            }
        }
        let m = self.staged.len();
        self.b = CellBox::around(&self.cells, n.max(m), &mut self.scratch);
        for (k, &(cx, cz)) in self.cells.iter().enumerate() {
            self.staged[k].0 = self.b.index(cx, cz) as u32;
        }
        for col in [&mut self.xs, &mut self.zs] {
            col.clear();
            col.resize(m, 0.0);
        }
        self.bits.clear();
        self.bits.resize(m, 0);
        self.handles.clear();
        self.handles.resize(m, 0);
        self.slot_of.clear();
        self.slot_of.resize(n, u32::MAX);
        let (xs, zs, bits, handles, slot_of) = (&mut self.xs, &mut self.zs, &mut self.bits, &mut self.handles, &mut self.slot_of);
        let cells = self.b.len();
        counting_sort(&self.staged, cells, &mut self.starts, |k, item| {
            (xs[k], zs[k], bits[k], handles[k]) = (item.x, item.z, 1u32.wrapping_shl(u32::from(item.archetype)), item.handle);
            if let Some(s) = slot_of.get_mut(item.index as usize) {
                *s = k as u32;
            }
        });
    }

    /// Calls `f(handle, dx, dz)` (d = theirs - own) for every other entity
    /// within `radius` (xz plane, `1e-6 <= r2 < radius^2`; at most the cell
    /// size) of `p` matching the archetype `mask` (0: any), in no
    /// particular order.
    #[inline]
    pub(super) fn visit(&self, p: [f32; 3], radius: f32, mask: u16, mut f: impl FnMut(u64, f32, f32)) {
        debug_assert!(radius <= self.cell, "a query radius over the cell size");
        if !(p[0].is_finite() && p[2].is_finite()) || self.xs.is_empty() {
            return;
        }
        let (cx, cz) = (cell_of(p[0], self.cell), cell_of(p[2], self.cell));
        let r2max = radius * radius;
        let want = if mask == 0 { u32::MAX } else { u32::from(mask) };
        // Written before read: set up once per query, not per block.
        let (mut flags, mut hits) = ([0u32; BLOCK], [0u32; BLOCK]);
        // The 3 x 3 cells around p (clamped into the box, each once) cover
        // the radius: per row, one run of up to 3 cells.
        let (c, r) = (i64::from(cx) - i64::from(self.b.x0), i64::from(cz) - i64::from(self.b.z0));
        let clamp_c = |c: i64| c.clamp(0, i64::from(self.b.w) - 1) as usize;
        let (first, last) = (clamp_c(c - 1), clamp_c(c + 1));
        let (r_lo, r_hi) = ((r - 1).clamp(0, i64::from(self.b.h) - 1), (r + 1).clamp(0, i64::from(self.b.h) - 1));
        let w = self.b.w as usize;
        for row in r_lo as usize..=r_hi as usize {
            let (mut at, hi) = (self.starts[row * w + first] as usize, self.starts[row * w + last + 1] as usize);
            while at < hi {
                let end = (at + BLOCK).min(hi);
                // Elementwise (vectorisable): which are in range and wanted.
                for (((flag, &x), &z), &bit) in flags.iter_mut().zip(&self.xs[at..end]).zip(&self.zs[at..end]).zip(&self.bits[at..end]) {
                    let (dx, dz) = (x - p[0], z - p[2]);
                    let r2 = dx * dx + dz * dz;
                    *flag = u32::from((r2 >= 1e-6) & (r2 < r2max) & (bit & want != 0));
                }
                let mut n = 0;
                for (j, &flag) in flags[..end - at].iter().enumerate() {
                    hits[n] = j as u32;
                    n += flag as usize;
                }
                for &j in &hits[..n] {
                    let i = at + j as usize;
                    f(self.handles[i], self.xs[i] - p[0], self.zs[i] - p[2]);
                }
                at = end;
            }
        }
    }
}

/// Per item of a [`Grid`], the wrapping sums of a term over its
/// neighbours, built for every item at once from each pair found once
/// ([`Grid::pair_sums`]).
pub(super) type PairSums = Vec<(i64, i64)>;

impl Grid {
    /// Items in the grid.
    pub(super) fn len(&self) -> usize {
        self.xs.len()
    }

    /// The slot of the `row`th entity of table `table` (the build's
    /// tables), None when it is not in the grid.
    pub(super) fn slot(&self, table: usize, row: usize) -> Option<usize> {
        let i = *self.table_start.get(table)? as usize + row;
        self.slot_of.get(i).copied().filter(|&s| s != u32::MAX).map(|s| s as usize)
    }

    /// For every item `i`, the wrapping sum over the others `j` that
    /// [`Grid::visit`] from `i`'s position finds (within `radius`,
    /// matching `mask`) of `term(o)`, `o = -(x_j - x_i, z_j - z_i)`: what a
    /// visit from each item would sum, with each pair of two such items
    /// met once: its term for `j` is the negation of `i`'s, exactly,
    /// when `term` is odd (`term(-o) == -term(o)`: an odd function of its
    /// argument in IEEE arithmetic, truncated toward zero). Only items
    /// marked in `querying` (one flag per slot) get their sum: a pair of
    /// two others is skipped. The rows are split among the caller's rayon
    /// threads, each summing into a buffer of `parts`; the sums are
    /// order-free, so the result is too.
    pub(super) fn pair_sums(&self, radius: f32, mask: u16, querying: &[bool], term: impl Fn(f32, f32) -> (i64, i64) + Sync, out: &mut PairSums, (parts, others): (&mut Vec<PairSums>, &mut Vec<u32>)) {
        use rayon::prelude::*;
        let m = self.xs.len();
        // One mark per slot (a short list, which the graphs never pass:
        // the rest do not query).
        let padded: Vec<bool>;
        let querying = if querying.len() >= m {
            querying
        } else {
            padded = querying.iter().copied().chain(std::iter::repeat(false)).take(m).collect();
            &padded
        };
        // Items that do not query, counted up to each slot: a stretch of
        // candidates below an item with none of them is skipped.
        others.clear();
        others.push(0u32);
        let mut count = 0u32;
        others.extend(querying[..m].iter().map(|&q| {
            count += u32::from(!q);
            count
        }));
        let bands = crate::caller_threads().min(self.b.h.max(1) as usize).max(1);
        parts.resize_with(bands, Vec::new);
        let (h, per) = (self.b.h as usize, (self.b.h as usize).div_ceil(bands));
        let band = |b: usize, acc: &mut PairSums| {
            acc.clear();
            acc.resize(m, (0, 0));
            for row in b * per..((b + 1) * per).min(h) {
                self.sweep_row(row, (radius, mask), (querying, others), &term, acc);
            }
        };
        if bands > 1 {
            parts.par_iter_mut().enumerate().for_each(|(b, acc)| band(b, acc));
        } else if let Some(acc) = parts.first_mut() {
            band(0, acc);
        }
        out.clear();
        out.resize(m, (0, 0));
        for part in parts.iter() {
            for (o, p) in out.iter_mut().zip(part) {
                *o = (o.0.wrapping_add(p.0), o.1.wrapping_add(p.1));
            }
        }
    }

    /// The querying items of row `row` against the 3 x 3 cells around
    /// them (three runs, as a visit): a pair of two querying items is
    /// summed from the lower slot, for both; a querying item's pair with
    /// another item, for it alone (`others`: the items that do not query,
    /// counted up to each slot). Per block of candidates: the range test
    /// over all of them (vectorised), the hits' offsets gathered without a
    /// branch, then the terms for the hits alone.
    fn sweep_row(&self, row: usize, (radius, mask): (f32, u16), (querying, others): (&[bool], &[u32]), term: &impl Fn(f32, f32) -> (i64, i64), acc: &mut PairSums) {
        let r2max = radius * radius;
        let want = if mask == 0 { u32::MAX } else { u32::from(mask) };
        let (w, h) = (self.b.w as usize, self.b.h as usize);
        let (r_lo, r_hi) = (row.saturating_sub(1), (row + 1).min(h - 1));
        let (mut flags, mut hits) = ([0u32; BLOCK], [0u8; BLOCK]);
        for col in 0..w {
            let c = row * w + col;
            let (first, last) = (col.saturating_sub(1), (col + 1).min(w - 1));
            for i in self.starts[c] as usize..self.starts[c + 1] as usize {
                if !querying[i] {
                    continue;
                }
                let (xi, zi, bi) = (self.xs[i], self.zs[i], self.bits[i]);
                for r in r_lo..=r_hi {
                    let (mut at, hi) = (self.starts[r * w + first] as usize, self.starts[r * w + last + 1] as usize);
                    // The querying items below this one met their pairs
                    // with it first: a stretch of only those is skipped (a
                    // crowd of querying items scans half its stencil).
                    let below_end = hi.min(i);
                    if at < below_end && others[below_end] == others[at] {
                        at = below_end;
                    }
                    while at < hi {
                        let end = (at + BLOCK).min(hi);
                        // In range, and not a querying item below this one
                        // (that one met this pair first).
                        let below = i.saturating_sub(at);
                        for (k, ((flag, &x), (&z, &q))) in flags.iter_mut().zip(&self.xs[at..end]).zip(self.zs[at..end].iter().zip(&querying[at..end])).enumerate() {
                            let (dx, dz) = (x - xi, z - zi);
                            let r2 = dx * dx + dz * dz;
                            *flag = u32::from((r2 >= 1e-6) & (r2 < r2max) & !((k < below) & q));
                        }
                        let mut n = 0;
                        for (k, &flag) in flags[..end - at].iter().enumerate() {
                            hits[n] = k as u8;
                            n += flag as usize;
                        }
                        for &k in &hits[..n] {
                            let j = at + usize::from(k);
                            let t = term(xi - self.xs[j], zi - self.zs[j]);
                            if self.bits[j] & want != 0 {
                                acc[i] = (acc[i].0.wrapping_add(t.0), acc[i].1.wrapping_add(t.1));
                            }
                            if bi & want != 0 && querying[j] {
                                acc[j] = (acc[j].0.wrapping_sub(t.0), acc[j].1.wrapping_sub(t.1));
                            }
                        }
                        at = end;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{cell_of, Grid, Item};
    use crate::world::cells::fit;
    use proptest::prelude::*;

    #[test]
    fn a_cut_box_keeps_its_shape_and_never_overflows() {
        assert_eq!(fit(40, 40, 5000), (40, 40), "fits: whole");
        assert_eq!(fit(1000, 1000, 10_000), (100, 100));
        assert_eq!(fit(100_000, 1, 10_000), (10_000, 1), "a corridor stays a corridor");
        assert_eq!(fit(1, 100_000, 10_000), (1, 10_000));
        let (w, h) = fit(1 << 32, 1 << 32, 1 << 20);
        assert!(w * h <= 1 << 20 && w >= 1 && h >= 1, "{w} x {h}");
        assert_eq!(fit(400, 100_000, 225_536).0, 400, "one entity far along z: the crowd keeps its columns");
    }

    #[test]
    fn cell_of_is_floor() {
        for x in [0.0f32, -0.0, 0.5, -0.5, 2.999, 3.0, -3.0, -3.001, 1e9, -1e9, 3e9, -3e9, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, -f32::MIN_POSITIVE] {
            assert_eq!(cell_of(x, 1.0), x.floor() as i32, "{x}");
            assert_eq!(cell_of(x, 3.003), (x / 3.003).floor() as i32, "{x}");
        }
    }

    proptest! {
        #[test]
        fn cell_of_is_floor_everywhere(x in proptest::num::f32::ANY, cell in 0.5f32..8.0) {
            prop_assert_eq!(cell_of(x, cell), (x / cell).floor() as i32);
        }

        /// Every query finds exactly what brute force over all items finds,
        /// whatever the box (an outlier far away cuts it).
        #[test]
        fn around_is_brute_force(pts in proptest::collection::vec((-400.0f32..400.0, -400.0f32..400.0, 0u8..4), 1..300), radius in 0.5f32..6.0, mask in 0u16..16, outlier in proptest::option::of((-3e9f32..3e9, -3e9f32..3e9))) {
            let items: Vec<Item> = pts.iter().enumerate().map(|(i, &(x, z, a))| Item { handle: (i as u64 * 7919) % 1009, archetype: a, x, z, index: i as u32 }).collect();
            let mut g = Grid::default();
            // A far outlier cuts the box (the rest clamp onto its edge).
            let far = outlier.map(|(x, z)| Item { handle: 5001, archetype: 0, x, z, index: items.len() as u32 + 1 });
            g.fill(items.len(), items.iter().copied().chain([Item { handle: 5000, archetype: 0, x: f32::NAN, z: 0.0, index: items.len() as u32 }]).chain(far), 6.0);
            let mut out = Vec::new();
            for q in &items {
                out.clear();
                g.visit([q.x, 0.0, q.z], radius, mask, |h, dx, dz| out.push((h, dx, dz)));
                out.sort_unstable_by_key(|o| o.0);
                let mut want: Vec<(u64, f32, f32)> = items.iter().chain(far.iter()).filter(|it| mask == 0 || mask & (1 << it.archetype) != 0).filter_map(|it| {
                    let (dx, dz) = (it.x - q.x, it.z - q.z);
                    let r2 = dx * dx + dz * dz;
                    (r2 >= 1e-6 && r2 < radius * radius).then_some((it.handle, dx, dz))
                }).collect();
                want.sort_unstable_by_key(|w| w.0);
                prop_assert_eq!(&out, &want);
            }
        }

        /// Each pair met once gives every item exactly the sum a visit from
        /// it makes (the push term, bit for bit), on 1 and 3 threads, with
        /// coincident points, masks and a far outlier cutting the box.
        #[test]
        fn pair_sums_are_the_visits_sums(pts in proptest::collection::vec((-60.0f32..60.0, -60.0f32..60.0, 0u8..4), 1..400), dupes in 0usize..20, radius in 0.5f32..3.0, mask in 0u16..16, outlier in proptest::option::of((-3e9f32..3e9, -3e9f32..3e9)), every in 1usize..4) {
            let mut items: Vec<Item> = pts.iter().enumerate().map(|(i, &(x, z, a))| Item { handle: i as u64, archetype: a, x, z, index: i as u32 }).collect();
            // Coincident pairs (excluded both ways by the 1e-6 floor).
            for k in 0..dupes.min(items.len()) {
                let twin = Item { handle: 10_000 + k as u64, index: items.len() as u32, ..items[k] };
                items.push(twin);
            }
            if let Some((x, z)) = outlier {
                items.push(Item { handle: 20_000, archetype: 1, x, z, index: items.len() as u32 });
            }
            let mut g = Grid::default();
            g.fill(items.len(), items.iter().copied(), 3.003);
            let term = crate::world::sensors::push_term;
            // Every `every`th item queries (by handle); the others get no sum.
            let mut querying = vec![false; g.len()];
            for it in &items {
                if let Some(&s) = g.slot_of.get(it.index as usize).filter(|&&s| s != u32::MAX) {
                    querying[s as usize] = (it.handle as usize).is_multiple_of(every);
                }
            }
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
                let (mut sums, mut parts, mut others) = (Vec::new(), Vec::new(), Vec::new());
                pool.install(|| g.pair_sums(radius, mask, &querying, term, &mut sums, (&mut parts, &mut others)));
                for it in items.iter().filter(|it| (it.handle as usize).is_multiple_of(every)) {
                    let (mut sx, mut sz) = (0i64, 0i64);
                    g.visit([it.x, 0.0, it.z], radius, mask, |_, dx, dz| {
                        let t = term(-dx, -dz);
                        sx = sx.wrapping_add(t.0);
                        sz = sz.wrapping_add(t.1);
                    });
                    let slot = g.slot_of[it.index as usize] as usize;
                    prop_assert_eq!(sums[slot], (sx, sz), "item {} on {} threads", it.handle, threads);
                }
            }
        }
    }
}
