//! Behaviour graphs (FaaDG v1): policies as data, run inside the tick.
//!
//! A graph is a typed DAG of fixed 32-byte nodes. Every node reads only
//! nodes before it, so a graph is acyclic by construction and evaluates in
//! node order. Values are `f32` scalars (`S`), `f32` 3-vectors (`V`) and
//! booleans (`B`). Arithmetic is IEEE basic operations and `sqrt` only (no
//! transcendentals), evaluated in a fixed order, so a graph gives the same
//! bits on every machine.
//!
//! Layout (little-endian; the length is a multiple of 4 so a plan carries
//! it as `u32` words):
//!
//! ```text
//! header, 32 bytes:
//!    0 magic "DPGR"      4 version u16 (= 1)     6 flags u16 (= 0)
//!    8 node_count u16   10 pool_len u16 (f32s)   12 state_count u16
//!   14 reserved u16 (0) 16 total_len u32         20 reserved u32 (0)
//!   24 checksum u64: xxh3-64 of the whole graph with these 8 bytes zeroed
//! nodes at 32, node_count x 32 bytes:
//!    0 op u16   2 arg u16   4 in0 u16   6 in1 u16   8 in2 u16
//!   10 reserved u16 (0)   12 pool u32   16 imm f32 x 4
//! pool at 32 + 32 * node_count: pool_len f32 constants
//! ```
//!
//! Unused inputs are `0xFFFF`; unused `imm`, `arg` and `pool` fields are 0
//! (+0.0), checked ([`NodeOp::fields`]): one behaviour, one encoding.
//! A graph is named by the xxh3-64 of its bytes ([`graph_hash`]).
//! [`Graph::decode`] trusts no byte: layout, checksum, node kinds, arity,
//! types, ordering, caps and constant ranges are checked, and every refusal
//! is a [`GraphError`] naming the node. The node kinds and their meaning
//! are listed on [`NodeOp`].

use crate::ports::Status;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

pub mod eval;
pub mod kernel;
mod text;

pub use eval::{interpret, Emit, Inputs, Outputs, Sensors};
pub use kernel::Kernel;

pub const GRAPH_MAGIC: [u8; 4] = *b"DPGR";
pub const GRAPH_VERSION: u16 = 1;
pub const HEADER_SIZE: usize = 32;
pub const NODE_SIZE: usize = 32;
const CHECKSUM_AT: usize = 24;
/// No input.
pub const NONE: u16 = 0xFFFF;

/// Caps checked by the validator.
pub const MAX_NODES: usize = 1024;
pub const MAX_POOL: usize = 4096;
pub const MAX_STATE: usize = 8;
pub const MAX_ACTIONS: usize = 8;
pub const MAX_QUERIES: usize = 16;
/// Largest neighbour-sensor radius (m): queries stay local.
pub const MAX_RADIUS: f32 = 16.0;
/// Longest sensor ray (m).
pub const MAX_RAY: f32 = 100.0;
/// Largest magnitude of any constant.
pub const MAX_CONST: f32 = 1.0e6;
/// Static cost of a graph per NPC per tick, in milli-units (1 unit ~ 1 us
/// of tick time, as plan costs), above which it is refused.
pub const MAX_COST_PER_NPC: u64 = 8_000;

/// Value types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// `f32`.
    S,
    /// `[f32; 3]`.
    V,
    /// Boolean.
    B,
}

impl Ty {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Ty::S => "scalar",
            Ty::V => "vec3",
            Ty::B => "bool",
        }
    }
}

macro_rules! node_ops {
    ($($code:literal $v:ident $name:literal $doc:literal,)*) => {
        /// Node kinds. Sensors read the NPC's own columns and the world;
        /// actions emit the ops microplans have, applied through the same
        /// validation as plans.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum NodeOp { $(#[doc = $doc] $v = $code,)* }

        impl NodeOp {
            pub const ALL: &'static [NodeOp] = &[$(NodeOp::$v,)*];

            #[must_use]
            pub fn from_u16(c: u16) -> Option<NodeOp> {
                match c { $($code => Some(NodeOp::$v),)* _ => None }
            }

            #[must_use]
            pub fn name(self) -> &'static str {
                match self { $(NodeOp::$v => $name,)* }
            }

            #[must_use]
            pub fn from_name(n: &str) -> Option<NodeOp> {
                match n { $($name => Some(NodeOp::$v),)* _ => None }
            }

            #[must_use]
            pub fn doc(self) -> &'static str {
                match self { $(NodeOp::$v => $doc,)* }
            }
        }
    };
}

