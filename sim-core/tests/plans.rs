//! Plan application: atomicity, ordering, ownership, stale handles.

mod common;

use common::small_world;
use sim_core::{Archetype, Handle, NoClock, Op, Plan, PlanStatus, SourceId, Tick, World};

fn prop(w: &World, i: usize) -> Handle {
    Handle::from_bits(w.table(Archetype::Prop).handles()[i])
}

fn npc(w: &World, i: usize) -> Handle {
    Handle::from_bits(w.table(Archetype::Npc).handles()[i])
}

fn plan(source: u32, seq: u32, tick: u64, ops: Vec<Op>) -> Plan {
    Plan { source: SourceId(source), seq, correlation: u64::from(seq), target_tick: Tick(tick), ops }
}

#[test]
fn a_plan_whose_last_op_is_invalid_changes_nothing() {
    let mut a = small_world();
    let mut b = small_world();
    let h = prop(&a, 0);
    let bad = plan(0, 1, 1, vec![
        Op::SetVelocity { handle: h, linvel: [5.0, 0.0, 0.0], angvel: [0.0; 3] },
        Op::Despawn { handle: prop(&a, 1) },
        Op::ApplyImpulse { handle: prop(&a, 2), impulse: [0.0, f32::NAN, 0.0] },
    ]);
    let j = a.step(std::slice::from_ref(&bad), &mut NoClock);
    assert_eq!(j.plans[0].status, PlanStatus::BadValue);
    assert_eq!(j.plans[0].failed_op, Some(2));
    let ha = j.world_hash;
    assert_eq!(ha, b.step(&[], &mut NoClock).world_hash, "rejected plan must leave no trace");
}

#[test]
fn applied_plans_change_the_world_and_spawn_and_despawn() {
    let mut a = small_world();
    let mut b = small_world();
    let n = a.entity_count();
    let p = plan(0, 1, 1, vec![
        Op::Spawn { archetype: Archetype::Prop, shape: 1, position: [0.0, 4.0, 0.0], rotation: [0.0, 0.0, 0.0, 1.0], linvel: [0.0; 3] },
        Op::Despawn { handle: prop(&a, 3) },
        Op::MoveTo { handle: npc(&a, 0), target: [1.0, 0.6, 1.0], max_speed: 1.0 },
    ]);
    let j = a.step(std::slice::from_ref(&p), &mut NoClock);
    assert_eq!(j.plans[0].status, PlanStatus::Applied);
    assert_eq!(j.spawned.len(), 1);
    let spawned = j.spawned[0];
    assert_ne!(j.world_hash, b.step(&[], &mut NoClock).world_hash);
    assert_eq!(a.entity_count(), n);
    assert!(a.locate(spawned).is_some());
}

#[test]
fn arrival_order_does_not_matter() {
    let mut a = small_world();
    let mut b = small_world();
    let p1 = plan(3, 1, 1, vec![Op::Spawn { archetype: Archetype::Prop, shape: 0, position: [1.0, 3.0, 0.0], rotation: [0.0, 0.0, 0.0, 1.0], linvel: [0.0; 3] }]);
    let p2 = plan(3, 2, 1, vec![Op::Spawn { archetype: Archetype::Prop, shape: 1, position: [-1.0, 3.0, 0.0], rotation: [0.0, 0.0, 0.0, 1.0], linvel: [0.0; 3] }]);
    let p3 = plan(1, 9, 1, vec![Op::Spawn { archetype: Archetype::Prop, shape: 2, position: [0.0, 3.0, 1.0], rotation: [0.0, 0.0, 0.0, 1.0], linvel: [0.0; 3] }]);
    let ha = a.step(&[p1.clone(), p2.clone(), p3.clone()], &mut NoClock).world_hash;
    let hb = b.step(&[p2, p3, p1], &mut NoClock).world_hash;
    assert_eq!(ha, hb);
}

