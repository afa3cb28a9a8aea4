//! Microplans against a live world: every status code, atomicity, ordering.

mod common;

use common::small_world;
use sim_core::microplan::reseal;
use sim_core::{Archetype, Handle, MicroPlan, NoClock, Op, OpKind, PlanBuilder, PlanQueue, SourceId, Status, Tick, World};
use std::collections::BTreeSet;

fn prop(w: &World, i: usize) -> Handle {
    Handle::from_bits(w.table(Archetype::Prop).handles()[i])
}

fn npc(w: &World, i: usize) -> Handle {
    Handle::from_bits(w.table(Archetype::Npc).handles()[i])
}

fn plan(source: u32, seq: u32, tick: u64, ops: &[Op]) -> MicroPlan {
    let mut b = PlanBuilder::new(Tick(tick), SourceId(source), seq).correlation(1000 + u64::from(seq));
    for op in ops {
        b.push(*op);
    }
    MicroPlan::decode(b.build()).expect("builder output decodes")
}

fn decode_status(bytes: Vec<u8>) -> Status {
    match MicroPlan::decode(bytes) {
        Ok(_) => Status::Ok,
        Err(e) => e.status,
    }
}

/// Steps `w` with `plans` and a twin with none; returns the plan statuses
/// and asserts the twin's hash equals ours when every plan was rejected.
fn step_and_check(plans: &[MicroPlan]) -> Vec<(Status, Vec<(u32, Status)>)> {
    let mut w = small_world();
    let mut twin = small_world();
    let j = w.step(plans, &mut NoClock);
    let out: Vec<_> = j
        .plans
        .iter()
        .map(|p| (p.status, p.rejected_index.iter().copied().zip(p.rejected_code.iter().copied()).collect()))
        .collect();
    if j.plans.iter().all(|p| p.status != Status::Ok) {
        assert_eq!(j.world_hash, twin.step(&[], &mut NoClock).world_hash, "rejected plans must leave the world unchanged");
    }
    out
}

fn base() -> (World, Handle, Handle) {
    let w = small_world();
    let (a, n) = (prop(&w, 0), npc(&w, 0));
    (w, a, n)
}

#[test]
fn a_plan_whose_last_op_is_invalid_changes_nothing() {
    let (w, a, _) = base();
    let ops = [
        Op::spawn(Archetype::Prop, 1, [0.0, 4.0, 0.0]),
        Op::Despawn { handle: prop(&w, 1) },
        Op::SetVelocity { handle: a, linvel: [5.0, 0.0, 0.0], angvel: [0.0; 3] },
        Op::ApplyImpulse { handle: prop(&w, 2), impulse: [0.0, f32::NAN, 0.0] },
    ];
    let r = step_and_check(&[plan(0, 1, 1, &ops)]);
    assert_eq!(r[0], (Status::BadValue, vec![(3, Status::BadValue)]));
    // Without the bad op the same plan applies and changes the world.
    let mut w2 = small_world();
    let j = w2.step(&[plan(0, 1, 1, &ops[..3])], &mut NoClock);
    assert_eq!(j.plans[0].status, Status::Ok);
    assert_eq!(j.plans[0].spawned.len(), 1);
    assert_ne!(j.world_hash, small_world().step(&[], &mut NoClock).world_hash);
}