node_ops! {
    1 Pos "pos" "-> V: own position.",
    2 Vel "vel" "-> V: own linear velocity.",
    3 Health "health" "-> S: own health.",
    4 Target "target" "-> V: own move target (zero for entities without one).",
    5 TickPhase "tick_phase" "-> S: (tick / pool) % arg, as a whole number (pool = period in ticks >= 1, arg = count >= 1).",
    6 State "state" "-> V: register `arg` as stored last tick (zero before the first store).",
    7 Ray "ray" "(origin V, dir V) -> S: distance to the first hit along dir (normalised) within imm0 m; +inf when nothing is hit.",
    8 Push "push" "-> V: over other entities (archetype bit mask arg, 0 = all) within imm0 m in the xz plane, the sum of d / |d|^2, d = own - theirs with y = 0 (each term an f32, summed exactly in 2^-32 fixed point, so order-free; then rounded to f32); entities with |d|^2 < 1e-6 are skipped.",
    9 Nearest "nearest" "-> V: offset (theirs - own, y = 0) to the nearest other entity (mask arg) within imm0 m in the xz plane; lower handle on ties; zero when none.",
    10 Count "count" "-> S: number of other entities (mask arg) within imm0 m in the xz plane (|d|^2 >= 1e-6).",
    20 Scalar "scalar" "-> S: the constant imm0.",
    21 Vector "vector" "-> V: the constant (imm0, imm1, imm2).",
    22 Table "table" "(index S) -> V: row floor(clamp(index, 0, arg - 1)) of `arg` vec3 rows at pool offset `pool` (NaN reads row 0).",
    23 Curve "curve" "(x S) -> S: piecewise-linear response through `arg` >= 2 points (x0, y0, x1, y1, ...) at pool offset `pool`, x strictly ascending; clamped to the end values outside; NaN gives y0.",
    30 Add "add" "(a, b) -> a: a + b (S or V, same type).",
    31 Sub "sub" "(a, b) -> a: a - b.",
    32 Mul "mul" "(a, b) -> a: a * b, elementwise.",
    33 Div "div" "(a, b) -> a: a / b, elementwise.",
    34 Min "min" "(a, b) -> a: b if b < a else a, elementwise.",
    35 Max "max" "(a, b) -> a: b if b > a else a, elementwise.",
    36 Neg "neg" "(a) -> a: -a.",
    37 Scale "scale" "(v V, s S) -> V: v * s.",
    38 Dot "dot" "(a V, b V) -> S: (ax*bx + ay*by) + az*bz.",
    39 Length "length" "(v V) -> S: sqrt(dot(v, v)).",
    40 Normalize "normalize" "(v V) -> V: v / max(length(v), imm0), imm0 > 0.",
    41 Clamp "clamp" "(a) -> a: min(max(a, imm0), imm1), imm0 <= imm1, elementwise.",
    42 Lerp "lerp" "(a, b, t S) -> a: a + (b - a) * t.",
    43 Select "select" "(c B, a, b) -> a: a if c else b.",
    44 X "x" "(v V) -> S: v.x.",
    45 Y "y" "(v V) -> S: v.y.",
    46 Z "z" "(v V) -> S: v.z.",
    47 Vec "vec" "(x S, y S, z S) -> V.",
    48 Lt "lt" "(a S, b S) -> B: a < b.",
    49 Gt "gt" "(a S, b S) -> B: a > b.",
    50 And "and" "(a B, b B) -> B.",
    51 Or "or" "(a B, b B) -> B.",
    52 Not "not" "(a B) -> B.",
    53 Argmax "argmax" "(a S, b S[, c S]) -> S: index of the greatest option, the first on ties (a NaN option never wins over an earlier one).",
    60 MoveTo "move_to" "action (target V, speed S[, enable B]): a move_to op for this NPC.",
    61 SetVelocity "set_velocity" "action (linvel V[, enable B]): a set_velocity op (angular velocity zero).",
    62 Impulse "impulse" "action (impulse V[, enable B]): an apply_impulse op.",
    63 Store "store" "action (value V): register `arg` for next tick (each register stored at most once; NaN lanes are stored as 0).",
}

