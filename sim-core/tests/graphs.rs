//! Behaviour graphs in a live world: upload and bind by plan, run in the
//! tick, deterministic, in snapshots, and every refusal a named status with
//! nothing applied.

mod common;

use common::{repo_root, small_world};
use sim_core::graph::{encode_parts, graph_hash, Node, NodeOp, NONE};
use sim_core::schema::ColumnId;
use sim_core::{Archetype, Handle, MicroPlan, NoClock, Op, PlanBuilder, Scenario, SourceId, Status, Tick, TickJournal, World};
use std::collections::BTreeSet;

fn n(op: NodeOp, ins: &[u16], arg: u16, imm: [f32; 4]) -> Node {
    let mut inputs = [NONE; 3];
    inputs[..ins.len()].copy_from_slice(ins);
    Node { op, arg, inputs, pool: 0, imm }
}

fn z() -> [f32; 4] {
    [0.0; 4]
}

/// Each NPC moves 1 m towards +x of where it is, a register counts ticks,
/// and a push sensor keeps neighbours in the graph's inputs.
fn walker() -> Vec<u8> {
    let nodes = [
        n(NodeOp::Pos, &[], 0, z()),                          // 0
        n(NodeOp::Vector, &[], 0, [1.0, 0.0, 0.0, 0.0]),      // 1
        n(NodeOp::Add, &[0, 1], 0, z()),                      // 2
        n(NodeOp::Push, &[], 0, [2.0, 0.0, 0.0, 0.0]),        // 3
        n(NodeOp::Add, &[2, 3], 0, z()),                      // 4
        n(NodeOp::Scalar, &[], 0, [2.0, 0.0, 0.0, 0.0]),      // 5
        n(NodeOp::MoveTo, &[4, 5], 0, z()),                   // 6
        n(NodeOp::State, &[], 0, z()),                        // 7
        n(NodeOp::Add, &[7, 1], 0, z()),                      // 8
        n(NodeOp::Store, &[8], 0, z()),                       // 9
    ];
    encode_parts(&nodes, &[], 1)
}

fn plan(source: u32, seq: u32, tick: u64, ops: &[Op], graph: Option<&[u8]>) -> MicroPlan {
    let mut b = PlanBuilder::new(Tick(tick), SourceId(source), seq);
    if let Some(g) = graph {
        b.graph_upload(g);
    }
    for op in ops {
        b.push(*op);
    }
    MicroPlan::decode(b.build()).expect("builder output decodes")
}

fn npcs(w: &World) -> Vec<Handle> {
    w.table(Archetype::Npc).handles().iter().map(|&h| Handle::from_bits(h)).collect()
}

fn binds(hs: &[Handle], graph: u64) -> Vec<Op> {
    hs.iter().map(|&handle| Op::GraphBind { handle, graph }).collect()
}

/// (plan status, rejected (index, code)) of one step.
fn outcome(w: &mut World, p: MicroPlan) -> (Status, Vec<(u32, Status)>) {
    let j = w.step(&[p], &mut NoClock);
    let pj = &j.plans[0];
    (pj.status, pj.rejected_index.iter().copied().zip(pj.rejected_code.iter().copied()).collect())
}

/// A small world whose NPCs were bound to the walker in tick 1: (world,
/// its NPCs, the graph's hash, tick 1's journal).
fn walking() -> (World, Vec<Handle>, u64, TickJournal) {
    let mut w = small_world();
    let hs = npcs(&w);
    let g = walker();
    let hash = graph_hash(&g);
    let j = w.step(&[plan(0, 1, 1, &binds(&hs, hash), Some(&g))], &mut NoClock).clone();
    (w, hs, hash, j)
}

