"""``--target executorch``: one ``.pte`` program per graph, lowered to the XNNPACK delegate.

Files: ``step.pte``, ``decoder.pte`` and, only for ``--steps N``, ``generator_<N>.pte`` (see
:meth:`ExecuTorchTarget.default_fused_steps`), run by the ``executorch`` backend of
``lrf.runtime`` (``runtime/backend_executorch.py``), which the parity gate goes through.

* Fixed shapes: every graph is exported for one batch size (``options["batch"]``, default 1)
  and the trained latent size; ``lrf.runtime`` runs larger batches in chunks of that size.
  With executorch 1.4.1 a dynamic batch now lowers, but the step and generator programs then
  run only at the batch they were traced with (another batch: ``execute`` error 0x12 or
  ``set_inputs`` error 0x10; the decoder does run at any batch). :func:`dynamic_batch_error`
  reproduces it and the tests pin it.
* fp32: ``torch.export`` -> ``to_edge_transform_and_lower(XnnpackPartitioner)`` ->
  ``to_executorch``.
* int8 (``--int8``): the pt2e flow (torchao 0.18 ``prepare_pt2e``/``convert_pt2e``) with
  executorch's ``XNNPACKQuantizer`` on the weight layers (linear, conv2d: int8 per-channel
  symmetric weights, int8 per-tensor activations, histogram observers; why not add/mul/cat:
  :func:`weight_layer_quantizer`), calibrated on the same PyTorch trajectory latents as the
  ONNX target (``ExportContext.calibration``: every timestep for ``step``, the final latents for
  ``decoder``); ``generator_<N>`` unrolls the quantized step and decoder (weights stored
  once). Calibration runs on a dynamic-batch export so whole calibration batches go through at
  once; the converted module is then re-exported at the fixed batch and lowered.
* Metadata inside each program, as constant methods: ``lrf_graph`` and ``lrf_metadata`` (UTF-8
  JSON as a uint8 tensor: graph, bundle schema, input/output names, dtypes and shapes, steps,
  precision, checkpoint sha256), ``lrf_batch`` and ``lrf_steps`` (ints).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lrf.exporter.targets import (ExportContext, GraphRecord, Target, quiet,
                                  register_target)
from lrf.exporter.wrappers import GeneratorGraph, example_inputs, graph_io

METADATA_METHODS = ("lrf_graph", "lrf_metadata", "lrf_batch", "lrf_steps")


def _quiet():
    """torch.export and the ExecuTorch lowering log warnings and progress on every graph."""
    return quiet("torch.export", "torch._export", "executorch", "torch.fx.experimental",
                 "torchao")


def et_batch(options: dict) -> int:
    batch = options.get("batch")
    batch = 1 if batch is None else batch
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"executorch batch must be an integer >= 1, got {batch!r}")
    return batch


def constant_methods(name: str, inputs: list[dict], outputs: list[dict], steps: int | None,
                     batch: int, precision: str, checkpoint_sha256: str) -> dict:
    """The metadata stored in the program as constant methods (see the module docstring)."""
    meta = {"graph": name, "bundle_schema": "lrf-bundle/1", "precision": precision,
            "batch": batch, "steps": steps, "checkpoint_sha256": checkpoint_sha256,
            "inputs": inputs, "outputs": outputs}
    blob = json.dumps(meta, sort_keys=True).encode("utf-8")
    return {"lrf_graph": name, "lrf_batch": batch, "lrf_steps": steps or 0,
            "lrf_metadata": torch.tensor(list(blob), dtype=torch.uint8)}


def _calibration_feeds(name: str, ctx: ExportContext) -> list[tuple[torch.Tensor, ...]]:
    """The same trajectory data the ONNX target calibrates on, as positional tensors."""
    cal = ctx.calibration
    feeds = cal.step_feeds() if name == "step" else cal.decoder_feeds()
    order = ctx.graphs[name].input_names
    return [tuple(torch.from_numpy(f[k]) for k in order) for f in feeds]


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


def quantize_int8(name: str, module: torch.nn.Module, ctx: ExportContext
                  ) -> tuple[torch.nn.Module, dict]:
    """pt2e int8 with the XNNPACK quantizer, calibrated on trajectories; returns the converted
    module (export it at the fixed batch) and the manifest's ``quantization`` entry."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if ctx.calibration is None:
        raise ValueError("int8 export needs calibration trajectories (ExportContext.calibration)")
    feeds = _calibration_feeds(name, ctx)
    # traced at batch 2 (a size-1 example would be specialised), the batch left dynamic
    example2 = example_inputs(name, ctx.ckpt, batch=2, latent_size=ctx.latent_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    dyn = {n: ({0: batch} if t.dim() else None)
           for n, t in zip(ctx.graphs[name].input_names, example2)}
    quantizer = weight_layer_quantizer()
    with _quiet():
        gm = torch.export.export(module, example2, dynamic_shapes=dyn).module()
        prepared = prepare_pt2e(gm, quantizer)
        with torch.no_grad():
            for f in feeds:
                prepared(*f)
        converted = convert_pt2e(prepared)
    cal = ctx.calibration
    return converted, {
        "method": "pt2e_static", "quantizer": "XNNPACKQuantizer", "weight_type": "int8",
        "per_channel": True, "activation_type": "int8 (per tensor, affine)",
        "observer": "histogram", "op_types": list(QUANTIZED_OPS),
        "float_ops": "everything else (add, mul, cat, attention matmuls, norms); the "
                     "quantizer's add/mul/cat patterns crash the executorch 1.4.1 runtime "
                     "for this model",
        "calibration": {"source": "pytorch_trajectories", "seeds": [cal.seeds[0], cal.seeds[-1]],
                        "images": cal.batch, "labels": "seed i -> class i % num_classes",
                        "steps": cal.steps, "guidance": cal.guidance, "timesteps": "all",
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


def dynamic_batch_error(name: str, module: torch.nn.Module, ckpt,
                        batches=(1, 3)) -> str | None:
    """Lower graph ``name`` with a dynamic batch (traced at 2) and run it at ``batches``; the
    first failure as text (None if every batch ran and matched eager within 1e-3). Kept to show,
    and test, why the target writes one program per batch size."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    batch = torch.export.Dim("batch", min=1, max=64)
    example = example_inputs(name, ckpt, batch=2)
    dyn = {n: ({0: batch} if t.dim() else None) for n, t in zip(module.input_names, example)}
    try:
        with _quiet(), torch.no_grad():
            ep = torch.export.export(module, example, dynamic_shapes=dyn)
            prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
            buffer = prog.to_executorch().buffer
    except Exception as e:  # any failure is the finding; its type varies across versions
        return f"lowering: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    method = Runtime.get().load_program(buffer).load_method("forward")
    for b in batches:
        inputs = example_inputs(name, ckpt, batch=b, seed=1)
        try:
            out = method.execute(list(inputs))[0]
        except Exception as e:
            return f"batch {b}: {type(e).__name__}: {e}"
        with torch.no_grad():
            ref = module(*inputs)
        if tuple(out.shape) != tuple(ref.shape) or \
                float((out.float() - ref.float()).abs().max()) > 1e-3:
            return f"batch {b}: output differs from eager"
    return None


@register_target("executorch")
class ExecuTorchTarget(Target):
    """``.pte`` programs (XNNPACK) run by the ``executorch`` backend; fixed batch per program."""

    backend = "executorch"
    precisions = ("fp32", "int8")
    image_format = "uint8_nhwc"

    def export(self, ctx: ExportContext) -> dict[str, GraphRecord]:
        from lrf.models.checkpoint import checkpoint_sha256
        from lrf.runtime.backend_executorch import check_program

        batch = et_batch(ctx.options)
        sha = checkpoint_sha256(ctx.ckpt.path)
        records, quantized = {}, {}
        for name, module in ctx.graphs.items():
            inputs, outputs = graph_io(name, ctx.ckpt, ctx.latent_size, dynamic_batch=False,
                                       dynamic_decoder_hw=False, batch=batch)
            example = example_inputs(name, ctx.ckpt, batch=batch, latent_size=ctx.latent_size)
            steps = int(name.split("_")[1]) if name.startswith("generator_") else None
            quant = {"method": "none"}
            if ctx.precision == "int8" and steps is None:
                ctx.log(f"executorch int8: {name}: calibrating (pt2e, XNNPACKQuantizer)")
                module, quant = quantize_int8(name, module, ctx)
                quantized[name] = (module, quant)
            elif ctx.precision == "int8":
                # The fused graph unrolls the *quantized* step and decoder modules: their int8
                # weights are the same tensors at every step, so the program stores them once
                # (quantizing the unrolled graph gives every step its own copy), and the fused
                # numerics equal the step graph's.
                module = GeneratorGraph(quantized["step"][0], quantized["decoder"][0], steps,
                                        float(ctx.ckpt.sampling.get("shift", 1.0)))
                quant = {**quantized["step"][1], "fused_from": ["step", "decoder"]}
            ctx.log(f"executorch: lowering {name} (XNNPACK, batch {batch})")
            prog = lower(module, example, constant_methods(name, inputs, outputs, steps, batch,
                                                           ctx.precision, sha))
            path = ctx.out_dir / f"{name}.pte"
            path.write_bytes(prog.buffer)
            check_program(path, inputs, outputs, name)
            records[name] = GraphRecord(
                name=name, file=path.name, format="pte", inputs=inputs, outputs=outputs,
                steps=steps, quantization=quant,
                extra={"batch": batch, "delegate": "XnnpackBackend",
                       "metadata_methods": list(METADATA_METHODS)})
        return records

    def default_fused_steps(self, default_steps: int, precision: str) -> set[int]:
        """None: a fused graph here is N unrolled copies of the step *program* (executorch 1.4.1
        has no delegated loop: ``scan`` runs its body on portable kernels and cannot hold
        quantized ops). Weights are stored once, but each step adds ~150 KB (fp32) / ~175 KB
        (int8) of instructions for the cifar10 model, so N = 50 is 1.66x (fp32) / 3.7x (int8)
        step + decoder, over the 1.2x budget. The runtime's stepwise path runs the same step
        program N times instead; ``--steps N`` still exports a fused graph, under the gate."""
        return set()

    def tool_versions(self) -> dict[str, str]:
        from importlib import metadata

        out = {}
        for dist in ("executorch", "torchao"):
            try:
                out[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                out[dist] = "not installed"
        return out


def read_metadata(path: Path) -> dict:
    """The ``lrf_metadata`` constant method of a ``.pte`` file, parsed (for checks and tools)."""
    from lrf.runtime.backend_executorch import program_metadata

    return program_metadata(path)
