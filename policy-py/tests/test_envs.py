"""The RL interfaces (gymnasium, PettingZoo) against their own checkers, and
a training smoke that proves the seek task is learnable and seeded."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

# The test command installs gymnasium and PettingZoo (the `rl` extra): a
# missing one fails here, it does not skip.
import gymnasium as gym
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import parallel_api_test

from dualplane.envs import NpcSeekEnv, NpcSeekParallelEnv, NpcSeekVectorEnv
from dualplane.envs.parallel import MOVES


def test_single_env_passes_gymnasium_check_env_with_render():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        check_env(gym.make("dualplane/NpcSeek-v0", max_steps=40, render_mode="rgb_array").unwrapped)
    assert not [str(w.message) for w in seen if "spec" not in str(w.message)], [str(w.message) for w in seen]
    env = NpcSeekEnv(render_mode="rgb_array")
    env.reset(seed=3)
    frame = env.render()
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8 and frame.std() > 5, "a real frame"
    assert NpcSeekEnv().render() is None
    with pytest.raises(ValueError, match="render_mode"):
        NpcSeekEnv(render_mode="human")


def test_parallel_env_passes_pettingzoo_parallel_api_test_without_warnings():
    env = NpcSeekParallelEnv(npcs=4, max_steps=200, spawn_every=30, max_spawns=3)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        parallel_api_test(env, num_cycles=300)
    assert not seen, [str(w.message) for w in seen]


def test_parallel_env_agents_shrink_on_arrival_and_grow_on_spawn():
    env = NpcSeekParallelEnv(npcs=6, max_steps=400, spawn_every=25, max_spawns=2, seed=4)
    obs, _ = env.reset(seed=4)
    assert env.agents == [f"npc_{i}" for i in range(6)]
    assert set(env.possible_agents) == {f"npc_{i}" for i in range(8)}
    sizes, arrived, ever = [], set(), set(env.agents)
    for _ in range(400):
        acts = {}
        for a in env.agents:
            rel = obs[a]["observation"][:2]
            # Greedy: the allowed move closest to the goal's direction.
            score = MOVES @ rel - (obs[a]["action_mask"] == 0) * 1e9
            acts[a] = int(np.argmax(score))
        obs, rew, term, trunc, info = env.step(acts)
        arrived |= {a for a, t in term.items() if t}
        sizes.append(len(env.agents))
        ever |= set(env.agents)
        if not env.agents:
            break
    assert max(sizes) >= 7, f"a spawned NPC joined as an agent: {sizes[:60]}"
    assert len(arrived) >= 4, f"greedy agents arrive and leave: {sorted(arrived)}"
    assert {"npc_6", "npc_7"} <= ever, f"both spawn slots joined as agents: {sorted(ever)}"
    # An arrived NPC is despawned from the world.
    left = env.sim.columns("npc")["owner"]
    assert (left == 1).sum() < 8


def test_vector_env_spaces_autoreset_and_threads_do_not_change_hashes():
    def rollout(threads):
        env = NpcSeekVectorEnv(num_envs=3, npcs=8, max_steps=20, seed=5, threads=threads)
        assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
        obs, _ = env.reset(seed=5)
        assert env.observation_space.contains(obs) and obs.shape == (3, 8, 4) and obs.dtype == np.float32
        env.action_space.seed(1)
        rewards, hashes, terms = [], [], []
        for _ in range(25):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs)
            assert not info["refused_plans"].any()
            rewards.append(r.copy())
            hashes.append(info["world_hash"].copy())
            terms.append(term | trunc)
        env.close()
        return np.array(rewards), np.array(hashes), np.array(terms)

    r1, h1, d1 = rollout(1)
    r2, h2, d2 = rollout(2)
    assert np.array_equal(r1, r2) and np.array_equal(h1, h2), "same seed and actions, 1 vs 2 threads"
    # Episodes of 20 steps: step 20 truncates, step 21 is the autoreset
    # (reward 0, the world back at its start).
    assert d1[19].all() and not d1[20].any()
    assert np.all(r1[20] == 0.0) and np.all(h1[20] != h1[19])
    # A gymnasium vector wrapper runs over it.
    env = gym.wrappers.vector.RecordEpisodeStatistics(NpcSeekVectorEnv(num_envs=2, npcs=2, max_steps=5, seed=1))
    env.reset(seed=1)
    infos = [env.step(env.action_space.sample())[-1] for _ in range(6)]
    ends = [i for i, info in enumerate(infos) if "episode" in info]
    assert ends == [4], ends  # the 5th step truncates every world
    assert np.all(infos[4]["episode"]["l"] == 5)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((2, 3, 2), np.float32))


def test_vector_env_is_made_by_gymnasium_make_vec():
    env = gym.make_vec("dualplane/NpcSeek-v0", num_envs=2, vectorization_mode="vector_entry_point", npcs=3)
    assert isinstance(env.unwrapped, NpcSeekVectorEnv) and env.num_envs == 2
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 3, 4)


def test_greedy_policy_moves_npcs_toward_the_goal():
    env = NpcSeekVectorEnv(num_envs=2, npcs=8, max_steps=400, seed=2)
    obs, _ = env.reset(seed=2)
    first = None
    for _ in range(150):
        rel = obs[..., :2]
        a = rel / np.maximum(np.linalg.norm(rel, axis=-1, keepdims=True), 1e-3)
        obs, r, *_ = env.step(a.astype(np.float32))
        first = r if first is None else first
    assert np.all(r > first), (first, r)


def _episode_return(env, policy, seed, steps):
    obs, _ = env.reset(seed=seed)
    total = np.zeros(env.num_envs)
    over = np.zeros(env.num_envs, bool)
    for _ in range(steps):
        obs, r, term, trunc, _ = env.step(policy(obs))
        total += np.where(over, 0.0, r)
        over |= term | trunc
    return float(total.mean())


def _train(seed):
    """Hill-climbing random search over a linear-tanh policy (8 weights):
    14 episodes of 150 steps on 4 worlds (8,400 env steps, 33,600 NPC
    steps). Returns (random policy's return, trained return) on a held-out
    seed, and the weights."""
    steps = 150
    env = NpcSeekVectorEnv(num_envs=4, npcs=4, max_steps=steps, seed=0, threads=2)
    rng = np.random.default_rng(seed)
    random_return = _episode_return(env, lambda o: rng.uniform(-1, 1, (4, 4, 2)).astype(np.float32), 100, steps)
    w = np.zeros((4, 2), np.float32)
    best = _episode_return(env, lambda o: np.tanh(o @ w), 1, steps)
    for _ in range(12):
        cand = (w + rng.normal(0, 0.5, (4, 2))).astype(np.float32)
        r = _episode_return(env, lambda o, c=cand: np.tanh(o @ c), 1, steps)
        if r > best:
            best, w = r, cand
    return random_return, _episode_return(env, lambda o: np.tanh(o @ w), 100, steps), w


def test_training_smoke_improves_over_random_and_is_deterministic():
    rand, trained, w = _train(0)
    print(f"seek: random policy return {rand:.1f}, trained {trained:.1f} (held-out seed)")
    assert trained > rand + 0.1 * abs(rand), (rand, trained)
    rand2, trained2, w2 = _train(0)
    assert (rand, trained) == (rand2, trained2) and np.array_equal(w, w2), "training is deterministic under a seed"
