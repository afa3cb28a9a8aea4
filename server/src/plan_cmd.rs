//! `dualplane plan ...`: inspect microplan files and script plan sources.

use anyhow::Context;
use sim_core::{Archetype, Handle, MicroPlan, NoClock, Op, PlanBuilder, SourceId, Tick};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum PlanCommand {
    /// Print a decoded plan, or exactly why it does not decode.
    Inspect {
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Ops to list per section (0 = all).
        #[arg(long, default_value_t = 16)]
        limit: usize,
    },
    /// Write a deterministic scripted plan source: impulses on props and
    /// move targets for NPCs, one plan every K ticks, as `<tick>.plan` files.
    Script(ScriptArgs),
}

#[derive(clap::Args, Debug)]
pub struct ScriptArgs {
    /// Scenario file; the embedded default when omitted.
    #[arg(long)]
    scenario: Option<PathBuf>,
    #[arg(long)]
    seed: Option<u64>,
    /// Ticks to script.
    #[arg(long, default_value_t = 600)]
    ticks: u64,
    /// One plan every K ticks.
    #[arg(long, default_value_t = 10)]
    every: u64,
    /// Ops of each kind per plan.
    #[arg(long, default_value_t = 8)]
    ops: usize,
    /// Source id of the plans (0 = server authority).
    #[arg(long, default_value_t = 0)]
    source: u32,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(cmd: &PlanCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PlanCommand::Inspect { file, json, limit } => inspect(file, *json, *limit),
        PlanCommand::Script(a) => script(a),
    }
}

fn op_json(op: &Op) -> serde_json::Value {
    use serde_json::json;
    match *op {
        Op::Spawn { archetype, shape, position, rotation, linvel, angvel } => json!({"op": "spawn", "archetype": archetype, "shape": shape, "position": position, "rotation": rotation, "linvel": linvel, "angvel": angvel}),
        Op::Despawn { handle } => json!({"op": "despawn", "handle": handle.to_bits()}),
        Op::SetVelocity { handle, linvel, angvel } => json!({"op": "set_velocity", "handle": handle.to_bits(), "linvel": linvel, "angvel": angvel}),
        Op::ApplyImpulse { handle, impulse } => json!({"op": "apply_impulse", "handle": handle.to_bits(), "impulse": impulse}),
        Op::MoveTo { handle, target, max_speed } => json!({"op": "move_to", "handle": handle.to_bits(), "target": target, "max_speed": max_speed}),
        Op::Raycast { origin, direction, max_distance } => json!({"op": "raycast", "origin": origin, "direction": direction, "max_distance": max_distance}),
        Op::Overlap { min, max } => json!({"op": "overlap", "min": min, "max": max}),
        Op::Grant { handle, owner } => json!({"op": "grant", "handle": handle.to_bits(), "owner": owner}),
        Op::Command { handle, sequence, buttons, movement, yaw, pitch, rewind } => json!({"op": "command", "handle": handle.to_bits(), "sequence": sequence, "buttons": buttons, "move": movement, "yaw": yaw, "pitch": pitch, "rewind": rewind}),
        Op::GraphWord { word } => json!({"op": "graph_upload", "word": word}),
        Op::GraphBind { handle, graph } => json!({"op": "graph_bind", "handle": handle.to_bits(), "graph": format!("{graph:#018x}")}),
    }
}

