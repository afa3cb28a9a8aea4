//! Record, read back, verify, plant faults, diff, bisect, recover.

use replays::plant::{plant, Plant};
use replays::{bisect, diff, verify, FsyncPolicy, Recorder, RecorderConfig, Replay, VerifyOptions};
use sim_core::{Archetype, ColumnId, Handle, MicroPlan, NoClock, Op, PlanBuilder, Scenario, SourceId, Tick, World};
use std::path::{Path, PathBuf};

fn small() -> Scenario {
    Scenario::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/small.toml")).expect("small")
}

/// A scripted source: every 4th tick, impulses on two props and a move
/// order for an NPC, plus a raycast.
fn plans_for(w: &World, seq: u32) -> Vec<MicroPlan> {
    let t = w.tick().0 + 1;
    if !t.is_multiple_of(4) {
        return vec![];
    }
    let props = w.table(Archetype::Prop).handles();
    let npcs = w.table(Archetype::Npc).handles();
    let mut b = PlanBuilder::new(Tick(t), SourceId(0), seq).correlation(t);
    for k in 0..2 {
        let h = Handle::from_bits(props[(t as usize * 7 + k * 13) % props.len()]);
        b.push(Op::ApplyImpulse { handle: h, impulse: [0.3, 1.5, -0.2] });
    }
    b.push(Op::MoveTo { handle: Handle::from_bits(npcs[(t as usize) % npcs.len()]), target: [(t % 5) as f32 - 2.0, 0.6, 1.0], max_speed: 2.0 });
    b.push(Op::Raycast { origin: [0.0, 10.0, 0.0], direction: [0.0, -1.0, 0.0], max_distance: 20.0 });
    vec![MicroPlan::decode(b.build()).expect("plan")]
}

fn record(path: &Path, ticks: u64, keyframe_every: u64) -> Vec<u64> {
    let mut w = World::from_scenario(&small(), None);
    let cfg = RecorderConfig { keyframe_every, flush_every: 7, fsync: FsyncPolicy::Close, queue: 4, zstd_level: 3, threads: 1 };
    let rec = Recorder::create(path, &w, "small", 1, cfg).expect("create");
    let mut hashes = vec![w.world_hash()];
    for i in 0..ticks {
        let plans = plans_for(&w, i as u32);
        w.step(&plans, &mut NoClock);
        rec.record(&w, &plans).expect("record");
        hashes.push(w.world_hash());
    }
    rec.close().expect("close");
    hashes
}

fn opts(jobs: usize) -> VerifyOptions {
    VerifyOptions { jobs, ..VerifyOptions::default() }
}

#[test]
fn recorded_replay_reads_back_and_verifies_serially_and_in_parallel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("a.rpl");
    let hashes = record(&f, 200, 50);
    let r = Replay::open(&f).expect("open");
    assert!(r.clean_end && r.stop.is_none());
    assert_eq!(r.range(), (0, 200));
    assert_eq!(r.keyframes.iter().map(|k| k.tick).collect::<Vec<_>>(), vec![0, 50, 100, 150, 200]);
    for t in 1..=200 {
        assert_eq!(r.record(t).expect("record").world_hash, hashes[t as usize]);
    }
    for jobs in [1, 3] {
        let v = verify(&r, opts(jobs), &|_| {}).expect("verify");
        assert!(v.first_divergence.is_none(), "{v:?}");
        assert_eq!(v.ticks_verified, 200);
    }
    let v = verify(&r, VerifyOptions { from: Some(120), to: Some(170), jobs: 2, ..VerifyOptions::default() }, &|_| {}).expect("verify range");
    assert_eq!((v.from, v.to, v.ticks_verified), (120, 170, 51));
    assert_eq!(r.state_at(137).expect("seek").world_hash(), hashes[137]);
    assert!(diff(&r, None, 10).expect("diff").tick.is_none());
    let b = bisect(&r, 2).expect("bisect");
    assert_eq!(b.first_bad_keyframe, None);
}

