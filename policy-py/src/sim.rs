//! `dualplane.Sim`: sim-core in process, for training, tests and analysis.
//!
//! Column views are numpy arrays over the Rust columns themselves (no
//! copy), read-only, whose `base` is a [`ColumnLease`]. Views are *live*:
//! they show each new tick in place (copy what you want to keep). A lease
//! keeps the `Sim` alive and carries the *generation* it was made in; the
//! `Sim` never frees memory a live view may point into:
//! - a step whose spawns would grow a table past its capacity, while views
//!   of that table's allocation are alive, first moves the table to a bigger
//!   allocation and keeps the old one (old views keep showing the values
//!   they last saw; call `columns()` again);
//! - `restore()` keeps the replaced world while views of it are alive.
//!
//! Kept memory is tagged with the generations that could see it (born ..
//! retired) and freed as soon as no lease of those generations is alive, so
//! one long-lived view cannot pin every later allocation.
//! A view's length is the row count when `columns()` was called; rows
//! beyond the current count (after despawns) hold stale values but are
//! still allocated memory. Do not read views from another thread while
//! `step` runs (the GIL is released and the columns are being written).

use crate::{ffi, value_error};
use numpy::{ndarray, Element, PyArray1, PyArrayMethods, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use sim_core::table::ColumnData;
use sim_core::{Archetype, MicroPlan, OpKind, PlanQueue, Scenario, Status, World};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug)]
struct WallClock(Instant);

impl sim_core::Clock for WallClock {
    fn now_ns(&mut self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

pub(crate) fn archetype(name: &str) -> PyResult<Archetype> {
    Archetype::ALL.into_iter().find(|a| a.name() == name).ok_or_else(|| {
        value_error(format!("unknown archetype {name:?}; expected one of {:?}", Archetype::ALL.map(Archetype::name)))
    })
}

pub(crate) fn status_enum<'py>(py: Python<'py>, s: Status) -> PyResult<Bound<'py, PyAny>> {
    py.import("dualplane._ports")?.getattr("Status")?.call1((s as u16,))
}

/// One plan from Python: `bytes` or a `PlanBuilder` (built here, without
/// the round trip through a Python `bytes`).
pub(crate) fn one_plan(obj: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Some(b.as_bytes().to_vec());
    }
    obj.cast::<crate::plan::PyPlanBuilder>().ok().map(|b| b.borrow().build_vec())
}

/// Plans from Python: one `bytes` or `PlanBuilder`, or a list/tuple of them.
pub(crate) fn plan_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u8>>> {
    if let Some(p) = one_plan(obj) {
        return Ok(vec![p]);
    }
    let mut out = Vec::new();
    for item in obj.try_iter().map_err(|_| crate::type_error("plans must be bytes, a PlanBuilder, or a list of them"))? {
        let item = item?;
        let b = one_plan(&item).ok_or_else(|| crate::type_error(format!("plans must be bytes/PlanBuilder or a list of them; found {}", item.get_type().name().map_or_else(|_| "?".into(), |n| n.to_string()))))?;
        out.push(b);
    }
    Ok(out)
}

/// The `base` of every column view: keeps the `Sim` alive and marks its
/// generation as having live views.
#[pyclass(module = "dualplane._native", frozen)]
#[derive(Debug)]
pub struct ColumnLease {
    #[pyo3(get)]
    sim: Py<Sim>,
    _generation: Arc<()>,
}

fn view<'py, T: Element>(v: &[T], lease: &Bound<'py, ColumnLease>) -> Bound<'py, PyAny> {
    let av = ndarray::ArrayView1::from(v);
    // SAFETY: the array borrows memory owned by the `Sim` that `lease`
    // keeps alive; the `Sim` never frees or moves that allocation while a
    // lease is alive (see the module docs), and the view is made read-only
    // before Python sees it (numpy refuses to make a borrowed array
    // writeable again because its base exposes no writeable buffer).
    let arr = unsafe { PyArray1::borrow_from_array(&av, lease.clone().into_any()) };
    drop(arr.readwrite().make_nonwriteable());
    arr.into_any()
}

