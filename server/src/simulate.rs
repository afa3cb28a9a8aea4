//! `dualplane simulate`: a headless run that prints world hashes.

use crate::clock::{mean_p99, MonotonicClock};
use anyhow::Context;
use sim_core::{Scenario, World};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Scenario file (TOML); the embedded default arena when omitted.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Ticks to simulate.
    #[arg(long, default_value_t = 600)]
    ticks: u64,
    /// Overrides the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Print `tick=<T> hash=0x<16 hex>` every K ticks (0 = never).
    #[arg(long, default_value_t = 60)]
    hash_every: u64,
    /// Start from a snapshot file instead of a scenario.
    #[arg(long, conflicts_with_all = ["scenario", "seed"])]
    from_snapshot: Option<PathBuf>,
    /// Write a snapshot after tick T: `T:FILE` (repeatable).
    #[arg(long, value_parser = parse_snapshot_at)]
    snapshot_at: Vec<(u64, PathBuf)>,
    /// Apply recorded plan files (a file, or a directory of `*.plan`) at
    /// their target ticks.
    #[arg(long)]
    plans: Option<PathBuf>,
    /// A behaviour graph file to upload and bind at the first tick (a
    /// server plan, so replays carry it).
    #[arg(long)]
    graph: Option<PathBuf>,
    /// What `--graph` drives: `archetype=NAME`.
    #[arg(long, default_value = "archetype=npc", requires = "graph")]
    bind: String,
    /// How graphs run: `compiled` kernels (the default) or the reference
    /// `interpreted` evaluator (bit-identical; for measuring).
    #[arg(long, value_enum, default_value = "compiled", requires = "graph")]
    graph_engine: GraphEngine,
    /// Record a replay to this file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Replay keyframe interval, ticks.
    #[arg(long, default_value_t = 600)]
    keyframe_every: u64,
    /// Tick records per replay chunk (what a crash can lose at most).
    #[arg(long, default_value_t = 30)]
    flush_every: u64,
    /// When the replay writer fsyncs: always | keyframe | close | never.
    #[arg(long, default_value = "keyframe")]
    fsync: replays::FsyncPolicy,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_snapshot_at(s: &str) -> Result<(u64, PathBuf), String> {
    let (t, f) = s.split_once(':').ok_or_else(|| format!("expected TICK:FILE, found {s:?}"))?;
    let t = t.parse::<u64>().map_err(|e| format!("expected TICK:FILE with an integer tick, found {t:?}: {e}"))?;
    Ok((t, PathBuf::from(f)))
}

pub fn load_world(scenario: Option<&PathBuf>, seed: Option<u64>) -> anyhow::Result<World> {
    Ok(load_scenario_world(scenario, seed)?.0)
}

/// The world, the scenario's name and its hash.
pub fn load_scenario_world(scenario: Option<&PathBuf>, seed: Option<u64>) -> anyhow::Result<(World, String, u64)> {
    Ok(scenario_world(&load_scenario(scenario)?, seed))
}

/// The scenario file, or the embedded default arena.
pub fn load_scenario(scenario: Option<&PathBuf>) -> anyhow::Result<Scenario> {
    Ok(match scenario {
        Some(p) => Scenario::load(p)?,
        None => Scenario::default_arena(),
    })
}

/// Tick 0 of `s`, its name and its hash.
#[must_use]
pub fn scenario_world(s: &Scenario, seed: Option<u64>) -> (World, String, u64) {
    (World::from_scenario(s, seed), s.name.clone(), s.hash())
}

