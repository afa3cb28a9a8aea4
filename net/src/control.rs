//! Control on request: a policy asks to control N NPCs in all and the
//! authority grants free ones or releases some of its own, as one server
//! plan per request (so a replay re-simulates every grant). Several
//! requests in one tick share what is free fairly: each gets at most an
//! equal share of the free NPCs, in source order, the remainder to the
//! earlier sources.

use crate::proto::MAX_CONTROLLED;
use sim_core::{Archetype, ColumnId, Handle, MicroPlan, Op, PlanBuilder, SourceId, Tick, World};

/// One policy's request, as the tick thread sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub source: u32,
    pub want: u32,
}

/// The NPCs `source` controls, sorted by handle.
#[must_use]
pub fn owned_by(world: &World, source: u32) -> Vec<u64> {
    let t = world.table(Archetype::Npc);
    let mut v: Vec<u64> = t.handles().iter().zip(t.u32(ColumnId::Owner)).filter(|(_, o)| **o == source).map(|(h, _)| *h).collect();
    v.sort_unstable();
    v
}

/// Free NPCs (owned by nobody, not in `taken`), sorted by handle.
fn free(world: &World, taken: &[u64]) -> Vec<u64> {
    let t = world.table(Archetype::Npc);
    let mut v: Vec<u64> = t.handles().iter().zip(t.u32(ColumnId::Owner)).filter(|(h, o)| **o == 0 && !taken.contains(h)).map(|(h, _)| *h).collect();
    v.sort_unstable();
    v
}

/// The authority's plans for this tick's requests (sorted by source, one
/// plan per request that changes something), and the handles they grant
/// (add them to `taken`). `taken`: NPCs granted earlier this tick (joins).
pub fn plans(world: &World, requests: &mut [Request], taken: &[u64], tick: Tick, seq: &mut u32) -> (Vec<MicroPlan>, Vec<u64>) {
    requests.sort_by_key(|r| r.source);
    let pool = free(world, taken);
    let have: Vec<Vec<u64>> = requests.iter().map(|r| owned_by(world, r.source)).collect();
    let growing = requests.iter().zip(&have).filter(|(r, h)| (r.want as usize).min(MAX_CONTROLLED) > h.len()).count();
    let (share, mut extra) = (pool.len().checked_div(growing).unwrap_or(0), pool.len().checked_rem(growing).unwrap_or(0));
    let (mut out, mut granted) = (Vec::new(), Vec::new());
    let mut from = 0usize;
    for (r, have) in requests.iter().zip(&have) {
        let want = (r.want as usize).min(MAX_CONTROLLED);
        *seq = seq.wrapping_add(1);
        let mut b = PlanBuilder::new(tick, SourceId::SERVER, *seq);
        let ops = if want > have.len() {
            let fair = share + usize::from(extra > 0);
            extra = extra.saturating_sub(1);
            let n = (want - have.len()).min(fair).min(pool.len() - from);
            for &h in &pool[from..from + n] {
                b.push(Op::Grant { handle: Handle::from_bits(h), owner: r.source });
                granted.push(h);
            }
            from += n;
            n
        } else {
            // Release the highest handles first (any fixed rule would do).
            for &h in &have[want..] {
                b.push(Op::Grant { handle: Handle::from_bits(h), owner: 0 });
            }
            have.len() - want
        };
        if ops > 0
            && let Ok(p) = MicroPlan::decode(b.build()) {
                out.push(p);
            }
    }
    (out, granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world_with_npcs() -> World {
        World::from_scenario(&sim_core::Scenario::default_arena(), None)
    }

    fn apply(world: &mut World, plans: &[MicroPlan]) {
        let mut clock = sim_core::NoClock;
        let j = world.step(plans, &mut clock);
        assert!(j.plans.iter().all(|p| p.status == sim_core::Status::Ok), "{:?}", j.plans);
    }

    #[test]
    fn requests_grant_fairly_release_and_never_double_grant() {
        let mut w = world_with_npcs();
        let npcs = owned_by(&w, 0).len();
        assert!(npcs >= 4, "the default arena has NPCs");
        let mut seq = 0;
        // Two policies ask for everything in the same tick: an equal split.
        let mut reqs = [Request { source: 20, want: 10_000 }, Request { source: 10, want: 10_000 }];
        let next = Tick(w.tick().0 + 1);
        let (p, granted) = plans(&w, &mut reqs, &[], next, &mut seq);
        let mut sorted = granted.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), granted.len(), "no NPC granted twice");
        apply(&mut w, &p);
        let (a, b) = (owned_by(&w, 10).len(), owned_by(&w, 20).len());
        assert_eq!(a + b, npcs);
        assert!(a.abs_diff(b) <= 1, "{a} vs {b}");
        // Fewer releases the rest; the released are free again.
        let mut reqs = [Request { source: 10, want: 1 }];
        let (p, _) = plans(&w, &mut reqs, &[], Tick(w.tick().0 + 1), &mut seq);
        apply(&mut w, &p);
        assert_eq!(owned_by(&w, 10).len(), 1);
        assert_eq!(owned_by(&w, 0).len(), a - 1);
        // NPCs taken by a join this tick are not granted again.
        let taken = owned_by(&w, 0);
        let mut reqs = [Request { source: 30, want: 5 }];
        let (p, granted) = plans(&w, &mut reqs, &taken, Tick(w.tick().0 + 1), &mut seq);
        assert!(p.is_empty() && granted.is_empty());
        // Nothing to change: no plan.
        let mut reqs = [Request { source: 20, want: b as u32 }];
        assert!(plans(&w, &mut reqs, &[], Tick(w.tick().0 + 1), &mut seq).0.is_empty());
    }
}