/// Memory kept for live views.
#[derive(Debug)]
enum Kept {
    Columns(#[allow(dead_code)] Vec<ColumnData>),
    World(#[allow(dead_code)] Box<World>),
}

/// A deterministic world in this process.
#[pyclass(module = "dualplane._native")]
#[derive(Debug)]
pub struct Sim {
    world: World,
    queue: PlanQueue,
    /// The current generation and its token (each lease holds a clone).
    generation: u64,
    token: Arc<()>,
    /// Tokens of earlier generations that still had views when they ended.
    past: Vec<(u64, Arc<()>)>,
    /// The generation in which each table's current allocation was made.
    born: [u64; Archetype::COUNT],
    /// (born, last generation that could see it, memory).
    kept: Vec<(u64, u64, Kept)>,
    clock: WallClock,
    /// Steps run on this pool (graph batches, and rapier's step where
    /// built with `parallel`, split across it; hashes are the same for
    /// every count). Always a pool of its own, one thread by default: a
    /// step outside any pool would send rapier's parallel step to rayon's
    /// global pool, a thread per core in every process.
    pool: rayon::ThreadPool,
}

impl Sim {
    fn with_world(world: World, threads: usize) -> PyResult<Sim> {
        if !(1..=256).contains(&threads) {
            return Err(value_error(format!("Sim: threads must be 1..=256, got {threads}")));
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("dualplane-sim-{i}")).build();
        let pool = pool.map_err(|e| value_error(format!("Sim: cannot start {threads} threads: {e}")))?;
        Ok(Sim {
            world,
            queue: PlanQueue::default(),
            generation: 0,
            token: Arc::new(()),
            past: Vec::new(),
            born: [0; Archetype::COUNT],
            kept: Vec::new(),
            clock: WallClock(Instant::now()),
            pool,
        })
    }

    /// Generations with at least one live view.
    fn live_generations(&mut self) -> Vec<u64> {
        self.past.retain(|(_, t)| Arc::strong_count(t) > 1);
        let mut live: Vec<u64> = self.past.iter().map(|(g, _)| *g).collect();
        if Arc::strong_count(&self.token) > 1 {
            live.push(self.generation);
        }
        live
    }

    /// Frees kept memory no live view can see; returns the live generations.
    fn collect(&mut self) -> Vec<u64> {
        let live = self.live_generations();
        self.kept.retain(|(born, until, _)| live.iter().any(|g| born <= g && g <= until));
        live
    }

    /// Starts a new generation: views made from now on see new memory.
    fn next_generation(&mut self) {
        let old = std::mem::replace(&mut self.token, Arc::new(()));
        if Arc::strong_count(&old) > 1 {
            self.past.push((self.generation, old));
        }
        self.generation += 1;
    }

    /// Keeps every allocation a live view may point into (module docs).
    fn prepare_growth(&mut self, plans: &[MicroPlan]) {
        let live = self.collect();
        if live.is_empty() {
            return;
        }
        let mut spawns = [0usize; Archetype::COUNT];
        for p in plans {
            if let Some(s) = p.section(OpKind::Spawn) {
                for i in 0..s.count {
                    if let Some(n) = spawns.get_mut(s.u32(0, i) as usize) {
                        *n += 1;
                    }
                }
            }
        }
        let mut moved = false;
        for a in Archetype::ALL {
            let t = self.world.table(a);
            let need = t.len() + spawns[a as usize];
            let seen = live.iter().any(|g| *g >= self.born[a as usize]);
            if need > t.capacity() && seen {
                let old = self.world.regrow_table(a, (need * 2).max(64));
                self.kept.push((self.born[a as usize], self.generation, Kept::Columns(old)));
                self.born[a as usize] = self.generation + 1;
                moved = true;
            }
        }
        if moved {
            self.next_generation();
        }
    }

    fn lease<'py>(slf: &Bound<'py, Self>, this: &Sim) -> PyResult<Bound<'py, ColumnLease>> {
        Bound::new(slf.py(), ColumnLease { sim: slf.clone().unbind(), _generation: Arc::clone(&this.token) })
    }

