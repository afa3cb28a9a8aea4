//! `dualplane.SimPool`: n worlds stepped together on a thread pool, with
//! the GIL released, in one call (the EnvPool shape: one batched action
//! array in, one batched observation array out).
//!
//! Each world is an ordinary sim-core `World` (world `i` is seeded with
//! `seed + i`), stepped exactly as `Sim.step` steps it, so a pool's world
//! hashes equal those of the same worlds stepped one after another, for any
//! thread count. Observations are new arrays each call whose memory numpy
//! takes over from Rust (filled in parallel, never copied), so unlike
//! `Sim.columns` views they stay valid after the next step.

use crate::{ffi, type_error, value_error};
use numpy::{IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use rayon::prelude::*;
use sim_core::table::ColumnData;
use sim_core::{Archetype, ColumnId, Handle, MicroPlan, NoClock, Op, PlanBuilder, Scenario, SourceId, Status, World};
use std::path::PathBuf;

/// Sequence numbers of the plans the pool builds itself (grants, moves).
const POOL_SEQUENCE: u32 = 0x5000_0000;

#[pyclass(module = "dualplane._native")]
#[derive(Debug)]
pub struct SimPool {
    worlds: Vec<World>,
    /// Each world's reset point (`mark_start`), as snapshot bytes.
    starts: Vec<Vec<u8>>,
    pool: rayon::ThreadPool,
    /// With rapier's parallel step compiled in, `threads` pools of one
    /// thread that step the worlds (see [`each_world`]); else none.
    steppers: Vec<rayon::ThreadPool>,
    threads: usize,
}

/// Steps one world with `plans` (which must target its next tick) and
/// returns how many plans were refused.
fn step_world(world: &mut World, plans: &[MicroPlan]) -> u32 {
    let j = world.step(plans, &mut NoClock);
    j.plans.iter().filter(|p| p.status != Status::Ok).count() as u32
}

/// Runs `f(i, world)` for every world; results in world order. Without
/// rapier's parallel step, across `pool`. With it compiled in
/// (`sim_core::PARALLEL_PHYSICS`), never from a worker of a shared pool:
/// rapier would queue part of each step on that pool and block the worker
/// until it ran, and with every worker stepping a world nothing runs it
/// (a deadlock, seen); nor by installing one-thread pools from such
/// workers (a waiting worker steals the next run and queues it behind its
/// own: no speed-up, seen). Instead one plain thread per stepper (a pool
/// of one thread each), each stepping a contiguous run of worlds inline.
fn each_world<T: Send>(pool: &rayon::ThreadPool, steppers: &[rayon::ThreadPool], worlds: &mut [World], f: impl Fn(usize, &mut World) -> T + Sync) -> Vec<T> {
    if steppers.is_empty() {
        return pool.install(|| worlds.par_iter_mut().enumerate().map(|(i, w)| f(i, w)).collect());
    }
    let size = worlds.len().div_ceil(steppers.len()).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let runs: Vec<_> = worlds
            .chunks_mut(size)
            .zip(steppers)
            .enumerate()
            .map(|(c, (run, p))| s.spawn(move || p.install(|| run.iter_mut().enumerate().map(|(k, w)| f(c * size + k, w)).collect::<Vec<T>>())))
            .collect();
        runs.into_iter().flat_map(|r| r.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// Handles of `archetype`'s rows owned by `source` (every row when None),
/// sorted by handle, with their row indices.
fn rows_of(world: &World, a: Archetype, source: Option<u32>) -> Vec<(u64, usize)> {
    let t = world.table(a);
    let owner = t.u32(ColumnId::Owner);
    let mut v: Vec<(u64, usize)> =
        t.handles().iter().enumerate().filter(|(row, _)| source.is_none_or(|s| owner[*row] == s)).map(|(row, h)| (*h, row)).collect();
    v.sort_unstable();
    v
}

fn one_plan(ops: impl IntoIterator<Item = Op>, tick: sim_core::Tick, source: SourceId) -> Option<MicroPlan> {
    let mut b = PlanBuilder::new(tick, source, POOL_SEQUENCE);
    let mut any = false;
    for op in ops {
        b.push(op);
        any = true;
    }
    if !any {
        return None;
    }
    MicroPlan::decode(b.build()).ok()
}

impl SimPool {
    fn build(s: &Scenario, n: usize, seed: Option<u64>, threads: Option<usize>) -> PyResult<SimPool> {
        if n == 0 {
            return Err(value_error("SimPool: n must be at least 1"));
        }
        let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get)).clamp(1, 256);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("dualplane-pool-{i}"))
            .build()
            .map_err(|e| value_error(format!("SimPool: cannot start {threads} threads: {e}")))?;
        let base = seed.unwrap_or(s.seed);
        let worlds: Vec<World> = pool.install(|| (0..n as u64).into_par_iter().map(|i| World::from_scenario(s, Some(base.wrapping_add(i)))).collect());
        let starts: Result<Vec<Vec<u8>>, _> = pool.install(|| worlds.par_iter().map(World::snapshot).collect());
        let starts = starts.map_err(|e| value_error(format!("SimPool: cannot snapshot a new world: {e}")))?;
        let steppers = if sim_core::PARALLEL_PHYSICS {
            (0..threads)
                .map(|k| rayon::ThreadPoolBuilder::new().num_threads(1).thread_name(move |_| format!("dualplane-step-{k}")).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| value_error(format!("SimPool: cannot start {threads} stepping threads: {e}")))?
        } else {
            Vec::new()
        };
        Ok(SimPool { worlds, starts, pool, steppers, threads })
    }

    fn check_index(&self, i: usize) -> PyResult<()> {
        if i >= self.worlds.len() {
            return Err(value_error(format!("world index {i} out of range; this pool has {} worlds (0..{})", self.worlds.len(), self.worlds.len())));
        }
        Ok(())
    }

    fn u32_array<'py>(py: Python<'py>, v: Vec<u32>) -> Bound<'py, PyArray1<u32>> {
        v.into_pyarray(py)
    }
}

