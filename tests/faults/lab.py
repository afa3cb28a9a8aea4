#!/usr/bin/env python3
"""The fault lab: every scenario against the real release binary over real
QUIC on loopback, each bounded in time, each decided by the numbers it
measures. Writes OUT/results.json (a list of rows: name, expected, measured,
pass, plus the raw numbers) and OUT/RESULTS.md. Exits 1 if any row fails; a
scenario that cannot run (a missing tool, no permission to mount) fails.

    tests/faults/run.sh [--full] [--out DIR] [--only NAME,...]
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("DUALPLANE_BIN", os.path.join(ROOT, "target", "release", "dualplane"))
PY = os.path.join(ROOT, ".venv", "bin", "python")


def say(msg):
    print(f"[lab +{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


T0 = time.monotonic()
# Every process the lab starts: main() kills those still alive at the end,
# whatever failed on the way.
PROCS = []


class Server:
    """One `dualplane serve` process on loopback ports of its own."""

    def __init__(self, work, name, *extra):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.dev = os.path.join(work, "dev")
        self.stats_path = os.path.join(self.dir, "stats.json")
        self.log_path = os.path.join(self.dir, "serve.log")
        self.log = open(self.log_path, "w")
        cmd = [BIN, "serve", "--bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0", "--dev-dir", self.dev,
               "--stats-json", self.stats_path, *extra]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        PROCS.append(self.proc)
        self.addr = self.admin = None
        for _ in range(200):
            text = open(self.log_path).read()
            a = re.search(r" on (127\.0\.0\.1:\d+) \(QUIC", text)
            m = re.search(r"^admin http on ([0-9.:]+)", text, re.M)
            if a and m:
                self.addr, self.admin = a.group(1), m.group(1)
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not self.addr:
            raise RuntimeError(f"server did not start: {open(self.log_path).read()[-2000:]}")

    def metrics(self):
        with urllib.request.urlopen(f"http://{self.admin}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out

    def proc_sample(self):
        pid = self.proc.pid
        status = open(f"/proc/{pid}/status").read()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return {"rss_kb": rss, "threads": threads, "fds": fds}

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        return rc

    def stats(self):
        try:
            return json.load(open(self.stats_path))
        except (OSError, ValueError):
            return {}


def spawn(args, out_path):
    """A client process whose stdout (JSON) goes to out_path."""
    p = subprocess.Popen(args, stdout=open(out_path, "w"), stderr=open(out_path + ".err", "w"))
    PROCS.append(p)
    return p


def bots(server, count, duration, out_path, link=None, first_id=1000):
    cmd = [BIN, "bot", "--server", server.addr, "--count", str(count), "--duration", f"{duration}s",
           "--dev-dir", server.dev, "--json", "--first-id", str(first_id)]
    if link:
        cmd += ["--link", link]
    return spawn(cmd, out_path)


def read_json(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def wait(p, timeout):
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return None


def bot_summary(b):
    """Figures over every bot of one `bot --json` report."""
    if not b or not b.get("bots"):
        # No report: every figure fails its check.
        return {"bots": 0, "connected": 0, "hash_failures": -1, "errors": -1, "snapshots_per_s_min": 0.0, "snapshots_per_s_mean": 0.0,
                "inputs_late_pct_max": 100.0, "prediction_error_m_p99_max": -1, "apply_gap_ms_max": float("inf"),
                "reconverge_ms_max": None, "blackouts_unrecovered": -1, "rtt_ms_p50_max": None}
    bs = b["bots"]
    return {
        "bots": len(bs),
        "connected": b["connected"],
        "hash_failures": b["hash_failures"],
        "errors": sum(1 for x in bs if x.get("error")),
        "snapshots_per_s_min": round(min(x["snapshots_per_s"] for x in bs), 1),
        "snapshots_per_s_mean": round(sum(x["snapshots_per_s"] for x in bs) / len(bs), 1),
        "inputs_late_pct_max": round(max(x["inputs_late_pct"] for x in bs), 2),
        "prediction_error_m_p99_max": round(max(x["prediction_error_m_p99"] for x in bs), 4),
        "apply_gap_ms_max": round(max(x.get("apply_gap_ms_max", 0) for x in bs), 1),
        "rtt_ms_p50_max": None if any(x.get("rtt_ms_p50") is None for x in bs) else round(max(x["rtt_ms_p50"] for x in bs), 1),
        "reconverge_ms_max": None if any(x.get("reconverge_ms") is None for x in bs) else round(max(x["reconverge_ms"] for x in bs), 1),
        "blackouts_unrecovered": sum(x.get("blackouts_unrecovered", 0) for x in bs),
    }


def row(name, expected, measured, ok, **numbers):
    r = {"name": name, "expected": expected, "measured": measured, "pass": bool(ok), **numbers}
    say(("PASS " if ok else "FAIL ") + f"{name}: {measured}")
    return r


def failed(name, expected, why):
    return row(name, expected, f"could not run: {why}", False)


# ---------------------------------------------------------------- scenarios

PROFILES = [
    # name, profile (both directions), min snapshots/s per bot, max median round trip (ms) per bot
    ("clean", "", 58, None),
    ("delay 50ms + jitter 10ms", "delay=50ms,jitter=10ms", 55, None),
    ("loss 5%", "loss=5%", 52, None),
    ("loss 20% + dup 2% + reorder 5%", "loss=20%,dup=2%,reorder=5%", 45, None),
    ("rate 1 Mbit/s per client", "rate=1mbit", 55, None),
    # Under 60 snapshots/s of ~1,100 B: the send rate must drop to 30 or 20 Hz
    # rather than fill the link's 500 ms queue (at 60 Hz: ~33 snapshots/s,
    # 42% lost, 525 ms round trips).
    ("rate 300 kbit/s per client (congested)", "rate=300kbit", 15, 150),
    ("blackout 3 s", None, 40, None),
]


def profiles(work, full):
    rows = []
    secs = 60 if full else 12
    for name, prof, floor, rtt_max in PROFILES:
        if prof is None:
            prof = f"blackout=3s@{secs // 2}s"
        s = Server(work, "profile-" + re.sub(r"[^a-z0-9]+", "-", name))
        out = os.path.join(s.dir, "bots.json")
        p = bots(s, 16, secs, out, link=prof or None)
        wait(p, secs + 60)
        rc = s.stop()
        st, b = s.stats(), bot_summary(read_json(out))
        if b["bots"] == 0:
            rows.append(failed(f"profile: {name}", "16 bots report", open(out + ".err").read()[-300:]))
            continue
        tick_p99 = round(st.get("tick_ms_p99", 0), 2)
        expected = f"16 bots {secs} s through `{prof or 'no impairment'}`: 0 hash failures, no bot lost, >= {floor} snapshots/s per bot"
        ok = b["hash_failures"] == 0 and b["connected"] == 16 and b["errors"] == 0 and b["snapshots_per_s_min"] >= floor and rc == 0
        if rtt_max is not None:
            expected += f", median round trip <= {rtt_max} ms per bot (no standing queue)"
            ok = ok and b["rtt_ms_p50_max"] is not None and b["rtt_ms_p50_max"] <= rtt_max
        if "blackout" in prof:
            expected += ", reconverged <= 1000 ms after the blackout"
            ok = ok and b["reconverge_ms_max"] is not None and b["reconverge_ms_max"] <= 1000
        measured = (f"snap/s min {b['snapshots_per_s_min']} mean {b['snapshots_per_s_mean']}, hash failures {b['hash_failures']}, "
                    f"lost bots {b['errors']}, late inputs max {b['inputs_late_pct_max']}%, prediction p99 {b['prediction_error_m_p99_max']} m, "
                    f"median round trip max {b['rtt_ms_p50_max']} ms, server tick p99 {tick_p99} ms")
        if "blackout" in prof:
            measured += f", reconverge max {b['reconverge_ms_max']} ms (longest gap {b['apply_gap_ms_max']} ms)"
        rows.append(row(f"profile: {name}", expected, measured, ok, **b, tick_ms_p99=tick_p99, server_exit=rc))
    return rows


def slope(samples, key):
    """Least-squares slope of samples[key] over t, per minute."""
    n = len(samples)
    if n < 2:
        return 0.0
    ts = [s["t"] for s in samples]
    vs = [s[key] for s in samples]
    mt, mv = sum(ts) / n, sum(vs) / n
    den = sum((t - mt) ** 2 for t in ts) or 1.0
    return 60.0 * sum((t - mt) * (v - mv) for t, v in zip(ts, vs)) / den


def soak(work, full):
    secs, warm = (600, 120) if full else (120, 40)
    name = f"soak: 64 bots + 1 policy worker, {secs // 60} min"
    # Two measures, each the floor (lowest sample) of the second half of
    # the window after the warm-up over the floor of the first half,
    # sampled every 5 s: a leak raises the level a series falls back to; a
    # swing does not.
    # - Heap bytes live (`dualplane_heap_live_bytes`, counted by the
    #   server's allocator: exact, no allocator noise): the leak test.
    #   Bounded high-water marks still step it (a Vec doubling as the world
    #   or a client's queue reaches a new size: seen +1 to +1.4 MB once in
    #   a 150 s run, 2-3% of its ~52 MB), so both forms allow 5%. Rust's
    #   allocations only: C libraries' own mallocs (zstd's) show in RSS.
    # - RSS: also the allocator's fragmentation. At 64 bots it swings +-4
    #   MiB from one sample to the next (seen 67 -> 73 -> 68 -> 71 MiB),
    #   and glibc's arenas have grown it 10 MiB over minutes while the heap
    #   stayed flat; the first-and-last-sample test this replaced failed
    #   one CI run in four on code that passed at -2% elsewhere. The full
    #   soak holds RSS to the lab issue's 2%; the short form to 10%.
    heap_bound, rss_bound = (5.0, 2.0) if full else (5.0, 10.0)
    expected = (f"after the {warm} s warm-up, floor growth (second half's lowest sample over the first half's): "
                f"heap bytes live <= {heap_bound:g}%, RSS <= {rss_bound:g}%; fds and threads flat; 0 hash failures; overruns < 25% of ticks")
    if not os.access(PY, os.X_OK):
        return [failed(name, expected, f"{PY} missing (run tests/run-all.sh once: it makes the venv)")]
    rec = os.path.join(work, "soak-rec")
    os.makedirs(rec, exist_ok=True)
    s = Server(work, "soak", "--record", rec)
    out = os.path.join(s.dir, "bots.json")
    tok = subprocess.run([BIN, "token", "--client-id", "900", "--role", "policy", "--dev-dir", s.dev, "--ttl", "1h"],
                         capture_output=True, text=True, check=True).stdout.strip()
    wout = os.path.join(s.dir, "worker.json")
    worker = spawn([PY, "-m", "dualplane.worker", "--server", s.addr, "--cert", os.path.join(s.dev, "cert.der"),
                    "--duration", str(secs), "--json", "--token", tok,
                    "--policy", os.path.join(ROOT, "policy-py/python/dualplane/policies/utility_npc.py")], wout)
    p = bots(s, 64, secs, out)
    samples, t0 = [], time.monotonic()
    while p.poll() is None and time.monotonic() - t0 < secs + 60:
        time.sleep(5)
        try:
            m = s.metrics()
            smp = {"t": round(time.monotonic() - t0, 1), **s.proc_sample(),
                   "heap_kb": int(m.get("dualplane_heap_live_bytes", 0)) // 1024,
                   "recorder_queue": m.get("dualplane_recorder_queue_depth", 0),
                   "clients": sum(v for k, v in m.items() if k.startswith("dualplane_clients{"))}
            samples.append(smp)
            say(f"soak sample {smp}")
        except (OSError, AttributeError):
            pass
    wait(p, 60)
    wait(worker, 60)
    rc = s.stop()
    st, b, w = s.stats(), bot_summary(read_json(out)), read_json(wout) or {}
    # Only samples taken while every client was on: not those of the last
    # seconds, when the bots may be leaving and freeing their sessions
    # (the clients gauge lags: seen at 65 beside a heap already 8 MiB down).
    after = [x for x in samples if warm <= x["t"] <= secs - 3 and x["clients"] >= 65]
    if b["bots"] == 0 or len(after) < 4:
        return [failed(name, expected, f"bots: {open(out + '.err').read()[-300:]} samples {len(after)}")]
    half = len(after) // 2

    def floors(key):
        f0, f1 = min(x[key] for x in after[:half]), min(x[key] for x in after[half:])
        return f0, f1, 100.0 * (f1 - f0) / max(1, f0)

    floor0, floor1, growth = floors("rss_kb")
    heap0, heap1, heap_growth = floors("heap_kb")
    over = 100.0 * st.get("overruns", 0) / max(1, st.get("ticks", 1))
    fd_growth = after[-1]["fds"] - after[0]["fds"]
    th_growth = after[-1]["threads"] - after[0]["threads"]
    wc = (w.get("counters") or {})
    ok = (growth <= rss_bound and heap0 > 0 and heap_growth <= heap_bound and fd_growth <= 2 and th_growth <= 2 and b["hash_failures"] == 0 and b["errors"] == 0
          and over < 25.0 and rc == 0 and wc.get("accepted", 0) > 0)
    measured = (f"heap live floor {heap0 / 1024:.1f} -> {heap1 / 1024:.1f} MiB ({heap_growth:+.2f}%), "
                f"RSS floor {floor0 // 1024} -> {floor1 // 1024} MiB ({growth:+.2f}%; first and last sample "
                f"{after[0]['rss_kb'] // 1024} -> {after[-1]['rss_kb'] // 1024} MiB, slope {slope(after, 'rss_kb'):+.0f} KiB/min), "
                f"fds {after[0]['fds']} -> {after[-1]['fds']}, threads {after[0]['threads']} -> {after[-1]['threads']}, "
                f"recorder queue max {max(x['recorder_queue'] for x in samples):.0f}, overruns {over:.1f}% of {st.get('ticks')}, "
                f"hash failures {b['hash_failures']}, snap/s min {b['snapshots_per_s_min']}, worker plans accepted {wc.get('accepted')}")
    return [row(name, expected, measured, ok, rss_growth_pct=round(growth, 3), rss_floor_kb=[floor0, floor1],
                heap_growth_pct=round(heap_growth, 3), heap_floor_kb=[heap0, heap1], rss_slope_kib_per_min=round(slope(after, "rss_kb"), 1),
                fd_growth=fd_growth, thread_growth=th_growth, overrun_pct=round(over, 2), samples=samples, **b)]


def churn(work, full):
    count, over = (1000, 60) if full else (300, 20)
    idle_ms, grace_ms = 3000, 1000
    name = f"churn: {count} connects over {over} s (half vanish) beside 16 steady bots"
    expected = ("steady bots >= 58 snapshots/s and 0 hash failures; every churn session freed and only the 16 steady avatars left; "
                "RSS within 5% (+4 MiB) of its baseline taken after a warm-up round at the same rate")
    s = Server(work, "churn", "--idle-timeout-ms", str(idle_ms), "--reconnect-grace-ms", str(grace_ms), "--max-clients", "256")
    out = os.path.join(s.dir, "bots.json")
    settle = (idle_ms + grace_ms) / 1000 + 4
    # A warm-up round at the same connect rate (half as long) first: the
    # allocator keeps its high-water mark from the first burst of sessions
    # (glibc's per-thread arenas hold ~5-7 MiB of freed session buffers, the
    # same after 300 connects as after 1,000), and a leak grows with every
    # round while a high-water mark does not. The baseline follows it.
    warm_count, warm_over = count // 2, over // 2
    steady = bots(s, 16, 5 + warm_over + settle + over + settle + 7, out)
    time.sleep(5)
    first = s.proc_sample()
    w = subprocess.run([BIN, "churn", "--server", s.addr, "--dev-dir", s.dev, "--count", str(warm_count), "--over", f"{warm_over}s",
                        "--first-id", "200000", "--json"], capture_output=True, text=True, timeout=warm_over + 120)
    time.sleep(settle)
    base = s.proc_sample()
    base_clients = sum(v for k, v in s.metrics().items() if k.startswith("dualplane_clients{"))
    cout = os.path.join(s.dir, "churn.json")
    c = subprocess.run([BIN, "churn", "--server", s.addr, "--dev-dir", s.dev, "--count", str(count), "--over", f"{over}s",
                        "--json"], capture_output=True, text=True, timeout=over + 120)
    open(cout, "w").write(c.stdout + c.stderr)
    time.sleep(settle)
    m = s.metrics()
    clients_after = sum(v for k, v in m.items() if k.startswith("dualplane_clients{"))
    avatars_after = m.get('dualplane_entities{archetype="avatar"}', -1)
    after = s.proc_sample()
    wait(steady, 60)
    time.sleep(2)
    clients_end = sum(v for k, v in s.metrics().items() if k.startswith("dualplane_clients{"))
    rc = s.stop()
    b = bot_summary(read_json(out))
    try:
        cj = json.loads(c.stdout)
    except ValueError:
        return [failed(name, expected, f"churn printed no JSON: {c.stderr[-300:]}")]
    rss_ok = after["rss_kb"] <= base["rss_kb"] * 1.05 + 4096
    ok = (w.returncode == 0 and cj["connected"] == count and b["hash_failures"] == 0 and b["errors"] == 0 and b["snapshots_per_s_min"] >= 58
          and base_clients == 16 and clients_after == 16 and avatars_after == 16 and clients_end == 0 and rss_ok and rc == 0)
    measured = (f"{cj['connected']}/{count} connected ({cj['vanished']} vanished), sessions {base_clients:.0f} before, "
                f"{clients_after:.0f} after (steady bots only), {clients_end:.0f} at the end; avatars after {avatars_after:.0f}; "
                f"RSS {first['rss_kb'] // 1024} -> {base['rss_kb'] // 1024} MiB over a warm-up round of {warm_count}, "
                f"{base['rss_kb'] // 1024} -> {after['rss_kb'] // 1024} MiB over the measured round; steady snap/s min {b['snapshots_per_s_min']}, "
                f"hash failures {b['hash_failures']}")
    return [row(name, expected, measured, ok, churn=cj, sessions_before=base_clients, sessions_after=clients_after,
                sessions_end=clients_end, rss_first_kb=first["rss_kb"], rss_before_kb=base["rss_kb"], rss_after_kb=after["rss_kb"],
                warm_up_rc=w.returncode, **b)]


def kill9(work, full):
    name = "process: kill -9 mid-match"
    expected = "the replay verifies to its last chunk (--allow-truncated); every bot reports the loss and the bot process exits 0"
    rec = os.path.join(work, "kill9-rec")
    os.makedirs(rec, exist_ok=True)
    s = Server(work, "kill9", "--record", rec, "--keyframe-every", "120", "--idle-timeout-ms", "3000")
    out = os.path.join(s.dir, "bots.json")
    p = bots(s, 8, 60, out)
    time.sleep(8)
    s.proc.kill()
    s.proc.wait()
    t_kill = time.monotonic()
    rc_bots = wait(p, 30)
    exit_s = time.monotonic() - t_kill
    b = read_json(out) or {}
    lost = sum(1 for x in b.get("bots", []) if x.get("error"))
    files = [f for f in os.listdir(rec) if f.endswith(".rpl")]
    if not files:
        return [failed(name, expected, "no replay file")]
    v = subprocess.run([BIN, "replay", "verify", os.path.join(rec, files[0]), "--allow-truncated", "--json"], capture_output=True, text=True)
    try:
        vj = json.loads(v.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        vj = {}
    ticks = vj.get("ticks_verified", vj.get("ticks", 0))
    ok = v.returncode == 0 and lost == 8 and rc_bots == 0 and exit_s < 10
    measured = (f"replay verify exit {v.returncode} ({ticks} ticks verified); {lost}/8 bots reported the loss; "
                f"bot process exit {rc_bots} {exit_s:.1f} s after the kill (idle timeout 3 s)")
    return [row(name, expected, measured, ok, verify=vj, bots_lost=lost, bots_exit=rc_bots, bots_exit_s=round(exit_s, 2))]


def sigstop(work, full):
    name = "process: SIGSTOP 2 s, SIGCONT"
    expected = "tick debt dropped and counted (~120 ticks), <= 10 overruns after resuming, bots resync (0 hash failures, gap <= 3 s), none lost"
    s = Server(work, "sigstop")
    out = os.path.join(s.dir, "bots.json")
    p = bots(s, 8, 16, out)
    time.sleep(6)
    before = s.metrics()
    s.proc.send_signal(signal.SIGSTOP)
    time.sleep(2)
    s.proc.send_signal(signal.SIGCONT)
    time.sleep(5)
    after = s.metrics()
    wait(p, 60)
    rc = s.stop()
    st, b = s.stats(), bot_summary(read_json(out))
    burst = after.get("dualplane_tick_overruns_total", 0) - before.get("dualplane_tick_overruns_total", 0)
    debt = st.get("tick_debt_dropped_ticks", 0)
    ok = 100 <= debt <= 140 and burst <= 10 and b["hash_failures"] == 0 and b["errors"] == 0 and b["apply_gap_ms_max"] <= 3000 and rc == 0
    measured = (f"tick debt dropped {debt} ticks; overruns in the 5 s after SIGCONT {burst:.0f}; bots: hash failures {b['hash_failures']}, "
                f"lost {b['errors']}, longest snapshot gap {b['apply_gap_ms_max']} ms")
    return [row(name, expected, measured, ok, debt_dropped=debt, overruns_after=burst, **b)]


def sigterm(work, full):
    name = "process: SIGTERM under load"
    drain_ms = 5000
    expected = f"exit 0 within the drain bound ({drain_ms} ms) + 1 s; every bot told the server is shutting down"
    s = Server(work, "sigterm", "--drain-timeout-ms", str(drain_ms))
    out = os.path.join(s.dir, "bots.json")
    p = bots(s, 16, 30, out)
    time.sleep(6)
    t = time.monotonic()
    rc = s.stop(signal.SIGTERM, timeout=drain_ms / 1000 + 10)
    took = time.monotonic() - t
    wait(p, 30)
    b = read_json(out) or {}
    told = sum(1 for x in b.get("bots", []) if "shutting down" in (x.get("error") or ""))
    ok = rc == 0 and took <= drain_ms / 1000 + 1 and told == 16
    measured = f"exit {rc} after {took:.2f} s; {told}/16 bots told why ({sorted({x.get('error') for x in b.get('bots', [])}, key=str)[:2]})"
    return [row(name, expected, measured, ok, exit=rc, drain_s=round(took, 3), told=told)]


def must(cmd, what):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise RuntimeError(f"{what}: {e}") from e
    if r.returncode != 0:
        raise RuntimeError(f"{what}: {(r.stderr or r.stdout).strip()}")
    return r.stdout


def mount_tmpfs(at, size):
    """A small tmpfs that fills up."""
    os.makedirs(at, exist_ok=True)
    must(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", at], "mount -t tmpfs (needs root)")


def mount_ext4(at, image):
    """A loop-mounted ext4 image that turns read-only on its first error
    (errors=remount-ro); returns its sysfs error trigger. (A plain
    `remount,ro` is refused while the recorder holds a file open.)"""
    os.makedirs(at, exist_ok=True)
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    must(["mkfs.ext4", "-q", "-F", image], "mkfs.ext4 (e2fsprogs)")
    must(["mount", "-o", "loop,errors=remount-ro", image, at], "mount -o loop (needs root and a loop device)")
    dev = next((line.split()[0] for line in open("/proc/mounts") if line.split()[1] == at), "")
    trigger = f"/sys/fs/ext4/{os.path.basename(dev)}/trigger_fs_error"
    if not os.path.exists(trigger):
        raise RuntimeError(f"{trigger} missing: cannot make the filesystem fail")
    return trigger


def disk(work, full):
    rows = []
    for kind in ["full", "read-only"]:
        name = f"disk: recording onto a {'256 KiB tmpfs that fills' if kind == 'full' else 'ext4 that turns read-only (an error, errors=remount-ro)'} mid-match"
        expected = "the match goes on (bots >= 55 snapshots/s, 0 hash failures), the failure is counted (dualplane_replay_failures_total >= 1, recording_failed set), exit 0"
        mnt = os.path.join(work, f"mnt-{kind}")
        try:
            if kind == "full":
                mount_tmpfs(mnt, "256k")
            else:
                trigger = mount_ext4(mnt, os.path.join(work, "ro.ext4"))
        except (RuntimeError, OSError) as e:
            rows.append(failed(name, expected, str(e)))
            continue
        try:
            s = Server(work, f"disk-{kind}", "--record", mnt, "--keyframe-every", "60")
            out = os.path.join(s.dir, "bots.json")
            p = bots(s, 8, 14, out)
            if kind == "read-only":
                time.sleep(4)
                with open(trigger, "w") as t:
                    t.write("1")
            wait(p, 60)
            m = s.metrics()
            rc = s.stop()
            st, b = s.stats(), bot_summary(read_json(out))
            fails = m.get("dualplane_replay_failures_total", 0)
            why = st.get("recording_failed")
            ok = fails >= 1 and why and b["hash_failures"] == 0 and b["errors"] == 0 and b["snapshots_per_s_min"] >= 55 and rc == 0
            measured = (f"replay failures {fails:.0f} ({why}); bots snap/s min {b['snapshots_per_s_min']}, hash failures {b['hash_failures']}; "
                        f"ticks {st.get('ticks')}, exit {rc}")
            rows.append(row(name, expected, measured, ok, replay_failures=fails, recording_failed=why, **b))
        except (RuntimeError, OSError) as e:
            rows.append(failed(name, expected, str(e)))
        finally:
            subprocess.run(["umount", "-l", mnt], capture_output=True)
    return rows


def hostile(work, full):
    secs = 40 if full else 25
    name = "hostile clients at load (32 bots)"
    expected = ("steady bots >= 58 snapshots/s and 0 hash failures; each attack counted under its own reason: junk datagrams "
                "(datagrams_dropped >= 95% of what reached the socket), no_hello per mute connection, malformed_frame per "
                "connection closed for one, unexpected_frame, slow_reader")
    s = Server(work, "hostile")
    out = os.path.join(s.dir, "bots.json")
    p = bots(s, 32, secs, out)
    kernel_drops0 = udp_rcvbuf_errors()
    time.sleep(3)
    attacks = {}
    # Each attacker its own client ids: a second session under an id replaces the first.
    for kind, extra in [("flood", ["--duration", "6s", "--rate", "5000"]), ("mute", ["--count", "100", "--duration", "8s"]),
                        ("garbage", ["--count", "20", "--duration", "5s", "--first-id", "210000"]),
                        ("no-read", ["--count", "4", "--duration", "12s", "--first-id", "220000"])]:
        attacks[kind] = spawn([BIN, "hostile", "--server", s.addr, "--dev-dir", s.dev, "--attack", kind, "--json", *extra],
                              os.path.join(s.dir, f"hostile-{kind}.json"))
    for a in attacks.values():
        wait(a, 60)
    wait(p, secs + 60)
    m = s.metrics()
    rc = s.stop()
    b = bot_summary(read_json(out))
    rep = {k: read_json(os.path.join(s.dir, f"hostile-{k}.json")) or {} for k in attacks}
    junk = {r: m.get(f'dualplane_datagrams_dropped_total{{reason="{r}"}}', 0) for r in ["not_quic", "bad_version", "short_initial", "unknown_cid"]}
    faults = {r: m.get(f'dualplane_client_faults_total{{reason="{r}"}}', 0) for r in ["no_hello", "malformed_frame", "unexpected_frame", "slow_reader"]}
    sent = rep["flood"].get("datagrams_sent", 0)
    # What the kernel dropped (a full receive buffer) never reached the guard.
    kernel_drops = udp_rcvbuf_errors() - kernel_drops0
    mute, garbage = rep["mute"], rep["garbage"]
    ok = (b["hash_failures"] == 0 and b["errors"] == 0 and b["snapshots_per_s_min"] >= 58 and sent > 0
          and sum(junk.values()) >= 0.95 * (sent - kernel_drops)
          and mute.get("connected", 0) >= 90 and faults["no_hello"] >= mute.get("connected", 1)
          and garbage.get("closed_by_server", 0) >= 8 and faults["malformed_frame"] >= garbage.get("closed_by_server", 1)
          and faults["unexpected_frame"] >= 8 and faults["slow_reader"] > 0 and rc == 0)
    measured = (f"steady snap/s min {b['snapshots_per_s_min']}, hash failures {b['hash_failures']}, lost {b['errors']}; "
                f"flood {sent} sent ({kernel_drops} dropped by the kernel), counted {', '.join(f'{k} {v:.0f}' for k, v in junk.items())}; "
                f"faults {', '.join(f'{k} {v:.0f}' for k, v in faults.items())}")
    return [row(name, expected, measured, ok, junk=junk, faults=faults, attacks=rep, kernel_drops=kernel_drops, **b)]


def udp_rcvbuf_errors():
    """Datagrams the kernel dropped for a full socket receive buffer (all sockets)."""
    lines = [line.split() for line in open("/proc/net/snmp") if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


SCENARIOS = {"profiles": profiles, "soak": soak, "churn": churn, "kill9": kill9, "sigstop": sigstop, "sigterm": sigterm,
             "disk": disk, "hostile": hostile}


def markdown(rows, full, took):
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [f"# Fault lab results ({'full' if full else 'short'})", "",
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit or 'unknown'}, "
             f"{os.cpu_count()} cores, {took:.0f} s. Made by `tests/faults/run.sh{' --full' if full else ''}`.", "",
             "| scenario | expected | measured | pass |", "|---|---|---|---|"]
    for r in rows:
        cell = lambda s: str(s).replace("|", "\\|")
        lines.append(f"| {cell(r['name'])} | {cell(r['expected'])} | {cell(r['measured'])} | {'PASS' if r['pass'] else '**FAIL**'} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the full lab: 60 s profiles, a 10-minute soak, 1,000-connection churn")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "faults"), help="where RESULTS.md and results.json go")
    ap.add_argument("--only", default="", help=f"comma-separated scenarios (of {', '.join(SCENARIOS)})")
    a = ap.parse_args()
    only = [x for x in a.only.split(",") if x]
    bad = [x for x in only if x not in SCENARIOS]
    if bad:
        ap.error(f"unknown scenario(s) {bad}; valid: {', '.join(SCENARIOS)}")
    if not os.access(BIN, os.X_OK):
        print(f"fault lab: {BIN} missing: build it with cargo build --release -p server (or set DUALPLANE_BIN)", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="dualplane-faults-")
    rows = []
    try:
        for n, f in SCENARIOS.items():
            if only and n not in only:
                continue
            say(f"scenario {n}")
            try:
                rows.extend(f(work, a.full))
            except Exception as e:  # a scenario that cannot run fails; the others still run
                rows.append(failed(n, "the scenario runs", f"{type(e).__name__}: {e}"))
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
                p.wait()
        for line in open("/proc/mounts"):
            mp = line.split()[1]
            if mp.startswith(work):
                subprocess.run(["umount", "-l", mp], capture_output=True)
        if os.environ.get("DUALPLANE_LAB_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)
    took = time.monotonic() - T0
    json.dump(rows, open(os.path.join(a.out, "results.json"), "w"), indent=1)
    md = markdown(rows, a.full, took)
    open(os.path.join(a.out, "RESULTS.md"), "w").write(md)
    print(md)
    failed_rows = [r["name"] for r in rows if not r["pass"]]
    print(f"fault lab: {len(rows) - len(failed_rows)} passed, {len(failed_rows)} failed in {took:.0f} s ({a.out}/RESULTS.md)")
    return 1 if failed_rows else 0


if __name__ == "__main__":
    sys.exit(main())