#[test]
fn arrival_order_does_not_matter() {
    let w = small_world();
    let plans = [
        plan(3, 1, 1, &[Op::spawn(Archetype::Prop, 0, [1.0, 3.0, 0.0])]),
        plan(3, 2, 1, &[Op::spawn(Archetype::Prop, 1, [-1.0, 3.0, 0.0])]),
        plan(1, 9, 1, &[Op::spawn(Archetype::Prop, 2, [0.0, 3.0, 1.0]), Op::Raycast { origin: [0.0, 10.0, 0.0], direction: [0.0, -1.0, 0.0], max_distance: 50.0 }]),
        plan(0, 4, 1, &[Op::SetVelocity { handle: prop(&w, 3), linvel: [0.0, 5.0, 0.0], angvel: [1.0, 0.0, 0.0] }]),
    ];
    let orders: [[usize; 4]; 3] = [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]];
    let hashes: Vec<u64> = orders
        .iter()
        .map(|o| {
            let ps: Vec<MicroPlan> = o.iter().map(|&i| plans[i].clone()).collect();
            let mut w = small_world();
            let mut h = w.step(&ps, &mut NoClock).world_hash;
            for _ in 0..30 {
                h = w.step(&[], &mut NoClock).world_hash;
            }
            h
        })
        .collect();
    assert!(hashes.windows(2).all(|x| x[0] == x[1]), "{hashes:x?}");
}

#[test]
fn queries_return_soa_results() {
    let mut w = small_world();
    for _ in 0..60 {
        w.step(&[], &mut NoClock);
    }
    let t = w.tick().0 + 1;
    let p = plan(0, 1, t, &[
        Op::Raycast { origin: [0.0, 20.0, 0.0], direction: [0.0, -2.0, 0.0], max_distance: 100.0 },
        Op::Raycast { origin: [100.0, 20.0, 100.0], direction: [0.0, 1.0, 0.0], max_distance: 10.0 },
        Op::Raycast { origin: [5.9, 5.0, -5.9], direction: [0.0, -1.0, 0.0], max_distance: 100.0 },
        Op::Overlap { min: [-10.0, -1.0, -10.0], max: [10.0, 10.0, 10.0] },
        Op::Overlap { min: [50.0, 50.0, 50.0], max: [51.0, 51.0, 51.0] },
    ]);
    let live = w.entity_count();
    let j = w.step(&[p], &mut NoClock);
    let pj = &j.plans[0];
    assert_eq!(pj.status, Status::Ok);
    assert_eq!(pj.ray_hit, vec![1, 0, 2], "entity pile, nothing, bare ground corner");
    assert!(pj.ray_distance[0] > 0.0 && pj.ray_distance[0] < 20.0);
    assert!((pj.ray_distance[2] - 5.0).abs() < 1e-3, "ground top is y=0: {}", pj.ray_distance[2]);
    assert_eq!(pj.overlap_offsets.len(), 3);
    let first = &pj.overlap_handles[pj.overlap_offsets[0] as usize..pj.overlap_offsets[1] as usize];
    assert!(first.len() >= live - 2 && first.len() <= live, "{} of {live}", first.len());
    assert!(first.windows(2).all(|x| x[0] < x[1]), "ascending, unique");
    assert_eq!(pj.overlap_offsets[1], pj.overlap_offsets[2], "empty box");
}

