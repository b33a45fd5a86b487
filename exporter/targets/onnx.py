"""``--target onnx``: ``step`` and ``decoder`` by the dynamo exporter (opset 18) + onnxsim, shared
weights deduplicated; optional int8 (``lrf.exporter.onnx_int8``); each ``generator_<N>`` composed
from them (``lrf.exporter.onnx_compose``; option ``fused_form``: "loop" (default) or
"unrolled"). Files: ``step.onnx``, ``decoder.onnx``, ``generator_<N>.onnx``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper

from lrf.exporter.onnx_compose import compose_generator
from lrf.exporter.targets import (ExportContext, GraphRecord, Target, quiet,
                                  register_target)
from lrf.exporter.wrappers import example_inputs, graph_io

OPSET = 18
_ONNX_DTYPES = {"float32": onnx.TensorProto.FLOAT, "int32": onnx.TensorProto.INT32,
                "uint8": onnx.TensorProto.UINT8}


def dynamic_shapes_for(inputs: list[dict]) -> dict:
    """torch.export ``dynamic_shapes`` from manifest tensor entries: one Dim per dims name."""
    dims: dict[str, torch.export.Dim] = {}
    out = {}
    for t in inputs:
        axes = {i: dims.setdefault(name, torch.export.Dim(name, min=1, max=4096))
                for i, (size, name) in enumerate(zip(t["shape"], t["dims"])) if size < 0}
        out[t["name"]] = axes or None
    return out


def dedupe_initializers(model: onnx.ModelProto) -> int:
    """Merge byte-identical initializers and point every user at one copy; returns bytes saved.

    The exporter and onnxsim fold each use of a weight (e.g. its transpose for MatMul) into a
    separate constant, so a weight-shared recursion, and the fused generator's N unrolled steps,
    would otherwise store the same tensor many times."""
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
        for node in _all_nodes(g):  # subgraphs (the fused generator's Loop body) read them too
            for i, name in enumerate(node.input):
                if name in rename:
                    node.input[i] = rename[name]
        for out in g.output:
            if out.name in rename:
                raise ValueError(f"initializer {out.name!r} is also a graph output")
    return saved


def _all_nodes(graph: onnx.GraphProto):
    """Every node of ``graph`` and of its subgraphs (Loop/If bodies), depth first."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _all_nodes(sub)


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


def export_onnx(module: torch.nn.Module, example: tuple, inputs: list[dict], outputs: list[dict],
                path: Path, opset: int = OPSET, simplify: bool = True) -> onnx.ModelProto:
    """Dynamo export -> onnxsim -> dedupe -> checker -> contract check -> save to ``path``."""
    import onnxsim

    with _quiet(), torch.no_grad():
        prog = torch.onnx.export(module, example, dynamo=True, opset_version=opset,
                                 input_names=[t["name"] for t in inputs],
                                 output_names=[t["name"] for t in outputs],
                                 dynamic_shapes=dynamic_shapes_for(inputs), optimize=True,
                                 verbose=False)
    model = prog.model_proto
    if simplify:
        with _quiet():
            model, ok = onnxsim.simplify(model)
        if not ok:
            raise ValueError(f"{path.name}: onnxsim could not validate the simplified graph")
    dedupe_initializers(model)
    onnx.checker.check_model(model)
    check_io(model, inputs, outputs, path.name)
    onnx.save(model, str(path))
    return model


@register_target("onnx")
class OnnxTarget(Target):
    """ONNX files run by the ``onnxruntime`` backend. Dynamic batch everywhere; the decoder also
    takes any latent height/width. ``--int8`` chooses, per graph, between measured variants."""

    backend = "onnxruntime"

    def export(self, ctx: ExportContext) -> dict[str, GraphRecord]:
        io_specs = {name: graph_io(name, ctx.ckpt, ctx.latent_size) for name in ctx.graphs}
        paths = {name: ctx.out_dir / f"{name}.onnx" for name in ctx.graphs}
        for name in ("step", "decoder"):
            example = example_inputs(name, ctx.ckpt, batch=2, latent_size=ctx.latent_size)
            ctx.log(f"onnx: exporting {name} (dynamo, opset {OPSET}, onnxsim)")
            export_onnx(ctx.graphs[name], example, *io_specs[name], paths[name])
        quant = {name: {"method": "none"} for name in paths}
        extra: dict[str, dict] = {}
        if ctx.precision == "int8":
            from lrf.exporter.onnx_int8 import quantize_graphs

            quant.update(quantize_graphs({n: paths[n] for n in ("step", "decoder")}, ctx))
        step, decoder = (onnx.load(str(paths[n])) for n in ("step", "decoder"))
        shift = float(ctx.ckpt.sampling.get("shift", 1.0))
        form = ctx.options.get("fused_form", "loop")
        for name in paths:
            if name.startswith("generator_"):
                n = int(name.split("_")[1])
                ctx.log(f"onnx: composing {name} ({form}) from step + decoder")
                model = compose_generator(step, decoder, n, shift, io_specs[name][1][0],
                                          form=form)
                dedupe_initializers(model)
                onnx.checker.check_model(model)
                check_io(model, *io_specs[name], paths[name].name)
                onnx.save(model, str(paths[name]))
                extra[name] = {"form": form}
                methods = {quant["step"]["method"], quant["decoder"]["method"]}
                quant[name] = {"method": methods.pop() if len(methods) == 1 else "mixed",
                               "step": quant["step"]["method"],
                               "decoder": quant["decoder"]["method"],
                               "composed_from": ["step", "decoder"],
                               "note": f"the step graph ({form}, one set of weights) then "
                                       "the decoder; quantisation as theirs"}
        for name, path in paths.items():
            check_io(onnx.load(str(path)), *io_specs[name], path.name)
        return {name: GraphRecord(name=name, file=path.name, format="onnx",
                                  inputs=io_specs[name][0], outputs=io_specs[name][1],
                                  steps=int(name.split("_")[1]) if name.startswith("generator_")
                                  else None,
                                  quantization=quant[name],
                                  extra={"opset": OPSET, **extra.get(name, {})})
                for name, path in paths.items()}

    def tool_versions(self) -> dict[str, str]:
        import onnxruntime
        import onnxscript
        import onnxsim

        return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                "onnxscript": onnxscript.__version__, "onnxsim": onnxsim.__version__}
