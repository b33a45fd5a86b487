"""ONNX graph surgery shared by the ONNX target and its int8 pass: walking subgraphs, merging
duplicate initializers, turning the dynamo exporter's flattened linear layers back into
MatMul + Add, pruning, and checking a file's inputs/outputs against its manifest contract.
Torch-free (onnx and numpy only)."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import helper, numpy_helper

_ONNX_DTYPES = {"float32": onnx.TensorProto.FLOAT, "int32": onnx.TensorProto.INT32,
                "uint8": onnx.TensorProto.UINT8}


def dedupe_initializers(model: onnx.ModelProto) -> int:
    """Merge byte-identical initializers and point every user at one copy; returns bytes saved.

    The exporter and onnxsim fold each use of a weight (e.g. its transpose for MatMul) into a
    separate constant, so a weight-shared recursion would otherwise store the same tensor
    several times."""
    g = model.graph
    keep: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    kept, saved = [], 0
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        key = (init.data_type, tuple(init.dims), hashlib.sha256(arr.tobytes()).hexdigest())
        if key in keep:
            rename[init.name] = keep[key]
            saved += arr.nbytes
        else:
            keep[key] = init.name
            kept.append(init)
    if rename:
        del g.initializer[:]
        g.initializer.extend(kept)
        for node in all_nodes(g):  # subgraphs (the denoise Loop body) read them too
            for i, name in enumerate(node.input):
                if name in rename:
                    node.input[i] = rename[name]
        for out in g.output:
            if out.name in rename:
                raise ValueError(f"initializer {out.name!r} is also a graph output")
    return saved


def all_nodes(graph: onnx.GraphProto):
    """Every node of ``graph`` and of its subgraphs (Loop/If bodies), depth first."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from all_nodes(sub)


def check_io(model: onnx.ModelProto, inputs: list[dict], outputs: list[dict], where: str) -> None:
    """The exported file's inputs/outputs must match the manifest contract exactly: names, dtypes,
    static sizes, and a symbolic dimension wherever the contract says dynamic (-1). Catches the
    exporter silently specialising a dynamic dimension."""
    for kind, have, want in (("input", model.graph.input, inputs),
                             ("output", model.graph.output, outputs)):
        names = [v.name for v in have]
        if names != [t["name"] for t in want]:
            raise ValueError(f"{where}: {kind}s {names}, expected {[t['name'] for t in want]}")
        for v, t in zip(have, want):
            tt = v.type.tensor_type
            if tt.elem_type != _ONNX_DTYPES[t["dtype"]]:
                raise ValueError(f"{where}: {kind} {v.name!r} has ONNX type {tt.elem_type}, "
                                 f"expected {t['dtype']}")
            dims = tt.shape.dim
            if len(dims) != len(t["shape"]):
                raise ValueError(f"{where}: {kind} {v.name!r} has rank {len(dims)}, expected "
                                 f"{len(t['shape'])}")
            for d, size, name in zip(dims, t["shape"], t["dims"]):
                if size >= 0 and d.dim_value != size:
                    raise ValueError(f"{where}: {kind} {v.name!r} dim {name!r} is "
                                     f"{d.dim_param or d.dim_value}, expected {size}")
                if size < 0 and not d.dim_param:
                    raise ValueError(f"{where}: {kind} {v.name!r} dim {name!r} was specialised "
                                     f"to {d.dim_value}; it must stay dynamic")


def _shapes(model: onnx.ModelProto) -> dict[str, list]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(g.value_info) + list(g.input) + list(g.output)}


def unflatten_linears(model: onnx.ModelProto) -> int:
    """Rewrite ``Reshape(x, [-1, D]) -> Gemm(W, b) -> Reshape`` (how the dynamo exporter lowers a
    linear layer on a rank >= 3 tensor) as ``MatMul(x, W) + b``, in place; the trailing Reshape
    stays only when it does more than restore x's leading dimensions. Returns the count.

    Three kernels become two per linear layer; onnxruntime keeps the pair as is."""
    g = model.graph
    shapes = _shapes(model)
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    users: dict[str, list] = {}
    for n in g.node:
        for x in n.input:
            users.setdefault(x, []).append(n)
    transposed: dict[str, str] = {}
    nodes, dropped, count = [], set(), 0
    for n in g.node:
        if id(n) in dropped:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        first = producer.get(n.input[0]) if n.op_type == "Gemm" else None
        after = users.get(n.output[0], [])
        if not (first is not None and first.op_type == "Reshape" and len(after) == 1
                and after[0].op_type == "Reshape" and len(n.input) == 3 and n.input[1] in inits
                and not attrs.get("transA", 0) and attrs.get("alpha", 1.0) == 1.0
                and attrs.get("beta", 1.0) == 1.0 and len(shapes.get(first.input[0], [])) >= 3):
            nodes.append(n)
            continue
        w = n.input[1]
        if attrs.get("transB", 0):
            if w not in transposed:
                transposed[w] = f"{w}_kn"
                g.initializer.append(numpy_helper.from_array(
                    np.ascontiguousarray(numpy_helper.to_array(inits[w]).T), transposed[w]))
            w = transposed[w]
        last = after[0]
        xs, ys = shapes[first.input[0]], shapes.get(last.output[0], [])
        restore = len(ys) == len(xs) and ys[:-1] == xs[:-1] and all(ys[:-1])
        out = last.output[0] if restore else f"{n.output[0]}_nd"
        nodes += [helper.make_node("MatMul", [first.input[0], w], [f"{n.output[0]}_mm"],
                                   name=f"{n.name}_MatMul"),
                  helper.make_node("Add", [f"{n.output[0]}_mm", n.input[2]], [out],
                                   name=f"{n.name}_Add")]
        if restore:
            dropped.add(id(last))
        else:  # the Reshape stays where it is (its shape may be computed after the Gemm)
            last.input[0] = out
        count += 1
    del g.node[:]
    g.node.extend(nodes)
    prune(model)
    return count


def prune(model: onnx.ModelProto) -> None:
    """Drop nodes no graph output depends on, then initializers nothing reads (top graph)."""
    g = model.graph
    live = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in live for o in n.output):
            keep.append(n)
            live.update(n.input)
            for sub in _subgraph_inputs(n):
                live.update(sub)
    del g.node[:]
    g.node.extend(reversed(keep))
    used = {x for n in all_nodes(g) for x in n.input}
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)


def _subgraph_inputs(node):
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield [x for n in all_nodes(attr.g) for x in n.input]