    fn archetype_columns<'py>(&self, py: Python<'py>, a: Archetype, lease: &Bound<'py, ColumnLease>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (id, data) in self.world.table(a).columns() {
            let arr = match data {
                ColumnData::U64(v) => view(v, lease),
                ColumnData::U32(v) => view(v, lease),
                ColumnData::I32(v) => view(v, lease),
                ColumnData::F32(v) => view(v, lease),
            };
            d.set_item(id.name(), arr)?;
        }
        Ok(d)
    }
}

#[pymethods]
impl Sim {
    /// `Sim(scenario=None, seed=None, threads=1)`: `scenario` is a TOML
    /// file path (the embedded default arena when omitted, as `dualplane
    /// simulate`); `seed` overrides the scenario's seed; `threads` > 1
    /// steps on a pool of that many threads (behaviour-graph batches split
    /// across it, as in `dualplane serve --threads`; the same hashes).
    #[new]
    #[pyo3(signature = (scenario = None, seed = None, threads = 1))]
    fn new(scenario: Option<PathBuf>, seed: Option<u64>, threads: usize) -> PyResult<Sim> {
        ffi();
        let s = match scenario {
            Some(p) => Scenario::load(&p).map_err(|e| value_error(e.to_string()))?,
            None => Scenario::default_arena(),
        };
        Sim::with_world(World::from_scenario(&s, seed), threads)
    }

    /// Threads a step runs on (`Sim(..., threads=N)`).
    #[getter]
    fn threads(&self) -> usize {
        ffi();
        self.pool.current_num_threads()
    }

    /// A `Sim` from scenario TOML text.
    #[staticmethod]
    #[pyo3(signature = (text, seed = None, name = "scenario.toml", threads = 1))]
    fn from_toml(text: &str, seed: Option<u64>, name: &str, threads: usize) -> PyResult<Sim> {
        ffi();
        let s = Scenario::parse(text, name).map_err(|e| value_error(e.to_string()))?;
        Sim::with_world(World::from_scenario(&s, seed), threads)
    }

    /// The last simulated tick.
    #[getter]
    fn tick(&self) -> u64 {
        ffi();
        self.world.tick().0
    }

    /// xxh3 world hash of the current tick (the one `dualplane simulate`
    /// prints).
    fn world_hash(&self) -> u64 {
        ffi();
        self.world.world_hash()
    }

    fn entity_count(&self) -> usize {
        ffi();
        self.world.entity_count()
    }

    /// Queues a plan for its target tick (the `submit_plan` port). Returns
    /// `Status.OK` or why it was refused (late, too far ahead, malformed).
    /// `check=False` skips the lead window (recorded plan files).
    #[pyo3(signature = (plan, check = true))]
    fn submit<'py>(&mut self, py: Python<'py>, plan: &Bound<'py, PyAny>, check: bool) -> PyResult<Bound<'py, PyAny>> {
        ffi();
        // A builder's plan was sealed here: not checksummed a second time.
        let decoded = match plan.cast::<crate::plan::PyPlanBuilder>() {
            Ok(b) => b.borrow().build_plan(),
            Err(_) => MicroPlan::decode(one_plan(plan).ok_or_else(|| crate::type_error("submit: plan must be bytes or a PlanBuilder"))?),
        };
        let status = match decoded {
            Err(e) => e.status,
            Ok(p) if !check => {
                self.queue.insert_unchecked(p);
                Status::Ok
            }
            Ok(p) => match self.queue.submit(p, self.world.tick()) {
                Ok(()) => Status::Ok,
                Err(s) => s,
            },
        };
        status_enum(py, status)
    }