/// The kind of op an action node emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionKind {
    MoveTo,
    SetVelocity,
    Impulse,
}

impl NodeOp {
    /// Action nodes produce no value.
    #[must_use]
    pub fn is_action(self) -> bool {
        matches!(self, NodeOp::MoveTo | NodeOp::SetVelocity | NodeOp::Impulse | NodeOp::Store)
    }

    #[must_use]
    pub fn is_query(self) -> bool {
        matches!(self, NodeOp::Ray | NodeOp::Push | NodeOp::Nearest | NodeOp::Count)
    }

    /// The fields a node of this kind reads besides its inputs: (`arg`,
    /// `pool`, how many leading `imm` values). The others must be 0 (+0.0
    /// for `imm`), so a behaviour has one encoding and one hash.
    #[must_use]
    pub fn fields(self) -> (bool, bool, usize) {
        use NodeOp as O;
        match self {
            O::TickPhase | O::Table | O::Curve => (true, true, 0),
            O::State | O::Store => (true, false, 0),
            O::Push | O::Nearest | O::Count => (true, false, 1),
            O::Ray | O::Scalar | O::Normalize => (false, false, 1),
            O::Clamp => (false, false, 2),
            O::Vector => (false, false, 3),
            _ => (false, false, 0),
        }
    }

    /// Static cost per NPC in milli-units (see [`MAX_COST_PER_NPC`]).
    #[must_use]
    pub fn cost(self) -> u64 {
        match self {
            NodeOp::Ray => 500,
            NodeOp::Push | NodeOp::Nearest | NodeOp::Count => 300,
            NodeOp::MoveTo | NodeOp::SetVelocity | NodeOp::Impulse => 20,
            NodeOp::Curve | NodeOp::Table => 5,
            _ => 2,
        }
    }
}

/// One decoded node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Node {
    pub op: NodeOp,
    pub arg: u16,
    pub inputs: [u16; 3],
    pub pool: u32,
    pub imm: [f32; 4],
}

impl Node {
    /// The inputs that are present.
    pub fn ins(&self) -> impl Iterator<Item = usize> + '_ {
        self.inputs.iter().filter(|&&i| i != NONE).map(|&i| i as usize)
    }
}

/// A refusal: the status code, the node it concerns (if any) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {detail}", status.name(), node.map(|n| format!(" at node {n}")).unwrap_or_default())]
pub struct GraphError {
    pub status: Status,
    pub node: Option<u16>,
    pub detail: String,
}

fn fail<T>(status: Status, node: Option<usize>, detail: impl Into<String>) -> Result<T, GraphError> {
    Err(GraphError { status, node: node.map(|n| n as u16), detail: detail.into() })
}

/// A decoded, validated graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub pool: Vec<f32>,
    pub state_count: u16,
    /// Output type of each node (`None` for actions).
    pub types: Vec<Option<Ty>>,
    /// Static cost per NPC per tick, milli-units.
    pub cost_milli: u64,
}

/// The name of a graph: xxh3-64 of its bytes.
#[must_use]
pub fn graph_hash(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_bits(u32_at(b, at))
}

fn checksum(bytes: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&bytes[..CHECKSUM_AT]);
    h.update(&[0u8; 8]);
    h.update(&bytes[CHECKSUM_AT + 8..]);
    h.digest()
}

fn constant_ok(x: f32) -> bool {
    x.is_finite() && x.abs() <= MAX_CONST
}

