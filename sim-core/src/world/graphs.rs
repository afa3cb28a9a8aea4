//! Behaviour graphs in the world (tick phase 5, before NPC steering): the
//! store of uploaded graphs with their compiled kernels, which entity runs
//! which graph for which source, and the batched run that turns each
//! graph's emitted ops into validated, applied ops.
//!
//! Order is fixed: graphs in ascending hash, NPCs in ascending handle,
//! actions in node order. All graphs run on the world as physics left it;
//! their ops are then validated and applied in that order, like a plan's.

use super::sensors::{build_neighbours, ray_distance, Neighbours, WorldSensors};
use super::rays::RayGrid;
use super::World;
use crate::graph::kernel::Part;
use crate::graph::{ActionKind, Graph, GraphError, Inputs, Kernel, NodeOp, Outputs};
use crate::ids::{Archetype, Handle, SourceId};
use crate::microplan::Section;
use crate::journal::{Clock, GraphRun, PlanJournal, TickJournal};
use crate::physics::PhysicsPort;
use crate::ports::Status;
use crate::schema::ColumnId;
use crate::table::{Location, Table};
use std::collections::BTreeMap;
use xxhash_rust::xxh3::Xxh3;

/// Graphs a world holds at once.
pub const MAX_GRAPHS: usize = 64;
/// What one source's bound graphs may cost per tick in total, milli-units
/// (static cost per NPC x NPCs bound): 10 ms of reference tick time. The
/// server (source 0) is not limited.
pub const MAX_BOUND_COST_PER_SOURCE: u64 = 10_000_000;

/// One entity driven by a graph.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Member {
    pub(crate) source: u32,
    /// The graph's registers for this entity (`state_count` vec3s).
    pub(crate) state: Vec<[f32; 3]>,
}

#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) graph: Graph,
    kernel: Kernel,
    /// The largest neighbour-sensor radius its nodes read (0: none).
    radius: f32,
    /// Whether it has a ray node.
    rays: bool,
    /// Its push nodes' (radius bits, mask), each once.
    pub(super) pushes: Vec<(u32, u16)>,
    /// By handle bits.
    pub(crate) members: BTreeMap<u64, Member>,
}

/// Every graph a world was given, and its bindings (part of snapshots and
/// of the world hash once anything is in it).
#[derive(Debug, Default)]
pub struct GraphStore {
    pub(crate) graphs: BTreeMap<u64, Loaded>,
    /// Handle bits -> graph hash.
    bound: BTreeMap<u64, u64>,
}

/// One op a graph emitted this tick, and what became of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GraphOp {
    pub graph: u64,
    pub handle: Handle,
    pub kind: ActionKind,
    /// Target, velocity or impulse.
    pub v: [f32; 3],
    /// Speed (move_to), else 0.
    pub s: f32,
    pub status: Status,
}

