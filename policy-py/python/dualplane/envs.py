"""A Gymnasium-style vector environment over in-process `Sim`s, for RL.

`NpcSeekVectorEnv(num_envs, npcs)`: each sub-env is an arena with `npcs`
NPCs granted to the agent; every step the agent gives each NPC a desired
horizontal velocity and is rewarded for bringing the squad closer to a goal.
The API follows `gymnasium.vector.VectorEnv` (batched numpy `reset` /
`step`, next-step autoreset) without depending on gymnasium.

    env = NpcSeekVectorEnv(num_envs=8, npcs=16, seed=0)
    obs, info = env.reset(seed=0)                 # (8, 16, 4) float32
    obs, rew, term, trunc, info = env.step(env.action_space_sample())

Everything is deterministic: same seed, same actions -> same observations,
rewards and world hashes (`info["world_hash"]`).
"""

from __future__ import annotations

import numpy as np

from ._native import PlanBuilder, Sim
from .policy import grant_npcs

AGENT_SOURCE = 1


def npc_arena(npcs: int, half_extent: float = 20.0, seed: int = 1) -> str:
    """Scenario TOML: a flat walled arena with `npcs` NPCs and no props."""
    radius = max(2.0, min(half_extent - 2.0, 1.0 + (npcs**0.5) * 0.8))
    return f"""
name = "npc-arena-{npcs}"
seed = {seed}
tick_rate = 60
[arena]
half_extents = [{half_extent}, {half_extent}]
kill_y = -10.0
ground = true
wall_height = 2.0
[[shapes]]
name = "npc"
kind = "capsule"
half_height = 0.6
radius = 0.4
[[npcs]]
shape = "npc"
count = {npcs}
radius = {radius}
height = 1.0
speed = 2.5
wander_radius = {half_extent - 2.0}
"""


class NpcSeekVectorEnv:
    metadata = {"autoreset_mode": "NextStep"}

    def __init__(self, num_envs: int = 4, npcs: int = 16, max_steps: int = 300, max_speed: float = 4.0, seed: int = 0):
        self.num_envs = num_envs
        self.npcs = npcs
        self.max_steps = max_steps
        self.max_speed = max_speed
        self._text = npc_arena(npcs)
        template = Sim.from_toml(self._text, seed=seed)
        grant_npcs(template, AGENT_SOURCE)
        self._start = template.snapshot()
        self.sims = [Sim.from_toml(self._text, seed=seed) for _ in range(num_envs)]
        self.goals = np.zeros((num_envs, 3), np.float32)
        self.steps = np.zeros(num_envs, np.int64)
        self._rng = np.random.default_rng(seed)
        self._needs_reset = np.zeros(num_envs, bool)
        self.single_observation_shape = (npcs, 4)
        self.single_action_shape = (npcs, 2)

    def action_space_sample(self) -> np.ndarray:
        return self._rng.uniform(-1.0, 1.0, size=(self.num_envs, *self.single_action_shape)).astype(np.float32)

    def _reset_one(self, i: int) -> None:
        self.sims[i].restore(self._start)
        g = self._rng.uniform(-12.0, 12.0, size=2)
        self.goals[i] = (g[0], 1.0, g[1])
        self.steps[i] = 0

    def _obs_one(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.sims[i].columns("npc")
        pos = np.stack((c["pos_x"], c["pos_y"], c["pos_z"]), axis=1)
        rel = (pos - self.goals[i])[:, [0, 2]]
        vel = np.stack((c["linvel_x"], c["linvel_z"]), axis=1)
        return np.concatenate((rel, vel), axis=1).astype(np.float32), c["handle"], pos

    def reset(self, seed: int | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        for i in range(self.num_envs):
            self._reset_one(i)
        self._needs_reset[:] = False
        obs = np.stack([self._obs_one(i)[0] for i in range(self.num_envs)])
        return obs, {"goal": self.goals.copy()}

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions, np.float32)
        if actions.shape != (self.num_envs, *self.single_action_shape):
            raise ValueError(f"actions must have shape {(self.num_envs, *self.single_action_shape)}, got {actions.shape}")
        obs = np.zeros((self.num_envs, *self.single_observation_shape), np.float32)
        reward = np.zeros(self.num_envs, np.float32)
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        hashes = np.zeros(self.num_envs, np.uint64)
        for i, sim in enumerate(self.sims):
            if self._needs_reset[i]:
                self._reset_one(i)
                self._needs_reset[i] = False
                obs[i] = self._obs_one(i)[0]
                hashes[i] = sim.world_hash()
                continue
            _, handles, pos = self._obs_one(i)
            a = np.clip(actions[i], -1.0, 1.0) * self.max_speed
            targets = pos.copy()
            targets[:, 0] += a[:, 0]
            targets[:, 2] += a[:, 1]
            speed = np.maximum(np.linalg.norm(a, axis=1), 1e-3).astype(np.float32)
            plan = PlanBuilder(sim.tick + 1, AGENT_SOURCE).move_to(np.ascontiguousarray(handles), targets.astype(np.float32), speed).build()
            j = sim.step(plan)
            self.steps[i] += 1
            o, _, pos = self._obs_one(i)
            obs[i] = o
            dist = np.linalg.norm((pos - self.goals[i])[:, [0, 2]], axis=1)
            reward[i] = -float(dist.mean()) / 10.0
            terminated[i] = bool((dist < 1.5).all())
            truncated[i] = self.steps[i] >= self.max_steps
            self._needs_reset[i] = terminated[i] or truncated[i]
            hashes[i] = j.world_hash
        return obs, reward, terminated, truncated, {"world_hash": hashes, "goal": self.goals.copy()}
