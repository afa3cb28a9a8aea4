"""Shared fixtures: the repository, the `dualplane` binary, a real server."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def dualplane_bin() -> Path:
    p = Path(os.environ.get("DUALPLANE_BIN", REPO / "target" / "release" / "dualplane"))
    assert p.is_file(), f"{p}: build the server first (cargo build --release -p server) or set DUALPLANE_BIN"
    return p


@pytest.fixture(scope="session")
def bin_path() -> Path:
    return dualplane_bin()


class Server:
    def __init__(self, dev: Path, args: list[str]):
        self.dev = dev
        self.proc = subprocess.Popen(
            [str(dualplane_bin()), "serve", "--bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0", "--dev-dir", str(dev), *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        lines = [self.proc.stdout.readline() for _ in range(3)]
        self.addr = re.search(r" on (\S+) \(QUIC", lines[0]).group(1)  # type: ignore[union-attr]
        self.admin = re.search(r"admin http on (\S+)", lines[2]).group(1)  # type: ignore[union-attr]
        self.cert = dev / "cert.der"
        self.log: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)

    def token(self, client_id: int, role: str = "policy") -> str:
        out = subprocess.run(
            [str(dualplane_bin()), "token", "--client-id", str(client_id), "--role", role, "--dev-dir", str(self.dev)],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.admin}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name: str) -> float:
        m = re.search(rf"^{re.escape(name)} (\S+)$", self.metrics(), re.M)
        assert m, f"{name} not exported"
        return float(m.group(1))

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def server(tmp_path: Path):
    s = Server(tmp_path / "dev", [])
    time.sleep(0.2)
    yield s
    s.stop()
