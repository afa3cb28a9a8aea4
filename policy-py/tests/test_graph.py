"""Behaviour graphs from Python: the builder, round trips, refusals, and the
utility NPC graph against its numpy reference over 600 ticks."""

import subprocess
import sys

import numpy as np
import pytest

import dualplane
import dualplane.graph as dg
from conftest import REPO
from dualplane.policies import utility_npc_graph as u

NPC1000 = REPO / "tests" / "scenarios" / "npc1000.toml"


def bind_plan(sim, data, handles, source=0, seq=1):
    return dualplane.PlanBuilder(sim.tick + 1, source, seq).graph_upload(data).graph_bind(handles, dg.graph_hash(data))


def test_builder_types_round_trip_and_describe():
    g = dg.Graph(state=1)
    pos = g.pos()
    v = (pos * 2.0 + (1.0, 0.0, 0.0)) / g.vector(2.0, 2.0, 2.0)
    assert v.ty == "V" and (v.length() > 1.0).ty == "B" and v.x.ty == "S"
    s = g.select(v.length() > 1.0, v, -v)
    g.store(0, s)
    g.move_to(pos + g.state(0), g.curve(v.length(), [(0.0, 1.0), (5.0, 3.0)]), enable=~(g.count(2.0, dg.mask("npc")) > 3.0))
    data = g.build()
    assert len(data) % 4 == 0 and data[:4] == b"DPGR"
    back = dg.Graph.from_bytes(data)
    assert back.build() == data
    assert back.value(len(back) - 2).ty == "B"  # the enable flag, just before move_to
    text = dg.describe(data)
    assert "move_to" in text and "curve" in text and "count(radius=2.0 mask=0b010)" in text
    assert dg.cost(data) > 0 and dg.graph_hash(data) == g.hash()
    names = {n for _, n, _ in dg.node_kinds()}
    assert {"ray", "push", "nearest", "argmax", "table", "move_to", "store"} <= names
    with pytest.raises(TypeError, match="two scalars or two vectors"):
        _ = pos + g.health()
    with pytest.raises(TypeError, match="this graph"):
        dg.Graph().move_to(pos, 1.0)


@pytest.mark.parametrize(
    "mutate, status",
    [
        (lambda n: n.__setitem__(2, ("add", 0, (0, 5, 0xFFFF), 0, (0.0,) * 4)), "GRAPH_CYCLE"),
        (lambda n: n.__setitem__(2, ("add", 0, (0, 1, 0xFFFF), 0, (0.0,) * 4)), "GRAPH_TYPE"),
        (lambda n: n.__setitem__(1, ("scalar", 0, (0xFFFF,) * 3, 0, (float("inf"), 0.0, 0.0, 0.0))), "GRAPH_BAD_CONSTANT"),
        (lambda n: n.__setitem__(0, ("pos", 3, (0xFFFF,) * 3, 0, (0.0,) * 4)), "GRAPH_MALFORMED"),
    ],
)
def test_refusals_name_status_and_node(mutate, status):
    g = dg.Graph()
    p = g.pos()
    g.scalar(1.0)
    g.move_to(p + p, 1.0)
    nodes = list(g._nodes)
    mutate(nodes)
    g._nodes = nodes
    with pytest.raises(ValueError, match=status + " at node"):
        g.build()


def test_bad_graphs_in_plans_are_refused_and_counted_and_apply_nothing():
    sim, twin = dualplane.Sim(), dualplane.Sim()
    npcs = sim.handles("npc")
    good = u.build()
    broken = bytearray(good)
    broken[40] ^= 0xFF
    j = sim.step(bind_plan(sim, bytes(broken), npcs))
    assert j.plans[0].status == dualplane.Status.GRAPH_MALFORMED
    idx, codes = j.plans[0].rejected
    assert codes[0] == dualplane.Status.GRAPH_MALFORMED
    assert sim.graphs() == {} and j.world_hash == twin.step().world_hash
    # A policy (source 5) may not bind server NPCs.
    j = sim.step(bind_plan(sim, good, npcs, source=5))
    assert j.plans[0].status == dualplane.Status.NOT_OWNER and sim.graphs() == {}
    j = sim.step(dualplane.PlanBuilder(sim.tick + 1, 0, 2).graph_bind(npcs, 12345))
    assert j.plans[0].status == dualplane.Status.UNKNOWN_GRAPH
    assert j.world_hash == [twin.step(), twin.step()][-1].world_hash
    with pytest.raises(ValueError, match="multiple of 4"):
        dualplane.PlanBuilder(1, 0).graph_upload(b"abc")