    /// Advances one tick with the queued plans due now plus `plans` (bytes
    /// or a list of bytes; they must target the next tick). The GIL is
    /// released while stepping. Malformed plans are journaled, not raised.
    #[pyo3(signature = (plans = None))]
    fn step(mut slf: PyRefMut<'_, Self>, py: Python<'_>, plans: Option<&Bound<'_, PyAny>>) -> PyResult<Journal> {
        ffi();
        let raw = match plans {
            Some(p) if !p.is_none() => plan_bytes(p)?,
            _ => Vec::new(),
        };
        let this = &mut *slf;
        let next = this.world.tick().next();
        let mut due = this.queue.take(next);
        let mut bad = Vec::new();
        for b in raw {
            match MicroPlan::decode(b) {
                Ok(p) => due.push(p),
                Err(e) => bad.push((e.status, e.detail)),
            }
        }
        this.prepare_growth(&due);
        let (world, clock, pool) = (&mut this.world, &mut this.clock, &this.pool);
        let mut j = py.detach(move || pool.install(|| world.step(&due, clock).clone()));
        let mut errors = vec![None; j.plans.len()];
        for (status, detail) in bad {
            // A plan that did not decode has no trustworthy header fields.
            let mut pj = sim_core::PlanJournal::new(sim_core::SourceId(u32::MAX), 0, 0);
            pj.status = status;
            j.plans.push(pj);
            errors.push(Some(detail));
        }
        Ok(Journal { inner: j, errors })
    }

