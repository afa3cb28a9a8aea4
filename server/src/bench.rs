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
    /// The snapshot delta codec on Fiedler's 901-cube scenario, one client.
    Delta(DeltaArgs),
    /// QUIC + TLS handshake time: a CA-signed chain verified by name vs the
    /// pinned dev certificate, over loopback.
    Handshake(crate::bench_handshake::HandshakeArgs),
    /// Replication in one process: N virtual clients (sans-IO sessions that
    /// decode and hash-check every snapshot), no sockets, no bot CPU.
    Serve(crate::bench_serve::ServeBenchArgs),
    /// Tick time with a replay recording and without (alternating runs,
    /// medians of their p99s), and the replay's sizes.
    Record(crate::bench_record::RecordBenchArgs),
}

#[derive(clap::Args, Debug)]
pub struct DeltaArgs {
    /// Scenario (default: tests/scenarios/fiedler901.toml).
    #[arg(long, default_value = "tests/scenarios/fiedler901.toml")]
    scenario: std::path::PathBuf,
    #[arg(long, default_value_t = 600)]
    ticks: u32,
    /// Snapshot datagram budget, bytes.
    #[arg(long, default_value_t = 1100)]
    budget: usize,
    /// Ticks between a snapshot and its ack (0 = acked before the next one).
    #[arg(long, default_value_t = 6)]
    ack_delay: u32,
    #[arg(long)]
    json: bool,
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
        BenchCommand::Delta(a) => bench_delta(a),
        BenchCommand::Handshake(a) => crate::bench_handshake::run(a),
        BenchCommand::Serve(a) => crate::bench_serve::run(a),
        BenchCommand::Record(a) => crate::bench_record::run(a),
    }
}