#[test]
fn planted_faults_are_found_at_the_exact_tick_column_and_entity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("a.rpl");
    record(&f, 160, 40);
    let r = Replay::open(&f).expect("open");

    // 1. One plan byte (inside an impulse value) at tick 92.
    let p1 = dir.path().join("p1.rpl");
    let plan_len = r.record(92).expect("tick 92").plans[0].len();
    assert!(plan_len > 150);
    plant(&r, &Plant::PlanByte { tick: 92, plan: 0, offset: 150 }, &p1).expect("plant");
    let r1 = Replay::open(&p1).expect("open p1");
    let v = verify(&r1, opts(2), &|_| {}).expect("verify");
    assert_eq!(v.first_divergence.as_ref().map(|d| d.tick), Some(92), "{v:?}");
    let d = diff(&r, Some(&r1), 20).expect("diff");
    assert_eq!(d.tick, Some(92));
    assert!(!d.entities.is_empty());

    // 2. One recorded column hash at tick 77.
    let p2 = dir.path().join("p2.rpl");
    plant(&r, &Plant::ColumnHash { tick: 77, archetype: Archetype::Prop, column: ColumnId::Health }, &p2).expect("plant");
    let r2 = Replay::open(&p2).expect("open p2");
    let v = verify(&r2, opts(1), &|_| {}).expect("verify");
    let dv = v.first_divergence.expect("divergence");
    assert_eq!(dv.tick, 77);
    assert_eq!(dv.columns.len(), 1);
    assert_eq!((dv.columns[0].archetype, dv.columns[0].column), ("prop", "health"));
    let d = diff(&r, Some(&r2), 20).expect("diff");
    assert_eq!(d.tick, Some(77));
    assert!(d.note.as_deref().is_some_and(|n| n.contains("corrupt")));

    // 3. One f32 in the keyframe at tick 80 (row 4's pos_z).
    let p3 = dir.path().join("p3.rpl");
    plant(&r, &Plant::KeyframeF32 { tick: 80, archetype: Archetype::Prop, column: ColumnId::PosZ, row: 4 }, &p3).expect("plant");
    let r3 = Replay::open(&p3).expect("open p3");
    let v = verify(&r3, opts(2), &|_| {}).expect("verify");
    let dv = v.first_divergence.expect("divergence");
    assert_eq!(dv.tick, 80);
    assert_eq!(dv.columns.iter().map(|c| c.column).collect::<Vec<_>>(), vec!["pos_z"]);
    let d = diff(&r, Some(&r3), 20).expect("diff");
    assert_eq!(d.tick, Some(80));
    let want = Handle::from_bits(r.state_at(80).expect("state").table(Archetype::Prop).handles()[4]);
    assert_eq!(d.entities.len(), 1, "{:?}", d.entities);
    assert_eq!((d.entities[0].handle_bits, d.entities[0].column), (want.to_bits(), "pos_z"));
    assert_ne!(d.entities[0].a, d.entities[0].b);
    // Bisect finds the bad keyframe without per-tick hashes.
    let b = bisect(&r3, 3).expect("bisect");
    assert_eq!((b.last_good_keyframe, b.first_bad_keyframe), (Some(40), Some(80)));
    // Diff against re-simulation by this build names the same entity.
    let d = diff(&r3, None, 20).expect("diff resim");
    assert_eq!(d.tick, Some(80));
    assert_eq!(d.entities.first().map(|e| e.handle_bits), Some(want.to_bits()));
}

#[test]
fn truncated_files_recover_every_complete_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("a.rpl");
    record(&f, 120, 30);
    let bytes = std::fs::read(&f).expect("read");
    let full = Replay::parse(bytes.clone()).expect("full");
    let mut last_seen = 0;
    let head = replays::format::encode_header(&full.header).len();
    for cut in (head + 1..bytes.len()).step_by(bytes.len() / 37) {
        let r = Replay::parse(bytes[..cut].to_vec()).expect("header survives");
        let s = r.stop.as_ref().expect("a truncated file says where it stopped");
        assert!(s.offset <= cut as u64);
        let (_, last) = r.range();
        assert!(last >= last_seen, "more bytes never recover fewer ticks");
        last_seen = last;
        if !r.keyframes.is_empty() {
            let v = verify(&r, opts(2), &|_| {}).expect("verify");
            assert!(v.first_divergence.is_none());
            assert!(v.truncated.as_ref().is_some_and(|s| s.kind == replays::StopKind::Truncated), "a cut is a truncation: {:?}", v.truncated);
            assert_eq!(v.verdict, replays::Verdict::Truncated);
            let v = verify(&r, VerifyOptions { jobs: 2, allow_truncated: true, ..VerifyOptions::default() }, &|_| {}).expect("verify");
            assert_eq!(v.verdict, replays::Verdict::VerifiedPrefix);
        }
        for t in 1..=last {
            assert_eq!(r.record(t).map(|x| x.world_hash), full.record(t).map(|x| x.world_hash));
        }
    }
    // A corrupted byte in the middle stops reading at that chunk.
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xFF;
    let r = Replay::parse(bad).expect("header");
    assert!(r.stop.as_ref().is_some_and(|s| s.reason.contains("checksum") || s.reason.contains("length") || s.reason.contains("kind")));
    assert!(r.range().1 < 120);
}

#[test]
fn bad_headers_are_errors() {
    assert!(Replay::parse(b"nope".to_vec()).is_err());
    assert!(Replay::parse(b"DPREPLAY\x02\0\0\0".to_vec()).is_err());
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("a.rpl");
    record(&f, 10, 5);
    let mut b = std::fs::read(&f).expect("read");
    b[30] ^= 1;
    assert!(matches!(Replay::parse(b), Err(replays::ReplayError::Header(_))));
}

#[test]
fn a_byte_flipped_anywhere_never_verifies() {
    use replays::Verdict;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("a.rpl");
    record(&f, 90, 30);
    let bytes = std::fs::read(&f).expect("read");
    // 200 seeded positions over the whole file (header, chunk headers,
    // payloads, index, END, trailer), each with one bit flipped.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let at = (state % bytes.len() as u64) as usize;
        let mut b = bytes.clone();
        b[at] ^= 1 << (state >> 61);
        // Allowing truncation must not let a flip pass as a cut tail.
        let verdict = match Replay::parse(b) {
            Err(e) => Verdict::of_error(&e).expect("a header error is about the bytes"),
            Ok(r) => match verify(&r, VerifyOptions { jobs: 2, allow_truncated: true, ..VerifyOptions::default() }, &|_| {}) {
                Ok(v) => v.verdict,
                Err(e) => Verdict::of_error(&e).expect("a keyframe error is about the bytes"),
            },
        };
        assert!(matches!(verdict, Verdict::Divergence | Verdict::Corrupt | Verdict::OtherBuild), "byte {at} of {}: {verdict:?}", bytes.len());
        assert_ne!(verdict.exit_code(), 0);
    }
}
