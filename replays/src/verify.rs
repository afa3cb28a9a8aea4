//! Re-simulation against a recording: verify, diff, bisect.

use crate::reader::{Keyframe, Replay, ReplayError};
use crate::{decode_plans, format::{short_hash, TickRecord}};
use serde::Serialize;
use sim_core::{Archetype, ColumnData, ColumnHash, Handle, NoClock, World};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// One column whose hash differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ColumnDiff {
    pub archetype: &'static str,
    pub column: &'static str,
    pub expected: String,
    pub actual: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceKind {
    /// Re-simulating tick T gave a different hash than recorded.
    TickHash,
    /// The keyframe at T restores to a different hash than recorded at T.
    Keyframe,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Divergence {
    pub tick: u64,
    pub kind: DivergenceKind,
    pub expected_world_hash: String,
    pub actual_world_hash: String,
    pub columns: Vec<ColumnDiff>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub from: u64,
    pub to: u64,
    pub ticks_verified: u64,
    pub segments: usize,
    pub first_divergence: Option<Divergence>,
    /// Reading stopped before the end of the file (truncated/corrupt).
    pub truncated: Option<crate::reader::Stop>,
    /// The recording build differs from this one (set only when allowed:
    /// otherwise the verdict is `other_build` and nothing was simulated).
    pub other_build: Option<crate::identity::OtherBuild>,
    pub verdict: crate::verdict::Verdict,
    pub exit_code: u8,
}

fn hex(v: u64) -> String {
    format!("{v:#018x}")
}

/// Whether a record's columns match a computed set (hashes compared as
/// records keep them: [`short_hash`]).
fn same_columns(recorded: &[ColumnHash], actual: &[ColumnHash]) -> bool {
    recorded.len() == actual.len()
        && recorded.iter().zip(actual).all(|(r, a)| (r.archetype, r.column, r.rows, short_hash(r.hash)) == (a.archetype, a.column, a.rows, short_hash(a.hash)))
}

/// Columns whose hashes differ between a record and a computed set
/// (compared, and shown, as records keep them: the low 16 bits).
#[must_use]
pub fn column_diffs(expected: &[ColumnHash], actual: &[ColumnHash]) -> Vec<ColumnDiff> {
    let key = |c: &ColumnHash| (c.archetype, c.column);
    let e: BTreeMap<_, _> = expected.iter().map(|c| (key(c), c)).collect();
    let a: BTreeMap<_, _> = actual.iter().map(|c| (key(c), c)).collect();
    let mut out = Vec::new();
    for k in e.keys().chain(a.keys()).copied().collect::<std::collections::BTreeSet<_>>() {
        let (x, y) = (e.get(&k), a.get(&k));
        if x.map(|c| (short_hash(c.hash), c.rows)) != y.map(|c| (short_hash(c.hash), c.rows)) {
            out.push(ColumnDiff {
                archetype: k.0.name(),
                column: k.1.name(),
                expected: x.map_or("absent".into(), |c| format!("{:#06x} ({} rows)", short_hash(c.hash), c.rows)),
                actual: y.map_or("absent".into(), |c| format!("{:#06x} ({} rows)", short_hash(c.hash), c.rows)),
            });
        }
    }
    out
}

fn check(world: &World, rec: &TickRecord, kind: DivergenceKind) -> Option<Divergence> {
    if world.world_hash() == rec.world_hash && same_columns(&rec.columns, &world.hashes().columns) {
        return None;
    }
    Some(Divergence {
        tick: rec.tick,
        kind,
        expected_world_hash: hex(rec.world_hash),
        actual_world_hash: hex(world.world_hash()),
        columns: column_diffs(&rec.columns, &world.hashes().columns),
    })
}

#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions {
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// Keyframe segments verified in parallel.
    pub jobs: usize,
    /// A file that ends early verifies (exit 0) when its prefix does.
    pub allow_truncated: bool,
    /// Re-simulate a replay recorded by another build (and say so).
    pub allow_other_build: bool,
}