impl GraphStore {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.graphs.is_empty()
    }

    #[must_use]
    pub fn contains(&self, hash: u64) -> bool {
        self.graphs.contains_key(&hash)
    }

    /// The graph an entity runs, if any.
    #[must_use]
    pub fn bound_to(&self, h: Handle) -> Option<u64> {
        self.bound.get(&h.to_bits()).copied()
    }

    /// Graph hashes held, ascending.
    pub fn hashes(&self) -> impl Iterator<Item = u64> + '_ {
        self.graphs.keys().copied()
    }

    /// The decoded graph for a hash.
    #[must_use]
    pub fn graph(&self, hash: u64) -> Option<&Graph> {
        self.graphs.get(&hash).map(|l| &l.graph)
    }

    /// Entities bound to a graph.
    #[must_use]
    pub fn members(&self, hash: u64) -> usize {
        self.graphs.get(&hash).map_or(0, |l| l.members.len())
    }

    /// Whether `hash` can be added, and what that evicts: `Ok(None)` when
    /// it is held or a slot is free, `Ok(Some(victim))` (the lowest-hash
    /// unbound graph) when the store is full, `Err(())` when every held
    /// graph is bound.
    pub(crate) fn admit(&self, hash: u64) -> Result<Option<u64>, ()> {
        if self.graphs.contains_key(&hash) || self.graphs.len() < MAX_GRAPHS {
            return Ok(None);
        }
        self.graphs.iter().find(|(_, l)| l.members.is_empty()).map(|(&h, _)| Some(h)).ok_or(())
    }

    /// Adds a validated graph (no-op when held), first evicting `victim`
    /// (from [`GraphStore::admit`], chosen at validation so that the
    /// plan's binds are checked against what will be held).
    pub(crate) fn insert(&mut self, hash: u64, bytes: Vec<u8>, graph: Graph, victim: Option<u64>) {
        if self.graphs.contains_key(&hash) {
            return;
        }
        if let Some(v) = victim {
            self.graphs.remove(&v);
        }
        let kernel = Kernel::compile(&graph);
        let radius = graph.nodes.iter().filter(|n| matches!(n.op, NodeOp::Push | NodeOp::Nearest | NodeOp::Count)).map(|n| n.imm[0]).fold(0.0, f32::max);
        let rays = graph.nodes.iter().any(|n| n.op == NodeOp::Ray);
        let mut pushes: Vec<(u32, u16)> = graph.nodes.iter().filter(|n| n.op == NodeOp::Push).map(|n| (n.imm[0].to_bits(), n.arg)).collect();
        pushes.sort_unstable();
        pushes.dedup();
        self.graphs.insert(hash, Loaded { bytes, graph, kernel, radius, rays, pushes, members: BTreeMap::new() });
    }

    /// Decodes, validates and adds untrusted bytes (snapshot restore).
    pub(crate) fn insert_bytes(&mut self, bytes: Vec<u8>) -> Result<u64, GraphError> {
        let g = Graph::decode(&bytes)?;
        let hash = crate::graph::graph_hash(&bytes);
        // A snapshot holds at most MAX_GRAPHS (checked by its reader).
        let victim = self.admit(hash).unwrap_or(None);
        self.insert(hash, bytes, g, victim);
        Ok(hash)
    }

    /// Binds (or with graph 0, unbinds) an entity. A rebind to another
    /// graph starts from zeroed registers.
    pub(crate) fn bind(&mut self, h: u64, graph: u64, source: u32) {
        if let Some(old) = self.bound.get(&h).copied() {
            if old == graph {
                if let Some(m) = self.graphs.get_mut(&old).and_then(|l| l.members.get_mut(&h)) {
                    m.source = source;
                }
                return;
            }
            if let Some(l) = self.graphs.get_mut(&old) {
                l.members.remove(&h);
            }
            self.bound.remove(&h);
        }
        if graph == 0 {
            return;
        }
        if let Some(l) = self.graphs.get_mut(&graph) {
            l.members.insert(h, Member { source, state: vec![[0.0; 3]; l.graph.state_count as usize] });
            self.bound.insert(h, graph);
        }
    }

    pub(crate) fn restore_member(&mut self, graph: u64, h: u64, m: Member) -> Result<(), String> {
        let l = self.graphs.get_mut(&graph).ok_or("member of a graph that is not held")?;
        if m.state.len() != l.graph.state_count as usize || m.state.iter().flatten().any(|v| v.is_nan()) {
            return Err("member state does not match the graph's registers".into());
        }
        if self.bound.insert(h, graph).is_some() {
            return Err("entity bound twice".into());
        }
        l.members.insert(h, m);
        Ok(())
    }

    /// (graph, binding source) of an entity's binding.
    pub(crate) fn member_of(&self, h: u64) -> Option<(u64, u32)> {
        let g = *self.bound.get(&h)?;
        self.graphs.get(&g)?.members.get(&h).map(|m| (g, m.source))
    }

    /// Static cost per tick of everything `source` has bound, milli-units.
    #[must_use]
    pub fn source_cost(&self, source: u32) -> u64 {
        self.graphs.values().map(|l| l.members.values().filter(|m| m.source == source).count() as u64 * l.graph.cost_milli).sum()
    }

    /// Cost per NPC of a held graph.
    pub(crate) fn cost_of(&self, hash: u64) -> u64 {
        self.graphs.get(&hash).map_or(0, |l| l.graph.cost_milli)
    }

    /// Digest folded into the world hash; `None` while the store is empty
    /// (worlds without graphs hash as they always did).
    pub(crate) fn digest(&self) -> Option<u64> {
        if self.graphs.is_empty() {
            return None;
        }
        let mut h = Xxh3::new();
        h.update(b"dualplane/graphs/v1");
        for (hash, l) in &self.graphs {
            h.update(&hash.to_le_bytes());
            h.update(&(l.members.len() as u64).to_le_bytes());
            for (handle, m) in &l.members {
                h.update(&handle.to_le_bytes());
                h.update(&m.source.to_le_bytes());
                for v in &m.state {
                    h.update(bytemuck::cast_slice(v));
                }
            }
        }
        Some(h.digest())
    }
}

