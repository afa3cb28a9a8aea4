//! The character controller: how a player's commands move its avatar.
//!
//! A pure function of (parameters, state, input), in f32 with only `+ - * /`,
//! `sqrt` and comparisons, so it gives the same bits on every platform. The
//! world runs it for every avatar each tick; clients run the very same code
//! to predict their own avatar and replay unacknowledged commands (see
//! `net::predict`), which is why a prediction on open ground is exact.
//!
//! The model: horizontal velocity accelerates toward `move * max_speed`
//! (`acceleration` on the ground, `air_acceleration` in the air); on the
//! ground the jump button sets the vertical speed to `jump_speed`; in the
//! air gravity pulls. The ground is the arena's top face (y = 0) inside its
//! half extents; walls (when the arena has them) stop the avatar at its
//! radius. Avatars are kinematic: they push props and NPCs, nothing pushes
//! them, and they do not climb props (no step height yet).

/// Buttons of a command.
pub const BUTTON_JUMP: u32 = 1;
pub const BUTTON_FIRE: u32 = 2;

/// Gameplay limits and the static world the controller collides with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CharacterParams {
    /// Seconds per tick.
    pub dt: f32,
    pub gravity_y: f32,
    pub max_speed: f32,
    pub acceleration: f32,
    pub air_acceleration: f32,
    pub jump_speed: f32,
    /// The arena has a ground (its top face is y = 0).
    pub ground: bool,
    /// The arena has walls at its half extents.
    pub walls: bool,
    pub half_extents: [f32; 2],
    /// Distance from the avatar's centre to its feet.
    pub foot: f32,
    /// Horizontal radius (for walls).
    pub radius: f32,
}

/// What the controller integrates: position of the centre and velocity.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct CharacterState {
    pub pos: [f32; 3],
    pub vel: [f32; 3],
}

/// One tick's input: move along x and z (length <= 1), button bits.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct CharacterInput {
    pub movement: [f32; 2],
    pub buttons: u32,
}

/// How far above the ground the feet may be and still stand on it.
const GROUND_EPS: f32 = 1e-3;
/// A body falling through the ground plane by less than this in one tick
/// lands on it; deeper (it came from below or the side) it keeps falling.
const LAND_DEPTH: f32 = 0.5;

impl CharacterParams {
    fn over_ground(&self, x: f32, z: f32) -> bool {
        self.ground && x.abs() <= self.half_extents[0] && z.abs() <= self.half_extents[1]
    }

    /// Standing on the ground: feet at (or just above) y = 0, not rising.
    #[must_use]
    pub fn grounded(&self, s: &CharacterState) -> bool {
        self.over_ground(s.pos[0], s.pos[2]) && s.pos[1] - self.foot <= GROUND_EPS && s.pos[1] - self.foot >= -LAND_DEPTH && s.vel[1] <= 0.0
    }
}

