//! Scenario files: the data that builds tick 0 of a world.
//!
//! TOML, parsed with serde (`deny_unknown_fields`, so a typo is an error that
//! names the line), then validated field by field. Every error names the
//! file, the field (or line and column) and what was expected.

use serde::Deserialize;
use std::path::Path;

/// The embedded default scenario (an arena of ~1,000 props and 12 NPCs).
pub const DEFAULT_SCENARIO: &str = include_str!("../scenarios/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: field `{field}`: expected {expected}, found {found}")]
    Invalid { file: String, field: String, expected: String, found: String },
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_tick_rate")]
    pub tick_rate: u32,
    #[serde(default = "default_gravity")]
    pub gravity: [f32; 3],
    pub arena: Arena,
    #[serde(default)]
    pub shapes: Vec<ShapeDef>,
    #[serde(default)]
    pub bodies: Vec<BodyDef>,
    #[serde(default)]
    pub grids: Vec<GridDef>,
    #[serde(default)]
    pub npcs: Vec<NpcDef>,
    #[serde(default)]
    pub cameras: Vec<CameraDef>,
    /// How players' avatars move and where they spawn.
    #[serde(default)]
    pub players: Players,
    /// Interest management a server applies to clients that control
    /// entities unless told otherwise (absent: every client sees every
    /// entity).
    #[serde(default)]
    pub interest: Option<InterestDef>,
}

/// `[interest]`: the snapshots of a client that controls entities (a
/// player's avatar, a policy's NPCs) carry the entities within `radius`
/// metres of its first one; one leaves the view only beyond `leave_radius`
/// (default: 1.25 x radius), so entities at the boundary do not churn.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InterestDef {
    pub radius: f32,
    #[serde(default)]
    pub leave_radius: Option<f32>,
}

/// Gameplay limits of players' avatars (the character controller's
/// parameters) and their spawn points.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Players {
    /// Shape of an avatar (a shape name; default: the first shape).
    pub shape: Option<String>,
    /// Top walking speed, m/s.
    pub max_speed: f32,
    /// Acceleration toward the commanded velocity on the ground, m/s^2.
    pub acceleration: f32,
    /// The same in the air, m/s^2.
    pub air_acceleration: f32,
    /// Vertical speed of a jump, m/s.
    pub jump_speed: f32,
    /// Where avatars appear (centre positions); player k uses point k mod n.
    pub spawn_points: Vec<[f32; 3]>,
    /// How far back a fire command may see (lag compensation), ms.
    pub max_rewind_ms: u32,
    /// How long a dead avatar waits before it respawns, ms.
    pub respawn_delay_ms: u32,
}

impl Default for Players {
    fn default() -> Self {
        // 16 points on a ring of radius 10 m, 2 m up (basic arithmetic: no trig).
        let mut spawn_points = Vec::with_capacity(16);
        for k in 0..16u32 {
            let (side, f) = (k / 4, (k % 4) as f32 / 4.0);
            let t = -10.0 + 20.0 * f;
            spawn_points.push(match side {
                0 => [t, 2.0, -10.0],
                1 => [10.0, 2.0, t],
                2 => [-t, 2.0, 10.0],
                _ => [-10.0, 2.0, -t],
            });
        }
        Players { shape: None, max_speed: 6.0, acceleration: 40.0, air_acceleration: 10.0, jump_speed: 5.0, spawn_points, max_rewind_ms: 200, respawn_delay_ms: 2000 }
    }
}

fn default_tick_rate() -> u32 {
    60
}
fn default_gravity() -> [f32; 3] {
    [0.0, -9.81, 0.0]
}
fn default_health() -> i32 {
    100
}

/// The playable area: a static ground box and the bounds the rules enforce.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Arena {
    /// Half extents (x, z) of the ground and of the in-bounds area, metres.
    pub half_extents: [f32; 2],
    /// Bodies below this height are out of bounds.
    #[serde(default = "default_kill_y")]
    pub kill_y: f32,
    /// Whether a static ground box is built (top face at y = 0).
    #[serde(default = "yes")]
    pub ground: bool,
    /// Height of boundary walls (0 = none).
    #[serde(default)]
    pub wall_height: f32,
}

fn default_kill_y() -> f32 {
    -10.0
}
fn yes() -> bool {
    true
}

