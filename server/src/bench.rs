//! `dualplane bench tick`: our full tick against raw rapier on the same scene
//! in the same process, and our per-tick hashing against xxh3 over one
//! contiguous buffer of the same size. Ratios cancel the machine's noise.

use crate::alloc_count::allocations;
use crate::clock::{mean_p99, MonotonicClock};
use sim_core::{NoClock, Phase, Scenario, World};
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Full tick vs raw rapier stepping; per-tick hashing vs raw xxh3.
    Tick(TickArgs),
    /// Encode, decode, and validate + apply a large set-velocity microplan.
    Plan(PlanArgs),
}

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// Ops in the plan (and bodies in the world).
    #[arg(long, default_value_t = 10_000)]
    ops: u32,
    /// Repetitions (the median is reported).
    #[arg(long, default_value_t = 15)]
    reps: u32,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct TickArgs {
    /// Dynamic bodies in the generated arena (rounded up to whole layers).
    #[arg(long, default_value_t = 1000)]
    bodies: u32,
    /// Ticks to time (after warm-up).
    #[arg(long, default_value_t = 300)]
    ticks: u32,
    /// Untimed ticks first (allocations settle, caches warm).
    #[arg(long, default_value_t = 20)]
    warmup: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Exit 1 when tick_over_raw_physics exceeds this (a CI smoke bound).
    #[arg(long)]
    max_tick_over_raw: Option<f64>,
}

pub fn run(cmd: &BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Tick(a) => bench_tick(a),
        BenchCommand::Plan(a) => bench_plan(a),
    }
}

