"""dualplane: the control plane of a deterministic simulation server.

Python decides *what* and *when*; the Rust data plane executes. Everything
crosses the boundary in batches:

>>> import numpy as np, dualplane
>>> sim = dualplane.Sim()                       # the embedded default arena
>>> npc = sim.columns("npc")                    # zero-copy, read-only views
>>> pb = dualplane.PlanBuilder(sim.tick + 1, source_id=0)
>>> targets = np.zeros((len(npc["handle"]), 3), np.float32)
>>> plan = pb.move_to(npc["handle"], targets, 2.0).build()
>>> j = sim.step(plan)
>>> j.plans[0].status
<Status.OK: 0>

`connect()` opens a remote policy session to `dualplane serve`;
`python -m dualplane.worker` runs a policy file against a server in a
sandboxed, supervised process.
"""

from __future__ import annotations

import asyncio as _asyncio

from . import _ports
from ._native import (
    PORTS_SCHEMA_HASH as _NATIVE_SCHEMA_HASH,
    ColumnLease,
    Journal,
    PlanBuilder,
    PlanJournal,
    Session,
    Sim,
    SimPool,
    connect,
    ffi_calls,
)
from ._ports import OpKind, Status

if _NATIVE_SCHEMA_HASH != _ports.PORTS_SCHEMA_HASH:  # pragma: no cover - build mix-up
    raise ImportError(
        f"dualplane: the native module was built from port schema {_NATIVE_SCHEMA_HASH:#x} "
        f"but the Python constants are {_ports.PORTS_SCHEMA_HASH:#x}; rebuild the package"
    )

PORTS_SEMVER = _ports.PORTS_SEMVER
PORTS_SCHEMA_HASH = _ports.PORTS_SCHEMA_HASH


async def observe_async(session: Session, timeout: float | None = None):
    """`Session.observe` for asyncio: waits in a worker thread (the GIL is
    released while waiting), so the event loop keeps running."""
    return await _asyncio.to_thread(session.observe, timeout)


async def connect_async(addr: str, token: str, **kw) -> Session:
    """`connect` for asyncio."""
    return await _asyncio.to_thread(connect, addr, token, **kw)


__all__ = [
    "ColumnLease",
    "Journal",
    "OpKind",
    "PlanBuilder",
    "PlanJournal",
    "PORTS_SCHEMA_HASH",
    "PORTS_SEMVER",
    "Session",
    "Sim",
    "SimPool",
    "Status",
    "connect",
    "connect_async",
    "ffi_calls",
    "observe_async",
]
