//! Who is in a replay: each plan source's activity (a client's source id,
//! the ticks it sent plans in, its joins), read from the recorded plans.

use serde::Serialize;
use sim_core::{Archetype, Op};
use std::collections::BTreeMap;

/// One plan source (0 is the server's authority; clients have their own).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SourceActivity {
    pub source: u32,
    pub first_tick: u64,
    pub last_tick: u64,
    pub plans: u64,
    /// Avatars this source spawned (a player's join).
    pub avatars_spawned: u64,
    /// NPCs granted to this source (a policy's join), and taken back.
    pub npcs_granted: u64,
    pub npcs_released: u64,
}

/// Every source's activity, by source id.
#[must_use]
pub fn sources(r: &crate::Replay) -> Vec<SourceActivity> {
    let mut by: BTreeMap<u32, SourceActivity> = BTreeMap::new();
    for rec in &r.ticks {
        for p in crate::decode_plans(&rec.plans) {
            let src = p.header().source.0;
            entry(&mut by, src, rec.tick).plans += 1;
            for op in p.ops() {
                match op {
                    Op::Spawn { archetype, .. } if archetype == Archetype::Avatar as u32 => entry(&mut by, src, rec.tick).avatars_spawned += 1,
                    Op::Grant { owner: 0, .. } => entry(&mut by, src, rec.tick).npcs_released += 1,
                    Op::Grant { owner, .. } => entry(&mut by, owner, rec.tick).npcs_granted += 1,
                    _ => {}
                }
            }
        }
    }
    by.into_values().collect()
}

fn entry(by: &mut BTreeMap<u32, SourceActivity>, s: u32, tick: u64) -> &mut SourceActivity {
    let e = by.entry(s).or_insert_with(|| SourceActivity { source: s, first_tick: tick, last_tick: tick, ..SourceActivity::default() });
    e.last_tick = tick;
    e
}
