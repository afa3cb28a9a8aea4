#!/usr/bin/env python3
"""The Agones lifecycle of `dualplane serve --agones`, against dummy-agones
(a local fake of the Agones SDK sidecar: gRPC plus a YAML view of the
GameServer on the same port):

  annotations read at start -> Ready -> health pings while the tick loop
  runs -> allocation seen (metadata logged, metric set) -> SIGTERM drain ->
  Shutdown; and a clear failure when no sidecar answers.

    python deploy/check_agones.py --bin target/release/dualplane --dummy ~/.cargo/bin/dummy-agones
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

PORT = 9357  # dummy-agones listens on the SDK's default port


def wait_port(port: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def get_gs() -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/", timeout=5) as r:
        return yaml.safe_load(r.read())


def put_gs(gs: dict) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}/", data=yaml.safe_dump(gs).encode(), headers={"Content-Type": "application/yaml"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()


def game_server(state: str, annotations: dict[str, str]) -> dict:
    return {
        "objectMeta": {
            "name": "dualplane-test",
            "namespace": "default",
            "uid": "0",
            "resourceVersion": "1",
            "generation": 1,
            "creationTimestamp": 0,
            "deletionTimestamp": 0,
            "annotations": annotations,
            "labels": {"agones.dev/fleet": "dualplane"},
        },
        "spec": None,
        "status": {"state": state, "address": "127.0.0.1", "addresses": [], "ports": [], "players": None, "counters": {}, "lists": {}},
    }


class Lines:
    def __init__(self, stream):
        self.lines: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def wait(self, pattern: str, timeout: float) -> re.Match:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s; got:\n{''.join(self.lines[-30:])}")

    def count(self, pattern: str) -> int:
        return sum(1 for line in list(self.lines) if re.search(pattern, line))


def metric(admin: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as r:
        m = re.search(rf"^{re.escape(name)} (\S+)$", r.read().decode(), re.M)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default="target/release/dualplane")
    p.add_argument("--dummy", default="dummy-agones")
    a = p.parse_args()
    dev = Path(tempfile.mkdtemp())
    env = {**os.environ, "AGONES_SDK_GRPC_PORT": str(PORT), "RUST_LOG": "info"}

    # No sidecar: a clear, fast failure.
    t0 = time.monotonic()
    r = subprocess.run([a.bin, "serve", "--agones", "--bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0", "--dev-dir", str(dev)],
                       env={**env, "AGONES_SDK_GRPC_PORT": "1"}, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "agones" in r.stderr and "SDK sidecar" in r.stderr, (r.returncode, r.stderr)
    print(f"ok: without a sidecar serve --agones fails in {time.monotonic() - t0:.1f} s: {r.stderr.strip().splitlines()[-1]}")

    dummy = subprocess.Popen([a.dummy], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    dlog = Lines(dummy.stdout)
    server = None
    try:
        wait_port(PORT, 30)
        put_gs(game_server("Scheduled", {"dualplane.dev/seed": "77", "dualplane.dev/max-clients": "3", "dualplane.dev/nonsense": "x"}))
        server = subprocess.Popen([a.bin, "serve", "--agones", "--bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0", "--dev-dir", str(dev)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        slog = Lines(server.stdout)
        slog.wait(r'agones: GameServer "dualplane-test": scenario None seed Some\(77\) max_clients Some\(3\)', 30)
        slog.wait(r"agones: ignoring annotation dualplane.dev/nonsense: unknown", 5)
        quic = slog.wait(r" on (127\.0\.0\.1:\d+) \(QUIC", 30).group(1)
        admin = slog.wait(r"admin http on (\S+)", 30).group(1)
        slog.wait(r"^agones: Ready", 30)
        assert get_gs()["status"]["state"] == "Ready", get_gs()
        print("ok: annotations applied at start (seed 77, max-clients 3), GameServer Ready")

        def bot(server_id: str, match: str) -> dict:
            r = subprocess.run([a.bin, "bot", "--server", quic, "--count", "1", "--duration", "1s", "--dev-dir", str(dev),
                                "--server-id", server_id, "--match", match, "--json"], capture_output=True, text=True, timeout=60)
            return json.loads(r.stdout)

        assert bot("dualplane-test", "")["connected"] == 1, "a token for this GameServer (no match yet) is admitted"
        refused = bot("dev", "")["bots"][0]["error"]
        assert "not for this server" in refused, refused
        print("ok: tokens are bound to the GameServer's name")

        time.sleep(5)
        pings = dlog.count("Got health message")
        exported = metric(admin, "dualplane_agones_health_pings_total")
        assert pings >= 2 and exported >= 2, (pings, exported)
        print(f"ok: {pings} health pings reached the sidecar in 5 s while ticking ({exported:.0f} counted)")

        put_gs({**get_gs(), "objectMeta": {**get_gs()["objectMeta"], "annotations": {"dualplane.dev/session": "match-7"}},
                "status": {**get_gs()["status"], "state": "Allocated"}})
        slog.wait(r'agones: allocated, session "match-7"', 15)
        assert metric(admin, "dualplane_agones_allocated") == 1
        print("ok: allocation seen with its metadata")
        slog.wait(r'agones: match is now "match-7"', 15)
        assert bot("dualplane-test", "match-7")["connected"] == 1, "a token for the allocated match is admitted"
        refused = bot("dualplane-test", "")["bots"][0]["error"]
        assert "not for this match" in refused, refused
        print("ok: after allocation only tokens for match-7 are admitted")

        server.send_signal(signal.SIGTERM)
        rc = server.wait(timeout=20)
        assert rc == 0, rc
        slog.wait(r"^agones: Shutdown", 5)
        assert get_gs()["status"]["state"] == "Shutdown", get_gs()
        print("ok: SIGTERM drained, exit 0, GameServer Shutdown")
    finally:
        if server and server.poll() is None:
            server.kill()
        dummy.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
