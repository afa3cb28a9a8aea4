"""Random walk: every NPC this policy controls heads for a random point
near where it stands, re-drawn now and then, never beyond 25 m of the
centre (the default arenas are 30 m: an NPC walked off the edge falls and
is despawned, and a plan naming it is refused whole). Deterministic per
seed."""

import numpy as np

_rng = np.random.default_rng(7)
_targets = None
_BOUND = 25.0


def act(obs):
    global _targets
    n = len(obs.controlled)
    if n == 0:
        return None
    if _targets is None or len(_targets) != n or obs.tick % 60 == 0:
        step = _rng.uniform(-4.0, 4.0, size=(n, 3)).astype(np.float32)
        step[:, 1] = 0.0
        _targets = np.clip(obs.controlled_pos + step, -_BOUND, _BOUND).astype(np.float32)
        _targets[:, 1] = obs.controlled_pos[:, 1]
    return obs.plan().move_to(obs.controlled, _targets, 2.0)
