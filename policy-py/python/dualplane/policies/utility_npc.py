"""Utility-AI NPC controller: each NPC scores two options, "seek the goal"
and "avoid what is ahead", and blends them by score.

- Seek: head for a goal point shared by the squad (changes every 5 s).
- Avoid: a raycast along the current heading (results come back as
  `obs.rays`: next tick in process, a few ticks later from a server); a
  hit closer than `AVOID_DIST` scores high and steers sideways. Until
  results arrive it falls back to repulsion from nearby visible entities.

All of it is vectorised: one move_to batch and one raycast batch per tick,
whatever the number of NPCs.
"""

import numpy as np

GOALS = np.array([[12.0, 1.0, 12.0], [-12.0, 1.0, 12.0], [-12.0, 1.0, -12.0], [12.0, 1.0, -12.0]], np.float32)
AVOID_DIST = 3.0
SPEED = 3.0
_heading = None


def act(obs):
    global _heading
    n = len(obs.controlled)
    if n == 0:
        return None
    pos = obs.controlled_pos.astype(np.float32)
    goal = GOALS[(obs.tick // 300) % len(GOALS)]
    to_goal = goal - pos
    to_goal[:, 1] = 0.0
    dist = np.linalg.norm(to_goal, axis=1, keepdims=True)
    seek = to_goal / np.maximum(dist, 1e-3)
    seek_score = np.clip(dist[:, 0] / 10.0, 0.2, 1.0)

    avoid = np.zeros_like(seek)
    avoid_score = np.zeros(n, np.float32)
    if obs.rays is not None and len(obs.rays[0]) == n and _heading is not None:
        hit, _, d = obs.rays
        close = (hit > 0) & (d < AVOID_DIST)
        # Steer perpendicular to the heading, away from the obstacle.
        side = np.stack((-_heading[:, 2], np.zeros(n, np.float32), _heading[:, 0]), axis=1)
        avoid[close] = side[close]
        avoid_score[close] = 1.0 - d[close] / AVOID_DIST
    elif len(obs.pos) > 1:
        # No ray results (remote): repulsion from nearby entities.
        d = pos[:, None, :] - obs.pos[None, :, :]
        d[:, :, 1] = 0.0
        r2 = (d * d).sum(axis=2)
        r2[r2 < 1e-6] = np.inf
        near = r2 < AVOID_DIST**2
        push = (d / r2[:, :, None] * near[:, :, None]).sum(axis=1)
        norm = np.linalg.norm(push, axis=1, keepdims=True)
        avoid = push / np.maximum(norm, 1e-6)
        avoid_score = np.clip(norm[:, 0], 0.0, 1.0).astype(np.float32)

    w = avoid_score[:, None]
    heading = seek * (1.0 - w) * seek_score[:, None] + avoid * w
    heading /= np.maximum(np.linalg.norm(heading, axis=1, keepdims=True), 1e-6)
    _heading = heading.astype(np.float32)
    targets = (pos + _heading * 2.0).astype(np.float32)
    origins = (pos + np.array([0.0, 0.2, 0.0], np.float32) + _heading * 0.6).astype(np.float32)
    b = obs.plan()
    b.move_to(obs.controlled, targets, SPEED)
    b.raycast(origins, _heading, AVOID_DIST)
    return b