def test_utility_graph_matches_its_numpy_reference_for_600_ticks():
    """Same ops, bit for bit, in the documented order (ascending handle,
    node order): the graph inside the tick vs the same behaviour in numpy
    from the same world (Sim columns and Sim.raycast)."""
    data = u.build()
    sim = dualplane.Sim(str(NPC1000))
    npcs = np.sort(sim.handles("npc"))
    j = sim.step(bind_plan(sim, data, npcs))
    assert j.plans[0].status == dualplane.Status.OK, j.plans[0].error
    heading = np.zeros((len(npcs), 3), np.float32)
    rayed = 0
    for t in range(600):
        if t:
            j = sim.step()
        ops = sim.graph_ops()
        alive = np.isin(npcs, sim.handles("npc"))
        npcs, heading = npcs[alive], heading[alive]
        assert np.array_equal(ops["handle"], npcs), f"tick {sim.tick}: the bound set"
        assert (ops["kind"] == 0).all() and (ops["s"] == u.SPEED).all() and (ops["status"] == 0).all()
        before = heading
        targets, heading = u.reference(sim, npcs, heading)
        bad = np.nonzero((ops["v"].view(np.uint32) != targets.view(np.uint32)).any(axis=1))[0]
        assert len(bad) == 0, f"tick {sim.tick}: {len(bad)} NPCs differ, first {npcs[bad[0]]:#x}: graph {ops['v'][bad[0]]} numpy {targets[bad[0]]}"
        g = j.graphs
        assert len(g) == 1 and g[0]["npcs"] == len(npcs) and g[0]["ops_emitted"] == len(npcs)
        # Count NPCs whose ray along last tick's heading hit something within 3 m.
        pos = u.world_positions(sim)[1][np.searchsorted(u.world_positions(sim)[0], npcs)]
        rayed += int((sim.raycast(pos + np.float32([0.0, 0.2, 0.0]) + before * np.float32(0.6), before, u.AVOID_DIST) < u.AVOID_DIST).sum())
    assert rayed > 100, "ray avoidance was exercised"


def test_two_processes_running_the_graph_print_identical_hashes(tmp_path, bin_path):
    f = tmp_path / "utility_npc.graph"
    subprocess.run([sys.executable, "-m", "dualplane.policies.utility_npc_graph", "--out", str(f)], check=True, capture_output=True)
    assert f.read_bytes() == u.build()
    args = [str(bin_path), "simulate", "--scenario", str(NPC1000), "--ticks", "300", "--hash-every", "50", "--graph", str(f), "--bind", "archetype=npc"]
    a = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    b = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    lines = [ln for ln in a.splitlines() if ln.startswith("tick=")]
    assert len(lines) == 6 and lines == [ln for ln in b.splitlines() if ln.startswith("tick=")]
    # The reference interpreter instead of the compiled kernels: the same run.
    c = subprocess.run(args + ["--graph-engine", "interpreted"], check=True, capture_output=True, text=True).stdout
    assert [ln for ln in c.splitlines() if ln.startswith("tick=")] == lines
    plain = subprocess.run(args[:-4], check=True, capture_output=True, text=True).stdout
    assert [ln for ln in plain.splitlines() if ln.startswith("tick=")] != lines, "the graph changed the run"
    # The in-process Sim driven by the same graph reaches the same hashes.
    sim = dualplane.Sim(str(NPC1000))
    sim.step(bind_plan(sim, f.read_bytes(), np.sort(sim.handles("npc"))))
    hashes = []
    for _ in range(299):
        j = sim.step()
        if j.tick % 50 == 0:
            hashes.append(f"tick={j.tick} hash={j.world_hash:#018x}")
    assert hashes == lines


def test_snapshot_restore_mid_run_continues_bit_identically():
    sim = dualplane.Sim(str(NPC1000))
    sim.step(bind_plan(sim, u.build(), sim.handles("npc")))
    for _ in range(100):
        sim.step()
    snap, held = sim.snapshot(), sim.graphs()
    a = [sim.step().world_hash for _ in range(100)]
    other = dualplane.Sim(str(NPC1000))
    other.restore(snap)
    assert other.graphs() == held
    assert [other.step().world_hash for _ in range(100)] == a


def test_graph_inspect_cli(tmp_path, bin_path):
    f = tmp_path / "g.graph"
    f.write_bytes(u.build())
    out = subprocess.run([str(bin_path), "graph", "inspect", str(f)], check=True, capture_output=True, text=True).stdout
    assert out.count("\n") > 40 and "ray(" in out and "move_to(" in out
    js = subprocess.run([str(bin_path), "graph", "inspect", str(f), "--json"], check=True, capture_output=True, text=True).stdout
    import json

    d = json.loads(js)
    assert d["hash"] == f"{dg.graph_hash(u.build()):#018x}" and d["bytes"] == len(u.build()) and len(d["nodes"]) == 45
    f.write_bytes(u.build()[:-8])
    bad = subprocess.run([str(bin_path), "graph", "inspect", str(f)], capture_output=True, text=True)
    assert bad.returncode != 0 and "GRAPH_MALFORMED" in bad.stderr


