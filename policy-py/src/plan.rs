//! `dualplane.PlanBuilder`: microplans from numpy arrays. One call per op
//! kind appends a whole batch (the arrays' bytes go straight into the plan's
//! SoA sections); `build()` seals the plan in one more call.

use crate::{ffi, type_error, value_error};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sim_core::{OpKind, PlanBuilder, SourceId, Tick};

/// "float64 array of shape (5, 3)" or the Python type's name.
fn describe(obj: &Bound<'_, PyAny>) -> String {
    match (obj.getattr("dtype"), obj.getattr("shape")) {
        (Ok(d), Ok(s)) => format!("{} array of shape {}", d.str().map_or_else(|_| "?".into(), |x| x.to_string()), s.str().map_or_else(|_| "?".into(), |x| x.to_string())),
        _ => obj.get_type().name().map_or_else(|_| "?".into(), |n| n.to_string()).to_string(),
    }
}

fn not_contiguous(op: &str, field: &str) -> PyErr {
    value_error(format!("{op}: {field} must be C-contiguous (use numpy.ascontiguousarray)"))
}

/// An (N, width) float32 array.
fn rows<'py>(op: &str, field: &str, obj: &Bound<'py, PyAny>, width: usize) -> PyResult<PyReadonlyArray2<'py, f32>> {
    let a = obj.cast::<PyArray2<f32>>().map_err(|_| {
        type_error(format!("{op}: {field} must be a float32 array of shape (N, {width}); got {} (convert with .astype(numpy.float32))", describe(obj)))
    })?;
    if a.shape()[1] != width {
        return Err(value_error(format!("{op}: {field} must have shape (N, {width}); got {}", describe(obj))));
    }
    Ok(a.readonly())
}

/// An (N,) uint64 array of entity handles.
fn handles<'py>(op: &str, obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray1<'py, u64>> {
    let a = obj.cast::<PyArray1<u64>>().map_err(|_| {
        type_error(format!("{op}: handles must be a uint64 array of shape (N,); got {} (handles come from Sim.columns()['handle'])", describe(obj)))
    })?;
    Ok(a.readonly())
}

/// A per-op value: a Python/numpy scalar (broadcast to every op) or an
/// (N,) array of exactly `dtype`.
fn per_op<T>(op: &str, field: &str, obj: &Bound<'_, PyAny>, n: usize, scalar: &str, dtype: &str) -> PyResult<Vec<T>>
where
    T: numpy::Element + Copy + for<'py> FromPyObjectOwned<'py>,
{
    if let Ok(x) = obj.extract::<T>() {
        return Ok(vec![x; n]);
    }
    let a = obj.cast::<PyArray1<T>>().map_err(|_| type_error(format!("{op}: {field} must be a {scalar} or a {dtype} array of shape ({n},); got {}", describe(obj))))?;
    let r = a.readonly();
    let s = r.as_slice().map_err(|_| not_contiguous(op, field))?;
    if s.len() != n {
        return Err(value_error(format!("{op}: {field} has {} values for {n} ops", s.len())));
    }
    Ok(s.to_vec())
}

fn per_op_f32(op: &str, field: &str, obj: &Bound<'_, PyAny>, n: usize) -> PyResult<Vec<f32>> {
    per_op(op, field, obj, n, "float", "float32")
}

fn per_op_u32(op: &str, field: &str, obj: &Bound<'_, PyAny>, n: usize) -> PyResult<Vec<u32>> {
    per_op(op, field, obj, n, "int", "uint32")
}

fn slice2<'a>(op: &str, field: &str, a: &'a PyReadonlyArray2<'_, f32>) -> PyResult<&'a [f32]> {
    a.as_slice().map_err(|_| not_contiguous(op, field))
}

fn same_len(op: &str, n: usize, fields: &[(&str, usize)]) -> PyResult<()> {
    for (f, len) in fields {
        if *len != n {
            return Err(value_error(format!("{op}: {f} has {len} rows for {n} ops")));
        }
    }
    Ok(())
}

fn zeros_or_rows<'py>(op: &str, field: &str, obj: Option<&Bound<'py, PyAny>>, n: usize, width: usize) -> PyResult<Vec<f32>> {
    match obj {
        None => Ok(vec![0.0; n * width]),
        Some(o) => {
            let a = rows(op, field, o, width)?;
            same_len(op, n, &[(field, a.shape()[0])])?;
            Ok(slice2(op, field, &a)?.to_vec())
        }
    }
}

