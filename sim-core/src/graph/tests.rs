use super::*;
use proptest::prelude::*;

/// Pure, deterministic stand-in sensors (the world's are tested in
/// sim-core/tests/graphs.rs).
struct Fake;

impl Sensors for Fake {
    fn ray(&mut self, o: [f32; 3], d: [f32; 3], max: f32) -> f32 {
        let t = eval::dot(o, d);
        if t > 0.0 && t < max {
            t
        } else {
            f32::INFINITY
        }
    }
    fn push(&mut self, npc: usize, radius: f32, mask: u16) -> [f32; 3] {
        [npc as f32 * 0.5 - radius, f32::from(mask), 0.25]
    }
    fn nearest(&mut self, npc: usize, radius: f32, _: u16) -> [f32; 3] {
        [radius, -(npc as f32), 1.0 / (npc as f32 + 1.0)]
    }
    fn count(&mut self, npc: usize, _: f32, mask: u16) -> f32 {
        ((npc * 7 + mask as usize) % 5) as f32
    }
}

fn node(op: NodeOp, inputs: [u16; 3]) -> Node {
    Node { op, arg: 0, inputs, pool: 0, imm: [0.0; 4] }
}

/// `n` with the fields its kind does not read zeroed (what the validator
/// requires).
fn canonical(mut n: Node) -> Node {
    let (arg, pool, imms) = n.op.fields();
    if !arg {
        n.arg = 0;
    }
    if !pool {
        n.pool = 0;
    }
    n.imm[imms..].fill(0.0);
    n
}

fn n0(op: NodeOp) -> Node {
    node(op, [NONE; 3])
}

/// pos -> move_to(pos + (1,0,0), 2)
fn tiny() -> Vec<Node> {
    let mut v = n0(NodeOp::Vector);
    v.imm = [1.0, 0.0, 0.0, 0.0];
    let mut sp = n0(NodeOp::Scalar);
    sp.imm[0] = 2.0;
    vec![n0(NodeOp::Pos), v, node(NodeOp::Add, [0, 1, NONE]), sp, node(NodeOp::MoveTo, [2, 3, NONE])]
}

#[test]
fn round_trip_and_describe() {
    let bytes = encode_parts(&tiny(), &[], 0);
    let g = Graph::decode(&bytes).unwrap();
    assert_eq!(g.encode(), bytes);
    let text = g.describe();
    assert!(text.contains("%2: vec3 = add(%0, %1)"), "{text}");
    assert!(text.contains("%4: move_to(%2, %3)"), "{text}");
}

fn refused(nodes: &[Node], pool: &[f32], state: u16) -> GraphError {
    Graph::decode(&encode_parts(nodes, pool, state)).unwrap_err()
}

#[test]
fn refusals_name_status_and_node() {
    // Forward reference: a cycle by construction.
    let mut g = tiny();
    g[2].inputs[1] = 3;
    let e = refused(&g, &[], 0);
    assert_eq!((e.status, e.node), (Status::GraphCycle, Some(2)));
    // Self reference.
    let mut g = tiny();
    g[2].inputs[0] = 2;
    assert_eq!(refused(&g, &[], 0).status, Status::GraphCycle);
    // Type error: speed must be a scalar.
    let mut g = tiny();
    g[4].inputs[1] = 1;
    let e = refused(&g, &[], 0);
    assert_eq!((e.status, e.node), (Status::GraphType, Some(4)));
    assert!(e.to_string().contains("must be scalar"), "{e}");
    // Missing input (arity).
    let mut g = tiny();
    g[2].inputs[1] = NONE;
    assert_eq!(refused(&g, &[], 0).status, Status::GraphType);
    // Extra input.
    let mut g = tiny();
    g[0].inputs[0] = 0;
    assert_eq!(refused(&g, &[], 0).status, Status::GraphType);
    // Bad constant.
    let mut g = tiny();
    g[3].imm[0] = f32::NAN;
    let e = refused(&g, &[], 0);
    assert_eq!((e.status, e.node), (Status::GraphBadConstant, Some(3)));
    // No action.
    assert_eq!(refused(&tiny()[..4], &[], 0).status, Status::GraphType);
    // State register out of range.
    let mut st = n0(NodeOp::State);
    st.arg = 1;
    let mut g = tiny();
    g.push(st);
    assert_eq!(refused(&g, &[], 1).status, Status::GraphType);
    // Unknown node kind.
    let mut b = encode_parts(&tiny(), &[], 0);
    b[HEADER_SIZE] = 99;
    let sum = checksum(&b);
    b[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&sum.to_le_bytes());
    let e = Graph::decode(&b).unwrap_err();
    assert_eq!((e.status, e.node), (Status::GraphUnknownNode, Some(0)));
    // Over budget: sixteen rays (the query cap) and an action per NPC.
    let mut g = vec![n0(NodeOp::Pos)];
    for _ in 0..16 {
        let mut r = node(NodeOp::Ray, [0, 0, NONE]);
        r.imm[0] = 5.0;
        g.push(r);
    }
    g.push(node(NodeOp::Impulse, [0, NONE, NONE]));
    assert_eq!(refused(&g, &[], 0).status, Status::GraphOverBudget);
    // Curve x not ascending.
    let mut c = node(NodeOp::Curve, [0, NONE, NONE]);
    c.arg = 2;
    let mut g = vec![n0(NodeOp::Health), c, n0(NodeOp::Pos)];
    g.push(node(NodeOp::MoveTo, [2, 1, NONE]));
    assert_eq!(refused(&g, &[1.0, 0.0, 1.0, 1.0], 0).status, Status::GraphBadConstant);
    // Curve reading past the pool.
    assert_eq!(refused(&g, &[1.0, 0.0, 2.0], 0).status, Status::GraphMalformed);
}