fn bench_tick(a: &TickArgs) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::generated(a.bodies, a.seed);
    let mut raw = World::from_scenario(&scenario, None);
    let mut raw1 = World::from_scenario(&scenario, None);
    let mut ours = World::from_scenario(&scenario, None);
    let bodies = ours.entity_count();
    // Ours and raw on `--threads` threads; raw1 on one (the single-thread
    // floor the parallel tick is judged against).
    let threads = crate::threads::threads();
    let pool = crate::threads::pool(threads, "bench")?;
    let pool1 = crate::threads::pool(1, "bench1")?;
    for _ in 0..a.warmup {
        pool.install(|| raw.physics_mut().raw_step());
        pool1.install(|| raw1.physics_mut().raw_step());
        pool.install(|| ours.step(&[], &mut NoClock));
    }

    // Interleave raw and full ticks (rotating which goes first) so drift in
    // machine load hits all equally. The worlds start identical and see the
    // same tick range, so they do the same physics work.
    let mut clock = MonotonicClock::new();
    let mut raw_ns = Vec::with_capacity(a.ticks as usize);
    let mut raw1_ns = Vec::with_capacity(a.ticks as usize);
    let mut tick_ns = Vec::with_capacity(a.ticks as usize);
    let mut phase_ns = [0u64; 7];
    let (mut raw_allocs, mut our_allocs) = (0u64, 0u64);
    let mut raw1_allocs = 0u64;
    for i in 0..a.ticks {
        let time_raw = |pool: &rayon::ThreadPool, raw: &mut World, raw_ns: &mut Vec<u64>, raw_allocs: &mut u64| {
            let a0 = allocations();
            let t0 = Instant::now();
            pool.install(|| raw.physics_mut().raw_step());
            raw_ns.push(t0.elapsed().as_nanos() as u64);
            *raw_allocs += allocations() - a0;
        };
        let mut time_ours = |ours: &mut World, tick_ns: &mut Vec<u64>, our_allocs: &mut u64| {
            let a0 = allocations();
            let t0 = Instant::now();
            let j = pool.install(|| ours.step(&[], &mut clock).phase_ns);
            tick_ns.push(t0.elapsed().as_nanos() as u64);
            *our_allocs += allocations() - a0;
            for p in Phase::ALL {
                phase_ns[p as usize] += j[p as usize];
            }
        };
        match i % 3 {
            0 => {
                time_raw(&pool, &mut raw, &mut raw_ns, &mut raw_allocs);
                time_ours(&mut ours, &mut tick_ns, &mut our_allocs);
                time_raw(&pool1, &mut raw1, &mut raw1_ns, &mut raw1_allocs);
            }
            1 => {
                time_ours(&mut ours, &mut tick_ns, &mut our_allocs);
                time_raw(&pool1, &mut raw1, &mut raw1_ns, &mut raw1_allocs);
                time_raw(&pool, &mut raw, &mut raw_ns, &mut raw_allocs);
            }
            _ => {
                time_raw(&pool1, &mut raw1, &mut raw1_ns, &mut raw1_allocs);
                time_raw(&pool, &mut raw, &mut raw_ns, &mut raw_allocs);
                time_ours(&mut ours, &mut tick_ns, &mut our_allocs);
            }
        }
    }
    let raw_total: u64 = raw_ns.iter().sum();
    let raw1_total: u64 = raw1_ns.iter().sum();
    let tick_total: u64 = tick_ns.iter().sum();
    let (raw_mean, raw_p99) = mean_p99(&mut raw_ns);
    let (raw1_mean, _) = mean_p99(&mut raw1_ns);
    let (tick_mean, tick_p99) = mean_p99(&mut tick_ns);
    let tick_over_raw = tick_total as f64 / raw_total.max(1) as f64;
    let tick_over_raw1 = tick_total as f64 / raw1_total.max(1) as f64;

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
        "threads": threads,
        "raw_physics_ms_mean": raw_mean / 1e6,
        "raw_physics_single_thread_ms_mean": raw1_mean / 1e6,
        "raw_physics_ms_p99": raw_p99 / 1e6,
        "tick_ms_mean": tick_mean / 1e6,
        "tick_ms_p99": tick_p99 / 1e6,
        "tick_over_raw_physics": tick_over_raw,
        "tick_over_raw_single_thread": tick_over_raw1,
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
        println!("bench tick: {bodies} bodies, {} ticks, {threads} threads", a.ticks);
        println!("  raw rapier step   mean {:.3} ms  p99 {:.3} ms ({threads} threads)", raw_mean / 1e6, raw_p99 / 1e6);
        println!("  raw rapier step   mean {:.3} ms (1 thread)", raw1_mean / 1e6);
        println!("  full tick         mean {:.3} ms  p99 {:.3} ms", tick_mean / 1e6, tick_p99 / 1e6);
        for p in Phase::ALL {
            println!("    {:<8} {:>10.1} us", p.name(), phase_ns[p as usize] as f64 / n / 1e3);
        }
        println!("  tick_over_raw_physics {tick_over_raw:.4}");
        println!("  tick_over_raw_single_thread {tick_over_raw1:.4}");
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
    if let Some(max) = a.max_tick_over_raw
        && tick_over_raw > max {
            eprintln!("bench tick: tick_over_raw_physics {tick_over_raw:.4} exceeds the bound {max}");
            return Ok(ExitCode::from(1));
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
    let mut raw_apply = vec![];
    let mut raw_bodies = 0;
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
        // The floor: rapier's own set_linvel/set_angvel over the same bodies.
        let t0 = Instant::now();
        raw_bodies = world.physics_mut().raw_set_velocity_all(v, [0.0; 3]);
        raw_apply.push(t0.elapsed().as_nanos() as u64);
    }
    let apply_us = median(&mut apply.clone()) / 1e3;
    let raw_us = median(&mut raw_apply) / 1e3;
    let report = serde_json::json!({
        "ops": n,
        "plan_bytes": bytes_len,
        "encode_us": median(&mut enc) / 1e3,
        "encode_batch_us": median(&mut enc_batch) / 1e3,
        "decode_us": median(&mut dec) / 1e3,
        "validate_apply_us": apply_us,
        "raw_rapier_set_velocity_us": raw_us,
        "raw_rapier_bodies": raw_bodies,
        "apply_over_raw_rapier": apply_us / raw_us.max(1e-9),
        "validate_only_us": median(&mut validate) / 1e3,
        "tick_with_plan_ms": median(&mut step_plan) / 1e6,
        "tick_with_rejected_plan_ms": median(&mut step_plain) / 1e6,
    });
    if a.json {
        println!("{report}");
    } else {
        println!("bench plan: {n} set_velocity ops, {bytes_len} bytes");
        for k in ["encode_us", "encode_batch_us", "decode_us", "validate_apply_us", "raw_rapier_set_velocity_us", "apply_over_raw_rapier", "validate_only_us", "tick_with_plan_ms", "tick_with_rejected_plan_ms"] {
            println!("  {k:<22} {:.2}", report[k].as_f64().unwrap_or(f64::NAN));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Per-packet bytes below our datagram: IPv4 (20) + UDP (8) + QUIC short
/// header (1 + 8-byte connection id + 2-byte packet number) + AEAD tag (16)
/// + DATAGRAM frame type and length (3).
const QUIC_UDP_IP_OVERHEAD: usize = 58;

fn bench_delta(a: &DeltaArgs) -> anyhow::Result<ExitCode> {
    use net::delta::{decode, encode, Priorities, Scratch};
    use net::quant::{quantize_world, view_hash, QEntity};
    let scenario = Scenario::load(&a.scenario)?;
    let mut world = World::from_scenario(&scenario, None);
    let mut prio = Priorities::default();
    let mut scratch = Scratch::default();
    // What the client acked: views by sequence; acks arrive `ack_delay` ticks late.
    let mut sent: std::collections::VecDeque<(u32, Vec<QEntity>)> = Default::default();
    let mut acked: Option<(u32, Vec<QEntity>)> = None;
    let (mut bytes, mut changed_sent, mut changed_bits, mut unchanged, mut deferred, mut snaps) = (0usize, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut new_bits_total = 0u64;
    let mut max_bytes = 0usize;
    let mut encode_ns = 0u64;
    for seq in 1..=a.ticks {
        world.step(&[], &mut NoClock);
        let q = quantize_world(&world);
        if let Some((_, base)) = &acked {
            unchanged += q.iter().filter(|e| base.binary_search_by_key(&e.handle, |b| b.handle).is_ok_and(|k| base[k] == **e)).count() as u64;
        }
        let base_hash = acked.as_ref().map_or(0, |(_, v)| view_hash(v));
        let t0 = Instant::now();
        let enc = encode(seq, world.tick().0, acked.as_ref().map(|(s, v)| (*s, v.as_slice(), base_hash)), (&q, &net::quant::entity_hashes(&q)), &mut prio, a.budget, &[], Vec::new(), &mut scratch);
        encode_ns += t0.elapsed().as_nanos() as u64;
        let (h, view) = decode(&enc.bytes, acked.as_ref().map_or(&[][..], |(_, v)| v.as_slice())).map_err(|e| anyhow::anyhow!("decode: {e}"))?;
        anyhow::ensure!(view_hash(&view) == h.hash && view == enc.view, "client reconstruction differs at seq {seq}");
        bytes += enc.bytes.len();
        max_bytes = max_bytes.max(enc.bytes.len());
        changed_sent += u64::from(enc.updates - enc.new_entities);
        changed_bits += enc.changed_bits;
        deferred += u64::from(enc.deferred);
        snaps += 1;
        if acked.is_none() {
            new_bits_total += (enc.bytes.len() * 8) as u64;
        }
        sent.push_back((seq, enc.view));
        while sent.front().is_some_and(|(s, _)| s + a.ack_delay <= seq) {
            acked = sent.pop_front();
        }
    }
    let n = snaps.max(1) as f64;
    let mean_bytes = bytes as f64 / n;
    let hz = f64::from(world.config().tick_rate);
    let report = serde_json::json!({
        "scenario": scenario.name,
        "bodies": world.entity_count(),
        "snapshots": snaps,
        "budget": a.budget,
        "ack_delay_ticks": a.ack_delay,
        "bytes_per_snapshot_mean": mean_bytes,
        "bytes_per_snapshot_max": max_bytes,
        "kbit_per_s_payload": mean_bytes * 8.0 * hz / 1000.0,
        "kbit_per_s_with_quic_udp_ip": (mean_bytes + QUIC_UDP_IP_OVERHEAD as f64) * 8.0 * hz / 1000.0,
        "bytes_per_changed_body": changed_bits as f64 / 8.0 / changed_sent.max(1) as f64,
        "changed_bodies_sent_per_snapshot": changed_sent as f64 / n,
        "unchanged_bodies_per_snapshot": unchanged as f64 / n,
        // Unchanged bodies are never encoded; charging them every bit that is
        // not a changed body's (header, removals, late new entities) bounds
        // their cost from above.
        "bits_per_unchanged_body_upper_bound": ((bytes * 8) as f64 - changed_bits as f64 - new_bits_total as f64) / unchanged.max(1) as f64,
        "overhead_bits_per_snapshot": ((bytes * 8) as f64 - changed_bits as f64 - new_bits_total as f64) / n,
        "deferred_changes_per_snapshot": deferred as f64 / n,
        "encode_us_mean": encode_ns as f64 / n / 1e3,
    });
    if a.json {
        println!("{report}");
    } else {
        println!("bench delta: {} ({} bodies), {snaps} snapshots, budget {} B, acks {} ticks late", scenario.name, world.entity_count(), a.budget, a.ack_delay);
        for (k, v) in report.as_object().into_iter().flatten() {
            if v.is_number() {
                println!("  {k:<36} {:.3}", v.as_f64().unwrap_or(f64::NAN));
            }
        }
        println!("  (unchanged bodies are never encoded; the upper bound charges them all non-body bits)");
    }
    Ok(ExitCode::SUCCESS)
}
