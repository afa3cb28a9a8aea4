"""`python -m dualplane.bench [--json]`: the control plane's numbers.

- observe: Python cost per tick to get every entity's columns and build an
  (N, 3) position array, for 1,000 and 10,000 entities;
- plan: build one move_to plan for N NPCs from numpy and submit it (as
  bytes, and as the builder itself), against a naive loop of one single-op
  plan per NPC (the ratio is the point of the batched design). Each sample
  is followed by an untimed step, as in a real loop (caches are cold);
- step: Sim steps per second on the default arena;
- ffi: calls into the extension per policy tick for the example policies
  driving 1,000 NPCs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from . import PlanBuilder, Sim, ffi_calls
from .envs import npc_arena
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dualplane.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true", help="fewer repeats (CI smoke)")
    a = p.parse_args(argv)
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
    if a.json:
        print(json.dumps({k: round(v, 3) for k, v in out.items()}))
    else:
        for k, v in out.items():
            print(f"{k:40} {v:12.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