/// Produces every status code in the IDL, each from the situation it names,
/// and checks rejected plans leave the world hash unchanged.
#[test]
fn every_status_code_is_produced() {
    let mut seen = BTreeSet::new();
    let (w, a, n) = base();
    let good = plan(0, 1, 1, &[Op::SetVelocity { handle: a, linvel: [1.0, 0.0, 0.0], angvel: [0.0; 3] }]);
    let bytes = good.bytes().to_vec();

    // --- structural (decode) ---
    seen.insert(decode_status(bytes.clone()));
    seen.insert(decode_status(bytes[..40].to_vec()));
    let mut m = bytes.clone();
    m[0] = b'X';
    seen.insert(decode_status(m));
    let mut m = bytes.clone();
    m[4] = 2;
    reseal(&mut m);
    seen.insert(decode_status(m));
    let mut m = bytes.clone();
    m[70] ^= 1;
    seen.insert(decode_status(m));
    let mut m = bytes.clone();
    m[64] = 99; // unknown kind
    reseal(&mut m);
    seen.insert(decode_status(m));
    let mut m = bytes.clone();
    m[68..72].copy_from_slice(&70_000u32.to_le_bytes()); // huge count
    reseal(&mut m);
    seen.insert(decode_status(m));
    let mut m = bytes.clone();
    m[32..36].copy_from_slice(&(64u32 << 20).to_le_bytes()); // declared 64 MiB
    reseal(&mut m);
    seen.insert(decode_status(m));
    let mut m = bytes.clone();
    m[72..76].copy_from_slice(&88u32.to_le_bytes()); // misaligned section
    reseal(&mut m);
    seen.insert(decode_status(m));
    let all_layout = {
        let mut v = Vec::new();
        // overlapping: the second section starts inside the first
        let two = PlanBuilder::new(Tick(1), SourceId(0), 1)
            .push(Op::Despawn { handle: a })
            .push(Op::Raycast { origin: [0.0; 3], direction: [0.0, 1.0, 0.0], max_distance: 1.0 })
            .build();
        let mut o = two.clone();
        o[64 + 16 + 8..64 + 16 + 12].copy_from_slice(&96u32.to_le_bytes());
        reseal(&mut o);
        v.push(decode_status(o));
        // unordered kinds
        let mut u = two.clone();
        u[64..66].copy_from_slice(&6u16.to_le_bytes());
        u[80..82].copy_from_slice(&2u16.to_le_bytes());
        reseal(&mut u);
        v.push(decode_status(u));
        // flags set
        let mut f = two.clone();
        f[6] = 1;
        reseal(&mut f);
        v.push(decode_status(f));
        // trailing bytes
        let mut t = two.clone();
        t.push(0);
        v.push(decode_status(t));
        v
    };
    assert_eq!(all_layout, vec![Status::BadLayout; 4]);
    seen.extend(all_layout);

    // --- tick window ---
    let mut q = PlanQueue::default();
    assert_eq!(q.submit(plan(1, 1, 0, &[]), Tick(0)), Err(Status::TickInPast));
    assert_eq!(q.submit(plan(1, 1, 500, &[]), Tick(0)), Err(Status::TickTooFarAhead));
    assert_eq!(q.submit(plan(1, 1, 100, &[]), Tick(0)), Ok(()));
    let r = step_and_check(&[plan(0, 1, 0, &[]), plan(0, 2, 7, &[])]);
    assert_eq!((r[0].0, r[1].0), (Status::TickInPast, Status::TickTooFarAhead));
    seen.extend([r[0].0, r[1].0]);

    // --- per-source caps (checked before validation) ---
    let rays = |seq: u32, n: usize| {
        let mut b = PlanBuilder::new(Tick(1), SourceId(9), seq);
        for _ in 0..n {
            b.push(Op::Raycast { origin: [0.0; 3], direction: [0.0; 3], max_distance: 1.0 });
        }
        MicroPlan::decode(b.build()).expect("ray plan")
    };
    let r = step_and_check(&[rays(1, 65_536), rays(2, 65_536), rays(3, 10)]);
    assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![Status::BadValue, Status::BadValue, Status::SourceOpsCap]);
    seen.insert(Status::SourceOpsCap);
    let spawns = |seq: u32| {
        let mut b = PlanBuilder::new(Tick(1), SourceId(8), seq);
        for _ in 0..55_000 {
            b.push(Op::spawn(Archetype::Prop, 99, [0.0; 3]));
        }
        MicroPlan::decode(b.build()).expect("spawn plan")
    };
    let r = step_and_check(&[spawns(1), spawns(2)]);
    assert_eq!((r[0].0, r[1].0), (Status::UnknownShape, Status::SourceBytesCap));
    seen.extend([r[0].0, r[1].0]);

    // --- semantic ---
    let mut w2 = small_world();
    let victim = prop(&w2, 5);
    w2.step(&[plan(0, 1, 1, &[Op::Despawn { handle: victim }])], &mut NoClock);
    let reused = w2.step(&[plan(0, 1, 2, &[Op::spawn(Archetype::Prop, 0, [0.0, 3.0, 0.0])])], &mut NoClock).plans[0].spawned[0];
    assert_eq!(reused.index(), victim.index(), "slot reused with a new generation");
    let j = w2.step(&[plan(0, 1, 3, &[Op::ApplyImpulse { handle: victim, impulse: [1.0, 0.0, 0.0] }])], &mut NoClock);
    assert_eq!(j.plans[0].status, Status::StaleHandle);
    seen.insert(Status::StaleHandle);
    let j = w2.step(&[plan(0, 1, 4, &[Op::Despawn { handle: reused }]), plan(0, 2, 4, &[Op::Despawn { handle: reused }])], &mut NoClock);
    assert_eq!((j.plans[0].status, j.plans[1].status), (Status::Ok, Status::StaleHandle));

    let never = Handle::new(10_000, 0, 0);
    let cases: Vec<(Op, Status)> = vec![
        (Op::Despawn { handle: never }, Status::DeadHandle),
        (Op::Despawn { handle: Handle::new(a.index(), a.generation(), 3) }, Status::ForeignHandle),
        (Op::SetVelocity { handle: a, linvel: [f32::INFINITY, 0.0, 0.0], angvel: [0.0; 3] }, Status::BadValue),
        (Op::SetVelocity { handle: a, linvel: [1e9, 0.0, 0.0], angvel: [0.0; 3] }, Status::BadValue),
        (Op::SetVelocity { handle: n, linvel: [1.0, 0.0, 0.0], angvel: [0.0; 3] }, Status::WrongArchetype),
        (Op::MoveTo { handle: a, target: [0.0; 3], max_speed: 1.0 }, Status::WrongArchetype),
        (Op::spawn(Archetype::Prop, 42, [0.0; 3]), Status::UnknownShape),
        (Op::Spawn { archetype: 7, shape: 0, position: [0.0; 3], rotation: [0.0, 0.0, 0.0, 1.0], linvel: [0.0; 3], angvel: [0.0; 3] }, Status::UnknownArchetype),
        (Op::Spawn { archetype: 0, shape: 0, position: [0.0; 3], rotation: [0.0; 4], linvel: [0.0; 3], angvel: [0.0; 3] }, Status::BadValue),
        (Op::Overlap { min: [1.0, 0.0, 0.0], max: [0.0, 1.0, 1.0] }, Status::BadValue),
    ];
    for (op, want) in cases {
        let r = step_and_check(&[plan(0, 1, 1, &[op])]);
        assert_eq!(r[0], (want, vec![(0, want)]), "{op:?}");
        seen.insert(want);
    }
    // Ownership: source 5 commands a server prop.
    let r = step_and_check(&[plan(5, 1, 1, &[Op::ApplyImpulse { handle: a, impulse: [0.0, 1.0, 0.0] }])]);
    assert_eq!(r[0].0, Status::NotOwner);
    seen.insert(Status::NotOwner);
    // Despawned twice / used after despawn in one plan.
    let r = step_and_check(&[plan(0, 1, 1, &[
        Op::Despawn { handle: a },
        Op::Despawn { handle: a },
        Op::ApplyImpulse { handle: a, impulse: [0.0, 1.0, 0.0] },
    ])]);
    assert_eq!(r[0], (Status::DuplicateHandle, vec![(1, Status::DuplicateHandle), (2, Status::DuplicateHandle)]));
    seen.insert(Status::DuplicateHandle);
    // The same (source, sequence) twice in one tick.
    let r = step_and_check(&[plan(2, 5, 1, &[Op::spawn(Archetype::Prop, 99, [0.0; 3])]), plan(2, 5, 1, &[])]);
    assert!(r.iter().any(|x| x.0 == Status::DuplicateSequence), "{r:?}");
    seen.insert(Status::DuplicateSequence);
    // Cost: one world-sized overlap is over any source's per-tick budget;
    // the same from the authority is not capped.
    let huge = Op::Overlap { min: [-90_000.0; 3], max: [90_000.0; 3] };
    let r = step_and_check(&[plan(3, 1, 1, &[huge])]);
    assert_eq!(r[0], (Status::OverBudget, vec![]));
    seen.insert(Status::OverBudget);
    assert_eq!(step_and_check(&[plan(0, 1, 1, &[huge])])[0].0, Status::Ok);
    // Role tables refuse before the world (sessions use them).
    let player = sim_core::cost::role(1).expect("player role");
    assert_eq!(player.admit(&plan(3, 1, 1, &[huge])), Err(Status::OpNotPermitted));
    seen.insert(Status::OpNotPermitted);
    drop(w);

    // Graph statuses (GRAPH_*, UNKNOWN_GRAPH) are produced in tests/graphs.rs.
    let missing: Vec<_> = Status::ALL.iter().filter(|s| !seen.contains(s) && !s.name().contains("GRAPH")).collect();
    assert!(missing.is_empty(), "status codes never produced: {missing:?}");
}

