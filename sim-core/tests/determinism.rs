//! Determinism: golden hashes, snapshot/restore continuation, column hash
//! isolation.

mod common;

use common::{repo_root, small_world};
use sim_core::{Archetype, ColumnId, NoClock, Scenario, World};

const GOLDEN: &str = "tests/golden/small-hashes.txt";

fn golden_lines(w: &mut World) -> String {
    let mut out = format!("tick=0 hash={:#018x}\n", w.world_hash());
    for _ in 0..240 {
        let j = w.step(&[], &mut NoClock);
        if j.tick.0.is_multiple_of(20) {
            out.push_str(&format!("tick={} hash={:#018x}\n", j.tick.0, j.world_hash));
        }
    }
    out.push_str(&format!("entities={}\n", w.entity_count()));
    out
}

/// The committed golden hashes of the small scenario. Re-bless with
/// `DUALPLANE_BLESS=1 cargo test -p sim-core --test determinism` only for a
/// deliberate, reviewed change of simulation results.
#[test]
fn small_scenario_matches_committed_golden_hashes() {
    let actual = golden_lines(&mut small_world());
    let path = repo_root().join(GOLDEN);
    if std::env::var_os("DUALPLANE_BLESS").is_some() {
        std::fs::write(&path, &actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).expect("golden file exists (bless with DUALPLANE_BLESS=1)");
    assert_eq!(actual, expected, "simulation results changed; if deliberate, re-bless {GOLDEN}");
}

/// rapier's parallel step on 1, 2, 3 and 8 threads (8: the default cap): the golden hashes hold on
/// every count, and the default arena agrees tick by tick (every column).
/// Needs the `parallel` feature (`cargo test -p sim-core --features parallel
/// --test determinism`); without it there is one thread to test.
#[cfg(feature = "parallel")]
#[test]
fn golden_hashes_hold_on_every_thread_count() {
    let expected = std::fs::read_to_string(repo_root().join(GOLDEN)).expect("golden file exists");
    for n in [1, 2, 3, 8] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().expect("pool");
        let actual = pool.install(|| golden_lines(&mut small_world()));
        assert_eq!(actual, expected, "golden hashes differ on {n} threads");
    }
    let run = |n: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().expect("pool");
        pool.install(|| {
            let mut w = World::from_scenario(&Scenario::default_arena(), None);
            (0..240).map(|_| w.step(&[], &mut NoClock).world_hash).collect::<Vec<u64>>()
        })
    };
    assert_eq!(run(1), run(2), "the default arena differs between 1 and 2 threads");
}

#[test]
fn golden_window_exercises_the_out_of_bounds_rule() {
    let mut w = small_world();
    let start = w.entity_count();
    let mut despawned = 0;
    for _ in 0..240 {
        despawned += w.step(&[], &mut NoClock).counters.despawned_out_of_bounds;
    }
    assert!(despawned >= 1, "the flung ball should leave the arena and be despawned");
    assert_eq!(w.entity_count(), start - despawned as usize);
}

#[test]
fn two_worlds_from_one_scenario_agree_every_tick() {
    let (mut a, mut b) = (small_world(), small_world());
    assert_eq!(a.world_hash(), b.world_hash());
    for _ in 0..120 {
        assert_eq!(a.step(&[], &mut NoClock).world_hash, b.step(&[], &mut NoClock).world_hash);
    }
}

#[test]
fn seed_changes_the_world() {
    let s = common::small();
    assert_ne!(World::from_scenario(&s, Some(1)).world_hash(), World::from_scenario(&s, Some(2)).world_hash());
}

