//! Decode + validate + apply arbitrary microplans against a live world.
//! Invariants: nothing panics; a rejected plan leaves the world hash exactly
//! as stepping with no plan would.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sim_core::{microplan::reseal, MicroPlan, NoClock, Scenario, Status, World};
use std::sync::LazyLock;

static SNAPSHOT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let s = Scenario::parse(include_str!("../../scenarios/small.toml"), "small.toml").expect("scenario");
    let mut w = World::from_scenario(&s, None);
    for _ in 0..10 {
        w.step(&[], &mut NoClock);
    }
    w.snapshot().expect("snapshot")
});

fuzz_target!(|data: &[u8]| {
    // The raw bytes exercise the header and checksum checks...
    let _ = MicroPlan::decode(data.to_vec());
    // ...and the same bytes retargeted to the next tick and resealed reach
    // the section table, validation and application.
    if data.len() < 64 {
        return;
    }
    let mut bytes = data.to_vec();
    bytes[8..16].copy_from_slice(&11u64.to_le_bytes());
    reseal(&mut bytes);
    let Ok(plan) = MicroPlan::decode(bytes) else { return };
    let mut w = World::restore(&SNAPSHOT).expect("restore");
    let j = w.step(std::slice::from_ref(&plan), &mut NoClock);
    let (status, hash) = (j.plans[0].status, j.world_hash);
    if status != Status::Ok {
        let mut twin = World::restore(&SNAPSHOT).expect("restore");
        assert_eq!(hash, twin.step(&[], &mut NoClock).world_hash, "rejected plan ({status:?}) changed the world");
    }
});