/// Verifies one segment: restore keyframe `k`, check its hash against the
/// record at its tick, then re-simulate up to `end` comparing every tick.
/// Stops early once a divergence at or before `stop_at` is known elsewhere.
fn verify_segment(r: &Replay, k: &Keyframe, start: u64, end: u64, earliest: &AtomicU64, progress: &(dyn Fn(u64) + Sync)) -> Result<(u64, Option<Divergence>), ReplayError> {
    let mut w = r.restore_keyframe(k)?;
    if let Some(rec) = r.record(k.tick)
        && k.tick >= start
            && let Some(d) = check(&w, rec, DivergenceKind::Keyframe) {
                return Ok((0, Some(d)));
            }
    let mut n = 0;
    while w.tick().0 < end {
        let t = w.tick().0 + 1;
        if t > earliest.load(Ordering::Relaxed) {
            break;
        }
        let Some(rec) = r.record(t) else { break };
        let plans = decode_plans(&rec.plans);
        w.step(&plans, &mut NoClock);
        if t >= start {
            n += 1;
            progress(1);
            if let Some(d) = check(&w, rec, DivergenceKind::TickHash) {
                return Ok((n, Some(d)));
            }
        }
    }
    Ok((n, None))
}

/// Re-simulates the replay (or `[from, to]` of it) from its keyframes and
/// compares every tick's world and column hashes with the recording.
pub fn verify(r: &Replay, opts: VerifyOptions, progress: &(dyn Fn(u64) + Sync)) -> Result<VerifyReport, ReplayError> {
    use crate::verdict::Verdict;
    let (first, last) = r.range();
    let from = opts.from.unwrap_or(first).clamp(first, last);
    let to = opts.to.unwrap_or(last).clamp(from, last);
    let other = crate::identity::other_build(&r.header);
    let report = |verified, segments, first_divergence: Option<Divergence>, verdict: Verdict| VerifyReport {
        from,
        to,
        ticks_verified: verified,
        segments,
        first_divergence,
        truncated: r.stop.clone(),
        other_build: other.clone(),
        verdict,
        exit_code: verdict.exit_code(),
    };
    if other.is_some() && !opts.allow_other_build {
        return Ok(report(0, 0, None, Verdict::OtherBuild));
    }
    let Some(start_kf) = r.keyframe_at_or_before(from) else {
        // Cut before its first keyframe: an empty prefix, as the stop says.
        return match &r.stop {
            Some(s) => Ok(report(0, 0, None, Verdict::of(false, Some(s), opts.allow_truncated))),
            None => Err(ReplayError::NoKeyframe),
        };
    };
    // Segments: [keyframe, next keyframe) intersected with [from, to].
    let kfs: Vec<&Keyframe> = r.keyframes.iter().filter(|k| k.tick >= start_kf.tick && k.tick <= to).collect();
    let segments: Vec<(&Keyframe, u64)> = kfs
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, kfs.get(i + 1).map_or(to, |n| n.tick.min(to))))
        .collect();
    let earliest = AtomicU64::new(u64::MAX);
    let jobs = opts.jobs.max(1).min(segments.len().max(1));
    let next = AtomicU64::new(0);
    let results: Vec<Result<(u64, Option<Divergence>), ReplayError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some((k, end)) = segments.get(i) else { break };
                        let res = verify_segment(r, k, from, *end, &earliest, progress);
                        if let Ok((_, Some(d))) = &res {
                            earliest.fetch_min(d.tick, Ordering::Relaxed);
                        }
                        out.push(res);
                    }
                    out
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    let mut verified = 0;
    let mut first_div: Option<Divergence> = None;
    for res in results {
        let (n, d) = res?;
        verified += n;
        if let Some(d) = d
            && first_div.as_ref().is_none_or(|f| d.tick < f.tick) {
                first_div = Some(d);
            }
    }
    let verdict = Verdict::of(first_div.is_some(), r.stop.as_ref(), opts.allow_truncated);
    Ok(report(verified, segments.len(), first_div, verdict))
}

/// One entity value that differs between two states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntityDiff {
    pub archetype: &'static str,
    pub handle: String,
    pub handle_bits: u64,
    pub column: &'static str,
    pub a: String,
    pub b: String,
}

