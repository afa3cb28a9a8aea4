"""`python -m dualplane.bench graph [--json] [--quick]`: the utility NPC as a
behaviour graph inside the tick against the same behaviour in Python, in one
run, at 1,000 NPCs (`tests/scenarios/npc1000.toml`) and 10,000
(`tests/scenarios/npc10k.toml`).

- graph_ns_per_npc: the graph's execution per NPC per tick, from the tick
  journal (`Journal.graphs[...]["exec_ns"] / npcs`), median over ticks;
- python_ns_per_npc: `utility_npc_graph.reference`, the same behaviour in
  vectorised numpy (the bit-exact twin the parity test holds the graph
  to: columns, `Sim.raycast` for the fan, the neighbour push), timed on the
  same world, per NPC, median over samples;
- speedup: python over graph;
- graph_share_of_tick: the graph's time over the whole tick's (the sum of
  `Journal.phase_ns`), medians.

- threads: the tick's threads (`--threads`; default as `dualplane serve`:
  the cores available, at most 8). Graph batches split across them;
  physics steps on one (rapier's parallel step is opt-in).

Keys without a suffix are the 10k numbers (the issue's contract); the same
with `_1000` / `_10000` for both sizes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from . import PlanBuilder, Sim, Status
from .graph import graph_hash
from .policies import utility_npc_graph as u

SCENARIOS = Path(__file__).resolve().parents[3] / "tests" / "scenarios"
SIZES = {1000: "npc1000.toml", 10000: "npc10k.toml"}


def _scenario(name: str, scenario_dir: Path) -> Path:
    path = scenario_dir / name
    if not path.is_file():
        raise SystemExit(f"bench graph: expected the scenario {path} (a dualplane checkout's tests/scenarios); pass --scenario-dir DIR holding {', '.join(SIZES.values())}")
    return path


def default_threads() -> int:
    """`dualplane serve`'s default: the cores available, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def measure(path: Path, ticks: int, py_samples: int, warmup: int, threads: int = 1) -> dict[str, float]:
    """Binds the utility graph to every NPC of `path`, steps `warmup`
    ticks, then times `ticks` graph ticks and `py_samples` reference runs
    (each on the world of a graph tick, with the heading the graph read)."""
    sim = Sim(str(path), threads=threads)
    npcs = np.sort(sim.handles("npc"))
    data = u.build()
    j = sim.step(PlanBuilder(sim.tick + 1, 0, 1).graph_upload(data).graph_bind(npcs, graph_hash(data)))
    if j.plans[0].status != Status.OK:
        raise SystemExit(f"bench graph: binding the utility graph was refused: {j.plans[0].error}")
    for _ in range(warmup):
        sim.step()
    graph_ns, tick_ns, py_ns = [], [], []
    every = max(1, ticks // max(1, py_samples))
    prev = _headings(sim)
    for t in range(ticks):
        j = sim.step()
        if not j.graphs or j.graphs[0]["npcs"] == 0:
            raise SystemExit(f"bench graph: tick {j.tick} ran no graph (its NPCs are gone?)")
        g = j.graphs[0]
        graph_ns.append(g["exec_ns"])
        tick_ns.append(sum(j.phase_ns.values()))
        n = g["npcs"]
        if t % every == 0 and len(py_ns) < py_samples:
            # Last tick's stored heading drove this tick's ray: the same
            # input the graph had.
            handles, heading = prev
            t0 = time.perf_counter_ns()
            u.reference(sim, handles, heading)
            py_ns.append((time.perf_counter_ns() - t0) / len(handles))
        prev = _headings(sim)
    g_med, t_med, p_med = (float(np.median(x)) for x in (graph_ns, tick_ns, py_ns))
    g_npc = g_med / n
    return {
        "npcs": float(n),
        "graph_ns_per_npc": g_npc,
        "python_ns_per_npc": p_med,
        "speedup": p_med / g_npc,
        "graph_share_of_tick": g_med / t_med,
        "tick_ms": t_med / 1e6,
    }


def _headings(sim: Sim) -> tuple[np.ndarray, np.ndarray]:
    """(handles, the heading each stored this tick), recovered from the
    graph's move_to targets (pos + heading * LOOKAHEAD)."""
    ops = sim.graph_ops()
    handles = np.asarray(ops["handle"])
    if len(handles) == 0:
        raise SystemExit(f"bench graph: tick {sim.tick}: the graph emitted no ops")
    all_h, all_p = u.world_positions(sim)
    pos = all_p[np.searchsorted(all_h, handles)]
    return handles, ((np.asarray(ops["v"]) - pos) / np.float32(u.LOOKAHEAD)).astype(np.float32)


def run(quick: bool, scenario_dir: Path | None = None, threads: int | None = None) -> dict[str, float]:
    threads = threads or default_threads()
    out: dict[str, float] = {"threads": float(threads)}
    for n, name in SIZES.items():
        r = measure(_scenario(name, scenario_dir or SCENARIOS), ticks=20 if quick else 120, py_samples=2 if quick else 5, warmup=10 if quick else 60, threads=threads)
        out.update({f"{k}_{n}": v for k, v in r.items() if k != "npcs"})
        if n == 10000:
            out.update({k: v for k, v in r.items() if k != "npcs"})
    return out