    /// Read-only numpy views (no copy) of one archetype's columns, by column
    /// name; with no archetype, a dict of those dicts for every archetype.
    #[pyo3(signature = (archetype = None))]
    fn columns<'py>(slf: &Bound<'py, Self>, archetype: Option<&str>) -> PyResult<Bound<'py, PyDict>> {
        ffi();
        let py = slf.py();
        let this = slf.try_borrow()?;
        let lease = Sim::lease(slf, &this)?;
        match archetype {
            Some(name) => this.archetype_columns(py, self::archetype(name)?, &lease),
            None => {
                let all = PyDict::new(py);
                for a in Archetype::ALL {
                    all.set_item(a.name(), this.archetype_columns(py, a, &lease)?)?;
                }
                Ok(all)
            }
        }
    }

    /// Entity handles: a zero-copy view of one archetype's handle column, or
    /// a copy of every live handle (table order) with no archetype.
    #[pyo3(signature = (archetype = None))]
    fn handles<'py>(slf: &Bound<'py, Self>, archetype: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
        ffi();
        let py = slf.py();
        let this = slf.try_borrow()?;
        match archetype {
            Some(name) => {
                let a = self::archetype(name)?;
                let lease = Sim::lease(slf, &this)?;
                Ok(view(this.world.table(a).handles(), &lease))
            }
            None => {
                let all: Vec<u64> = this.world.tables().iter().flat_map(|t| t.handles().iter().copied()).collect();
                Ok(PyArray1::from_vec(py, all).into_any())
            }
        }
    }

    /// The whole world as versioned bytes.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        ffi();
        let b = self.world.snapshot().map_err(|e| value_error(e.to_string()))?;
        Ok(PyBytes::new(py, &b))
    }

    /// Replaces the world with snapshot bytes (continues bit-identically).
    /// Bad bytes raise `ValueError` and leave this `Sim` unchanged.
    fn restore(&mut self, snapshot: &Bound<'_, PyBytes>) -> PyResult<()> {
        ffi();
        let w = World::restore(snapshot.as_bytes()).map_err(|e| value_error(format!("restore: {e}")))?;
        let old = std::mem::replace(&mut self.world, w);
        self.queue = PlanQueue::default();
        let live = self.collect();
        let born = self.born.iter().copied().min().unwrap_or(0);
        if live.iter().any(|g| *g >= born) {
            self.kept.push((born, self.generation, Kept::World(Box::new(old))));
        }
        self.born = [self.generation + 1; Archetype::COUNT];
        self.next_generation();
        Ok(())
    }

    /// What `source` observes now: its entities and every entity within
    /// `radius` metres of one (the dict `Session.observation` returns from
    /// a server, built by the same code: see `dualplane.policy.Observation`).
    #[pyo3(signature = (source, radius = 8.0))]
    fn observation<'py>(&self, py: Python<'py>, source: u32, radius: f32) -> PyResult<Bound<'py, PyDict>> {
        ffi();
        crate::observation::request(1, radius)?;
        crate::observation::to_dict(py, net::observe::Observed::of(&self.world, source, radius))
    }

    /// The world drawn by the offscreen renderer (wgpu; Mesa lavapipe on
    /// CPU): uint8[height, width, 3]. Cameras: "overview", "top".
    #[pyo3(signature = (width = 320, height = 240, camera = "overview"))]
    fn render<'py>(&self, py: Python<'py>, width: u32, height: u32, camera: &str) -> PyResult<Bound<'py, numpy::PyArray3<u8>>> {
        ffi();
        crate::render::frame(py, &self.world, width, height, camera)
    }

    /// What a behaviour graph's `ray` node reads now, for each row:
    /// distance along `directions` (normalised) from `origins` to the first
    /// hit within `max_distance`; +inf when nothing is hit. float32[n].
    fn raycast<'py>(&self, py: Python<'py>, origins: PyReadonlyArray2<'py, f32>, directions: PyReadonlyArray2<'py, f32>, max_distance: f32) -> PyResult<Bound<'py, PyArray1<f32>>> {
        ffi();
        let (o, d) = (origins.as_array(), directions.as_array());
        if o.ncols() != 3 || d.shape() != o.shape() {
            return Err(value_error(format!("origins and directions must both be float32[n, 3]; got {:?} and {:?}", o.shape(), d.shape())));
        }
        let rays: Vec<([f32; 3], [f32; 3])> = o.rows().into_iter().zip(d.rows()).map(|(o, d)| ([o[0], o[1], o[2]], [d[0], d[1], d[2]])).collect();
        let out = self.world.ray_distances(&rays, max_distance);
        Ok(PyArray1::from_vec(py, out))
    }

    /// The ops behaviour graphs emitted in the last tick, in application
    /// order (graph hash, then handle, then node): a dict of arrays
    /// `graph` uint64, `handle` uint64, `kind` uint8 (0 move_to,
    /// 1 set_velocity, 2 impulse), `v` float32[n, 3] (target, velocity or
    /// impulse), `s` float32 (move_to speed), `status` uint16.
    fn graph_ops<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        ffi();
        let ops = self.world.graph_ops();
        let d = PyDict::new(py);
        d.set_item("graph", PyArray1::from_iter(py, ops.iter().map(|o| o.graph)))?;
        d.set_item("handle", PyArray1::from_iter(py, ops.iter().map(|o| o.handle.to_bits())))?;
        d.set_item("kind", PyArray1::from_iter(py, ops.iter().map(|o| o.kind as u8)))?;
        let v: Vec<f32> = ops.iter().flat_map(|o| o.v).collect();
        d.set_item("v", PyArray1::from_vec(py, v).reshape([ops.len(), 3])?)?;
        d.set_item("s", PyArray1::from_iter(py, ops.iter().map(|o| o.s)))?;
        d.set_item("status", PyArray1::from_iter(py, ops.iter().map(|o| o.status as u16)))?;
        Ok(d)
    }

    /// Graphs the world holds: {hash: number of entities bound}.
    fn graphs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        ffi();
        let d = PyDict::new(py);
        let store = self.world.graphs();
        for h in store.hashes() {
            d.set_item(h, store.members(h))?;
        }
        Ok(d)
    }

    /// Address of a column's first element (for zero-copy tests).
    fn _column_address(&self, archetype: &str, column: &str) -> PyResult<usize> {
        let t = self.world.table(self::archetype(archetype)?);
        let (_, data) = t.columns().find(|(id, _)| id.name() == column).ok_or_else(|| value_error(format!("no column {column:?} in {archetype}")))?;
        Ok(data.bytes().as_ptr() as usize)
    }

    /// (generations with live views, kept column sets, kept worlds), after
    /// freeing what no view can see (diagnostics and tests).
    fn _lease_state(&mut self) -> (usize, usize, usize) {
        let live = self.collect();
        let cols = self.kept.iter().filter(|k| matches!(k.2, Kept::Columns(_))).count();
        (live.len(), cols, self.kept.len() - cols)
    }

    fn __repr__(&self) -> String {
        format!("Sim(tick={}, entities={}, world_hash={:#018x})", self.world.tick().0, self.world.entity_count(), self.world.world_hash())
    }
}