fn bench_tick(a: &TickArgs) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::generated(a.bodies, a.seed);
    let mut raw = World::from_scenario(&scenario, None);
    let mut ours = World::from_scenario(&scenario, None);
    let bodies = ours.entity_count();
    for _ in 0..a.warmup {
        raw.physics_mut().raw_step();
        ours.step(&[], &mut NoClock);
    }

    // Interleave raw and full ticks (alternating which goes first) so drift
    // in machine load hits both equally. Both worlds start identical and see
    // the same tick range, so they do the same physics work.
    let mut clock = MonotonicClock::new();
    let mut raw_ns = Vec::with_capacity(a.ticks as usize);
    let mut tick_ns = Vec::with_capacity(a.ticks as usize);
    let mut phase_ns = [0u64; 7];
    let (mut raw_allocs, mut our_allocs) = (0u64, 0u64);
    for i in 0..a.ticks {
        let time_raw = |raw: &mut World, raw_ns: &mut Vec<u64>, raw_allocs: &mut u64| {
            let a0 = allocations();
            let t0 = Instant::now();
            raw.physics_mut().raw_step();
            raw_ns.push(t0.elapsed().as_nanos() as u64);
            *raw_allocs += allocations() - a0;
        };
        let mut time_ours = |ours: &mut World, tick_ns: &mut Vec<u64>, our_allocs: &mut u64| {
            let a0 = allocations();
            let t0 = Instant::now();
            let j = ours.step(&[], &mut clock);
            tick_ns.push(t0.elapsed().as_nanos() as u64);
            *our_allocs += allocations() - a0;
            for p in Phase::ALL {
                phase_ns[p as usize] += j.phase_ns[p as usize];
            }
        };
        if i % 2 == 0 {
            time_raw(&mut raw, &mut raw_ns, &mut raw_allocs);
            time_ours(&mut ours, &mut tick_ns, &mut our_allocs);
        } else {
            time_ours(&mut ours, &mut tick_ns, &mut our_allocs);
            time_raw(&mut raw, &mut raw_ns, &mut raw_allocs);
        }
    }
    let raw_total: u64 = raw_ns.iter().sum();
    let tick_total: u64 = tick_ns.iter().sum();
    let (raw_mean, raw_p99) = mean_p99(&mut raw_ns);
    let (tick_mean, tick_p99) = mean_p99(&mut tick_ns);
    let tick_over_raw = tick_total as f64 / raw_total.max(1) as f64;

    // Hashing: our per-tick hashing of every column vs one xxh3 pass over a
    // contiguous buffer with the same byte count. Best of many repetitions
    // (hashing is short; the minimum is the least noisy estimator).
    let bytes: usize = ours.tables().iter().flat_map(|t| t.columns().map(|(_, c)| c.bytes().len())).sum();
    let buffer: Vec<u8> = (0..bytes).map(|i| (i * 31 % 251) as u8).collect();
    let reps = 200;
    let mut our_hash_best = u64::MAX;
    let mut raw_hash_best = u64::MAX;
    for _ in 0..reps {
        let t0 = Instant::now();
        black_box(ours.rehash());
        our_hash_best = our_hash_best.min(t0.elapsed().as_nanos() as u64);
        let t0 = Instant::now();
        black_box(xxhash_rust::xxh3::xxh3_64(black_box(&buffer)));
        raw_hash_best = raw_hash_best.min(t0.elapsed().as_nanos() as u64);
    }
    let hash_over_raw = raw_hash_best as f64 / our_hash_best.max(1) as f64;
    let n = f64::from(a.ticks.max(1));

    let phases: serde_json::Map<String, serde_json::Value> =
        Phase::ALL.iter().map(|p| (p.name().to_string(), serde_json::json!(phase_ns[*p as usize] as f64 / n / 1e3))).collect();
    let report = serde_json::json!({
        "bodies": bodies,
        "ticks": a.ticks,
        "raw_physics_ms_mean": raw_mean / 1e6,
        "raw_physics_ms_p99": raw_p99 / 1e6,
        "tick_ms_mean": tick_mean / 1e6,
        "tick_ms_p99": tick_p99 / 1e6,
        "tick_over_raw_physics": tick_over_raw,
        "phase_us_mean": phases,
        "hash_bytes": bytes,
        "hash_us": our_hash_best as f64 / 1e3,
        "raw_xxh3_us": raw_hash_best as f64 / 1e3,
        "hash_gb_per_s": bytes as f64 / our_hash_best.max(1) as f64,
        "raw_xxh3_gb_per_s": bytes as f64 / raw_hash_best.max(1) as f64,
        "hash_over_raw_xxh3": hash_over_raw,
        "allocs_per_tick_raw_physics": raw_allocs as f64 / n,
        "allocs_per_tick_full": our_allocs as f64 / n,
        "allocs_per_tick_own_code": (our_allocs as f64 - raw_allocs as f64) / n,
        "final_hash": format!("{:#018x}", ours.world_hash()),
    });
    if a.json {
        println!("{report}");
    } else {
        println!("bench tick: {bodies} bodies, {} ticks", a.ticks);
        println!("  raw rapier step   mean {:.3} ms  p99 {:.3} ms", raw_mean / 1e6, raw_p99 / 1e6);
        println!("  full tick         mean {:.3} ms  p99 {:.3} ms", tick_mean / 1e6, tick_p99 / 1e6);
        for p in Phase::ALL {
            println!("    {:<8} {:>10.1} us", p.name(), phase_ns[p as usize] as f64 / n / 1e3);
        }
        println!("  tick_over_raw_physics {tick_over_raw:.4}");
        println!(
            "  hashing {bytes} B: ours {:.1} us ({:.1} GB/s), raw xxh3 {:.1} us ({:.1} GB/s)",
            our_hash_best as f64 / 1e3,
            bytes as f64 / our_hash_best.max(1) as f64,
            raw_hash_best as f64 / 1e3,
            bytes as f64 / raw_hash_best.max(1) as f64
        );
        println!("  hash_over_raw_xxh3 {hash_over_raw:.4}");
        println!(
            "  allocations per tick: raw {:.2}, full {:.2}, own code {:.2}",
            raw_allocs as f64 / n,
            our_allocs as f64 / n,
            (our_allocs as f64 - raw_allocs as f64) / n
        );
    }
    if let Some(max) = a.max_tick_over_raw {
        if tick_over_raw > max {
            eprintln!("bench tick: tick_over_raw_physics {tick_over_raw:.4} exceeds the bound {max}");
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn median(v: &mut [u64]) -> f64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0) as f64
}

