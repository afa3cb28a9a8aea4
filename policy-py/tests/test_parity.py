"""Python Sim and `dualplane simulate --plans` give identical world hashes."""

import json
import subprocess

import numpy as np

import dualplane
from conftest import REPO


def scripted_plans() -> list[bytes]:
    """Spawns, velocity changes, impulses and NPC orders over 90 ticks."""
    sim = dualplane.Sim()
    npc = sim.columns("npc")["handle"].copy()
    props = sim.columns("prop")["handle"].copy()
    rng = np.random.default_rng(3)
    plans = []
    for k, tick in enumerate(range(5, 95, 10)):
        b = dualplane.PlanBuilder(tick, 0, k, tick)
        pos = rng.uniform(-5, 5, size=(8, 3)).astype(np.float32)
        pos[:, 1] = 12.0
        b.spawn(np.zeros(8, np.uint32), np.arange(8, dtype=np.uint32) % 3, pos)
        pick = np.ascontiguousarray(props[rng.choice(len(props), 20, replace=False)])
        b.set_velocity(pick, rng.uniform(-3, 3, size=(20, 3)).astype(np.float32))
        b.impulse(np.ascontiguousarray(props[:5]), np.tile(np.array([[0.0, 5.0, 0.0]], np.float32), (5, 1)))
        b.move_to(npc, rng.uniform(-8, 8, size=(len(npc), 3)).astype(np.float32), 2.0)
        b.raycast(pos, np.tile(np.array([[0.0, -1.0, 0.0]], np.float32), (8, 1)), 30.0)
        plans.append(b.build())
    return plans


def test_python_and_cli_agree(tmp_path, bin_path):
    plans = scripted_plans()
    d = tmp_path / "plans"
    d.mkdir()
    for i, p in enumerate(plans):
        (d / f"{i:03}.plan").write_bytes(p)
    out = subprocess.run([str(bin_path), "simulate", "--plans", str(d), "--ticks", "120", "--json"], check=True, capture_output=True, text=True)
    cli = json.loads(out.stdout.strip().splitlines()[-1])
    assert cli["plans_applied"] == len(plans) and cli["plans_rejected"] == 0, cli

    sim = dualplane.Sim()
    for p in plans:
        assert sim.submit(p, check=False) == dualplane.Status.OK
    applied = 0
    for _ in range(120):
        j = sim.step()
        applied += sum(1 for pj in j.plans if pj.status == dualplane.Status.OK)
    assert applied == len(plans)
    assert sim.tick == cli["final_tick"]
    assert f"{sim.world_hash():#018x}" == cli["final_hash"]


def test_plans_given_to_step_match_plans_submitted():
    plans = scripted_plans()
    by_tick: dict[int, list[bytes]] = {}
    for p in plans:
        by_tick.setdefault(int.from_bytes(p[8:16], "little"), []).append(p)
    a, b = dualplane.Sim(), dualplane.Sim()
    for p in plans:
        a.submit(p, check=False)
    for _ in range(100):
        ja = a.step()
        jb = b.step(by_tick.get(b.tick + 1))
        assert ja.world_hash == jb.world_hash


def test_cross_process_hashes_match_the_cli(bin_path):
    sim = dualplane.Sim()
    for _ in range(60):
        sim.step()
    out = subprocess.run([str(bin_path), "simulate", "--ticks", "60", "--json"], check=True, capture_output=True, text=True)
    assert f"{sim.world_hash():#018x}" == json.loads(out.stdout.strip().splitlines()[-1])["final_hash"]