/// What one plan did.
#[pyclass(module = "dualplane._native", frozen)]
#[derive(Debug)]
pub struct PlanJournal {
    inner: sim_core::PlanJournal,
    error: Option<String>,
}

#[pymethods]
impl PlanJournal {
    #[getter]
    fn source(&self) -> u32 {
        ffi();
        self.inner.source.0
    }
    #[getter]
    fn sequence(&self) -> u32 {
        ffi();
        self.inner.sequence
    }
    #[getter]
    fn correlation(&self) -> u64 {
        ffi();
        self.inner.correlation
    }
    /// `Status.OK`, or the first rejection's code (the plan was not applied).
    #[getter]
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ffi();
        status_enum(py, self.inner.status)
    }
    /// Why a plan could not even be decoded (None when it was).
    #[getter]
    fn error(&self) -> Option<String> {
        ffi();
        self.error.clone()
    }
    /// (op index uint32[N], status code uint16[N]) of rejected ops.
    #[getter]
    fn rejected<'py>(&self, py: Python<'py>) -> (Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<u16>>) {
        ffi();
        let codes: Vec<u16> = self.inner.rejected_code.iter().map(|s| *s as u16).collect();
        (PyArray1::from_vec(py, self.inner.rejected_index.clone()), PyArray1::from_vec(py, codes))
    }
    #[getter]
    fn spawned<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        ffi();
        PyArray1::from_vec(py, self.inner.spawned.iter().map(|h| h.to_bits()).collect())
    }
    /// Raycast results: (hit uint32[N]: 0 none, 1 entity, 2 static;
    /// handle uint64[N]; distance float32[N]).
    fn rays<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        ffi();
        rays_tuple(py, std::slice::from_ref(&self.inner))
    }
    /// Overlap results as CSR: (offsets uint32[Q+1], handles uint64[...]).
    fn overlaps<'py>(&self, py: Python<'py>) -> (Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<u64>>) {
        ffi();
        (PyArray1::from_vec(py, self.inner.overlap_offsets.clone()), PyArray1::from_vec(py, self.inner.overlap_handles.clone()))
    }
    fn __repr__(&self) -> String {
        format!("PlanJournal(source={}, sequence={}, status={})", self.inner.source.0, self.inner.sequence, self.inner.status.name())
    }
}

fn rays_tuple<'py>(py: Python<'py>, plans: &[sim_core::PlanJournal]) -> PyResult<Bound<'py, PyTuple>> {
    let hit: Vec<u32> = plans.iter().flat_map(|p| p.ray_hit.iter().copied()).collect();
    let handle: Vec<u64> = plans.iter().flat_map(|p| p.ray_handle.iter().copied()).collect();
    let dist: Vec<f32> = plans.iter().flat_map(|p| p.ray_distance.iter().copied()).collect();
    PyTuple::new(py, [PyArray1::from_vec(py, hit).into_any(), PyArray1::from_vec(py, handle).into_any(), PyArray1::from_vec(py, dist).into_any()])
}

/// Overlap results as numpy CSR: (offsets, handles).
type Csr<'py> = (Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<u64>>);

/// What one tick did.
#[pyclass(module = "dualplane._native", frozen)]
#[derive(Debug)]
pub struct Journal {
    inner: sim_core::TickJournal,
    errors: Vec<Option<String>>,
}

