"""Behaviour graphs (FaaDG v1): policies as data, run inside the tick.

A graph is built here as Python expressions and encoded to bytes; sim-core
validates those bytes (types, arity, order, caps, constants, cost) and runs
the graph once per tick for every NPC bound to it, batched, with no Python
in the loop. Upload and bind with a plan:

>>> import dualplane, dualplane.graph as dg
>>> g = dg.Graph()
>>> pos = g.pos()
>>> goal = g.vector(5.0, 1.0, 0.0)
>>> g.move_to(goal, 3.0, enable=(goal - pos).length() > 0.5)
>>> data = g.build()
>>> sim = dualplane.Sim()
>>> npcs = sim.handles("npc")
>>> plan = dualplane.PlanBuilder(sim.tick + 1, 0).graph_upload(data).graph_bind(npcs, dg.graph_hash(data))
>>> sim.step(plan).plans[0].status
<Status.OK: 0>

Values are scalars (`S`, float32), vectors (`V`, float32 x 3) and booleans
(`B`). Python operators build nodes: `+ - * /` on same-typed values (with a
Python number promoted to a constant), `vector * scalar` scales, `< >`
compare scalars, `& | ~` combine booleans. Arithmetic is IEEE basic
operations and sqrt only, so a graph gives the same bits everywhere.
Every node kind and its exact meaning: `node_kinds()`.
"""

from __future__ import annotations

import struct
from typing import Sequence

from . import _native
from ._ports import Archetype

NONE = 0xFFFF
S, V, B = "S", "V", "B"

# Output types of the value nodes whose type does not follow their input.
_FIXED = {
    "pos": V, "vel": V, "health": S, "target": V, "tick_phase": S, "state": V, "ray": S,
    "push": V, "nearest": V, "count": S, "scalar": S, "vector": V, "table": V, "curve": S,
    "scale": V, "dot": S, "length": S, "normalize": V, "x": S, "y": S, "z": S, "vec": V,
    "lt": B, "gt": B, "and": B, "or": B, "not": B, "argmax": S,
}
_ACTIONS = ("move_to", "set_velocity", "impulse", "store")


def _bits(c: float) -> bytes:
    """A constant's identity for sharing nodes: its float64 bits (0.0 and
    -0.0 are different constants: x / -0.0 is -inf)."""
    return struct.pack("<d", float(c))


def graph_hash(data: bytes) -> int:
    """The graph's name (xxh3-64 of its bytes), what `PlanBuilder.graph_bind` takes."""
    return _native.graph_hash(data)


def describe(data: bytes) -> str:
    """The listing `dualplane graph inspect` prints (validates first)."""
    return _native.graph_describe(data)


def cost(data: bytes) -> int:
    """Static cost per NPC per tick, milli-units (what binds are budgeted by)."""
    return _native.graph_cost(data)


def node_kinds() -> list[tuple[int, str, str]]:
    """Every node kind: (code, name, meaning)."""
    return _native.graph_node_kinds()


def mask(*archetypes: str | int) -> int:
    """An archetype bit mask for `push`, `nearest` and `count` (no names: all)."""
    m = 0
    for a in archetypes:
        code = Archetype[a.upper()] if isinstance(a, str) else Archetype(a)
        m |= 1 << int(code)
    return m


