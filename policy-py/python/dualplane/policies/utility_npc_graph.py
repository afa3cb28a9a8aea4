"""The utility NPC (`utility_npc.py`) as a behaviour graph, run inside the
tick: seek the squad's goal (it changes every 300 ticks), avoid what a ray
along last tick's heading hits within 3 m by steering sideways, else steer
away from neighbours within 3 m (repulsion), blended by score.

One difference from the Python policy is the point of graphs: sensors are
read in the tick they act on (the ray and the neighbours of this tick,
not results that come back a tick or more later), so ray avoidance and
repulsion are both always available and the graph picks by score.

`reference(...)` is the same behaviour in numpy, computed from a `Sim`'s
columns and `Sim.raycast` in the graph's operation order; it emits the same
ops bit for bit (the parity test) and is the Python side of
`python -m dualplane.bench graph`.

    python -m dualplane.policies.utility_npc_graph --out utility_npc.graph
    dualplane simulate --scenario tests/scenarios/npc1000.toml --graph utility_npc.graph --bind archetype=npc
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from dualplane.graph import Graph

GOALS = [[12.0, 1.0, 12.0], [-12.0, 1.0, 12.0], [-12.0, 1.0, -12.0], [12.0, 1.0, -12.0]]
GOAL_PERIOD = 300
AVOID_DIST = 3.0
SPEED = 3.0
LOOKAHEAD = 2.0


def build() -> bytes:
    g = Graph(state=1)
    pos = g.pos()
    goal = g.table(g.tick_phase(GOAL_PERIOD, len(GOALS)), GOALS)
    to_goal = (goal - pos) * g.vector(1.0, 0.0, 1.0)
    dist = to_goal.length()
    seek = to_goal.normalize(1e-3)
    seek_score = (dist / 10.0).clamp(0.2, 1.0)

    heading = g.state(0)
    origin = pos + g.vector(0.0, 0.2, 0.0) + heading * 0.6
    d = g.ray(origin, heading, AVOID_DIST)
    close = d < AVOID_DIST
    side = g.vec(-heading.z, 0.0, heading.x)
    ray_score = 1.0 - d / AVOID_DIST

    push = g.push(AVOID_DIST)
    push_score = push.length().clamp(0.0, 1.0)
    avoid = g.select(close, side, push.normalize(1e-6))
    w = g.select(close, ray_score, push_score)

    blended = seek * (1.0 - w) * seek_score + avoid * w
    new_heading = blended.normalize(1e-6)
    g.store(0, new_heading)
    g.move_to(pos + new_heading * LOOKAHEAD, SPEED)
    return g.build()


def _f(x) -> np.float32:
    return np.float32(x)


def _fmax(a, b):
    """The graph's max: b where b > a, else a (NaN-exact)."""
    return np.where(b > a, b, a)


def _fmin(a, b):
    return np.where(b < a, b, a)


def _normalize(v, eps):
    m = _fmax(np.sqrt((v[:, 0] * v[:, 0] + v[:, 1] * v[:, 1]) + v[:, 2] * v[:, 2]), _f(eps))
    return v / m[:, None]


def _push(own: np.ndarray, others: np.ndarray, radius: float, chunk: int = 256) -> np.ndarray:
    """The graph's push sensor: over others within `radius` in xz, the sum
    of d / |d|^2 (d = own - theirs, each term an f32), summed exactly in
    2^-32 fixed point (scaled in f64, truncated to int64; so the order
    does not matter) and rounded back to f32."""
    out = np.zeros((len(own), 3), np.float32)
    r2max = _f(radius) * _f(radius)
    scale = np.float64(2.0**32)
    for lo in range(0, len(own), chunk):
        o = own[lo : lo + chunk]
        dx = o[:, None, 0] - others[None, :, 0]
        dz = o[:, None, 2] - others[None, :, 2]
        r2 = dx * dx + dz * dz
        near = (r2 >= _f(1e-6)) & (r2 < r2max)
        r2 = np.where(near, r2, _f(1.0))
        for axis, d in ((0, dx), (2, dz)):
            fixed = (np.where(near, d / r2, _f(0.0)).astype(np.float64) * scale).astype(np.int64)
            out[lo : lo + chunk, axis] = (fixed.sum(axis=1, dtype=np.int64).astype(np.float64) / scale).astype(np.float32)
    return out


def world_positions(sim) -> tuple[np.ndarray, np.ndarray]:
    """(handles ascending, positions float32[n, 3]) of every entity."""
    hs, ps = [], []
    for cols in sim.columns().values():
        hs.append(np.asarray(cols["handle"]))
        ps.append(np.stack([cols["pos_x"], cols["pos_y"], cols["pos_z"]], axis=1).astype(np.float32))
    h = np.concatenate(hs)
    order = np.argsort(h, kind="stable")
    return h[order], np.concatenate(ps)[order]


def reference(sim, handles: np.ndarray, heading: np.ndarray):
    """The graph's behaviour in numpy for NPCs `handles` (ascending) of
    `sim` as it is now (after the step the graph ran in), with last tick's
    `heading` float32[n, 3]. Returns (move_to targets float32[n, 3], new
    heading); the speed is SPEED."""
    all_h, all_p = world_positions(sim)
    pos = all_p[np.searchsorted(all_h, handles)]
    goal = np.array(GOALS, np.float32)[(sim.tick // GOAL_PERIOD) % len(GOALS)]
    to_goal = (goal - pos) * np.array([1.0, 0.0, 1.0], np.float32)
    dist = np.sqrt((to_goal[:, 0] * to_goal[:, 0] + to_goal[:, 1] * to_goal[:, 1]) + to_goal[:, 2] * to_goal[:, 2])
    seek = _normalize(to_goal, 1e-3)
    seek_score = _fmin(_fmax(dist / _f(10.0), _f(0.2)), _f(1.0))

    origin = pos + np.array([0.0, 0.2, 0.0], np.float32) + heading * _f(0.6)
    d = sim.raycast(origin, heading, AVOID_DIST)
    close = d < _f(AVOID_DIST)
    side = np.stack([-heading[:, 2], np.zeros(len(pos), np.float32), heading[:, 0]], axis=1)
    ray_score = _f(1.0) - d / _f(AVOID_DIST)

    push = _push(pos, all_p, AVOID_DIST)
    plen = np.sqrt((push[:, 0] * push[:, 0] + push[:, 1] * push[:, 1]) + push[:, 2] * push[:, 2])
    push_score = _fmin(_fmax(plen, _f(0.0)), _f(1.0))
    avoid = np.where(close[:, None], side, _normalize(push, 1e-6))
    w = np.where(close, ray_score, push_score)

    blended = (seek * (_f(1.0) - w)[:, None]) * seek_score[:, None] + avoid * w[:, None]
    new_heading = _normalize(blended, 1e-6).astype(np.float32)
    return (pos + new_heading * _f(LOOKAHEAD)).astype(np.float32), new_heading


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dualplane.policies.utility_npc_graph", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="file to write the graph's bytes to ('-' for stdout)")
    a = p.parse_args(argv)
    data = build()
    if a.out == "-":
        sys.stdout.buffer.write(data)
    else:
        with open(a.out, "wb") as f:
            f.write(data)
        from dualplane.graph import cost, graph_hash

        print(f"wrote {a.out}: {len(data)} bytes, hash {graph_hash(data):#018x}, cost {cost(data)} milli-units per NPC", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