/// Entity-level differences between two worlds (matched by handle).
#[must_use]
pub fn entity_diffs(a: &World, b: &World, limit: usize) -> Vec<EntityDiff> {
    let mut out = Vec::new();
    for arch in Archetype::ALL {
        let (ta, tb) = (a.table(arch), b.table(arch));
        let rows_b: BTreeMap<u64, usize> = tb.handles().iter().enumerate().map(|(i, &h)| (h, i)).collect();
        let rows_a: BTreeMap<u64, usize> = ta.handles().iter().enumerate().map(|(i, &h)| (h, i)).collect();
        for (&h, &ra) in &rows_a {
            let handle = Handle::from_bits(h);
            let Some(&rb) = rows_b.get(&h) else {
                out.push(EntityDiff { archetype: arch.name(), handle: handle.to_string(), handle_bits: h, column: "(entity)", a: "live".into(), b: "absent".into() });
                continue;
            };
            for ((id, ca), (_, cb)) in ta.columns().zip(tb.columns()) {
                let (va, vb) = (value(ca, ra), value(cb, rb));
                if va != vb {
                    out.push(EntityDiff { archetype: arch.name(), handle: handle.to_string(), handle_bits: h, column: id.name(), a: va, b: vb });
                }
            }
            if out.len() >= limit {
                out.truncate(limit);
                return out;
            }
        }
        for &h in rows_b.keys().filter(|h| !rows_a.contains_key(h)) {
            out.push(EntityDiff { archetype: arch.name(), handle: Handle::from_bits(h).to_string(), handle_bits: h, column: "(entity)", a: "absent".into(), b: "live".into() });
        }
    }
    out.truncate(limit);
    out
}

fn value(c: &ColumnData, row: usize) -> String {
    c.value_string(row).unwrap_or_default()
}

#[derive(Debug, Serialize)]
pub struct DiffReport {
    /// The first tick where the two runs differ (None: identical).
    pub tick: Option<u64>,
    pub a_world_hash: Option<String>,
    pub b_world_hash: Option<String>,
    pub columns: Vec<ColumnDiff>,
    pub entities: Vec<EntityDiff>,
    /// A note when the evidence is indirect (e.g. hashes differ but states agree).
    pub note: Option<String>,
    #[serde(skip)]
    pub states: Option<(World, World)>,
}

/// Compares two replays of the same match (B = None: A against a
/// re-simulation of A by this build). Finds the first tick whose recorded
/// hashes differ (or whose keyframe states differ), rebuilds both states at
/// that tick, and lists the entities and values that differ.
pub fn diff(a: &Replay, b: Option<&Replay>, limit: usize) -> Result<DiffReport, ReplayError> {
    let Some(b) = b else { return diff_resim(a, limit) };
    let (fa, la) = a.range();
    let (fb, lb) = b.range();
    let (first, last) = (fa.max(fb), la.min(lb));
    let mut tick = None;
    for t in first + 1..=last {
        if let (Some(x), Some(y)) = (a.record(t), b.record(t)) {
            // Different inputs (plans) or different outcomes (hashes).
            if x.plans != y.plans || x.world_hash != y.world_hash || x.columns != y.columns {
                tick = Some(t);
                break;
            }
        }
    }
    // Keyframes recorded at the same tick must hold the same state.
    for ka in &a.keyframes {
        if tick.is_some_and(|t| ka.tick >= t) {
            break;
        }
        if let Some(kb) = b.keyframes.iter().find(|k| k.tick == ka.tick)
            && a.keyframe_snapshot(ka)? != b.keyframe_snapshot(kb)? {
                tick = Some(ka.tick);
                break;
            }
    }
    let Some(t) = tick else {
        return Ok(DiffReport { tick: None, a_world_hash: None, b_world_hash: None, columns: vec![], entities: vec![], note: Some(format!("no difference in ticks {first}..={last}")), states: None });
    };
    let (wa, wb) = (a.state_at(t)?, b.state_at(t)?);
    let columns = match (a.record(t), b.record(t)) {
        (Some(x), Some(y)) if x.columns != y.columns => column_diffs(&x.columns, &y.columns),
        _ => column_diffs(&wa.hashes().columns, &wb.hashes().columns),
    };
    let entities = entity_diffs(&wa, &wb, limit);
    let note = (wa.world_hash() == wb.world_hash()).then(|| {
        "recorded hashes differ but the re-simulated states agree: a recorded hash is corrupt".to_string()
    });
    Ok(DiffReport {
        tick: Some(t),
        a_world_hash: Some(hex(wa.world_hash())),
        b_world_hash: Some(hex(wb.world_hash())),
        columns,
        entities,
        note,
        states: Some((wa, wb)),
    })
}

