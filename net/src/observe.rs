//! The policy observation: full-precision columns of what one policy may
//! see, built by the same function in process (`Sim.observation`) and on
//! the server (the `Observation` frame), so a policy meets the same inputs
//! wherever it runs.
//!
//! A policy sees every entity it owns, and every entity within `radius`
//! metres (3-D distance) of one of those, sorted by handle: handle,
//! archetype, owner, health, position and linear velocity, as the world
//! holds them (no quantization). The wire form is hash-checked: the frame
//! carries the xxh3 of its columns' canonical bytes.

use crate::proto::ProtoError;
use sim_core::{Archetype, ColumnId, World};
use std::collections::BTreeMap;

/// The most entities one observation carries (41 bytes each: under the
/// control stream's 1 MiB frame cap). Owned entities come first in the cut.
pub const MAX_OBSERVED: usize = 20_000;
/// The largest observation radius a policy may ask for, in metres (it
/// bounds the server's selection work).
pub const MAX_RADIUS: f32 = 50.0;
/// The longest interval between observations a policy may ask for, in ticks.
pub const MAX_EVERY: u16 = 600;
/// Bytes per observed entity on the wire.
pub const ENTITY_BYTES: usize = 8 + 1 + 4 + 4 + 12 + 12;

/// An `Observation` frame's size on the control stream for `n` entities:
/// length prefix, type and hash (13), tick and count (12), the columns.
#[must_use]
pub const fn frame_bytes(n: usize) -> usize {
    13 + 12 + n * ENTITY_BYTES
}

/// What a policy asks to observe: every `every` ticks (0 stops), within
/// `radius` metres of its entities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObserveRequest {
    pub every: u16,
    pub radius: f32,
}

impl ObserveRequest {
    /// Why the request is refused, or None when it is valid.
    #[must_use]
    pub fn invalid(&self) -> Option<String> {
        if self.every > MAX_EVERY {
            return Some(format!("every {} ticks: expected 0 (stop) ..= {MAX_EVERY}", self.every));
        }
        if !(self.radius.is_finite() && (0.0..=MAX_RADIUS).contains(&self.radius)) {
            return Some(format!("radius {}: expected a finite number of metres in 0 ..= {MAX_RADIUS}", self.radius));
        }
        None
    }

    /// Whether an observation is due after `tick`.
    #[must_use]
    pub fn due(&self, tick: u64) -> bool {
        self.every > 0 && tick.is_multiple_of(u64::from(self.every))
    }
}

/// One policy's observation at one tick (columns of equal length; `pos`
/// and `linvel` are x, y, z per entity).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub tick: u64,
    pub handle: Vec<u64>,
    pub archetype: Vec<u8>,
    pub owner: Vec<u32>,
    pub health: Vec<i32>,
    pub pos: Vec<f32>,
    pub linvel: Vec<f32>,
}

fn cell(p: [f32; 3], size: f32) -> (i32, i32) {
    // `as` saturates: far-away coordinates share the edge cells, which
    // only costs comparisons, never correctness (distance decides).
    ((p[0] / size).floor() as i32, (p[2] / size).floor() as i32)
}

impl Observed {
    /// Every entity of `world`, sorted by handle (what [`Observed::select`]
    /// picks from; built once per tick however many policies observe).
    #[must_use]
    pub fn all(world: &World) -> Observed {
        let mut every: Vec<(u64, Archetype, usize)> = Vec::with_capacity(world.entity_count());
        for a in Archetype::ALL {
            every.extend(world.table(a).handles().iter().enumerate().map(|(row, h)| (*h, a, row)));
        }
        every.sort_unstable_by_key(|p| p.0);
        let n = every.len();
        let mut o = Observed {
            tick: world.tick().0,
            handle: Vec::with_capacity(n),
            archetype: Vec::with_capacity(n),
            owner: Vec::with_capacity(n),
            health: Vec::with_capacity(n),
            pos: Vec::with_capacity(3 * n),
            linvel: Vec::with_capacity(3 * n),
        };
        for (h, a, row) in every {
            let t = world.table(a);
            o.handle.push(h);
            o.archetype.push(a as u8);
            o.owner.push(t.u32(ColumnId::Owner)[row]);
            o.health.push(t.i32(ColumnId::Health)[row]);
            o.pos.extend_from_slice(&[t.f32(ColumnId::PosX)[row], t.f32(ColumnId::PosY)[row], t.f32(ColumnId::PosZ)[row]]);
            o.linvel.extend_from_slice(&[t.f32(ColumnId::LinvelX)[row], t.f32(ColumnId::LinvelY)[row], t.f32(ColumnId::LinvelZ)[row]]);
        }
        o
    }