#[test]
fn malformed_bytes_never_panic() {
    let good = encode_parts(&tiny(), &[1.0, 2.0], 0);
    for cut in 0..good.len() {
        assert!(Graph::decode(&good[..cut]).is_err());
    }
    let mut bad = good.clone();
    bad[40] ^= 1;
    assert_eq!(Graph::decode(&bad).unwrap_err().status, Status::GraphMalformed);
    let mut bad = good;
    bad[0] = b'X';
    assert_eq!(Graph::decode(&bad).unwrap_err().status, Status::GraphMalformed);
}

// ---- random valid graphs: interpreter == kernel ----

const VALUE_OPS: &[NodeOp] = &[
    NodeOp::Pos, NodeOp::Vel, NodeOp::Health, NodeOp::Target, NodeOp::TickPhase, NodeOp::State, NodeOp::Ray, NodeOp::Push,
    NodeOp::Nearest, NodeOp::Count, NodeOp::Scalar, NodeOp::Vector, NodeOp::Table, NodeOp::Curve, NodeOp::Add, NodeOp::Sub,
    NodeOp::Mul, NodeOp::Div, NodeOp::Min, NodeOp::Max, NodeOp::Neg, NodeOp::Scale, NodeOp::Dot, NodeOp::Length,
    NodeOp::Normalize, NodeOp::Clamp, NodeOp::Lerp, NodeOp::Select, NodeOp::X, NodeOp::Y, NodeOp::Z, NodeOp::Vec,
    NodeOp::Lt, NodeOp::Gt, NodeOp::And, NodeOp::Or, NodeOp::Not, NodeOp::Argmax,
];