#[pymethods]
impl SimPool {
    /// `SimPool(n, scenario=None, seed=None, threads=None)`: `n` worlds of
    /// the scenario (a TOML path; the embedded default arena when omitted),
    /// world `i` seeded with `seed + i` (`seed` defaults to the scenario's),
    /// stepped on `threads` threads (default: the cores available).
    #[new]
    #[pyo3(signature = (n, scenario = None, seed = None, threads = None))]
    fn new(n: usize, scenario: Option<PathBuf>, seed: Option<u64>, threads: Option<usize>) -> PyResult<SimPool> {
        ffi();
        let s = match scenario {
            Some(p) => Scenario::load(&p).map_err(|e| value_error(e.to_string()))?,
            None => Scenario::default_arena(),
        };
        SimPool::build(&s, n, seed, threads)
    }

    /// A pool of `n` worlds from scenario TOML text.
    #[staticmethod]
    #[pyo3(signature = (text, n, seed = None, threads = None, name = "scenario.toml"))]
    fn from_toml(text: &str, n: usize, seed: Option<u64>, threads: Option<usize>, name: &str) -> PyResult<SimPool> {
        ffi();
        let s = Scenario::parse(text, name).map_err(|e| value_error(e.to_string()))?;
        SimPool::build(&s, n, seed, threads)
    }

    fn __len__(&self) -> usize {
        self.worlds.len()
    }

    /// Threads the pool steps its worlds on.
    #[getter]
    fn threads(&self) -> usize {
        self.threads
    }