/// Snapshot at several ticks of the default arena, including while the pile
/// is still falling and settling (contact-dense), restore into fresh worlds
/// and check every later tick's hash, and that the restored world
/// re-serializes to the same bytes (rapier's round-trip standard).
#[test]
fn snapshot_restore_continues_bit_identically_in_the_settling_pile() {
    let mut a = World::from_scenario(&Scenario::default_arena(), None);
    let snap_ticks = [0u64, 1, 40, 75];
    let horizon = 110u64;
    let mut restored: Vec<World> = Vec::new();
    let mut max_contacts = 0;
    let mut pending: Option<(sim_core::Capture, Vec<u8>)> = None;
    for _ in 0..horizon {
        if snap_ticks.contains(&a.tick().0) {
            let bytes = a.snapshot().expect("snapshot");
            let b = World::restore(&bytes).expect("restore");
            assert_eq!(b.world_hash(), a.world_hash(), "restored tick {} hash", a.tick());
            assert_eq!(b.snapshot().expect("re-snapshot"), bytes, "re-serialized bytes at tick {}", a.tick());
            restored.push(b);
        }
        let j = a.step(&[], &mut NoClock);
        let (t, h) = (j.tick, j.world_hash);
        max_contacts = max_contacts.max(j.counters.contact_pairs);
        for b in &mut restored {
            assert_eq!(b.step(&[], &mut NoClock).world_hash, h, "tick {t} after restore");
        }
        if t.0 % 25 == 0 {
            let bytes = a.snapshot().expect("snapshot");
            // A capture (the replay writer encodes it on its thread) gives
            // the same bytes, encoded 25 ticks later while the world has
            // stepped on.
            if let Some((c, b)) = pending.take() {
                assert_eq!(c.encode().expect("encode"), b, "captured bytes 25 ticks before {t}");
            }
            let capture = a.capture();
            assert_eq!(capture.tick(), t.0);
            pending = Some((capture, bytes.clone()));
            for b in &restored {
                assert_eq!(b.snapshot().expect("snapshot"), bytes, "snapshot bytes diverge at tick {t}");
            }
        }
    }
    assert_eq!(restored.len(), snap_ticks.len());
    let (c, b) = pending.expect("captured");
    assert_eq!(c.encode().expect("encode"), b);
    assert!(max_contacts > 500, "the window must include a contact-dense pile, saw {max_contacts} pairs");
}

#[test]
fn flipping_one_bit_changes_exactly_that_column_hash_and_the_world_hash() {
    let mut w = small_world();
    for _ in 0..30 {
        w.step(&[], &mut NoClock);
    }
    let before = w.hashes().clone();
    for column in [ColumnId::PosY, ColumnId::Health, ColumnId::Handle] {
        let mut w2 = World::restore(&w.snapshot().expect("snapshot")).expect("restore");
        let col = w2.table_mut_for_fault_injection(Archetype::Prop).column_mut(column).expect("column");
        let row = 5;
        let width = col.bytes().len() / col.len();
        col.bytes_mut()[row * width] ^= 0x01;
        w2.rehash();
        let after = w2.hashes();
        assert_ne!(after.world, before.world, "{column:?}: world hash");
        for (b, a) in before.columns.iter().zip(&after.columns) {
            if b.archetype == Archetype::Prop && b.column == column {
                assert_ne!(a.hash, b.hash, "{column:?}: its own hash must change");
            } else {
                assert_eq!(a.hash, b.hash, "{column:?}: {:?}/{:?} must not change", b.archetype, b.column);
            }
        }
    }
}

#[test]
fn rng_state_is_part_of_the_world_hash() {
    let mut w = small_world();
    for _ in 0..5 {
        w.step(&[], &mut NoClock);
    }
    let mut snap = w.snapshot().expect("snapshot");
    // Restoring the same bytes gives the same hash...
    assert_eq!(World::restore(&snap).expect("restore").world_hash(), w.world_hash());
    // ...and a corrupted snapshot is refused by its checksum, not loaded.
    let last = snap.len() - 1;
    snap[last] ^= 0xFF;
    assert!(matches!(World::restore(&snap), Err(sim_core::SnapshotError::Checksum { .. })));
}
