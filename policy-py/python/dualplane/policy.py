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


#: Metres around a policy's entities that it observes (the default of
#: `run_local` and of `python -m dualplane.worker --observe-radius`).
OBSERVE_RADIUS = 8.0


@dataclass
class Observation:
    """What a policy sees at one tick: the same object in process
    (`run_local`) and remote (`python -m dualplane.worker`), built by
    `Observation.from_observed` from the dict that `Sim.observation` and
    `Session.observation` both return (one Rust function selects it).

    Every visible entity (the policy's own and those within the observe
    radius of one), sorted by handle, full precision: `handle` uint64[N],
    `archetype` uint8[N], `owner` uint32[N], `health` int32[N], `pos`
    float32[N, 3], `linvel` float32[N, 3]; `controlled` the handles it owns
    (uint64[M], sorted) and `controlled_pos` float32[M, 3]."""

    tick: int
    source_id: int
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
    #: (offsets uint32[Q+1], handles) of its overlap queries (CSR), or None.
    overlaps: tuple[np.ndarray, np.ndarray] | None = None
    owner: np.ndarray | None = None
    health: np.ndarray | None = None
    linvel: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_observed(cls, d: dict[str, Any], source_id: int, lead: int = 1, sequence: int = 0,
                      rays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                      overlaps: tuple[np.ndarray, np.ndarray] | None = None) -> "Observation":
        """The observation of `d` (a `Sim.observation` / `Session.observation` dict)."""
        mine = d["owner"] == source_id
        return cls(
            tick=int(d["tick"]), source_id=source_id, handle=d["handle"], archetype=d["archetype"], pos=d["pos"],
            controlled=np.ascontiguousarray(d["handle"][mine]), controlled_pos=d["pos"][mine], rays=rays, lead=lead,
            sequence=sequence, overlaps=overlaps, owner=d["owner"], health=d["health"], linvel=d["linvel"],
        )

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


def run_local(sim: Sim, act: Callable[[Observation], Any], source_id: int, ticks: int, lead: int = 1,
              radius: float = OBSERVE_RADIUS) -> list[Any]:
    """Drives a policy against an in-process Sim for `ticks` ticks and
    returns the journals; the policy observes what a remote worker with the
    same `radius` would. Per tick this costs 7 calls into the extension
    (observation, PlanBuilder, two op batches, step, rays, overlaps)
    however many NPCs the policy commands: the builder goes to `step`
    unbuilt."""
    journals = []
    rays = overlaps = None
    for seq in range(ticks):
        obs = Observation.from_observed(sim.observation(source_id, radius), source_id, lead, seq + 1, rays, overlaps)
        plan = act(obs)
        if plan is not None and not isinstance(plan, (PlanBuilder, bytes)):
            plan = as_plan_bytes(plan)
        journal = sim.step(plan)
        rays = journal.rays() if plan is not None else None
        overlaps = journal.overlaps(source_id) if plan is not None else None
        journals.append(journal)
    return journals