/// A resolved collider shape.
#[derive(Clone, Debug, PartialEq)]
pub enum ShapeKind {
    Cuboid { half_extents: [f32; 3] },
    Ball { radius: f32 },
    /// A capsule along the local Y axis.
    Capsule { half_height: f32, radius: f32 },
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ShapeKindName {
    Cuboid,
    Ball,
    Capsule,
}

/// A named shape. Which dimension fields are required depends on `kind`
/// (cuboid: `half_extents`; ball: `radius`; capsule: `half_height` and
/// `radius`); validation says which one is missing.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShapeDef {
    pub name: String,
    pub kind: ShapeKindName,
    pub half_extents: Option<[f32; 3]>,
    pub radius: Option<f32>,
    pub half_height: Option<f32>,
    #[serde(default = "default_density")]
    pub density: f32,
    #[serde(default = "default_friction")]
    pub friction: f32,
    #[serde(default)]
    pub restitution: f32,
}

impl ShapeDef {
    /// The resolved shape; `None` when a required dimension is missing
    /// (impossible after validation).
    #[must_use]
    pub fn shape(&self) -> Option<ShapeKind> {
        Some(match self.kind {
            ShapeKindName::Cuboid => ShapeKind::Cuboid { half_extents: self.half_extents? },
            ShapeKindName::Ball => ShapeKind::Ball { radius: self.radius? },
            ShapeKindName::Capsule => ShapeKind::Capsule { half_height: self.half_height?, radius: self.radius? },
        })
    }
}

fn default_density() -> f32 {
    1.0
}
fn default_friction() -> f32 {
    0.6
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    Dynamic,
    Kinematic,
    Fixed,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BodyDef {
    pub shape: String,
    #[serde(default = "dynamic")]
    pub body: BodyKind,
    pub position: [f32; 3],
    /// Quaternion (x, y, z, w).
    #[serde(default = "identity")]
    pub rotation: [f32; 4],
    #[serde(default)]
    pub linvel: [f32; 3],
    #[serde(default)]
    pub angvel: [f32; 3],
    #[serde(default = "default_health")]
    pub health: i32,
}

fn dynamic() -> BodyKind {
    BodyKind::Dynamic
}
fn identity() -> [f32; 4] {
    [0.0, 0.0, 0.0, 1.0]
}

/// A grid of dynamic props; cell i uses `shapes[i % len]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GridDef {
    pub shapes: Vec<String>,
    pub origin: [f32; 3],
    pub count: [u32; 3],
    pub spacing: [f32; 3],
    /// Seeded random offset added to each cell, metres (from the world RNG).
    #[serde(default)]
    pub jitter: f32,
    #[serde(default = "default_health")]
    pub health: i32,
}

/// Where a group of NPCs starts.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NpcLayout {
    /// Evenly around the square ring of half-size `radius`.
    #[default]
    Ring,
    /// Row by row on a square grid filling the square of half-size
    /// `radius` (uniform density: a crowd, not a queue).
    Grid,
}

/// Kinematic NPCs placed on a ring or a grid, wandering between random
/// targets.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NpcDef {
    pub shape: String,
    pub count: u32,
    /// Half-size of the square around the origin where they start.
    pub radius: f32,
    /// `ring` (default) or `grid`.
    #[serde(default)]
    pub layout: NpcLayout,
    /// Height of their centre.
    pub height: f32,
    pub speed: f32,
    /// Targets are drawn within this distance of the arena centre.
    pub wander_radius: f32,
    #[serde(default = "default_health")]
    pub health: i32,
}

/// A named fixed camera for verification frames.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraDef {
    pub name: String,
    pub eye: [f32; 3],
    pub target: [f32; 3],
    #[serde(default = "default_fov")]
    pub fov_y_degrees: f32,
}

fn default_fov() -> f32 {
    60.0
}

/// Limits that keep a hostile scenario from exhausting memory.
pub const MAX_BODIES: u64 = 1_000_000;