/// Builds one microplan from numpy batches.
///
/// Ops apply in kind order (spawn, despawn, set_velocity, apply_impulse,
/// move_to, raycast, overlap, grant, command, graph_upload, graph_bind),
/// then in the order they were added.
#[pyclass(name = "PlanBuilder", module = "dualplane._native")]
#[derive(Debug)]
pub struct PyPlanBuilder {
    inner: PlanBuilder,
}

impl PyPlanBuilder {
    /// The plan's bytes, for Rust callers that take a builder directly
    /// (saves the copy into and out of a Python `bytes`).
    pub(crate) fn build_vec(&self) -> Vec<u8> {
        self.inner.build()
    }

    /// The plan itself (no second checksum pass to verify what was just
    /// sealed).
    pub(crate) fn build_plan(&self) -> Result<sim_core::MicroPlan, sim_core::DecodeError> {
        self.inner.build_plan()
    }

    fn push(&mut self, kind: OpKind, n: usize, arrays: &[&[u8]]) -> PyResult<()> {
        let count = u32::try_from(n).map_err(|_| value_error(format!("{}: {n} ops is too many", kind.name())))?;
        self.inner.push_batch(kind, count, arrays).map_err(value_error)?;
        Ok(())
    }
}

#[pymethods]
impl PyPlanBuilder {
    #[new]
    #[pyo3(signature = (target_tick, source_id, sequence = 0, correlation = 0))]
    fn new(target_tick: u64, source_id: u32, sequence: u32, correlation: u64) -> PyPlanBuilder {
        ffi();
        PyPlanBuilder { inner: PlanBuilder::new(Tick(target_tick), SourceId(source_id), sequence).correlation(correlation) }
    }

    /// `set_velocity(handles, linvel, angvel=None)`: handles (N,) uint64,
    /// linvel/angvel (N, 3) float32 in m/s and rad/s.
    #[pyo3(signature = (handles, linvel, angvel = None))]
    fn set_velocity<'py>(mut slf: PyRefMut<'py, Self>, handles: &Bound<'py, PyAny>, linvel: &Bound<'py, PyAny>, angvel: Option<&Bound<'py, PyAny>>) -> PyResult<PyRefMut<'py, Self>> {
        ffi();
        let op = "set_velocity";
        let h = self::handles(op, handles)?;
        let hs = h.as_slice().map_err(|_| not_contiguous(op, "handles"))?;
        let n = hs.len();
        let lv = rows(op, "linvel", linvel, 3)?;
        same_len(op, n, &[("linvel", lv.shape()[0])])?;
        let av = zeros_or_rows(op, "angvel", angvel, n, 3)?;
        slf.push(OpKind::SetVelocity, n, &[bytemuck::cast_slice(hs), bytemuck::cast_slice(slice2(op, "linvel", &lv)?), bytemuck::cast_slice(&av)])?;
        Ok(slf)
    }