/// Reused buffers of the graph run.
#[derive(Debug, Default)]
pub(crate) struct GraphScratch {
    handles: Vec<u64>,
    pos: Vec<[f32; 3]>,
    vel: Vec<[f32; 3]>,
    health: Vec<f32>,
    target: Vec<[f32; 3]>,
    state: Vec<[f32; 3]>,
    out: Vec<(u64, Vec<u64>, Outputs)>,
    /// The kernels' per-worker buffers.
    parts: Vec<Part>,
    /// The neighbour grid and this tick's push sums.
    nb: Neighbours,
    /// Each gathered NPC's slot in the neighbour grid.
    slots: Vec<Option<u32>>,
    /// Every bound member's location this tick (graphs in order, members
    /// in order), looked up once.
    locs: Vec<Option<Location>>,
    /// Every collider, for the ray sensor (built in ticks where a bound
    /// graph has a ray node).
    rays: RayGrid,
    dead: Vec<u64>,
    pub(crate) ops: Vec<GraphOp>,
    /// The graph the plan being validated uploads: (hash, bytes, graph,
    /// the graph its upload will evict).
    pub(super) pending: Option<(u64, Vec<u8>, Graph, Option<u64>)>,
    /// Run graphs with the reference interpreter instead of their kernels.
    interpret: bool,
}

