//! The world and its fixed-step tick pipeline.
//!
//! Phase order (journaled): 1 ingest plans for this tick, sorted by
//! (source, seq) — 2 validate and apply each plan atomically — 3 physics
//! step — 4 sync physics state into columns — 5 game rules — 6 hash —
//! 7 journal.

use crate::character::PlayerRules;
use crate::hash::WorldHashes;
use crate::lagcomp::PoseHistory;
use crate::ids::{Archetype, Handle, SourceId, Tick};
use crate::journal::{Clock, Counters, Phase, PlanJournal, TickJournal};
use crate::microplan::MicroPlan;
use crate::physics::{BodyDesc, BodyKey, Motion, PhysicsPort, RapierPhysics, Shape, ShapeSpec, STATIC_TAG};
use crate::ports::{OpKind, Status, MAX_BYTES_PER_SOURCE_TICK, MAX_COST_PER_SOURCE_TICK, MAX_OPS_PER_SOURCE_TICK, MAX_OVERLAP_HITS};
use crate::rng::WorldRng;
use crate::scenario::{BodyKind, NpcLayout, Scenario, ShapeKind};
use crate::schema::ColumnId;
use crate::table::{EntityIndex, Location, RowInit, Table};

mod cells;
mod graphs;
mod neighbours;
mod rays;
mod rules;
mod sensors;
mod validate;

pub use graphs::{GraphOp, GraphStore, MAX_BOUND_COST_PER_SOURCE, MAX_GRAPHS};
pub(crate) use graphs::Member as GraphMember;

/// Health lost per tick while out of bounds.
pub const OUT_OF_BOUNDS_DAMAGE: i32 = 20;
/// Health of entities spawned by plans.
pub const SPAWN_HEALTH: i32 = 100;

/// World-level settings fixed at creation (part of snapshots).
#[derive(Clone, Debug, PartialEq)]
pub struct WorldConfig {
    pub world_id: u8,
    pub tick_rate: u32,
    pub gravity: [f32; 3],
    /// In-bounds area: |x| <= half_extents[0], |z| <= half_extents[1].
    pub half_extents: [f32; 2],
    pub kill_y: f32,
    /// Server-owned NPCs pick new targets within this radius of the centre.
    pub wander_radius: f32,
    pub seed: u64,
    /// Avatars: the character controller's limits and spawn points.
    pub players: PlayerRules,
}

/// Scratch memory reused across ticks (never serialized).
#[derive(Debug, Default)]
struct Scratch {
    order: Vec<u32>,
    doomed: Vec<Handle>,
    /// (handle bits, op index) of the current plan's despawns, sorted.
    despawned_in_plan: Vec<(u64, u32)>,
    overlap: Vec<u64>,
    /// Avatars that fired this tick (one shot each).
    fired: Vec<u64>,
}

/// The whole simulation state plus scratch.
#[derive(Debug)]
pub struct World {
    pub(crate) tick: Tick,
    pub(crate) config: WorldConfig,
    pub(crate) rng: WorldRng,
    pub(crate) shapes: Vec<ShapeSpec>,
    pub(crate) shape_names: Vec<String>,
    pub(crate) tables: Vec<Table>,
    pub(crate) index: EntityIndex,
    pub(crate) physics: RapierPhysics,
    /// Poses of avatars and NPCs over the last second (lag compensation).
    pub(crate) history: PoseHistory,
    /// Behaviour graphs and their bindings (snapshotted and hashed).
    pub(crate) graphs: graphs::GraphStore,
    hashes: WorldHashes,
    journal: TickJournal,
    scratch: Scratch,
    graph_scratch: graphs::GraphScratch,
}

/// Point `k` of `count` evenly around a square ring of half-size `r`, with
/// basic arithmetic only (no libm: trig differs across libcs).
fn ring_point(r: f32, k: u32, count: u32) -> (f32, f32) {
    let u = 4.0 * k as f32 / count as f32;
    let side = u.floor();
    let t = 2.0 * r * (u - side);
    match side as u32 {
        0 => (-r + t, -r),
        1 => (r, -r + t),
        2 => (r - t, r),
        _ => (-r, r - t),
    }
}