    /// `impulse(handles, impulses)`: (N,) uint64 and (N, 3) float32 in N*s.
    fn impulse<'py>(mut slf: PyRefMut<'py, Self>, handles: &Bound<'py, PyAny>, impulses: &Bound<'py, PyAny>) -> PyResult<PyRefMut<'py, Self>> {
        ffi();
        let op = "impulse";
        let h = self::handles(op, handles)?;
        let hs = h.as_slice().map_err(|_| not_contiguous(op, "handles"))?;
        let im = rows(op, "impulses", impulses, 3)?;
        same_len(op, hs.len(), &[("impulses", im.shape()[0])])?;
        slf.push(OpKind::ApplyImpulse, hs.len(), &[bytemuck::cast_slice(hs), bytemuck::cast_slice(slice2(op, "impulses", &im)?)])?;
        Ok(slf)
    }

    /// `move_to(handles, targets, max_speed)`: NPC steering targets, (N, 3)
    /// float32 metres; max_speed a float or (N,) float32 in m/s.
    fn move_to<'py>(mut slf: PyRefMut<'py, Self>, handles: &Bound<'py, PyAny>, targets: &Bound<'py, PyAny>, max_speed: &Bound<'py, PyAny>) -> PyResult<PyRefMut<'py, Self>> {
        ffi();
        let op = "move_to";
        let h = self::handles(op, handles)?;
        let hs = h.as_slice().map_err(|_| not_contiguous(op, "handles"))?;
        let n = hs.len();
        let t = rows(op, "targets", targets, 3)?;
        same_len(op, n, &[("targets", t.shape()[0])])?;
        let s = per_op_f32(op, "max_speed", max_speed, n)?;
        slf.push(OpKind::MoveTo, n, &[bytemuck::cast_slice(hs), bytemuck::cast_slice(slice2(op, "targets", &t)?), bytemuck::cast_slice(&s)])?;
        Ok(slf)
    }

    /// `spawn(archetype, shape, positions, rotations=None, linvel=None,
    /// angvel=None)`: archetype and shape are ints or (N,) uint32 arrays;
    /// rotations (N, 4) float32 quaternions (x, y, z, w), identity if omitted.
    #[pyo3(signature = (archetype, shape, positions, rotations = None, linvel = None, angvel = None))]
    fn spawn<'py>(
        mut slf: PyRefMut<'py, Self>,
        archetype: &Bound<'py, PyAny>,
        shape: &Bound<'py, PyAny>,
        positions: &Bound<'py, PyAny>,
        rotations: Option<&Bound<'py, PyAny>>,
        linvel: Option<&Bound<'py, PyAny>>,
        angvel: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<PyRefMut<'py, Self>> {
        ffi();
        let op = "spawn";
        let p = rows(op, "positions", positions, 3)?;
        let n = p.shape()[0];
        let a = per_op_u32(op, "archetype", archetype, n)?;
        let s = per_op_u32(op, "shape", shape, n)?;
        let r = match rotations {
            None => [0.0, 0.0, 0.0, 1.0].repeat(n),
            Some(o) => {
                let r = rows(op, "rotations", o, 4)?;
                same_len(op, n, &[("rotations", r.shape()[0])])?;
                slice2(op, "rotations", &r)?.to_vec()
            }
        };
        let lv = zeros_or_rows(op, "linvel", linvel, n, 3)?;
        let av = zeros_or_rows(op, "angvel", angvel, n, 3)?;
        slf.push(
            OpKind::Spawn,
            n,
            &[bytemuck::cast_slice(&a), bytemuck::cast_slice(&s), bytemuck::cast_slice(slice2(op, "positions", &p)?), bytemuck::cast_slice(&r), bytemuck::cast_slice(&lv), bytemuck::cast_slice(&av)],
        )?;
        Ok(slf)
    }

    /// `despawn(handles)`.
    fn despawn<'py>(mut slf: PyRefMut<'py, Self>, handles: &Bound<'py, PyAny>) -> PyResult<PyRefMut<'py, Self>> {
        ffi();
        let h = self::handles("despawn", handles)?;
        let hs = h.as_slice().map_err(|_| not_contiguous("despawn", "handles"))?;
        slf.push(OpKind::Despawn, hs.len(), &[bytemuck::cast_slice(hs)])?;
        Ok(slf)
    }

    /// `raycast(origins, dirs, max_dist)`: (N, 3) float32 each; max_dist a
    /// float or (N,) float32. Results come back in the plan's journal.
    fn raycast<'py>(mut slf: PyRefMut<'py, Self>, origins: &Bound<'py, PyAny>, dirs: &Bound<'py, PyAny>, max_dist: &Bound<'py, PyAny>) -> PyResult<PyRefMut<'py, Self>> {
        ffi();
        let op = "raycast";
        let o = rows(op, "origins", origins, 3)?;
        let n = o.shape()[0];
        let d = rows(op, "dirs", dirs, 3)?;
        same_len(op, n, &[("dirs", d.shape()[0])])?;
        let m = per_op_f32(op, "max_dist", max_dist, n)?;
        slf.push(OpKind::Raycast, n, &[bytemuck::cast_slice(slice2(op, "origins", &o)?), bytemuck::cast_slice(slice2(op, "dirs", &d)?), bytemuck::cast_slice(&m)])?;
        Ok(slf)
    }

    /// `overlap(mins, maxs)`: axis-aligned boxes, (N, 3) float32 each.
    fn overlap<'py>(mut slf: PyRefMut<'py, Self>, mins: &Bound<'py, PyAny>, maxs: &Bound<'py, PyAny>) -> PyResult<PyRefMut<'py, Self>> {
        ffi();
        let op = "overlap";
        let lo = rows(op, "mins", mins, 3)?;
        let hi = rows(op, "maxs", maxs, 3)?;
        let n = lo.shape()[0];
        same_len(op, n, &[("maxs", hi.shape()[0])])?;
        slf.push(OpKind::Overlap, n, &[bytemuck::cast_slice(slice2(op, "mins", &lo)?), bytemuck::cast_slice(slice2(op, "maxs", &hi)?)])?;
        Ok(slf)
    }

    /// `grant(handles, owner)`: authority only (source 0): hand entities to
    /// another source.
    fn grant<'py>(mut slf: PyRefMut<'py, Self>, handles: &Bound<'py, PyAny>, owner: &Bound<'py, PyAny>) -> PyResult<PyRefMut<'py, Self>> {
        ffi();
        let h = self::handles("grant", handles)?;
        let hs = h.as_slice().map_err(|_| not_contiguous("grant", "handles"))?;
        let o = per_op_u32("grant", "owner", owner, hs.len())?;
        slf.push(OpKind::Grant, hs.len(), &[bytemuck::cast_slice(hs), bytemuck::cast_slice(&o)])?;
        Ok(slf)
    }

    /// `graph_upload(graph)`: give the world a behaviour graph (bytes from
    /// `dualplane.graph.Graph.build()`); one per plan. It is named by
    /// `dualplane.graph.graph_hash(graph)`.
    fn graph_upload<'py>(mut slf: PyRefMut<'py, Self>, graph: &[u8]) -> PyResult<PyRefMut<'py, Self>> {
        ffi();
        if !graph.len().is_multiple_of(4) || graph.is_empty() {
            return Err(value_error(format!("graph_upload: graph bytes must be a non-empty multiple of 4 long; got {}", graph.len())));
        }
        if slf.inner.count(OpKind::GraphUpload) > 0 {
            return Err(value_error("graph_upload: a plan carries at most one graph"));
        }
        let n = graph.len() / 4;
        slf.push(OpKind::GraphUpload, n, &[graph])?;
        Ok(slf)
    }

    /// `graph_bind(handles, graph)`: run graph `graph` (its hash, an int;
    /// 0 unbinds) for these entities from the plan's tick on.
    fn graph_bind<'py>(mut slf: PyRefMut<'py, Self>, handles: &Bound<'py, PyAny>, graph: &Bound<'py, PyAny>) -> PyResult<PyRefMut<'py, Self>> {
        ffi();
        let h = self::handles("graph_bind", handles)?;
        let hs = h.as_slice().map_err(|_| not_contiguous("graph_bind", "handles"))?;
        let g = per_op::<u64>("graph_bind", "graph", graph, hs.len(), "int", "uint64")?;
        slf.push(OpKind::GraphBind, hs.len(), &[bytemuck::cast_slice(hs), bytemuck::cast_slice(&g)])?;
        Ok(slf)
    }

    /// The sealed plan bytes.
    fn build<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        ffi();
        PyBytes::new(py, &self.inner.build())
    }

    fn __len__(&self) -> usize {
        ffi();
        self.inner.op_count() as usize
    }
}
