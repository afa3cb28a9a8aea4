"""`NpcSeekParallelEnv`: the seek task as a PettingZoo `ParallelEnv`, one
agent per NPC, in one in-process world.

Each agent (`npc_<slot>`) observes `{"observation": float32[4] (goal -
position in x, z; velocity in x, z), "action_mask": int8[9]}` and picks one
of 9 moves: 0 stay, 1..8 the compass directions (E, NE, N, NW, W, SW, S,
SE in the x-z plane). The mask forbids moves into a wall (within
`WALL_MARGIN` m of it). Reward per step: the metres it closed on the goal,
plus 1 on arrival (within `REACH` m), when it terminates and its NPC is
despawned. Every `spawn_every` steps a new NPC spawns (up to `max_spawns`
per episode) and joins as a new agent, so `agents` shrinks as NPCs arrive
and grows as they spawn; `possible_agents` names every slot. All agents
truncate after `max_steps`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from .._native import PlanBuilder, Sim
from ..policy import grant_npcs
from ..scenarios import npc_arena
from .seek import AGENT_SOURCE, GOAL_EXTENT, HALF_EXTENT, OBS_LIMIT, REACH

#: Unit directions of the 9 moves (x, z).
MOVES = np.array([[0.0, 0.0]] + [[np.cos(a), np.sin(a)] for a in np.arange(8) * (np.pi / 4)], np.float32)
#: Moves toward a wall are masked within this many metres of it.
WALL_MARGIN = 2.0
#: The NPC shape index in the arena scenario (its only shape).
NPC_SHAPE = 0


class NpcSeekParallelEnv(ParallelEnv):
    metadata = {"name": "dualplane_npc_seek_v0", "render_modes": []}

    def __init__(self, npcs: int = 8, max_steps: int = 300, max_speed: float = 3.0, spawn_every: int = 40,
                 max_spawns: int = 4, seed: int = 0):
        self.npcs, self.max_steps, self.max_speed = npcs, max_steps, float(max_speed)
        self.spawn_every, self.max_spawns = spawn_every, max_spawns
        self.render_mode = None
        self.possible_agents = [f"npc_{i}" for i in range(npcs + max_spawns)]
        self._obs_space = spaces.Dict({
            "observation": spaces.Box(-OBS_LIMIT, OBS_LIMIT, shape=(4,), dtype=np.float32),
            "action_mask": spaces.Box(0, 1, shape=(len(MOVES),), dtype=np.int8),
        })
        self._act_space = spaces.Discrete(len(MOVES))
        self._text = npc_arena(npcs, half_extent=HALF_EXTENT)
        self._build(seed)

    def _build(self, seed: int) -> None:
        self._seed = int(seed)
        self.sim = Sim.from_toml(self._text, seed=self._seed)
        grant_npcs(self.sim, AGENT_SOURCE, self.npcs)
        self._start = self.sim.snapshot()
        self._rng = np.random.default_rng(self._seed)

    @functools.lru_cache(maxsize=None)  # noqa: B019 - PettingZoo wants the same object per agent
    def observation_space(self, agent: str) -> spaces.Dict:
        return self._obs_space

    @functools.lru_cache(maxsize=None)  # noqa: B019
    def action_space(self, agent: str) -> spaces.Discrete:
        return self._act_space

    def _mine(self) -> dict[int, np.ndarray]:
        """handle -> (x, z, vx, vz) of the NPCs the agent owns."""
        c = self.sim.columns("npc")
        rows = np.flatnonzero(c["owner"] == AGENT_SOURCE)
        cols = np.stack((c["pos_x"], c["pos_z"], c["linvel_x"], c["linvel_z"]), axis=1)
        return {int(c["handle"][r]): cols[r].copy() for r in rows}

    def _observe(self) -> tuple[dict[str, Any], dict[str, float]]:
        state = self._mine()
        obs, dist = {}, {}
        for agent in self.agents:
            s = state.get(self._handle[agent])
            if s is None:  # gone from the world (cannot happen in this arena; kept honest)
                s = np.zeros(4, np.float32)
            rel = self._goal - s[:2]
            mask = np.ones(len(MOVES), np.int8)
            for m, d in enumerate(MOVES):
                nxt = s[:2] + d * WALL_MARGIN
                if m and np.any(np.abs(nxt) > HALF_EXTENT - 0.5):
                    mask[m] = 0
            o = np.clip(np.concatenate((rel, s[2:])), -OBS_LIMIT, OBS_LIMIT).astype(np.float32)
            obs[agent] = {"observation": o, "action_mask": mask}
            dist[agent] = float(np.linalg.norm(rel))
        return obs, dist

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._build(seed)
        self.sim.restore(self._start)
        handles = sorted(self._mine())
        self.agents = [f"npc_{i}" for i in range(len(handles))]
        self._handle = dict(zip(self.agents, handles))
        self._spawned, self._steps, self._despawn = 0, 0, []
        self._goal = self._rng.uniform(-GOAL_EXTENT, GOAL_EXTENT, size=2).astype(np.float32)
        obs, self._dist = self._observe()
        return obs, {a: {"distance": self._dist[a]} for a in self.agents}

    def step(self, actions: dict[str, int]):
        state = self._mine()
        pb = PlanBuilder(self.sim.tick + 1, AGENT_SOURCE)
        movers = [a for a in self.agents if a in actions]
        if movers:
            for a in movers:
                m = int(actions[a])
                if not 0 <= m < len(MOVES):
                    raise ValueError(f"agent {a}: action {m} out of range; expected 0..{len(MOVES) - 1}")
            h = np.array([self._handle[a] for a in movers], np.uint64)
            d = MOVES[[int(actions[a]) for a in movers]]
            pos = np.array([state[self._handle[a]][:2] for a in movers], np.float32)
            tgt = pos + d * self.max_speed
            targets = np.stack((tgt[:, 0], np.ones(len(movers), np.float32), tgt[:, 1]), axis=1).astype(np.float32)
            pb.move_to(h, targets, np.float32(self.max_speed))
        if self._despawn:
            pb.despawn(np.array(self._despawn, np.uint64))
            self._despawn = []
        spawning = self.spawn_every > 0 and self._spawned < self.max_spawns and (self._steps + 1) % self.spawn_every == 0
        if spawning:
            xz = self._rng.uniform(-GOAL_EXTENT, GOAL_EXTENT, size=2)
            while np.linalg.norm(xz - self._goal) < 4.0 * REACH:  # joins, then seeks: never born arrived
                xz = self._rng.uniform(-GOAL_EXTENT, GOAL_EXTENT, size=2)
            pb.spawn(np.array([1], np.uint32), np.array([NPC_SHAPE], np.uint32), np.array([[xz[0], 1.0, xz[1]]], np.float32))
        j = self.sim.step(pb if len(pb) else None)
        self._steps += 1
        if spawning:
            born = j.plans[0].spawned if j.plans else np.zeros(0, np.uint64)
            for h in born.tolist():
                agent = f"npc_{self.npcs + self._spawned}"
                self._spawned += 1
                self.agents.append(agent)
                self._handle[agent] = int(h)
        before = self._dist
        obs, dist = self._observe()
        rewards, terms, truncs, infos = {}, {}, {}, {}
        truncate = self._steps >= self.max_steps
        for a in self.agents:
            arrived = dist[a] < REACH
            rewards[a] = float(before.get(a, dist[a]) - dist[a]) + (1.0 if arrived else 0.0)
            terms[a] = bool(arrived)
            truncs[a] = bool(truncate and not arrived)
            infos[a] = {"distance": dist[a], "world_hash": j.world_hash}
            if arrived:
                self._despawn.append(self._handle[a])
        self._dist = dist
        self.agents = [a for a in self.agents if not (terms[a] or truncs[a])]
        return obs, rewards, terms, truncs, infos

    def render(self):
        return None

    def close(self):
        pass
