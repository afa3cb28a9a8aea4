//! Lag compensation: about a second of poses of the things players shoot
//! at (avatars and NPCs), and fire rays evaluated against the world as the
//! shooter saw it (Source-style rewind), deterministically.
//!
//! A player's command for tick T carries how many ticks behind T its view
//! was (its interpolation delay plus the time the command spent waiting);
//! the world tests the ray against the poses of tick `T - rewind`, clamped
//! to the scenario's maximum rewind and to the history it keeps. Targets are
//! spheres of their shape's bounding radius. Static geometry does not block
//! fire yet. Trig is ours (basic arithmetic) so every platform agrees.

use std::collections::VecDeque;

/// Ticks of poses kept (a second at 60 Hz, more than any max rewind).
pub const HISTORY_TICKS: usize = 64;
/// Reach of a fire ray, metres.
pub const FIRE_RANGE: f32 = 200.0;
/// Health a hit takes.
pub const FIRE_DAMAGE: i32 = 25;

/// One tick's poses: (handle, centre, bounding radius), sorted by handle.
pub type Poses = Vec<(u64, [f32; 3], f32)>;

/// The poses of the last [`HISTORY_TICKS`] ticks (part of snapshots).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoseHistory {
    pub(crate) ticks: VecDeque<(u64, Poses)>,
}

impl PoseHistory {
    pub(crate) fn push(&mut self, tick: u64, poses: Poses) {
        if self.ticks.len() == HISTORY_TICKS {
            self.ticks.pop_front();
        }
        self.ticks.push_back((tick, poses));
    }

    /// The poses of `tick`, or of the oldest tick kept when it is older.
    #[must_use]
    pub fn at(&self, tick: u64) -> Option<(u64, &Poses)> {
        let i = self.ticks.iter().position(|(t, _)| *t >= tick).unwrap_or(self.ticks.len().saturating_sub(1));
        self.ticks.get(i).map(|(t, p)| (*t, p))
    }

    /// Every tick kept, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &(u64, Poses)> {
        self.ticks.iter()
    }
}

/// The nearest pose hit by a ray (unit `dir`) within `range`, skipping
/// `shooter`: (handle, distance). Ties go to the lower handle.
#[must_use]
pub fn ray_hit(poses: &Poses, origin: [f32; 3], dir: [f32; 3], range: f32, shooter: u64) -> Option<(u64, f32)> {
    let mut best: Option<(u64, f32)> = None;
    for &(h, c, r) in poses {
        if h == shooter {
            continue;
        }
        let oc = [c[0] - origin[0], c[1] - origin[1], c[2] - origin[2]];
        let along = oc[0] * dir[0] + oc[1] * dir[1] + oc[2] * dir[2];
        let d2 = oc[0] * oc[0] + oc[1] * oc[1] + oc[2] * oc[2] - along * along;
        if along < 0.0 || d2 > r * r {
            continue;
        }
        let t = along - (r * r - d2).max(0.0).sqrt();
        if t <= range && best.is_none_or(|(_, bt)| t < bt) {
            best = Some((h, t.max(0.0)));
        }
    }
    best
}

/// sin and cos of `x` radians with basic arithmetic only (range reduction
/// to [-pi/4, pi/4] and Taylor polynomials; error < 1e-6).
#[must_use]
pub fn sin_cos(x: f32) -> (f32, f32) {
    let half_pi = std::f32::consts::FRAC_PI_2;
    let q = (x / half_pi).round();
    let r = x - q * half_pi;
    let r2 = r * r;
    let s = r * (1.0 - r2 / 6.0 * (1.0 - r2 / 20.0 * (1.0 - r2 / 42.0 * (1.0 - r2 / 72.0))));
    let c = 1.0 - r2 / 2.0 * (1.0 - r2 / 12.0 * (1.0 - r2 / 30.0 * (1.0 - r2 / 56.0)));
    match (q as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// The unit view direction of yaw/pitch: yaw 0 looks along -z, positive
/// yaw turns toward -x; positive pitch looks up.
#[must_use]
pub fn aim(yaw: f32, pitch: f32) -> [f32; 3] {
    let (sy, cy) = sin_cos(yaw);
    let (sp, cp) = sin_cos(pitch);
    [-sy * cp, sp, -cy * cp]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_trig_agrees_with_libm_to_a_micro() {
        for k in -2000..2000 {
            let x = k as f32 * 0.01;
            let (s, c) = sin_cos(x);
            assert!((s - x.sin()).abs() < 2e-6 && (c - x.cos()).abs() < 2e-6, "{x}: {s} {c}");
        }
        let d = aim(0.0, 0.0);
        assert_eq!(d, [-0.0, 0.0, -1.0]);
    }

    #[test]
    fn rays_hit_the_nearest_sphere_but_never_the_shooter() {
        let poses: Poses = vec![(1, [0.0, 1.0, 0.0], 0.5), (2, [0.0, 1.0, -5.0], 0.5), (3, [0.0, 1.0, -3.0], 0.5), (4, [3.0, 1.0, -3.0], 0.5)];
        let dir = aim(0.0, 0.0);
        assert_eq!(ray_hit(&poses, [0.0, 1.0, 0.0], dir, 100.0, 1), Some((3, 2.5)));
        assert_eq!(ray_hit(&poses, [0.0, 1.0, 0.0], dir, 2.0, 1), None, "out of range");
        assert_eq!(ray_hit(&poses, [0.0, 1.0, 0.0], aim(std::f32::consts::PI, 0.0), 100.0, 1), None, "behind");
        let mut h = PoseHistory::default();
        for t in 0..100 {
            h.push(t, vec![]);
        }
        assert_eq!(h.at(90).map(|(t, _)| t), Some(90));
        assert_eq!(h.at(2).map(|(t, _)| t), Some(36), "clamped to the oldest kept");
    }
}