#[test]
fn a_bound_graph_drives_its_npcs_inside_the_tick() {
    let (mut w, hs, hash, j) = walking();
    assert_eq!(j.plans[0].status, Status::Ok, "{:?}", j.plans[0]);
    assert_eq!(j.graphs.len(), 1);
    assert_eq!((j.graphs[0].graph, j.graphs[0].npcs, j.graphs[0].ops_emitted, j.graphs[0].ops_rejected), (hash, hs.len() as u32, hs.len() as u32, 0));
    // Same tick: the graph ran on the positions physics left and set each
    // NPC's move target to pos + (1, 0, 0) + push.
    let ops = w.graph_ops().to_vec();
    let mut sorted = hs.clone();
    sorted.sort_by_key(|h| h.to_bits());
    assert_eq!(ops.iter().map(|o| o.handle).collect::<Vec<_>>(), sorted, "ascending handle order");
    let t = w.table(Archetype::Npc);
    for o in &ops {
        let row = t.handles().iter().position(|&h| h == o.handle.to_bits()).expect("live npc");
        assert_eq!(o.status, Status::Ok);
        assert_eq!(o.s, 2.0);
        let target = [t.f32(ColumnId::TargetX)[row], t.f32(ColumnId::TargetY)[row], t.f32(ColumnId::TargetZ)[row]];
        assert_eq!(target, o.v, "the op was applied");
    }
    assert_eq!(w.graphs().members(hash), hs.len());
    for _ in 0..30 {
        w.step(&[], &mut NoClock);
    }
    assert_eq!(w.graph_ops().len(), hs.len(), "runs every tick");
    // Unbind (graph 0) stops it; the graph stays held.
    let next = w.tick().0 + 1;
    let (st, _) = outcome(&mut w, plan(0, 2, next, &binds(&hs, 0), None));
    assert_eq!(st, Status::Ok);
    assert!(w.graph_ops().is_empty());
    assert!(w.graphs().contains(hash));
}

#[test]
fn a_despawned_npc_leaves_its_graph_and_a_graph_with_none_left_does_not_run() {
    let (mut w, hs, hash, j) = walking();
    assert_eq!(j.plans[0].status, Status::Ok);
    let despawn = |hs: &[Handle]| hs.iter().map(|&handle| Op::Despawn { handle }).collect::<Vec<_>>();
    // Despawned in phase 2; the graph (phase 5) no longer drives it and
    // the binding ends that tick.
    let (st, _) = outcome(&mut w, plan(0, 2, 2, &despawn(&hs[..1]), None));
    assert_eq!(st, Status::Ok);
    assert_eq!(w.graph_ops().len(), hs.len() - 1);
    assert!(w.graph_ops().iter().all(|o| o.handle != hs[0]));
    assert_eq!(w.graphs().bound_to(hs[0]), None);
    assert_eq!(w.graphs().members(hash), hs.len() - 1);
    // The tick the last NPCs die in: bound at its start, none left to run.
    let j = w.step(&[plan(0, 3, 3, &despawn(&hs[1..]), None)], &mut NoClock).clone();
    assert_eq!(j.plans[0].status, Status::Ok);
    assert!(j.graphs.is_empty() && w.graph_ops().is_empty(), "{:?}", j.graphs);
    assert_eq!(w.graphs().members(hash), 0);
    assert!(w.graphs().contains(hash), "the graph stays held");
}

fn run(ticks: u64, snapshot_at: Option<u64>) -> (Vec<u64>, Option<Vec<u8>>) {
    let mut w = small_world();
    let hs = npcs(&w);
    let g = walker();
    let mut hashes = Vec::new();
    let mut snap = None;
    for t in 1..=ticks {
        let plans = if t == 1 { vec![plan(0, 1, 1, &binds(&hs, graph_hash(&g)), Some(&g))] } else { vec![] };
        hashes.push(w.step(&plans, &mut NoClock).world_hash);
        if snapshot_at == Some(t) {
            snap = Some(w.snapshot().expect("snapshot"));
        }
    }
    (hashes, snap)
}