    /// What `source` sees in `world` within `radius` metres of what it owns.
    #[must_use]
    pub fn of(world: &World, source: u32, radius: f32) -> Observed {
        Observed::all(world).select(source, radius)
    }

    fn at(&self, i: usize) -> [f32; 3] {
        [self.pos[3 * i], self.pos[3 * i + 1], self.pos[3 * i + 2]]
    }

    /// The part of this (whole-world) view that `source` sees: what it
    /// owns, and what is within `radius` metres of one of those (owned
    /// entities first when the [`MAX_OBSERVED`] cap cuts).
    #[must_use]
    pub fn select(&self, source: u32, radius: f32) -> Observed {
        // The owned entities' positions, bucketed on the x-z plane by
        // cells of `radius` (neighbours are within the 3 x 3 around).
        let r = radius.max(0.0);
        let size = r.max(0.5);
        let mut grid: BTreeMap<(i32, i32), Vec<[f32; 3]>> = BTreeMap::new();
        let mut mine = 0usize;
        for i in (0..self.len()).filter(|i| self.owner[*i] == source) {
            let at = self.at(i);
            grid.entry(cell(at, size)).or_default().push(at);
            mine += 1;
        }
        let near = |at: [f32; 3]| {
            let (cx, cz) = cell(at, size);
            (-1..=1).any(|dx| {
                (-1..=1).any(|dz| {
                    grid.get(&(cx.saturating_add(dx), cz.saturating_add(dz))).is_some_and(|v| {
                        v.iter().any(|o| {
                            let d = [at[0] - o[0], at[1] - o[1], at[2] - o[2]];
                            d[0] * d[0] + d[1] * d[1] + d[2] * d[2] <= r * r
                        })
                    })
                })
            })
        };
        let mut others_left = MAX_OBSERVED.saturating_sub(mine);
        let mut o = Observed { tick: self.tick, ..Observed::default() };
        for i in 0..self.len() {
            let keep = if self.owner[i] == source {
                true
            } else if r > 0.0 && others_left > 0 && mine > 0 && near(self.at(i)) {
                others_left -= 1;
                true
            } else {
                false
            };
            if keep && o.handle.len() < MAX_OBSERVED {
                o.handle.push(self.handle[i]);
                o.archetype.push(self.archetype[i]);
                o.owner.push(self.owner[i]);
                o.health.push(self.health[i]);
                o.pos.extend_from_slice(&self.pos[3 * i..3 * i + 3]);
                o.linvel.extend_from_slice(&self.linvel[3 * i..3 * i + 3]);
            }
        }
        o
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.handle.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.handle.is_empty()
    }

