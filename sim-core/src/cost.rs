//! The cost model and role tables of the port IDL, applied to plans.
//!
//! Every op costs `base` units; a raycast adds `per_m` per metre of its max
//! distance and an overlap `per_m3` per cubic metre of its box, so what a
//! query may touch is paid for before it runs. A plan's cost is fixed by
//! its bytes (no world state), so a session can refuse a plan before it
//! reaches the tick, and a replay re-derives the same decision.

use crate::microplan::{MicroPlan, Section};
use crate::ports::{OpKind, RoleDesc, Status, ROLES};

/// Cost units are whole; fractional parts of query costs round up.
fn units(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        // Saturating float-to-int cast; `ceil` so a tiny query still pays.
        // Rounded to 1e-6 first so 1e6 m3 x 0.001 is 1000, not 1001.
        ((x * 1e6).round() / 1e6).ceil().min(1e15) as u64
    } else if x.is_nan() || x > 0.0 {
        u64::MAX / 4
    } else {
        0
    }
}

/// The cost of op `i` of a section.
#[must_use]
pub fn op_cost(s: &Section<'_>, i: usize) -> u64 {
    let c = s.kind.cost();
    let extra = match s.kind {
        OpKind::Raycast => units(f64::from(s.f32(2, i)) * c.per_m),
        OpKind::Overlap => {
            let (lo, hi) = (s.f32x3(0, i), s.f32x3(1, i));
            // f64: a world-sized box overflows f32's product precision.
            let v: f64 = (0..3).map(|k| f64::from(hi[k]) - f64::from(lo[k])).map(|d| d.max(0.0)).product();
            units(v * c.per_m3)
        }
        _ => 0,
    };
    u64::from(c.base).saturating_add(extra)
}

/// The cost of a whole plan (saturating sum over its ops).
#[must_use]
pub fn plan_cost(p: &MicroPlan) -> u64 {
    p.sections().fold(0u64, |acc, s| (0..s.count).fold(acc, |a, i| a.saturating_add(op_cost(&s, i))))
}

/// The IDL's description of role `id` (1 player, 2 policy, 3 observer).
#[must_use]
pub fn role(id: u8) -> Option<&'static RoleDesc> {
    ROLES.iter().find(|r| r.id == id)
}

impl RoleDesc {
    /// Checks a plan against the role's op kinds and per-plan op cap, and
    /// returns its cost. `OP_NOT_PERMITTED` or `TOO_MANY_OPS` otherwise.
    pub fn admit(&self, p: &MicroPlan) -> Result<u64, Status> {
        if p.sections().any(|s| !self.ops.contains(&s.kind)) {
            return Err(Status::OpNotPermitted);
        }
        if p.op_count() > self.max_ops_per_plan {
            return Err(Status::TooManyOps);
        }
        Ok(plan_cost(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Handle, MicroPlan, Op, PlanBuilder, SourceId, Tick};

    fn plan(ops: &[Op]) -> MicroPlan {
        let mut b = PlanBuilder::new(Tick(1), SourceId(2), 1);
        for o in ops {
            b.push(*o);
        }
        MicroPlan::decode(b.build()).expect("valid plan")
    }

    #[test]
    fn queries_pay_for_their_reach() {
        let ray = |d: f32| Op::Raycast { origin: [0.0; 3], direction: [1.0, 0.0, 0.0], max_distance: d };
        assert_eq!(plan_cost(&plan(&[ray(1.0)])), 3, "2 + ceil(0.02)");
        assert_eq!(plan_cost(&plan(&[ray(10_000.0)])), 202);
        let boxed = |h: f32| Op::Overlap { min: [-h; 3], max: [h; 3] };
        assert_eq!(plan_cost(&plan(&[boxed(0.5)])), 5, "4 + ceil(0.001)");
        assert_eq!(plan_cost(&plan(&[boxed(5.0)])), 5, "1,000 m3");
        assert_eq!(plan_cost(&plan(&[boxed(50.0)])), 1004, "1e6 m3");
        assert!(plan_cost(&plan(&[boxed(100_000.0)])) > 1_000_000_000, "a world-sized box");
        let mv = Op::MoveTo { handle: Handle::from_bits(1), target: [0.0; 3], max_speed: 1.0 };
        assert_eq!(plan_cost(&plan(&[mv, mv, ray(100.0)])), 1 + 1 + 4);
        // NaN or infinite reach costs the most (validation refuses it anyway).
        assert!(plan_cost(&plan(&[ray(f32::NAN)])) > 1_000_000);
    }

    #[test]
    fn roles_admit_only_their_ops_within_caps() {
        let player = role(1).expect("player");
        let policy = role(2).expect("policy");
        let observer = role(3).expect("observer");
        assert_eq!((player.name, policy.name, observer.name), ("player", "policy", "observer"));
        let cmd = Op::Command { handle: Handle::from_bits(1), sequence: 1, buttons: 0, movement: [1.0, 0.0, 0.0], yaw: 0.0, pitch: 0.0, rewind: 0 };
        let ray = Op::Raycast { origin: [0.0; 3], direction: [1.0, 0.0, 0.0], max_distance: 10.0 };
        assert_eq!(player.admit(&plan(&[cmd])), Ok(1));
        assert_eq!(player.admit(&plan(&[cmd, cmd])), Err(Status::TooManyOps));
        assert_eq!(player.admit(&plan(&[ray])), Err(Status::OpNotPermitted));
        assert_eq!(policy.admit(&plan(&[cmd])), Err(Status::OpNotPermitted));
        assert_eq!(policy.admit(&plan(&[ray])), Ok(3));
        assert_eq!(observer.admit(&plan(&[ray])), Err(Status::OpNotPermitted));
        assert!(role(0).is_none() && role(4).is_none());
    }
}
