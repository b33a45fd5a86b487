"""``--target onnx``: the v2 bundle's ``denoise``, ``decoder`` and ``encoder`` graphs (opset 20).

* ``denoise``: the conditioning and velocity pieces of ``lrf.exporter.onnx_core`` exported by the
  dynamo exporter + onnxsim, then composed into one ONNX ``Loop`` over the timestep window
  (``lrf.exporter.onnx_compose``): any N, stepwise or fused, weights stored once
  (``window: {"min": 1, "max": null}``).
* ``decoder`` and ``encoder``: the wrappers of ``lrf.exporter.wrappers``; both take any H, W.
* ``--int8``: ``lrf.exporter.onnx_int8``.

Files: ``denoise.onnx``, ``decoder.onnx``, ``encoder.onnx``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from lrf.exporter.onnx_compose import compose_denoise
from lrf.exporter.onnx_core import BodyGraph, CondGraph
from lrf.exporter.targets import (ExportContext, GraphRecord, Target, package_version, quiet,
                                  register_target)
from lrf.exporter.wrappers import build_graphs, example_inputs, graph_io

OPSET = 20  # LayerNormalization and Gelu(approximate="tanh") as single operators
WINDOW = {"min": 1, "max": None}
_ONNX_DTYPES = {"float32": onnx.TensorProto.FLOAT, "int32": onnx.TensorProto.INT32,
                "uint8": onnx.TensorProto.UINT8}


def dynamic_shapes_for(inputs: list[dict]) -> dict:
    """torch.export ``dynamic_shapes`` from manifest tensor entries: one Dim per dims name."""
    dims: dict[str, torch.export.Dim] = {}
    out = {}
    for t in inputs:
        axes = {i: dims.setdefault(name, torch.export.Dim(name, min=2 if name == "window_plus_one"
                                                          else 1, max=4096))
                for i, (size, name) in enumerate(zip(t["shape"], t["dims"])) if size < 0}
        out[t["name"]] = axes or None
    return out


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


def _quiet():
    """The dynamo exporter prints progress and warnings (torchvision missing, deprecations)."""
    return quiet("torch.onnx", "torch.export", "torch._export", "onnxscript",
                 "torch.fx.experimental")


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


def _dynamo(module: torch.nn.Module, example: tuple, in_names: list[str], out_names: list[str],
            dynamic_shapes: dict, where: str) -> onnx.ModelProto:
    """Dynamo export -> onnxsim -> linear-layer cleanup -> dedupe -> checker."""
    import onnxsim

    with _quiet(), torch.no_grad():
        prog = torch.onnx.export(module, example, dynamo=True, opset_version=OPSET,
                                 input_names=in_names, output_names=out_names,
                                 dynamic_shapes=dynamic_shapes, optimize=True, verbose=False)
    model = prog.model_proto
    with _quiet():
        model, ok = onnxsim.simplify(model)
    if not ok:
        raise ValueError(f"{where}: onnxsim could not validate the simplified graph")
    unflatten_linears(model)
    dedupe_initializers(model)
    onnx.checker.check_model(model)
    return model


def export_onnx(module: torch.nn.Module, example: tuple, inputs: list[dict], outputs: list[dict],
                path: Path) -> onnx.ModelProto:
    """A wrapper graph exported, checked against its manifest contract, saved to ``path``."""
    model = _dynamo(module, example, [t["name"] for t in inputs], [t["name"] for t in outputs],
                    dynamic_shapes_for(inputs), path.name)
    check_io(model, inputs, outputs, path.name)
    onnx.save(model, str(path))
    return model


def export_denoise(ckpt, latent_size: int, inputs: list[dict], outputs: list[dict],
                   path: Path) -> onnx.ModelProto:
    """The ``denoise`` Loop: conditioning and velocity pieces exported, then composed."""
    model = ckpt.model.eval()
    cfg = ckpt.config
    n, c, d = latent_size * latent_size, cfg.latent_channels, cfg.dim
    pairs = 1 if cfg.guidance_embed else 2  # a teacher's CFG pair runs as one batch of 2B
    batch = torch.export.Dim("batch", min=1, max=4096)
    ex = example_inputs("denoise", ckpt, batch=2, latent_size=latent_size)
    cond = _dynamo(CondGraph(model).eval(), ex[1:], ["timesteps", "label", "guidance"], ["cond"],
                   {"timesteps": {0: torch.export.Dim("window_plus_one", min=2, max=4097)},
                    "label": {0: batch}, "guidance": {0: batch}}, "denoise (cond)")
    body = _dynamo(BodyGraph(model, latent_size, latent_size).eval(),
                   (torch.randn(2, 1, n, c), torch.randn(2 * pairs, 1, 1, d), torch.ones(2, 1, 1, 1)),
                   ["z", "cond", "guidance"], ["velocity"],
                   {"z": {0: batch}, "cond": {0: pairs * batch}, "guidance": {0: batch}},
                   "denoise (body)")
    den = compose_denoise(cond, body, inputs, outputs[0])
    dedupe_initializers(den)
    onnx.checker.check_model(den)
    check_io(den, inputs, outputs, path.name)
    onnx.save(den, str(path))
    return den


@register_target("onnx")
class OnnxTarget(Target):
    """ONNX files run by the ``onnxruntime`` backend. Dynamic batch everywhere; the decoder and
    encoder take any size; ``denoise`` any window. ``--int8``: ``lrf.exporter.onnx_int8``."""

    backend = "onnxruntime"

    def export(self, ctx: ExportContext) -> dict[str, GraphRecord]:
        names = ("denoise", "decoder", "encoder")
        io_specs = {name: graph_io(name, ctx.ckpt, ctx.latent_size) for name in names}
        paths = {name: ctx.out_dir / f"{name}.onnx" for name in names}
        ctx.log(f"onnx: exporting denoise (Loop over the window; dynamo, opset {OPSET})")
        export_denoise(ctx.ckpt, ctx.latent_size, *io_specs["denoise"], paths["denoise"])
        wrappers = build_graphs(ctx.ckpt)
        for name in ("decoder", "encoder"):
            example = example_inputs(name, ctx.ckpt, batch=2, latent_size=ctx.latent_size)
            ctx.log(f"onnx: exporting {name} (dynamo, opset {OPSET}, onnxsim)")
            export_onnx(wrappers[name], example, *io_specs[name], paths[name])
        quant = {name: {"method": "none"} for name in paths}
        if ctx.precision == "int8":
            from lrf.exporter.onnx_int8 import quantize_graphs

            quant.update(quantize_graphs(paths, ctx))
        opsets = {}
        for name, path in paths.items():
            model = onnx.load(str(path))
            check_io(model, *io_specs[name], path.name)
            # int4 weights raise a graph to opset 21: record what the file declares
            opsets[name] = next(o.version for o in model.opset_import
                                if o.domain in ("", "ai.onnx"))
        extra = {"denoise": {"window": dict(WINDOW), "form": "loop"}}
        return {name: GraphRecord(name=name, file=path.name, format="onnx",
                                  inputs=io_specs[name][0], outputs=io_specs[name][1],
                                  quantization=quant[name],
                                  extra={"opset": opsets[name], **extra.get(name, {})})
                for name, path in paths.items()}

    def tool_versions(self) -> dict[str, str]:
        return {dist: package_version(dist) for dist in ("onnx", "onnxruntime", "onnxscript",
                                                          "onnxsim")}