#[test]
fn ownership_is_enforced_and_spawned_entities_belong_to_their_source() {
    let mut w = small_world();
    // Source 5 does not own server props.
    let j = w.step(&[plan(5, 1, 1, vec![Op::Despawn { handle: prop(&w, 0) }])], &mut NoClock);
    assert_eq!(j.plans[0].status, PlanStatus::NotOwner);
    let j = w.step(&[plan(5, 2, 2, vec![Op::Spawn { archetype: Archetype::Avatar, shape: 0, position: [0.0, 2.0, 0.0], rotation: [0.0, 0.0, 0.0, 1.0], linvel: [0.0; 3] }])], &mut NoClock);
    let mine = j.spawned[0];
    let j = w.step(&[plan(5, 3, 3, vec![Op::ApplyImpulse { handle: mine, impulse: [0.0, 5.0, 0.0] }])], &mut NoClock);
    assert_eq!(j.plans[0].status, PlanStatus::Applied);
    let j = w.step(&[plan(6, 1, 4, vec![Op::ApplyImpulse { handle: mine, impulse: [0.0, 5.0, 0.0] }])], &mut NoClock);
    assert_eq!(j.plans[0].status, PlanStatus::NotOwner);
}

#[test]
fn dead_stale_and_duplicate_handles_and_wrong_ticks_are_rejected() {
    let mut w = small_world();
    let h = prop(&w, 0);
    let j = w.step(&[plan(0, 1, 1, vec![Op::Despawn { handle: h }])], &mut NoClock);
    assert_eq!(j.plans[0].status, PlanStatus::Applied);
    // Stale: same index, old generation (the slot may have been reused).
    let j = w.step(&[plan(0, 2, 2, vec![Op::ApplyImpulse { handle: h, impulse: [1.0, 0.0, 0.0] }])], &mut NoClock);
    assert_eq!(j.plans[0].status, PlanStatus::DeadHandle);
    let g = prop(&w, 1);
    let j = w.step(&[plan(0, 3, 3, vec![Op::Despawn { handle: g }, Op::Despawn { handle: g }])], &mut NoClock);
    assert_eq!((j.plans[0].status, j.plans[0].failed_op), (PlanStatus::DuplicateHandle, Some(1)));
    let j = w.step(&[plan(0, 4, 99, vec![])], &mut NoClock);
    assert_eq!(j.plans[0].status, PlanStatus::WrongTick);
    let j = w.step(&[plan(0, 5, 5, vec![Op::MoveTo { handle: g, target: [0.0; 3], max_speed: 1.0 }])], &mut NoClock);
    assert_eq!(j.plans[0].status, PlanStatus::WrongArchetype);
    let j = w.step(&[plan(0, 6, 6, vec![Op::Spawn { archetype: Archetype::Prop, shape: 99, position: [0.0; 3], rotation: [0.0, 0.0, 0.0, 1.0], linvel: [0.0; 3] }])], &mut NoClock);
    assert_eq!(j.plans[0].status, PlanStatus::UnknownShape);
    assert_eq!(j.counters.plans_rejected, 1);
}

#[test]
fn npcs_reach_move_targets_and_stop() {
    let mut w = small_world();
    let h = npc(&w, 0);
    // Give the NPC to source 4 by spawning a fresh one as source 4.
    let j = w.step(&[plan(4, 1, 1, vec![Op::Spawn { archetype: Archetype::Npc, shape: 2, position: [0.0, 0.6, 0.0], rotation: [0.0, 0.0, 0.0, 1.0], linvel: [0.0; 3] }])], &mut NoClock);
    let mine = j.spawned[0];
    assert_ne!(mine, h);
    w.step(&[plan(4, 2, 2, vec![Op::MoveTo { handle: mine, target: [2.0, 0.6, 0.0], max_speed: 3.0 }])], &mut NoClock);
    for _ in 0..120 {
        w.step(&[], &mut NoClock);
    }
    let loc = w.locate(mine).expect("live");
    let x = w.table(Archetype::Npc).f32(sim_core::ColumnId::PosX)[loc.row as usize];
    assert!((x - 2.0).abs() < 1e-4, "NPC should stand at its target, x = {x}");
}