fn bench_plan(a: &PlanArgs) -> anyhow::Result<ExitCode> {
    use sim_core::{Archetype, Handle, MicroPlan, Op, OpKind, PlanBuilder, SourceId, Status, Tick};
    let scenario = Scenario::generated(a.ops, 11);
    let mut world = World::from_scenario(&scenario, None);
    let handles: Vec<Handle> = world.table(Archetype::Prop).handles().iter().take(a.ops as usize).map(|&h| Handle::from_bits(h)).collect();
    let n = handles.len();
    let (mut enc, mut enc_batch, mut dec, mut apply, mut step_plain, mut step_plan) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut validate = vec![];
    let mut clock = MonotonicClock::new();
    let mut bytes_len = 0;
    for rep in 0..a.reps {
        let tick = Tick(world.tick().0 + 1);
        let v = [0.0, 0.5 + rep as f32 * 0.01, 0.0];
        let t0 = Instant::now();
        let mut b = PlanBuilder::new(tick, SourceId::SERVER, rep);
        for &h in &handles {
            b.push(Op::SetVelocity { handle: h, linvel: v, angvel: [0.0; 3] });
        }
        let bytes = b.build();
        enc.push(t0.elapsed().as_nanos() as u64);
        // The batch path the Python bindings use: whole field arrays at once.
        let hs: Vec<u8> = handles.iter().flat_map(|h| h.to_le_bytes()).collect();
        let lv: Vec<u8> = (0..n).flat_map(|_| v.iter().flat_map(|x| x.to_le_bytes())).collect();
        let av = vec![0u8; n * 12];
        let t0 = Instant::now();
        let mut bb = PlanBuilder::new(tick, SourceId::SERVER, rep);
        bb.push_batch(OpKind::SetVelocity, n as u32, &[&hs, &lv, &av]).map_err(anyhow::Error::msg)?;
        let batch_bytes = bb.build();
        enc_batch.push(t0.elapsed().as_nanos() as u64);
        anyhow::ensure!(batch_bytes == bytes, "batch and per-op encodings differ");
        bytes_len = bytes.len();
        let t0 = Instant::now();
        let plan = MicroPlan::decode(bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        dec.push(t0.elapsed().as_nanos() as u64);
        let t0 = Instant::now();
        let j = world.step(std::slice::from_ref(&plan), &mut clock);
        step_plan.push(t0.elapsed().as_nanos() as u64);
        anyhow::ensure!(j.plans[0].status == Status::Ok, "plan rejected: {:?}", j.plans[0].status);
        apply.push(j.phase_ns[Phase::Apply as usize]);
        // The same ops with the last one invalid: validation runs over all
        // of them, nothing is applied (atomicity), so this times validation.
        let mut bad = PlanBuilder::new(Tick(world.tick().0 + 1), SourceId::SERVER, rep);
        for (i, &h) in handles.iter().enumerate() {
            let lin = if i + 1 == n { [f32::NAN, 0.0, 0.0] } else { v };
            bad.push(Op::SetVelocity { handle: h, linvel: lin, angvel: [0.0; 3] });
        }
        let bad = MicroPlan::decode(bad.build()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let t0 = Instant::now();
        let j = world.step(std::slice::from_ref(&bad), &mut clock);
        step_plain.push(t0.elapsed().as_nanos() as u64);
        anyhow::ensure!(j.plans[0].status == Status::BadValue, "bad plan not rejected");
        validate.push(j.phase_ns[Phase::Apply as usize]);
    }
    let report = serde_json::json!({
        "ops": n,
        "plan_bytes": bytes_len,
        "encode_us": median(&mut enc) / 1e3,
        "encode_batch_us": median(&mut enc_batch) / 1e3,
        "decode_us": median(&mut dec) / 1e3,
        "validate_apply_us": median(&mut apply) / 1e3,
        "validate_only_us": median(&mut validate) / 1e3,
        "tick_with_plan_ms": median(&mut step_plan) / 1e6,
        "tick_with_rejected_plan_ms": median(&mut step_plain) / 1e6,
    });
    if a.json {
        println!("{report}");
    } else {
        println!("bench plan: {n} set_velocity ops, {bytes_len} bytes");
        for k in ["encode_us", "encode_batch_us", "decode_us", "validate_apply_us", "validate_only_us", "tick_with_plan_ms", "tick_with_rejected_plan_ms"] {
            println!("  {k:<22} {:.2}", report[k].as_f64().unwrap_or(f64::NAN));
        }
    }
    Ok(ExitCode::SUCCESS)
}