/// Builds a valid graph from random seeds: each node's kind and inputs are
/// picked among what earlier nodes offer (a missing type gets a constant).
fn graph_from_seeds(seeds: &[(u8, [u16; 3], [f32; 2])], pool: &[f32]) -> Graph {
    let regs = 2u16;
    let mut nodes: Vec<Node> = Vec::new();
    let mut types: Vec<Ty> = Vec::new();
    let mut queries = 0;
    let pick = |nodes: &mut Vec<Node>, types: &mut Vec<Ty>, want: Ty, seed: u16| -> u16 {
        let of: Vec<usize> = (0..types.len()).filter(|&k| types[k] == want).collect();
        if of.is_empty() {
            let mut c = n0(match want {
                Ty::S => NodeOp::Scalar,
                Ty::V => NodeOp::Vector,
                Ty::B => NodeOp::Not,
            });
            if want == Ty::B {
                // lt(c, c): false
                nodes.push(n0(NodeOp::Scalar));
                types.push(Ty::S);
                c = node(NodeOp::Lt, [(nodes.len() - 1) as u16, (nodes.len() - 1) as u16, NONE]);
            } else {
                c.imm = [f32::from(seed % 7) - 3.0, 0.5, -1.5, 0.0];
            }
            nodes.push(canonical(c));
            types.push(want);
            return (nodes.len() - 1) as u16;
        }
        of[seed as usize % of.len()] as u16
    };
    for &(op, ins, imm) in seeds {
        let mut o = VALUE_OPS[op as usize % VALUE_OPS.len()];
        if o.is_query() {
            queries += 1;
            if queries > 6 {
                o = NodeOp::Add;
            }
        }
        let num = if ins[2] % 2 == 0 { Ty::S } else { Ty::V };
        let (ins_ty, out): (Vec<Ty>, Ty) = match o {
            NodeOp::Pos | NodeOp::Vel | NodeOp::Target | NodeOp::State | NodeOp::Push | NodeOp::Nearest | NodeOp::Vector => (vec![], Ty::V),
            NodeOp::Health | NodeOp::TickPhase | NodeOp::Count | NodeOp::Scalar => (vec![], Ty::S),
            NodeOp::Ray => (vec![Ty::V, Ty::V], Ty::S),
            NodeOp::Table => (vec![Ty::S], Ty::V),
            NodeOp::Curve => (vec![Ty::S], Ty::S),
            NodeOp::Add | NodeOp::Sub | NodeOp::Mul | NodeOp::Div | NodeOp::Min | NodeOp::Max => (vec![num, num], num),
            NodeOp::Neg | NodeOp::Clamp => (vec![num], num),
            NodeOp::Scale => (vec![Ty::V, Ty::S], Ty::V),
            NodeOp::Dot => (vec![Ty::V, Ty::V], Ty::S),
            NodeOp::Length | NodeOp::X | NodeOp::Y | NodeOp::Z => (vec![Ty::V], Ty::S),
            NodeOp::Normalize => (vec![Ty::V], Ty::V),
            NodeOp::Lerp => (vec![num, num, Ty::S], num),
            NodeOp::Select => (vec![Ty::B, num, num], num),
            NodeOp::Vec => (vec![Ty::S, Ty::S, Ty::S], Ty::V),
            NodeOp::Lt | NodeOp::Gt => (vec![Ty::S, Ty::S], Ty::B),
            NodeOp::And | NodeOp::Or => (vec![Ty::B, Ty::B], Ty::B),
            NodeOp::Not => (vec![Ty::B], Ty::B),
            NodeOp::Argmax => (if ins[2] % 3 == 0 { vec![Ty::S, Ty::S] } else { vec![Ty::S, Ty::S, Ty::S] }, Ty::S),
            _ => unreachable!(),
        };
        let mut inputs = [NONE; 3];
        for (k, &t) in ins_ty.iter().enumerate() {
            inputs[k] = pick(&mut nodes, &mut types, t, ins[k]);
        }
        let mut n = node(o, inputs);
        n.imm = [imm[0], imm[1], 0.0, 0.0];
        match o {
            NodeOp::TickPhase => {
                n.pool = u32::from(ins[0] % 50) + 1;
                n.arg = ins[1] % 6 + 1;
            }
            NodeOp::State => n.arg = ins[0] % regs,
            NodeOp::Ray => n.imm[0] = imm[0].abs().clamp(0.1, MAX_RAY),
            NodeOp::Push | NodeOp::Nearest | NodeOp::Count => {
                n.imm[0] = imm[0].abs().clamp(0.1, MAX_RADIUS);
                n.arg = ins[0] % 8;
            }
            NodeOp::Table => {
                n.arg = (pool.len() / 3).clamp(1, 4) as u16;
                n.pool = 0;
            }
            NodeOp::Curve => {
                n.arg = 3;
                n.pool = 0;
            }
            NodeOp::Normalize => n.imm[0] = imm[0].abs().max(1e-6),
            NodeOp::Clamp => n.imm = [imm[0].min(imm[1]), imm[0].max(imm[1]), 0.0, 0.0],
            _ => {}
        }
        nodes.push(canonical(n));
        types.push(out);
    }
    // Actions over what exists: every kind once, plus the two stores.
    let v = pick(&mut nodes, &mut types, Ty::V, 3);
    let s = pick(&mut nodes, &mut types, Ty::S, 5);
    let b = pick(&mut nodes, &mut types, Ty::B, 1);
    nodes.push(node(NodeOp::MoveTo, [v, s, b]));
    nodes.push(node(NodeOp::SetVelocity, [v, NONE, NONE]));
    let iv = pick(&mut nodes, &mut types, Ty::V, 8);
    nodes.push(node(NodeOp::Impulse, [iv, b, NONE]));
    let mut st = node(NodeOp::Store, [v, NONE, NONE]);
    st.arg = 1;
    nodes.push(st);
    let sv = pick(&mut nodes, &mut types, Ty::V, 9);
    let mut st = node(NodeOp::Store, [sv, NONE, NONE]);
    st.arg = 0;
    nodes.push(st);
    // Curve points: strictly ascending x.
    let mut p = pool.to_vec();
    p.resize(12, 0.0);
    p[0] = -1.0;
    p[2] = 0.5;
    p[4] = 2.0;
    Graph::validate(nodes, p, regs).unwrap_or_else(|e| panic!("generator built an invalid graph: {e}"))
}

fn special() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -50.0f32..50.0,
        1 => Just(0.0f32),
        1 => Just(-0.0f32),
        1 => Just(1e-7f32),
        1 => Just(f32::INFINITY),
    ]
}

