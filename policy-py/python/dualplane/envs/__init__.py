"""Reinforcement-learning environments over dualplane worlds (the optional
extra `rl`: `pip install ./policy-py[rl]` brings gymnasium and PettingZoo;
the core package needs only numpy).

- `NpcSeekEnv`: a `gymnasium.Env`, one NPC seeking a goal.
- `NpcSeekVectorEnv`: a `gymnasium.vector.VectorEnv`, many worlds of many
  NPCs stepped together in Rust (`SimPool`).
- `NpcSeekParallelEnv`: a PettingZoo `ParallelEnv`, one agent per NPC.

Each is imported on first use, so `dualplane.envs.NpcSeekEnv` needs only
gymnasium and `NpcSeekParallelEnv` also PettingZoo.
"""

from __future__ import annotations

from importlib import import_module

from ..scenarios import npc_arena

_WHERE = {"NpcSeekEnv": "gym", "NpcSeekVectorEnv": "gym", "NpcSeekParallelEnv": "parallel", "SeekTask": "seek"}

__all__ = ["NpcSeekEnv", "NpcSeekParallelEnv", "NpcSeekVectorEnv", "SeekTask", "npc_arena"]


def __getattr__(name: str):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'dualplane.envs' has no attribute {name!r}; expected one of {sorted(_WHERE)}")
    try:
        return getattr(import_module(f".{mod}", __name__), name)
    except ImportError as e:
        raise ImportError(f"dualplane.envs.{name} needs the `rl` extra (pip install './policy-py[rl]'): {e}") from e