def test_a_remote_policy_binds_the_graph_and_the_server_exports_it(server):
    """Over QUIC: a policy uploads the utility graph and binds its NPCs; the
    server runs it every tick and exports it (dualplane_graph_*)."""
    import time

    data = u.build()
    with dualplane.connect(server.addr, server.token(41), cert=str(server.cert)) as s:
        o = s.observe(timeout=5)
        assert o is not None and len(s.controlled) == 4
        plan = dualplane.PlanBuilder(o["tick"] + 2, s.source_id, 1, o["tick"]).graph_upload(data).graph_bind(s.controlled, dg.graph_hash(data))
        assert s.submit(plan.build())
        statuses = []
        deadline = time.monotonic() + 5
        while not statuses and time.monotonic() < deadline:
            time.sleep(0.05)
            statuses += s.journals()
        assert statuses and statuses[0][2] == dualplane.Status.OK, statuses
        time.sleep(0.5)
        assert server.metric("dualplane_graphs") == 1
        assert server.metric("dualplane_graph_npcs") == 4
        ok = server.metric('dualplane_graph_ops_total{status="OK"}')
        assert ok >= 4 * 10, "the graph drove its 4 NPCs every tick"
        assert server.metric("dualplane_graph_duration_seconds_count") >= 10
        time.sleep(0.2)
        assert server.metric('dualplane_graph_ops_total{status="OK"}') > ok
    # The policy left: its NPCs went back to the server, its bindings ended.
    time.sleep(0.3)
    assert server.metric("dualplane_graph_npcs") == 0


def test_a_handle_bound_twice_in_one_plan_is_refused():
    """Binding one NPC twice in a plan would refund its old binding's cost
    twice (a way around the source's graph budget): refused whole."""
    sim = dualplane.Sim()
    npcs = np.sort(sim.handles("npc"))
    data = u.build()
    twice = np.concatenate([npcs[:1], npcs[:1], npcs[1:2]])
    j = sim.step(bind_plan(sim, data, twice))
    assert j.plans[0].status == dualplane.Status.DUPLICATE_HANDLE
    idx, codes = j.plans[0].rejected
    assert list(codes) == [dualplane.Status.DUPLICATE_HANDLE] and sim.graphs() == {}


def test_an_upload_never_evicts_the_graph_its_own_plan_binds():
    """With the store full, an upload evicts the lowest-hash unbound graph;
    a plan that also binds that graph is refused (it would be gone), not
    reported OK with the bind silently lost."""
    sim = dualplane.Sim()
    npcs = np.sort(sim.handles("npc"))

    def variant(k: float) -> bytes:
        g = dg.Graph()
        g.move_to(g.pos() + g.vector(k, 0.0, 0.0), 1.0)
        return g.build()

    graphs = [variant(float(k)) for k in range(65)]
    for k, data in enumerate(graphs[:64]):
        j = sim.step(dualplane.PlanBuilder(sim.tick + 1, 0, k + 1).graph_upload(data))
        assert j.plans[0].status == dualplane.Status.OK
    assert len(sim.graphs()) == 64
    victim = min(dg.graph_hash(d) for d in graphs[:64])
    plan = dualplane.PlanBuilder(sim.tick + 1, 0, 100).graph_upload(graphs[64]).graph_bind(npcs[:1], victim)
    j = sim.step(plan)
    assert j.plans[0].status == dualplane.Status.UNKNOWN_GRAPH
    assert victim in sim.graphs() and dg.graph_hash(graphs[64]) not in sim.graphs()
    # Binding another held graph beside the upload is fine: the victim goes.
    other = sorted(dg.graph_hash(d) for d in graphs[:64])[1]
    j = sim.step(dualplane.PlanBuilder(sim.tick + 1, 0, 101).graph_upload(graphs[64]).graph_bind(npcs[:1], other))
    assert j.plans[0].status == dualplane.Status.OK
    held = sim.graphs()
    assert victim not in held and held[other] == 1 and dg.graph_hash(graphs[64]) in held


def test_negative_zero_is_its_own_constant():
    g = dg.Graph()
    a, b = g.scalar(0.0), g.scalar(-0.0)
    assert a is not b and g.scalar(0.0) is a