fn shape_spec(def: &crate::scenario::ShapeDef) -> ShapeSpec {
    let kind = def.shape().unwrap_or(ShapeKind::Ball { radius: 0.5 });
    let shape = match kind {
        ShapeKind::Cuboid { half_extents } => Shape::Cuboid { half_extents },
        ShapeKind::Ball { radius } => Shape::Ball { radius },
        ShapeKind::Capsule { half_height, radius } => Shape::Capsule { half_height, radius },
    };
    ShapeSpec { shape, density: def.density, friction: def.friction, restitution: def.restitution }
}

impl World {
    /// Builds tick 0 from a validated scenario. `seed` overrides the
    /// scenario's seed when given.
    #[must_use]
    pub fn from_scenario(s: &Scenario, seed: Option<u64>) -> World {
        let seed = seed.unwrap_or(s.seed);
        let config = WorldConfig {
            world_id: 0,
            tick_rate: s.tick_rate,
            gravity: s.gravity,
            half_extents: s.arena.half_extents,
            kill_y: s.arena.kill_y,
            wander_radius: s.npcs.first().map_or(10.0, |n| n.wander_radius),
            seed,
            players: PlayerRules {
                shape: s.players.shape.as_deref().and_then(|n| s.shape_index(n)).unwrap_or(0),
                max_speed: s.players.max_speed,
                acceleration: s.players.acceleration,
                air_acceleration: s.players.air_acceleration,
                jump_speed: s.players.jump_speed,
                spawn_points: s.players.spawn_points.clone(),
                // The history must reach back that far (a few ticks of slack).
                max_rewind_ticks: (s.players.max_rewind_ms.saturating_mul(s.tick_rate)).div_ceil(1000).min(crate::lagcomp::HISTORY_TICKS as u32 - 2),
                respawn_ticks: (s.players.respawn_delay_ms.saturating_mul(s.tick_rate)).div_ceil(1000).max(1),
                ground: s.arena.ground,
                walls: s.arena.wall_height > 0.0,
            },
        };
        let mut physics = RapierPhysics::new(s.gravity, s.tick_rate);
        let [hx, hz] = s.arena.half_extents;
        if s.arena.ground {
            physics.add_fixed_box([0.0, -0.5, 0.0], [hx, 0.5, hz], 0.7);
        }
        let wh = s.arena.wall_height;
        if wh > 0.0 {
            for (c, he) in [
                ([hx + 0.25, wh * 0.5, 0.0], [0.25, wh * 0.5, hz]),
                ([-hx - 0.25, wh * 0.5, 0.0], [0.25, wh * 0.5, hz]),
                ([0.0, wh * 0.5, hz + 0.25], [hx, wh * 0.5, 0.25]),
                ([0.0, wh * 0.5, -hz - 0.25], [hx, wh * 0.5, 0.25]),
            ] {
                physics.add_fixed_box(c, he, 0.7);
            }
        }
        let mut w = World {
            tick: Tick::ZERO,
            rng: WorldRng::from_seed(seed),
            config,
            shapes: s.shapes.iter().map(shape_spec).collect(),
            shape_names: s.shapes.iter().map(|d| d.name.clone()).collect(),
            tables: Archetype::ALL.iter().map(|&a| Table::new(a)).collect(),
            index: EntityIndex::new(0),
            physics,
            history: PoseHistory::default(),
            graphs: graphs::GraphStore::default(),
            hashes: WorldHashes::default(),
            journal: TickJournal::default(),
            scratch: Scratch::default(),
            graph_scratch: graphs::GraphScratch::default(),
        };
        w.tables[Archetype::Prop as usize].reserve(s.body_count() as usize);
        let shape_of = |name: &str| s.shape_index(name).unwrap_or(0);
        for g in &s.grids {
            let mut i = 0usize;
            for y in 0..g.count[1] {
                for z in 0..g.count[2] {
                    for x in 0..g.count[0] {
                        let shape = shape_of(&g.shapes[i % g.shapes.len()]);
                        i += 1;
                        let j = g.jitter;
                        let jit = [w.rng.range_f32(-j, j), w.rng.range_f32(-j, j), w.rng.range_f32(-j, j)];
                        let p = [
                            g.origin[0] + x as f32 * g.spacing[0] + jit[0],
                            g.origin[1] + y as f32 * g.spacing[1] + jit[1],
                            g.origin[2] + z as f32 * g.spacing[2] + jit[2],
                        ];
                        w.spawn_body(Archetype::Prop, shape, Motion::Dynamic, p, [0.0, 0.0, 0.0, 1.0], [0.0; 3], [0.0; 3], SourceId::SERVER, g.health);
                    }
                }
            }
        }
        for b in &s.bodies {
            let (arch, motion) = match b.body {
                BodyKind::Dynamic => (Archetype::Prop, Motion::Dynamic),
                BodyKind::Kinematic => (Archetype::Npc, Motion::Kinematic),
                BodyKind::Fixed => (Archetype::Prop, Motion::Fixed),
            };
            w.spawn_body(arch, shape_of(&b.shape), motion, b.position, b.rotation, b.linvel, b.angvel, SourceId::SERVER, b.health);
        }
        for n in &s.npcs {
            // Cells per side of a grid layout: the least s with s * s >= count.
            let root = n.count.isqrt();
            let cells = if root * root < n.count { root + 1 } else { root.max(1) };
            for k in 0..n.count {
                let (x, z) = match n.layout {
                    NpcLayout::Ring => ring_point(n.radius, k, n.count),
                    NpcLayout::Grid => {
                        let step = 2.0 * n.radius / cells as f32;
                        let (i, j) = (k % cells, k / cells);
                        (-n.radius + step * (i as f32 + 0.5), -n.radius + step * (j as f32 + 0.5))
                    }
                };
                let p = [x, n.height, z];
                let h = w.spawn_body(Archetype::Npc, shape_of(&n.shape), Motion::Kinematic, p, [0.0, 0.0, 0.0, 1.0], [0.0; 3], [0.0; 3], SourceId::SERVER, n.health);
                if let Some(loc) = w.index.get(h) {
                    let t = &mut w.tables[Archetype::Npc as usize];
                    let row = loc.row as usize;
                    let [tx, ty, tz, ms] = t.f32_many_mut([ColumnId::TargetX, ColumnId::TargetY, ColumnId::TargetZ, ColumnId::MaxSpeed]);
                    (tx[row], ty[row], tz[row], ms[row]) = (p[0], p[1], p[2], n.speed);
                }
            }
        }
        w.hashes.compute(w.tick, &w.tables, w.rng.state(), w.graphs.digest());
        w
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_body(
        &mut self,
        archetype: Archetype,
        shape: u32,
        motion: Motion,
        position: [f32; 3],
        rotation: [f32; 4],
        linvel: [f32; 3],
        angvel: [f32; 3],
        owner: SourceId,
        health: i32,
    ) -> Handle {
        let spec = self.shapes[shape as usize];
        let row = self.tables[archetype as usize].len();
        let handle = self.index.alloc(Location { archetype, row: row as u32 });
        let key = self.physics.add_body(&BodyDesc { motion, shape: spec, position, rotation, linvel, angvel }, handle.to_bits());
        let table = &mut self.tables[archetype as usize];
        table.push(handle, key_bits(key), RowInit { shape, owner: owner.0, health });
        if let Some(state) = self.physics.body_state(key) {
            let (_, mut cols) = table.physics_columns_mut();
            write_state(&mut cols, row, &state);
        }
        handle
    }

    /// Despawns a live handle; returns false for dead ones.
    fn despawn(&mut self, h: Handle) -> bool {
        let Some(loc) = self.index.get(h) else { return false };
        let table = &mut self.tables[loc.archetype as usize];
        let row = loc.row as usize;
        self.physics.remove_body(key_from_bits(table.keys()[row]));
        if let Some(moved) = table.swap_remove(row) {
            self.index.set_row(moved, loc.row);
        }
        self.index.free(h)
    }

    /// Advances one tick. Plans not targeting this tick are rejected
    /// (`TICK_IN_PAST` / `TICK_TOO_FAR_AHEAD`); use a [`crate::PlanQueue`]
    /// to hold plans for later ticks.
    pub fn step(&mut self, plans: &[MicroPlan], clock: &mut dyn Clock) -> &TickJournal {
        let tick = self.tick.next();
        let mut journal = std::mem::take(&mut self.journal);
        journal.reset(tick);
        let mut t = clock.now_ns();
        let mut mark = |j: &mut TickJournal, phase: Phase, clock: &mut dyn Clock| {
            let now = clock.now_ns();
            j.phase_ns[phase as usize] = now.saturating_sub(t);
            t = now;
        };

        // 1. Ingest: order by (source, sequence); the checksum breaks ties
        // between duplicates so the outcome never depends on arrival order.
        let mut order = std::mem::take(&mut self.scratch.order);
        order.clear();
        order.extend(0..plans.len() as u32);
        order.sort_by_key(|&i| {
            let p = &plans[i as usize];
            (p.header().source, p.header().sequence, p.checksum(), i)
        });
        journal.counters.plans_received = plans.len() as u32;
        self.scratch.fired.clear();
        mark(&mut journal, Phase::Ingest, clock);

        // 2. Validate and apply, each plan whole or not at all.
        let mut prev: Option<(SourceId, u32)> = None;
        let (mut src_ops, mut src_bytes, mut src_cost) = (0u64, 0u64, 0u64);
        for &i in &order {
            let p = &plans[i as usize];
            let h = *p.header();
            let mut pj = PlanJournal::new(h.source, h.sequence, h.correlation);
            if prev.is_none_or(|(s, _)| s != h.source) {
                (src_ops, src_bytes, src_cost) = (0, 0, 0);
            }
            if h.target_tick < tick {
                pj.status = Status::TickInPast;
            } else if h.target_tick > tick {
                pj.status = Status::TickTooFarAhead;
            } else if prev == Some((h.source, h.sequence)) {
                pj.status = Status::DuplicateSequence;
            } else if src_ops + u64::from(p.op_count()) > u64::from(MAX_OPS_PER_SOURCE_TICK) {
                pj.status = Status::SourceOpsCap;
            } else if src_bytes + p.bytes().len() as u64 > u64::from(MAX_BYTES_PER_SOURCE_TICK) {
                pj.status = Status::SourceBytesCap;
            } else if h.source != SourceId::SERVER && src_cost.saturating_add(crate::cost::plan_cost(p)) > MAX_COST_PER_SOURCE_TICK {
                pj.status = Status::OverBudget;
            } else {
                src_ops += u64::from(p.op_count());
                src_bytes += p.bytes().len() as u64;
                if h.source != SourceId::SERVER {
                    src_cost = src_cost.saturating_add(crate::cost::plan_cost(p));
                }
                self.validate_plan(p, &mut pj);
                if pj.status == Status::Ok {
                    self.apply_plan(p, &mut pj, &mut journal.counters);
                }
            }
            prev = Some((h.source, h.sequence));
            if pj.status == Status::Ok {
                journal.counters.plans_applied += 1;
            } else {
                journal.counters.plans_rejected += 1;
            }
            journal.plans.push(pj);
        }
        self.scratch.order = order;
        self.control_avatars();
        mark(&mut journal, Phase::Apply, clock);

        // 3. Physics.
        self.physics.step();
        mark(&mut journal, Phase::Physics, clock);

        // 4. Sync physics state into columns.
        self.sync_physics();
        mark(&mut journal, Phase::Sync, clock);

        // 5. Game rules.
        self.tick = tick;
        self.rule_out_of_bounds(&mut journal);
        self.rule_respawn();
        self.run_graphs(&mut journal, clock);
        self.rule_npc_steering(&mut journal);
        self.record_poses();
        mark(&mut journal, Phase::Rules, clock);

        // 6. Hash.
        self.hashes.compute(tick, &self.tables, self.rng.state(), self.graphs.digest());
        journal.world_hash = self.hashes.world;
        mark(&mut journal, Phase::Hash, clock);

        // 7. Journal.
        for (i, t) in self.tables.iter().enumerate() {
            journal.counters.bodies_per_archetype[i] = t.len() as u32;
        }
        journal.counters.contact_pairs = self.physics.active_contact_pairs();
        journal.counters.active_bodies = self.physics.active_bodies();
        mark(&mut journal, Phase::Journal, clock);
        self.journal = journal;
        &self.journal
    }

    /// Applies a validated plan: sections in kind order, ops in index order.
    fn apply_plan(&mut self, p: &MicroPlan, pj: &mut PlanJournal, counters: &mut Counters) {
        let source = p.header().source;
        for s in p.sections() {
            match s.kind {
                OpKind::Spawn => {
                    for i in 0..s.count {
                        let archetype = Archetype::from_u8(s.u32(0, i) as u8).unwrap_or(Archetype::Prop);
                        let motion = if archetype.is_kinematic() { Motion::Kinematic } else { Motion::Dynamic };
                        let position = s.f32x3(2, i);
                        let h = self.spawn_body(archetype, s.u32(1, i), motion, position, s.f32x4(3, i), s.f32x3(4, i), s.f32x3(5, i), source, SPAWN_HEALTH);
                        if archetype.is_kinematic() {
                            self.set_move_target(h, position, 0.0);
                        }
                        pj.spawned.push(h);
                        counters.spawned += 1;
                    }
                }
                OpKind::Despawn => {
                    for i in 0..s.count {
                        if self.despawn(s.handle(0, i)) {
                            counters.despawned += 1;
                        }
                    }
                }
                OpKind::SetVelocity => {
                    for i in 0..s.count {
                        if let Some(key) = self.key_of(s.handle(0, i)) {
                            self.physics.set_velocity(key, s.f32x3(1, i), s.f32x3(2, i));
                        }
                    }
                }
                OpKind::ApplyImpulse => {
                    for i in 0..s.count {
                        if let Some(key) = self.key_of(s.handle(0, i)) {
                            self.physics.apply_impulse(key, s.f32x3(1, i));
                        }
                    }
                }
                OpKind::MoveTo => {
                    for i in 0..s.count {
                        self.set_move_target(s.handle(0, i), s.f32x3(1, i), s.f32(2, i));
                    }
                }
                OpKind::Grant => {
                    for i in 0..s.count {
                        self.grant(s.handle(0, i), SourceId(s.u32(1, i)));
                    }
                }
                OpKind::Command => {
                    for i in 0..s.count {
                        let Some(loc) = self.index.get(s.handle(0, i)) else { continue };
                        let t = &mut self.tables[loc.archetype as usize];
                        let row = loc.row as usize;
                        let m = s.f32x3(3, i);
                        let [ix, iz, yaw, pitch] = t.f32_many_mut([ColumnId::InputX, ColumnId::InputZ, ColumnId::Yaw, ColumnId::Pitch]);
                        (ix[row], iz[row], yaw[row], pitch[row]) = (m[0], m[2], s.f32(4, i), s.f32(5, i));
                        t.u32_mut(ColumnId::Buttons)[row] = s.u32(2, i);
                        t.u32_mut(ColumnId::LastCommand)[row] = s.u32(1, i);
                        // One shot per avatar per tick, whatever the plans.
                        let shooter = s.handle(0, i).to_bits();
                        if s.u32(2, i) & crate::character::BUTTON_FIRE != 0 && !self.scratch.fired.contains(&shooter) {
                            self.scratch.fired.push(shooter);
                            self.fire(s.handle(0, i), s.f32(4, i), s.f32(5, i), s.u32(6, i), pj);
                        }
                    }
                }
                OpKind::Raycast => {
                    for i in 0..s.count {
                        let d = s.f32x3(1, i);
                        let len = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
                        let dir = [d[0] / len, d[1] / len, d[2] / len];
                        match self.physics.raycast(s.f32x3(0, i), dir, s.f32(2, i)) {
                            Some((tag, dist)) => {
                                pj.ray_hit.push(if tag == STATIC_TAG { 2 } else { 1 });
                                pj.ray_handle.push(if tag == STATIC_TAG { Handle::NONE.to_bits() } else { tag });
                                pj.ray_distance.push(dist);
                            }
                            None => {
                                pj.ray_hit.push(0);
                                pj.ray_handle.push(Handle::NONE.to_bits());
                                pj.ray_distance.push(f32::INFINITY);
                            }
                        }
                    }
                }
                OpKind::GraphUpload => self.apply_graph_upload(),
                OpKind::GraphBind => self.apply_graph_binds(source, &s),
                OpKind::Overlap => {
                    pj.overlap_offsets.push(pj.overlap_handles.len() as u32);
                    for i in 0..s.count {
                        let mut hits = std::mem::take(&mut self.scratch.overlap);
                        hits.clear();
                        self.physics.overlap(s.f32x3(0, i), s.f32x3(1, i), &mut hits);
                        hits.sort_unstable();
                        hits.dedup();
                        hits.truncate(MAX_OVERLAP_HITS as usize);
                        pj.overlap_handles.extend_from_slice(&hits);
                        pj.overlap_offsets.push(pj.overlap_handles.len() as u32);
                        self.scratch.overlap = hits;
                    }
                }
            }
        }
        counters.ops_applied += p.op_count();
    }

    /// Gives an entity to a source (the `grant` op): ownership is a hashed
    /// column, so grants are part of the world and of replays.
    fn grant(&mut self, h: Handle, to: SourceId) -> bool {
        let Some(loc) = self.index.get(h) else { return false };
        let t = &mut self.tables[loc.archetype as usize];
        match t.column_mut(ColumnId::Owner) {
            Some(crate::table::ColumnData::U32(v)) => {
                v[loc.row as usize] = to.0;
                true
            }
            _ => false,
        }
    }

    fn set_move_target(&mut self, h: Handle, target: [f32; 3], max_speed: f32) {
        let Some(loc) = self.index.get(h) else { return };
        let t = &mut self.tables[loc.archetype as usize];
        if !t.has(ColumnId::TargetX) {
            return;
        }
        let row = loc.row as usize;
        let [tx, ty, tz, ms] = t.f32_many_mut([ColumnId::TargetX, ColumnId::TargetY, ColumnId::TargetZ, ColumnId::MaxSpeed]);
        (tx[row], ty[row], tz[row], ms[row]) = (target[0], target[1], target[2], max_speed);
    }

    fn key_of(&self, h: Handle) -> Option<BodyKey> {
        let loc = self.index.get(h)?;
        Some(key_from_bits(self.tables[loc.archetype as usize].keys()[loc.row as usize]))
    }

    fn sync_physics(&mut self) {
        for table in &mut self.tables {
            // Avatars' columns are the controller's; their bodies follow them.
            if table.archetype() == Archetype::Avatar {
                continue;
            }
            let (keys, mut cols) = table.physics_columns_mut();
            for (row, &k) in keys.iter().enumerate() {
                if let Some(state) = self.physics.body_state(key_from_bits(k)) {
                    write_state(&mut cols, row, &state);
                }
            }
        }
    }

    // ---- read access ----

    #[must_use]
    pub fn tick(&self) -> Tick {
        self.tick
    }

    #[must_use]
    pub fn config(&self) -> &WorldConfig {
        &self.config
    }

    #[must_use]
    pub fn hashes(&self) -> &WorldHashes {
        &self.hashes
    }

    #[must_use]
    pub fn world_hash(&self) -> u64 {
        self.hashes.world
    }

    #[must_use]
    pub fn journal(&self) -> &TickJournal {
        &self.journal
    }

    #[must_use]
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    #[must_use]
    pub fn table(&self, a: Archetype) -> &Table {
        &self.tables[a as usize]
    }

    #[must_use]
    pub fn shapes(&self) -> &[ShapeSpec] {
        &self.shapes
    }

    #[must_use]
    pub fn shape_names(&self) -> &[String] {
        &self.shape_names
    }

    #[must_use]
    pub fn rng_state(&self) -> u64 {
        self.rng.state()
    }

    #[must_use]
    pub fn entity_count(&self) -> usize {
        self.tables.iter().map(Table::len).sum()
    }

    /// Where a handle lives, if it is live.
    #[must_use]
    pub fn locate(&self, h: Handle) -> Option<Location> {
        self.index.get(h)
    }

    /// The physics adapter (benchmarks step it raw).
    pub fn physics_mut(&mut self) -> &mut RapierPhysics {
        &mut self.physics
    }

    #[must_use]
    pub fn physics(&self) -> &RapierPhysics {
        &self.physics
    }

    /// Recomputes hashes without stepping (after external edits in tests
    /// and fault injection).
    pub fn rehash(&mut self) -> u64 {
        self.hashes.compute(self.tick, &self.tables, self.rng.state(), self.graphs.digest());
        self.hashes.world
    }

    /// See [`Table::regrow`]: gives a table room for `capacity` rows in
    /// fresh allocations and returns the old columns. Values, row order and
    /// hashes are unchanged.
    pub fn regrow_table(&mut self, a: Archetype, capacity: usize) -> Vec<crate::table::ColumnData> {
        self.tables[a as usize].regrow(capacity)
    }

    /// Mutable table access for fault injection in tests and tools. Edits
    /// made here bypass physics; the next sync overwrites physics columns.
    pub fn table_mut_for_fault_injection(&mut self, a: Archetype) -> &mut Table {
        &mut self.tables[a as usize]
    }

    // Every part of a restored world, checked by the snapshot reader.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assemble(
        tick: Tick,
        config: WorldConfig,
        rng: WorldRng,
        shapes: Vec<ShapeSpec>,
        shape_names: Vec<String>,
        tables: Vec<Table>,
        index: EntityIndex,
        physics: RapierPhysics,
        history: PoseHistory,
        graphs: graphs::GraphStore,
    ) -> World {
        let mut w = World {
            tick,
            config,
            rng,
            shapes,
            shape_names,
            tables,
            index,
            physics,
            history,
            graphs,
            hashes: WorldHashes::default(),
            journal: TickJournal::default(),
            scratch: Scratch::default(),
            graph_scratch: graphs::GraphScratch::default(),
        };
        w.rehash();
        w
    }
}

fn write_state(cols: &mut [&mut [f32]; 13], row: usize, s: &crate::physics::BodyState) {
    let v = [
        s.position[0], s.position[1], s.position[2],
        s.rotation[0], s.rotation[1], s.rotation[2], s.rotation[3],
        s.linvel[0], s.linvel[1], s.linvel[2],
        s.angvel[0], s.angvel[1], s.angvel[2],
    ];
    for (c, x) in cols.iter_mut().zip(v) {
        c[row] = x;
    }
}

pub(crate) fn key_bits(k: BodyKey) -> u64 {
    u64::from(k.index) | (u64::from(k.generation) << 32)
}

pub(crate) fn key_from_bits(b: u64) -> BodyKey {
    BodyKey { index: b as u32, generation: (b >> 32) as u32 }
}
