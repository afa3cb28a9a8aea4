"""SimPool: n worlds stepped in Rust on a thread pool, identical to the same
worlds stepped one after another, faster on two cores, and strict about
its inputs."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import dualplane
from dualplane import PlanBuilder, Sim, SimPool
from dualplane.scenarios import npc_arena


def test_pool_hashes_equal_sims_stepped_one_after_another_for_any_thread_count():
    text = npc_arena(12)
    sims = [Sim.from_toml(text, seed=7 + i) for i in range(5)]
    pools = [SimPool.from_toml(text, 5, seed=7, threads=t) for t in (1, 2, 3)]
    for p in pools:
        assert np.array_equal(p.world_hashes(), [s.world_hash() for s in sims])
        p.grant(1, count=6)
    for s in sims:
        free = s.columns("npc")["handle"][:6].copy()
        free.sort()
        s.step(PlanBuilder(s.tick + 1, 0, 0x5000_0000).grant(free, 1))
    rng = np.random.default_rng(3)
    for _ in range(40):
        a = rng.uniform(-1, 1, size=(5, 6, 2)).astype(np.float32)
        for p in pools:
            assert not p.step_move(a, 1).any()
        for i, s in enumerate(sims):
            c = s.columns("npc")
            order = np.argsort(c["handle"])
            mine = order[c["owner"][order] == 1]
            d = a[i, : len(mine)] * 4.0
            tgt = np.stack((c["pos_x"][mine] + d[:, 0], c["pos_y"][mine], c["pos_z"][mine] + d[:, 1]), axis=1).astype(np.float32)
            speed = np.maximum(np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]), np.float32(1e-3)).astype(np.float32)
            s.step(PlanBuilder(s.tick + 1, 1, 0x5000_0000).move_to(np.ascontiguousarray(c["handle"][mine]), tgt, speed))
        want = [s.world_hash() for s in sims]
        for p in pools:
            assert np.array_equal(p.world_hashes(), want)
    assert np.array_equal(pools[0].ticks(), [s.tick for s in sims])


def test_pool_observations_are_batched_owned_arrays():
    p = SimPool.from_toml(npc_arena(8), 3, seed=1, threads=2)
    assert list(p.grant(1, count=5)) == [5, 5, 5]
    vals, handles, valid = p.observe(["pos_x", "pos_z"], source=1, rows=7)
    assert vals.shape == (3, 7, 2) and vals.dtype == np.float32
    assert handles.shape == (3, 7) and valid.shape == (3, 7)
    assert valid[:, :5].all() and not valid[:, 5:].any() and (vals[:, 5:] == 0).all()
    assert all(np.all(np.diff(h[:5].astype(np.int64)) > 0) for h in handles), "sorted by handle"
    before = vals.copy()
    p.step_move(np.ones((3, 7, 2), np.float32), 1)
    assert np.array_equal(vals, before), "an observation is not a live view: the next step does not change it"
    every, _, ok = p.observe(["pos_x"])
    assert every.shape == (3, 8, 1) and ok.all()


def test_reset_restores_the_marked_start_and_snapshots_restore_into_a_sim():
    p = SimPool.from_toml(npc_arena(4), 4, seed=2, threads=2)
    p.grant(1)
    p.mark_start()
    start = p.world_hashes().copy()
    for _ in range(10):
        p.step()
    moved = p.world_hashes().copy()
    p.reset([1, 3])
    h = p.world_hashes()
    assert h[1] == start[1] and h[3] == start[3] and h[0] == moved[0] and h[2] == moved[2]
    for _ in range(3):
        p.step()
    moved = p.world_hashes().copy()
    # A bool mask (Python's or numpy's) picks by position, not as 0/1 indices.
    p.reset([False, False, True, False])
    h = p.world_hashes()
    assert h[2] == start[2] and h[0] == moved[0] and h[1] == moved[1] and h[3] == moved[3]
    p.reset(np.array([True, False, False, False]))
    assert p.world_hashes()[0] == start[0] and p.world_hashes()[1] == moved[1]
    p.reset(np.array([3], np.int64))
    assert p.world_hashes()[3] == start[3]
    with pytest.raises(ValueError, match="one entry per world"):
        p.reset([True, False])
    p.reset()
    assert np.array_equal(p.world_hashes(), start)
    s = Sim.from_toml(npc_arena(4))
    s.restore(p.snapshot(2))
    assert s.world_hash() == start[2]


def test_bad_input_is_refused_clearly_and_counted():
    p = SimPool.from_toml(npc_arena(4), 2, seed=1, threads=1)
    p.grant(1)
    with pytest.raises(ValueError, match="expected 2 plan entries"):
        p.step([None])
    with pytest.raises(TypeError, match="one entry per world"):
        p.step(5)
    with pytest.raises(ValueError, match=r"shape \(2, k, 2\)"):
        p.step_move(np.zeros((3, 4, 2), np.float32), 1)
    with pytest.raises(ValueError, match="no f32 column 'owner'|no f32 column \"owner\""):
        p.observe(["owner"])
    with pytest.raises(ValueError, match="unknown archetype"):
        p.observe(["pos_x"], archetype="dragon")
    with pytest.raises(ValueError, match="out of range"):
        p.snapshot(2)
    with pytest.raises(ValueError, match="source 0"):
        p.grant(0)
    with pytest.raises(ValueError, match="at least 1"):
        SimPool(0)
    t = p.ticks()
    # Garbage bytes, a plan for another source's NPCs, NaN targets: refused
    # per world and counted; the other world steps as usual.
    npc = p.observe(["pos_x"], source=1)[1]
    foreign = PlanBuilder(int(t[1]) + 1, 9).move_to(np.ascontiguousarray(npc[1]), np.zeros((4, 3), np.float32), 1.0)
    refused = p.step([b"\x00garbage", foreign])
    assert list(refused) == [1, 1]
    nan = np.full((2, 4, 2), np.nan, np.float32)
    nan[1] = 0.5
    assert list(p.step_move(nan, 1)) == [1, 0]
    assert np.array_equal(p.ticks(), t + 2), "every world stepped"


def test_two_threads_step_eight_worlds_faster_than_one_after_another():
    """The pool's point: with 2 threads, 8 default arenas step >= 1.7x
    faster than one after another (`python -m dualplane.bench` prints the
    measured number). This CI check warms up, then times the two pools step
    for step, interleaved, so a busy neighbour slows both alike, and takes
    the median of the per-pair ratios; it allows 1.25x (CI measured 1.37x
    with best-of-three on a loaded box, the bench 1.76-1.98x)."""
    if (os.cpu_count() or 1) < 2:
        pytest.fail("this machine has one core: the pool cannot be measured")
    pools = {t: SimPool(8, seed=3, threads=t) for t in (1, 2)}
    for p in pools.values():  # the first ticks allocate contacts (malloc contention), then it settles
        for _ in range(30):
            p.step()
    ratios, times = [], {1: [], 2: []}
    for _ in range(40):
        pair = {}
        for t, p in pools.items():
            t0 = time.perf_counter()
            p.step()
            pair[t] = time.perf_counter() - t0
            times[t].append(pair[t])
        ratios.append(pair[1] / pair[2])
    assert np.array_equal(pools[1].world_hashes(), pools[2].world_hashes())
    speedup = float(np.median(ratios))
    print(f"SimPool 8 default arenas: 1 thread {np.median(times[1]) * 1e3:.1f} ms/step, "
          f"2 threads {np.median(times[2]) * 1e3:.1f} ms/step, median pair speedup {speedup:.2f}x")
    assert speedup >= 1.25, speedup


def test_pool_is_exported():
    assert dualplane.SimPool is SimPool and "SimPool" in dualplane.__all__
