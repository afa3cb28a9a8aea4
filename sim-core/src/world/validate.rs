//! Plan validation (tick phase 2, before apply): every handle, op and
//! field of a plan is checked against the world as it stands, so that a
//! plan either applies whole or not at all.

use super::World;
use crate::ids::{Archetype, Handle, SourceId};
use crate::journal::PlanJournal;
use crate::microplan::{MicroPlan, Section};
use crate::plan::{finite_within, MAX_COORD, MAX_IMPULSE, MAX_SPEED};
use crate::ports::{OpKind, Status};
use crate::schema::ColumnId;
use crate::table::Location;

impl World {
    /// Checks a handle for a plan from `source`: live, this world's,
    /// owned (or the server), not despawned earlier in the plan.
    pub(super) fn check_handle(&self, source: SourceId, h: Handle, despawned: &[(u64, u32)]) -> Result<Location, Status> {
        let loc = self.index.check(h)?;
        if despawned.binary_search_by_key(&h.to_bits(), |&(b, _)| b).is_ok() {
            return Err(Status::DuplicateHandle);
        }
        let owner = self.tables[loc.archetype as usize].u32(ColumnId::Owner)[loc.row as usize];
        if source != SourceId::SERVER && owner != source.0 {
            return Err(Status::NotOwner);
        }
        Ok(loc)
    }

    /// Validates every op against the world as it is now; rejections go to
    /// the plan journal as (index, code).
    pub(super) fn validate_plan(&mut self, p: &MicroPlan, pj: &mut PlanJournal) {
        let source = p.header().source;
        self.graph_scratch.pending = None;
        let mut despawned = std::mem::take(&mut self.scratch.despawned_in_plan);
        despawned.clear();
        for s in p.sections() {
            let idx = |i: usize| s.first_op + i as u32;
            match s.kind {
                OpKind::Spawn => {
                    for i in 0..s.count {
                        if let Err(code) = self.check_spawn(&s, i) {
                            pj.reject(idx(i), code);
                        }
                    }
                }
                OpKind::Despawn => {
                    for i in 0..s.count {
                        let h = s.handle(0, i);
                        match self.check_handle(source, h, &[]) {
                            Ok(_) => despawned.push((h.to_bits(), idx(i))),
                            Err(code) => pj.reject(idx(i), code),
                        }
                    }
                    despawned.sort_unstable();
                    let mut dups: Vec<u32> = Vec::new();
                    for w in despawned.windows(2) {
                        if w[0].0 == w[1].0 {
                            dups.push(w[1].1);
                        }
                    }
                    dups.sort_unstable();
                    for d in dups {
                        pj.reject(d, Status::DuplicateHandle);
                    }
                }
                OpKind::SetVelocity | OpKind::ApplyImpulse | OpKind::MoveTo | OpKind::Command => {
                    for i in 0..s.count {
                        if let Err(code) = self.check_entity_op(source, &s, i, &despawned) {
                            pj.reject(idx(i), code);
                        }
                    }
                }
                OpKind::Grant => {
                    for i in 0..s.count {
                        if source != SourceId::SERVER {
                            pj.reject(idx(i), Status::NotOwner);
                        } else if let Err(code) = self.check_handle(source, s.handle(0, i), &despawned) {
                            pj.reject(idx(i), code);
                        }
                    }
                }
                OpKind::Raycast => {
                    for i in 0..s.count {
                        let (o, d, m) = (s.f32x3(0, i), s.f32x3(1, i), s.f32(2, i));
                        let len2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
                        // Written positively: NaN fails every comparison, so it is refused.
                        let ok = finite_within(&o, MAX_COORD) && finite_within(&d, MAX_COORD) && len2 > 1e-12 && m > 0.0 && m <= MAX_COORD;
                        if !ok {
                            pj.reject(idx(i), Status::BadValue);
                        }
                    }
                }
                OpKind::Overlap => {
                    for i in 0..s.count {
                        let (lo, hi) = (s.f32x3(0, i), s.f32x3(1, i));
                        if !finite_within(&lo, MAX_COORD) || !finite_within(&hi, MAX_COORD) || (0..3).any(|k| lo[k] > hi[k]) {
                            pj.reject(idx(i), Status::BadValue);
                        }
                    }
                }
                OpKind::GraphUpload => {
                    if let Err((at, code)) = self.check_graph_upload(&s) {
                        pj.reject(idx(at), code);
                    }
                }
                OpKind::GraphBind => self.check_graph_binds(source, &s, &despawned, pj),
            }
        }
        self.scratch.despawned_in_plan = despawned;
    }