/// Advances one tick.
#[must_use]
pub fn step(p: &CharacterParams, s: CharacterState, input: CharacterInput) -> CharacterState {
    let [mut mx, mut mz] = input.movement;
    let len2 = mx * mx + mz * mz;
    if len2 > 1.0 {
        let l = len2.sqrt();
        (mx, mz) = (mx / l, mz / l);
    }
    let grounded = p.grounded(&s);
    let accel = if grounded { p.acceleration } else { p.air_acceleration };
    let (mut dvx, mut dvz) = (mx * p.max_speed - s.vel[0], mz * p.max_speed - s.vel[2]);
    let dv2 = dvx * dvx + dvz * dvz;
    let max_dv = accel * p.dt;
    if dv2 > max_dv * max_dv {
        let k = max_dv / dv2.sqrt();
        (dvx, dvz) = (dvx * k, dvz * k);
    }
    let mut vel = [s.vel[0] + dvx, s.vel[1], s.vel[2] + dvz];
    if grounded {
        vel[1] = if input.buttons & BUTTON_JUMP != 0 { p.jump_speed } else { 0.0 };
    } else {
        vel[1] += p.gravity_y * p.dt;
    }
    let mut pos = [s.pos[0] + vel[0] * p.dt, s.pos[1] + vel[1] * p.dt, s.pos[2] + vel[2] * p.dt];
    if grounded && vel[1] <= 0.0 {
        pos[1] = p.foot;
    }
    // Landing: feet crossed the ground plane from above during this tick.
    let feet = pos[1] - p.foot;
    if p.over_ground(pos[0], pos[2]) && (-LAND_DEPTH..0.0).contains(&feet) && s.pos[1] - p.foot >= -GROUND_EPS {
        pos[1] = p.foot;
        vel[1] = 0.0;
    }
    if p.walls {
        for (axis, he) in [(0usize, p.half_extents[0]), (2, p.half_extents[1])] {
            let lim = he - p.radius;
            // Explicit comparisons (f32::min/max leave the sign of a zero open).
            if pos[axis] > lim {
                pos[axis] = lim;
                if vel[axis] > 0.0 {
                    vel[axis] = 0.0;
                }
            } else if pos[axis] < -lim {
                pos[axis] = -lim;
                if vel[axis] < 0.0 {
                    vel[axis] = 0.0;
                }
            }
        }
    }
    CharacterState { pos, vel }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> CharacterParams {
        CharacterParams {
            dt: 1.0 / 60.0,
            gravity_y: -9.81,
            max_speed: 6.0,
            acceleration: 40.0,
            air_acceleration: 10.0,
            jump_speed: 5.0,
            ground: true,
            walls: true,
            half_extents: [10.0, 10.0],
            foot: 0.9,
            radius: 0.4,
        }
    }

    #[test]
    fn falls_lands_walks_to_top_speed_jumps_and_stops_at_walls() {
        let p = params();
        let mut s = CharacterState { pos: [0.0, 3.0, 0.0], vel: [0.0; 3] };
        for _ in 0..120 {
            s = step(&p, s, CharacterInput::default());
        }
        assert_eq!(s.pos[1], p.foot, "landed on the ground");
        assert!(p.grounded(&s));
        let fwd = CharacterInput { movement: [0.0, -1.0], buttons: 0 };
        for _ in 0..60 {
            s = step(&p, s, fwd);
        }
        assert_eq!(s.vel[2], -6.0, "top speed reached within a second");
        assert_eq!(s.pos[1], p.foot, "walking stays on the ground");
        s = step(&p, s, CharacterInput { movement: [0.0, -1.0], buttons: BUTTON_JUMP });
        assert!(s.vel[1] > 4.0 && s.pos[1] > p.foot, "{s:?}");
        let mut peak = s.pos[1];
        for _ in 0..120 {
            s = step(&p, s, fwd);
            peak = peak.max(s.pos[1]);
        }
        assert!(peak > p.foot + 1.0, "jumped {peak}");
        assert_eq!(s.pos[1], p.foot, "landed again");
        assert_eq!(s.pos[2], -(10.0 - 0.4), "stopped by the wall");
        assert_eq!(s.vel[2], 0.0);
        // A diagonal input of length > 1 is normalised: no faster diagonals.
        for _ in 0..120 {
            s = step(&p, s, CharacterInput { movement: [1.0, 1.0], buttons: 0 });
        }
        let v = (s.vel[0] * s.vel[0] + s.vel[2] * s.vel[2]).sqrt();
        assert!((v - 6.0).abs() < 1e-3 || s.vel[0] == 0.0 || s.vel[2] == 0.0, "{s:?}");
    }

    #[test]
    fn off_the_edge_without_walls_it_falls() {
        let p = CharacterParams { walls: false, ..params() };
        let mut s = CharacterState { pos: [9.5, p.foot, 0.0], vel: [6.0, 0.0, 0.0] };
        for _ in 0..60 {
            s = step(&p, s, CharacterInput { movement: [1.0, 0.0], buttons: 0 });
        }
        assert!(s.pos[1] < 0.0, "fell off: {s:?}");
    }
}

/// The scenario's `[players]` rules as the world keeps them (part of the
/// world config and of snapshots).
#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PlayerRules {
    /// Shape index of avatars.
    pub shape: u32,
    pub max_speed: f32,
    pub acceleration: f32,
    pub air_acceleration: f32,
    pub jump_speed: f32,
    pub spawn_points: Vec<[f32; 3]>,
    /// Most ticks a fire command may be rewound (lag compensation).
    pub max_rewind_ticks: u32,
    /// Ticks a dead avatar waits before it respawns (at least 1).
    pub respawn_ticks: u32,
    /// The arena has a ground box / walls (the controller's static world).
    pub ground: bool,
    pub walls: bool,
}
