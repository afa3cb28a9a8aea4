//! The avatar side of the world: the character controller applied to
//! avatars each tick, respawn, and lag-compensated fire against the pose
//! history (the tick pipeline in `world.rs` calls these).

use crate::character::{CharacterInput, CharacterParams, CharacterState};
use crate::ids::{Archetype, Handle};
use crate::journal::PlanJournal;
use crate::lagcomp::{PoseHistory, Poses};
use crate::physics::{PhysicsPort, Shape};
use crate::schema::ColumnId;
use crate::world::{key_from_bits, World, SPAWN_HEALTH};

impl World {
    /// A bounding radius of a shape (lag-compensated hits are spheres).
    pub(crate) fn bounding_radius(&self, shape: u32) -> f32 {
        match self.shapes.get(shape as usize).map(|s| s.shape) {
            Some(Shape::Ball { radius }) => radius,
            Some(Shape::Capsule { half_height, radius }) => half_height + radius,
            Some(Shape::Cuboid { half_extents: [x, y, z] }) => (x * x + y * y + z * z).sqrt(),
            None => 0.5,
        }
    }

    /// Remembers this tick's poses of avatars and NPCs.
    pub(crate) fn record_poses(&mut self) {
        let mut poses: Poses = Vec::new();
        for a in [Archetype::Npc, Archetype::Avatar] {
            let t = &self.tables[a as usize];
            let (px, py, pz, shape) = (t.f32(ColumnId::PosX), t.f32(ColumnId::PosY), t.f32(ColumnId::PosZ), t.u32(ColumnId::Shape));
            let dead = t.u64(ColumnId::RespawnTick);
            for (row, &h) in t.handles().iter().enumerate() {
                if dead.get(row).is_some_and(|d| *d != 0) {
                    continue;
                }
                poses.push((h, [px[row], py[row], pz[row]], self.bounding_radius(shape[row])));
            }
        }
        poses.sort_unstable_by_key(|p| p.0);
        self.history.push(self.tick.0, poses);
    }

    /// A fire command: a ray from the shooter's eye along its view, tested
    /// against the poses of the tick it saw (`rewind` ticks before this one,
    /// at least 1: the newest state it can have seen; at most the max
    /// rewind). The result goes to the plan journal as a raycast result;
    /// a hit costs the target `FIRE_DAMAGE` health.
    pub(crate) fn fire(&mut self, shooter: Handle, yaw: f32, pitch: f32, rewind: u32, pj: &mut PlanJournal) {
        let Some(loc) = self.index.get(shooter) else { return };
        let t = &self.tables[loc.archetype as usize];
        let row = loc.row as usize;
        if t.u64(ColumnId::RespawnTick).get(row).is_some_and(|d| *d != 0) {
            pj.ray_hit.push(0);
            pj.ray_handle.push(Handle::NONE.to_bits());
            pj.ray_distance.push(f32::INFINITY);
            return;
        }
        let params = self.character_params(t.u32(ColumnId::Shape)[row]);
        let eye = [t.f32(ColumnId::PosX)[row], t.f32(ColumnId::PosY)[row] + 0.5 * params.foot, t.f32(ColumnId::PosZ)[row]];
        let back = u64::from(rewind.clamp(1, self.config.players.max_rewind_ticks.max(1)));
        let seen = (self.tick.0 + 1).saturating_sub(back);
        let hit = self.history.at(seen).and_then(|(_, poses)| crate::lagcomp::ray_hit(poses, eye, crate::lagcomp::aim(yaw, pitch), crate::lagcomp::FIRE_RANGE, shooter.to_bits()));
        match hit {
            Some((target, dist)) => {
                pj.ray_hit.push(1);
                pj.ray_handle.push(target);
                pj.ray_distance.push(dist);
                if let Some(tl) = self.index.get(Handle::from_bits(target)) {
                    let hp = &mut self.tables[tl.archetype as usize].i32_mut(ColumnId::Health)[tl.row as usize];
                    *hp = hp.saturating_sub(crate::lagcomp::FIRE_DAMAGE).max(0);
                }
            }
            None => {
                pj.ray_hit.push(0);
                pj.ray_handle.push(Handle::NONE.to_bits());
                pj.ray_distance.push(f32::INFINITY);
            }
        }
    }

    /// The poses kept for lag compensation.
    #[must_use]
    pub fn pose_history(&self) -> &PoseHistory {
        &self.history
    }