fn vec3() -> impl Strategy<Value = [f32; 3]> {
    [special(), special(), special()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
    #[test]
    fn kernel_matches_interpreter(
        seeds in prop::collection::vec((any::<u8>(), [any::<u16>(), any::<u16>(), any::<u16>()], [-20.0f32..20.0, -20.0f32..20.0]), 1..40),
        pool in prop::collection::vec(-10.0f32..10.0, 12),
        npcs in prop::collection::vec((vec3(), vec3(), special(), vec3(), vec3(), vec3()), 1..300),
        tick in 0u64..100_000,
    ) {
        let g = graph_from_seeds(&seeds, &pool);
        let bytes = g.encode();
        let g = Graph::decode(&bytes).expect("round trip");
        let pos: Vec<_> = npcs.iter().map(|n| n.0).collect();
        let vel: Vec<_> = npcs.iter().map(|n| n.1).collect();
        let health: Vec<_> = npcs.iter().map(|n| n.2).collect();
        let target: Vec<_> = npcs.iter().map(|n| n.3).collect();
        let state: Vec<_> = npcs.iter().flat_map(|n| [n.4, n.5]).collect();
        let inp = Inputs { tick, pos: &pos, vel: &vel, health: &health, target: &target, state: &state };
        let a = interpret(&g, &inp, &mut Fake);
        let b = Kernel::compile(&g).run(&inp, &mut Fake);
        prop_assert!(a.same_bits(&b), "graph:\n{}\ninterpreter {:?}\nkernel {:?}", g.describe(), a.emits.first(), b.emits.first());
        prop_assert_eq!(a.state.len(), state.len());
        // set_velocity is unconditional: at least one op per NPC.
        prop_assert!(a.emits.len() >= npcs.len());
    }
}

/// Found by the graph_decode fuzz target: which NaN an add of two NaNs
/// yields changed between the interpreter and the kernel under release
/// optimisation. No NaN bits may leave a graph: a stored NaN lane reads back
/// as 0 and an emitted NaN is the canonical one, on both paths.
#[test]
fn nan_never_leaves_a_graph_with_its_bits() {
    let mut zero = n0(NodeOp::Vector);
    zero.imm = [0.0, 0.0, 0.0, 0.0];
    let mut neg = n0(NodeOp::Vector);
    neg.imm = [-0.0, 0.0, 1.0, 0.0];
    let nodes = vec![
        zero,                                           // 0
        neg,                                            // 1
        node(NodeOp::Div, [0, 0, NONE]),                // 2: (NaN, NaN, NaN)
        node(NodeOp::Div, [1, 0, NONE]),                // 3: (NaN, NaN, +inf)
        node(NodeOp::Add, [2, 3, NONE]),                // 4: NaN + NaN
        node(NodeOp::SetVelocity, [4, NONE, NONE]),     // 5
        Node { arg: 0, ..node(NodeOp::Store, [4, NONE, NONE]) },
    ];
    let g = Graph::decode(&encode_parts(&nodes, &[], 1)).unwrap();
    let pos = [[1.0, 0.5, -2.0]; 2];
    let state = vec![[0.25, -0.5, 2.0]; 2];
    let inp = Inputs { tick: 7, pos: &pos, vel: &pos, health: &[1.0, 2.0], target: &pos, state: &state };
    for out in [interpret(&g, &inp, &mut Fake), Kernel::compile(&g).run(&inp, &mut Fake)] {
        assert_eq!(out.state, vec![[0.0, 0.0, 0.0]; 2], "a NaN register lane is stored as 0");
        assert_eq!(out.emits.len(), 2);
        for e in &out.emits {
            assert_eq!(e.v.map(f32::to_bits), [f32::NAN.to_bits(); 3], "emitted NaN is canonical: {:?}", e.v);
        }
    }
}

/// A field a node's kind does not read must be 0: one behaviour, one
/// encoding (and one hash).
#[test]
fn unread_fields_must_be_zero() {
    let mut junk_imm = n0(NodeOp::Scalar);
    junk_imm.imm = [1.0, 0.5, 0.0, 0.0];
    let mut junk_arg = n0(NodeOp::Pos);
    junk_arg.arg = 3;
    let mut neg_zero = n0(NodeOp::Vector);
    neg_zero.imm = [1.0, 2.0, 3.0, -0.0];
    for bad in [junk_imm, junk_arg, neg_zero] {
        let nodes = vec![n0(NodeOp::Pos), bad, node(NodeOp::SetVelocity, [0, NONE, NONE])];
        let e = Graph::decode(&encode_parts(&nodes, &[], 0)).expect_err("junk in an unread field");
        assert_eq!((e.status, e.node), (Status::GraphMalformed, Some(1)), "{e:?}");
    }
    let mut ok = n0(NodeOp::Vector);
    ok.imm = [1.0, -0.0, 3.0, 0.0];
    assert!(Graph::decode(&encode_parts(&[n0(NodeOp::Pos), ok, node(NodeOp::SetVelocity, [0, NONE, NONE])], &[], 0)).is_ok(), "-0.0 in a read field is a value");
}