    pub(super) fn check_spawn(&self, s: &Section<'_>, i: usize) -> Result<(), Status> {
        let a = s.u32(0, i);
        if u8::try_from(a).ok().and_then(Archetype::from_u8).is_none() {
            return Err(Status::UnknownArchetype);
        }
        if s.u32(1, i) as usize >= self.shapes.len() {
            return Err(Status::UnknownShape);
        }
        let rot = s.f32x4(3, i);
        let n2: f32 = rot.iter().map(|x| x * x).sum();
        if !finite_within(&s.f32x3(2, i), MAX_COORD)
            || !finite_within(&rot, 2.0)
            || !(0.5..=1.5).contains(&n2)
            || !finite_within(&s.f32x3(4, i), MAX_SPEED)
            || !finite_within(&s.f32x3(5, i), MAX_SPEED)
        {
            return Err(Status::BadValue);
        }
        Ok(())
    }

    pub(super) fn check_entity_op(&self, source: SourceId, s: &Section<'_>, i: usize, despawned: &[(u64, u32)]) -> Result<(), Status> {
        let loc = self.check_handle(source, s.handle(0, i), despawned)?;
        match s.kind {
            OpKind::SetVelocity => Self::check_velocity(loc.archetype, s.f32x3(1, i), s.f32x3(2, i)),
            OpKind::ApplyImpulse => Self::check_impulse(loc.archetype, s.f32x3(1, i)),
            OpKind::Command => {
                if loc.archetype != Archetype::Avatar {
                    return Err(Status::WrongArchetype);
                }
                let (m, yaw, pitch) = (s.f32x3(3, i), s.f32(4, i), s.f32(5, i));
                // Written positively so NaN fails.
                let ok = finite_within(&m, 1.0)
                    && m[1] == 0.0
                    && m[0] * m[0] + m[2] * m[2] <= 1.0 + 1e-4
                    && yaw.is_finite()
                    && yaw.abs() <= 1.0e4
                    && pitch.is_finite()
                    && pitch.abs() <= 1.6;
                if ok {
                    Ok(())
                } else {
                    Err(Status::BadValue)
                }
            }
            _ => Self::check_move_to(loc.archetype, s.f32x3(1, i), s.f32(2, i)),
        }
    }

    /// A set_velocity's values for an entity of `arch` (plans and graphs).
    pub(super) fn check_velocity(arch: Archetype, linvel: [f32; 3], angvel: [f32; 3]) -> Result<(), Status> {
        if arch.is_kinematic() {
            return Err(Status::WrongArchetype);
        }
        if !finite_within(&linvel, MAX_SPEED) || !finite_within(&angvel, MAX_SPEED) {
            return Err(Status::BadValue);
        }
        Ok(())
    }

    /// An apply_impulse's value for an entity of `arch`.
    pub(super) fn check_impulse(arch: Archetype, impulse: [f32; 3]) -> Result<(), Status> {
        if arch.is_kinematic() {
            return Err(Status::WrongArchetype);
        }
        if !finite_within(&impulse, MAX_IMPULSE) {
            return Err(Status::BadValue);
        }
        Ok(())
    }

    /// A move_to's values for an entity of `arch`.
    pub(super) fn check_move_to(arch: Archetype, target: [f32; 3], max_speed: f32) -> Result<(), Status> {
        if arch != Archetype::Npc {
            return Err(Status::WrongArchetype);
        }
        // Written positively so NaN fails.
        if finite_within(&target, MAX_COORD) && max_speed.is_finite() && (0.0..=MAX_SPEED).contains(&max_speed) {
            Ok(())
        } else {
            Err(Status::BadValue)
        }
    }
}
