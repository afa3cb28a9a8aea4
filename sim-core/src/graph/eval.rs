//! The reference interpreter: one NPC at a time, node by node. The compiled
//! [`super::Kernel`] must agree with it bit for bit (a proptest checks).
//!
//! The scalar primitives below define the semantics both engines share.

use super::{ActionKind, Graph, NodeOp, NONE};

/// What sensors read from the world, for NPC `npc` of the batch.
pub trait Sensors {
    /// Distance to the first hit along `dir` (not normalised) within `max`
    /// metres from `origin`; `+inf` when nothing is hit.
    fn ray(&mut self, origin: [f32; 3], dir: [f32; 3], max: f32) -> f32;
    /// See [`NodeOp::Push`].
    fn push(&mut self, npc: usize, radius: f32, mask: u16) -> [f32; 3];
    /// See [`NodeOp::Nearest`].
    fn nearest(&mut self, npc: usize, radius: f32, mask: u16) -> [f32; 3];
    /// See [`NodeOp::Count`].
    fn count(&mut self, npc: usize, radius: f32, mask: u16) -> f32;
}

/// One batch of NPCs bound to one graph, as SoA.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub tick: u64,
    pub pos: &'a [[f32; 3]],
    pub vel: &'a [[f32; 3]],
    pub health: &'a [f32],
    pub target: &'a [[f32; 3]],
    /// `state_count` registers per NPC, NPC-major.
    pub state: &'a [[f32; 3]],
}

impl Inputs<'_> {
    #[must_use]
    pub fn len(&self) -> usize {
        self.pos.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pos.is_empty()
    }
}

/// One op an action node emitted: for batch NPC `npc`, `v` (target,
/// velocity or impulse) and `s` (speed for move_to, else 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Emit {
    pub npc: u32,
    pub kind: ActionKind,
    pub v: [f32; 3],
    pub s: f32,
}

/// What a batch produced: ops in (NPC, node) order, and every NPC's
/// registers for the next tick (NPC-major, like [`Inputs::state`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outputs {
    pub emits: Vec<Emit>,
    pub state: Vec<[f32; 3]>,
}

impl Outputs {
    /// Bitwise equality (NaN payloads included).
    #[must_use]
    pub fn same_bits(&self, o: &Outputs) -> bool {
        let v = |a: &[f32; 3], b: &[f32; 3]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        self.emits.len() == o.emits.len()
            && self.emits.iter().zip(&o.emits).all(|(a, b)| a.npc == b.npc && a.kind == b.kind && v(&a.v, &b.v) && a.s.to_bits() == b.s.to_bits())
            && self.state.len() == o.state.len()
            && self.state.iter().zip(&o.state).all(|(a, b)| v(a, b))
    }
}

// ---- shared scalar semantics ----

// A NaN's sign and payload are not deterministic across builds (the
// compiler may swap the operands of `a + b`, and IEEE leaves which NaN
// propagates open), so no NaN bits leave a graph: emitted values carry the
// canonical NaN (validation refuses them anyway), and a register never
// holds NaN (stored as 0), because registers are hashed and snapshotted.

#[inline]
pub(crate) fn canon1(x: f32) -> f32 {
    if x.is_nan() {
        f32::NAN
    } else {
        x
    }
}

#[inline]
pub(crate) fn canon(v: [f32; 3]) -> [f32; 3] {
    v.map(canon1)
}

#[inline]
pub(crate) fn stored(v: [f32; 3]) -> [f32; 3] {
    v.map(|x| if x.is_nan() { 0.0 } else { x })
}

