//! The tick thread: joins, departures and inputs in, one world step, the
//! published state out. It never waits on the network.

use crate::clock::MonotonicClock;
use net::hub::{join_plan, joined_handles, leave_plans, Departed};
use net::proto::Frame;
use net::quant::quantize_world;
use net::token::Claims;
use sim_core::{MicroPlan, PlanQueue, Tick, World};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use super::*;

pub(crate) struct JoinReq {
    pub(crate) claims: Claims,
    pub(crate) reply: tokio::sync::oneshot::Sender<Vec<u64>>,
}

/// A policy's control request; the reply is the tick it took effect and
/// the whole set the policy controls after it.
pub(crate) struct ControlReq {
    pub(crate) req: net::control::Request,
    pub(crate) reply: tokio::sync::oneshot::Sender<(u64, Vec<u64>)>,
}

pub(crate) const LATE_SLACK: u64 = 30;

/// What the tick thread reports each tick (atomic metrics; never blocks).
pub(crate) struct TickObserver {
    /// How long a departed player's avatar waits for a reconnect.
    pub(crate) reconnect_grace_ms: u64,
    pub(crate) metrics: crate::admin::Metrics,
    pub(crate) health: Arc<crate::admin::Health>,
    pub(crate) outboxes: Outboxes,
    pub(crate) published: Published,
    /// For the frames a slow reader's outbox drops.
    pub(crate) stats: Arc<Stats>,
    /// Policy observations' jobs (see `observe.rs`).
    pub(crate) observe_tx: std::sync::mpsc::SyncSender<super::observe::Job>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn tick_loop(
    mut world: World,
    mut recording: Option<super::recording::Recording>,
    join_rx: Receiver<JoinReq>,
    leave_rx: Receiver<Departed>,
    input_rx: Receiver<MicroPlan>,
    control_rx: Receiver<ControlReq>,
    latest: &super::replicate::Latest,
    stats: &Stats,
    shutdown: &AtomicBool,
    max_ticks: u64,
    mut frames: Option<(u64, FrameSink)>,
    obs: &TickObserver,
) -> anyhow::Result<()> {
    let period = Duration::from_secs_f64(1.0 / f64::from(world.config().tick_rate));
    let mut clock = MonotonicClock::new();
    let mut queue = PlanQueue::default();
    let mut admin_seq = 0u32;
    let mut orphans: Vec<Departed> = Vec::new();
    let mut parking = net::hub::Parking::default();
    let grace_ticks = obs.reconnect_grace_ms * u64::from(world.config().tick_rate) / 1000;
    let mut next = Instant::now();
    let loop_start = next;
    latest.put((world.tick().0, Arc::new(quantize_world(&world)), Arc::new(net::hub::avatar_states(&world))));
    stats.world_tick.store(world.tick().0, Ordering::Relaxed);
    while !shutdown.load(Ordering::Relaxed) && (max_ticks == 0 || world.tick().0 < max_ticks) {
        let t0 = Instant::now();
        let next_tick = Tick(world.tick().0 + 1);
        let mut plans = queue.take(next_tick);
        // Departures first: a reconnect's old session parks its avatar
        // before the new session claims it below.
        let mut leaving: Vec<Departed> = std::mem::take(&mut orphans);
        // Orphans never had a reply; only sessions that joined leave here.
        let mut left = 0;
        while let Ok(d) = leave_rx.try_recv() {
            leaving.push(d);
            left += 1;
        }
        let mut joined = 0;
        // What a departed client queued must not keep driving its avatar
        // (parked, or about to be removed) or its NPCs.
        let departed: Vec<sim_core::SourceId> = leaving.iter().map(|d| sim_core::SourceId(d.source)).collect();
        for &s in &departed {
            queue.drop_source(s);
        }
        plans.retain(|p| !departed.contains(&p.header().source));
        for d in &leaving {
            let parked = parking.park(&world, d, next_tick, grace_ticks, &mut admin_seq);
            if !parked.is_empty() {
                plans.extend(parked);
                continue;
            }
            for p in leave_plans(&world, d, next_tick, &mut admin_seq) {
                plans.push(p);
            }
        }
        // Parked avatars whose grace ran out are removed.
        for d in parking.expired(next_tick.0) {
            for p in leave_plans(&world, &d, next_tick, &mut admin_seq) {
                plans.push(p);
            }
        }
        let mut joins = Vec::new();
        // NPCs granted by earlier joins of this same tick are taken.
        let mut taken: Vec<u64> = Vec::new();
        while let Ok(j) = join_rx.try_recv() {
            // A player back within the grace period gets its avatar again.
            if j.claims.role == net::token::Role::Player
                && let Some(h) = parking.claim(&world, j.claims.client_id) {
                    if j.reply.send(vec![h]).is_ok() {
                        joined += 1;
                    } else {
                        orphans.push(Departed { client_id: j.claims.client_id, source: net::hub::source_of(j.claims.client_id), role: j.claims.role, controlled: vec![h] });
                    }
                    continue;
                }
            if let Some(p) = join_plan(&world, &j.claims, next_tick, &taken) {
                taken.extend(p.ops().iter().filter_map(|o| if let sim_core::Op::Grant { handle, .. } = o { Some(handle.to_bits()) } else { None }));
                plans.push(p.clone());
                joins.push((j, Some(p)));
            } else {
                joins.push((j, None));
            }
        }
        // Control requests, after the joins (whose grants are taken). A
        // request whose connection is gone is dropped: its session left.
        let mut controls: Vec<ControlReq> = Vec::new();
        while let Ok(c) = control_rx.try_recv() {
            if !c.reply.is_closed() {
                controls.push(c);
            }
        }
        if !controls.is_empty() {
            let mut reqs: Vec<net::control::Request> = controls.iter().map(|c| c.req).collect();
            let (granting, granted) = net::control::plans(&world, &mut reqs, &taken, next_tick, &mut admin_seq);
            taken.extend(granted);
            plans.extend(granting);
        }
        // From here on, inputs for `next_tick` are late: connection tasks
        // judge commands against this (a command arriving during the step
        // is counted late for its sender, not dropped silently).
        stats.world_tick.store(next_tick.0, Ordering::Relaxed);
        while let Ok(p) = input_rx.try_recv() {
            if departed.contains(&p.header().source) {
                continue;
            }
            let t = p.header().target_tick;
            if t == next_tick {
                plans.push(p);
            } else if t < next_tick && p.sections().any(|s| s.kind == sim_core::OpKind::Command) {
                // A player's command is never retargeted: dropped, counted,
                // and the player's clock learns from its lead.
                stats.inputs_late_dropped.fetch_add(1, Ordering::Relaxed);
            } else if t < next_tick && next_tick.0 - t.0 <= LATE_SLACK {
                let mut bytes = p.into_bytes();
                bytes[8..16].copy_from_slice(&next_tick.0.to_le_bytes());
                sim_core::microplan::reseal(&mut bytes);
                if let Ok(p) = MicroPlan::decode(bytes) {
                    plans.push(p);
                    stats.inputs_late_retargeted.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                let h = *p.header();
                let refused = if t < next_tick { Err(sim_core::Status::TickInPast) } else { queue.submit(p, world.tick()) };
                if let Err(status) = refused {
                    stats.inputs_late_dropped.fetch_add(1, Ordering::Relaxed);
                    obs.tell(h.source.0, || Frame::PlanStatus { sequence: h.sequence, tick: next_tick.0, status: status as u16 });
                }
            }
        }
        if let Some(r) = recording.as_mut() {
            r.before_step(&world, joins.len() + joined, stats, &obs.metrics);
        }
        let j = world.step(&plans, &mut clock);
        obs.tell_outcomes(j);
        stats.inputs_applied.fetch_add(j.plans.iter().filter(|p| p.status == sim_core::Status::Ok && p.source.0 != 0).count() as u64, Ordering::Relaxed);
        stats.plans_rejected.fetch_add(u64::from(j.counters.plans_rejected), Ordering::Relaxed);
        for (req, plan) in joins {
            let handles = plan
                .as_ref()
                .and_then(|p| {
                    let h = p.header();
                    j.plans.iter().find(|pj| pj.source == h.source && pj.sequence == h.sequence).map(|pj| joined_handles(p, pj))
                })
                .unwrap_or_default();
            let replied = req.reply.send(handles.clone()).is_ok();
            joined += usize::from(replied);
            if !replied && !handles.is_empty() {
                // The connection gave up waiting: undo the join next tick.
                orphans.push(Departed { client_id: req.claims.client_id, source: net::hub::source_of(req.claims.client_id), role: req.claims.role, controlled: handles });
            }
        }
        for c in controls {
            let _ = c.reply.send((world.tick().0, net::control::owned_by(&world, c.req.source)));
        }
        if let Some(r) = recording.as_mut() {
            r.clients(joined, left);
            r.after_step(&world, &plans, stats, &obs.metrics);
        }
        // Recorded before the state goes out, so a plan decided on it can
        // never arrive before its publication time is known.
        obs.publish(world.tick().0);
        super::observe::after_step(&world, &obs.outboxes, &obs.observe_tx, stats);
        stats.world_tick.store(world.tick().0, Ordering::Relaxed);
        if latest.put((world.tick().0, Arc::new(quantize_world(&world)), Arc::new(net::hub::avatar_states(&world)))) {
            stats.replication_skipped.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((every, sink)) = frames.as_mut()
            && world.tick().0.is_multiple_of(*every) {
                sink(&world);
            }
        let spent = t0.elapsed();
        stats.ticks.fetch_add(1, Ordering::Relaxed);
        let m = &obs.metrics;
        m.tick_seconds.observe(spent.as_secs_f64());
        m.ticks.inc();
        let c = &world.journal().counters;
        for a in sim_core::Archetype::ALL {
            m.entities.with_label_values(&[a.name()]).set(i64::from(c.bodies_per_archetype[a as usize]));
        }
        for p in &world.journal().plans {
            m.plans.with_label_values(&[p.status.name()]).inc();
        }
        crate::admin::record_graphs(m, &world);
        obs.health.last_tick_ms.store(now_ms(), Ordering::Relaxed);
        stats.tick_ns.record(spent.as_nanos() as u64);
        next += period;
        let now = Instant::now();
        if now > next {
            stats.overruns.fetch_add(1, Ordering::Relaxed);
            obs.metrics.tick_overruns.inc();
            // Bounded tick debt: more than 5 ticks behind (a stopped
            // process, a starved box), the schedule restarts from now
            // instead of running a burst of late ticks; what it skipped
            // is counted. The world still steps every tick: no tick is lost.
            if now - next > period * 5 {
                let behind = (now - next).as_nanos() / period.as_nanos().max(1);
                stats.debt_dropped_ticks.fetch_add(u64::try_from(behind).unwrap_or(u64::MAX), Ordering::Relaxed);
                next = now;
            }
        } else {
            std::thread::sleep(next - now);
        }
    }
    stats.loop_us.store(loop_start.elapsed().as_micros() as u64, Ordering::Relaxed);
    if let Some(r) = recording {
        r.finish(stats, &obs.metrics);
    }
    Ok(())
}

impl TickObserver {
    /// Sends one frame to a policy session, building it only if that source
    /// has an outbox.
    fn tell(&self, source: u32, f: impl FnOnce() -> Frame) {
        if let Ok(o) = self.outboxes.lock()
            && let Some(b) = o.get(&source) {
                self.stats.outbox(b.tx.try_send(f()));
            }
    }

    /// Each policy plan's status, and its raycast results if it had any,
    /// to the session that sent it: one lock per tick, nothing built when
    /// no policy session is connected.
    fn tell_outcomes(&self, j: &sim_core::TickJournal) {
        let Ok(o) = self.outboxes.lock() else { return };
        if o.is_empty() {
            return;
        }
        for pj in &j.plans {
            let Some(b) = o.get(&pj.source.0) else { continue };
            let (tx, statuses) = (&b.tx, b.statuses);
            if statuses || pj.status != sim_core::Status::Ok {
                self.stats.outbox(tx.try_send(Frame::PlanStatus { sequence: pj.sequence, tick: j.tick.0, status: pj.status as u16 }));
            }
            if !pj.ray_hit.is_empty() {
                let n = pj.ray_hit.len().min(net::proto::MAX_RAYS_PER_FRAME);
                let rays = Frame::PlanRays {
                    sequence: pj.sequence,
                    tick: j.tick.0,
                    hit: pj.ray_hit[..n].to_vec(),
                    handle: pj.ray_handle[..n].to_vec(),
                    distance_bits: pj.ray_distance[..n].iter().map(|d| d.to_bits()).collect(),
                };
                self.stats.outbox(tx.try_send(rays));
            }
            if pj.overlap_offsets.len() > 1 {
                let (offsets, handles) = net::proto::overlaps_for_frame(&pj.overlap_offsets, &pj.overlap_handles);
                self.stats.outbox(tx.try_send(Frame::PlanOverlaps { sequence: pj.sequence, tick: j.tick.0, offsets, handles }));
            }
        }
    }

    fn publish(&self, tick: u64) {
        if let Ok(mut p) = self.published.lock() {
            if p.len() == 512 {
                p.pop_front();
            }
            p.push_back((tick, now_ms()));
        }
    }
}