#[pymethods]
impl Journal {
    #[getter]
    fn tick(&self) -> u64 {
        ffi();
        self.inner.tick.0
    }
    #[getter]
    fn world_hash(&self) -> u64 {
        ffi();
        self.inner.world_hash
    }
    #[getter]
    fn schema_version(&self) -> u32 {
        ffi();
        self.inner.schema_version
    }
    /// One entry per plan received, in application order (plans that could
    /// not be decoded last).
    #[getter]
    fn plans<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        ffi();
        let items: Vec<PlanJournal> = self.inner.plans.iter().zip(&self.errors).map(|(p, e)| PlanJournal { inner: p.clone(), error: e.clone() }).collect();
        PyList::new(py, items)
    }
    /// Raycast results of every plan this tick, concatenated in plan order.
    fn rays<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        ffi();
        rays_tuple(py, &self.inner.plans)
    }
    /// Overlap results of the plans from `source` (every plan when None)
    /// this tick, concatenated in plan order as CSR: (offsets uint32[Q+1],
    /// handles uint64[...]); None when they made no overlap query.
    #[pyo3(signature = (source = None))]
    fn overlaps<'py>(&self, py: Python<'py>, source: Option<u32>) -> Option<Csr<'py>> {
        ffi();
        let (mut offsets, mut handles) = (vec![0u32], Vec::new());
        for p in self.inner.plans.iter().filter(|p| source.is_none_or(|s| p.source.0 == s)) {
            for w in p.overlap_offsets.windows(2) {
                handles.extend_from_slice(&p.overlap_handles[w[0] as usize..w[1] as usize]);
                offsets.push(handles.len() as u32);
            }
        }
        (offsets.len() > 1).then(|| (PyArray1::from_vec(py, offsets), PyArray1::from_vec(py, handles)))
    }
    /// Each behaviour graph that ran this tick (ascending hash): dicts
    /// with `graph`, `npcs`, `ops_emitted`, `ops_rejected`, `exec_ns`
    /// (wall clock; never hashed).
    #[getter]
    fn graphs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        ffi();
        let l = PyList::empty(py);
        for g in &self.inner.graphs {
            let d = PyDict::new(py);
            d.set_item("graph", g.graph)?;
            d.set_item("npcs", g.npcs)?;
            d.set_item("ops_emitted", g.ops_emitted)?;
            d.set_item("ops_rejected", g.ops_rejected)?;
            d.set_item("exec_ns", g.exec_ns)?;
            l.append(d)?;
        }
        Ok(l)
    }
    /// Nanoseconds per phase (wall clock; never hashed).
    #[getter]
    fn phase_ns<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        ffi();
        let d = PyDict::new(py);
        for (p, ns) in sim_core::Phase::ALL.iter().zip(self.inner.phase_ns) {
            d.set_item(p.name(), ns)?;
        }
        Ok(d)
    }
    #[getter]
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        ffi();
        let c = &self.inner.counters;
        let d = PyDict::new(py);
        for a in Archetype::ALL {
            d.set_item(format!("bodies_{}", a.name()), c.bodies_per_archetype[a as usize])?;
        }
        for (k, v) in [
            ("active_bodies", c.active_bodies),
            ("contact_pairs", c.contact_pairs),
            ("plans_received", c.plans_received),
            ("plans_applied", c.plans_applied),
            ("plans_rejected", c.plans_rejected),
            ("ops_applied", c.ops_applied),
            ("spawned", c.spawned),
            ("despawned", c.despawned),
            ("despawned_out_of_bounds", c.despawned_out_of_bounds),
            ("out_of_bounds_damage", c.out_of_bounds_damage),
            ("npc_retargets", c.npc_retargets),
        ] {
            d.set_item(k, v)?;
        }
        Ok(d)
    }
    fn __repr__(&self) -> String {
        format!("Journal(tick={}, world_hash={:#018x}, plans={})", self.inner.tick.0, self.inner.world_hash, self.inner.plans.len())
    }
}
