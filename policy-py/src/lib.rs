//! # dualplane-py: the control plane's bindings
//!
//! The Python package `dualplane` (built by maturin) wraps this module,
//! `dualplane._native`. Python decides *what* and *when*; everything here
//! hands whole batches across the boundary at once:
//!
//! - [`sim::Sim`]: sim-core in process, with zero-copy read-only numpy views
//!   of the SoA columns and the GIL released while stepping.
//! - [`plan::PyPlanBuilder`]: microplans from numpy arrays, one call per op
//!   kind, one call to build.
//! - [`pool::SimPool`]: n worlds stepped on a thread pool in one call, with
//!   batched actions in and batched observations out.
//! - [`remote::Session`]: a remote policy session over QUIC (the Rust
//!   client runs on its own thread; blocking calls release the GIL).
//!
//! Every Python-callable entry point bumps one counter ([`ffi_calls`]), so a
//! test can prove how many boundary crossings a policy tick costs.

use pyo3::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

mod graph;
mod observation;
mod plan;
mod pool;
mod remote;
mod render;
mod sim;

static FFI_CALLS: AtomicU64 = AtomicU64::new(0);

/// Counts one crossing of the Python -> Rust boundary.
pub(crate) fn ffi() {
    FFI_CALLS.fetch_add(1, Ordering::Relaxed);
}

/// Crossings of the Python -> Rust boundary since the module loaded (this
/// call itself is not counted).
#[pyfunction]
fn ffi_calls() -> u64 {
    FFI_CALLS.load(Ordering::Relaxed)
}

pub(crate) fn value_error(msg: impl Into<String>) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(msg.into())
}

pub(crate) fn type_error(msg: impl Into<String>) -> PyErr {
    pyo3::exceptions::PyTypeError::new_err(msg.into())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ffi_calls, m)?)?;
    graph::register(m)?;
    m.add_class::<sim::Sim>()?;
    m.add_class::<sim::ColumnLease>()?;
    m.add_class::<sim::Journal>()?;
    m.add_class::<sim::PlanJournal>()?;
    m.add_class::<plan::PyPlanBuilder>()?;
    m.add_class::<pool::SimPool>()?;
    m.add_class::<remote::Session>()?;
    m.add_function(wrap_pyfunction!(remote::connect, m)?)?;
    m.add("PORTS_SCHEMA_HASH", sim_core::PORTS_SCHEMA_HASH)?;
    m.add("PORTS_SEMVER", sim_core::PORTS_SEMVER)?;
    Ok(())
}
