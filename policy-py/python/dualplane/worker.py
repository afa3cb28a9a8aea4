"""`python -m dualplane.worker`: run a policy file against a server.

    python -m dualplane.worker --server 127.0.0.1:4433 --token TOKEN \\
        --policy my_policy.py [--deadline-ms 20] [--memory-mb 1024] [--json]

Two processes. The supervisor (this one) holds the QUIC session; the policy
runs in a child process that holds nothing but two pipes:

- resource limits: address space (--memory-mb), CPU seconds, no file
  writes, few descriptors; no inherited descriptors (close_fds);
- an import allowlist and no file builtins (`dualplane.policy.load_policy`),
  and an audit hook that refuses process, socket, ctypes and file-writing
  events: a second line of defence;
- a per-tick deadline with an overage bank: a late answer spends the
  bank, on-time ticks refill it, and an answer that does not come within
  deadline + bank gets the child killed;
- crashes, kills and refused loads are journaled (--journal, JSON lines)
  and counted, and the child is restarted with exponential backoff.

The server never waits for a worker: a tick without a plan is simply a
tick where this worker's NPCs keep their last orders.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_LEN = struct.Struct("<IQ")  # frame: length, tick
_READY = 2**64 - 1  # the tick of the child's "loaded" frame

# ---------------------------------------------------------------- child side

BLOCKED_EVENTS = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "os.remove",
    "os.rename",
    "os.rmdir",
    "os.chmod",
    "subprocess.Popen",
    "socket.__new__",
    "socket.connect",
    "socket.bind",
    "socket.getaddrinfo",
    "ctypes.dlopen",
    "ctypes.dlsym",
    "ctypes.cdata",
    "ctypes.call_function",
    "pty.spawn",
    "webbrowser.open",
)


def _audit(event: str, args: tuple) -> None:
    if event.startswith(BLOCKED_EVENTS):
        raise PermissionError(f"dualplane policy sandbox: {event} is not allowed")
    if event == "open" and len(args) > 1:
        mode = args[1]
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            raise PermissionError(f"dualplane policy sandbox: opening {args[0]!r} for writing is not allowed")
        if isinstance(mode, int) and mode & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(f"dualplane policy sandbox: opening {args[0]!r} for writing is not allowed")


def _read_exact(f, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def child_main(policy_path: str) -> int:
    # The protocol owns fds 0 and 1; the policy's prints go to stderr.
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    sys.stdout = sys.stderr
    from .policy import as_plan_bytes, load_policy, Observation  # noqa: F401 - warm imports before the hook

    sys.addaudithook(_audit)
    ns = load_policy(policy_path)
    act = ns["act"]
    if callable(ns.get("setup")):
        ns["setup"]({"policy": policy_path})
    proto_out.write(_LEN.pack(0, _READY))
    while True:
        head = _read_exact(proto_in, _LEN.size)
        if head is None:
            return 0
        n, tick = _LEN.unpack(head)
        body = _read_exact(proto_in, n)
        if body is None:
            return 0
        obs = pickle.loads(body)  # from the supervisor: trusted direction
        plan = as_plan_bytes(act(obs)) or b""
        proto_out.write(_LEN.pack(len(plan), tick) + plan)


# ----------------------------------------------------------- supervisor side


class Journal:
    def __init__(self, path: str | None):
        self.f = open(path, "a", buffering=1) if path else None  # noqa: SIM115
        self.counts: dict[str, int] = {}

    def event(self, kind: str, tick: int, **detail) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        rec = {"t": round(time.time(), 3), "tick": tick, "event": kind, **detail}
        if self.f:
            self.f.write(json.dumps(rec) + "\n")
        if kind not in ("late",):
            print(f"dualplane.worker: {kind} at tick {tick}: {detail}", file=sys.stderr)


def _limits(memory_mb: int, cpu_seconds: int):
    def apply() -> None:
        import resource

        os.setsid()
        mem = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


class Child:
    def __init__(self, policy: str, memory_mb: int, cpu_seconds: int):
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "HOME")}
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dualplane.worker", "--child", policy],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            close_fds=True,
            env=env,
            preexec_fn=_limits(memory_mb, cpu_seconds),
        )
        self.started = time.monotonic()

    def send(self, tick: int, obs) -> bool:
        body = pickle.dumps(obs, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(_LEN.pack(len(body), tick) + body)
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def receive(self, timeout: float) -> tuple[str, int, bytes]:
        """("ok", tick, plan) | ("timeout", 0, b"") | ("dead", 0, b"")."""
        out = self.proc.stdout
        assert out is not None
        deadline = time.monotonic() + timeout
        buf = b""
        need = _LEN.size
        tick = 0
        body_phase = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return ("timeout", 0, b"")
            r, _, _ = select.select([out], [], [], left)
            if not r:
                return ("timeout", 0, b"")
            chunk = os.read(out.fileno(), need - len(buf))
            if not chunk:
                return ("dead", 0, b"")
            buf += chunk
            if len(buf) < need:
                continue
            if not body_phase:
                n, tick = _LEN.unpack(buf)
                if n > 8 * 1024 * 1024:
                    return ("dead", 0, b"")
                if n == 0:
                    return ("ok", tick, b"")
                buf, need, body_phase = b"", n, True
            else:
                return ("ok", tick, buf)

    def wait_ready(self, timeout: float) -> str:
        """"ok", "timeout" or "dead": loading the policy gets its own,
        longer budget than a tick."""
        kind, tick, _ = self.receive(timeout)
        if kind == "ok" and tick != _READY:
            return "dead"
        return kind

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def describe_exit(self) -> str:
        rc = self.proc.poll()
        if rc is None:
            return "running"
        if rc < 0:
            return f"killed by {signal.Signals(-rc).name}"
        return f"exit code {rc}"


def run(args: argparse.Namespace) -> dict:
    from . import connect

    journal = Journal(args.journal)
    cert = args.cert
    session = connect(args.server, args.token, cert=cert, role="policy", timeout=args.connect_timeout)
    controlled = session.controlled
    source = session.source_id
    deadline = args.deadline_ms / 1000.0
    bank_max = args.bank_ms / 1000.0
    bank = bank_max
    counters = {"ticks": 0, "plans_sent": 0, "on_time": 0, "late": 0, "missing": 0, "restarts": 0, "kills": 0, "crashes": 0, "rejected": 0, "accepted": 0}
    latencies: list[float] = []
    child: Child | None = None
    backoff = args.backoff_ms / 1000.0
    restart_at = 0.0
    end = time.monotonic() + args.duration if args.duration > 0 else float("inf")
    seq = 0
    last_tick = 0
    started = False

    def lost_child(kind: str, tick: int, **detail) -> None:
        nonlocal child, restart_at, backoff, bank
        if child is not None:
            if kind in ("crash", "load_failed"):
                try:
                    child.proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    pass
            detail["exit"] = child.describe_exit()
            child.kill()
        journal.event(kind, tick, **detail)
        child = None
        restart_at = time.monotonic() + backoff
        backoff = min(backoff * 2, args.max_backoff_ms / 1000.0)
        bank = bank_max

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("now", True))
    try:
        while time.monotonic() < end and not stop["now"]:
            try:
                snap = session.observe(0.5)
            except ConnectionError as e:
                journal.event("session_closed", last_tick, reason=str(e))
                break
            for seq_no, tick, status in session.journals():
                if int(status) == 0:
                    counters["accepted"] += 1
                else:
                    counters["rejected"] += 1
                    journal.event("plan_rejected", tick, sequence=seq_no, status=getattr(status, "name", str(status)))
            if snap is None:
                continue
            tick = int(snap["tick"])
            last_tick = tick
            counters["ticks"] += 1
            if child is None:
                counters["missing"] += 1
                if time.monotonic() >= restart_at:
                    if started:
                        counters["restarts"] += 1
                        journal.event("restart", tick, backoff_ms=int(backoff * 1000))
                    started = True
                    child = Child(args.policy, args.memory_mb, args.cpu_seconds)
                    ready = child.wait_ready(args.startup_timeout)
                    if ready != "ready" and ready != "ok":
                        counters["crashes" if ready == "dead" else "kills"] += 1
                        lost_child("load_failed" if ready == "dead" else "startup_timeout", tick)
                continue
            idx = np.searchsorted(snap["handle"], controlled)
            idx = np.clip(idx, 0, max(len(snap["handle"]) - 1, 0))
            present = len(snap["handle"]) > 0 and np.array_equal(snap["handle"][idx], controlled)
            seq += 1
            from .policy import Observation

            obs = Observation(
                tick=tick,
                source_id=source,
                handle=snap["handle"],
                archetype=snap["archetype"],
                pos=snap["pos"],
                controlled=controlled if present else controlled[:0],
                controlled_pos=snap["pos"][idx] if present else snap["pos"][:0],
                lead=args.lead,
                sequence=seq,
            )
            t0 = time.monotonic()
            if not child.send(tick, obs):
                counters["crashes"] += 1
                lost_child("crash", tick)
                continue
            kind, rtick, plan = child.receive(deadline + bank)
            spent = time.monotonic() - t0
            if kind == "dead":
                counters["crashes"] += 1
                counters["missing"] += 1
                lost_child("crash", tick)
                continue
            if kind == "timeout":
                counters["kills"] += 1
                counters["missing"] += 1
                lost_child("deadline", tick, spent_ms=round(spent * 1000, 1), deadline_ms=args.deadline_ms, bank_ms=round(bank * 1000, 1))
                continue
            latencies.append(spent)
            if spent > deadline:
                counters["late"] += 1
                bank -= spent - deadline
                journal.event("late", tick, spent_ms=round(spent * 1000, 2), bank_ms=round(bank * 1000, 1))
            else:
                counters["on_time"] += 1
                bank = min(bank_max, bank + deadline * 0.1)
                if time.monotonic() - child.started > 5.0:
                    backoff = args.backoff_ms / 1000.0
            if plan and rtick == tick:
                if session.submit(plan):
                    counters["plans_sent"] += 1
    finally:
        if child is not None:
            child.kill()
        session.close()
    lat = np.array(latencies) * 1000.0 if latencies else np.zeros(1)
    return {
        "source_id": source,
        "controlled": len(controlled),
        "counters": counters,
        "events": journal.counts,
        "policy_ms_p50": round(float(np.percentile(lat, 50)), 3),
        "policy_ms_p99": round(float(np.percentile(lat, 99)), 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dualplane.worker", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", metavar="POLICY", help=argparse.SUPPRESS)
    p.add_argument("--server", default="127.0.0.1:4433", help="server address (IP:port)")
    p.add_argument("--token", help="policy connect token (dualplane token --role policy ...)")
    p.add_argument("--cert", help="server certificate (DER); the dev dir's cert.der by default")
    p.add_argument("--policy", help="policy file defining act(obs)")
    p.add_argument("--deadline-ms", type=float, default=20.0, help="per-tick budget for act() (default 20)")
    p.add_argument("--bank-ms", type=float, default=250.0, help="overage bank: total lateness allowed before a kill (default 250)")
    p.add_argument("--memory-mb", type=int, default=1024, help="address-space limit of the policy process (default 1024)")
    p.add_argument("--cpu-seconds", type=int, default=3600, help="CPU-time limit of one policy process (default 3600)")
    p.add_argument("--backoff-ms", type=float, default=250.0, help="first restart delay; doubles per failure (default 250)")
    p.add_argument("--max-backoff-ms", type=float, default=5000.0)
    p.add_argument("--lead", type=int, default=2, help="plans target observed tick + lead (default 2)")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run (0 = until the session ends or SIGTERM)")
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.add_argument("--startup-timeout", type=float, default=10.0, help="seconds a policy process may take to load (default 10)")
    p.add_argument("--journal", help="append events as JSON lines to this file")
    p.add_argument("--json", action="store_true", help="print a JSON summary at exit")
    args = p.parse_args(argv)
    if args.child:
        return child_main(args.child)
    if not args.token or not args.policy:
        p.error("--token and --policy are required")
    if not Path(args.policy).is_file():
        p.error(f"--policy {args.policy}: no such file")
    try:
        summary = run(args)
    except (ConnectionError, TimeoutError, ValueError) as e:
        print(f"dualplane.worker: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
    else:
        c = summary["counters"]
        print(
            f"ticks={c['ticks']} plans={c['plans_sent']} on_time={c['on_time']} late={c['late']} missing={c['missing']} "
            f"restarts={c['restarts']} kills={c['kills']} crashes={c['crashes']} accepted={c['accepted']} rejected={c['rejected']} "
            f"p50={summary['policy_ms_p50']}ms p99={summary['policy_ms_p99']}ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
