//! Game rules (tick phase 5, after physics and sync): out-of-bounds
//! damage and despawn, and kinematic NPC steering.

use super::{key_from_bits, World, OUT_OF_BOUNDS_DAMAGE};
use crate::ids::{Archetype, Handle, SourceId};
use crate::journal::TickJournal;
use crate::physics::PhysicsPort;
use crate::schema::ColumnId;

impl World {
    /// Rule: bodies outside the arena lose health every tick and are
    /// despawned when it reaches zero.
    pub(super) fn rule_out_of_bounds(&mut self, journal: &mut TickJournal) {
        let [hx, hz] = self.config.half_extents;
        let kill_y = self.config.kill_y;
        let doomed = &mut self.scratch.doomed;
        doomed.clear();
        for table in &mut self.tables {
            let n = table.len();
            // Avatars are not despawned: they die and respawn (`rule_respawn`).
            let avatar = table.archetype() == Archetype::Avatar;
            for row in 0..n {
                let (x, y, z) =
                    (table.f32(ColumnId::PosX)[row], table.f32(ColumnId::PosY)[row], table.f32(ColumnId::PosZ)[row]);
                let inside = x.abs() <= hx && z.abs() <= hz && y >= kill_y;
                if inside && !avatar && table.i32(ColumnId::Health)[row] <= 0 {
                    // Killed inside the arena (shot): removed like the fallen.
                    doomed.push(Handle::from_bits(table.handles()[row]));
                    continue;
                }
                if inside || (avatar && table.i32(ColumnId::Health)[row] <= 0) {
                    continue;
                }
                journal.counters.out_of_bounds_damage += 1;
                let health = &mut table.i32_mut(ColumnId::Health)[row];
                *health = health.saturating_sub(OUT_OF_BOUNDS_DAMAGE);
                if *health <= 0 && !avatar {
                    doomed.push(Handle::from_bits(table.handles()[row]));
                }
            }
        }
        let doomed = std::mem::take(&mut self.scratch.doomed);
        for &h in &doomed {
            if self.despawn(h) {
                journal.counters.despawned += 1;
                journal.counters.despawned_out_of_bounds += 1;
            }
        }
        self.scratch.doomed = doomed;
    }

    /// Rule: kinematic NPCs advance toward their move target at their max
    /// speed; server-owned NPCs that arrive pick a new random target (world
    /// RNG), others stop.
    pub(super) fn rule_npc_steering(&mut self, journal: &mut TickJournal) {
        let dt = 1.0 / self.config.tick_rate as f32;
        let r = self.config.wander_radius;
        let table = &mut self.tables[Archetype::Npc as usize];
        for row in 0..table.len() {
            let owner = table.u32(ColumnId::Owner)[row];
            let key = key_from_bits(table.keys()[row]);
            let p = [table.f32(ColumnId::PosX)[row], table.f32(ColumnId::PosY)[row], table.f32(ColumnId::PosZ)[row]];
            let [tx, ty, tz, ms] =
                table.f32_many_mut([ColumnId::TargetX, ColumnId::TargetY, ColumnId::TargetZ, ColumnId::MaxSpeed]);
            if ms[row] <= 0.0 {
                continue;
            }
            let d = [tx[row] - p[0], ty[row] - p[1], tz[row] - p[2]];
            let dist = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            let step = ms[row] * dt;
            let next = if dist <= step {
                let arrived = [tx[row], ty[row], tz[row]];
                if owner == SourceId::SERVER.0 {
                    tx[row] = self.rng.range_f32(-r, r);
                    tz[row] = self.rng.range_f32(-r, r);
                    journal.counters.npc_retargets += 1;
                } else {
                    ms[row] = 0.0;
                }
                arrived
            } else {
                let s = step / dist;
                [p[0] + d[0] * s, p[1] + d[1] * s, p[2] + d[2] * s]
            };
            self.physics.set_kinematic_target(key, next);
        }
    }
}