#[test]
fn graph_runs_are_deterministic_hashed_and_survive_snapshots() {
    let (a, snap) = run(240, Some(120));
    let (b, _) = run(240, None);
    assert_eq!(a, b, "two runs, identical hash lines");
    // The graph is in the world hash: the same world without it differs.
    let mut plain = small_world();
    let h1 = plain.step(&[], &mut NoClock).world_hash;
    assert_ne!(h1, a[0]);
    // Restore mid-run: same graph, bindings and registers; the same hashes after.
    let mut r = World::restore(&snap.expect("snapshot taken")).expect("restore");
    assert_eq!(r.world_hash(), a[119]);
    assert_eq!(r.graphs().members(graph_hash(&walker())), npcs(&r).len());
    let cont: Vec<u64> = (0..120).map(|_| r.step(&[], &mut NoClock).world_hash).collect();
    assert_eq!(cont, a[120..]);
}

/// Recomputes a graph's checksum (bytes 24..32: xxh3-64 with them zeroed).
fn reseal(mut g: Vec<u8>) -> Vec<u8> {
    g[24..32].fill(0);
    let sum = xxhash_rust::xxh3::xxh3_64(&g);
    g[24..32].copy_from_slice(&sum.to_le_bytes());
    g
}

/// Re-encodes `g` with one node replaced (checksum recomputed).
fn with_node(g: &[u8], i: usize, f: impl FnOnce(&mut Node)) -> Vec<u8> {
    let d = sim_core::graph::Graph::decode(g).expect("valid base");
    let mut nodes = d.nodes.clone();
    f(&mut nodes[i]);
    encode_parts(&nodes, &d.pool, d.state_count)
}

#[test]
fn every_graph_refusal_is_a_named_status_and_applies_nothing() {
    let g = walker();
    let mut seen = BTreeSet::new();
    let mut refuse = |bytes: Vec<u8>, want: Status, want_index: Option<u32>| {
        let mut w = small_world();
        let mut twin = small_world();
        let hs = npcs(&w);
        let (st, rej) = outcome(&mut w, plan(0, 1, 1, &binds(&hs, graph_hash(&bytes)), Some(&bytes)));
        assert_eq!(st, want, "{rej:?}");
        assert_eq!(rej[0].1, want);
        if let Some(i) = want_index {
            assert_eq!(rej[0].0, i, "the op of the failing node");
        }
        assert!(w.graphs().is_empty(), "nothing held");
        assert_eq!(w.world_hash(), twin.step(&[], &mut NoClock).world_hash, "nothing applied");
        seen.insert(want);
    };
    // The op index of node k's first word: (32 + 32 k) / 4.
    let mut bad_sum = g.clone();
    bad_sum[40] ^= 1;
    refuse(bad_sum, Status::GraphMalformed, None);
    refuse(g[..g.len() - 32].to_vec(), Status::GraphMalformed, None);
    let mut unknown = g.clone();
    unknown[32 + 3 * 32] = 250;
    refuse(reseal(unknown), Status::GraphUnknownNode, Some(8 + 3 * 8));
    refuse(with_node(&g, 2, |n| n.inputs[1] = 4), Status::GraphCycle, Some(8 + 2 * 8));
    refuse(with_node(&g, 6, |n| n.inputs[1] = 4), Status::GraphType, Some(8 + 6 * 8));
    refuse(with_node(&g, 3, |n| n.imm[0] = 1000.0), Status::GraphBadConstant, Some(8 + 3 * 8));
    refuse(with_node(&g, 1, |n| n.imm[0] = f32::NAN), Status::GraphBadConstant, Some(8 + 8));
    let many: Vec<Node> = std::iter::once(n(NodeOp::Pos, &[], 0, z())).chain((0..1100).map(|_| n(NodeOp::Neg, &[0], 0, z()))).collect();
    refuse(encode_parts(&many, &[], 0), Status::GraphTooLarge, None);
    // 17 rays: more queries than a graph may make.
    let rays: Vec<Node> = [n(NodeOp::Pos, &[], 0, z())].into_iter().chain((0..17).map(|_| n(NodeOp::Ray, &[0, 0], 0, [1.0, 0.0, 0.0, 0.0]))).collect();
    refuse(encode_parts(&rays, &[], 0), Status::GraphTooLarge, None);
    assert_eq!(seen.len(), 6);

    // Binding a graph nobody uploaded.
    let mut w = small_world();
    let hs = npcs(&w);
    let (st, rej) = outcome(&mut w, plan(0, 1, 1, &binds(&hs, 0xDEAD), None));
    assert_eq!((st, rej[0]), (Status::UnknownGraph, (0, Status::UnknownGraph)));
    seen.insert(Status::UnknownGraph);

    // Binding NPCs the source does not own: the upload in the same plan
    // is refused with it (plans are atomic).
    let (st, rej) = outcome(&mut w, plan(5, 1, 2, &binds(&hs, graph_hash(&g)), Some(&g)));
    assert_eq!(st, Status::NotOwner, "{rej:?}");
    assert!(w.graphs().is_empty());
    assert!(w.graph_ops().is_empty());
    seen.insert(Status::GraphOverBudget);
    over_budget();
    let graph_statuses: BTreeSet<Status> = Status::ALL.iter().copied().filter(|s| s.name().contains("GRAPH")).collect();
    assert_eq!(seen, graph_statuses);
}