#[test]
fn ownership_grants_and_spawned_entities_belong_to_their_source() {
    let mut w = small_world();
    let j = w.step(&[plan(5, 1, 1, &[Op::spawn(Archetype::Prop, 0, [0.0, 2.0, 0.0])])], &mut NoClock);
    let mine = j.plans[0].spawned[0];
    let j = w.step(&[plan(5, 2, 2, &[Op::ApplyImpulse { handle: mine, impulse: [0.0, 5.0, 0.0] }])], &mut NoClock);
    assert_eq!(j.plans[0].status, Status::Ok);
    let j = w.step(&[plan(6, 1, 3, &[Op::ApplyImpulse { handle: mine, impulse: [0.0, 5.0, 0.0] }])], &mut NoClock);
    assert_eq!(j.plans[0].status, Status::NotOwner);
    let n = npc(&w, 1);
    let j = w.step(&[plan(6, 9, 4, &[Op::Grant { handle: n, owner: 6 }])], &mut NoClock);
    assert_eq!(j.plans[0].status, Status::NotOwner, "only the authority grants");
    let j = w.step(&[plan(0, 1, 5, &[Op::Grant { handle: n, owner: 6 }])], &mut NoClock);
    assert_eq!(j.plans[0].status, Status::Ok);
    let j = w.step(&[plan(6, 2, 6, &[Op::MoveTo { handle: n, target: [1.0, 0.6, 1.0], max_speed: 2.0 }])], &mut NoClock);
    assert_eq!(j.plans[0].status, Status::Ok);
}

