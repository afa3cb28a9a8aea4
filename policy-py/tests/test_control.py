"""Control on request: policies ask for NPCs by count, get them fairly, give
them back, and lose them when they die; one worker drives 1,000 NPCs."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import dualplane
from conftest import REPO, Server

NPC1000 = REPO / "tests" / "scenarios" / "npc1000.toml"
POLICIES = REPO / "policy-py" / "python" / "dualplane" / "policies"


@pytest.fixture
def npc_server(tmp_path: Path):
    s = Server(tmp_path / "dev", ["--scenario", str(NPC1000), "--idle-timeout-ms", "2000"])
    time.sleep(0.2)
    yield s
    s.stop()


def ask(session, n: int, timeout: float = 5.0) -> list[int]:
    """Requests n NPCs and waits for the answer; the controlled set."""
    before = session.controlled_tick
    session.request_npcs(n)
    end = time.monotonic() + timeout
    while session.controlled_tick == before:
        assert time.monotonic() < end, f"no answer to request_npcs({n})"
        session.observe(0.1)
    got = [int(h) for h in session.controlled]
    assert got == sorted(got)
    return got


def connect(server, client_id: int):
    return dualplane.connect(server.addr, server.token(client_id), cert=str(server.cert), role="policy")


def test_npcs_on_request_fairly_released_and_regranted(npc_server):
    a = connect(npc_server, 31)
    assert len(a.controlled) == 4  # the join's grant
    mine = ask(a, 1000)
    assert len(mine) == 1000, len(mine)
    b = connect(npc_server, 32)
    assert len(b.controlled) == 0  # nothing was free at its join
    assert ask(b, 10) == []
    # Another policy's NPCs are not yours to steer.
    plan = dualplane.PlanBuilder(b.welcome_tick + 30, b.source_id, 1).move_to(np.array([mine[0]], dtype=np.uint64), np.array([[0.0, 1.0, 0.0]], dtype=np.float32), 2.0)
    assert b.submit(plan)
    end = time.monotonic() + 5
    statuses = []
    while not statuses and time.monotonic() < end:
        b.observe(0.1)
        statuses = b.journals()
    assert statuses and statuses[0][2].name == "OP_NOT_PERMITTED", statuses
    # Fewer releases the rest, which the other policy can then have.
    assert len(ask(a, 400)) == 400
    theirs = ask(b, 1000)
    assert len(theirs) == 600 and not set(theirs) & set(a.controlled.tolist())
    # A policy that leaves gives back everything.
    a.close()
    time.sleep(0.5)
    assert len(ask(b, 1000)) == 1000
    b.close()


def test_a_worker_drives_1000_npcs_and_its_death_frees_them(npc_server):
    secs = 60
    cmd = [
        sys.executable, "-m", "dualplane.worker", "--server", npc_server.addr, "--token", npc_server.token(41),
        "--cert", str(npc_server.cert), "--policy", str(POLICIES / "random_walk.py"), "--npcs", "1000",
        "--duration", str(secs), "--json",
    ]  # fmt: skip
    t0, ticks0 = time.monotonic(), npc_server.metric("dualplane_ticks_total")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60)
    elapsed, ticks = time.monotonic() - t0, npc_server.metric("dualplane_ticks_total") - ticks0
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    c = summary["counters"]
    print("1000-NPC worker:", json.dumps(summary), f"server {ticks / elapsed:.2f} Hz")
    assert summary["controlled"] == 1000, summary
    assert c["rejected"] == 0, summary
    # >= 95% of the ticks the server ran while the worker did got its plan
    # in time (a plan that misses its tick is rejected, so: accepted).
    worked = c["ticks"] + c["skipped"]
    assert c["accepted"] >= 0.95 * worked, summary
    assert ticks / elapsed >= 0.95 * 60, (ticks, elapsed)
    # A worker killed outright: its session times out and its NPCs go back.
    watcher = connect(npc_server, 42)
    assert ask(watcher, 0) == []  # gives back what its join granted
    again = [npc_server.token(43) if x == cmd[6] else x for x in cmd[:-3]]  # a token is admitted once
    w = subprocess.Popen(again + ["--duration", "30", "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(5)  # the worker starts, connects and is granted all 1,000
    assert ask(watcher, 1) == [], "the worker holds every NPC"
    w.send_signal(signal.SIGKILL)
    w.wait()
    end = time.monotonic() + 10
    got: list[int] = []
    while len(got) < 1000 and time.monotonic() < end:
        time.sleep(0.5)
        got = ask(watcher, 1000)
    assert len(got) == 1000, len(got)
    watcher.close()