class Value:
    """One value-producing node of a `Graph`."""

    __slots__ = ("graph", "index", "ty")

    def __init__(self, graph: Graph, index: int, ty: str):
        self.graph, self.index, self.ty = graph, index, ty

    def __repr__(self) -> str:
        return f"Value(#{self.index} {self.graph._nodes[self.index][0]} -> {self.ty})"

    def _other(self, o: Value | float | Sequence[float], like: str | None = None) -> Value:
        return self.graph._lift(o, like or self.ty)

    def _same(self, op: str, o: Value | float | Sequence[float]) -> Value:
        other = self._other(o)
        if other.ty != self.ty or self.ty == B:
            raise TypeError(f"{op}: needs two scalars or two vectors; got {self.ty} and {other.ty}")
        return self.graph._node(op, (self, other), ty=self.ty)

    def __add__(self, o):
        return self._same("add", o)

    def __radd__(self, o):
        return self._other(o)._same("add", self)

    def __sub__(self, o):
        return self._same("sub", o)

    def __rsub__(self, o):
        return self._other(o)._same("sub", self)

    def __mul__(self, o):
        if isinstance(o, (int, float)) and self.ty == V:
            o = self.graph.scalar(float(o))
        if isinstance(o, Value) and {self.ty, o.ty} == {V, S}:
            v, s = (self, o) if self.ty == V else (o, self)
            return self.graph._node("scale", (v, s))
        return self._same("mul", o)

    def __rmul__(self, o):
        return self.__mul__(o)

    def __truediv__(self, o):
        return self._same("div", o)

    def __rtruediv__(self, o):
        return self._other(o)._same("div", self)

    def __neg__(self):
        return self.graph._node("neg", (self,), ty=self.ty)

    def __lt__(self, o):
        return self.graph._node("lt", (self, self._other(o, S)))

    def __gt__(self, o):
        return self.graph._node("gt", (self, self._other(o, S)))

    def __and__(self, o):
        return self.graph._node("and", (self, o))

    def __or__(self, o):
        return self.graph._node("or", (self, o))

    def __invert__(self):
        return self.graph._node("not", (self,))

    def min(self, o) -> Value:
        return self._same("min", o)

    def max(self, o) -> Value:
        return self._same("max", o)

    def dot(self, o) -> Value:
        return self.graph._node("dot", (self, self._other(o, V)))

    def length(self) -> Value:
        return self.graph._node("length", (self,))

    def normalize(self, eps: float = 1e-6) -> Value:
        """v / max(length(v), eps)."""
        return self.graph._node("normalize", (self,), imm=(eps,))

    def clamp(self, lo: float, hi: float) -> Value:
        return self.graph._node("clamp", (self,), imm=(lo, hi), ty=self.ty)

    def lerp(self, o, t) -> Value:
        return self.graph._node("lerp", (self, self._other(o), self._other(t, S)), ty=self.ty)

    @property
    def x(self) -> Value:
        return self.graph._node("x", (self,))

    @property
    def y(self) -> Value:
        return self.graph._node("y", (self,))

    @property
    def z(self) -> Value:
        return self.graph._node("z", (self,))