#[test]
fn npcs_reach_move_targets_and_stop() {
    let mut w = small_world();
    let j = w.step(&[plan(4, 1, 1, &[Op::spawn(Archetype::Npc, 2, [0.0, 3.0, 0.0])])], &mut NoClock);
    let mine = j.plans[0].spawned[0];
    w.step(&[plan(4, 2, 2, &[Op::MoveTo { handle: mine, target: [2.0, 3.0, 0.0], max_speed: 3.0 }])], &mut NoClock);
    for _ in 0..120 {
        w.step(&[], &mut NoClock);
    }
    let loc = w.locate(mine).expect("live");
    let x = w.table(Archetype::Npc).f32(sim_core::ColumnId::PosX)[loc.row as usize];
    assert!((x - 2.0).abs() < 1e-4, "NPC should stand at its target, x = {x}");
}

#[test]
fn op_kinds_apply_in_section_order() {
    let p = plan(0, 1, 1, &[
        Op::Raycast { origin: [0.0; 3], direction: [0.0, 1.0, 0.0], max_distance: 1.0 },
        Op::spawn(Archetype::Prop, 0, [0.0, 3.0, 0.0]),
    ]);
    let kinds: Vec<OpKind> = p.sections().map(|s| s.kind).collect();
    assert_eq!(kinds, vec![OpKind::Spawn, OpKind::Raycast]);
}

