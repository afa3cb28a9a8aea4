//! `dualplane graph ...` and `simulate --graph`: behaviour graph files
//! (FaaDG v1 bytes, as `dualplane.graph` builds them) inspected, and bound
//! to a world by a server plan.

use anyhow::{bail, Context};
use sim_core::graph::{graph_hash, Graph};
use sim_core::{Archetype, Handle, MicroPlan, Op, PlanBuilder, SourceId, World};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum GraphCommand {
    /// Validate a graph file and print its nodes, hash, size and cost.
    Inspect {
        file: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: &GraphCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        GraphCommand::Inspect { file, json } => inspect(file, *json),
    }
}

/// Reads and validates a graph file: (bytes, graph).
pub fn load(path: &Path) -> anyhow::Result<(Vec<u8>, Graph)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read graph file", path.display()))?;
    let g = Graph::decode(&bytes).with_context(|| format!("{}: not a valid behaviour graph", path.display()))?;
    Ok((bytes, g))
}

fn inspect(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let (bytes, g) = load(path)?;
    let hash = graph_hash(&bytes);
    if json {
        let nodes: Vec<_> = g
            .nodes
            .iter()
            .zip(&g.types)
            .map(|(n, t)| {
                serde_json::json!({
                    "op": n.op.name(),
                    "type": t.map(|t| t.name()),
                    "arg": n.arg,
                    "inputs": n.ins().collect::<Vec<_>>(),
                    "pool": n.pool,
                    "imm": n.imm,
                })
            })
            .collect();
        let v = serde_json::json!({
            "hash": format!("{hash:#018x}"),
            "bytes": bytes.len(),
            "cost_milli_per_npc": g.cost_milli,
            "state_registers": g.state_count,
            "pool": g.pool,
            "nodes": nodes,
        });
        println!("{v}");
    } else {
        println!("graph {hash:#018x}: {} bytes, {} nodes, {} state registers, cost {} milli-units per NPC", bytes.len(), g.nodes.len(), g.state_count, g.cost_milli);
        print!("{}", g.describe());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--bind` targets: `archetype=NAME`.
fn targets(world: &World, spec: &str) -> anyhow::Result<Vec<Handle>> {
    let Some(("archetype", name)) = spec.split_once('=') else {
        bail!("--bind {spec:?}: expected archetype=NAME");
    };
    let Some(a) = Archetype::ALL.into_iter().find(|a| a.name() == name) else {
        let names: Vec<&str> = Archetype::ALL.iter().map(|a| a.name()).collect();
        bail!("--bind {spec:?}: unknown archetype {name:?}; expected one of {}", names.join(", "));
    };
    Ok(world.table(a).handles().iter().map(|&h| Handle::from_bits(h)).collect())
}

/// The server plan (source 0) for the next tick that uploads the graph in
/// `path` and binds it to every entity `bind` names.
pub fn bind_plan(world: &World, path: &Path, bind: &str) -> anyhow::Result<MicroPlan> {
    let (bytes, _) = load(path)?;
    let hash = graph_hash(&bytes);
    let mut b = PlanBuilder::new(world.tick().next(), SourceId::SERVER, u32::MAX);
    b.graph_upload(&bytes);
    for handle in targets(world, bind)? {
        b.push(Op::GraphBind { handle, graph: hash });
    }
    Ok(b.build_plan()?)
}
