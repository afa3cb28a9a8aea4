//! The graphs' `ray` sensor (and `Sim.raycast`): the first hit of a ray
//! against every collider, through a grid of collider AABBs built once per
//! tick instead of rapier's BVH.
//!
//! The answer is defined without the grid: over every enabled collider,
//! the least `shape.cast_ray(pose, ray, max, solid = true)` (parry's own
//! per-shape test, the one rapier's query pipeline runs at its leaves),
//! kept when it is under `max`. (rapier's BVH passes each leaf the best
//! hit so far instead of `max`, and parry's answer can move by an ulp
//! with that limit, so rapier's result depends on its traversal; this one
//! does not.) The grid only decides which colliders to test and when to
//! stop:
//!
//! - each collider's AABB, padded by [`PAD`], is entered into every square
//!   xz cell it overlaps (cells in dense rows, [`CellBox`]: a ray's cells
//!   and the next ray's are near in memory; cells clamped onto the box's
//!   edge only add candidates); colliders wider than [`BIG`] (ground, walls) are tested
//!   for every ray, and rays longer than [`WALK_MAX`] test every collider;
//! - a ray walks the cells its xz projection crosses, in order (a 2D DDA),
//!   and stops once its best hit is no farther than where it leaves the
//!   current cell: a hit point lies inside its collider, so that collider
//!   is in the cell the point is in; the padding covers the DDA's rounding.
//!
//! A min is order-free, so the result does not depend on the cell layout,
//! the clamping (which only adds candidates) or the collider set's order;
//! a test holds it equal to testing every collider, also where the box is
//! cut, and within 1e-5 of rapier's `cast_ray`.

use super::cells::CellBox;
use super::neighbours::{self, counting_sort};
use crate::physics::RapierPhysics;
use rapier3d::prelude::*;

/// Cell width, metres.
const CELL: f32 = 1.0;
/// AABB padding, metres, plus [`PAD_REL`] of the box's largest coordinate:
/// far over the DDA's rounding (each crossing is computed afresh from its
/// cell index, never accumulated) and parry's (an ulp at 1e5 m is 8 mm).
const PAD: f32 = 0.01;
const PAD_REL: f32 = 1e-6;
/// Rays longer than this (and a non-finite `max`) test every collider:
/// the same answer, without a walk of unbounded length. Graph rays are
/// capped at 100 m.
const WALK_MAX: f32 = 128.0;
/// Colliders wider than this in x or z are tested for every ray.
const BIG: f32 = 16.0;
/// Colliders per part of a parallel build.
const BUILD_CHUNK: usize = 256;

#[derive(Clone, Copy, Debug)]
struct Item {
    min: [f32; 3],
    max: [f32; 3],
    collider: ColliderHandle,
}

#[derive(Debug, Default)]
pub(super) struct RayGrid {
    /// The cells, and the corner cells of the boxes they are sized for.
    b: CellBox,
    corners: Vec<(i32, i32)>,
    scratch: Vec<i32>,
    /// The enabled colliders this build, and their padded boxes.
    handles: Vec<ColliderHandle>,
    boxes: Vec<Item>,
    /// `starts[c]..starts[c + 1]`: cell `c`'s items.
    starts: Vec<u32>,
    items: Vec<Item>,
    staged: Vec<(u32, Item)>,
    big: Vec<Item>,
}

/// Whether a ray of `max` metres walks the grid (else it tests every
/// collider, and needs no grid).
pub(super) fn walks(max: f32) -> bool {
    !(max.is_nan() || max > WALK_MAX)
}

fn cell_of(x: f32) -> i32 {
    neighbours::cell_of(x, CELL)
}

fn v3(a: [f32; 3]) -> Vector {
    Vector::new(a[0], a[1], a[2])
}

impl RayGrid {
    /// Enters every enabled collider of `physics` as it is now. The boxes
    /// are computed across the caller's rayon pool (serially outside one);
    /// they are entered in collider order either way.
    pub(super) fn build(&mut self, physics: &RapierPhysics) {
        use rayon::prelude::*;
        let colliders = &physics.rapier().colliders;
        self.staged.clear();
        self.big.clear();
        self.handles.clear();
        self.handles.extend(colliders.iter().filter(|(_, co)| co.is_enabled()).map(|(h, _)| h));
        let padded = |collider: ColliderHandle| {
            let a = colliders[collider].compute_aabb();
            let mag = [a.mins.x, a.mins.y, a.mins.z, a.maxs.x, a.maxs.y, a.maxs.z].iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let pad = PAD + PAD_REL * mag;
            Item { min: [a.mins.x - pad, a.mins.y - pad, a.mins.z - pad], max: [a.maxs.x + pad, a.maxs.y + pad, a.maxs.z + pad], collider }
        };
        self.boxes.clear();
        self.boxes.resize(self.handles.len(), Item { min: [0.0; 3], max: [0.0; 3], collider: ColliderHandle::invalid() });
        let threads = crate::caller_threads();
        if threads > 1 && self.handles.len() >= 2 * BUILD_CHUNK {
            self.boxes.par_chunks_mut(BUILD_CHUNK).zip(self.handles.par_chunks(BUILD_CHUNK)).for_each(|(out, hs)| {
                for (o, &h) in out.iter_mut().zip(hs) {
                    *o = padded(h);
                }
            });
        } else {
            for (o, &h) in self.boxes.iter_mut().zip(&self.handles) {
                *o = padded(h);
            }
        }
        // The small boxes, by their corner cells, size the grid.
        let small = |item: &Item| item.min.iter().chain(&item.max).all(|v| v.is_finite()) && item.max[0] - item.min[0] <= BIG && item.max[2] - item.min[2] <= BIG;
        self.corners.clear();
        for item in self.boxes.iter().filter(|it| small(it)) {
            self.corners.push((cell_of(item.min[0]), cell_of(item.min[2])));
            self.corners.push((cell_of(item.max[0]), cell_of(item.max[2])));
        }
        self.b = CellBox::around(&self.corners, self.corners.len(), &mut self.scratch);
        for &item in &self.boxes {
            if !small(&item) {
                self.big.push(item);
                continue;
            }
            // Clamping is monotone: the clamped range is each clamped cell once.
            let (c0, c1) = (self.b.col(cell_of(item.min[0])), self.b.col(cell_of(item.max[0])));
            let (r0, r1) = (self.b.row(cell_of(item.min[2])), self.b.row(cell_of(item.max[2])));
            for r in r0..=r1 {
                for c in c0..=c1 {
                    self.staged.push(((r * self.b.w + c) as u32, item));
                }
            }
        }
        self.items.clear();
        if let Some(&(_, first)) = self.staged.first() {
            self.items.resize(self.staged.len(), first);
        }
        let items = &mut self.items;
        counting_sort(&self.staged, self.b.len(), &mut self.starts, |k, item| items[k] = item);
    }

