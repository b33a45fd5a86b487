"""Loops in an ONNX graph are the schema's or refused (``runtime/BUNDLE.md`` 2.2; issue 25).

A graph is untrusted: a ``Loop`` with a trip count of 10**15, or one derived from the
``timesteps`` input times a constant, runs for ever, and a ``Loop`` with no trip count runs
until its condition turns false, which it need not. The schema defines exactly one loop: the
``denoise`` graph's Euler loop over the timestep window, ``len(timesteps) - 1`` iterations. So:

- a ``Loop`` is allowed only at the top level of the ``denoise`` graph, and its trip count must
  be provably at most ``len(timesteps)``: a ``Shape`` of ``timesteps`` or of a tensor made from
  it by slices and element-wise arithmetic (never longer than it), less a non-negative
  constant, squeezed or reshaped; or a constant of at most MAX_STEPS + 1;
- ``Scan``, and any loop inside a subgraph or a function, is refused.

Read with the same protobuf walker as the external-data check (no ``onnx`` package needed).
Every other bound on run time comes from the backend's per-call time limit.
"""

from __future__ import annotations

import struct

from lrf.runtime.containment import ContainmentError, _fields, _varint

MAX_TRIP = 1001   # scheduler.MAX_STEPS + 1: the longest timesteps input
_INT64, _INT32 = 7, 6
# ops whose output is never longer than their first input (1-D): slices and element-wise ops
_SHRINK = {"Slice", "Identity", "Cast", "Neg", "Abs", "Relu", "Sqrt", "Reciprocal", "Clip"}
_BINARY = {"Sub", "Add", "Mul", "Div", "Max", "Min"}
_SCALAR = {"Squeeze", "Reshape", "Identity", "Cast", "Unsqueeze", "Flatten"}


class _Node:
    __slots__ = ("op", "inputs", "outputs", "subgraphs", "attrs")

    def __init__(self, buf: bytes):
        self.op, self.inputs, self.outputs, self.subgraphs, self.attrs = "", [], [], [], set()
        for num, wt, v in _fields(buf):
            if num == 1 and wt == 2:
                self.inputs.append(v.decode("utf-8", "replace"))
            elif num == 2 and wt == 2:
                self.outputs.append(v.decode("utf-8", "replace"))
            elif num == 4 and wt == 2:
                self.op = v.decode("utf-8", "replace")
            elif num == 5 and wt == 2:   # AttributeProto: g = 6, graphs = 11
                for anum, awt, av in _fields(v):
                    if anum == 1 and awt == 2:
                        self.attrs.add(av.decode("utf-8", "replace"))
                    elif anum in (6, 11) and awt == 2:
                        self.subgraphs.append(av)


def _graph(buf: bytes) -> tuple[list[_Node], dict[str, bytes]]:
    nodes, inits = [], {}
    for num, wt, v in _fields(buf):
        if num == 1 and wt == 2:
            nodes.append(_Node(v))
        elif num == 5 and wt == 2:
            name = next((x.decode("utf-8", "replace") for n, w, x in _fields(v)
                         if n == 8 and w == 2), "")
            inits[name] = v
    return nodes, inits


def _const_int(tensor: bytes) -> int | None:
    """The value of a one-element int64/int32 TensorProto, else None."""
    dims, dtype, values = [], None, []
    for num, wt, v in _fields(tensor):
        if num == 1:
            dims += _ints(v, wt)
        elif num == 2 and wt == 0:
            dtype = v
        elif num in (5, 7):   # int32_data, int64_data
            values += _ints(v, wt)
        elif num == 9 and wt == 2:   # raw_data, little endian
            size = 8 if dtype == _INT64 else 4
            values += [x[0] for x in struct.iter_unpack("<q" if size == 8 else "<i", v)] \
                if len(v) % size == 0 else [None, None]
    if dtype not in (_INT64, _INT32) or len(values) != 1 or any(d != 1 for d in dims):
        return None
    v = values[0]
    return v - (1 << 64) if isinstance(v, int) and v >= 1 << 63 else v


def _ints(v, wt) -> list[int]:
    if wt == 0:
        return [v]
    out, i = [], 0
    while i < len(v):
        x, i = _varint(v, i)
        out.append(x)
    return out