#[inline]
pub(crate) fn fmin(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

#[inline]
pub(crate) fn fmax(a: f32, b: f32) -> f32 {
    if b > a {
        b
    } else {
        a
    }
}

#[inline]
pub(crate) fn truth(b: bool) -> f32 {
    if b {
        1.0
    } else {
        0.0
    }
}

#[inline]
pub(crate) fn tick_phase(tick: u64, period: u32, count: u16) -> f32 {
    ((tick / u64::from(period.max(1))) % u64::from(count.max(1))) as f32
}

/// Row of a table for an index value.
#[inline]
pub(crate) fn table_row(i: f32, rows: u16) -> usize {
    if i.is_nan() || i <= 0.0 {
        0
    } else {
        (i.floor() as usize).min(rows as usize - 1)
    }
}

/// Piecewise-linear curve through `pts` = (x0, y0, x1, y1, ...).
#[inline]
pub(crate) fn curve(x: f32, pts: &[f32]) -> f32 {
    let n = pts.len() / 2;
    if x.is_nan() || x <= pts[0] {
        return pts[1];
    }
    if x >= pts[2 * n - 2] {
        return pts[2 * n - 1];
    }
    let mut k = 0;
    while k + 2 < n && x >= pts[2 * k + 2] {
        k += 1;
    }
    let (x0, y0, x1, y1) = (pts[2 * k], pts[2 * k + 1], pts[2 * k + 2], pts[2 * k + 3]);
    y0 + (x - x0) * (y1 - y0) / (x1 - x0)
}

#[inline]
pub(crate) fn argmax(opts: &[f32]) -> f32 {
    let mut best = 0usize;
    for k in 1..opts.len() {
        if opts[k] > opts[best] {
            best = k;
        }
    }
    best as f32
}

#[inline]
pub(crate) fn dot(a: [f32; 3], b: [f32; 3]) -> f32 {
    (a[0] * b[0] + a[1] * b[1]) + a[2] * b[2]
}

/// The reference: evaluates `g` for every NPC of the batch, one at a time.
pub fn interpret(g: &Graph, inp: &Inputs<'_>, sensors: &mut dyn Sensors) -> Outputs {
    let regs = g.state_count as usize;
    let mut out = Outputs { emits: Vec::new(), state: inp.state.to_vec() };
    let mut vals: Vec<[f32; 3]> = vec![[0.0; 3]; g.nodes.len()];
    for npc in 0..inp.len() {
        for (i, node) in g.nodes.iter().enumerate() {
            let at = |k: usize| vals[node.inputs[k] as usize];
            let s = |k: usize| vals[node.inputs[k] as usize][0];
            let lanes = |f: &dyn Fn(usize) -> f32| -> [f32; 3] { [f(0), f(1), f(2)] };
            let enabled = |k: usize| node.inputs[k] == NONE || vals[node.inputs[k] as usize][0] != 0.0;
            let v: [f32; 3] = match node.op {
                NodeOp::Pos => inp.pos[npc],
                NodeOp::Vel => inp.vel[npc],
                NodeOp::Health => [inp.health[npc], 0.0, 0.0],
                NodeOp::Target => inp.target[npc],
                NodeOp::TickPhase => [tick_phase(inp.tick, node.pool, node.arg), 0.0, 0.0],
                NodeOp::State => inp.state[npc * regs + node.arg as usize],
                NodeOp::Ray => [sensors.ray(at(0), at(1), node.imm[0]), 0.0, 0.0],
                NodeOp::Push => sensors.push(npc, node.imm[0], node.arg),
                NodeOp::Nearest => sensors.nearest(npc, node.imm[0], node.arg),
                NodeOp::Count => [sensors.count(npc, node.imm[0], node.arg), 0.0, 0.0],
                NodeOp::Scalar => [node.imm[0], 0.0, 0.0],
                NodeOp::Vector => [node.imm[0], node.imm[1], node.imm[2]],
                NodeOp::Table => {
                    let r = node.pool as usize + 3 * table_row(s(0), node.arg);
                    [g.pool[r], g.pool[r + 1], g.pool[r + 2]]
                }
                NodeOp::Curve => {
                    let p = node.pool as usize;
                    [curve(s(0), &g.pool[p..p + 2 * node.arg as usize]), 0.0, 0.0]
                }
                NodeOp::Add => lanes(&|l| at(0)[l] + at(1)[l]),
                NodeOp::Sub => lanes(&|l| at(0)[l] - at(1)[l]),
                NodeOp::Mul => lanes(&|l| at(0)[l] * at(1)[l]),
                NodeOp::Div => lanes(&|l| at(0)[l] / at(1)[l]),
                NodeOp::Min => lanes(&|l| fmin(at(0)[l], at(1)[l])),
                NodeOp::Max => lanes(&|l| fmax(at(0)[l], at(1)[l])),
                NodeOp::Neg => lanes(&|l| -at(0)[l]),
                NodeOp::Scale => lanes(&|l| at(0)[l] * s(1)),
                NodeOp::Dot => [dot(at(0), at(1)), 0.0, 0.0],
                NodeOp::Length => [dot(at(0), at(0)).sqrt(), 0.0, 0.0],
                NodeOp::Normalize => {
                    let m = fmax(dot(at(0), at(0)).sqrt(), node.imm[0]);
                    lanes(&|l| at(0)[l] / m)
                }
                NodeOp::Clamp => lanes(&|l| fmin(fmax(at(0)[l], node.imm[0]), node.imm[1])),
                NodeOp::Lerp => lanes(&|l| at(0)[l] + (at(1)[l] - at(0)[l]) * s(2)),
                NodeOp::Select => {
                    if s(0) != 0.0 {
                        at(1)
                    } else {
                        at(2)
                    }
                }
                NodeOp::X => [at(0)[0], 0.0, 0.0],
                NodeOp::Y => [at(0)[1], 0.0, 0.0],
                NodeOp::Z => [at(0)[2], 0.0, 0.0],
                NodeOp::Vec => [s(0), s(1), s(2)],
                NodeOp::Lt => [truth(s(0) < s(1)), 0.0, 0.0],
                NodeOp::Gt => [truth(s(0) > s(1)), 0.0, 0.0],
                NodeOp::And => [truth(s(0) != 0.0 && s(1) != 0.0), 0.0, 0.0],
                NodeOp::Or => [truth(s(0) != 0.0 || s(1) != 0.0), 0.0, 0.0],
                NodeOp::Not => [truth(s(0) == 0.0), 0.0, 0.0],
                NodeOp::Argmax => {
                    let opts: Vec<f32> = node.ins().map(|k| vals[k][0]).collect();
                    [argmax(&opts), 0.0, 0.0]
                }
                NodeOp::MoveTo => {
                    if enabled(2) {
                        out.emits.push(Emit { npc: npc as u32, kind: ActionKind::MoveTo, v: canon(at(0)), s: canon1(s(1)) });
                    }
                    [0.0; 3]
                }
                NodeOp::SetVelocity | NodeOp::Impulse => {
                    if enabled(1) {
                        let kind = if node.op == NodeOp::Impulse { ActionKind::Impulse } else { ActionKind::SetVelocity };
                        out.emits.push(Emit { npc: npc as u32, kind, v: canon(at(0)), s: 0.0 });
                    }
                    [0.0; 3]
                }
                NodeOp::Store => {
                    out.state[npc * regs + node.arg as usize] = stored(at(0));
                    [0.0; 3]
                }
            };
            // Scalars and bools keep lanes 1-2 at zero.
            vals[i] = v;
        }
    }
    out
}