/// The columns of one table a graph's inputs are gathered from.
struct Cols<'t> {
    owner: &'t [u32],
    pos: [&'t [f32]; 3],
    vel: [&'t [f32]; 3],
    health: &'t [i32],
    /// None: the table has no move target (read as zero).
    target: Option<[&'t [f32]; 3]>,
}

impl<'t> Cols<'t> {
    fn of(t: &'t Table) -> Cols<'t> {
        let v3 = |a: ColumnId, b: ColumnId, c: ColumnId| [t.f32(a), t.f32(b), t.f32(c)];
        Cols {
            owner: t.u32(ColumnId::Owner),
            pos: v3(ColumnId::PosX, ColumnId::PosY, ColumnId::PosZ),
            vel: v3(ColumnId::LinvelX, ColumnId::LinvelY, ColumnId::LinvelZ),
            health: t.i32(ColumnId::Health),
            target: t.has(ColumnId::TargetX).then(|| v3(ColumnId::TargetX, ColumnId::TargetY, ColumnId::TargetZ)),
        }
    }
}

impl World {
    /// The graph store (read access).
    #[must_use]
    pub fn graphs(&self) -> &GraphStore {
        &self.graphs
    }

    /// Runs graphs with the reference interpreter (`true`) or their
    /// compiled kernels (the default). Results are bit-identical (a
    /// proptest holds them so), so this is no part of the world's state:
    /// it is for measuring the kernels against the interpreter, and not
    /// carried by snapshots.
    pub fn set_graph_interpreter(&mut self, on: bool) {
        self.graph_scratch.interpret = on;
    }

    /// Whether graphs run on the reference interpreter.
    #[must_use]
    pub fn graph_interpreter(&self) -> bool {
        self.graph_scratch.interpret
    }

    /// The ops graphs emitted in the last tick, in application order, with
    /// each one's validation status.
    #[must_use]
    pub fn graph_ops(&self) -> &[GraphOp] {
        &self.graph_scratch.ops
    }

    /// What a graph's `ray` node would read now, for each (origin,
    /// direction) (for reference policies and tests): distance along the
    /// direction (normalised) to the first hit within `max`, +inf when
    /// nothing is hit. One grid of the colliders serves all the rays.
    #[must_use]
    pub fn ray_distances(&self, rays: &[([f32; 3], [f32; 3])], max: f32) -> Vec<f32> {
        let mut grid = RayGrid::default();
        if super::rays::walks(max) {
            grid.build(&self.physics);
        }
        rays.iter().map(|&(o, d)| ray_distance(&grid, &self.physics, o, d, max)).collect()
    }

    /// Runs every bound graph once (tick phase 5) and applies their ops.
    pub(super) fn run_graphs(&mut self, journal: &mut TickJournal, clock: &mut dyn Clock) {
        self.graph_scratch.ops.clear();
        if self.graphs.bound.is_empty() {
            return;
        }
        let mut store = std::mem::take(&mut self.graphs);
        let mut sc = std::mem::take(&mut self.graph_scratch);
        sc.dead.clear();
        sc.locs.clear();
        for l in store.graphs.values() {
            sc.locs.extend(l.members.keys().map(|&h| self.index.get(Handle::from_bits(h))));
        }
        let (radius, readers) = store.graphs.values().filter(|l| !l.members.is_empty() && l.radius > 0.0).fold((0.0f32, 0u64), |(r, n), l| (r.max(l.radius), n + 1));
        // The sensors' grids are part of what the graphs that read them
        // cost: the time to build both is shared evenly among the graphs
        // that read either. The two are built side by side (each on its
        // own, so the same either way); outside a pool, one after the
        // other (sim-core starts no threads: `rayon::join` outside a pool
        // would run on rayon's global one).
        let rayers = store.graphs.values().filter(|l| !l.members.is_empty() && l.rays).count() as u64;
        let users = store.graphs.values().filter(|l| !l.members.is_empty() && (l.rays || l.radius > 0.0)).count() as u64;
        let t0 = clock.now_ns();
        let (rays, physics) = (&mut sc.rays, &self.physics);
        let mut build_rays = || {
            if rayers > 0 {
                rays.build(physics);
            }
        };
        let (nb, locs) = (&mut sc.nb, &sc.locs);
        let mut build_grid = || {
            if readers > 0 {
                build_neighbours(&store, &self.tables, radius, locs, nb);
            }
        };
        if crate::caller_threads() > 1 {
            rayon::join(build_rays, build_grid);
        } else {
            build_rays();
            build_grid();
        }
        let sensors_ns = clock.now_ns().saturating_sub(t0).checked_div(users).unwrap_or(0);
        // The columns the inputs are gathered from, looked up again only
        // when the archetype changes (a graph's NPCs are mostly one).
        let mut cols: Option<(Archetype, Cols<'_>)> = None;
        // Each run's outputs reuse last tick's buffers (no allocation once warm).
        let mut outs = std::mem::take(&mut sc.out);
        let mut ran = 0;
        let mut at = 0;
        for (&hash, l) in &store.graphs {
            let locs = &sc.locs[at..at + l.members.len()];
            at += l.members.len();
            if l.members.is_empty() {
                continue;
            }
            let t0 = clock.now_ns();
            sc.handles.clear();
            sc.pos.clear();
            sc.vel.clear();
            sc.health.clear();
            sc.target.clear();
            sc.state.clear();
            sc.slots.clear();
            for ((&h, m), &loc) in l.members.iter().zip(locs) {
                // Bindings whose entity died, or (bound by a policy) changed
                // hands, end this tick without running; the server's
                // bindings hold whoever owns the entity.
                let Some(loc) = loc else {
                    sc.dead.push(h);
                    continue;
                };
                if cols.as_ref().is_some_and(|(a, _)| *a != loc.archetype) {
                    cols = None;
                }
                let (_, c) = cols.get_or_insert_with(|| (loc.archetype, Cols::of(&self.tables[loc.archetype as usize])));
                let r = loc.row as usize;
                if m.source != SourceId::SERVER.0 && c.owner[r] != m.source {
                    sc.dead.push(h);
                    continue;
                }
                let row_of = |v: &[&[f32]; 3]| [v[0][r], v[1][r], v[2][r]];
                sc.handles.push(h);
                sc.pos.push(row_of(&c.pos));
                sc.vel.push(row_of(&c.vel));
                sc.health.push(c.health[r] as f32);
                sc.target.push(c.target.as_ref().map_or([0.0; 3], row_of));
                sc.state.extend_from_slice(&m.state);
                sc.slots.push(sc.nb.grid.slot(loc.archetype as usize, r).map(|s| s as u32));
            }
            if sc.handles.is_empty() {
                continue;
            }
            let inp = Inputs { tick: self.tick.0, pos: &sc.pos, vel: &sc.vel, health: &sc.health, target: &sc.target, state: &sc.state };
            let sensors = WorldSensors { physics: &self.physics, rays: &sc.rays, grid: &sc.nb.grid, pos: &sc.pos, pushes: &sc.nb.pushes, slots: &sc.slots };
            if outs.len() == ran {
                outs.push((0, Vec::new(), Outputs::default()));
            }
            let (h, handles, out) = &mut outs[ran];
            ran += 1;
            *h = hash;
            handles.clear();
            handles.extend_from_slice(&sc.handles);
            if sc.interpret {
                *out = crate::graph::interpret(&l.graph, &inp, &mut { sensors });
            } else {
                l.kernel.run_par(&inp, || sensors, out, &mut sc.parts);
            }
            let shared = if l.radius > 0.0 || l.rays { sensors_ns } else { 0 };
            journal.graphs.push(GraphRun { graph: hash, npcs: sc.handles.len() as u32, exec_ns: clock.now_ns().saturating_sub(t0) + shared, ..GraphRun::default() });
        }
        outs.truncate(ran);
        for &h in &sc.dead {
            store.bind(h, 0, 0);
        }
        // Apply in graph order, then NPC, then node order.
        for (run, (hash, handles, out)) in journal.graphs.iter_mut().zip(&outs) {
            let Some(l) = store.graphs.get_mut(hash) else { continue };
            let regs = l.graph.state_count as usize;
            // Both ascending by handle: a merge, not a lookup per NPC.
            let mut ran = handles.iter().enumerate().peekable();
            for (&h, m) in &mut l.members {
                while ran.next_if(|&(_, &x)| x < h).is_some() {}
                if let Some((i, _)) = ran.next_if(|&(_, &x)| x == h) {
                    m.state.copy_from_slice(&out.state[i * regs..(i + 1) * regs]);
                }
            }
            for e in &out.emits {
                let h = Handle::from_bits(handles[e.npc as usize]);
                let status = match self.check_graph_op(h, e.kind, e.v, e.s) {
                    Ok(()) => {
                        self.apply_graph_op(h, e.kind, e.v, e.s);
                        Status::Ok
                    }
                    Err(code) => code,
                };
                run.ops_emitted += 1;
                if status != Status::Ok {
                    run.ops_rejected += 1;
                }
                sc.ops.push(GraphOp { graph: *hash, handle: h, kind: e.kind, v: e.v, s: e.s, status });
            }
        }
        sc.out = outs;
        self.graph_scratch = sc;
        self.graphs = store;
    }

    fn check_graph_op(&self, h: Handle, kind: ActionKind, v: [f32; 3], s: f32) -> Result<(), Status> {
        let loc = self.index.check(h)?;
        match kind {
            ActionKind::MoveTo => Self::check_move_to(loc.archetype, v, s),
            ActionKind::SetVelocity => Self::check_velocity(loc.archetype, v, [0.0; 3]),
            ActionKind::Impulse => Self::check_impulse(loc.archetype, v),
        }
    }

    fn apply_graph_op(&mut self, h: Handle, kind: ActionKind, v: [f32; 3], s: f32) {
        match kind {
            ActionKind::MoveTo => self.set_move_target(h, v, s),
            ActionKind::SetVelocity => {
                if let Some(k) = self.key_of(h) {
                    self.physics.set_velocity(k, v, [0.0; 3]);
                }
            }
            ActionKind::Impulse => {
                if let Some(k) = self.key_of(h) {
                    self.physics.apply_impulse(k, v);
                }
            }
        }
    }

    /// Validation of a `graph_bind` op's target: live, owned by `source`
    /// (or the server's), not an avatar.
    pub(super) fn check_bind(&self, source: SourceId, h: Handle, despawned: &[(u64, u32)]) -> Result<Archetype, Status> {
        let loc = self.check_handle(source, h, despawned)?;
        if loc.archetype == Archetype::Avatar {
            return Err(Status::WrongArchetype);
        }
        Ok(loc.archetype)
    }

    /// Validates a plan's `graph_upload` section: the words decode to a
    /// valid graph and the store has room. Keeps the decoded graph for
    /// apply. A refusal names the op: the first word of the node at fault,
    /// else the section's first op.
    pub(super) fn check_graph_upload(&mut self, s: &Section<'_>) -> Result<(), (usize, Status)> {
        let mut bytes = Vec::with_capacity(s.count * 4);
        for i in 0..s.count {
            bytes.extend_from_slice(&s.u32(0, i).to_le_bytes());
        }
        let g = Graph::decode(&bytes).map_err(|e| {
            let at = e.node.map_or(0, |n| (crate::graph::HEADER_SIZE + n as usize * crate::graph::NODE_SIZE) / 4);
            (at.min(s.count.saturating_sub(1)), e.status)
        })?;
        let hash = crate::graph::graph_hash(&bytes);
        let victim = self.graphs.admit(hash).map_err(|()| (0, Status::GraphTooLarge))?;
        self.graph_scratch.pending = Some((hash, bytes, g, victim));
        Ok(())
    }

    /// Validates a plan's `graph_bind` section: each entity bindable by
    /// the source and named once, each graph held (and not evicted by
    /// this plan's upload) or uploaded by this plan, and the source's
    /// bound cost within [`MAX_BOUND_COST_PER_SOURCE`].
    pub(super) fn check_graph_binds(&self, source: SourceId, s: &Section<'_>, despawned: &[(u64, u32)], pj: &mut PlanJournal) {
        let pending = self.graph_scratch.pending.as_ref().map(|(h, _, g, v)| (*h, g.cost_milli, *v));
        let evicted = pending.and_then(|p| p.2);
        let cost_of = |g: u64| -> Option<u64> {
            match pending {
                Some((h, c, _)) if h == g => Some(c),
                _ if evicted == Some(g) => None,
                _ => self.graphs.graph(g).map(|x| x.cost_milli),
            }
        };
        // A handle named twice would have its old binding's cost refunded
        // twice: every repeat after the first is refused.
        let mut named: Vec<(u64, usize)> = (0..s.count).map(|i| (s.handle(0, i).to_bits(), i)).collect();
        named.sort_unstable();
        let mut repeats: Vec<usize> = named.windows(2).filter(|w| w[0].0 == w[1].0).map(|w| w[1].1).collect();
        repeats.sort_unstable();
        let mut total = self.graphs.source_cost(source.0);
        for i in 0..s.count {
            let idx = s.first_op + i as u32;
            let (h, g) = (s.handle(0, i), s.u64(1, i));
            if repeats.binary_search(&i).is_ok() {
                pj.reject(idx, Status::DuplicateHandle);
                continue;
            }
            if let Err(code) = self.check_bind(source, h, despawned) {
                pj.reject(idx, code);
                continue;
            }
            let Some(new) = (if g == 0 { Some(0) } else { cost_of(g) }) else {
                pj.reject(idx, Status::UnknownGraph);
                continue;
            };
            let old = self.graphs.member_of(h.to_bits()).filter(|&(_, src)| src == source.0).map_or(0, |(g, _)| self.graphs.cost_of(g));
            let next = total.saturating_sub(old).saturating_add(new);
            if source != SourceId::SERVER && next > MAX_BOUND_COST_PER_SOURCE {
                pj.reject(idx, Status::GraphOverBudget);
                continue;
            }
            total = next;
        }
    }

    /// Applies a validated `graph_upload` section.
    pub(super) fn apply_graph_upload(&mut self) {
        if let Some((hash, bytes, g, victim)) = self.graph_scratch.pending.take() {
            self.graphs.insert(hash, bytes, g, victim);
        }
    }

    /// Applies a validated `graph_bind` section.
    pub(super) fn apply_graph_binds(&mut self, source: SourceId, s: &Section<'_>) {
        for i in 0..s.count {
            self.graphs.bind(s.handle(0, i).to_bits(), s.u64(1, i), source.0);
        }
    }
}