#[test]
fn commands_drive_avatars_through_the_character_controller() {
    let mut w = small_world();
    let j = w.step(&[plan(5, 1, 1, &[Op::spawn(Archetype::Avatar, 0, [0.0, 2.0, 0.0])])], &mut NoClock);
    let me = j.plans[0].spawned[0];
    let cmd = |seq: u32, movement: [f32; 3]| Op::Command { handle: me, sequence: seq, buttons: 0, movement, yaw: 0.5, pitch: 0.1, rewind: 0 };
    let pos = |w: &World| {
        let t = w.table(Archetype::Avatar);
        let row = w.locate(me).expect("live").row as usize;
        [t.f32(sim_core::ColumnId::PosX)[row], t.f32(sim_core::ColumnId::PosY)[row], t.f32(sim_core::ColumnId::PosZ)[row]]
    };
    for k in 0..60u64 {
        w.step(&[], &mut NoClock);
        let _ = k;
    }
    let landed = pos(&w);
    let j = w.step(&[plan(5, 2, 62, &[cmd(7, [1.0, 0.0, 0.0])])], &mut NoClock);
    assert_eq!(j.plans[0].status, Status::Ok);
    // The input persists until the next command: the avatar keeps walking.
    for _ in 0..30 {
        w.step(&[], &mut NoClock);
    }
    let walked = pos(&w);
    assert!(walked[0] > landed[0] + 1.0, "{landed:?} -> {walked:?}");
    let t = w.table(Archetype::Avatar);
    let row = w.locate(me).expect("live").row as usize;
    assert_eq!(t.u32(sim_core::ColumnId::LastCommand)[row], 7);
    // Refusals: bad inputs, someone else's avatar, the wrong archetype.
    let tick = w.tick().0 + 1;
    let cases = [
        (5, cmd(8, [2.0, 0.0, 0.0]), Status::BadValue),
        (5, cmd(8, [0.0, 1.0, 0.0]), Status::BadValue),
        (5, cmd(8, [f32::NAN, 0.0, 0.0]), Status::BadValue),
        (5, Op::Command { handle: me, sequence: 8, buttons: 0, movement: [0.0; 3], yaw: 0.0, pitch: 3.0, rewind: 0 }, Status::BadValue),
        (6, cmd(8, [1.0, 0.0, 0.0]), Status::NotOwner),
        (5, Op::MoveTo { handle: me, target: [0.0; 3], max_speed: 1.0 }, Status::WrongArchetype),
        (5, Op::SetVelocity { handle: me, linvel: [1.0, 0.0, 0.0], angvel: [0.0; 3] }, Status::WrongArchetype),
        (0, Op::Command { handle: prop(&w, 0), sequence: 1, buttons: 0, movement: [0.0; 3], yaw: 0.0, pitch: 0.0, rewind: 0 }, Status::WrongArchetype),
    ];
    for (k, (source, op, want)) in cases.into_iter().enumerate() {
        let mut twin = World::restore(&w.snapshot().expect("snapshot")).expect("restore");
        let j = twin.step(&[plan(source, 100 + k as u32, tick, &[op])], &mut NoClock);
        assert_eq!(j.plans[0].status, want, "{op:?}");
    }
}

