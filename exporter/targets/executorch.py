"""``--target executorch``: one ``.pte`` program per graph, lowered to the XNNPACK delegate.

Files: ``denoise.pte``, ``decoder.pte``, ``encoder.pte``, run by the ``executorch`` backend of
``lrf.runtime`` (``runtime/backend_executorch.py``), which the parity gate goes through.

* Fixed shapes: every graph is exported for one batch size (``options["batch"]``, default 1),
  the trained latent size, and a fixed denoise window of K = ``options["window"]`` steps
  (default 1; ``window = {"min": K, "max": K}``). executorch has no delegated loop (``scan`` runs
  its body on portable kernels and cannot hold quantized ops), so the wrapper's K steps are
  unrolled; the runtime splits a schedule into windows of K and runs larger batches in chunks.
  With executorch 1.4.1 a dynamic batch lowers, but the denoise program then runs only at the
  batch it was traced with: :func:`dynamic_batch_error` reproduces it and the tests pin it.
* fp32: ``torch.export`` -> ``to_edge_transform_and_lower(XnnpackPartitioner)`` ->
  ``to_executorch``.
* int8 (``--int8``): the pt2e flow (torchao ``prepare_pt2e``/``convert_pt2e``) with executorch's
  ``XNNPACKQuantizer`` on the weight layers (linear, conv2d: int8 per-channel symmetric weights,
  int8 per-tensor activations, histogram observers; why not add/mul/cat:
  :func:`weight_layer_quantizer`), calibrated on the PyTorch trajectories
  (``ExportContext.calibration``: every step's window for ``denoise``, the final latents for
  ``decoder``, the final images for ``encoder``). Calibration runs on a dynamic-batch export so
  whole calibration batches go through at once; the converted module is then re-exported at the
  fixed batch and lowered.
* Metadata inside each program, as constant methods: ``lrf_graph`` and ``lrf_metadata`` (UTF-8
  JSON as a uint8 tensor: graph, bundle schema, tensors with roles, window, precision,
  checkpoint sha256), ``lrf_batch`` and ``lrf_window`` (ints; window 0 for decoder/encoder).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lrf.exporter.targets import (ExportContext, GraphRecord, Target, fixed_batch, fixed_graph,
                                  fixed_window, package_version, quiet, register_target,
                                  window_entry)
from lrf.exporter.wrappers import example_inputs

METADATA_METHODS = ("lrf_graph", "lrf_metadata", "lrf_batch", "lrf_window")


def _quiet():
    """torch.export and the ExecuTorch lowering log warnings and progress on every graph."""
    return quiet("torch.export", "torch._export", "executorch", "torch.fx.experimental",
                 "torchao")


def constant_methods(name: str, inputs: list[dict], outputs: list[dict], window: int | None,
                     batch: int, precision: str, checkpoint_sha256: str) -> dict:
    """The metadata stored in the program as constant methods (see the module docstring)."""
    meta = {"graph": name, "bundle_schema": "lrf-bundle/2", "precision": precision,
            "batch": batch, "window": window, "checkpoint_sha256": checkpoint_sha256,
            "inputs": inputs, "outputs": outputs}
    blob = json.dumps(meta, sort_keys=True).encode("utf-8")
    return {"lrf_graph": name, "lrf_batch": batch, "lrf_window": window or 0,
            "lrf_metadata": torch.tensor(list(blob), dtype=torch.uint8)}


def _calibration_feeds(name: str, ctx: ExportContext, inputs: list[dict], window: int
                       ) -> list[tuple[torch.Tensor, ...]]:
    """The PyTorch trajectory data, as positional tensors in the graph's input order."""
    cal = ctx.calibration
    feeds = {"denoise": lambda: cal.denoise_feeds(window), "decoder": cal.decoder_feeds,
             "encoder": cal.encoder_feeds}[name]()
    return [tuple(torch.from_numpy(f[t["role"]]) for t in inputs) for f in feeds]


def _dynamic_batch(inputs: list[dict], dim) -> dict:
    """torch.export ``dynamic_shapes`` making every batched input's dim 0 ``dim``."""
    return {t["name"]: ({0: dim} if t["dims"] and t["dims"][0] == "batch" else None)
            for t in inputs}


QUANTIZED_OPS = ("aten.linear", "aten.conv2d")