    /// The controller's parameters for an avatar of `shape`.
    #[must_use]
    pub fn character_params(&self, shape: u32) -> CharacterParams {
        let r = &self.config.players;
        let (foot, radius) = match self.shapes.get(shape as usize).map(|s| s.shape) {
            Some(Shape::Ball { radius }) => (radius, radius),
            Some(Shape::Capsule { half_height, radius }) => (half_height + radius, radius),
            Some(Shape::Cuboid { half_extents }) => (half_extents[1], half_extents[0].max(half_extents[2])),
            None => (0.5, 0.5),
        };
        CharacterParams {
            dt: 1.0 / self.config.tick_rate as f32,
            gravity_y: self.config.gravity[1],
            max_speed: r.max_speed,
            acceleration: r.acceleration,
            air_acceleration: r.air_acceleration,
            jump_speed: r.jump_speed,
            ground: r.ground,
            walls: r.walls,
            half_extents: self.config.half_extents,
            foot,
            radius,
        }
    }

    /// Moves every avatar one tick by its latest command (phase 2, after
    /// the plans): the controller's state is the avatar's position and
    /// linvel columns; the kinematic body follows to push what it meets.
    pub(crate) fn control_avatars(&mut self) {
        let n = self.tables[Archetype::Avatar as usize].len();
        for row in 0..n {
            let t = &self.tables[Archetype::Avatar as usize];
            if t.u64(ColumnId::RespawnTick)[row] != 0 {
                continue; // dead: frozen until it respawns
            }
            let params = self.character_params(t.u32(ColumnId::Shape)[row]);
            let f = |c: ColumnId| t.f32(c)[row];
            let state = CharacterState {
                pos: [f(ColumnId::PosX), f(ColumnId::PosY), f(ColumnId::PosZ)],
                vel: [f(ColumnId::LinvelX), f(ColumnId::LinvelY), f(ColumnId::LinvelZ)],
            };
            let input = CharacterInput { movement: [f(ColumnId::InputX), f(ColumnId::InputZ)], buttons: t.u32(ColumnId::Buttons)[row] };
            let next = crate::character::step(&params, state, input);
            let key = key_from_bits(t.keys()[row]);
            let t = &mut self.tables[Archetype::Avatar as usize];
            let [px, py, pz, vx, vy, vz] = t.f32_many_mut([ColumnId::PosX, ColumnId::PosY, ColumnId::PosZ, ColumnId::LinvelX, ColumnId::LinvelY, ColumnId::LinvelZ]);
            (px[row], py[row], pz[row]) = (next.pos[0], next.pos[1], next.pos[2]);
            (vx[row], vy[row], vz[row]) = (next.vel[0], next.vel[1], next.vel[2]);
            self.physics.set_kinematic_target(key, next.pos);
        }
    }


    /// Rule: an avatar whose health ran out (fell out of the arena, was
    /// shot) freezes, and after the scenario's respawn delay reappears at
    /// its owner's spawn point with full health: the player keeps its handle.
    pub(crate) fn rule_respawn(&mut self) {
        let tick = self.tick.0;
        let rules = &self.config.players;
        let n = rules.spawn_points.len().max(1) as u64;
        let t = &mut self.tables[Archetype::Avatar as usize];
        for row in 0..t.len() {
            let due = t.u64(ColumnId::RespawnTick)[row];
            if due == 0 {
                if t.i32(ColumnId::Health)[row] <= 0 {
                    t.u64_mut(ColumnId::RespawnTick)[row] = tick + u64::from(rules.respawn_ticks.max(1));
                    let [vx, vy, vz, ix, iz] = t.f32_many_mut([ColumnId::LinvelX, ColumnId::LinvelY, ColumnId::LinvelZ, ColumnId::InputX, ColumnId::InputZ]);
                    (vx[row], vy[row], vz[row], ix[row], iz[row]) = (0.0, 0.0, 0.0, 0.0, 0.0);
                }
                continue;
            }
            if tick < due {
                continue;
            }
            let k = u64::from(t.u32(ColumnId::Owner)[row].saturating_sub(1)) % n;
            let p = rules.spawn_points.get(k as usize).copied().unwrap_or([0.0, 2.0, 0.0]);
            let [px, py, pz, vx, vy, vz, ix, iz] = t.f32_many_mut([ColumnId::PosX, ColumnId::PosY, ColumnId::PosZ, ColumnId::LinvelX, ColumnId::LinvelY, ColumnId::LinvelZ, ColumnId::InputX, ColumnId::InputZ]);
            (px[row], py[row], pz[row]) = (p[0], p[1], p[2]);
            (vx[row], vy[row], vz[row], ix[row], iz[row]) = (0.0, 0.0, 0.0, 0.0, 0.0);
            t.i32_mut(ColumnId::Health)[row] = SPAWN_HEALTH;
            t.u64_mut(ColumnId::RespawnTick)[row] = 0;
            let key = key_from_bits(t.keys()[row]);
            self.physics.teleport(key, p);
        }
    }

}