#[test]
fn an_avatar_that_falls_out_respawns_at_its_spawn_point_with_the_same_handle() {
    let mut w = small_world();
    let j = w.step(&[plan(5, 1, 1, &[Op::spawn(Archetype::Avatar, w.config().players.shape, [5.0, 2.0, 0.0])])], &mut NoClock);
    let me = j.plans[0].spawned[0];
    let t = w.tick().0 + 1;
    w.step(&[plan(5, 2, t, &[Op::Command { handle: me, sequence: 1, buttons: 0, movement: [1.0, 0.0, 0.0], yaw: 0.0, pitch: 0.0, rewind: 0 }])], &mut NoClock);
    let col = |w: &World, c: sim_core::ColumnId| {
        let row = w.locate(me).expect("the avatar is never despawned").row as usize;
        let t = w.table(Archetype::Avatar);
        (t.f32(c).get(row).copied(), t.i32(c).get(row).copied(), t.u64(c).get(row).copied())
    };
    let mut died = None;
    for _ in 0..400 {
        w.step(&[], &mut NoClock);
        if died.is_none() && col(&w, sim_core::ColumnId::Health).1 == Some(0) {
            died = Some(w.tick().0);
            assert!(col(&w, sim_core::ColumnId::RespawnTick).2.is_some_and(|t| t > 0), "waiting to respawn");
        }
        if died.is_some() && col(&w, sim_core::ColumnId::RespawnTick).2 == Some(0) {
            break;
        }
    }
    let died = died.expect("walked off the edge and died");
    let delay = u64::from(w.config().players.respawn_ticks);
    assert_eq!(w.tick().0, died + delay, "respawned after the scenario's delay");
    assert_eq!(col(&w, sim_core::ColumnId::Health).1, Some(100));
    // Source 5 is client 4: spawn point 4 mod 4 = 0.
    let sp = w.config().players.spawn_points[0];
    let p = [col(&w, sim_core::ColumnId::PosX).0, col(&w, sim_core::ColumnId::PosY).0, col(&w, sim_core::ColumnId::PosZ).0];
    assert_eq!(p, [Some(sp[0]), Some(sp[1]), Some(sp[2])]);
    // And it lives on: it falls to the ground and stands.
    for _ in 0..60 {
        w.step(&[], &mut NoClock);
    }
    assert_eq!(col(&w, sim_core::ColumnId::Health).1, Some(100));
}

#[test]
fn an_avatar_fires_once_per_tick_and_a_shot_dead_npc_is_removed() {
    let mut s = common::small();
    s.npcs.clear();
    let mut w = World::from_scenario(&s, None);
    let shape = w.config().players.shape;
    let j = w.step(&[plan(5, 1, 1, &[Op::spawn(Archetype::Avatar, shape, [0.0, 2.0, 3.0]), Op::spawn(Archetype::Npc, 2, [0.0, 1.0, -3.0])])], &mut NoClock);
    let (me, target) = (j.plans[0].spawned[0], j.plans[0].spawned[1]);
    for _ in 0..60 {
        w.step(&[], &mut NoClock);
    }
    let fire = |w: &World, seq: u32, tick: u64| {
        // Level with the NPC, straight along -z (yaw 0).
        let t = w.table(Archetype::Npc);
        let r = w.locate(target).map(|l| l.row as usize);
        let dy = r.map_or(0.0, |r| t.f32(sim_core::ColumnId::PosY)[r]) - (w.table(Archetype::Avatar).f32(sim_core::ColumnId::PosY)[0] + 0.5 * w.character_params(shape).foot);
        plan(5, seq, tick, &[Op::Command { handle: me, sequence: seq, buttons: sim_core::character::BUTTON_FIRE, movement: [0.0; 3], yaw: 0.0, pitch: (dy / 6.0).atan(), rewind: 1 }])
    };
    let tick = w.tick().0 + 1;
    let plans: Vec<MicroPlan> = (0..5).map(|k| fire(&w, 10 + k, tick)).collect();
    let j = w.step(&plans, &mut NoClock).clone();
    let shots: usize = j.plans.iter().map(|p| p.ray_hit.len()).sum();
    assert_eq!(shots, 1, "five fire plans in one tick, one shot: {:?}", j.plans);
    assert_eq!(j.plans[0].ray_handle, vec![target.to_bits()], "{:?}", j.plans[0]);
    let hp = |w: &World| w.locate(target).map(|l| w.table(Archetype::Npc).i32(sim_core::ColumnId::Health)[l.row as usize]);
    assert_eq!(hp(&w), Some(75));
    for k in 0..3u32 {
        let t = w.tick().0 + 1;
        let p = fire(&w, 20 + k, t);
        w.step(&[p], &mut NoClock);
    }
    assert_eq!(hp(&w), None, "shot to 0 health inside the arena: removed");
}
