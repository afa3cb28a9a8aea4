//! What behaviour graphs' sensors read ([`Sensors`] over the world): the
//! ray against every collider (through [`RayGrid`]), and the neighbour
//! sensors over [`Grid`] (push summed once per tick for every entity in
//! exact fixed point, nearest, count).

use super::graphs::GraphStore;
use super::neighbours::{Grid, PairSums};
use super::rays::RayGrid;
use crate::graph::Sensors;
use crate::physics::RapierPhysics;
use crate::plan::{finite_within, MAX_COORD};
use crate::table::{Location, Table};

/// What a `ray` node reads: the raycast op's normalisation (in the same
/// order), then the distance to the first hit within `max` (see
/// [`RayGrid`]); +inf when nothing is hit or the ray is not valid.
pub(super) fn ray_distance(rays: &RayGrid, physics: &RapierPhysics, o: [f32; 3], d: [f32; 3], max: f32) -> f32 {
    let len2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
    if !(finite_within(&o, MAX_COORD) && finite_within(&d, MAX_COORD) && len2 > 1e-12) {
        return f32::INFINITY;
    }
    let len = len2.sqrt();
    let dir = [d[0] / len, d[1] / len, d[2] / len];
    rays.cast(physics, o, dir, max)
}

/// The push sensor's fixed-point scale (2^32): each neighbour's term is
/// an f32 (at most 1,000 in size: |d|^2 >= 1e-6), converted exactly to
/// f64, scaled, truncated toward zero to an i64 and summed wrapping, which
/// is associative: the sum does not depend on the order neighbours are
/// found in. The total is converted back (to f64, nearest; then f32,
/// nearest).
const PUSH_SCALE: f64 = 4_294_967_296.0;

fn to_fixed(v: f32) -> i64 {
    (f64::from(v) * PUSH_SCALE) as i64
}

fn from_fixed(s: i64) -> f32 {
    (s as f64 / PUSH_SCALE) as f32
}

/// The push sensor's term for one neighbour, `o` = own - theirs (y = 0):
/// `o / |o|^2` in fixed point. Odd in `o` (negation is exact in IEEE
/// arithmetic and `to_fixed` truncates toward zero), so a pair's two terms
/// cancel exactly ([`Grid::pair_sums`]).
pub(super) fn push_term(ox: f32, oz: f32) -> (i64, i64) {
    let r2 = ox * ox + oz * oz;
    (to_fixed(ox / r2), to_fixed(oz / r2))
}

/// What a graph's sensors read: rapier's state after this tick's physics
/// and the neighbour grid. Holds no buffers, so each worker of a parallel
/// run makes its own.
#[derive(Clone, Copy)]
pub(super) struct WorldSensors<'a> {
    pub(super) physics: &'a RapierPhysics,
    pub(super) rays: &'a RayGrid,
    pub(super) grid: &'a Grid,
    pub(super) pos: &'a [[f32; 3]],
    /// This tick's push sums per (radius bits, mask), by grid slot.
    pub(super) pushes: &'a [((u32, u16), PairSums)],
    /// Each NPC's grid slot (None: not in the grid, x or z not finite).
    pub(super) slots: &'a [Option<u32>],
}

impl Sensors for WorldSensors<'_> {
    fn ray(&mut self, o: [f32; 3], d: [f32; 3], max: f32) -> f32 {
        ray_distance(self.rays, self.physics, o, d, max)
    }

    fn push(&mut self, npc: usize, radius: f32, mask: u16) -> [f32; 3] {
        // Summed for every entity at once before the graphs ran (each pair
        // once); the same sums a visit from the NPC makes.
        if let Some((_, sums)) = self.pushes.iter().find(|(k, _)| *k == (radius.to_bits(), mask)) {
            return match self.slots.get(npc).copied().flatten() {
                Some(s) => {
                    let (sx, sz) = sums[s as usize];
                    [from_fixed(sx), 0.0, from_fixed(sz)]
                }
                None => [0.0; 3],
            };
        }
        let (mut sx, mut sz) = (0i64, 0i64);
        self.grid.visit(self.pos[npc], radius, mask, |_, dx, dz| {
            let (tx, tz) = push_term(-dx, -dz);
            sx = sx.wrapping_add(tx);
            sz = sz.wrapping_add(tz);
        });
        [from_fixed(sx), 0.0, from_fixed(sz)]
    }

    fn nearest(&mut self, npc: usize, radius: f32, mask: u16) -> [f32; 3] {
        // The least (|d|^2, handle): the lower handle on ties.
        let mut best: Option<(f32, u64, f32, f32)> = None;
        self.grid.visit(self.pos[npc], radius, mask, |h, dx, dz| {
            let r2 = dx * dx + dz * dz;
            if best.is_none_or(|b| r2 < b.0 || (r2 == b.0 && h < b.1)) {
                best = Some((r2, h, dx, dz));
            }
        });
        best.map_or([0.0; 3], |b| [b.2, 0.0, b.3])
    }

    fn count(&mut self, npc: usize, radius: f32, mask: u16) -> f32 {
        let mut n = 0u32;
        self.grid.visit(self.pos[npc], radius, mask, |_, _, _| n += 1);
        n as f32
    }
}

/// The neighbour sensors' grid and sums, rebuilt every tick.
#[derive(Debug, Default)]
pub(super) struct Neighbours {
    pub(super) grid: Grid,
    /// This tick's push sums ([`Grid::pair_sums`]) per (radius bits, mask)
    /// a bound graph reads, and their per-thread buffers.
    pub(super) pushes: Vec<((u32, u16), PairSums)>,
    push_parts: Vec<PairSums>,
    /// Pair sums' count of the items that do not query, per slot.
    push_others: Vec<u32>,
    /// Per grid slot, whether a graph reading push drives it (the pairs
    /// of two others need no sum).
    querying: Vec<bool>,
}

/// The neighbour grid of every entity (cells a hair over `radius`) and
/// this tick's push sums, once per (radius, mask) any bound graph reads.
pub(super) fn build_neighbours(store: &GraphStore, tables: &[Table], radius: f32, locs: &[Option<Location>], nb: &mut Neighbours) {
    let Neighbours { grid, pushes, push_parts, push_others, querying } = nb;
    // A hair over the largest radius: `floor(x / cell)` rounds, and
    // a neighbour just inside the radius must never be two cells away.
    grid.build(tables, radius.max(1.0) * 1.001);
    // Every push any bound graph reads, once for all of them.
    let mut keys: Vec<(u32, u16)> = store.graphs.values().filter(|l| !l.members.is_empty()).flat_map(|l| l.pushes.iter().copied()).collect();
    keys.sort_unstable();
    keys.dedup();
    if !keys.is_empty() {
        querying.clear();
        querying.resize(grid.len(), false);
        let mut at = 0;
        for l in store.graphs.values() {
            let locs = &locs[at..at + l.members.len()];
            at += l.members.len();
            if l.pushes.is_empty() {
                continue;
            }
            for loc in locs.iter().flatten() {
                if let Some(s) = grid.slot(loc.archetype as usize, loc.row as usize) {
                    querying[s] = true;
                }
            }
        }
    }
    pushes.resize_with(keys.len(), Default::default);
    for (key, (k, sums)) in keys.iter().zip(pushes.iter_mut()) {
        *k = *key;
        grid.pair_sums(f32::from_bits(key.0), key.1, querying, push_term, sums, (push_parts, push_others));
    }
}
