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

from pathlib import Path

import onnx
import torch

from lrf.exporter.onnx_compose import compose_denoise
from lrf.exporter.onnx_core import BodyGraph, CondGraph
from lrf.exporter.onnx_graph import check_io, dedupe_initializers, unflatten_linears
from lrf.exporter.targets import (ExportContext, GraphRecord, Target, package_version, quiet,
                                  register_target)
from lrf.exporter.wrappers import build_graphs, example_inputs, graph_io

OPSET = 20  # LayerNormalization and Gelu(approximate="tanh") as single operators
WINDOW = {"min": 1, "max": None}


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


def _quiet():
    """The dynamo exporter prints progress and warnings (torchvision missing, deprecations)."""
    return quiet("torch.onnx", "torch.export", "torch._export", "onnxscript",
                 "torch.fx.experimental")


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
