//! Interest management: which entities a client's snapshots carry.
//!
//! A uniform grid over the quantized world is built once per tick
//! ([`InterestGrid::build`]); each client's view is then the entities in the
//! cells around its centre (its first controlled entity), with hysteresis:
//! an entity enters the view within the *enter* radius and leaves it only
//! beyond the larger *leave* radius, so one that hovers at the boundary
//! does not churn in and out (each exit costs a removal, each entry a full
//! record). The client's own entities are always in its view. Entities
//! near the centre and fast ones get a priority boost in the delta codec.
//!
//! All integer arithmetic on millimetre positions: the selected set depends
//! on nothing but the quantized world and the server's previous selection
//! for that client ([`ClientInterest`]), so it is the same on every machine. The
//! client never recomputes it: it applies the snapshot to its baseline and
//! proves the resulting view's hash, as without interest.

use crate::quant::{pos_scale, QEntity, QView};

/// Cells per axis are addressed with 21 bits each (a key is one u64).
const AXIS_BITS: u32 = 21;
const AXIS_MASK: i64 = (1 << AXIS_BITS) - 1;

/// The enter and leave radii of a client's interest, metres.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InterestRadii {
    pub enter_m: f32,
    pub leave_m: f32,
}

impl InterestRadii {
    /// The leave radius when none is configured: a quarter more than enter.
    pub const DEFAULT_LEAVE_FACTOR: f32 = 1.25;

    /// `enter_m` with `leave_m` (default: [`Self::DEFAULT_LEAVE_FACTOR`] x
    /// enter); an error names what is wrong.
    pub fn new(enter_m: f32, leave_m: Option<f32>) -> Result<InterestRadii, String> {
        let leave_m = leave_m.unwrap_or((enter_m * Self::DEFAULT_LEAVE_FACTOR).min(1.0e6).max(enter_m));
        if !(enter_m.is_finite() && enter_m > 0.0 && enter_m <= 1.0e6) {
            return Err(format!("interest radius: expected a distance in (0, 1e6] m, found {enter_m}"));
        }
        if !(leave_m.is_finite() && leave_m >= enter_m && leave_m <= 1.0e6) {
            return Err(format!("interest leave radius: expected a distance in [{enter_m}, 1e6] m (at least the enter radius), found {leave_m}"));
        }
        Ok(InterestRadii { enter_m, leave_m })
    }

    fn mm(m: f32) -> i64 {
        (f64::from(m) * f64::from(pos_scale())).round() as i64
    }
}

/// The tick's entities bucketed by grid cell: (cell key, index into the
/// world slice), sorted, so a cell is a binary-searched run. Keys wrap
/// every 2^21 cells per axis; cells that share a key only add candidates,
/// which the exact distance test then drops.
#[derive(Debug, Clone, Default)]
pub struct InterestGrid {
    cell_mm: i64,
    cells: Vec<(u64, u32)>,
}

fn cell_of(v: i64, cell_mm: i64) -> i64 {
    v.div_euclid(cell_mm)
}

fn key(c: [i64; 3]) -> u64 {
    c.iter().fold(0u64, |k, &x| (k << AXIS_BITS) | (x & AXIS_MASK) as u64)
}

/// Squared distance, saturating (two i32 positions can be 2^32 mm apart
/// per axis, whose square overflows i64).
fn dist2(a: [i32; 3], b: [i32; 3]) -> i64 {
    (0..3).map(|k| i64::from(a[k]) - i64::from(b[k])).fold(0i64, |acc, x| acc.saturating_add(x.saturating_mul(x)))
}

impl InterestGrid {
    /// Buckets `world` into cells of the leave radius (a query then looks
    /// at the 27 cells around the centre).
    #[must_use]
    pub fn build(world: &[QEntity], radii: InterestRadii) -> InterestGrid {
        let cell_mm = InterestRadii::mm(radii.leave_m).max(1);
        let mut cells: Vec<(u64, u32)> = world
            .iter()
            .enumerate()
            .map(|(i, e)| (key(e.pos.map(|p| cell_of(i64::from(p), cell_mm))), i as u32))
            .collect();
        cells.sort_unstable();
        InterestGrid { cell_mm, cells }
    }