fn inspect(file: &Path, json: bool, limit: usize) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let len = bytes.len();
    match MicroPlan::decode(bytes) {
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({"file": file.display().to_string(), "valid": false, "status": e.status.name(), "code": e.status as u16, "detail": e.detail}));
            } else {
                println!("{}: invalid microplan ({len} bytes)", file.display());
                println!("  status {} ({}): {}", e.status.name(), e.status as u16, e.status.message());
                println!("  detail: {}", e.detail);
            }
            Ok(ExitCode::from(1))
        }
        Ok(p) => {
            let h = p.header();
            let ops = p.ops();
            if json {
                let sections: Vec<_> = p.sections().map(|s| serde_json::json!({"kind": s.kind.name(), "count": s.count, "first_op": s.first_op})).collect();
                let shown: Vec<_> = ops.iter().take(if limit == 0 { usize::MAX } else { limit }).map(op_json).collect();
                println!("{}", serde_json::json!({
                    "file": file.display().to_string(), "valid": true, "bytes": len,
                    "target_tick": h.target_tick.0, "source": h.source.0, "sequence": h.sequence,
                    "correlation": h.correlation, "checksum": format!("{:#018x}", p.checksum()),
                    "op_count": p.op_count(), "sections": sections, "ops": shown,
                }));
            } else {
                println!("{}: microplan v1, {len} bytes, checksum {:#018x}", file.display(), p.checksum());
                println!("  target_tick {}  source {}  sequence {}  correlation {}", h.target_tick, h.source, h.sequence, h.correlation);
                println!("  {} ops in {} sections", p.op_count(), p.sections().count());
                for s in p.sections() {
                    println!("  section {} x{} (ops {}..{})", s.kind.name(), s.count, s.first_op, s.first_op as usize + s.count);
                    let from = s.first_op as usize;
                    let n = if limit == 0 { s.count } else { s.count.min(limit) };
                    for (k, op) in ops[from..from + n].iter().enumerate() {
                        println!("    [{}] {}", from + k, op_json(op));
                    }
                    if n < s.count {
                        println!("    ... {} more", s.count - n);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn script(a: &ScriptArgs) -> anyhow::Result<ExitCode> {
    let mut world = crate::simulate::load_world(a.scenario.as_ref(), a.seed)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}: cannot create", a.out.display()))?;
    // The script's own RNG: SplitMix64 from the seed, independent of the world's.
    let mut rng = sim_core::rng::WorldRng::from_seed(a.seed.unwrap_or(0) ^ 0x5C41_7000);
    let mut seq = 0u32;
    let mut written = 0u64;
    for _ in 0..a.ticks {
        let next = world.tick().0 + 1;
        let mut plans = Vec::new();
        if a.every > 0 && next % a.every == 0 {
            seq += 1;
            let mut b = PlanBuilder::new(Tick(next), SourceId(a.source), seq).correlation(next);
            let props = world.table(Archetype::Prop).handles().to_vec();
            let npcs = world.table(Archetype::Npc).handles().to_vec();
            let pick = |rng: &mut sim_core::rng::WorldRng, v: &[u64]| Handle::from_bits(v[(rng.next_u64() % v.len() as u64) as usize]);
            for _ in 0..a.ops {
                if !props.is_empty() {
                    let h = pick(&mut rng, &props);
                    b.push(Op::ApplyImpulse { handle: h, impulse: [rng.range_f32(-2.0, 2.0), rng.range_f32(0.0, 4.0), rng.range_f32(-2.0, 2.0)] });
                }
                if !npcs.is_empty() {
                    let h = pick(&mut rng, &npcs);
                    b.push(Op::MoveTo { handle: h, target: [rng.range_f32(-10.0, 10.0), 1.0, rng.range_f32(-10.0, 10.0)], max_speed: 3.0 });
                }
            }
            b.push(Op::Raycast { origin: [0.0, 30.0, 0.0], direction: [0.0, -1.0, 0.0], max_distance: 60.0 });
            let bytes = b.build();
            std::fs::write(a.out.join(format!("{next:08}.plan")), &bytes)?;
            written += 1;
            plans.push(MicroPlan::decode(bytes).map_err(|e| anyhow::anyhow!("built plan does not decode: {e}"))?);
        }
        // Step so later plans name live handles (despawns happen).
        world.step(&plans, &mut NoClock);
    }
    println!("wrote {written} plans to {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}

/// Loads plan files (a file, or every `*.plan` in a directory, sorted by
/// name). Bad files are reported and counted, and lose nothing else.
pub fn load_plans(path: &Path) -> anyhow::Result<(Vec<MicroPlan>, Vec<String>)> {
    let mut files = Vec::new();
    if path.is_dir() {
        for e in std::fs::read_dir(path).with_context(|| format!("{}: cannot list", path.display()))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "plan") {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).with_context(|| format!("{}: cannot read", f.display()))?;
        match MicroPlan::decode(bytes) {
            Ok(p) => plans.push(p),
            Err(e) => errors.push(format!("{}: {e}", f.display())),
        }
    }
    Ok((plans, errors))
}