class Graph:
    """A behaviour graph under construction. `state` registers (vec3 each)
    carry values from one tick to the next per NPC (`store`, `state`)."""

    def __init__(self, state: int = 0):
        self.state_count = state
        # (name, arg, (in0, in1, in2), pool, (imm0..imm3)) as _native takes them.
        self._nodes: list[tuple[str, int, tuple[int, int, int], int, tuple[float, float, float, float]]] = []
        self._types: list[str | None] = []
        self._pool: list[float] = []
        self._consts: dict[tuple, Value] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    # --- plumbing ---

    def _node(self, op: str, ins: Sequence[Value] = (), arg: int = 0, pool: int = 0, imm: Sequence[float] = (), ty: str | None = None) -> Value | None:
        idx = []
        for v in ins:
            if not isinstance(v, Value) or v.graph is not self:
                raise TypeError(f"{op}: inputs must be values of this graph; got {v!r}")
            idx.append(v.index)
        idx += [NONE] * (3 - len(idx))
        im = tuple(float(x) for x in imm) + (0.0,) * (4 - len(imm))
        self._nodes.append((op, int(arg), tuple(idx), int(pool), im))
        if op in _ACTIONS:
            self._types.append(None)
            return None
        t = _FIXED.get(op, ty)
        self._types.append(t)
        return Value(self, len(self._nodes) - 1, t)

    def _lift(self, o, like: str) -> Value:
        if isinstance(o, Value):
            return o
        if isinstance(o, (int, float)):
            return self.scalar(float(o)) if like == S else self.vector(float(o), float(o), float(o))
        vals = [float(x) for x in o]
        if len(vals) != 3:
            raise TypeError(f"a vector constant needs 3 numbers; got {len(vals)}")
        return self.vector(*vals)

    def _pool_add(self, vals: Sequence[float]) -> int:
        at = len(self._pool)
        self._pool.extend(float(v) for v in vals)
        return at

    # --- sensors ---

    def pos(self) -> Value:
        return self._node("pos")

    def vel(self) -> Value:
        return self._node("vel")

    def health(self) -> Value:
        return self._node("health")

    def target(self) -> Value:
        return self._node("target")

    def tick_phase(self, period: int, count: int) -> Value:
        """(tick // period) % count, as a scalar."""
        return self._node("tick_phase", arg=count, pool=period)

    def state(self, reg: int) -> Value:
        """Register `reg` as stored last tick (zero before the first store)."""
        return self._node("state", arg=reg)

    def ray(self, origin: Value, direction: Value, max_distance: float) -> Value:
        """Distance to the first hit along `direction`; +inf when none."""
        return self._node("ray", (origin, direction), imm=(max_distance,))

    def push(self, radius: float, mask: int = 0) -> Value:
        """Sum of d/|d|^2 (d = own - theirs, xz plane) over others within radius."""
        return self._node("push", arg=mask, imm=(radius,))

    def nearest(self, radius: float, mask: int = 0) -> Value:
        return self._node("nearest", arg=mask, imm=(radius,))

    def count(self, radius: float, mask: int = 0) -> Value:
        return self._node("count", arg=mask, imm=(radius,))

    # --- constants and tables ---

    def scalar(self, c: float) -> Value:
        key = (S, _bits(c))
        if key not in self._consts:
            self._consts[key] = self._node("scalar", imm=(c,))
        return self._consts[key]

    def vector(self, x: float, y: float, z: float) -> Value:
        key = (V, _bits(x), _bits(y), _bits(z))
        if key not in self._consts:
            self._consts[key] = self._node("vector", imm=(x, y, z))
        return self._consts[key]

    def table(self, index: Value, rows: Sequence[Sequence[float]]) -> Value:
        """Row floor(clamp(index, 0, len(rows) - 1)) of vec3 rows."""
        flat = [float(v) for r in rows for v in r]
        if len(flat) != 3 * len(rows):
            raise TypeError("table rows must be 3 numbers each")
        return self._node("table", (index,), arg=len(rows), pool=self._pool_add(flat))

    def curve(self, x: Value, points: Sequence[tuple[float, float]]) -> Value:
        """Piecewise-linear response through (x, y) points, x ascending."""
        flat = [float(v) for p in points for v in p]
        return self._node("curve", (x,), arg=len(points), pool=self._pool_add(flat))

    def vec(self, x: Value | float, y: Value | float, z: Value | float) -> Value:
        return self._node("vec", tuple(self._lift(c, S) for c in (x, y, z)))

    def select(self, cond: Value, a, b) -> Value:
        a = self._lift(a, b.ty if isinstance(b, Value) else S)
        return self._node("select", (cond, a, self._lift(b, a.ty)), ty=a.ty)

    def argmax(self, *options: Value) -> Value:
        return self._node("argmax", tuple(self._lift(o, S) for o in options))

    # --- actions ---

    def _enable(self, ins: list, enable: Value | None) -> tuple:
        return tuple(ins) + ((enable,) if enable is not None else ())

    def move_to(self, target: Value, speed: Value | float, enable: Value | None = None) -> None:
        self._node("move_to", self._enable([self._lift(target, V), self._lift(speed, S)], enable))

    def set_velocity(self, linvel: Value, enable: Value | None = None) -> None:
        self._node("set_velocity", self._enable([self._lift(linvel, V)], enable))

    def impulse(self, impulse: Value, enable: Value | None = None) -> None:
        self._node("impulse", self._enable([self._lift(impulse, V)], enable))

    def store(self, reg: int, value: Value) -> None:
        """Keep `value` in register `reg` for next tick."""
        self._node("store", (self._lift(value, V),), arg=reg)

    # --- output ---

    def build(self) -> bytes:
        """The graph's bytes (validated by sim-core; a refusal raises
        ValueError naming the status code and the node)."""
        return _native.graph_encode(self._nodes, self._pool, self.state_count)

    def hash(self) -> int:
        return graph_hash(self.build())

    def describe(self) -> str:
        return describe(self.build())

    @classmethod
    def from_bytes(cls, data: bytes) -> Graph:
        """Decodes (and validates) bytes back into a Graph that builds to
        the same bytes."""
        nodes, pool, state = _native.graph_decode(data)
        g = cls(state)
        g._nodes = [(n, a, tuple(i), p, tuple(im)) for n, a, i, p, im in nodes]
        g._pool = list(pool)
        for (name, _, ins, _, _) in g._nodes:
            t = None if name in _ACTIONS else _FIXED.get(name) or g._types[ins[1] if name == "select" else ins[0]]
            g._types.append(t)
        return g

    def value(self, index: int) -> Value:
        """The value node at `index` (e.g. of a graph read with from_bytes)."""
        t = self._types[index]
        if t is None:
            raise TypeError(f"node {index} ({self._nodes[index][0]}) is an action, not a value")
        return Value(self, index, t)