impl Scenario {
    /// The embedded default.
    #[must_use]
    pub fn default_arena() -> Scenario {
        match Scenario::parse(DEFAULT_SCENARIO, "<embedded default>") {
            Ok(s) => s,
            Err(e) => unreachable!("embedded default scenario is valid (tested): {e}"),
        }
    }

    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io { file: file.clone(), source })?;
        Scenario::parse(&text, &file)
    }

    /// Parses and validates. `file` names the source in errors.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            file: file.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        s.validate(file)?;
        Ok(s)
    }

    /// A programmatic arena of about `bodies` props (for benchmarks).
    #[must_use]
    pub fn generated(bodies: u32, seed: u64) -> Scenario {
        let mut s = Scenario::default_arena();
        s.name = format!("generated-{bodies}");
        s.seed = seed;
        s.npcs.clear();
        let side = (f64::from(bodies.max(1))).cbrt().ceil() as u32;
        let layer = side * side;
        let layers = bodies.div_ceil(layer).max(1);
        let half = (side as f32) * 1.3 * 0.5;
        s.arena.half_extents = [half.max(10.0) + 10.0, half.max(10.0) + 10.0];
        s.grids = vec![GridDef {
            shapes: vec!["crate".into(), "ball".into(), "pill".into()],
            origin: [-half, 1.0, -half],
            count: [side, layers, side],
            spacing: [1.3, 1.3, 1.3],
            jitter: 0.05,
            health: 100,
        }];
        // The grid is rounded up to whole layers; trim with the first grid's
        // z count is not possible, so keep exactly side*side*layers (>= bodies).
        s
    }

    #[must_use]
    pub fn shape_index(&self, name: &str) -> Option<u32> {
        self.shapes.iter().position(|s| s.name == name).map(|i| i as u32)
    }

    #[must_use]
    pub fn body_count(&self) -> u64 {
        let grid = |g: &GridDef| g.count.iter().fold(1u64, |acc, &c| acc.saturating_mul(u64::from(c)));
        let grids = self.grids.iter().fold(0u64, |acc, g| acc.saturating_add(grid(g)));
        let npcs = self.npcs.iter().fold(0u64, |acc, n| acc.saturating_add(u64::from(n.count)));
        grids.saturating_add(self.bodies.len() as u64).saturating_add(npcs)
    }

    fn validate(&self, file: &str) -> Result<(), ScenarioError> {
        let bad = |field: String, expected: &str, found: String| ScenarioError::Invalid {
            file: file.to_string(),
            field,
            expected: expected.to_string(),
            found,
        };
        let finite = |field: String, v: &[f32]| -> Result<(), ScenarioError> {
            if v.iter().all(|x| x.is_finite()) { Ok(()) } else { Err(bad(field, "finite numbers", format!("{v:?}"))) }
        };
        let positive = |field: String, v: f32| -> Result<(), ScenarioError> {
            if v.is_finite() && v > 0.0 { Ok(()) } else { Err(bad(field, "a finite number > 0", format!("{v}"))) }
        };
        if !(1..=1000).contains(&self.tick_rate) {
            return Err(bad("tick_rate".into(), "an integer in 1..=1000 (Hz)", self.tick_rate.to_string()));
        }
        finite("gravity".into(), &self.gravity)?;
        positive("arena.half_extents[0]".into(), self.arena.half_extents[0])?;
        positive("arena.half_extents[1]".into(), self.arena.half_extents[1])?;
        finite("arena.kill_y".into(), &[self.arena.kill_y])?;
        if !(self.arena.wall_height.is_finite() && self.arena.wall_height >= 0.0) {
            return Err(bad("arena.wall_height".into(), "a finite number >= 0", self.arena.wall_height.to_string()));
        }
        let pl = &self.players;
        positive("players.max_speed".into(), pl.max_speed)?;
        positive("players.acceleration".into(), pl.acceleration)?;
        positive("players.air_acceleration".into(), pl.air_acceleration)?;
        if !(pl.jump_speed.is_finite() && pl.jump_speed >= 0.0) {
            return Err(bad("players.jump_speed".into(), "a finite number >= 0", pl.jump_speed.to_string()));
        }
        if pl.max_speed > crate::plan::MAX_SPEED {
            return Err(bad("players.max_speed".into(), &format!("at most {} m/s", crate::plan::MAX_SPEED), pl.max_speed.to_string()));
        }
        if pl.respawn_delay_ms > 600_000 {
            return Err(bad("players.respawn_delay_ms".into(), "at most 600000 (10 minutes)", pl.respawn_delay_ms.to_string()));
        }
        if pl.max_rewind_ms > 1000 {
            return Err(bad("players.max_rewind_ms".into(), "at most 1000 (the pose history is about a second)", pl.max_rewind_ms.to_string()));
        }
        if pl.spawn_points.is_empty() {
            return Err(bad("players.spawn_points".into(), "at least one [x, y, z]", "an empty list".into()));
        }
        for (i, sp) in pl.spawn_points.iter().enumerate() {
            finite(format!("players.spawn_points[{i}]"), sp)?;
        }
        if let Some(int) = &self.interest {
            if !(int.radius.is_finite() && int.radius > 0.0 && int.radius <= 1.0e6) {
                return Err(bad("interest.radius".into(), "a distance in (0, 1e6] m", int.radius.to_string()));
            }
            if let Some(l) = int.leave_radius
                && !(l.is_finite() && l >= int.radius && l <= 1.0e6)
            {
                return Err(bad("interest.leave_radius".into(), &format!("a finite number >= interest.radius ({}) and <= 1e6", int.radius), l.to_string()));
            }
        }
        for (i, sh) in self.shapes.iter().enumerate() {
            let f = |name: &str| format!("shapes[{i}].{name}");
            if self.shapes[..i].iter().any(|o| o.name == sh.name) {
                return Err(bad(f("name"), "a unique shape name", format!("duplicate {:?}", sh.name)));
            }
            let need = |v: Option<f32>, name: &str| -> Result<f32, ScenarioError> {
                v.ok_or_else(|| bad(f(name), &format!("a number (required for kind = {:?})", sh.kind), "nothing".into()))
            };
            match sh.kind {
                ShapeKindName::Cuboid => {
                    let he = sh.half_extents.ok_or_else(|| {
                        bad(f("half_extents"), "[x, y, z] (required for kind = Cuboid)", "nothing".into())
                    })?;
                    for (k, v) in he.iter().enumerate() {
                        positive(f(&format!("half_extents[{k}]")), *v)?;
                    }
                }
                ShapeKindName::Ball => positive(f("radius"), need(sh.radius, "radius")?)?,
                ShapeKindName::Capsule => {
                    positive(f("half_height"), need(sh.half_height, "half_height")?)?;
                    positive(f("radius"), need(sh.radius, "radius")?)?;
                }
            }
            positive(f("density"), sh.density)?;
            if !(sh.friction.is_finite() && sh.friction >= 0.0) {
                return Err(bad(f("friction"), "a finite number >= 0", sh.friction.to_string()));
            }
            if !(0.0..=1.0).contains(&sh.restitution) {
                return Err(bad(f("restitution"), "a number in 0..=1", sh.restitution.to_string()));
            }
        }
        let known = |field: String, name: &str| -> Result<(), ScenarioError> {
            if self.shape_index(name).is_some() {
                Ok(())
            } else {
                let names: Vec<&str> = self.shapes.iter().map(|s| s.name.as_str()).collect();
                Err(bad(field, &format!("one of the shape names {names:?}"), format!("{name:?}")))
            }
        };
        if let Some(name) = &pl.shape {
            known("players.shape".into(), name)?;
        }
        for (i, b) in self.bodies.iter().enumerate() {
            known(format!("bodies[{i}].shape"), &b.shape)?;
            finite(format!("bodies[{i}].position"), &b.position)?;
            finite(format!("bodies[{i}].rotation"), &b.rotation)?;
            finite(format!("bodies[{i}].linvel"), &b.linvel)?;
            finite(format!("bodies[{i}].angvel"), &b.angvel)?;
            let n2: f32 = b.rotation.iter().map(|x| x * x).sum();
            if (n2 - 1.0).abs() > 1e-3 {
                return Err(bad(format!("bodies[{i}].rotation"), "a unit quaternion [x, y, z, w]", format!("{:?} (norm^2 {n2})", b.rotation)));
            }
        }
        for (i, g) in self.grids.iter().enumerate() {
            if g.shapes.is_empty() {
                return Err(bad(format!("grids[{i}].shapes"), "at least one shape name", "[]".into()));
            }
            for (k, name) in g.shapes.iter().enumerate() {
                known(format!("grids[{i}].shapes[{k}]"), name)?;
            }
            finite(format!("grids[{i}].origin"), &g.origin)?;
            for k in 0..3 {
                positive(format!("grids[{i}].spacing[{k}]"), g.spacing[k])?;
            }
            if !(g.jitter.is_finite() && g.jitter >= 0.0) {
                return Err(bad(format!("grids[{i}].jitter"), "a finite number >= 0", g.jitter.to_string()));
            }
        }
        for (i, n) in self.npcs.iter().enumerate() {
            known(format!("npcs[{i}].shape"), &n.shape)?;
            finite(format!("npcs[{i}].height"), &[n.height])?;
            if !(n.radius.is_finite() && n.radius >= 0.0) {
                return Err(bad(format!("npcs[{i}].radius"), "a finite number >= 0", n.radius.to_string()));
            }
            positive(format!("npcs[{i}].speed"), n.speed)?;
            positive(format!("npcs[{i}].wander_radius"), n.wander_radius)?;
        }
        for (i, c) in self.cameras.iter().enumerate() {
            finite(format!("cameras[{i}].eye"), &c.eye)?;
            finite(format!("cameras[{i}].target"), &c.target)?;
            if !(c.fov_y_degrees > 1.0 && c.fov_y_degrees < 179.0) {
                return Err(bad(format!("cameras[{i}].fov_y_degrees"), "a number in (1, 179)", c.fov_y_degrees.to_string()));
            }
        }
        let n = self.body_count();
        if n > MAX_BODIES {
            return Err(bad("grids/bodies/npcs".into(), &format!("at most {MAX_BODIES} bodies in total"), n.to_string()));
        }
        Ok(())
    }

    /// xxh3 of the scenario's canonical text form (for replay headers).
    #[must_use]
    pub fn hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(format!("{self:?}").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_about_a_thousand_bodies() {
        let s = Scenario::default_arena();
        let n = s.body_count();
        assert!((900..=1200).contains(&n), "{n}");
        assert!(!s.npcs.is_empty());
        assert_eq!(s.tick_rate, 60);
    }

    fn err(text: &str) -> String {
        match Scenario::parse(text, "bad.toml") {
            Ok(_) => panic!("expected an error for {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let e = err("name = \"x\"\n[arena\nhalf_extents = [1, 1]\n");
        assert!(e.starts_with("bad.toml:"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn type_error_names_line_and_expectation() {
        let e = err("name = \"x\"\n[arena]\nhalf_extents = \"wide\"\n");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("expected"), "{e}");
    }

    #[test]
    fn unknown_field_is_rejected() {
        let e = err("name = \"x\"\ntickrate = 30\n[arena]\nhalf_extents = [1, 1]\n");
        assert!(e.contains("tickrate"), "{e}");
    }

    #[test]
    fn interest_is_optional_and_checked() {
        let base = "name = \"x\"\n[arena]\nhalf_extents = [5, 5]\n";
        assert_eq!(Scenario::parse(base, "ok.toml").unwrap().interest, None);
        let s = Scenario::parse(&format!("{base}[interest]\nradius = 20\nleave_radius = 25\n"), "ok.toml").unwrap();
        assert_eq!(s.interest, Some(InterestDef { radius: 20.0, leave_radius: Some(25.0) }));
        let e = err(&format!("{base}[interest]\nradius = 20\nleave_radius = 10\n"));
        assert!(e.contains("interest.leave_radius") && e.contains(">= interest.radius (20)"), "{e}");
        assert!(err(&format!("{base}[interest]\nradius = 0\n")).contains("interest.radius"));
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let base = "name = \"x\"\n[arena]\nhalf_extents = [5, 5]\n";
        let e = err(&format!("{base}[[shapes]]\nname = \"b\"\nkind = \"ball\"\nradius = -1\n"));
        assert_eq!(e, "bad.toml: field `shapes[0].radius`: expected a finite number > 0, found -1");
        let e = err(&format!("{base}[[bodies]]\nshape = \"nope\"\nposition = [0, 1, 0]\n"));
        assert!(e.contains("field `bodies[0].shape`") && e.contains("\"nope\""), "{e}");
        let e = err("name = \"x\"\ntick_rate = 0\n[arena]\nhalf_extents = [5, 5]\n");
        assert!(e.contains("field `tick_rate`"), "{e}");
        let e = err(&format!("{base}[[shapes]]\nname = \"c\"\nkind = \"cone\"\nradius = 1\n"));
        assert!(e.contains("cone"), "{e}");
    }

    #[test]
    fn huge_grids_are_refused_before_allocation() {
        let e = err(
            "name = \"x\"\n[arena]\nhalf_extents = [5, 5]\n[[shapes]]\nname = \"b\"\nkind = \"ball\"\nradius = 1\n\
             [[grids]]\nshapes = [\"b\"]\norigin = [0, 0, 0]\ncount = [4000000000, 4000000000, 4000000000]\nspacing = [1, 1, 1]\n",
        );
        assert!(e.contains("at most"), "{e}");
    }
}