    /// Appends the indices of the entities in the cells that a sphere of
    /// `radius_mm` around `center` touches (unsorted; a wrapped key can
    /// repeat one: the caller sorts and dedups once).
    fn candidates(&self, center: [i32; 3], radius_mm: i64, out: &mut Vec<u32>) {
        let lo = center.map(|c| cell_of(i64::from(c) - radius_mm, self.cell_mm));
        let hi = center.map(|c| cell_of(i64::from(c) + radius_mm, self.cell_mm));
        for x in lo[0]..=hi[0] {
            for y in lo[1]..=hi[1] {
                for z in lo[2]..=hi[2] {
                    let k = key([x, y, z]);
                    let start = self.cells.partition_point(|&(c, _)| c < k);
                    out.extend(self.cells[start..].iter().take_while(|&&(c, _)| c == k).map(|&(_, i)| i));
                }
            }
        }
    }
}

/// A client's view for this tick, and its priority boosts.
#[derive(Debug, Default)]
pub struct InterestView {
    pub view: QView,
    /// Per view entry, its [`crate::quant::entity_hash`].
    pub hashes: Vec<u64>,
    /// Per view entry, a left shift of its priority weight (0 to 3): near
    /// the centre and fast entities first.
    pub boost: Vec<u8>,
}

/// One client's interest: its last selection (what the leave radius
/// keeps) and the buffers its next selection is built in (reused, so a
/// tick's selection allocates nothing once they have grown).
#[derive(Debug, Default)]
pub struct ClientInterest {
    /// The handles of the last view, sorted.
    previous: Vec<u64>,
    idx: Vec<u32>,
    out: InterestView,
}