/// A policy may bind at most MAX_BOUND_COST_PER_SOURCE of graph cost: 15
/// rays per NPC (7,526 milli-units) on 1,400 NPCs is over, 1,000 is not;
/// the server is not limited. A graph above MAX_COST_PER_NPC is refused
/// on upload.
fn over_budget() {
    let text = std::fs::read_to_string(repo_root().join("tests/scenarios/small.toml")).expect("small.toml");
    let text = text.replacen("count = 2\nradius = 3.5", "count = 1400\nradius = 30.0", 1);
    assert!(text.contains("count = 1400"));
    let s = Scenario::parse(&text, "many-npcs.toml").expect("scenario");
    let mut w = World::from_scenario(&s, None);
    let hs = npcs(&w);
    assert_eq!(hs.len(), 1400);
    let grants: Vec<Op> = hs.iter().map(|&handle| Op::Grant { handle, owner: 5 }).collect();
    assert_eq!(outcome(&mut w, plan(0, 1, 1, &grants, None)).0, Status::Ok);
    let mut nodes = vec![n(NodeOp::Pos, &[], 0, z()), n(NodeOp::Vector, &[], 0, [1.0, 0.0, 0.0, 0.0])];
    nodes.extend((0..15).map(|_| n(NodeOp::Ray, &[0, 1], 0, [1.0, 0.0, 0.0, 0.0])));
    nodes.push(n(NodeOp::Scalar, &[], 0, [1.0, 0.0, 0.0, 0.0]));
    nodes.push(n(NodeOp::MoveTo, &[0, 17], 0, z()));
    let g = encode_parts(&nodes, &[], 0);
    let hash = graph_hash(&g);
    assert_eq!(sim_core::graph::Graph::decode(&g).expect("valid").cost_milli, 7_526);
    let t = w.tick().0;
    let (st, rej) = outcome(&mut w, plan(5, 1, t + 1, &binds(&hs, hash), Some(&g)));
    assert_eq!(st, Status::GraphOverBudget);
    // 10,000,000 / 7,526 = 1,328 NPCs fit; the 1,329th bind is refused.
    assert_eq!(rej[0], ((g.len() / 4) as u32 + 1328, Status::GraphOverBudget), "first refused bind");
    assert!(w.graphs().is_empty());
    let (st, _) = outcome(&mut w, plan(5, 2, t + 2, &binds(&hs[..1000], hash), Some(&g)));
    assert_eq!(st, Status::Ok);
    assert_eq!(w.graphs().members(hash), 1000);
    let (st, _) = outcome(&mut w, plan(0, 2, t + 3, &binds(&hs, hash), None));
    assert_eq!(st, Status::Ok, "the server is not budgeted");
    // Over the per-NPC cap: 16 rays fit the query count but not the cost.
    nodes.insert(17, n(NodeOp::Ray, &[0, 1], 0, [1.0, 0.0, 0.0, 0.0]));
    nodes[19].inputs[1] = 18;
    let heavy = encode_parts(&nodes, &[], 0);
    let err = sim_core::graph::Graph::decode(&heavy).expect_err("over the per-NPC cap");
    assert_eq!(err.status, Status::GraphOverBudget, "{err}");
}

