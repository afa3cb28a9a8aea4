"""The seek task, batched over a `SimPool`: NPCs granted to an agent are
steered toward a goal; the environments in this package are views of it.

Per world: `npcs` NPCs owned by `AGENT_SOURCE`, a goal on the ground drawn
from the task's RNG, and per NPC the observation (goal - position in x and
z, velocity in x and z). An action is a horizontal direction per NPC in
[-1, 1]^2, applied as a move_to one second ahead at `max_speed` times its
length (`SimPool.step_move`). Reward: minus the mean distance to the goal,
over ten; a world terminates when every NPC is within `REACH` metres of its
goal and truncates after `max_steps` steps.

Everything is deterministic: the same seed and actions give the same
observations, rewards and world hashes, for any thread count.
"""

from __future__ import annotations

import numpy as np

from .._native import SimPool
from ..scenarios import npc_arena

#: The source id the agent's plans carry (NPCs are granted to it).
AGENT_SOURCE = 1
#: Columns observed per NPC, in order (goal-relative x, z come from the first two).
COLUMNS = ["pos_x", "pos_z", "linvel_x", "linvel_z"]
#: Metres from the goal that count as arrived.
REACH = 1.5
#: Observation bounds: the arena is +-HALF_EXTENT m, speeds are a few m/s.
HALF_EXTENT = 20.0
OBS_LIMIT = 50.0
#: Goals are drawn from +-GOAL_EXTENT m.
GOAL_EXTENT = 12.0


class SeekTask:
    """`num_worlds` seek worlds in one `SimPool`."""

    def __init__(self, num_worlds: int, npcs: int, max_steps: int, max_speed: float, seed: int, threads: int | None):
        if npcs < 1 or num_worlds < 1 or max_steps < 1:
            raise ValueError(f"npcs, num_worlds and max_steps must be >= 1 (got {npcs}, {num_worlds}, {max_steps})")
        self.num_worlds, self.npcs, self.max_steps, self.max_speed = num_worlds, npcs, max_steps, float(max_speed)
        self.threads = threads
        self.text = npc_arena(npcs, half_extent=HALF_EXTENT)
        self.goals = np.zeros((num_worlds, 2), np.float32)
        self.steps = np.zeros(num_worlds, np.int64)
        self.seed = None
        self.rebuild(seed)

    def rebuild(self, seed: int) -> None:
        """New worlds from `seed` (world i: seed + i) and a new goal RNG."""
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.pool = SimPool.from_toml(self.text, self.num_worlds, seed=self.seed, threads=self.threads)
        granted = self.pool.grant(AGENT_SOURCE, count=self.npcs)
        if not np.all(granted == self.npcs):
            raise RuntimeError(f"seek: expected {self.npcs} NPCs per world, granted {granted.tolist()}")
        self.pool.mark_start()

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Restores the worlds in `mask` (all when None) and draws their goals."""
        mask = np.ones(self.num_worlds, bool) if mask is None else np.asarray(mask, bool)
        if not mask.any():
            return
        self.pool.reset(None if mask.all() else mask.tolist())
        self.goals[mask] = self.rng.uniform(-GOAL_EXTENT, GOAL_EXTENT, size=(int(mask.sum()), 2)).astype(np.float32)
        self.steps[mask] = 0

    def observe(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(obs float32[n, npcs, 4], distance float32[n, npcs], valid bool[n, npcs], handles uint64[n, npcs])."""
        vals, handles, valid = self.pool.observe(COLUMNS, source=AGENT_SOURCE, rows=self.npcs)
        rel = self.goals[:, None, :] - vals[..., :2]
        obs = np.concatenate((rel, vals[..., 2:4]), axis=-1)
        np.clip(obs, -OBS_LIMIT, OBS_LIMIT, out=obs)
        obs[~valid] = 0.0
        dist = np.linalg.norm(rel, axis=-1).astype(np.float32)
        dist[~valid] = 0.0
        return obs, dist, valid, handles

    def act(self, actions: np.ndarray) -> np.ndarray:
        """Steps every world with directions float32[n, npcs, 2] (clipped to
        [-1, 1]); returns the refused plans per world."""
        a = np.clip(np.asarray(actions, np.float32), -1.0, 1.0)
        a = np.nan_to_num(a, nan=0.0)
        refused = self.pool.step_move(np.ascontiguousarray(a), AGENT_SOURCE, self.max_speed)
        self.steps += 1
        return refused

    def score(self, dist: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reward float32[n], terminated bool[n], truncated bool[n])."""
        alive = valid.sum(axis=1)
        mean = np.where(alive > 0, dist.sum(axis=1) / np.maximum(alive, 1), 0.0)
        reward = (-mean / 10.0).astype(np.float32)
        terminated = np.all((dist < REACH) | ~valid, axis=1)
        truncated = (self.steps >= self.max_steps) & ~terminated
        return reward, terminated, truncated