pub fn run(a: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let (mut world, name, scenario_hash) = match &a.from_snapshot {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("{}: cannot read snapshot", p.display()))?;
            let w = World::restore(&bytes).with_context(|| format!("{}", p.display()))?;
            (w, format!("snapshot {}", p.display()), xxhash_rust::xxh3::xxh3_64(&bytes))
        }
        None => load_scenario_world(a.scenario.as_ref(), a.seed)?,
    };
    let recorder = match &a.record {
        Some(path) => {
            let config = replays::RecorderConfig { keyframe_every: a.keyframe_every, flush_every: a.flush_every, fsync: a.fsync, threads: crate::threads::threads(), ..Default::default() };
            Some(replays::Recorder::create(path, &world, &name, scenario_hash, config).with_context(|| format!("{}: cannot record", path.display()))?)
        }
        None => None,
    };
    let mut record_stalls = 0u64;
    let start_tick = world.tick().0;
    let mut queue = sim_core::PlanQueue::default();
    let mut bad_files = Vec::new();
    if let Some(p) = &a.plans {
        let (plans, errors) = crate::plan_cmd::load_plans(p)?;
        for e in &errors {
            eprintln!("dualplane: skipping invalid plan file {e}");
        }
        bad_files = errors;
        for plan in plans {
            queue.insert_unchecked(plan);
        }
    }
    world.set_graph_interpreter(a.graph_engine == GraphEngine::Interpreted);
    if let Some(g) = &a.graph {
        queue.insert_unchecked(crate::graph_cmd::bind_plan(&world, g, &a.bind)?);
    }
    let mut graph_stats = GraphStats::default();
    let (mut plans_applied, mut plans_rejected) = (0u64, 0u64);
    let mut rejected_by_status = std::collections::BTreeMap::<&'static str, u64>::new();
    let mut clock = MonotonicClock::new();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let progress = (std::io::stderr().is_terminal() && a.ticks >= 1000).then(|| {
        let pb = indicatif::ProgressBar::new(a.ticks);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} ticks {per_sec} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    });
    let mut tick_ns = Vec::with_capacity(a.ticks as usize);
    let mut record_ns_max = 0u64;
    let wall = std::time::Instant::now();
    for _ in 0..a.ticks {
        let due = queue.take(world.tick().next());
        let j = world.step(&due, &mut clock);
        for p in &j.plans {
            if p.status == sim_core::Status::Ok {
                plans_applied += 1;
            } else {
                plans_rejected += 1;
                *rejected_by_status.entry(p.status.name()).or_default() += 1;
            }
        }
        graph_stats.add(j);
        let step_ns = j.total_ns();
        let t = j.tick.0;
        let hash = j.world_hash;
        // The tick's time includes recording it (a keyframe's snapshot is
        // taken on this thread), as in `serve`.
        let r0 = std::time::Instant::now();
        if let Some(r) = &recorder
            && r.record(&world, &due)?.stalled {
                record_stalls += 1;
            }
        let rec_ns = r0.elapsed().as_nanos() as u64;
        record_ns_max = record_ns_max.max(rec_ns);
        tick_ns.push(step_ns + rec_ns);
        if a.hash_every > 0 && t % a.hash_every == 0 {
            writeln!(out, "tick={t} hash={hash:#018x}")?;
        }
        for (at, path) in &a.snapshot_at {
            if *at == t {
                let bytes = world.snapshot()?;
                std::fs::write(path, &bytes).with_context(|| format!("{}: cannot write snapshot", path.display()))?;
            }
        }
        if let Some(pb) = &progress {
            pb.inc(1);
        }
    }
    if let Some(pb) = progress {
        pb.finish_and_clear();
    }
    let record_bytes = match recorder {
        Some(r) => {
            r.close()?;
            a.record.as_ref().and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| m.len())
        }
        None => 0,
    };
    let secs = wall.elapsed().as_secs_f64();
    let (mean, p99) = mean_p99(&mut tick_ns);
    let ticks_per_s = a.ticks as f64 / secs.max(1e-9);
    if a.json {
        let v = serde_json::json!({
            "start_tick": start_tick,
            "ticks": a.ticks,
            "final_tick": world.tick().0,
            "final_hash": format!("{:#018x}", world.world_hash()),
            "entities": world.entity_count(),
            "threads": crate::threads::threads(),
            "ticks_per_s": ticks_per_s,
            "tick_ms_mean": mean / 1e6,
            "tick_ms_p99": p99 / 1e6,
            "record_ms_max": record_ns_max as f64 / 1e6,
            "plans_applied": plans_applied,
            "plans_rejected": plans_rejected,
            "plans_rejected_by_status": rejected_by_status,
            "plans_left_unapplied": queue.len(),
            "invalid_plan_files": bad_files.len(),
            "replay_bytes": record_bytes,
            "replay_stalls": record_stalls,
            "graphs": graph_stats.json(&world),
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "summary: ticks={} final_tick={} entities={} threads={} ticks_per_s={ticks_per_s:.1} tick_ms_mean={:.3} tick_ms_p99={:.3}",
            a.ticks,
            world.tick().0,
            world.entity_count(),
            crate::threads::threads(),
            mean / 1e6,
            p99 / 1e6
        )?;
        if a.graph.is_some() {
            writeln!(out, "graphs: {}", graph_stats.json(&world))?;
        }
        if a.plans.is_some() {
            writeln!(
                out,
                "plans: applied={plans_applied} rejected={plans_rejected} {rejected_by_status:?} unapplied={} invalid_files={}",
                queue.len(),
                bad_files.len()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum GraphEngine {
    Compiled,
    Interpreted,
}

/// What behaviour graphs did over the run.
#[derive(Default)]
struct GraphStats {
    ticks: u64,
    npc_ticks: u64,
    ops_emitted: u64,
    ops_rejected: u64,
    exec_ns: u64,
}

impl GraphStats {
    fn add(&mut self, j: &sim_core::TickJournal) {
        if j.graphs.is_empty() {
            return;
        }
        self.ticks += 1;
        for g in &j.graphs {
            self.npc_ticks += u64::from(g.npcs);
            self.ops_emitted += u64::from(g.ops_emitted);
            self.ops_rejected += u64::from(g.ops_rejected);
            self.exec_ns += g.exec_ns;
        }
    }

    fn json(&self, world: &World) -> serde_json::Value {
        let held: serde_json::Map<String, serde_json::Value> = world.graphs().hashes().map(|h| (format!("{h:#018x}"), world.graphs().members(h).into())).collect();
        serde_json::json!({
            "bound": held,
            "ticks_run": self.ticks,
            "ops_emitted": self.ops_emitted,
            "ops_rejected": self.ops_rejected,
            "exec_ns_per_npc": self.exec_ns as f64 / self.npc_ticks.max(1) as f64,
            "engine": if world.graph_interpreter() { "interpreted" } else { "compiled" },
        })
    }
}