/// Every sensor feeding a move_to: a ray ahead, push, nearest and count.
fn sensing() -> Vec<u8> {
    let nodes = [
        n(NodeOp::Pos, &[], 0, z()),                          // 0
        n(NodeOp::Vector, &[], 0, [0.0, 0.2, 0.0, 0.0]),      // 1
        n(NodeOp::Add, &[0, 1], 0, z()),                      // 2 ray origin
        n(NodeOp::Vector, &[], 0, [1.0, 0.0, 0.5, 0.0]),      // 3 ray direction
        n(NodeOp::Ray, &[2, 3], 0, [3.0, 0.0, 0.0, 0.0]),     // 4
        n(NodeOp::Scalar, &[], 0, [3.0, 0.0, 0.0, 0.0]),      // 5
        n(NodeOp::Min, &[4, 5], 0, z()),                      // 6 finite distance
        n(NodeOp::Push, &[], 0, [3.0, 0.0, 0.0, 0.0]),        // 7
        n(NodeOp::Nearest, &[], 0, [3.0, 0.0, 0.0, 0.0]),     // 8
        n(NodeOp::Count, &[], 0, [3.0, 0.0, 0.0, 0.0]),       // 9
        n(NodeOp::Add, &[7, 8], 0, z()),                      // 10
        n(NodeOp::Scale, &[10, 6], 0, z()),                   // 11
        n(NodeOp::Scalar, &[], 0, [0.01, 0.0, 0.0, 0.0]),     // 12
        n(NodeOp::Mul, &[9, 12], 0, z()),                     // 13
        n(NodeOp::Scale, &[11, 13], 0, z()),                  // 14
        n(NodeOp::Add, &[0, 14], 0, z()),                     // 15
        n(NodeOp::Scalar, &[], 0, [2.0, 0.0, 0.0, 0.0]),      // 16
        n(NodeOp::MoveTo, &[15, 16], 0, z()),                 // 17
        n(NodeOp::Store, &[14], 0, z()),                      // 18
    ];
    encode_parts(&nodes, &[], 1)
}

/// Hash lines of 1,000 NPCs running `sensing` for 40 ticks, stepped on a
/// rayon pool of `threads` (0: no pool), by kernels or the interpreter.
fn sensing_run(threads: usize, interpret: bool) -> (Vec<u64>, u64) {
    let s = Scenario::load(&repo_root().join("tests/scenarios/npc1000.toml")).expect("npc1000 scenario");
    let mut w = World::from_scenario(&s, None);
    w.set_graph_interpreter(interpret);
    let hs = npcs(&w);
    let g = sensing();
    let mut hashes = Vec::new();
    let mut emitted = 0;
    let pool = (threads > 0).then(|| rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool"));
    for t in 1..=40 {
        let plans = if t == 1 { vec![plan(0, 1, 1, &binds(&hs, graph_hash(&g)), Some(&g))] } else { vec![] };
        let hash = match &pool {
            Some(p) => p.install(|| w.step(&plans, &mut NoClock).world_hash),
            None => w.step(&plans, &mut NoClock).world_hash,
        };
        hashes.push(hash);
        emitted += w.graph_ops().len() as u64;
    }
    (hashes, emitted)
}

#[test]
fn graph_batches_split_across_threads_hash_the_same() {
    let (serial, emitted) = sensing_run(0, false);
    assert!(emitted >= 39 * 1000, "every NPC emits each tick after the bind: {emitted}");
    for threads in [1, 2, 3] {
        assert_eq!(sensing_run(threads, false).0, serial, "kernels on a pool of {threads}");
    }
    assert_eq!(sensing_run(2, true).0, serial, "the interpreter on a pool of 2");
}
