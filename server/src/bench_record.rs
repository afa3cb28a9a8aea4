//! `dualplane bench record`: what recording a replay costs the tick, and
//! what it costs on disk. Runs of the same scenario and length alternate
//! between recording off and on (the order flips every round, so drift in
//! the machine's load hits both), each from a fresh world; the tick's time
//! is the journal's (the step) plus, when on, recording the tick on the tick
//! thread, as `serve` and `simulate` count it. The medians of the rounds'
//! p99s are compared: one run's p99 on a shared 2-core box moves by more
//! than the effect being measured.

use crate::clock::{mean_p99, MonotonicClock};
use crate::simulate::load_scenario_world;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct RecordBenchArgs {
    /// Scenario (default: the embedded arena, ~1,000 bodies).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Ticks per run.
    #[arg(long, default_value_t = 3600)]
    ticks: u64,
    /// Keyframe interval of the recorded runs, ticks.
    #[arg(long, default_value_t = 600)]
    keyframe_every: u64,
    /// Rounds (each: one run off, one run on).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Where the recorded runs' files go (a temporary directory by default;
    /// new files only, the last one kept).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// One run's tick times.
#[derive(Debug, serde::Serialize)]
struct Run {
    recording: bool,
    /// Entities at the start of the run.
    #[serde(skip)]
    entities: usize,
    tick_ms_mean: f64,
    tick_ms_p99: f64,
    /// The slowest recording call on the tick thread (0 when off).
    record_ms_max: f64,
    stalls: u64,
}

/// One run; recording into a new file in `record_dir` (never one that
/// exists: `bench-record.rpl`, `bench-record-1.rpl`, ...), whose path is
/// returned.
fn one_run(a: &RecordBenchArgs, record_dir: Option<&std::path::Path>) -> anyhow::Result<(Run, Option<PathBuf>)> {
    let (mut world, name, scenario_hash) = load_scenario_world(a.scenario.as_ref(), None)?;
    let recorder = match record_dir {
        Some(dir) => {
            let config = replays::RecorderConfig { keyframe_every: a.keyframe_every, threads: crate::threads::threads(), ..Default::default() };
            Some(replays::Recorder::create_new_in(dir, "bench-record", &world, &name, scenario_hash, config)?)
        }
        None => None,
    };
    let path = recorder.as_ref().map(|r| r.path().to_path_buf());
    let entities = world.entity_count();
    let mut clock = MonotonicClock::new();
    let mut tick_ns = Vec::with_capacity(a.ticks as usize);
    let (mut record_ns_max, mut stalls) = (0u64, 0u64);
    for _ in 0..a.ticks {
        let step_ns = world.step(&[], &mut clock).total_ns();
        let r0 = Instant::now();
        if let Some(r) = &recorder
            && r.record(&world, &[])?.stalled
        {
            stalls += 1;
        }
        let rec_ns = if recorder.is_some() { r0.elapsed().as_nanos() as u64 } else { 0 };
        record_ns_max = record_ns_max.max(rec_ns);
        tick_ns.push(step_ns + rec_ns);
    }
    if let Some(r) = recorder {
        r.close()?;
    }
    let (mean, p99) = mean_p99(&mut tick_ns);
    Ok((Run { recording: path.is_some(), entities, tick_ms_mean: mean / 1e6, tick_ms_p99: p99 / 1e6, record_ms_max: record_ns_max as f64 / 1e6, stalls }, path))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub fn run(a: &RecordBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.rounds >= 1 && a.ticks >= 1, "--rounds and --ticks must be at least 1");
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let progress = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new(u64::from(a.rounds) * 2);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} runs ({msg}) eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    });
    let mut runs = Vec::new();
    let mut last_file = None;
    for round in 0..a.rounds {
        // Off first in even rounds, on first in odd ones.
        for on in [round % 2 == 1, round % 2 == 0] {
            if let Some(pb) = &progress {
                pb.set_message(format!("round {} recording {}", round + 1, if on { "on" } else { "off" }));
            }
            let (run, file) = one_run(a, on.then_some(dir.as_path()))?;
            runs.push(run);
            // Only the last recording is kept (its sizes are reported); the
            // earlier ones are this bench's own files.
            if let Some(f) = file
                && let Some(old) = last_file.replace(f)
            {
                let _ = std::fs::remove_file(old);
            }
            if let Some(pb) = &progress {
                pb.inc(1);
            }
        }
    }
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    let file = last_file.ok_or_else(|| anyhow::anyhow!("no recorded run"))?;
    let replay = replays::Replay::open(&file)?;
    let sizes = replays::sizes::sizes(&replay);
    let p99 = |on: bool| median(runs.iter().filter(|r| r.recording == on).map(|r| r.tick_ms_p99).collect());
    let mean = |on: bool| median(runs.iter().filter(|r| r.recording == on).map(|r| r.tick_ms_mean).collect());
    let (off, on) = (p99(false), p99(true));
    let ratio = if off > 0.0 { on / off } else { 0.0 };
    let record_ms_max = runs.iter().map(|r| r.record_ms_max).fold(0.0, f64::max);
    let stalls: u64 = runs.iter().map(|r| r.stalls).sum();
    if a.json {
        let v = serde_json::json!({
            "scenario": replay.header.scenario_name,
            "entities": runs.first().map_or(0, |r| r.entities),
            "ticks": a.ticks,
            "rounds": a.rounds,
            "threads": crate::threads::threads(),
            "keyframe_every": a.keyframe_every,
            "tick_ms_p99_off": off,
            "tick_ms_p99_on": on,
            "p99_ratio": ratio,
            "tick_ms_mean_off": mean(false),
            "tick_ms_mean_on": mean(true),
            "record_ms_max": record_ms_max,
            "stalls": stalls,
            "sizes": sizes,
            "runs": runs,
        });
        println!("{v}");
    } else {
        for r in &runs {
            println!("  recording {:<3} tick mean {:.3} ms p99 {:.3} ms record max {:.3} ms", if r.recording { "on" } else { "off" }, r.tick_ms_mean, r.tick_ms_p99, r.record_ms_max);
        }
        println!("median p99 over {} rounds of {} ticks: off {off:.3} ms, on {on:.3} ms, ratio {ratio:.3}", a.rounds, a.ticks);
        println!(
            "replay: mean keyframe {} B ({:?}), {:.1} B/tick without keyframes, {:.1} MB per hour",
            sizes.keyframe_bytes_mean,
            sizes.keyframe_bytes,
            sizes.bytes_per_tick_without_keyframes,
            sizes.bytes_per_hour / 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}
