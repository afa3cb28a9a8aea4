"""Example policies, the FFI budget per policy tick, the vector env."""

import numpy as np
import pytest

import dualplane
from dualplane.scenarios import npc_arena
from dualplane.policy import PolicyImportError, grant_npcs, load_policy, run_local
from conftest import REPO

POLICIES = REPO / "policy-py" / "python" / "dualplane" / "policies"


@pytest.mark.parametrize("name", ["utility_npc", "random_walk"])
def test_at_most_10_ffi_calls_per_policy_tick_for_1000_npcs(name):
    sim = dualplane.Sim.from_toml(npc_arena(1000, half_extent=60.0))
    mine = grant_npcs(sim, 1)
    assert len(mine) == 1000
    act = load_policy(POLICIES / f"{name}.py")["act"]
    before = dualplane.ffi_calls()
    journals = run_local(sim, act, 1, 10)
    per_tick = (dualplane.ffi_calls() - before) / 10
    assert per_tick <= 10, per_tick
    assert all(pj.status == dualplane.Status.OK for j in journals for pj in j.plans)
    ops = journals[-1].counters["ops_applied"]
    assert ops >= 1000, ops


def test_the_counter_counts():
    before = dualplane.ffi_calls()
    sim = dualplane.Sim.from_toml(npc_arena(3))
    sim.tick
    sim.columns("npc")
    assert dualplane.ffi_calls() - before == 3


def test_utility_npcs_reach_the_goal_and_use_their_rays():
    sim = dualplane.Sim.from_toml(npc_arena(16))
    grant_npcs(sim, 1)
    ns = load_policy(POLICIES / "utility_npc.py")
    goal = ns["GOALS"][0]

    def spread():
        c = sim.columns("npc")
        p = np.stack((c["pos_x"], c["pos_z"]), axis=1)
        return float(np.linalg.norm(p - goal[[0, 2]], axis=1).mean())

    d0 = spread()
    journals = run_local(sim, ns["act"], 1, 240)
    assert spread() < d0 * 0.6, (d0, spread())
    hit, _, dist = journals[-1].rays()
    assert len(hit) == 16 and np.all(dist > 0)


def test_policy_imports_are_allowlisted(tmp_path):
    p = tmp_path / "p.py"
    p.write_text("import socket\ndef act(obs):\n    return None\n")
    with pytest.raises(PolicyImportError, match="socket"):
        load_policy(p)
    p.write_text("def act(obs):\n    return open('/etc/passwd').read()\n")
    act = load_policy(p)["act"]
    with pytest.raises(NameError):
        act(None)
    p.write_text("x = 1\n")
    with pytest.raises(ValueError, match="act"):
        load_policy(p)
