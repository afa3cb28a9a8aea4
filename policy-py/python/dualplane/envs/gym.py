"""Gymnasium environments over the seek task (`seek.py`).

- `NpcSeekEnv`: a `gymnasium.Env` steering one NPC to a goal.
- `NpcSeekVectorEnv`: a `gymnasium.vector.VectorEnv` of `num_envs` worlds
  with `npcs` NPCs each, stepped together in Rust on a thread pool
  (`SimPool`), with next-step autoreset.

    env = NpcSeekVectorEnv(num_envs=8, npcs=16)
    obs, info = env.reset(seed=0)                     # (8, 16, 4) float32
    obs, rew, term, trunc, info = env.step(env.action_space.sample())

`render()` (with `render_mode="rgb_array"`) returns a uint8[H, W, 3] frame
of the world from the offscreen renderer (Mesa lavapipe on CPU, or a GPU).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .seek import OBS_LIMIT, SeekTask

RENDER_SIZE = (320, 240)


def _obs_space(shape: tuple[int, ...]) -> spaces.Box:
    return spaces.Box(-OBS_LIMIT, OBS_LIMIT, shape=shape, dtype=np.float32)


def _act_space(shape: tuple[int, ...]) -> spaces.Box:
    return spaces.Box(-1.0, 1.0, shape=shape, dtype=np.float32)


def _check_render_mode(mode: str | None, modes: list[str]) -> str | None:
    if mode is not None and mode not in modes:
        raise ValueError(f"render_mode {mode!r} is not supported; expected None or one of {modes}")
    return mode


class NpcSeekEnv(gym.Env):
    """One NPC, one goal: observation float32[4] (goal - position in x, z;
    velocity in x, z), action float32[2] in [-1, 1] (a direction)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 60}

    def __init__(self, max_steps: int = 300, max_speed: float = 4.0, seed: int = 0, render_mode: str | None = None):
        super().__init__()
        self.render_mode = _check_render_mode(render_mode, self.metadata["render_modes"])
        self.task = SeekTask(1, 1, max_steps, max_speed, seed, threads=1)
        self.observation_space = _obs_space((4,))
        self.action_space = _act_space((2,))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.task.rebuild(seed)
        self.task.reset()
        obs, dist, _, _ = self.task.observe()
        return obs[0, 0].copy(), {"distance": float(dist[0, 0]), "goal": self.task.goals[0].copy()}

    def step(self, action):
        a = np.asarray(action, np.float32).reshape(1, 1, 2)
        refused = self.task.act(a)
        obs, dist, valid, _ = self.task.observe()
        reward, term, trunc = self.task.score(dist, valid)
        info = {"distance": float(dist[0, 0]), "world_hash": int(self.task.pool.world_hashes()[0]), "refused_plans": int(refused[0])}
        return obs[0, 0].copy(), float(reward[0]), bool(term[0]), bool(trunc[0]), info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self.task.pool.render(0, *RENDER_SIZE)


class NpcSeekVectorEnv(VectorEnv):
    """`num_envs` worlds of `npcs` NPCs: observation float32[num_envs, npcs,
    4], action float32[num_envs, npcs, 2]. `threads`: the pool's threads
    (default: the cores available)."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["rgb_array"], "render_fps": 60}

    def __init__(self, num_envs: int = 4, npcs: int = 16, max_steps: int = 300, max_speed: float = 4.0, seed: int = 0,
                 threads: int | None = None, render_mode: str | None = None):
        self.num_envs = num_envs
        self.npcs = npcs
        self.render_mode = _check_render_mode(render_mode, self.metadata["render_modes"])
        self.task = SeekTask(num_envs, npcs, max_steps, max_speed, seed, threads)
        self.single_observation_space = _obs_space((npcs, 4))
        self.single_action_space = _act_space((npcs, 2))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._autoreset = np.zeros(num_envs, bool)

    @property
    def pool(self):
        """The `SimPool` the worlds live in."""
        return self.task.pool

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
            self.task.rebuild(seed)
        self.task.reset()
        self._autoreset[:] = False
        obs, dist, _, _ = self.task.observe()
        return obs, {"goal": self.task.goals.copy(), "distance": dist}

    def step(self, actions):
        actions = np.asarray(actions, np.float32)
        want = (self.num_envs, self.npcs, 2)
        if actions.shape != want:
            raise ValueError(f"actions must have shape {want}, got {actions.shape}")
        refused = self.task.act(actions)
        obs, dist, valid, _ = self.task.observe()
        reward, term, trunc = self.task.score(dist, valid)
        done = self._autoreset
        if done.any():
            # Next-step autoreset: the worlds that ended last step start a
            # new episode now (this step's action for them is ignored).
            self.task.reset(done)
            obs2, dist2, _, _ = self.task.observe()
            obs[done], dist[done] = obs2[done], dist2[done]
            reward[done], term[done], trunc[done] = 0.0, False, False
        self._autoreset = term | trunc
        info = {"world_hash": self.task.pool.world_hashes(), "goal": self.task.goals.copy(), "distance": dist, "refused_plans": refused}
        return obs, reward, term, trunc, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return tuple(self.task.pool.render(i, *RENDER_SIZE) for i in range(self.num_envs))

    def close_extras(self, **kwargs):
        self.task = None


def _register() -> None:
    """`gymnasium.make("dualplane/NpcSeek-v0")` and
    `gymnasium.make_vec("dualplane/NpcSeek-v0", num_envs=8)` (the vector
    entry point is the pooled `NpcSeekVectorEnv`)."""
    if "dualplane/NpcSeek-v0" not in gym.registry:
        gym.register(id="dualplane/NpcSeek-v0", entry_point=f"{__name__}:NpcSeekEnv",
                     vector_entry_point=f"{__name__}:NpcSeekVectorEnv", max_episode_steps=None)


_register()
