//! Human-readable listing of a graph (`dualplane graph inspect`).

use super::{Graph, NodeOp, NONE};
use std::fmt::Write;

fn params(g: &Graph, i: usize) -> String {
    let n = &g.nodes[i];
    let f = |x: f32| format!("{x:?}");
    match n.op {
        NodeOp::TickPhase => format!("period={} count={}", n.pool, n.arg),
        NodeOp::State | NodeOp::Store => format!("reg={}", n.arg),
        NodeOp::Ray => format!("max={}", f(n.imm[0])),
        NodeOp::Push | NodeOp::Nearest | NodeOp::Count => format!("radius={} mask={:#05b}", f(n.imm[0]), n.arg),
        NodeOp::Scalar => f(n.imm[0]),
        NodeOp::Vector => format!("({}, {}, {})", f(n.imm[0]), f(n.imm[1]), f(n.imm[2])),
        NodeOp::Normalize => format!("eps={}", f(n.imm[0])),
        NodeOp::Clamp => format!("lo={} hi={}", f(n.imm[0]), f(n.imm[1])),
        NodeOp::Table => {
            let rows: Vec<String> = (0..n.arg as usize)
                .map(|r| {
                    let p = n.pool as usize + 3 * r;
                    format!("({}, {}, {})", f(g.pool[p]), f(g.pool[p + 1]), f(g.pool[p + 2]))
                })
                .collect();
            format!("rows=[{}]", rows.join(", "))
        }
        NodeOp::Curve => {
            let pts: Vec<String> = (0..n.arg as usize)
                .map(|k| {
                    let p = n.pool as usize + 2 * k;
                    format!("({}, {})", f(g.pool[p]), f(g.pool[p + 1]))
                })
                .collect();
            format!("points=[{}]", pts.join(", "))
        }
        _ => String::new(),
    }
}

pub(super) fn describe(g: &Graph) -> String {
    let mut s = String::new();
    for (i, n) in g.nodes.iter().enumerate() {
        let ins: Vec<String> = n.inputs.iter().filter(|&&k| k != NONE).map(|k| format!("%{k}")).collect();
        let p = params(g, i);
        let mut args = ins.join(", ");
        if !p.is_empty() {
            if !args.is_empty() {
                args.push_str(", ");
            }
            args.push_str(&p);
        }
        let lhs = match g.types[i] {
            Some(t) => format!("%{i}: {} = ", t.name()),
            None => format!("%{i}: "),
        };
        let _ = writeln!(s, "{lhs}{}({args})", n.op.name());
    }
    s
}
