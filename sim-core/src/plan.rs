//! Plans: the commands sources submit for a tick, and their status codes.
//!
//! A plan is validated whole against the world as it is at the start of the
//! apply phase, then applied whole: all ops or none.

use crate::ids::{Archetype, Handle, SourceId, Tick};

/// Why a plan was or was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub enum PlanStatus {
    Applied = 0,
    /// The plan targets a tick that is not the one being simulated.
    WrongTick = 1,
    /// A handle is dead, stale (old generation) or from another world.
    DeadHandle = 2,
    /// The source neither owns nor was granted the entity.
    NotOwner = 3,
    /// A value is NaN, infinite or out of bounds.
    BadValue = 4,
    /// The op does not apply to the entity's archetype.
    WrongArchetype = 5,
    /// A spawn names a shape the world does not have.
    UnknownShape = 6,
    /// The same entity is despawned twice, or used after being despawned in
    /// the same plan.
    DuplicateHandle = 7,
}

impl PlanStatus {
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            PlanStatus::Applied => "applied",
            PlanStatus::WrongTick => "plan targets another tick",
            PlanStatus::DeadHandle => "handle is dead, stale or foreign",
            PlanStatus::NotOwner => "source does not own the entity",
            PlanStatus::BadValue => "value is not finite or out of bounds",
            PlanStatus::WrongArchetype => "op does not apply to this archetype",
            PlanStatus::UnknownShape => "unknown shape index",
            PlanStatus::DuplicateHandle => "entity used after despawn in the same plan",
        }
    }
}

/// One command.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Spawn { archetype: Archetype, shape: u32, position: [f32; 3], rotation: [f32; 4], linvel: [f32; 3] },
    Despawn { handle: Handle },
    SetVelocity { handle: Handle, linvel: [f32; 3], angvel: [f32; 3] },
    ApplyImpulse { handle: Handle, impulse: [f32; 3] },
    /// Kinematic NPCs: move toward `target` at up to `max_speed` m/s.
    MoveTo { handle: Handle, target: [f32; 3], max_speed: f32 },
}

/// A batch of ops from one source for one tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub source: SourceId,
    pub seq: u32,
    pub correlation: u64,
    pub target_tick: Tick,
    pub ops: Vec<Op>,
}

/// Bounds on values in ops (a plan outside them is `BadValue`).
pub const MAX_COORD: f32 = 1.0e5;
pub const MAX_SPEED: f32 = 1.0e3;
pub const MAX_IMPULSE: f32 = 1.0e5;

pub(crate) fn finite_within(v: &[f32], bound: f32) -> bool {
    v.iter().all(|x| x.is_finite() && x.abs() <= bound)
}
