//! Value bounds for plan ops and the plan queue.
//!
//! The wire format is in [`crate::microplan`]; validation and application
//! are in the world (`world.rs`), which knows handles and ownership.

use crate::ids::Tick;
use crate::microplan::MicroPlan;
use crate::ports::{Status, MAX_TICK_LEAD};
use std::collections::BTreeMap;

/// Positions, targets and AABB corners must be within this many metres.
pub const MAX_COORD: f32 = 1.0e5;
/// Linear/angular speeds and NPC max speeds.
pub const MAX_SPEED: f32 = 1.0e3;
/// Impulse components, N*s.
pub const MAX_IMPULSE: f32 = 1.0e5;

pub(crate) fn finite_within(v: &[f32], bound: f32) -> bool {
    v.iter().all(|x| x.is_finite() && x.abs() <= bound)
}

/// Plans waiting for their target tick, in a deterministic order
/// (BTreeMap by tick; arrival order within a tick, which the world's
/// ingest phase then sorts by source and sequence).
#[derive(Debug, Default)]
pub struct PlanQueue {
    pending: BTreeMap<u64, Vec<MicroPlan>>,
}

impl PlanQueue {
    /// Queues a plan for its target tick, given the last simulated tick.
    /// Late plans and plans beyond the lead window are refused with their
    /// own status codes.
    pub fn submit(&mut self, plan: MicroPlan, current: Tick) -> Result<(), Status> {
        let t = plan.header().target_tick.0;
        if t <= current.0 {
            return Err(Status::TickInPast);
        }
        if t > current.0.saturating_add(MAX_TICK_LEAD) {
            return Err(Status::TickTooFarAhead);
        }
        self.pending.entry(t).or_default().push(plan);
        Ok(())
    }

    /// Adds a plan without the lead check (recorded plan files, replays).
    pub fn insert_unchecked(&mut self, plan: MicroPlan) {
        self.pending.entry(plan.header().target_tick.0).or_default().push(plan);
    }

    /// Drops every queued plan of `source` (a departed client's commands
    /// must not keep driving what it left behind); returns how many.
    pub fn drop_source(&mut self, source: crate::SourceId) -> usize {
        let mut n = 0;
        for v in self.pending.values_mut() {
            let before = v.len();
            v.retain(|p| p.header().source != source);
            n += before - v.len();
        }
        self.pending.retain(|_, v| !v.is_empty());
        n
    }

    /// Removes and returns the plans for `tick`.
    pub fn take(&mut self, tick: Tick) -> Vec<MicroPlan> {
        self.pending.remove(&tick.0).unwrap_or_default()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The earliest tick with pending plans.
    #[must_use]
    pub fn next_tick(&self) -> Option<Tick> {
        self.pending.keys().next().map(|&t| Tick(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MicroPlan, PlanBuilder, SourceId};

    #[test]
    fn a_departed_source_s_plans_are_dropped_and_only_theirs() {
        let mut q = PlanQueue::default();
        for (src, t) in [(3, 5), (4, 5), (3, 7), (4, 9)] {
            q.submit(MicroPlan::decode(PlanBuilder::new(Tick(t), SourceId(src), t as u32).build()).expect("plan"), Tick(1)).expect("queued");
        }
        assert_eq!(q.drop_source(SourceId(3)), 2);
        assert_eq!(q.len(), 2);
        assert!(q.take(Tick(7)).is_empty());
        assert_eq!(q.take(Tick(5)).len(), 1);
    }
}