fn diff_resim(a: &Replay, limit: usize) -> Result<DiffReport, ReplayError> {
    let v = verify(a, VerifyOptions { jobs: 1, allow_other_build: true, ..VerifyOptions::default() }, &|_| {})?;
    let Some(d) = v.first_divergence else {
        return Ok(DiffReport { tick: None, a_world_hash: None, b_world_hash: None, columns: vec![], entities: vec![], note: Some("re-simulation matches the recording".into()), states: None });
    };
    // Entity values need a recorded state: the keyframe at the divergent
    // tick if there is one, else the next keyframe after it.
    let recorded_kf = a.keyframes.iter().find(|k| k.tick >= d.tick);
    let (entities, note, states) = match recorded_kf {
        Some(k) => {
            let recorded = a.restore_keyframe(k)?;
            let mut resim = a.state_at(d.tick.saturating_sub(1).max(a.range().0))?;
            if d.kind == DivergenceKind::Keyframe {
                // The keyframe itself is the odd one out: re-simulate up to it
                // from the previous keyframe.
                let prev = a.keyframes.iter().rev().find(|x| x.tick < k.tick);
                if let Some(p) = prev {
                    resim = a.restore_keyframe(p)?;
                }
            }
            while resim.tick().0 < k.tick {
                let t = resim.tick().0 + 1;
                let plans = a.record(t).map(|r| decode_plans(&r.plans)).unwrap_or_default();
                resim.step(&plans, &mut NoClock);
            }
            let note = (k.tick != d.tick).then(|| format!("entity values compared at the next keyframe, tick {}", k.tick));
            (entity_diffs(&resim, &recorded, limit), note, Some((resim, recorded)))
        }
        None => (vec![], Some("no keyframe at or after the divergence: entity values unavailable".into()), None),
    };
    Ok(DiffReport { tick: Some(d.tick), a_world_hash: Some(d.actual_world_hash), b_world_hash: Some(d.expected_world_hash), columns: d.columns, entities, note, states })
}

#[derive(Debug, Serialize)]
pub struct BisectReport {
    /// The keyframe before the first bad one.
    pub last_good_keyframe: Option<u64>,
    /// The first keyframe that re-simulation from its predecessor does not
    /// reproduce.
    pub first_bad_keyframe: Option<u64>,
    /// Keyframe segments re-simulated.
    pub segments_checked: u32,
    pub ticks_simulated: u64,
}

/// Finds the first keyframe that re-simulation from the previous keyframe
/// does not reproduce, using keyframes only (per-tick hashes may be missing
/// or untrusted). Each segment is independent, so `jobs` workers check them
/// in order and stop past the earliest failure: the cost is the ticks up to
/// the first bad keyframe divided by `jobs`. (A binary search over
/// keyframes costs as many simulated ticks, since each probe re-simulates
/// from the last good keyframe, and misses isolated faults such as one
/// corrupt keyframe; segment checks find both.)
pub fn bisect(r: &Replay, jobs: usize) -> Result<BisectReport, ReplayError> {
    let kfs = &r.keyframes;
    if kfs.is_empty() {
        return Err(ReplayError::NoKeyframe);
    }
    let earliest = AtomicU64::new(u64::MAX);
    let next = AtomicU64::new(1);
    let checked = AtomicU64::new(0);
    let sim = AtomicU64::new(0);
    let failure: std::sync::Mutex<Option<ReplayError>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i as usize >= kfs.len() || i > earliest.load(Ordering::Relaxed) {
                    break;
                }
                let run = || -> Result<bool, ReplayError> {
                    let (a, b) = (&kfs[i as usize - 1], &kfs[i as usize]);
                    let mut w = r.restore_keyframe(a)?;
                    while w.tick().0 < b.tick {
                        let t = w.tick().0 + 1;
                        let plans = r.record(t).map(|x| decode_plans(&x.plans)).unwrap_or_default();
                        w.step(&plans, &mut NoClock);
                        sim.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r.restore_keyframe(b)?.world_hash() == w.world_hash())
                };
                checked.fetch_add(1, Ordering::Relaxed);
                match run() {
                    Ok(true) => {}
                    Ok(false) => {
                        earliest.fetch_min(i, Ordering::Relaxed);
                    }
                    Err(e) => {
                        earliest.fetch_min(i, Ordering::Relaxed);
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    let bad = earliest.load(Ordering::Relaxed);
    let (good, bad) = if bad == u64::MAX { (kfs.last().map(|k| k.tick), None) } else { (Some(kfs[bad as usize - 1].tick), Some(kfs[bad as usize].tick)) };
    Ok(BisectReport {
        last_good_keyframe: good,
        first_bad_keyframe: bad,
        segments_checked: checked.load(Ordering::Relaxed) as u32,
        ticks_simulated: sim.load(Ordering::Relaxed),
    })
}
