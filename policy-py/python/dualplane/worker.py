"""`python -m dualplane.worker`: run a policy file against a server.

    python -m dualplane.worker --server 127.0.0.1:4433 --token TOKEN \\
        --policy my_policy.py [--npcs 1000] [--deadline-ms 20] [--memory-mb 1024] [--json]

Two processes. The supervisor (this one) holds the QUIC session; the policy
runs in a child process that holds nothing but three pipes (its source and
observations in, plans out, stderr forwarded with a rate limit):

- resource limits set before the policy loads: address space
  (--memory-mb), CPU seconds, no file writes, few descriptors; a new
  session, an empty working directory, a scrubbed environment, no inherited
  descriptors; the policy's source comes over the pipe;
- an audit hook: no processes, signals, sockets, ctypes, file writes or
  file-system changes, no reads outside Python's own files, no frame or
  gc introspection; and an import allowlist without file builtins
  (`dualplane.policy.load_policy_source`) as a further speed bump. This is
  not an OS sandbox (no seccomp or namespaces): the child holds nothing
  worth stealing, and the supervisor trusts none of its bytes;
- a strict protocol: one reply per request, for that tick, within the
  deadline; writes to the child never block the supervisor; unsolicited
  or mismatched replies kill the child (a "violation");
- a per-tick deadline with an overage bank: a late answer spends the
  bank, on-time ticks refill it, and an answer that does not come within
  deadline + bank gets the child killed;
- crashes, kills, violations and refused loads are journaled (--journal,
  JSON lines) and counted, and the child is restarted with exponential
  backoff.

The server never waits for a worker: a tick without a plan is simply a
tick where this worker's NPCs keep their last orders.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

_LEN = struct.Struct("<IQ")  # frame: length, tick
_READY = 2**64 - 1  # the tick of the child's "loaded" frame
_SOURCE = 2**64 - 2  # the tick of the supervisor's "policy source" frame
MAX_PLAN = 4 * 1024 * 1024  # the IDL's max_plan_bytes
OBSERVE_RADIUS_DEFAULT = 8.0  # = policy.OBSERVE_RADIUS (not imported: the supervisor loads no extension early)

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
    "os.mkdir",
    "os.chmod",
    "os.chown",
    "os.chdir",
    "os.chflags",
    "os.truncate",
    "os.link",
    "os.symlink",
    "os.utime",
    "os.putenv",
    "os.unsetenv",
    "os.setxattr",
    "os.removexattr",
    "os.startfile",
    "shutil.",
    "subprocess.Popen",
    "socket.",
    "ctypes.",
    "mmap.__new__",
    "pty.spawn",
    "webbrowser.open",
    "urllib.Request",
    "sqlite3.connect",
    # Introspection: restricted attributes (__code__, tb_frame, gi_frame...),
    # other threads' frames, tracing, and every object in the heap (through
    # which the hook's own closure could be rewritten). sys._getframe stays
    # allowed: the stdlib needs it (namedtuple, enum, typing, warnings); the
    # frames it reaches hold the protocol pipe, which is why the supervisor
    # trusts none of the child's bytes.
    "object.__getattr__",
    "sys._current_frames",
    "sys.settrace",
    "sys.setprofile",
    "gc.get_objects",
    "gc.get_referrers",
    "gc.get_referents",
)

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _audit_hook(readable_roots: tuple[str, ...]):
    def readable(path) -> bool:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return False  # an fd number: no reopening the worker's pipes
        p = os.path.normpath(os.path.abspath(path))
        return any(p == r or p.startswith(r + os.sep) for r in readable_roots)

    def hook(event: str, args: tuple) -> None:
        if event.startswith(BLOCKED_EVENTS):
            raise PermissionError(f"dualplane policy sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & _WRITE_FLAGS):
                raise PermissionError(f"dualplane policy sandbox: opening {path!r} for writing is not allowed")
            if not readable(path):
                raise PermissionError(f"dualplane policy sandbox: reading {path!r} is not allowed (only Python's own files)")
        elif event in ("os.listdir", "os.scandir") and args and args[0] is not None and not readable(args[0]):
            raise PermissionError(f"dualplane policy sandbox: listing {args[0]!r} is not allowed")

    return hook


def _read_exact(f, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def child_main(memory_mb: int, cpu_seconds: int) -> int:
    import resource
    import sysconfig

    # Limits first: nothing of the policy runs before them.
    mem = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # The protocol owns fds 0 and 1; the policy's prints go to stderr.
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    sys.stdout = sys.stderr
    import numpy.linalg  # noqa: F401 - numpy's lazy submodules, loaded before the deadline matters
    import numpy.random  # noqa: F401

    from . import __file__ as package_file
    from .policy import Observation, as_plan_bytes, load_policy_source  # noqa: F401 - loaded before the hook

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.dirname(package_file))}
    roots.update(v for k, v in sysconfig.get_paths().items() if k in ("stdlib", "platstdlib", "purelib", "platlib"))
    roots.update(p for p in sys.path if p and os.path.isdir(p) and not p.startswith(("/tmp", os.path.expanduser("~") + os.sep + ".")))
    sys.addaudithook(_audit_hook(tuple(sorted(os.path.normpath(os.path.abspath(r)) for r in roots))))
    head = _read_exact(proto_in, _LEN.size)
    if head is None:
        return 0
    n, tag = _LEN.unpack(head)
    src = _read_exact(proto_in, n)
    if tag != _SOURCE or src is None:
        return 3
    ns = load_policy_source(src.decode(), "<policy>")
    act = ns["act"]
    if callable(ns.get("setup")):
        ns["setup"]({})
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
            print(f"dualplane.worker: {kind} at tick {tick}: {detail}", file=sys.stderr, flush=True)


class Child:
    """One sandboxed policy process and its strict request/reply pipe: one
    reply per request, for that request's tick, within the deadline; the
    supervisor never blocks on the child (non-blocking writes with a
    deadline, select on reads) and kills it on any protocol violation."""

    STDERR_LINES_PER_MIN = 300

    def __init__(self, source: bytes, memory_mb: int, cpu_seconds: int):
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")}
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        self.cwd = tempfile.mkdtemp(prefix="dualplane-policy-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dualplane.worker", "--child", "--memory-mb", str(memory_mb), "--cpu-seconds", str(cpu_seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
            cwd=self.cwd,
            env=env,
        )
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self.win = self.proc.stdin.fileno()
        self.rout = self.proc.stdout.fileno()
        os.set_blocking(self.win, False)
        self.stderr_dropped = 0
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.started = time.monotonic()
        self.source = source

    def _drain_stderr(self) -> None:
        """Forwards the policy's stderr, rate-limited, so a flood can neither
        block the child on a full pipe nor drown the supervisor's log."""
        assert self.proc.stderr is not None
        window, count = time.monotonic(), 0
        for raw in self.proc.stderr:
            now = time.monotonic()
            if now - window > 60:
                window, count = now, 0
            count += 1
            if count <= self.STDERR_LINES_PER_MIN:
                sys.stderr.write("[policy] " + raw.decode(errors="replace"))
                sys.stderr.flush()
            else:
                self.stderr_dropped += 1

    def _write(self, data: bytes, timeout: float) -> bool:
        view = memoryview(data)
        end = time.monotonic() + timeout
        while view:
            left = end - time.monotonic()
            if left <= 0:
                return False
            _, w, _ = select.select([], [self.win], [], left)
            if not w:
                return False
            try:
                n = os.write(self.win, view)
            except BlockingIOError:
                continue
            except OSError:
                return False
            view = view[n:]
        return True

    def start(self, timeout: float) -> str:
        """Sends the policy source and waits for "loaded": "ok", "timeout"
        or "dead"/"violation"."""
        if not self._write(_LEN.pack(len(self.source), _SOURCE) + self.source, timeout):
            return "timeout" if self.proc.poll() is None else "dead"
        kind, _ = self.receive(timeout, _READY)
        return kind

    def unsolicited(self) -> bool:
        """True when the child wrote without being asked (or died)."""
        r, _, _ = select.select([self.rout], [], [], 0)
        return bool(r)

    def send(self, tick: int, obs, timeout: float) -> bool:
        body = pickle.dumps(obs, protocol=pickle.HIGHEST_PROTOCOL)
        return self._write(_LEN.pack(len(body), tick) + body, timeout)

    def receive(self, timeout: float, tick: int) -> tuple[str, bytes]:
        """("ok", plan) | ("timeout", b"") | ("dead", b"") | ("violation", b"")."""
        deadline = time.monotonic() + timeout
        buf = b""
        need = _LEN.size
        body_phase = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return ("timeout", b"")
            r, _, _ = select.select([self.rout], [], [], left)
            if not r:
                return ("timeout", b"")
            chunk = os.read(self.rout, need - len(buf))
            if not chunk:
                return ("dead", b"")
            buf += chunk
            if len(buf) < need:
                continue
            if body_phase:
                return ("ok", buf)
            n, got = _LEN.unpack(buf)
            if got != tick or n > MAX_PLAN:
                return ("violation", b"")
            if n == 0:
                return ("ok", b"")
            buf, need, body_phase = b"", n, True

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        shutil.rmtree(self.cwd, ignore_errors=True)

    def describe_exit(self) -> str:
        rc = self.proc.poll()
        if rc is None:
            return "running"
        if rc < 0:
            return f"killed by {signal.Signals(-rc).name}"
        return f"exit code {rc}"


