"""Random walk: every NPC this policy controls heads for a random point
near where it stands, re-drawn now and then. Deterministic per seed."""

import numpy as np

_rng = np.random.default_rng(7)
_targets = None


def act(obs):
    global _targets
    n = len(obs.controlled)
    if n == 0:
        return None
    if _targets is None or len(_targets) != n or obs.tick % 60 == 0:
        step = _rng.uniform(-4.0, 4.0, size=(n, 3)).astype(np.float32)
        step[:, 1] = 0.0
        _targets = (obs.controlled_pos + step).astype(np.float32)
    return obs.plan().move_to(obs.controlled, _targets, 2.0)