    /// The canonical bytes: `tick u64 | n u32 | handle[n] u64 | archetype[n]
    /// u8 | owner[n] u32 | health[n] i32 | pos[3n] f32 | linvel[3n] f32`,
    /// little-endian (at most [`MAX_OBSERVED`] entities).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let n = self.len().min(MAX_OBSERVED);
        let mut b = Vec::with_capacity(12 + n * ENTITY_BYTES);
        b.extend_from_slice(&self.tick.to_le_bytes());
        b.extend_from_slice(&(n as u32).to_le_bytes());
        b.extend(self.handle[..n].iter().flat_map(|x| x.to_le_bytes()));
        b.extend_from_slice(&self.archetype[..n]);
        b.extend(self.owner[..n].iter().flat_map(|x| x.to_le_bytes()));
        b.extend(self.health[..n].iter().flat_map(|x| x.to_le_bytes()));
        b.extend(self.pos[..3 * n].iter().flat_map(|x| x.to_le_bytes()));
        b.extend(self.linvel[..3 * n].iter().flat_map(|x| x.to_le_bytes()));
        b
    }

    /// The xxh3 of [`Observed::encode`].
    #[must_use]
    pub fn hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.encode())
    }

    /// Decodes [`Observed::encode`]'s bytes (exact length, at most
    /// [`MAX_OBSERVED`] entities, known archetypes).
    pub fn decode(b: &[u8]) -> Result<Observed, ProtoError> {
        if b.len() < 12 {
            return Err(ProtoError::Truncated("observation header"));
        }
        let tick = u64::from_le_bytes(b[0..8].try_into().map_err(|_| ProtoError::Truncated("tick"))?);
        let n = u32::from_le_bytes(b[8..12].try_into().map_err(|_| ProtoError::Truncated("count"))?) as usize;
        if n > MAX_OBSERVED || b.len() != 12 + n * ENTITY_BYTES {
            return Err(ProtoError::Malformed("observation count does not match the frame length"));
        }
        let mut at = 12;
        let mut take = |len: usize| {
            let s = &b[at..at + len];
            at += len;
            s
        };
        let u64s = |s: &[u8]| s.chunks_exact(8).map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect::<Vec<u64>>();
        let w4 = |s: &[u8]| s.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect::<Vec<[u8; 4]>>();
        let handle = u64s(take(8 * n));
        let archetype = take(n).to_vec();
        if archetype.iter().any(|a| Archetype::from_u8(*a).is_none()) {
            return Err(ProtoError::Malformed("observation archetype"));
        }
        let owner = w4(take(4 * n)).into_iter().map(u32::from_le_bytes).collect();
        let health = w4(take(4 * n)).into_iter().map(i32::from_le_bytes).collect();
        let pos = w4(take(12 * n)).into_iter().map(f32::from_le_bytes).collect();
        let linvel = w4(take(12 * n)).into_iter().map(f32::from_le_bytes).collect();
        Ok(Observed { tick, handle, archetype, owner, health, pos, linvel })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena() -> World {
        let mut w = World::from_scenario(&sim_core::Scenario::default_arena(), None);
        let npcs: Vec<u64> = w.table(Archetype::Npc).handles()[..3].to_vec();
        let mut b = sim_core::PlanBuilder::new(sim_core::Tick(1), sim_core::SourceId::SERVER, 1);
        for h in npcs {
            b.push(sim_core::Op::Grant { handle: sim_core::Handle::from_bits(h), owner: 7 });
        }
        let p = sim_core::MicroPlan::decode(b.build()).expect("plan");
        w.step(&[p], &mut sim_core::NoClock);
        w
    }

    #[test]
    fn selects_owned_and_near_sorted_and_round_trips() {
        let w = arena();
        let none = Observed::of(&w, 7, 0.0);
        assert_eq!(none.len(), 3);
        assert!(none.owner.iter().all(|o| *o == 7));
        // The grid's pick equals a brute-force one, for several radii.
        let all = Observed::all(&w);
        let owned: Vec<[f32; 3]> = (0..all.len()).filter(|i| all.owner[*i] == 7).map(|i| all.at(i)).collect();
        for r in [0.7f32, 3.0, 6.0, 15.0] {
            let o = all.select(7, r);
            assert!(o.handle.windows(2).all(|p| p[0] < p[1]), "sorted by handle");
            let want: Vec<u64> = (0..all.len())
                .filter(|i| all.owner[*i] == 7 || owned.iter().any(|q| (0..3).map(|k| (all.at(*i)[k] - q[k]) * (all.at(*i)[k] - q[k])).sum::<f32>() <= r * r))
                .map(|i| all.handle[i])
                .collect();
            assert_eq!(o.handle, want, "radius {r}");
        }
        let o = all.select(7, 15.0);
        assert!(o.len() > 3, "neighbours within 15 m");
        let every = Observed::of(&w, 7, MAX_RADIUS);
        assert!(every.len() >= o.len());
        let b = o.encode();
        assert_eq!(b.len(), 12 + o.len() * ENTITY_BYTES);
        assert_eq!(Observed::decode(&b).expect("decodes"), o);
        assert_eq!(Observed::of(&w, 9, 10.0).len(), 0, "a source that owns nothing sees nothing");
    }

    #[test]
    fn bad_bytes_and_requests_are_refused() {
        let o = Observed::of(&arena(), 7, 3.0);
        let b = o.encode();
        assert!(Observed::decode(&b[..b.len() - 1]).is_err());
        assert!(Observed::decode(&b[..5]).is_err());
        let mut bad = b.clone();
        bad[12 + 8 * o.len()] = 9;
        assert!(Observed::decode(&bad).is_err(), "unknown archetype");
        let mut huge = b;
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Observed::decode(&huge).is_err());
        assert!(ObserveRequest { every: 1, radius: f32::NAN }.invalid().is_some());
        assert!(ObserveRequest { every: 1, radius: 51.0 }.invalid().is_some());
        assert!(ObserveRequest { every: 601, radius: 1.0 }.invalid().is_some());
        assert!(ObserveRequest { every: 0, radius: 0.0 }.invalid().is_none());
        assert!(ObserveRequest { every: 3, radius: 1.0 }.due(9) && !ObserveRequest { every: 3, radius: 1.0 }.due(10));
        assert!(!ObserveRequest { every: 0, radius: 1.0 }.due(0));
    }
}
