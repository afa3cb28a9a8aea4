"""The policy interface, its loader, and the in-process driver.

A policy is a Python file that defines::

    def act(obs: Observation) -> PlanBuilder | bytes | None

called once per observed tick. It reads numpy arrays from `obs` and answers
with one plan built from batches (see `Observation.plan()`), or None to do
nothing this tick. Raycasts it adds come back as `obs.rays` on the next
call. A policy may also define `setup(info: dict) -> None`.

Policies are loaded with an import allowlist (`load_policy`): a second line
of defence behind the worker's process sandbox (`dualplane.worker`).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._native import PlanBuilder, Sim

#: Top-level modules a policy may import.
ALLOWED_IMPORTS = frozenset(
    {
        "__future__",
        "bisect",
        "collections",
        "dataclasses",
        "dualplane",
        "enum",
        "functools",
        "heapq",
        "itertools",
        "math",
        "numpy",
        "operator",
        "random",
        "statistics",
        "typing",
    }
)

#: Builtins a policy does not get.
REMOVED_BUILTINS = ("open", "input", "breakpoint", "exit", "quit", "help", "compile")


@dataclass
class Observation:
    """What a policy sees at one tick."""

    tick: int
    source_id: int
    #: Every visible entity (sorted by handle for remote sessions).
    handle: np.ndarray
    archetype: np.ndarray
    pos: np.ndarray
    #: The handles this policy may command, and their positions.
    controlled: np.ndarray
    controlled_pos: np.ndarray
    #: (hit, handle, distance) of this policy's raycasts last tick, or None.
    rays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    #: Plans target `tick + lead`.
    lead: int = 1
    sequence: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def plan(self) -> PlanBuilder:
        """A builder for this tick's plan (target tick, source, sequence and
        the observed tick as correlation id, which the server uses to
        measure policy latency)."""
        return PlanBuilder(self.tick + self.lead, self.source_id, self.sequence, self.tick)


class PolicyImportError(ImportError):
    pass


def _guarded_import(allowed: frozenset[str]) -> Callable[..., Any]:
    real = builtins.__import__

    def guarded(name, globals=None, locals=None, fromlist=(), level=0):
        top = name.partition(".")[0]
        if level != 0 or top not in allowed:
            raise PolicyImportError(f"policy may not import {name!r} (allowed: {', '.join(sorted(allowed))})")
        return real(name, globals, locals, fromlist, level)

    return guarded


def load_policy(path: str | Path, allowed: frozenset[str] = ALLOWED_IMPORTS) -> dict[str, Any]:
    """Executes a policy file in a fresh namespace whose imports are limited
    to `allowed` and without file or console builtins; returns the
    namespace. Raises PolicyImportError / SyntaxError / whatever the module
    raises, and ValueError when it defines no `act`."""
    path = Path(path)
    return load_policy_source(path.read_text(), str(path), allowed)


def load_policy_source(src: str, filename: str = "<policy>", allowed: frozenset[str] = ALLOWED_IMPORTS) -> dict[str, Any]:
    """`load_policy` from source text (the worker's child gets the source
    over its pipe and never opens the file)."""
    safe = {k: v for k, v in vars(builtins).items() if k not in REMOVED_BUILTINS}
    safe["__import__"] = _guarded_import(allowed)
    stem = Path(filename).stem.replace("-", "_") or "policy"
    ns: dict[str, Any] = {"__builtins__": safe, "__name__": f"dualplane_policy_{stem}", "__file__": filename}
    exec(builtins.compile(src, filename, "exec"), ns)  # noqa: S102 - sandboxed by design
    if not callable(ns.get("act")):
        raise ValueError(f"{filename}: a policy must define act(obs)")
    return ns


def as_plan_bytes(result: Any) -> bytes | None:
    """What `act` returned, as plan bytes."""
    if result is None:
        return None
    if isinstance(result, PlanBuilder):
        return result.build()
    if isinstance(result, (bytes, bytearray)):
        return bytes(result)
    raise TypeError(f"act() must return a PlanBuilder, bytes or None, not {type(result).__name__}")


def grant_npcs(sim: Sim, source_id: int, count: int | None = None) -> np.ndarray:
    """Hands server-owned NPCs to `source_id` (an authority plan applied at
    the next tick) and returns their handles."""
    npc = sim.columns("npc")
    free = npc["handle"][npc["owner"] == 0]
    if count is not None:
        free = free[:count]
    free = np.ascontiguousarray(free)
    plan = PlanBuilder(sim.tick + 1, 0, 0).grant(free, source_id).build()
    sim.step(plan)
    return free


def run_local(sim: Sim, act: Callable[[Observation], Any], source_id: int, ticks: int, lead: int = 1) -> list[Any]:
    """Drives a policy against an in-process Sim for `ticks` ticks and
    returns the journals. Per tick this costs 7 calls into the extension
    (columns, PlanBuilder, two op batches, step, tick, rays) however many
    NPCs the policy commands: the builder goes to `step` unbuilt."""
    journals = []
    rays = None
    tick = sim.tick
    for seq in range(ticks):
        npc = sim.columns("npc")
        pos = np.stack((npc["pos_x"], npc["pos_y"], npc["pos_z"]), axis=1)
        mine = npc["owner"] == source_id
        obs = Observation(
            tick=tick,
            source_id=source_id,
            handle=npc["handle"],
            archetype=np.ones(len(npc["handle"]), np.uint8),
            pos=pos,
            controlled=np.ascontiguousarray(npc["handle"][mine]),
            controlled_pos=pos[mine],
            rays=rays,
            lead=lead,
            sequence=seq + 1,
        )
        plan = act(obs)
        if plan is not None and not isinstance(plan, (PlanBuilder, bytes)):
            plan = as_plan_bytes(plan)
        journal = sim.step(plan)
        tick = journal.tick
        rays = journal.rays() if plan is not None else None
        journals.append(journal)
    return journals
