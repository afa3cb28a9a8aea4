//! Behaviour graphs (FaaDG v1) for `dualplane.graph`: encoding and
//! validation stay in sim-core; Python gets bytes in, bytes or errors out.

use crate::{ffi, value_error};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sim_core::graph::{encode_parts, graph_hash, Graph, GraphError, Node, NodeOp};

/// One node as Python sees it: (op name, arg, (in0, in1, in2), pool, (imm0..imm3)).
type PyNode = (String, u16, (u16, u16, u16), u32, (f32, f32, f32, f32));

fn refusal(e: &GraphError) -> PyErr {
    value_error(format!("graph refused: {e}"))
}

/// `graph_encode(nodes, pool, state_count) -> bytes`: encodes and validates
/// a graph; a refusal raises ValueError naming the status and the node.
#[pyfunction]
fn graph_encode<'py>(py: Python<'py>, nodes: Vec<PyNode>, pool: Vec<f32>, state_count: u16) -> PyResult<Bound<'py, PyBytes>> {
    ffi();
    let mut out = Vec::with_capacity(nodes.len());
    for (i, (name, arg, ins, p, imm)) in nodes.into_iter().enumerate() {
        let op = NodeOp::from_name(&name).ok_or_else(|| {
            let names: Vec<&str> = NodeOp::ALL.iter().map(|o| o.name()).collect();
            value_error(format!("node {i}: unknown node kind {name:?}; expected one of {}", names.join(", ")))
        })?;
        out.push(Node { op, arg, inputs: [ins.0, ins.1, ins.2], pool: p, imm: [imm.0, imm.1, imm.2, imm.3] });
    }
    let bytes = encode_parts(&out, &pool, state_count);
    Graph::decode(&bytes).map_err(|e| refusal(&e))?;
    Ok(PyBytes::new(py, &bytes))
}

/// `graph_decode(bytes) -> (nodes, pool, state_count)`: validates and
/// returns the parts (`graph_encode`'s inverse).
#[pyfunction]
fn graph_decode(bytes: &[u8]) -> PyResult<(Vec<PyNode>, Vec<f32>, u16)> {
    ffi();
    let g = Graph::decode(bytes).map_err(|e| refusal(&e))?;
    let nodes = g
        .nodes
        .iter()
        .map(|n| (n.op.name().to_string(), n.arg, (n.inputs[0], n.inputs[1], n.inputs[2]), n.pool, (n.imm[0], n.imm[1], n.imm[2], n.imm[3])))
        .collect();
    Ok((nodes, g.pool, g.state_count))
}

/// `graph_describe(bytes) -> str`: the listing `dualplane graph inspect`
/// prints (validates first).
#[pyfunction]
fn graph_describe(bytes: &[u8]) -> PyResult<String> {
    ffi();
    Graph::decode(bytes).map(|g| g.describe()).map_err(|e| refusal(&e))
}

/// `graph_hash(bytes) -> int`: the graph's name (xxh3-64 of its bytes),
/// what `PlanBuilder.graph_bind` takes.
#[pyfunction(name = "graph_hash")]
fn py_graph_hash(bytes: &[u8]) -> u64 {
    ffi();
    graph_hash(bytes)
}

/// `graph_cost(bytes) -> int`: static cost per NPC per tick, milli-units.
#[pyfunction]
fn graph_cost(bytes: &[u8]) -> PyResult<u64> {
    ffi();
    Graph::decode(bytes).map(|g| g.cost_milli).map_err(|e| refusal(&e))
}

/// `graph_node_kinds() -> list[(code, name, doc)]`: the node table.
#[pyfunction]
fn graph_node_kinds() -> Vec<(u16, &'static str, &'static str)> {
    ffi();
    NodeOp::ALL.iter().map(|&o| (o as u16, o.name(), o.doc())).collect()
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(graph_encode, m)?)?;
    m.add_function(wrap_pyfunction!(graph_decode, m)?)?;
    m.add_function(wrap_pyfunction!(graph_describe, m)?)?;
    m.add_function(wrap_pyfunction!(py_graph_hash, m)?)?;
    m.add_function(wrap_pyfunction!(graph_cost, m)?)?;
    m.add_function(wrap_pyfunction!(graph_node_kinds, m)?)?;
    Ok(())
}