    /// Distance along `d` (unit length) from `o` to the first hit within
    /// `max`; +inf when nothing is hit (as rapier's `cast_ray` with
    /// `solid`, then `< max`).
    pub(super) fn cast(&self, physics: &RapierPhysics, o: [f32; 3], d: [f32; 3], max: f32) -> f32 {
        let colliders = &physics.rapier().colliders;
        let ray = Ray::new(v3(o), v3(d));
        let inv = d.map(|x| 1.0 / x);
        let mut best = f32::INFINITY;
        let test = |it: &Item, best: &mut f32| {
            // Boxes entered past the best hit so far (a hair over: the
            // slab's rounding) cannot hold a nearer one.
            if !slab(it, o, d, inv, best.min(max) * (1.0 + 1e-5) + 1e-4) {
                return;
            }
            // Always `max`, never the best so far: parry's result moves by
            // an ulp with the limit it is given, and the answer must not
            // depend on the order colliders are tested in.
            if let Some(t) = colliders.get(it.collider).and_then(|co| co.shape().cast_ray(co.position(), &ray, max, true))
                && t < *best
            {
                *best = t;
            }
        };
        if !walks(max) {
            for (_, co) in colliders.iter() {
                if co.is_enabled()
                    && let Some(t) = co.shape().cast_ray(co.position(), &ray, max, true)
                    && t < best
                {
                    best = t;
                }
            }
            return if best < max { best } else { f32::INFINITY };
        }
        for it in &self.big {
            test(it, &mut best);
        }
        // A 2D DDA over the xz cells from o, nearest first.
        let (mut cx, mut cz) = (cell_of(o[0]), cell_of(o[2]));
        // (step, where the ray leaves cell c along this axis).
        let axis = |o: f32, d: f32, c: i32| -> (i32, f32) {
            if d > 0.0 {
                (1, ((c + 1) as f32 * CELL - o) / d)
            } else if d < 0.0 {
                (-1, (c as f32 * CELL - o) / d)
            } else {
                (0, f32::INFINITY)
            }
        };
        let (sx, mut tx) = axis(o[0], d[0], cx);
        let (sz, mut tz) = axis(o[2], d[2], cz);
        // Cells a ray of `max` metres can cross, plus slack: a bound on
        // the walk whatever the floats do.
        let steps = (2.0 * max.max(0.0) / CELL) as usize + 4;
        // Outside a cut box consecutive cells clamp onto one: tested once
        // (testing again gives the same answers).
        let mut last = usize::MAX;
        for _ in 0..steps {
            let b = self.b.index(cx, cz);
            if b != last {
                for it in &self.items[self.starts[b] as usize..self.starts[b + 1] as usize] {
                    test(it, &mut best);
                }
                last = b;
            }
            let out = tx.min(tz);
            if !(best > out && out < max) {
                break;
            }
            if tx < tz {
                cx = cx.wrapping_add(sx);
                tx = axis(o[0], d[0], cx).1;
            } else {
                cz = cz.wrapping_add(sz);
                tz = axis(o[2], d[2], cz).1;
            }
        }
        if best < max { best } else { f32::INFINITY }
    }
}

/// Whether the ray `o + t d`, `0 <= t <= limit`, meets the item's box.
fn slab(it: &Item, o: [f32; 3], d: [f32; 3], inv: [f32; 3], limit: f32) -> bool {
    let (mut t0, mut t1) = (0.0f32, limit);
    for k in 0..3 {
        if d[k] == 0.0 {
            if o[k] < it.min[k] || o[k] > it.max[k] {
                return false;
            }
            continue;
        }
        let (a, b) = ((it.min[k] - o[k]) * inv[k], (it.max[k] - o[k]) * inv[k]);
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        t0 = t0.max(lo);
        t1 = t1.min(hi);
        if t0 > t1 {
            return false;
        }
    }
    true
}
