"""Scenario TOML for the in-process tasks (numpy-free, gymnasium-free)."""

from __future__ import annotations


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
