"""PlanBuilder: golden byte vectors, batching, and clear errors."""

import json

import numpy as np
import pytest

import dualplane
from conftest import REPO

VECTORS = REPO / "sim-core" / "ports" / "vectors"

F3 = lambda ops, k: np.array([o[k] for o in ops], np.float32).reshape(-1, 3)  # noqa: E731


def build_vector(v) -> bytes:
    """Builds a golden vector with one batch call per run of same-kind ops."""
    b = dualplane.PlanBuilder(v["target_tick"], v["source"], v["sequence"], v["correlation"])
    runs: list[list[dict]] = []
    for op in v["ops"]:
        if runs and runs[-1][0]["op"] == op["op"]:
            runs[-1].append(op)
        else:
            runs.append([op])
    for ops in runs:
        kind = ops[0]["op"]
        h = np.array([o.get("handle", 0) for o in ops], np.uint64)
        if kind == "spawn":
            b.spawn(
                np.array([o["archetype"] for o in ops], np.uint32),
                np.array([o["shape"] for o in ops], np.uint32),
                F3(ops, "position"),
                np.array([o["rotation"] for o in ops], np.float32).reshape(-1, 4),
                F3(ops, "linvel"),
                F3(ops, "angvel"),
            )
        elif kind == "despawn":
            b.despawn(h)
        elif kind == "set_velocity":
            b.set_velocity(h, F3(ops, "linvel"), F3(ops, "angvel"))
        elif kind == "apply_impulse":
            b.impulse(h, F3(ops, "impulse"))
        elif kind == "move_to":
            b.move_to(h, F3(ops, "target"), np.array([o["max_speed"] for o in ops], np.float32))
        elif kind == "raycast":
            b.raycast(F3(ops, "origin"), F3(ops, "direction"), np.array([o["max_distance"] for o in ops], np.float32))
        elif kind == "overlap":
            b.overlap(F3(ops, "min"), F3(ops, "max"))
        elif kind == "grant":
            b.grant(h, np.array([o["owner"] for o in ops], np.uint32))
        else:
            raise AssertionError(f"unknown op {kind}")
    return b.build()


def test_golden_vectors_are_reproduced_exactly():
    vectors = json.loads((VECTORS / "vectors.json").read_text())["vectors"]
    assert len(vectors) >= 4
    for v in vectors:
        want = (VECTORS / f"{v['name']}.plan").read_bytes()
        got = build_vector(v)
        assert got == want, f"{v['name']}: {len(got)} bytes differ from the golden {len(want)}"


def test_a_changed_value_changes_the_bytes():
    v = json.loads((VECTORS / "vectors.json").read_text())["vectors"][2]
    v["ops"][0]["linvel"][0] += 1.0
    assert build_vector(v) != (VECTORS / f"{v['name']}.plan").read_bytes()


def test_scalars_broadcast_and_batches_append():
    h = np.arange(1, 5, dtype=np.uint64)
    t = np.ones((4, 3), np.float32)
    a = dualplane.PlanBuilder(10, 2).move_to(h, t, 2.5).build()
    b = dualplane.PlanBuilder(10, 2).move_to(h[:2], t[:2], np.full(2, 2.5, np.float32)).move_to(h[2:], t[2:], 2.5).build()
    assert a == b
    assert len(dualplane.PlanBuilder(1, 0).raycast(t, t, 5.0)) == 4


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda b: b.move_to(np.arange(3, dtype=np.int64), np.zeros((3, 3), np.float32), 1.0), "uint64"),
        (lambda b: b.move_to(np.arange(3, dtype=np.uint64), np.zeros((3, 3)), 1.0), "float32"),
        (lambda b: b.move_to(np.arange(3, dtype=np.uint64), np.zeros((3, 2), np.float32), 1.0), "shape (N, 3)"),
        (lambda b: b.move_to(np.arange(3, dtype=np.uint64), np.zeros((4, 3), np.float32), 1.0), "4 rows for 3 ops"),
        (lambda b: b.move_to(np.arange(3, dtype=np.uint64), np.zeros((3, 3), np.float32), np.ones(2, np.float32)), "2 values for 3 ops"),
        (lambda b: b.set_velocity(np.arange(3, dtype=np.uint64), np.zeros((6, 3), np.float32)[::2]), "C-contiguous"),
        (lambda b: b.spawn(0, 0, [[0.0, 1.0, 2.0]]), "float32"),
    ],
)
def test_programmer_errors_raise_clear_messages(call, message):
    with pytest.raises((TypeError, ValueError), match=message.replace("(", r"\(").replace(")", r"\)")):
        call(dualplane.PlanBuilder(1, 0))


def test_rejected_ops_are_data_with_status_enum():
    sim = dualplane.Sim()
    npc = sim.columns("npc")
    bogus = np.array([npc["handle"][0], 0xDEAD_0000_0001], np.uint64)
    j = sim.step(dualplane.PlanBuilder(sim.tick + 1, 0).move_to(bogus, np.zeros((2, 3), np.float32), 1.0).build())
    (pj,) = j.plans
    assert isinstance(pj.status, dualplane.Status)
    assert pj.status != dualplane.Status.OK
    idx, codes = pj.rejected
    assert list(idx) == [1]
    assert dualplane.Status(int(codes[0])) == pj.status
    # Not applied at all (atomic), and malformed bytes are journaled too.
    j2 = sim.step([b"not a plan at all, just bytes padded out to a header" + bytes(64)])
    assert j2.plans[0].status == dualplane.Status.BAD_MAGIC
    assert "magic" in j2.plans[0].error


def test_a_builder_can_be_submitted_unbuilt():
    a, b = dualplane.Sim(), dualplane.Sim()
    h = np.ascontiguousarray(a.columns("npc")["handle"])
    t = np.ones((len(h), 3), np.float32)
    ja = a.step(dualplane.PlanBuilder(1, 0).move_to(h, t, 2.0))
    jb = b.step(dualplane.PlanBuilder(1, 0).move_to(h, t, 2.0).build())
    assert ja.world_hash == jb.world_hash and ja.plans[0].status == dualplane.Status.OK
    assert a.submit(dualplane.PlanBuilder(3, 0).move_to(h, t, 1.0)) == dualplane.Status.OK
    with pytest.raises(TypeError, match="bytes or a PlanBuilder"):
        a.submit("not a plan")
