"""`python -m dualplane.bench [all|graph] [--json] [--quick]`: the control
plane's numbers (`graph`: behaviour graphs against Python, see
`dualplane.bench_graph`; `all`, the default: the rest, below).

- observe: Python cost per tick to get every entity's columns and build an
  (N, 3) position array, for 1,000 and 10,000 entities;
- plan: build one move_to plan for N NPCs from numpy and submit it (as
  bytes, and as the builder itself), against a naive loop of one single-op
  plan per NPC (the ratio is the point of the batched design). Each sample
  is followed by an untimed step, as in a real loop (caches are cold);
- step: Sim steps per second on the default arena;
- ffi: calls into the extension per policy tick for the example policies
  driving 1,000 NPCs;
- observation: a 1,000-NPC policy's `Sim.observation` (the same columns a
  remote worker gets) and its stream's bytes per second at 60 Hz;
- pool: `SimPool` stepping 8 default arenas on 2 threads over the same 8 on
  1 thread (one after another), and world/agent steps per second per core;
- vector env: `NpcSeekVectorEnv` agent (NPC) steps per second per core,
  actions sampled and observations returned (needs the `rl` extra).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from . import PlanBuilder, Sim, SimPool, ffi_calls
from .scenarios import npc_arena
from .policy import grant_npcs, load_policy, run_local

POLICIES = Path(__file__).parent / "policies"


def _best(fn, repeat: int) -> float:
    """Median seconds of `repeat` runs of fn()."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def observe_cost(n: int, repeat: int = 200) -> float:
    sim = Sim.from_toml(npc_arena(n, half_extent=80.0))
    sim.step()

    def observe():
        c = sim.columns("npc")
        return np.stack((c["pos_x"], c["pos_y"], c["pos_z"]), axis=1)

    assert len(observe()) == n
    return _best(observe, repeat)