impl ClientInterest {
    /// The view of a client centred at `center`: entities within the enter
    /// radius, those of the last view still within the leave radius, and
    /// always `keep` (its own entities). `grid` is this tick's grid over
    /// `world` (None: every entity is a candidate); `hashes` are the
    /// world's entity hashes.
    pub fn select(&mut self, world: &[QEntity], hashes: &[u64], grid: Option<&InterestGrid>, center: [i32; 3], radii: InterestRadii, keep: &[u64]) -> &InterestView {
        let (enter, leave) = (InterestRadii::mm(radii.enter_m), InterestRadii::mm(radii.leave_m));
        let (enter2, leave2) = (enter.saturating_mul(enter), leave.saturating_mul(leave));
        let idx = &mut self.idx;
        idx.clear();
        match grid {
            Some(g) => g.candidates(center, leave, idx),
            None => idx.extend(0..world.len() as u32),
        }
        for h in keep {
            if let Ok(i) = world.binary_search_by_key(h, |e| e.handle) {
                idx.push(i as u32);
            }
        }
        idx.sort_unstable();
        idx.dedup();
        let out = &mut self.out;
        out.view.clear();
        out.hashes.clear();
        out.boost.clear();
        let mut prev = self.previous.iter().peekable();
        let fast = (2.0 * f64::from(crate::quant::vel_scale())) as i64;
        let fast2 = fast * fast;
        for &i in idx.iter() {
            let e = &world[i as usize];
            // The last view and the candidates are both in handle order.
            while prev.next_if(|&&h| h < e.handle).is_some() {}
            let was_in = prev.next_if(|&&h| h == e.handle).is_some();
            let d2 = dist2(e.pos, center);
            if !(d2 <= enter2 || (was_in && d2 <= leave2) || keep.contains(&e.handle)) {
                continue;
            }
            let near = u8::from(d2 <= enter2 / 4) + u8::from(d2 <= enter2 / 16);
            let v2: i64 = e.vel.iter().map(|&v| i64::from(v) * i64::from(v)).sum();
            out.boost.push(near + u8::from(v2 >= fast2));
            out.view.push(*e);
            out.hashes.push(hashes.get(i as usize).copied().unwrap_or_else(|| crate::quant::entity_hash(e)));
        }
        self.previous.clear();
        self.previous.extend(out.view.iter().map(|e| e.handle));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(handle: u64, x_mm: i32) -> QEntity {
        QEntity { handle, archetype: 0, shape: 0, pos: [x_mm, 0, 0], rot: 0, vel: [0; 3] }
    }

    fn radii() -> InterestRadii {
        InterestRadii::new(10.0, Some(12.0)).unwrap()
    }

    #[test]
    fn radii_are_checked() {
        assert!(InterestRadii::new(10.0, Some(9.0)).unwrap_err().contains("at least the enter radius"));
        assert!(InterestRadii::new(-1.0, None).is_err());
        assert!(InterestRadii::new(f32::NAN, None).is_err());
        assert_eq!(InterestRadii::new(8.0, None).unwrap().leave_m, 10.0);
    }

    #[test]
    fn grid_and_linear_scan_select_the_same_view() {
        let mut rng = sim_core::rng::WorldRng::from_seed(11);
        for round in 0..50 {
            let mut world: Vec<QEntity> = (0..400u64)
                .map(|h| {
                    let p = [0, 1, 2].map(|_| rng.range_f32(-60_000.0, 60_000.0) as i32);
                    QEntity { handle: h * 2 + 1, archetype: 0, shape: 0, pos: p, rot: 0, vel: [0; 3] }
                })
                .collect();
            world.sort_unstable_by_key(|e| e.handle);
            // Far out near the i32 edge too: keys wrap there.
            world.push(QEntity { handle: 10_001, archetype: 0, shape: 0, pos: [i32::MAX, i32::MIN, 5], rot: 0, vel: [0; 3] });
            let mut center = [0, 1, 2].map(|_| rng.range_f32(-30_000.0, 30_000.0) as i32);
            let grid = InterestGrid::build(&world, radii());
            let (mut pa, mut pb) = (ClientInterest::default(), ClientInterest::default());
            for _ in 0..6 {
                // The centre moves 1.5 m a step, so entities fall into the
                // (enter, leave] band where only the previous view keeps them.
                center[0] += 1_500;
                let a = pa.select(&world, &crate::quant::entity_hashes(&world), Some(&grid), center, radii(), &[7]);
                let b = pb.select(&world, &crate::quant::entity_hashes(&world), None, center, radii(), &[7]);
                assert_eq!(a.view, b.view, "round {round}");
                assert_eq!(a.boost, b.boost);
                assert!(a.view.windows(2).all(|w| w[0].handle < w[1].handle));
                assert!(a.view.iter().any(|e| e.handle == 7), "the kept entity is always in");
            }
        }
    }

    #[test]
    fn an_entity_enters_inside_enter_and_leaves_beyond_leave() {
        let me = at(1, 0);
        let mut prev = ClientInterest::default();
        let mut seen = Vec::new();
        // Walk entity 9 in from 20 m to 0 and back out, 0.5 m a step.
        let path: Vec<i32> = (0..=40).rev().chain(1..=40).map(|k| k * 500).collect();
        for &x in &path {
            let world = vec![me, at(9, x)];
            let grid = InterestGrid::build(&world, radii());
            let v = prev.select(&world, &crate::quant::entity_hashes(&world), Some(&grid), me.pos, radii(), &[1]);
            seen.push(v.view.iter().any(|e| e.handle == 9));
        }
        let first_in = path[seen.iter().position(|&s| s).unwrap()];
        let last_in = path[seen.iter().rposition(|&s| s).unwrap()];
        assert_eq!(first_in, 10_000, "enters at the enter radius");
        assert_eq!(last_in, 12_000, "leaves only beyond the leave radius");
        assert_eq!(seen.windows(2).filter(|w| w[0] != w[1]).count(), 2, "one entry and one exit");
    }

    #[test]
    fn no_churn_at_the_boundary() {
        let me = at(1, 0);
        let mut prev = ClientInterest::default();
        let mut changes = 0;
        let mut last = false;
        // Hovering around the enter radius (9.9 m .. 10.4 m) for 600 ticks.
        for t in 0..600 {
            let x = 9_900 + (t * 37 % 500);
            let world = vec![me, at(9, x)];
            let v = prev.select(&world, &crate::quant::entity_hashes(&world), None, me.pos, radii(), &[1]);
            let now = v.view.iter().any(|e| e.handle == 9);
            changes += usize::from(now != last);
            last = now;
        }
        assert_eq!(changes, 1, "entered once, never left");
    }

    #[test]
    fn near_and_fast_entities_are_boosted() {
        let me = at(1, 0);
        let mut fast = at(5, 9_000);
        fast.vel = [300, 0, 0];
        let world = vec![me, at(3, 1_000), at(4, 4_000), fast, at(6, 9_000)];
        let mut ci = ClientInterest::default();
        let v = ci.select(&world, &crate::quant::entity_hashes(&world), None, me.pos, radii(), &[1]);
        let b: Vec<(u64, u8)> = v.view.iter().map(|e| e.handle).zip(v.boost.iter().copied()).collect();
        assert_eq!(b, vec![(1, 2), (3, 2), (4, 1), (5, 1), (6, 0)]);
    }
}