impl Graph {
    /// Decodes and validates untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Graph, GraphError> {
        if bytes.len() < HEADER_SIZE {
            return fail(Status::GraphMalformed, None, format!("expected at least {HEADER_SIZE} header bytes, found {}", bytes.len()));
        }
        if bytes[0..4] != GRAPH_MAGIC {
            return fail(Status::GraphMalformed, None, "bad magic (expected \"DPGR\")");
        }
        let version = u16_at(bytes, 4);
        if version != GRAPH_VERSION {
            return fail(Status::GraphMalformed, None, format!("version {version}, this build reads {GRAPH_VERSION}"));
        }
        if u16_at(bytes, 6) != 0 || u16_at(bytes, 14) != 0 || u32_at(bytes, 20) != 0 {
            return fail(Status::GraphMalformed, None, "flags and reserved header fields must be 0");
        }
        let (n, pool_len, state_count) = (u16_at(bytes, 8) as usize, u16_at(bytes, 10) as usize, u16_at(bytes, 12));
        if n == 0 || n > MAX_NODES {
            return fail(Status::GraphTooLarge, None, format!("{n} nodes; expected 1..={MAX_NODES}"));
        }
        if pool_len > MAX_POOL {
            return fail(Status::GraphTooLarge, None, format!("{pool_len} pool constants; at most {MAX_POOL}"));
        }
        if state_count as usize > MAX_STATE {
            return fail(Status::GraphTooLarge, None, format!("{state_count} state registers; at most {MAX_STATE}"));
        }
        let expect = HEADER_SIZE + n * NODE_SIZE + pool_len * 4;
        let total = u32_at(bytes, 16) as usize;
        if total != expect || bytes.len() != expect {
            return fail(
                Status::GraphMalformed,
                None,
                format!("{n} nodes and {pool_len} constants make {expect} bytes; header says {total}, given {}", bytes.len()),
            );
        }
        let stored = u64::from_le_bytes(bytes[CHECKSUM_AT..CHECKSUM_AT + 8].try_into().unwrap_or([0; 8]));
        if stored != checksum(bytes) {
            return fail(Status::GraphMalformed, None, "checksum does not match the graph bytes");
        }
        let pool_at = HEADER_SIZE + n * NODE_SIZE;
        let pool: Vec<f32> = (0..pool_len).map(|i| f32_at(bytes, pool_at + 4 * i)).collect();
        if let Some(i) = pool.iter().position(|&x| !constant_ok(x)) {
            return fail(Status::GraphBadConstant, None, format!("pool constant {i} is {} (expected finite, |x| <= {MAX_CONST})", pool[i]));
        }
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let at = HEADER_SIZE + i * NODE_SIZE;
            let code = u16_at(bytes, at);
            let Some(op) = NodeOp::from_u16(code) else {
                return fail(Status::GraphUnknownNode, Some(i), format!("unknown node kind {code}"));
            };
            if u16_at(bytes, at + 10) != 0 {
                return fail(Status::GraphMalformed, Some(i), "reserved node field must be 0");
            }
            nodes.push(Node {
                op,
                arg: u16_at(bytes, at + 2),
                inputs: [u16_at(bytes, at + 4), u16_at(bytes, at + 6), u16_at(bytes, at + 8)],
                pool: u32_at(bytes, at + 12),
                imm: std::array::from_fn(|k| f32_at(bytes, at + 16 + 4 * k)),
            });
        }
        Graph::validate(nodes, pool, state_count)
    }

    /// Type-checks nodes already parsed (also used by [`Graph::encode`]'s
    /// callers in tests).
    pub fn validate(nodes: Vec<Node>, pool: Vec<f32>, state_count: u16) -> Result<Graph, GraphError> {
        let mut types: Vec<Option<Ty>> = Vec::with_capacity(nodes.len());
        let (mut actions, mut queries, mut cost) = (0usize, 0usize, 0u64);
        let mut stored = [false; MAX_STATE];
        for (i, node) in nodes.iter().enumerate() {
            let ty = check_node(i, node, &types, &pool, state_count, &mut stored)?;
            if node.op.is_action() {
                actions += 1;
                if actions > MAX_ACTIONS {
                    return fail(Status::GraphTooLarge, Some(i), format!("more than {MAX_ACTIONS} action nodes"));
                }
            }
            if node.op.is_query() {
                queries += 1;
                if queries > MAX_QUERIES {
                    return fail(Status::GraphTooLarge, Some(i), format!("more than {MAX_QUERIES} sensor queries"));
                }
            }
            cost += node.op.cost();
            types.push(ty);
        }
        if actions == 0 {
            return fail(Status::GraphType, None, "a graph needs at least one action node");
        }
        if cost > MAX_COST_PER_NPC {
            return fail(Status::GraphOverBudget, None, format!("static cost {cost} milli-units per NPC; at most {MAX_COST_PER_NPC}"));
        }
        Ok(Graph { nodes, pool, state_count, types, cost_milli: cost })
    }

    /// The graph's bytes (the inverse of [`Graph::decode`]).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        encode_parts(&self.nodes, &self.pool, self.state_count)
    }

    /// Pretty-prints the graph, one node per line.
    #[must_use]
    pub fn describe(&self) -> String {
        text::describe(self)
    }
}

