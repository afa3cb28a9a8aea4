//! The compiled form of a graph: each node becomes one closure specialised
//! for its op and its input slots (no per-NPC dispatch), run over chunks of
//! NPCs as SoA lanes. Worlds cache kernels by graph hash. The interpreter
//! ([`super::interpret`]) stays the reference; both must agree bit for bit.

use super::eval::{argmax, canon, canon1, curve, dot, fmax, fmin, stored, table_row, tick_phase, truth, Emit, Inputs, Outputs, Sensors};
use super::{ActionKind, Graph, NodeOp, Ty, NONE};

/// NPCs per chunk: a node's three lanes of a chunk are 1.5 KiB.
const CHUNK: usize = 128;
const SLOT: usize = 3 * CHUNK;

struct Ctx<'a> {
    inp: &'a Inputs<'a>,
    start: usize,
    len: usize,
}

type Step = Box<dyn Fn(&mut [f32], &Ctx<'_>, &mut dyn Sensors) + Send + Sync>;

enum Action {
    Emit { kind: ActionKind, v: usize, s: Option<usize>, enable: Option<usize> },
    Store { reg: usize, v: usize },
}

/// One worker's buffers in [`Kernel::run_par`] (kept across ticks).
#[derive(Debug, Default)]
pub struct Part {
    buf: Vec<f32>,
    emits: Vec<Emit>,
    /// Its NPCs' registers.
    state: Vec<[f32; 3]>,
}

/// A graph compiled to a sequence of batch kernels.
pub struct Kernel {
    steps: Vec<Step>,
    actions: Vec<Action>,
    nodes: usize,
    regs: usize,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel").field("steps", &self.steps.len()).field("actions", &self.actions.len()).finish()
    }
}

fn slot(node: u16) -> usize {
    node as usize * SLOT
}

/// An elementwise op of one input over `lanes` lanes.
fn map1<F: Fn(f32) -> f32 + Send + Sync + 'static>(out: usize, a: usize, lanes: usize, f: F) -> Step {
    Box::new(move |buf, cx, _| {
        let (lo, hi) = buf.split_at_mut(out);
        for l in 0..lanes {
            let o = &mut hi[l * CHUNK..l * CHUNK + cx.len];
            let x = &lo[a + l * CHUNK..a + l * CHUNK + cx.len];
            for (o, &x) in o.iter_mut().zip(x) {
                *o = f(x);
            }
        }
    })
}

/// An elementwise op of two inputs; `broadcast` reads lane 0 of `b` for
/// every lane (vec3 x scalar).
fn map2<F: Fn(f32, f32) -> f32 + Send + Sync + 'static>(out: usize, a: usize, b: usize, lanes: usize, broadcast: bool, f: F) -> Step {
    Box::new(move |buf, cx, _| {
        let (lo, hi) = buf.split_at_mut(out);
        for l in 0..lanes {
            let o = &mut hi[l * CHUNK..l * CHUNK + cx.len];
            let x = &lo[a + l * CHUNK..a + l * CHUNK + cx.len];
            let yb = if broadcast { b } else { b + l * CHUNK };
            let y = &lo[yb..yb + cx.len];
            for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                *o = f(x, y);
            }
        }
    })
}

