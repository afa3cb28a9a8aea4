//! `dualplane bench serve`: the server's replication in one process, with
//! no sockets and no bot CPU in the way. The world, the hub and its
//! sessions are the server's own; N virtual clients are sans-IO
//! [`ClientSession`]s that decode every snapshot, check every hash and ack
//! with a configurable delay and loss. Snapshots are encoded on the
//! replication pool as `serve` does it, every client every tick (the
//! opt-in send-rate adaptation, which needs a transport, stays off, as it
//! is by default in `serve`).

use net::hub::{join_plan, joined_handles, lock, Hub, SharedSession};
use net::quant::quantize_world;
use net::session::{ClientSession, CoreConfig};
use net::token::{Claims, KeyRing, Role, TokenGate};
use rayon::prelude::*;
use sim_core::{MicroPlan, NoClock, Scenario, Tick, World};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct ServeBenchArgs {
    /// Virtual clients: one count, or a comma-separated curve.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 32, 128, 512])]
    clients: Vec<usize>,
    /// Ticks to run for each client count (after the joins).
    #[arg(long, default_value_t = 300)]
    ticks: u64,
    /// Ticks the world runs before the clients join (600: the default
    /// arena's pile has settled; 0 measures the pile falling, when nearly
    /// every body changes every tick).
    #[arg(long, default_value_t = 600)]
    warmup: u64,
    /// Scenario (default: the embedded arena, ~1,000 bodies).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Ticks from a snapshot to its ack reaching the server.
    #[arg(long, default_value_t = 6)]
    ack_delay: u64,
    /// Share of acks lost on the way (seeded, per client).
    #[arg(long, default_value_t = 0.0)]
    ack_loss: f64,
    /// Replicate only entities within this many metres of each avatar
    /// (default: the scenario's [interest], else everything; 0: everything).
    #[arg(long)]
    interest_radius: Option<f32>,
    /// Entities leave a client's view only beyond this radius (default:
    /// as `serve`: the scenario's, or 1.25 x the interest radius).
    #[arg(long)]
    interest_leave_radius: Option<f32>,
    /// Client role: player (an avatar each, player blocks) or observer.
    #[arg(long, default_value = "player", value_parser = ["player", "observer"])]
    role: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

/// One client count's measurements.
#[derive(Debug, serde::Serialize)]
struct Row {
    clients: usize,
    ticks: u64,
    warmup_ticks: u64,
    threads: usize,
    /// Bodies in the world, and how many changed (quantized) per tick.
    entities: usize,
    changed_per_tick: f64,
    /// Entities that appeared in (were not in the last tick's world) and
    /// left the world, per tick: each makes every client's next encodes
    /// insert or remove until an ack covers it.
    new_per_tick: f64,
    removed_per_tick: f64,
    /// Encode CPU per client per tick: the thread CPU time of each run of
    /// `TIMED_RUN` encodes, summed over the pool's workers (wall time where
    /// there is no thread CPU clock: off Linux).
    replication_us_per_client_tick: f64,
    /// The same in wall time per encode: above the CPU time when the
    /// scheduler time-slices two workers on one core.
    replication_wall_us_per_client_tick: f64,
    /// Wall time of one tick's whole replication round (all clients).
    replication_ms_per_tick_wall: f64,
    /// The once-per-tick shared work (quantizing the world).
    shared_us_per_tick: f64,
    tick_ms_p50: f64,
    tick_ms_p99: f64,
    bytes_per_client_tick: f64,
    hash_failures: u64,
    snapshots_applied: u64,
    resyncs: u64,
    /// On the first 8 clients: entity values per client per tick that went
    /// back in time in the client's view (see `bench_reverts`), their share
    /// of the values that changed, and how many ticks back on average.
    reverted_per_client_tick: f64,
    reverted_share: f64,
    revert_ticks_mean: f64,
}

/// Encodes timed together (one thread CPU clock read each side).
const TIMED_RUN: usize = 4;

/// A tiny seeded generator for ack loss (splitmix64).
fn chance(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as f64 / u64::MAX as f64
}

fn ms(tick: u64, hz: u32) -> u64 {
    tick * 1000 / u64::from(hz.max(1))
}

fn measure(a: &ServeBenchArgs, n: usize, pool: &rayon::ThreadPool) -> anyhow::Result<Row> {
    let scenario = match &a.scenario {
        Some(p) => Scenario::load(p)?,
        None => Scenario::default_arena(),
    };
    let mut world = World::from_scenario(&scenario, None);
    for _ in 0..a.warmup {
        world.step(&[], &mut NoClock);
    }
    let hz = world.config().tick_rate;
    // As `serve` chooses it: the flags, else the scenario's [interest]; 0: off.
    let interest = crate::serve::interest_radii(&[(a.interest_radius, a.interest_leave_radius), crate::serve::scenario_interest(scenario.interest.as_ref())])?;
    let config = CoreConfig { interest, max_clients: n.max(1), ..CoreConfig::default() };
    let mut hub = Hub::new(config.clone(), TokenGate::new(KeyRing::single(0, vec![0; 32]), net::token::DEV_SERVER_ID, ""));
    let role = if a.role == "observer" { Role::Observer } else { Role::Player };
    // Joins: every client's plan in one tick, as the tick thread does it.
    let claims: Vec<Claims> = (0..n as u32)
        .map(|id| Claims { key_id: 0, client_id: id + 1, role, expires_at: u64::MAX, nonce: u64::from(id), server_id: net::token::DEV_SERVER_ID.into(), match_id: String::new() })
        .collect();
    let next = Tick(world.tick().0 + 1);
    let plans: Vec<Option<MicroPlan>> = claims.iter().map(|c| join_plan(&world, c, next, &[])).collect();
    let to_apply: Vec<MicroPlan> = plans.iter().flatten().cloned().collect();
    let j = world.step(&to_apply, &mut NoClock).clone();
    for (c, p) in claims.iter().zip(&plans) {
        let controlled = p
            .as_ref()
            .and_then(|p| j.plans.iter().find(|pj| pj.source.0 == p.header().source.0).map(|pj| joined_handles(p, pj)))
            .unwrap_or_default();
        hub.join(c, controlled, ms(world.tick().0, hz));
    }
    let sessions: Vec<SharedSession> = hub.sessions.values().cloned().collect();
    let mut clients: Vec<ClientSession> = (0..n).map(|_| ClientSession::new()).collect();
    // Acks in flight: (tick due, client index, bytes).
    let mut acks: VecDeque<(u64, usize, Vec<u8>)> = VecDeque::new();
    let mut rng: Vec<u64> = (0..n as u64).map(|k| a.seed ^ (k << 20)).collect();
    let (mut tick_ns, mut shared_ns, mut round_ns) = (Vec::new(), 0u64, 0u64);
    let (encode_ns, encode_wall_ns) = (AtomicU64::new(0), AtomicU64::new(0));
    let bytes_sent = AtomicU64::new(0);
    let (mut changed, mut new, mut removed) = (0u64, 0u64, 0u64);
    let mut prev_view: Vec<net::quant::QEntity> = Vec::new();
    let mut reverts = crate::bench_reverts::Reverts::new(n);
    for _ in 0..a.ticks {
        let now = ms(world.tick().0, hz);
        while acks.front().is_some_and(|(due, _, _)| *due <= world.tick().0) {
            if let Some((_, k, bytes)) = acks.pop_front() {
                let _ = lock(&sessions[k]).on_datagram(now, world.tick().0, &bytes);
            }
        }
        let t0 = Instant::now();
        world.step(&[], &mut NoClock);
        tick_ns.push(t0.elapsed().as_nanos() as u64);
        let t0 = Instant::now();
        let view = quantize_world(&world);
        let avatars = net::hub::avatar_states(&world);
        let grid = config.interest.map(|radii| net::interest::InterestGrid::build(&view, radii));
        let hashes = net::quant::entity_hashes(&view);
        shared_ns += t0.elapsed().as_nanos() as u64;
        changed += view.iter().filter(|e| prev_view.binary_search_by_key(&e.handle, |p| p.handle).ok().is_none_or(|k| prev_view[k] != **e)).count() as u64;
        let absent = |of: &[net::quant::QEntity], from: &[net::quant::QEntity]| of.iter().filter(|e| from.binary_search_by_key(&e.handle, |p| p.handle).is_err()).count() as u64;
        if !prev_view.is_empty() {
            new += absent(&view, &prev_view);
            removed += absent(&prev_view, &view);
        }
        let (tick, now) = (world.tick().0, ms(world.tick().0, hz));
        let t0 = Instant::now();
        // Timed per run of `TIMED_RUN` encodes: a thread CPU clock read is a
        // system call (about 0.5 us here, Python's thread_time_ns), and two
        // per encode would add 1 us to a 25 us figure.
        let out: Vec<Vec<u8>> = pool.install(|| {
            sessions
                .par_chunks(TIMED_RUN)
                .flat_map_iter(|run| {
                    let c0 = crate::threads::thread_cpu_ns();
                    let e0 = Instant::now();
                    let out: Vec<Vec<u8>> = run.iter().map(|s| lock(s).snapshot(now, tick, (&view, &hashes), &avatars, grid.as_ref(), &config)).collect();
                    encode_wall_ns.fetch_add(e0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    encode_ns.fetch_add(crate::threads::thread_cpu_ns().saturating_sub(c0), Ordering::Relaxed);
                    bytes_sent.fetch_add(out.iter().map(|b| b.len() as u64).sum(), Ordering::Relaxed);
                    out
                })
                .collect()
        });
        round_ns += t0.elapsed().as_nanos() as u64;
        reverts.frame(tick, &view);
        prev_view = view;
        // The clients (not timed: their CPU is not the server's).
        for (k, bytes) in out.iter().enumerate() {
            clients[k].on_datagram(bytes);
            if let Some((_, v)) = clients[k].view() {
                reverts.observe(k, v);
            }
            if let Some(ack) = clients[k].poll_ack()
                && chance(&mut rng[k]) >= a.ack_loss {
                    acks.push_back((tick + a.ack_delay, k, ack));
                }
        }
    }
    tick_ns.sort_unstable();
    let pct = |q: f64| tick_ns.get(((tick_ns.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0) as f64 / 1e6;
    let client_ticks = (n as u64 * a.ticks).max(1) as f64;
    let (cpu_ns, wall_ns) = (encode_ns.into_inner(), encode_wall_ns.into_inner());
    Ok(Row {
        clients: n,
        ticks: a.ticks,
        warmup_ticks: a.warmup,
        entities: world.entity_count(),
        changed_per_tick: changed as f64 / a.ticks.max(1) as f64,
        new_per_tick: new as f64 / a.ticks.max(1) as f64,
        removed_per_tick: removed as f64 / a.ticks.max(1) as f64,
        threads: pool.current_num_threads(),
        replication_us_per_client_tick: if cpu_ns > 0 { cpu_ns } else { wall_ns } as f64 / 1e3 / client_ticks,
        replication_wall_us_per_client_tick: wall_ns as f64 / 1e3 / client_ticks,
        replication_ms_per_tick_wall: round_ns as f64 / 1e6 / a.ticks.max(1) as f64,
        shared_us_per_tick: shared_ns as f64 / 1e3 / a.ticks.max(1) as f64,
        tick_ms_p50: pct(0.5),
        tick_ms_p99: pct(0.99),
        bytes_per_client_tick: bytes_sent.into_inner() as f64 / client_ticks,
        hash_failures: clients.iter().map(|c| u64::from(c.stats.hash_failures)).sum(),
        snapshots_applied: clients.iter().map(|c| c.stats.snapshots_applied).sum(),
        resyncs: clients.iter().map(|c| c.stats.resyncs).sum(),
        reverted_per_client_tick: reverts.reverted as f64 / reverts.client_ticks.max(1) as f64,
        reverted_share: reverts.reverted as f64 / reverts.changed.max(1) as f64,
        revert_ticks_mean: reverts.reverted_ticks as f64 / reverts.reverted.max(1) as f64,
    })
}

pub fn run(a: &ServeBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!a.clients.is_empty(), "--clients: expected at least one count");
    anyhow::ensure!((0.0..=1.0).contains(&a.ack_loss), "--ack-loss: expected a share from 0 to 1, found {}", a.ack_loss);
    let pool = crate::threads::pool(crate::threads::threads(), "repl")?;
    let mut rows = Vec::new();
    for &n in &a.clients {
        let row = measure(a, n, &pool)?;
        if !a.json {
            println!(
                "bench serve: {:>4} clients x {} ticks ({} bodies, {:.0} changed per tick) on {} threads: replication {:.2} us CPU/client/tick ({:.2} us wall; {:.3} ms/tick wall), shared {:.1} us/tick, tick p50 {:.2} ms p99 {:.2} ms, {:.0} B/client/tick, {} hash failures; {:.1} entity values/client/tick went back in time ({:.1}% of those that changed, {:.1} ticks back on average)",
                row.clients, row.ticks, row.entities, row.changed_per_tick, row.threads, row.replication_us_per_client_tick, row.replication_wall_us_per_client_tick, row.replication_ms_per_tick_wall, row.shared_us_per_tick, row.tick_ms_p50, row.tick_ms_p99, row.bytes_per_client_tick, row.hash_failures,
                row.reverted_per_client_tick, 100.0 * row.reverted_share, row.revert_ticks_mean
            );
        }
        rows.push(row);
    }
    let failures: u64 = rows.iter().map(|r| r.hash_failures).sum();
    if a.json {
        // The last (largest) count's keys at the top level, and the curve.
        let mut v = serde_json::to_value(rows.last())?;
        v["curve"] = serde_json::to_value(&rows)?;
        println!("{v}");
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