/// Encodes nodes, pool and state count (no validation: tests build bad
/// graphs with it).
#[must_use]
pub fn encode_parts(nodes: &[Node], pool: &[f32], state_count: u16) -> Vec<u8> {
    let total = HEADER_SIZE + nodes.len() * NODE_SIZE + pool.len() * 4;
    let mut b = Vec::with_capacity(total);
    b.extend_from_slice(&GRAPH_MAGIC);
    b.extend_from_slice(&GRAPH_VERSION.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&(nodes.len() as u16).to_le_bytes());
    b.extend_from_slice(&(pool.len() as u16).to_le_bytes());
    b.extend_from_slice(&state_count.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&(total as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    for n in nodes {
        b.extend_from_slice(&(n.op as u16).to_le_bytes());
        b.extend_from_slice(&n.arg.to_le_bytes());
        for i in n.inputs {
            b.extend_from_slice(&i.to_le_bytes());
        }
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&n.pool.to_le_bytes());
        for x in n.imm {
            b.extend_from_slice(&x.to_le_bytes());
        }
    }
    for x in pool {
        b.extend_from_slice(&x.to_le_bytes());
    }
    let sum = checksum(&b);
    b[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&sum.to_le_bytes());
    b
}

/// Input `k` of node `i` must exist, precede `i` and have a value of type
/// `want` (`None`: any value type).
fn input(i: usize, node: &Node, k: usize, types: &[Option<Ty>], want: Option<Ty>) -> Result<Ty, GraphError> {
    let src = node.inputs[k];
    if src == NONE {
        return fail(Status::GraphType, Some(i), format!("{} needs input {k}", node.op.name()));
    }
    let src = src as usize;
    if src >= i {
        return fail(Status::GraphCycle, Some(i), format!("input {k} reads node {src}; a node reads only nodes before it"));
    }
    let Some(ty) = types[src] else {
        return fail(Status::GraphType, Some(i), format!("input {k} reads node {src}, an action, which has no value"));
    };
    if let Some(w) = want
        && ty != w
    {
        return fail(Status::GraphType, Some(i), format!("input {k} of {} must be {}, node {src} is {}", node.op.name(), w.name(), ty.name()));
    }
    Ok(ty)
}

fn no_input(i: usize, node: &Node, k: usize) -> Result<(), GraphError> {
    if node.inputs[k] == NONE {
        Ok(())
    } else {
        fail(Status::GraphType, Some(i), format!("{} takes no input {k}", node.op.name()))
    }
}

fn optional_bool(i: usize, node: &Node, k: usize, types: &[Option<Ty>]) -> Result<(), GraphError> {
    if node.inputs[k] != NONE {
        input(i, node, k, types, Some(Ty::B))?;
    }
    Ok(())
}

fn numeric(i: usize, node: &Node, ty: Ty) -> Result<Ty, GraphError> {
    if ty == Ty::B {
        return fail(Status::GraphType, Some(i), format!("{} works on scalars or vec3s, not bools", node.op.name()));
    }
    Ok(ty)
}

fn radius_ok(i: usize, node: &Node) -> Result<(), GraphError> {
    let r = node.imm[0];
    if !(r > 0.0 && r <= MAX_RADIUS) {
        return fail(Status::GraphBadConstant, Some(i), format!("radius {r}; expected 0 < r <= {MAX_RADIUS}"));
    }
    if node.arg > 0b111 {
        return fail(Status::GraphBadConstant, Some(i), format!("archetype mask {:#b}; bits 0-2 only (prop, npc, avatar)", node.arg));
    }
    Ok(())
}

fn pool_range(i: usize, node: &Node, pool: &[f32], len: usize) -> Result<(), GraphError> {
    let start = node.pool as usize;
    if start.checked_add(len).is_none_or(|end| end > pool.len()) {
        return fail(Status::GraphMalformed, Some(i), format!("reads pool [{start}, {start}+{len}) of {} constants", pool.len()));
    }
    Ok(())
}

#[allow(clippy::too_many_lines)]
fn check_node(i: usize, node: &Node, types: &[Option<Ty>], pool: &[f32], state_count: u16, stored: &mut [bool; MAX_STATE]) -> Result<Option<Ty>, GraphError> {
    use NodeOp as O;
    if let Some(k) = node.imm.iter().position(|&x| !constant_ok(x)) {
        return fail(Status::GraphBadConstant, Some(i), format!("imm{k} is {} (expected finite, |x| <= {MAX_CONST})", node.imm[k]));
    }
    let (uses_arg, uses_pool, imms) = node.op.fields();
    if (!uses_arg && node.arg != 0) || (!uses_pool && node.pool != 0) || node.imm[imms..].iter().any(|x| x.to_bits() != 0) {
        return fail(
            Status::GraphMalformed,
            Some(i),
            format!("{} reads {}{}{imms} imm value(s); its other fields must be 0 (one behaviour, one encoding)", node.op.name(), if uses_arg { "arg, " } else { "" }, if uses_pool { "pool, " } else { "" }),
        );
    }
    let arity = match node.op {
        O::Pos | O::Vel | O::Health | O::Target | O::TickPhase | O::State | O::Push | O::Nearest | O::Count | O::Scalar | O::Vector => 0,
        O::Table | O::Curve | O::Neg | O::Length | O::Normalize | O::Clamp | O::X | O::Y | O::Z | O::Not | O::Store => 1,
        O::Ray | O::Add | O::Sub | O::Mul | O::Div | O::Min | O::Max | O::Scale | O::Dot | O::Lt | O::Gt | O::And | O::Or => 2,
        O::Lerp | O::Select | O::Vec => 3,
        // Optional trailing inputs are checked below.
        O::Argmax => 2,
        O::MoveTo => 2,
        O::SetVelocity | O::Impulse => 1,
    };
    let optional = usize::from(matches!(node.op, O::Argmax | O::MoveTo | O::SetVelocity | O::Impulse));
    for k in arity + optional..3 {
        no_input(i, node, k)?;
    }
    let register = |what: &str| -> Result<(), GraphError> {
        if node.arg >= state_count {
            return fail(Status::GraphType, Some(i), format!("{what} register {}; the graph declares {state_count}", node.arg));
        }
        Ok(())
    };
    let s = Some(Ty::S);
    let v = Some(Ty::V);
    let b = Some(Ty::B);
    Ok(match node.op {
        O::Pos | O::Vel | O::Target => Some(Ty::V),
        O::Health => Some(Ty::S),
        O::TickPhase => {
            if node.arg == 0 || node.pool == 0 {
                return fail(Status::GraphBadConstant, Some(i), "tick_phase needs period (pool) >= 1 and count (arg) >= 1");
            }
            Some(Ty::S)
        }
        O::State => {
            register("reads")?;
            Some(Ty::V)
        }
        O::Ray => {
            input(i, node, 0, types, v)?;
            input(i, node, 1, types, v)?;
            let m = node.imm[0];
            if !(m > 0.0 && m <= MAX_RAY) {
                return fail(Status::GraphBadConstant, Some(i), format!("ray length {m}; expected 0 < length <= {MAX_RAY}"));
            }
            Some(Ty::S)
        }
        O::Push | O::Nearest => {
            radius_ok(i, node)?;
            Some(Ty::V)
        }
        O::Count => {
            radius_ok(i, node)?;
            Some(Ty::S)
        }
        O::Scalar => Some(Ty::S),
        O::Vector => Some(Ty::V),
        O::Table => {
            input(i, node, 0, types, s)?;
            if node.arg == 0 {
                return fail(Status::GraphBadConstant, Some(i), "table needs at least one row");
            }
            pool_range(i, node, pool, 3 * node.arg as usize)?;
            Some(Ty::V)
        }
        O::Curve => {
            input(i, node, 0, types, s)?;
            let pts = node.arg as usize;
            if pts < 2 {
                return fail(Status::GraphBadConstant, Some(i), "curve needs at least 2 points");
            }
            pool_range(i, node, pool, 2 * pts)?;
            let p = &pool[node.pool as usize..node.pool as usize + 2 * pts];
            if (1..pts).any(|k| p[2 * k] <= p[2 * k - 2]) {
                return fail(Status::GraphBadConstant, Some(i), "curve x values must be strictly ascending");
            }
            Some(Ty::S)
        }
        O::Add | O::Sub | O::Mul | O::Div | O::Min | O::Max => {
            let a = numeric(i, node, input(i, node, 0, types, None)?)?;
            input(i, node, 1, types, Some(a))?;
            Some(a)
        }
        O::Neg => Some(numeric(i, node, input(i, node, 0, types, None)?)?),
        O::Scale => {
            input(i, node, 0, types, v)?;
            input(i, node, 1, types, s)?;
            Some(Ty::V)
        }
        O::Dot => {
            input(i, node, 0, types, v)?;
            input(i, node, 1, types, v)?;
            Some(Ty::S)
        }
        O::Length => {
            input(i, node, 0, types, v)?;
            Some(Ty::S)
        }
        O::Normalize => {
            input(i, node, 0, types, v)?;
            if node.imm[0] <= 0.0 {
                return fail(Status::GraphBadConstant, Some(i), format!("normalize epsilon {}; expected > 0", node.imm[0]));
            }
            Some(Ty::V)
        }
        O::Clamp => {
            let a = numeric(i, node, input(i, node, 0, types, None)?)?;
            if node.imm[0] > node.imm[1] {
                return fail(Status::GraphBadConstant, Some(i), format!("clamp bounds {} > {}", node.imm[0], node.imm[1]));
            }
            Some(a)
        }
        O::Lerp => {
            let a = numeric(i, node, input(i, node, 0, types, None)?)?;
            input(i, node, 1, types, Some(a))?;
            input(i, node, 2, types, s)?;
            Some(a)
        }
        O::Select => {
            input(i, node, 0, types, b)?;
            let a = input(i, node, 1, types, None)?;
            input(i, node, 2, types, Some(a))?;
            Some(a)
        }
        O::X | O::Y | O::Z => {
            input(i, node, 0, types, v)?;
            Some(Ty::S)
        }
        O::Vec => {
            for k in 0..3 {
                input(i, node, k, types, s)?;
            }
            Some(Ty::V)
        }
        O::Lt | O::Gt => {
            input(i, node, 0, types, s)?;
            input(i, node, 1, types, s)?;
            Some(Ty::B)
        }
        O::And | O::Or => {
            input(i, node, 0, types, b)?;
            input(i, node, 1, types, b)?;
            Some(Ty::B)
        }
        O::Not => {
            input(i, node, 0, types, b)?;
            Some(Ty::B)
        }
        O::Argmax => {
            input(i, node, 0, types, s)?;
            input(i, node, 1, types, s)?;
            if node.inputs[2] != NONE {
                input(i, node, 2, types, s)?;
            }
            Some(Ty::S)
        }
        O::MoveTo => {
            input(i, node, 0, types, v)?;
            input(i, node, 1, types, s)?;
            optional_bool(i, node, 2, types)?;
            None
        }
        O::SetVelocity | O::Impulse => {
            input(i, node, 0, types, v)?;
            optional_bool(i, node, 1, types)?;
            None
        }
        O::Store => {
            input(i, node, 0, types, v)?;
            register("stores")?;
            let r = node.arg as usize;
            if stored[r] {
                return fail(Status::GraphType, Some(i), format!("register {r} is stored twice"));
            }
            stored[r] = true;
            None
        }
    })
}

#[cfg(test)]
mod tests;
