//! Lag compensation: a player at 100 ms RTT fires at a moving target where
//! its view showed it; the world rewinds the target to that tick and the
//! shot hits (unrewound, it would miss), and the recorded session
//! re-simulates the same hit.

use replays::{verify, FsyncPolicy, Recorder, RecorderConfig, Replay, VerifyOptions};
use sim_core::character::BUTTON_FIRE;
use sim_core::{Archetype, ColumnId, Handle, MicroPlan, NoClock, Op, PlanBuilder, Scenario, SourceId, Tick, World};
use std::path::PathBuf;

fn plan(source: u32, seq: u32, tick: u64, op: Op) -> MicroPlan {
    let mut b = PlanBuilder::new(Tick(tick), SourceId(source), seq);
    b.push(op);
    MicroPlan::decode(b.build()).expect("plan")
}

fn pos(w: &World, h: Handle) -> [f32; 3] {
    let t = w.table(Archetype::Avatar);
    let r = w.locate(h).expect("live").row as usize;
    [t.f32(ColumnId::PosX)[r], t.f32(ColumnId::PosY)[r], t.f32(ColumnId::PosZ)[r]]
}

fn health(w: &World, h: Handle) -> i32 {
    w.table(Archetype::Avatar).i32(ColumnId::Health)[w.locate(h).expect("live").row as usize]
}

/// The shot: aim from the shooter's eye at where the target was `seen`.
fn shot(w: &World, shooter: Handle, target_then: [f32; 3], seq: u32, rewind: u32) -> MicroPlan {
    let me = pos(w, shooter);
    let foot = w.character_params(w.config().players.shape).foot;
    let eye = [me[0], me[1] + 0.5 * foot, me[2]];
    let d = [target_then[0] - eye[0], target_then[1] - eye[1], target_then[2] - eye[2]];
    let yaw = (-d[0]).atan2(-d[2]);
    let pitch = d[1].atan2((d[0] * d[0] + d[2] * d[2]).sqrt());
    plan(5, seq, w.tick().0 + 1, Op::Command { handle: shooter, sequence: seq, buttons: BUTTON_FIRE, movement: [0.0; 3], yaw, pitch, rewind })
}

#[test]
fn a_shot_at_a_moving_target_hits_where_the_shooter_saw_it_and_replays_the_same() {
    let mut s = Scenario::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/small.toml")).expect("small");
    // No wandering NPCs to step into the line of fire.
    s.npcs.clear();
    let mut w = World::from_scenario(&s, None);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("shot.rpl");
    let cfg = RecorderConfig { keyframe_every: 50, flush_every: 7, fsync: FsyncPolicy::Close, queue: 4, zstd_level: 3, threads: 1 };
    let rec = Recorder::create(&file, &w, "small", 1, cfg).expect("recorder");
    let shape = w.config().players.shape;
    let step = |w: &mut World, plans: &[MicroPlan]| {
        let j = w.step(plans, &mut NoClock).clone();
        rec.record(w, plans).expect("record");
        j
    };
    let j = step(&mut w, &[plan(5, 1, 1, Op::spawn(Archetype::Avatar, shape, [0.0, 2.0, 3.0])), plan(6, 1, 1, Op::spawn(Archetype::Avatar, shape, [-3.0, 2.0, -3.0]))]);
    let (shooter, target) = (j.plans[0].spawned[0], j.plans[1].spawned[0]);
    for _ in 0..60 {
        step(&mut w, &[]);
    }
    // The target strafes along +x at full speed from now on.
    let t = w.tick().0 + 1;
    step(&mut w, &[plan(6, 2, t, Op::Command { handle: target, sequence: 2, buttons: 0, movement: [1.0, 0.0, 0.0], yaw: 0.0, pitch: 0.0, rewind: 0 })]);
    let mut seen_at = std::collections::BTreeMap::new();
    for _ in 0..40 {
        step(&mut w, &[]);
        seen_at.insert(w.tick().0, pos(&w, target));
    }
    // 100 ms RTT plus 100 ms of interpolation: the shooter's view trails the
    // tick its command runs at by 12 ticks (the default max rewind, 200 ms).
    let fire_tick = w.tick().0 + 1;
    let rewind = 12u32;
    let then = seen_at[&(fire_tick - u64::from(rewind))];
    let now_pos = pos(&w, target);
    assert!((now_pos[0] - then[0]).abs() > 1.0, "the target moved: {then:?} -> {now_pos:?}");
    // Unrewound (what the server's newest state shows) the same shot misses.
    let mut twin = World::restore(&w.snapshot().expect("snap")).expect("restore");
    let j = twin.step(&[shot(&twin, shooter, then, 3, 0)], &mut NoClock).clone();
    assert_eq!(j.plans[0].ray_hit, vec![0], "without rewind the shot misses: {:?} target {:?} then {then:?} now {now_pos:?}", j.plans[0], target);
    assert_eq!(health(&twin, target), 100);
    // Rewound to what the shooter saw, it hits.
    let fire = shot(&w, shooter, then, 3, rewind);
    let j = step(&mut w, &[fire]);
    assert_eq!((j.plans[0].ray_hit.clone(), j.plans[0].ray_handle.clone()), (vec![1], vec![target.to_bits()]), "{:?}", j.plans[0]);
    assert_eq!(health(&w, target), 75);
    for _ in 0..20 {
        step(&mut w, &[]);
    }
    let final_hash = w.world_hash();
    rec.close().expect("close");
    // The replay re-simulates the same hit: every tick verifies, and the
    // state re-simulated from an earlier keyframe has the damage.
    let r = Replay::open(&file).expect("open");
    let v = verify(&r, VerifyOptions { jobs: 2, ..VerifyOptions::default() }, &|_| {}).expect("verify");
    assert!(v.first_divergence.is_none(), "{v:?}");
    let again = r.state_at(fire_tick).expect("state at the shot");
    assert_eq!(health(&again, target), 75, "the replay's shot hit too");
    assert_eq!(r.record(w.tick().0).expect("last").world_hash, final_hash);
}