    /// The last simulated tick of every world (uint64[n]).
    fn ticks<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        ffi();
        self.worlds.iter().map(|w| w.tick().0).collect::<Vec<u64>>().into_pyarray(py)
    }

    /// Every world's xxh3 hash of its current tick (uint64[n]), the same as
    /// `Sim.world_hash()` of the same world.
    fn world_hashes<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        ffi();
        self.worlds.iter().map(World::world_hash).collect::<Vec<u64>>().into_pyarray(py)
    }

    /// Advances every world one tick, in parallel with the GIL released.
    /// `plans`: None, or a sequence of n items, each None, plan bytes, a
    /// `PlanBuilder`, or a list of them (targeting that world's next tick).
    /// Returns the refused plans per world (uint32[n]; undecodable ones
    /// included).
    #[pyo3(signature = (plans = None))]
    fn step<'py>(&mut self, py: Python<'py>, plans: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyArray1<u32>>> {
        ffi();
        let n = self.worlds.len();
        let mut per: Vec<(Vec<MicroPlan>, u32)> = (0..n).map(|_| (Vec::new(), 0)).collect();
        if let Some(p) = plans.filter(|p| !p.is_none()) {
            let items: Vec<Bound<'py, PyAny>> = p.try_iter().map_err(|_| type_error("SimPool.step: plans must be None or a sequence of one entry per world"))?.collect::<PyResult<_>>()?;
            if items.len() != n {
                return Err(value_error(format!("SimPool.step: expected {n} plan entries (one per world), got {}", items.len())));
            }
            for (slot, item) in per.iter_mut().zip(items) {
                if item.is_none() {
                    continue;
                }
                for b in crate::sim::plan_bytes(&item)? {
                    match MicroPlan::decode(b) {
                        Ok(p) => slot.0.push(p),
                        Err(_) => slot.1 += 1,
                    }
                }
            }
        }
        let (worlds, pool, steppers) = (&mut self.worlds, &self.pool, &self.steppers);
        let refused: Vec<u32> = py.detach(|| each_world(pool, steppers, worlds, |i, w| per[i].1 + step_world(w, &per[i].0)));
        Ok(SimPool::u32_array(py, refused))
    }

    /// Steps every world with one batched action array: `actions`
    /// float32[n, k, 2] are horizontal directions (x, z) for the first k
    /// entities of `archetype` that `source` owns (sorted by handle, the
    /// order `observe` uses). Each becomes a move_to one second ahead at
    /// `max_speed` times the direction's length, in a plan from `source`
    /// validated like any other. Returns the refused plans per world.
    #[pyo3(signature = (actions, source, max_speed = 4.0, archetype = "npc"))]
    fn step_move<'py>(&mut self, py: Python<'py>, actions: PyReadonlyArray3<'py, f32>, source: u32, max_speed: f32, archetype: &str) -> PyResult<Bound<'py, PyArray1<u32>>> {
        ffi();
        let a = crate::sim::archetype(archetype)?;
        let shape = actions.shape();
        if shape[0] != self.worlds.len() || shape[2] != 2 {
            return Err(value_error(format!("SimPool.step_move: actions must have shape ({}, k, 2), got {shape:?}", self.worlds.len())));
        }
        let k = shape[1];
        let acts = actions.as_array();
        let (worlds, pool, steppers) = (&mut self.worlds, &self.pool, &self.steppers);
        let refused: Vec<u32> = py.detach(|| {
            each_world(pool, steppers, worlds, |i, w| {
                let rows = rows_of(w, a, Some(source));
                let t = w.table(a);
                let (px, py_, pz) = (t.f32(ColumnId::PosX), t.f32(ColumnId::PosY), t.f32(ColumnId::PosZ));
                let ops = rows.iter().take(k).enumerate().map(|(j, &(h, row))| {
                    let (dx, dz) = (acts[[i, j, 0]] * max_speed, acts[[i, j, 1]] * max_speed);
                    let speed = (dx * dx + dz * dz).sqrt().max(1e-3);
                    Op::MoveTo { handle: Handle::from_bits(h), target: [px[row] + dx, py_[row], pz[row] + dz], max_speed: speed }
                });
                let plan = one_plan(ops, w.tick().next(), SourceId(source));
                step_world(w, plan.as_slice())
            })
        });
        Ok(SimPool::u32_array(py, refused))
    }

    /// Batched observations: `(values float32[n, rows, len(columns)],
    /// handles uint64[n, rows], valid bool[n, rows])` for the entities of
    /// `archetype` that `source` owns (every one when `source` is None),
    /// sorted by handle; `rows` defaults to the most any world has, and
    /// rows past a world's count are zeros with `valid` False. Columns are
    /// f32 column names (`pos_x`, `linvel_z`, ...).
    #[pyo3(signature = (columns, source = None, rows = None, archetype = "npc"))]
    fn observe<'py>(&self, py: Python<'py>, columns: Vec<String>, source: Option<u32>, rows: Option<usize>, archetype: &str) -> PyResult<Bound<'py, PyTuple>> {
        ffi();
        let a = crate::sim::archetype(archetype)?;
        let t0 = self.worlds[0].table(a);
        let floats: Vec<&'static str> = t0.columns().filter(|(_, d)| matches!(d, ColumnData::F32(_))).map(|(id, _)| id.name()).collect();
        let mut ids = Vec::with_capacity(columns.len());
        for c in &columns {
            let id = t0.columns().find(|(id, d)| id.name() == c && matches!(d, ColumnData::F32(_))).map(|(id, _)| id);
            ids.push(id.ok_or_else(|| value_error(format!("SimPool.observe: {archetype} has no f32 column {c:?}; expected some of {floats:?}")))?);
        }
        let (f, pool) = (ids.len(), &self.pool);
        let worlds = &self.worlds;
        let (values, handles, valid) = py.detach(|| {
            let per: Vec<Vec<(u64, usize)>> = pool.install(|| worlds.par_iter().map(|w| rows_of(w, a, source)).collect());
            let k = rows.unwrap_or_else(|| per.iter().map(Vec::len).max().unwrap_or(0));
            let mut values = vec![0f32; worlds.len() * k * f];
            let mut handles = vec![0u64; worlds.len() * k];
            let mut valid = vec![false; worlds.len() * k];
            pool.install(|| {
                values
                    .par_chunks_mut((k * f).max(1))
                    .zip(handles.par_chunks_mut(k.max(1)))
                    .zip(valid.par_chunks_mut(k.max(1)))
                    .zip(worlds.par_iter().zip(&per))
                    .for_each(|(((vals, hs), ok), (w, rows))| {
                        let t = w.table(a);
                        let cols: Vec<&[f32]> = ids.iter().map(|id| t.f32(*id)).collect();
                        for (j, &(h, row)) in rows.iter().take(k).enumerate() {
                            hs[j] = h;
                            ok[j] = true;
                            for (c, col) in cols.iter().enumerate() {
                                vals[j * f + c] = col[row];
                            }
                        }
                    });
            });
            (values, handles, valid)
        });
        let n = self.worlds.len();
        let k = handles.len() / n;
        let values = values.into_pyarray(py).reshape([n, k, f])?;
        let handles = handles.into_pyarray(py).reshape([n, k])?;
        let valid = valid.into_pyarray(py).reshape([n, k])?;
        PyTuple::new(py, [values.into_any(), handles.into_any(), valid.into_any()])
    }

    /// Gives every world's free entities of `archetype` (owned by the
    /// server; the first `count` by handle, all when None) to `source`, as
    /// an authority plan applied by one step. Returns how many each world
    /// granted (uint32[n]).
    #[pyo3(signature = (source, count = None, archetype = "npc"))]
    fn grant<'py>(&mut self, py: Python<'py>, source: u32, count: Option<usize>, archetype: &str) -> PyResult<Bound<'py, PyArray1<u32>>> {
        ffi();
        let a = crate::sim::archetype(archetype)?;
        if source == SourceId::SERVER.0 {
            return Err(value_error("SimPool.grant: source 0 is the server itself; grant to a policy's source id"));
        }
        let (worlds, pool, steppers) = (&mut self.worlds, &self.pool, &self.steppers);
        let granted: Vec<u32> = py.detach(|| {
            each_world(pool, steppers, worlds, |_, w| {
                let free: Vec<(u64, usize)> = rows_of(w, a, Some(SourceId::SERVER.0)).into_iter().take(count.unwrap_or(usize::MAX)).collect();
                let plan = one_plan(free.iter().map(|&(h, _)| Op::Grant { handle: Handle::from_bits(h), owner: source }), w.tick().next(), SourceId::SERVER);
                step_world(w, plan.as_slice());
                free.len() as u32
            })
        });
        Ok(SimPool::u32_array(py, granted))
    }

    /// Makes every world's current state its reset point.
    fn mark_start(&mut self, py: Python<'_>) -> PyResult<()> {
        ffi();
        let (worlds, pool) = (&self.worlds, &self.pool);
        let starts: Result<Vec<Vec<u8>>, _> = py.detach(|| pool.install(|| worlds.par_iter().map(World::snapshot).collect()));
        self.starts = starts.map_err(|e| value_error(format!("SimPool.mark_start: {e}")))?;
        Ok(())
    }

    /// Restores worlds to their reset points: the given indices (a
    /// sequence of ints or a bool mask of n), or every world when None.
    #[pyo3(signature = (worlds = None))]
    fn reset(&mut self, py: Python<'_>, worlds: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        ffi();
        let n = self.worlds.len();
        let mut pick = vec![worlds.is_none_or(Bound::is_none); n];
        if let Some(w) = worlds.filter(|w| !w.is_none()) {
            let items: Vec<Bound<'_, PyAny>> = w.try_iter().map_err(|_| type_error("SimPool.reset: worlds must be None, indices or a bool mask"))?.collect::<PyResult<_>>()?;
            // Python's and numpy's bools (an int index extracts as a bool
            // too, and a bool as an int: the type decides).
            let is_bool = |x: &Bound<'_, PyAny>| x.cast::<pyo3::types::PyBool>().is_ok() || x.get_type().name().is_ok_and(|t| t == "bool" || t == "bool_");
            let mask = !items.is_empty() && items.iter().all(is_bool);
            if mask && items.len() != n {
                return Err(value_error(format!("SimPool.reset: a bool mask must have one entry per world ({n}), got {}", items.len())));
            }
            if mask {
                for (p, x) in pick.iter_mut().zip(&items) {
                    *p = x.extract::<bool>()?;
                }
            } else {
                for x in &items {
                    let i: usize = x.extract().map_err(|_| type_error("SimPool.reset: indices must be ints"))?;
                    self.check_index(i)?;
                    pick[i] = true;
                }
            }
        }
        let (all, starts, pool) = (&mut self.worlds, &self.starts, &self.pool);
        let res: Result<(), String> = py.detach(|| {
            pool.install(|| {
                all.par_iter_mut().zip(starts).zip(&pick).filter(|(_, p)| **p).try_for_each(|((w, s), _)| {
                    *w = World::restore(s).map_err(|e| e.to_string())?;
                    Ok(())
                })
            })
        });
        res.map_err(|e| value_error(format!("SimPool.reset: {e}")))
    }

    /// World `i` as snapshot bytes (`Sim.restore` takes them).
    fn snapshot<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyBytes>> {
        ffi();
        self.check_index(i)?;
        let b = self.worlds[i].snapshot().map_err(|e| value_error(e.to_string()))?;
        Ok(PyBytes::new(py, &b))
    }

    /// World `i` drawn by the offscreen renderer: uint8[height, width, 3].
    #[pyo3(signature = (i, width = 320, height = 240, camera = "overview"))]
    fn render<'py>(&self, py: Python<'py>, i: usize, width: u32, height: u32, camera: &str) -> PyResult<Bound<'py, numpy::PyArray3<u8>>> {
        ffi();
        self.check_index(i)?;
        crate::render::frame(py, &self.worlds[i], width, height, camera)
    }

    fn __repr__(&self) -> String {
        format!("SimPool(worlds={}, threads={})", self.worlds.len(), self.threads)
    }
}