def plan_cost(n: int, repeat: int = 50) -> tuple[float, float, float]:
    """Per tick: build + submit (timed), then step (not timed), so plans
    are consumed as in a real loop. Returns the median seconds of: bytes
    submitted, the unbuilt builder submitted, and n single-op plans."""
    sim = Sim.from_toml(npc_arena(n, half_extent=80.0))
    handles = grant_npcs(sim, 1)
    targets = np.random.default_rng(0).uniform(-10, 10, size=(n, 3)).astype(np.float32)

    def per_tick(submit, samples: int) -> float:
        spent = []
        for _ in range(samples):
            t0 = time.perf_counter()
            submit(sim.tick + 1)
            spent.append(time.perf_counter() - t0)
            sim.step()
        return float(np.median(spent))

    def batched(target: int) -> None:
        sim.submit(PlanBuilder(target, 1).move_to(handles, targets, 2.0).build())

    def direct(target: int) -> None:
        sim.submit(PlanBuilder(target, 1).move_to(handles, targets, 2.0))

    def naive(target: int) -> None:
        for i in range(n):
            sim.submit(PlanBuilder(target, 1, i).move_to(handles[i : i + 1], targets[i : i + 1], 2.0).build())

    return per_tick(batched, repeat), per_tick(direct, repeat), per_tick(naive, max(3, repeat // 10))


def steps_per_second(ticks: int = 120) -> float:
    sim = Sim()
    t0 = time.perf_counter()
    for _ in range(ticks):
        sim.step()
    return ticks / (time.perf_counter() - t0)


def ffi_per_tick(policy: str, npcs: int = 1000, ticks: int = 20) -> float:
    sim = Sim.from_toml(npc_arena(npcs, half_extent=60.0))
    grant_npcs(sim, 1)
    act = load_policy(POLICIES / f"{policy}.py")["act"]
    before = ffi_calls()
    run_local(sim, act, 1, ticks)
    return (ffi_calls() - before) / ticks


def pool_speed(ticks: int) -> dict[str, float]:
    """8 default arenas on 1 and 2 threads (after 60 warm-up ticks, best of
    3 alternating runs of `ticks` steps), and 64 seek arenas of 16 NPCs on
    2 threads."""
    pools = {t: SimPool(8, seed=3, threads=t) for t in (1, 2)}
    for p in pools.values():  # past the first second, while the piles settle and contacts allocate
        for _ in range(60):
            p.step()
    best = {1: float("inf"), 2: float("inf")}
    for _ in range(3):
        for t, p in pools.items():
            t0 = time.perf_counter()
            for _ in range(ticks):
                p.step()
            best[t] = min(best[t], time.perf_counter() - t0)
    if not np.array_equal(pools[1].world_hashes(), pools[2].world_hashes()):
        raise SystemExit("bench: SimPool hashes differ between 1 and 2 threads")
    small = SimPool.from_toml(npc_arena(16), 64, seed=1, threads=2)
    small.grant(1)
    acts = np.random.default_rng(0).uniform(-1, 1, size=(64, 16, 2)).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(ticks * 4):
        small.step_move(acts, 1)
        small.observe(["pos_x", "pos_z", "linvel_x", "linvel_z"], source=1, rows=16)
    dt = time.perf_counter() - t0
    return {
        "pool_speedup_8_default_arenas_2_threads": best[1] / best[2],
        "pool_default_arena_world_steps_per_s_per_core": 8 * ticks / best[2] / 2,
        "pool_seek_agent_steps_per_s_per_core": 64 * 16 * ticks * 4 / dt / 2,
    }


def observation_cost(npcs: int = 1000, repeat: int = 50) -> dict[str, float]:
    """`Sim.observation` for a policy controlling `npcs` NPCs (the radius
    default): its Python cost per tick (measured) and the stream's bytes
    per second at 60 Hz, computed from the frame format (41 bytes per
    entity + 25 per frame, as `net::observe::frame_bytes`), not measured
    on a network."""
    sim = Sim.from_toml(npc_arena(npcs, half_extent=60.0))
    grant_npcs(sim, 1)
    sim.step()
    n = len(sim.observation(1)["handle"])
    return {
        f"observation_us_{npcs}": _best(lambda: sim.observation(1), repeat) * 1e6,
        f"observation_entities_{npcs}": float(n),
        f"observation_stream_bytes_per_s_{npcs}_computed": float((n * 41 + 25) * 60),
    }


def vector_env_speed(steps: int) -> dict[str, float]:
    try:
        from .envs import NpcSeekVectorEnv
    except ImportError as e:  # the `rl` extra is not installed
        print(f"bench: skipping the vector env ({e})")
        return {}
    env = NpcSeekVectorEnv(num_envs=64, npcs=16, max_steps=200, seed=0, threads=2)
    env.reset(seed=0)
    env.action_space.seed(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(env.action_space.sample())
    dt = time.perf_counter() - t0
    return {"vector_env_agent_steps_per_s_per_core": 64 * 16 * steps / dt / 2}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dualplane.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="?", default="all", choices=["all", "graph"], help="which numbers (default: all but graph)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true", help="fewer repeats (CI smoke)")
    p.add_argument("--scenario-dir", type=Path, default=None, help="graph: where npc1000.toml and npc10k.toml are (default: the checkout's tests/scenarios)")
    p.add_argument("--threads", type=int, default=None, help="graph: threads the tick runs on (default: as `dualplane serve`, the cores available, at most 8)")
    a = p.parse_args(argv)
    if a.what == "graph":
        from . import bench_graph

        return _print(bench_graph.run(a.quick, a.scenario_dir, a.threads), a.json)
    r = 20 if a.quick else 200
    out: dict[str, float] = {}
    for n in (1000, 10000):
        out[f"observe_us_{n}"] = observe_cost(n, r) * 1e6
        b, d, nv = plan_cost(n, max(5, r // 4))
        out[f"plan_build_submit_bytes_us_{n}"] = b * 1e6
        out[f"plan_submit_builder_us_{n}"] = d * 1e6
        out[f"naive_single_op_plans_us_{n}"] = nv * 1e6
        out[f"batched_over_naive_{n}"] = nv / d
    out["sim_steps_per_s_default_arena"] = steps_per_second(60 if a.quick else 300)
    for pol in ("utility_npc", "random_walk"):
        out[f"ffi_calls_per_tick_{pol}_1000"] = ffi_per_tick(pol)
    out.update(observation_cost(repeat=10 if a.quick else 100))
    out.update(pool_speed(8 if a.quick else 40))
    out.update(vector_env_speed(50 if a.quick else 300))
    return _print(out, a.json)


def _print(out: dict[str, float], as_json: bool) -> int:
    if as_json:
        print(json.dumps({k: round(v, 4) for k, v in out.items()}))
    else:
        for k, v in out.items():
            print(f"{k:40} {v:12.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