class _Bounds:
    """Which tensors of one graph are provably short: ``derived`` (a 1-D tensor no longer than
    timesteps) and ``count`` (an integer at most len(timesteps))."""

    def __init__(self, nodes: list[_Node], inits: dict[str, bytes], timesteps: str | None):
        self.made = {o: n for n in nodes for o in n.outputs if o}
        self.inits, self.ts = inits, timesteps
        self._memo: dict[tuple[str, str], bool] = {}

    def _small_const(self, name: str, lo: int | None = None) -> bool:
        v = _const_int(self.inits[name]) if name in self.inits else None
        return v is not None and (lo is None or v >= lo)

    def derived(self, name: str, depth: int = 0) -> bool:
        key = ("d", name)
        if key not in self._memo:
            self._memo[key] = False   # a cycle proves nothing
            n = self.made.get(name)
            ok = name == self.ts and name is not None
            if not ok and n is not None and depth < 64 and n.inputs:
                if n.op in _SHRINK:
                    ok = self.derived(n.inputs[0], depth + 1)
                elif n.op in _BINARY and len(n.inputs) == 2:
                    a, b = n.inputs
                    ok = (self.derived(a, depth + 1) or self._small_const(a)) and \
                        (self.derived(b, depth + 1) or self._small_const(b)) and \
                        (self.derived(a, depth + 1) or self.derived(b, depth + 1))
            self._memo[key] = ok
        return self._memo[key]

    def count(self, name: str, depth: int = 0) -> bool:
        if not name:
            return False
        if name in self.inits and name not in self.made:
            v = _const_int(self.inits[name])
            return v is not None and 0 <= v <= MAX_TRIP
        n = self.made.get(name)
        if n is None or depth >= 64 or not n.inputs:
            return False
        if n.op == "Shape":
            return self.derived(n.inputs[0])
        if n.op in _SCALAR:
            return self.count(n.inputs[0], depth + 1)
        if n.op == "Sub" and len(n.inputs) == 2:
            return self.count(n.inputs[0], depth + 1) and self._small_const(n.inputs[1], 0)
        return False


def _loops_below(buf: bytes, depth: int = 0) -> bool:
    """Whether any node of the graph ``buf`` or its subgraphs is a Loop or a Scan."""
    if depth > 64:
        raise ValueError("graphs nested too deeply")
    nodes, _ = _graph(buf)
    return any(n.op in ("Loop", "Scan") or any(_loops_below(g, depth + 1) for g in n.subgraphs)
               for n in nodes)


def check_graph_structure(data: bytes, rel: str, graph: str, timesteps: str | None) -> None:
    """Refuse the ONNX model ``data`` (bundle file ``rel``, manifest graph ``graph``, whose
    timesteps input is named ``timesteps``) unless its loops are the schema's (module doc)."""
    def refuse(why: str):
        raise ContainmentError(f"graph {graph} ({rel}): {why}; the schema defines one Loop, over "
                               "len(timesteps) - 1 steps of the denoise graph (BUNDLE.md 2.2): "
                               "re-export the bundle")

    try:
        fields = list(_fields(data))
        main = next((v for n, w, v in fields if n == 7 and w == 2), b"")
        functions = [v for n, w, v in fields if n == 25 and w == 2]
        nodes, inits = _graph(main)
        for f in functions:   # FunctionProto: node = 7
            if any(_Node(v).op in ("Loop", "Scan") or _Node(v).subgraphs
                   for n, w, v in _fields(f) if n == 7 and w == 2):
                refuse("a function holds a Loop, a Scan or a subgraph")
        bounds = _Bounds(nodes, inits, timesteps)
        for n in nodes:
            if any(_loops_below(g) for g in n.subgraphs):
                refuse(f"a {n.op} node holds a Loop or Scan in its subgraph")
            if n.op == "Scan":
                refuse("it holds a Scan")
            if n.op != "Loop":
                continue
            if graph != "denoise":
                refuse("it holds a Loop, which only the denoise graph may")
            if not n.inputs or not n.inputs[0]:
                refuse("it holds a Loop without a trip count (it would run until its "
                       "condition turns false)")
            if not bounds.count(n.inputs[0]):
                refuse(f"its Loop's trip count {n.inputs[0][:60]!r} is not the schema's "
                       "(len(timesteps) - 1, or a constant of at most "
                       f"{MAX_TRIP})")
    except (ValueError, IndexError, struct.error) as e:
        if isinstance(e, ContainmentError):
            raise
        raise ContainmentError(f"bundle file {rel} is not a readable ONNX model; re-export the "
                               "bundle") from None