def run(args: argparse.Namespace) -> dict:
    from . import connect
    from .policy import Observation

    journal = Journal(args.journal)
    source_code = Path(args.policy).read_bytes()
    session = connect(args.server, args.token, cert=args.cert, role="policy", timeout=args.connect_timeout, server_name=args.server_name, ca=args.ca, pin=args.pin)
    if args.npcs is not None:
        # Control on request: the answer (the whole set) arrives a tick later.
        session.request_npcs(args.npcs)
        wait_until = time.monotonic() + args.connect_timeout
        while session.controlled_tick is None and time.monotonic() < wait_until:
            session.observe(0.1)
        if session.controlled_tick is None:
            raise TimeoutError(f"no answer to the request for {args.npcs} NPCs within {args.connect_timeout} s")
    # Full-precision observations of what this policy may see, every
    # --observe-every ticks: the same Observation `run_local` builds.
    session.request_observations(args.observe_every, args.observe_radius)
    controlled = session.controlled
    controlled_tick = session.controlled_tick
    source = session.source_id
    deadline = args.deadline_ms / 1000.0
    bank_max = args.bank_ms / 1000.0
    bank = bank_max
    counters = {
        "ticks": 0, "skipped": 0, "plans_sent": 0, "on_time": 0, "late": 0, "missing": 0,
        "restarts": 0, "kills": 0, "crashes": 0, "violations": 0, "rejected": 0, "accepted": 0,
    }  # fmt: skip
    latencies: deque[float] = deque(maxlen=10_000)
    child: Child | None = None
    backoff = args.backoff_ms / 1000.0
    restart_at = 0.0
    end = time.monotonic() + args.duration if args.duration > 0 else float("inf")
    seq = 0
    last_tick: int | None = None
    started = False
    rays = None  # the newest raycast results the server sent back
    overlaps = None  # and overlap results

    def lost_child(kind: str, tick: int, counter: str, **detail) -> None:
        nonlocal child, restart_at, backoff, bank
        counters[counter] += 1
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
                snap = session.observation(0.5)
            except ConnectionError as e:
                journal.event("session_closed", last_tick or 0, reason=str(e))
                break
            for seq_no, tick, status in session.journals():
                if int(status) == 0:
                    counters["accepted"] += 1
                else:
                    counters["rejected"] += 1
                    journal.event("plan_rejected", tick, sequence=seq_no, status=getattr(status, "name", str(status)))
            if snap is None:
                continue
            if session.controlled_tick != controlled_tick:  # granted, released or taken back
                controlled, controlled_tick = session.controlled, session.controlled_tick
            tick = int(snap["tick"])
            if last_tick is not None and tick > last_tick + 1:
                counters["skipped"] += tick - last_tick - 1  # snapshots we were too busy to see
            last_tick = tick
            counters["ticks"] += 1
            if child is None:
                counters["missing"] += 1
                if time.monotonic() >= restart_at:
                    if started:
                        counters["restarts"] += 1
                        journal.event("restart", tick, backoff_ms=int(backoff * 1000))
                    started = True
                    child = Child(source_code, args.memory_mb, args.cpu_seconds)
                    ready = child.start(args.startup_timeout)
                    if ready != "ok":
                        kind = {"dead": "load_failed", "timeout": "startup_timeout"}.get(ready, "violation")
                        lost_child(kind, tick, "crashes" if ready == "dead" else "kills")
                continue
            if child.unsolicited():
                counters["missing"] += 1
                lost_child("violation", tick, "violations", why="wrote without being asked, or died")
                continue
            got = session.rays()
            if got is not None:
                rays = (got["hit"], got["handle"], got["distance"])
            got = session.overlaps()
            if got is not None:
                overlaps = (got["offsets"], got["handles"])
            seq += 1
            obs = Observation.from_observed(snap, source, args.lead, seq, rays, overlaps)
            t0 = time.monotonic()
            if not child.send(tick, obs, deadline + bank):
                counters["missing"] += 1
                if child.proc.poll() is not None:
                    lost_child("crash", tick, "crashes")
                else:
                    lost_child("deadline", tick, "kills", why="not reading its input")
                continue
            kind, plan = child.receive(deadline + bank - (time.monotonic() - t0), tick)
            spent = time.monotonic() - t0
            if kind != "ok":
                counters["missing"] += 1
                if kind == "dead":
                    lost_child("crash", tick, "crashes")
                elif kind == "violation":
                    lost_child("violation", tick, "violations", why="reply for another tick or oversized")
                else:
                    lost_child("deadline", tick, "kills", spent_ms=round(spent * 1000, 1), deadline_ms=args.deadline_ms, bank_ms=round(bank * 1000, 1))
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
            if not plan:
                continue
            if session.submit(plan):
                counters["plans_sent"] += 1
            else:
                counters["missing"] += 1
                journal.event("send_queue_full", tick)
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
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--server", default="127.0.0.1:4433", help="server address (host:port)")
    p.add_argument("--token", help="policy connect token (dualplane token --role policy ...)")
    p.add_argument("--cert", help="server certificate to pin (PEM or DER); the dev dir's cert.der by default")
    p.add_argument("--ca", help="trust this CA file (PEM or DER) and check the server's name instead of pinning")
    p.add_argument("--pin", help="pin the server certificate: sha256:<hex> or a certificate file")
    p.add_argument("--server-name", help="the name the server's certificate must carry (default: the host of --server)")
    p.add_argument("--policy", help="policy file defining act(obs)")
    p.add_argument("--deadline-ms", type=float, default=20.0, help="per-tick budget for act() (default 20)")
    p.add_argument("--bank-ms", type=float, default=250.0, help="overage bank: total lateness allowed before a kill (default 250)")
    p.add_argument("--memory-mb", type=int, default=1024, help="address-space limit of the policy process (default 1024)")
    p.add_argument("--cpu-seconds", type=int, default=3600, help="CPU-time limit of one policy process (default 3600)")
    p.add_argument("--backoff-ms", type=float, default=250.0, help="first restart delay; doubles per failure (default 250)")
    p.add_argument("--max-backoff-ms", type=float, default=5000.0)
    p.add_argument("--npcs", type=int, help="ask the server to control this many NPCs (default: the 4 granted at join)")
    p.add_argument("--observe-radius", type=float, default=OBSERVE_RADIUS_DEFAULT,
                   help=f"observe entities within this many metres of the policy's own (default {OBSERVE_RADIUS_DEFAULT:g}, at most 50)")
    p.add_argument("--observe-every", type=int, default=1, help="an observation every this many ticks (default 1, at most 600)")
    p.add_argument("--lead", type=int, default=2, help="plans target observed tick + lead (default 2)")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run (0 = until the session ends or SIGTERM)")
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.add_argument("--startup-timeout", type=float, default=10.0, help="seconds a policy process may take to load (default 10)")
    p.add_argument("--journal", help="append events as JSON lines to this file")
    p.add_argument("--json", action="store_true", help="print a JSON summary at exit")
    args = p.parse_args(argv)
    if args.child:
        return child_main(args.memory_mb, args.cpu_seconds)
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
