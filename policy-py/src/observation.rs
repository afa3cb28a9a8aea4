//! The policy observation as Python sees it, the same dict in process
//! (`Sim.observation`) and remote (`Session.observation`): `tick`, `handle`
//! uint64[N], `archetype` uint8[N], `owner` uint32[N], `health` int32[N],
//! `pos` float32[N, 3], `linvel` float32[N, 3], sorted by handle. The arrays
//! are read-only, over memory handed to numpy without a copy.

use numpy::{IntoPyArray, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn frozen<'py, T: numpy::Element, D: numpy::ndarray::Dimension>(a: Bound<'py, numpy::PyArray<T, D>>) -> Bound<'py, PyAny> {
    drop(a.readwrite().make_nonwriteable());
    a.into_any()
}

pub(crate) fn to_dict<'py>(py: Python<'py>, o: net::observe::Observed) -> PyResult<Bound<'py, PyDict>> {
    let n = o.len();
    let d = PyDict::new(py);
    d.set_item("tick", o.tick)?;
    d.set_item("handle", frozen(o.handle.into_pyarray(py)))?;
    d.set_item("archetype", frozen(o.archetype.into_pyarray(py)))?;
    d.set_item("owner", frozen(o.owner.into_pyarray(py)))?;
    d.set_item("health", frozen(o.health.into_pyarray(py)))?;
    d.set_item("pos", frozen(o.pos.into_pyarray(py).reshape([n, 3])?))?;
    d.set_item("linvel", frozen(o.linvel.into_pyarray(py).reshape([n, 3])?))?;
    Ok(d)
}

/// A request's validity, as Python's ValueError.
pub(crate) fn request(every: u16, radius: f32) -> PyResult<net::observe::ObserveRequest> {
    let r = net::observe::ObserveRequest { every, radius };
    match r.invalid() {
        Some(why) => Err(crate::value_error(format!("observation request: {why}"))),
        None => Ok(r),
    }
}