/// Per-NPC closure writing all three lanes from a function of the NPC.
fn per_npc<F: Fn(&[f32], &Ctx<'_>, usize, &mut dyn Sensors) -> [f32; 3] + Send + Sync + 'static>(out: usize, f: F) -> Step {
    Box::new(move |buf, cx, sensors| {
        let (lo, hi) = buf.split_at_mut(out);
        for j in 0..cx.len {
            let v = f(lo, cx, j, sensors);
            hi[j] = v[0];
            hi[CHUNK + j] = v[1];
            hi[2 * CHUNK + j] = v[2];
        }
    })
}

fn vec_at(lo: &[f32], base: usize, j: usize) -> [f32; 3] {
    [lo[base + j], lo[base + CHUNK + j], lo[base + 2 * CHUNK + j]]
}

fn column(out: usize, pick: for<'a> fn(&'a Inputs<'a>) -> &'a [[f32; 3]]) -> Step {
    per_npc(out, move |_, cx, j, _| pick(cx.inp)[cx.start + j])
}

impl Kernel {
    /// Compiles a validated graph.
    #[must_use]
    #[allow(clippy::too_many_lines)]
    pub fn compile(g: &Graph) -> Kernel {
        let regs = g.state_count as usize;
        let mut steps: Vec<Step> = Vec::with_capacity(g.nodes.len());
        let mut actions = Vec::new();
        for (i, node) in g.nodes.iter().enumerate() {
            let out = i * SLOT;
            let ins = node.inputs.map(|k| if k == NONE { 0 } else { slot(k) });
            let (a, b, c) = (ins[0], ins[1], ins[2]);
            let lanes = match g.types[i] {
                Some(Ty::V) => 3,
                _ => 1,
            };
            let (imm, arg, pool) = (node.imm, node.arg, node.pool);
            let step: Option<Step> = match node.op {
                NodeOp::Pos => Some(column(out, |x| x.pos)),
                NodeOp::Vel => Some(column(out, |x| x.vel)),
                NodeOp::Target => Some(column(out, |x| x.target)),
                NodeOp::Health => Some(per_npc(out, |_, cx, j, _| [cx.inp.health[cx.start + j], 0.0, 0.0])),
                NodeOp::TickPhase => Some(per_npc(out, move |_, cx, _, _| [tick_phase(cx.inp.tick, pool, arg), 0.0, 0.0])),
                NodeOp::State => {
                    let r = arg as usize;
                    Some(per_npc(out, move |_, cx, j, _| cx.inp.state[(cx.start + j) * regs + r]))
                }
                NodeOp::Ray => Some(per_npc(out, move |lo, _, j, s| [s.ray(vec_at(lo, a, j), vec_at(lo, b, j), imm[0]), 0.0, 0.0])),
                NodeOp::Push => Some(per_npc(out, move |_, cx, j, s| s.push(cx.start + j, imm[0], arg))),
                NodeOp::Nearest => Some(per_npc(out, move |_, cx, j, s| s.nearest(cx.start + j, imm[0], arg))),
                NodeOp::Count => Some(per_npc(out, move |_, cx, j, s| [s.count(cx.start + j, imm[0], arg), 0.0, 0.0])),
                NodeOp::Scalar => Some(per_npc(out, move |_, _, _, _| [imm[0], 0.0, 0.0])),
                NodeOp::Vector => Some(per_npc(out, move |_, _, _, _| [imm[0], imm[1], imm[2]])),
                NodeOp::Table => {
                    let rows: Vec<[f32; 3]> = (0..arg as usize).map(|r| {
                        let p = pool as usize + 3 * r;
                        [g.pool[p], g.pool[p + 1], g.pool[p + 2]]
                    }).collect();
                    Some(per_npc(out, move |lo, _, j, _| rows[table_row(lo[a + j], arg)]))
                }
                NodeOp::Curve => {
                    let pts = g.pool[pool as usize..pool as usize + 2 * arg as usize].to_vec();
                    Some(map1(out, a, 1, move |x| curve(x, &pts)))
                }
                NodeOp::Add => Some(map2(out, a, b, lanes, false, |x, y| x + y)),
                NodeOp::Sub => Some(map2(out, a, b, lanes, false, |x, y| x - y)),
                NodeOp::Mul => Some(map2(out, a, b, lanes, false, |x, y| x * y)),
                NodeOp::Div => Some(map2(out, a, b, lanes, false, |x, y| x / y)),
                NodeOp::Min => Some(map2(out, a, b, lanes, false, fmin)),
                NodeOp::Max => Some(map2(out, a, b, lanes, false, fmax)),
                NodeOp::Neg => Some(map1(out, a, lanes, |x| -x)),
                NodeOp::Scale => Some(map2(out, a, b, 3, true, |x, y| x * y)),
                NodeOp::Dot => Some(per_npc(out, move |lo, _, j, _| [dot(vec_at(lo, a, j), vec_at(lo, b, j)), 0.0, 0.0])),
                NodeOp::Length => Some(per_npc(out, move |lo, _, j, _| {
                    let v = vec_at(lo, a, j);
                    [dot(v, v).sqrt(), 0.0, 0.0]
                })),
                NodeOp::Normalize => Some(per_npc(out, move |lo, _, j, _| {
                    let v = vec_at(lo, a, j);
                    let m = fmax(dot(v, v).sqrt(), imm[0]);
                    [v[0] / m, v[1] / m, v[2] / m]
                })),
                NodeOp::Clamp => Some(map1(out, a, lanes, move |x| fmin(fmax(x, imm[0]), imm[1]))),
                NodeOp::Lerp => Some(Box::new(move |buf: &mut [f32], cx: &Ctx<'_>, _: &mut dyn Sensors| {
                    let (lo, hi) = buf.split_at_mut(out);
                    for l in 0..lanes {
                        for j in 0..cx.len {
                            let (x, y) = (lo[a + l * CHUNK + j], lo[b + l * CHUNK + j]);
                            hi[l * CHUNK + j] = x + (y - x) * lo[c + j];
                        }
                    }
                })),
                NodeOp::Select => Some(Box::new(move |buf: &mut [f32], cx: &Ctx<'_>, _: &mut dyn Sensors| {
                    let (lo, hi) = buf.split_at_mut(out);
                    for l in 0..lanes {
                        for j in 0..cx.len {
                            let src = if lo[a + j] != 0.0 { b } else { c };
                            hi[l * CHUNK + j] = lo[src + l * CHUNK + j];
                        }
                    }
                })),
                NodeOp::X => Some(map1(out, a, 1, |x| x)),
                NodeOp::Y => Some(map1(out, a + CHUNK, 1, |x| x)),
                NodeOp::Z => Some(map1(out, a + 2 * CHUNK, 1, |x| x)),
                NodeOp::Vec => Some(per_npc(out, move |lo, _, j, _| [lo[a + j], lo[b + j], lo[c + j]])),
                NodeOp::Lt => Some(map2(out, a, b, 1, false, |x, y| truth(x < y))),
                NodeOp::Gt => Some(map2(out, a, b, 1, false, |x, y| truth(x > y))),
                NodeOp::And => Some(map2(out, a, b, 1, false, |x, y| truth(x != 0.0 && y != 0.0))),
                NodeOp::Or => Some(map2(out, a, b, 1, false, |x, y| truth(x != 0.0 || y != 0.0))),
                NodeOp::Not => Some(map1(out, a, 1, |x| truth(x == 0.0))),
                NodeOp::Argmax => {
                    let three = node.inputs[2] != NONE;
                    Some(per_npc(out, move |lo, _, j, _| {
                        let m = if three { argmax(&[lo[a + j], lo[b + j], lo[c + j]]) } else { argmax(&[lo[a + j], lo[b + j]]) };
                        [m, 0.0, 0.0]
                    }))
                }
                NodeOp::MoveTo => {
                    let enable = (node.inputs[2] != NONE).then_some(c);
                    actions.push(Action::Emit { kind: ActionKind::MoveTo, v: a, s: Some(b), enable });
                    None
                }
                NodeOp::SetVelocity | NodeOp::Impulse => {
                    let kind = if node.op == NodeOp::Impulse { ActionKind::Impulse } else { ActionKind::SetVelocity };
                    let enable = (node.inputs[1] != NONE).then_some(b);
                    actions.push(Action::Emit { kind, v: a, s: None, enable });
                    None
                }
                NodeOp::Store => {
                    actions.push(Action::Store { reg: arg as usize, v: a });
                    None
                }
            };
            steps.extend(step);
        }
        Kernel { steps, actions, nodes: g.nodes.len(), regs }
    }

    /// Runs the batch. Same results as [`super::interpret`], bit for bit.
    pub fn run(&self, inp: &Inputs<'_>, sensors: &mut dyn Sensors) -> Outputs {
        let mut out = Outputs { emits: Vec::new(), state: inp.state.to_vec() };
        self.run_range(inp, sensors, 0..inp.len(), &mut out.state, &mut out.emits, &mut Vec::new());
        out
    }

    /// [`Kernel::run`] into reused buffers (`out` is overwritten), split
    /// across the current rayon pool's threads in contiguous runs of
    /// chunks, each with its own sensors (from
    /// `sensors`) and buffers (`parts`, reused); emits are joined in NPC
    /// order, so the result is the serial one bit for bit. Serial unless
    /// called inside a pool of more than one thread (no pool is ever
    /// started here: the caller owns the threads).
    pub fn run_par<S: Sensors + Send>(&self, inp: &Inputs<'_>, sensors: impl Fn() -> S + Sync, out: &mut Outputs, parts: &mut Vec<Part>) {
        use rayon::prelude::*;
        let n = inp.len();
        let threads = crate::caller_threads();
        let chunks = n.div_ceil(CHUNK);
        let groups = threads.min(chunks).max(1);
        out.emits.clear();
        out.state.clear();
        if parts.len() < groups {
            parts.resize_with(groups, Part::default);
        }
        if groups == 1 {
            out.state.extend_from_slice(inp.state);
            let p = &mut parts[0];
            return self.run_range(inp, &mut sensors(), 0..n, &mut out.state, &mut out.emits, &mut p.buf);
        }
        // Group g takes chunks [g * chunks / groups, (g + 1) * chunks / groups),
        // writing its registers into its own buffer (copied back below): no
        // allocation once the parts are warm.
        let bound = |g: usize| (g * chunks / groups * CHUNK).min(n);
        let regs = self.regs;
        // Every group writes its own registers back below.
        out.state.resize(inp.state.len(), [0.0; 3]);
        parts[..groups].par_iter_mut().enumerate().for_each(|(g, p)| {
            let range = bound(g)..bound(g + 1);
            p.emits.clear();
            p.state.clear();
            p.state.extend_from_slice(&inp.state[range.start * regs..range.end * regs]);
            self.run_range(inp, &mut sensors(), range, &mut p.state, &mut p.emits, &mut p.buf);
        });
        for (g, p) in parts[..groups].iter().enumerate() {
            out.state[bound(g) * regs..bound(g + 1) * regs].copy_from_slice(&p.state);
            out.emits.extend_from_slice(&p.emits);
        }
    }

    /// Runs NPCs `range`, writing their registers into `state` (theirs
    /// only) and appending their emits.
    fn run_range(&self, inp: &Inputs<'_>, sensors: &mut dyn Sensors, range: std::ops::Range<usize>, state: &mut [[f32; 3]], emits: &mut Vec<Emit>, buf: &mut Vec<f32>) {
        buf.clear();
        buf.resize(self.nodes * SLOT, 0.0);
        let (first, end) = (range.start, range.end);
        let mut start = first;
        while start < end {
            let cx = Ctx { inp, start, len: CHUNK.min(end - start) };
            for s in &self.steps {
                s(buf, &cx, sensors);
            }
            for j in 0..cx.len {
                let npc = start + j;
                for a in &self.actions {
                    match *a {
                        Action::Emit { kind, v, s, enable } => {
                            if enable.is_none_or(|e| buf[e + j] != 0.0) {
                                emits.push(Emit { npc: npc as u32, kind, v: canon(vec_at(buf, v, j)), s: canon1(s.map_or(0.0, |s| buf[s + j])) });
                            }
                        }
                        Action::Store { reg, v } => state[(npc - first) * self.regs + reg] = stored(vec_at(buf, v, j)),
                    }
                }
            }
            start += CHUNK;
        }
    }
}
