//! A box of square xz cells laid out row by row (z rows, x along each),
//! shared by the graphs' spatial grids (neighbours and rays). The box
//! spans the cells of the points it is built for; when that would be far
//! larger than they need (an outlier far away), it is cut to a box around
//! the median cell and every cell outside is clamped onto its edge.
//! Clamping is monotone, so it never separates two cells more than they
//! were, and what a lookup of a clamped cell finds is a superset of what
//! the cell holds: the far ones only add candidates, which every query
//! tests exactly. Dense rows keep neighbouring cells neighbouring in
//! memory, where a spatial hash scatters them.

/// Cells a box may have per point (plus [`SPARE_CELLS`]) before it is
/// cut: sparse spreads (10,000 entities over 400 m x 400 m in 1 m cells)
/// stay whole; only an outlier far away cuts the box. (The ray grid
/// passes two corners per collider: 32 cells per collider.)
const CELLS_PER_ENTITY: i64 = 16;
const SPARE_CELLS: i64 = 1 << 16;

/// The box of cells: its first cell and its width and height (at least
/// 1 x 1 once built by [`CellBox::around`]; nothing looks up a default).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct CellBox {
    pub(super) x0: i32,
    pub(super) z0: i32,
    pub(super) w: i32,
    pub(super) h: i32,
}

impl CellBox {
    /// The box for the points in `cells` (their cells; `scratch` is
    /// reused for the medians), at most `CELLS_PER_ENTITY x n +
    /// SPARE_CELLS` cells. No points: the one cell (0, 0).
    pub(super) fn around(cells: &[(i32, i32)], n: usize, scratch: &mut Vec<i32>) -> CellBox {
        let (mut lo, mut hi) = ((i32::MAX, i32::MAX), (i32::MIN, i32::MIN));
        for &(cx, cz) in cells {
            (lo, hi) = ((lo.0.min(cx), lo.1.min(cz)), (hi.0.max(cx), hi.1.max(cz)));
        }
        if cells.is_empty() {
            (lo, hi) = ((0, 0), (0, 0));
        }
        let limit = CELLS_PER_ENTITY.saturating_mul(n.max(cells.len()) as i64).saturating_add(SPARE_CELLS).min(i64::from(i32::MAX));
        // Widths in i64: cells span up to 2^32 (cell_of saturates).
        let (wf, hf) = (i64::from(hi.0) - i64::from(lo.0) + 1, i64::from(hi.1) - i64::from(lo.1) + 1);
        let (ws, hs) = fit(wf, hf, limit);
        if (ws, hs) == (wf, hf) {
            return CellBox { x0: lo.0, z0: lo.1, w: wf as i32, h: hf as i32 };
        }
        // Cut to a box of at most `limit` cells around the median.
        scratch.clear();
        scratch.extend(cells.iter().map(|c| c.0));
        let mx = median(scratch);
        scratch.clear();
        scratch.extend(cells.iter().map(|c| c.1));
        let mz = median(scratch);
        let ((x0, w), (z0, h)) = (span(lo.0, hi.0, mx, ws), span(lo.1, hi.1, mz, hs));
        CellBox { x0, z0, w, h }
    }

    /// The column of cell x `cx`, clamped into the box.
    #[inline]
    pub(super) fn col(&self, cx: i32) -> i32 {
        (i64::from(cx) - i64::from(self.x0)).clamp(0, i64::from(self.w) - 1) as i32
    }

    /// The row of cell z `cz`, clamped into the box.
    #[inline]
    pub(super) fn row(&self, cz: i32) -> i32 {
        (i64::from(cz) - i64::from(self.z0)).clamp(0, i64::from(self.h) - 1) as i32
    }

    /// The index of cell (cx, cz), clamped into the box.
    #[inline]
    pub(super) fn index(&self, cx: i32, cz: i32) -> usize {
        self.row(cz) as usize * self.w as usize + self.col(cx) as usize
    }

    /// Cells in the box.
    pub(super) fn len(&self) -> usize {
        self.w as usize * self.h as usize
    }
}

/// The median of `v` (reordered).
fn median(v: &mut [i32]) -> i32 {
    let mid = v.len() / 2;
    *v.select_nth_unstable(mid).1
}

/// The span `[lo, lo + len)` of `len` cells (at most `max`) holding
/// `min..=max_c` when it fits, else centred on `mid`.
fn span(min: i32, max_c: i32, mid: i32, max: i64) -> (i32, i32) {
    let full = i64::from(max_c) - i64::from(min) + 1;
    if full <= max {
        return (min, full as i32);
    }
    let lo = (i64::from(mid) - max / 2).max(i64::from(min));
    (lo as i32, max as i32)
}

/// Sides (at most `wf` x `hf`) of a box of at most `limit` cells: a side
/// shorter than the square's keeps its whole length and the other takes
/// the rest (a corridor stays a corridor, and a crowd with one entity far
/// off along z keeps all its columns); else a square.
pub(super) fn fit(wf: i64, hf: i64, limit: i64) -> (i64, i64) {
    if wf.saturating_mul(hf) <= limit {
        return (wf, hf);
    }
    let side = limit.isqrt().max(1);
    if wf <= side {
        return (wf, (limit / wf).min(hf));
    }
    if hf <= side {
        return ((limit / hf).min(wf), hf);
    }
    (side, (limit / side).min(hf))
}
