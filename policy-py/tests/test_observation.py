"""One observation shape: a policy observes the same object from a server
(`Session.observation`, the Observation frames) as in process
(`Sim.observation`), and so emits the same plans, tick by tick, given the
same world; bad requests are refused and counted."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import dualplane
from conftest import Server, dualplane_bin
from dualplane.policy import OBSERVE_RADIUS, Observation, as_plan_bytes, load_policy
from dualplane.scenarios import npc_arena
from dualplane.worker import OBSERVE_RADIUS_DEFAULT

POLICIES = Path(dualplane.__file__).parent / "policies"
KEYS = ("handle", "archetype", "owner", "health", "pos", "linvel")
RADIUS = 6.0
LEAD = 2


def _copy(d):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in d.items()}


def _remote_run(tmp_path: Path, policy: str | None, ticks: int, npcs: int = 6):
    """Against a recording server on a small NPC arena: a policy session
    controlling `npcs` NPCs and observing every tick runs `policy` (in this
    process) on each observation it gets. Returns the replay, the source id
    and per observed tick (observation dict, rays given, plan bytes)."""
    scen = tmp_path / "arena.toml"
    scen.write_text(npc_arena(16))
    rec = tmp_path / "rec"
    rec.mkdir()
    srv = Server(tmp_path / "dev", ["--scenario", str(scen), "--record", str(rec), "--keyframe-every", "60"])
    act = load_policy(POLICIES / f"{policy}.py")["act"] if policy else None
    seen = []
    try:
        with dualplane.connect(srv.addr, srv.token(11), cert=str(srv.cert)) as s:
            s.request_npcs(npcs)
            while s.controlled_tick is None:
                s.observe(timeout=2)
            s.request_observations(1, RADIUS)
            seq, rays = 0, None
            while len(seen) < ticks:
                d = s.observation(timeout=5)
                assert d is not None, "observations arrive"
                assert not any(d[k].flags.writeable for k in KEYS), "read-only arrays"
                got = s.rays()
                if got is not None:
                    rays = (got["hit"].copy(), got["handle"].copy(), got["distance"].copy())
                seq += 1
                plan = None
                if act is not None:
                    plan = as_plan_bytes(act(Observation.from_observed(d, s.source_id, LEAD, seq, rays)))
                    if plan is not None:
                        assert s.submit(plan)
                seen.append((_copy(d), rays, plan))
            assert s.observation_counts[1] == 0, "no observation failed its hash"
            source = s.source_id
    finally:
        assert srv.stop() == 0
    (replay,) = rec.glob("*.rpl")
    return replay, source, seen


def _worlds(tmp_path: Path, replay: Path, first: int, last: int) -> dict[int, bytes]:
    out = tmp_path / "snaps"
    subprocess.run([str(dualplane_bin()), "replay", "seek", str(replay), "--tick", str(first), "--through", str(last), "--out", str(out)],
                   check=True, capture_output=True, text=True)
    return {int(p.stem): p.read_bytes() for p in out.glob("*.snap")}


def test_remote_observations_equal_the_in_process_ones_of_the_same_world(tmp_path):
    replay, source, seen = _remote_run(tmp_path, None, 40)
    ticks = [int(d["tick"]) for d, _, _ in seen]
    assert ticks == sorted(set(ticks)), "newer each time"
    worlds = _worlds(tmp_path, replay, ticks[0], ticks[-1])
    sim = dualplane.Sim.from_toml(npc_arena(16))
    for d, _, _ in seen:
        sim.restore(worlds[int(d["tick"])])
        local = sim.observation(source, RADIUS)
        assert local["tick"] == d["tick"]
        for k in KEYS:
            assert local[k].dtype == d[k].dtype and local[k].shape == d[k].shape, k
            assert np.array_equal(local[k], d[k]), (k, int(d["tick"]))
        assert (d["owner"] == source).sum() == 6
        assert not local["pos"].flags.writeable and not local["handle"].flags.writeable, "read-only"
    assert any(len(d["handle"]) > 6 for d, _, _ in seen), "neighbours within the radius are seen"


@pytest.mark.parametrize("policy", ["random_walk", "utility_npc"])
def test_a_policy_emits_the_same_plans_remote_and_in_process(tmp_path, policy):
    replay, source, seen = _remote_run(tmp_path, policy, 60)
    ticks = [int(d["tick"]) for d, _, _ in seen]
    worlds = _worlds(tmp_path, replay, ticks[0], ticks[-1])
    act = load_policy(POLICIES / f"{policy}.py")["act"]  # a fresh copy: its own state
    sim = dualplane.Sim.from_toml(npc_arena(16))
    plans = 0
    for seq, (d, rays, remote_plan) in enumerate(seen, start=1):
        sim.restore(worlds[int(d["tick"])])
        obs = Observation.from_observed(sim.observation(source, RADIUS), source, LEAD, seq, rays)
        local_plan = as_plan_bytes(act(obs))
        assert local_plan == remote_plan, f"{policy}: the plans differ at tick {d['tick']} (observation {seq})"
        plans += local_plan is not None
    assert plans >= 50, f"{policy} acted on most ticks ({plans})"


def test_bad_observation_requests_are_refused_and_counted(tmp_path):
    assert OBSERVE_RADIUS == OBSERVE_RADIUS_DEFAULT
    srv = Server(tmp_path / "dev", [])
    try:
        with dualplane.connect(srv.addr, srv.token(21), cert=str(srv.cert)) as s:
            for every, radius in [(1, float("nan")), (1, 51.0), (1, -1.0), (601, 1.0)]:
                with pytest.raises(ValueError, match="observation request"):
                    s.request_observations(every, radius)
            with pytest.raises(OverflowError):
                s.request_observations(70000, 1.0)
        # Past this library's checks, a raw client's bad request is counted
        # and ignored by the server; its session goes on.
        with dualplane.connect(srv.addr, srv.token(22, "player"), cert=str(srv.cert), role="player") as p:
            p.request_observations(1, 5.0)  # valid, but players do not observe
            assert p.observation(timeout=1.0) is None
            assert p.observe(timeout=2) is not None, "the player's session goes on"
        m = srv.metrics()
        got = re.search(r'^dualplane_client_faults_total\{reason="bad_observe"\} (\S+)$', m, re.M)
        assert got and float(got.group(1)) >= 1, m[-2000:]
    finally:
        srv.stop()


def test_a_policy_that_never_reads_is_bounded_and_counted(tmp_path):
    """`dualplane hostile --attack no-read` asks for every tick's full
    observation and never reads: its outbox fills, the loss is counted, and
    a policy beside it observes every tick as usual."""
    srv = Server(tmp_path / "dev", [])
    try:
        attacker = subprocess.Popen([str(dualplane_bin()), "hostile", "--attack", "no-read", "--server", srv.addr, "--dev-dir", str(srv.dev),
                                     "--count", "1", "--duration", "6s", "--first-id", "230000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with dualplane.connect(srv.addr, srv.token(32), cert=str(srv.cert)) as ok:
            ok.request_observations(1, 8.0)
            ticks = [int(ok.observation(timeout=2)["tick"]) for _ in range(240)]
        assert ticks == sorted(set(ticks)) and ticks[-1] - ticks[0] <= 260, "the good policy keeps up"
        assert attacker.wait(timeout=30) == 0, attacker.stderr.read()
        m = srv.metrics()
        lost = re.search(r'^dualplane_policy_observations_total\{outcome="slow_reader"\} (\S+)$', m, re.M)
        sent = re.search(r'^dualplane_policy_observations_total\{outcome="sent"\} (\S+)$', m, re.M)
        assert lost and float(lost.group(1)) > 0, m[-3000:]
        assert sent and float(sent.group(1)) >= 240
        assert srv.metric("dualplane_tick_overruns_total") < 0.25 * srv.metric("dualplane_ticks_total")
    finally:
        srv.stop()


def test_overlap_results_come_back_to_remote_policies_like_rays(tmp_path):
    srv = Server(tmp_path / "dev", [])
    try:
        with dualplane.connect(srv.addr, srv.token(41), cert=str(srv.cert)) as s:
            s.request_observations(1, 2.0)
            d = s.observation(timeout=5)
            mine = d["owner"] == s.source_id
            pos, handles = d["pos"][mine], d["handle"][mine]
            lo = (pos - 0.5).astype(np.float32)
            hi = (pos + 0.5).astype(np.float32)
            got = None
            for k in range(20):
                d = s.observation(timeout=2)
                assert s.submit(dualplane.PlanBuilder(int(d["tick"]) + 2, s.source_id, k + 1).overlap(lo, hi).build())
                got = s.overlaps() or got
                if got is not None:
                    break
            for _ in range(20):
                got = s.overlaps() or got
                if got is not None:
                    break
                s.observation(timeout=1)
            assert got is not None, "overlap results arrive"
            offsets, found = got["offsets"], got["handles"]
            assert len(offsets) == len(handles) + 1 and offsets[0] == 0 and offsets[-1] == len(found)
            # Each box around an NPC finds at least that NPC (it moves under 0.5 m in a few ticks).
            for q, h in enumerate(handles):
                assert h in found[offsets[q]:offsets[q + 1]], (q, h)
    finally:
        srv.stop()