def weight_layer_quantizer():
    """``XNNPACKQuantizer`` for the weight layers only (linear, conv2d): int8 per-channel
    symmetric weights, int8 per-tensor activations at their inputs/outputs.

    Its other static patterns (add, mul, cat) are left out: with them the lowered step and
    generator programs crash the executorch 1.4.1 runtime (segfault in ``_portable_lib`` at the
    first execute), and its cat annotator also ignores filters and observes the int64 label
    concat of the step graph."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)

    cfg = get_symmetric_quantization_config(is_per_channel=True)
    return (XNNPACKQuantizer().set_operator_type(torch.ops.aten.linear.default, cfg)
            .set_operator_type(torch.ops.aten.conv2d.default, cfg))


def quantize_int8(name: str, module: torch.nn.Module, ctx: ExportContext, inputs: list[dict],
                  window: int) -> tuple[torch.nn.Module, dict]:
    """pt2e int8 with the XNNPACK quantizer, calibrated on trajectories; returns the converted
    module (export it at the fixed batch) and the manifest's ``quantization`` entry."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if ctx.calibration is None:
        raise ValueError("int8 export needs calibration trajectories (ExportContext.calibration)")
    feeds = _calibration_feeds(name, ctx, inputs, window)
    # traced at batch 2 (a size-1 example would be specialised), the batch left dynamic
    example2 = example_inputs(name, ctx.ckpt, batch=2, latent_size=ctx.latent_size,
                              window=window)
    dyn = _dynamic_batch(inputs, torch.export.Dim("batch", min=1, max=4096))
    # no_grad around the export too: the wrappers' sampler runs under torch.no_grad(), which
    # torch.export would otherwise keep as a set_grad_enabled sub-module that the quantizer
    # never looks into (nothing quantized, silently)
    with _quiet(), torch.no_grad():
        gm = torch.export.export(module, example2, dynamic_shapes=dyn).module()
        prepared = prepare_pt2e(gm, weight_layer_quantizer())
        for f in feeds:
            prepared(*f)
        converted = convert_pt2e(prepared)
    layers = sum(n.op == "call_function" and "dequantize_per_channel" in str(n.target)
                 for n in converted.graph.nodes)
    if layers == 0:
        raise ValueError(f"executorch int8: no layer of {name} was quantized; the graph did "
                         "not expose its linear/conv2d ops to the quantizer")
    cal = ctx.calibration
    data = {"denoise": f"every step's {window}-step window", "decoder": "the final latents",
            "encoder": "the final images"}[name]
    return converted, {
        "method": "pt2e_static", "quantizer": "XNNPACKQuantizer", "weight_type": "int8",
        "per_channel": True, "activation_type": "int8 (per tensor, affine)",
        "observer": "histogram", "op_types": list(QUANTIZED_OPS), "quantized_weights": layers,
        "float_ops": "everything else (add, mul, cat, attention matmuls, norms); the "
                     "quantizer's add/mul/cat patterns crash the executorch 1.4.1 runtime "
                     "for this model",
        "calibration": {"source": "pytorch_trajectories", "seeds": [cal.seeds[0], cal.seeds[-1]],
                        "images": cal.batch, "labels": "seed i -> class i % num_classes",
                        "steps": cal.steps, "guidance": cal.guidance, "data": data,
                        "batches": len(feeds)}}


def lower(module: torch.nn.Module, example: tuple, methods: dict):
    """torch.export at the example's (fixed) shapes -> XNNPACK-lowered ExecuTorch program."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with _quiet(), torch.no_grad():
        ep = torch.export.export(module, example)
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()],
                                           constant_methods=methods)
        return edge.to_executorch()


def dynamic_batch_error(name: str, module: torch.nn.Module, ckpt, inputs: list[dict],
                        batches=(1, 3)) -> str | None:
    """Lower graph ``name`` (manifest tensors ``inputs``) with a dynamic batch (traced at 2) and
    run it at ``batches``; the first failure as text (None if every batch ran and matched eager
    within 1e-3). Kept to show, and test, why the target writes one program per batch size."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    example = example_inputs(name, ckpt, batch=2)
    try:
        with _quiet(), torch.no_grad():
            ep = torch.export.export(module, example, dynamic_shapes=_dynamic_batch(
                inputs, torch.export.Dim("batch", min=1, max=64)))
            prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
            buffer = prog.to_executorch().buffer
    except Exception as e:  # any failure is the finding; its type varies across versions
        return f"lowering: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    method = Runtime.get().load_program(buffer).load_method("forward")
    for b in batches:
        args = example_inputs(name, ckpt, batch=b, seed=1)
        try:
            out = method.execute(list(args))[0]
        except RuntimeError as e:
            return f"batch {b}: {type(e).__name__}: {e}"
        with torch.no_grad():
            ref = module(*args)
        if tuple(out.shape) != tuple(ref.shape) or \
                float((out.float() - ref.float()).abs().max()) > 1e-3:
            return f"batch {b}: output differs from eager"
    return None


@register_target("executorch")
class ExecuTorchTarget(Target):
    """``.pte`` programs (XNNPACK) run by the ``executorch`` backend; fixed batch and window."""

    backend = "executorch"
    precisions = ("fp32", "int8")
    image_format = "uint8_nhwc"

    def export(self, ctx: ExportContext) -> dict[str, GraphRecord]:
        from lrf.models.checkpoint import checkpoint_sha256
        from lrf.runtime.backend_executorch import check_program

        batch, window = fixed_batch(ctx.options, "executorch"), fixed_window(ctx.options)
        sha = checkpoint_sha256(ctx.ckpt.path)
        records = {}
        for name, module in ctx.graphs.items():
            inputs, outputs, example = fixed_graph(ctx, name, batch, window, self.image_format)
            k = window if name == "denoise" else None
            quant = {"method": "none"}
            if ctx.precision == "int8":
                ctx.log(f"executorch int8: {name}: calibrating (pt2e, XNNPACKQuantizer)")
                module, quant = quantize_int8(name, module, ctx, inputs, window)
            ctx.log(f"executorch: lowering {name} (XNNPACK, batch {batch})")
            prog = lower(module, example, constant_methods(name, inputs, outputs, k, batch,
                                                           ctx.precision, sha))
            path = ctx.out_dir / f"{name}.pte"
            path.write_bytes(prog.buffer)
            check_program(path, inputs, outputs, name)
            extra = {"batch": batch, "delegate": "XnnpackBackend",
                     "metadata_methods": list(METADATA_METHODS)}
            if name == "denoise":
                extra["window"] = window_entry(window)
            records[name] = GraphRecord(name=name, file=path.name, format="pte", inputs=inputs,
                                        outputs=outputs, quantization=quant, extra=extra)
        return records

    def tool_versions(self) -> dict[str, str]:
        return {dist: package_version(dist) for dist in ("executorch", "torchao")}


def read_metadata(path: Path) -> dict:
    """The ``lrf_metadata`` constant method of a ``.pte`` file, parsed (for checks and tools)."""
    from lrf.runtime.backend_executorch import program_metadata

    return program_metadata(path)
