"""Parity of Core ML packages on Linux, where Core ML cannot predict: a PyTorch simulation of each
saved package's exact weights and compute precision, measured against the float32 reference.
Every result carries ``"simulated": true``; the real predict parity runs on macOS
(``.github/workflows/coreml.yml``, ``tests/test_export_coreml.py -m macos``).

What is simulated, exactly:

* weights: every weight the package stores compressed is read back from the *saved* package
  (coremltools' MIL reader) and matched to the PyTorch parameter it came from. int8 weights are
  re-quantised here, independently, the way coremltools does it (per output channel, symmetric,
  scale = (max|w| - -max|w|) / 254 in the stored precision, round half to even, clamp to +-127)
  and must equal the package's values (checked; the largest difference is recorded).
  Palettised weights use the package's own look-up table and indices (k-means is not re-run).
* compute: fp16 packages run the PyTorch graph in float16: weights in fp16 and every op's result
  rounded to fp16 (:class:`Float16Everywhere`, which also overrides the model's explicit
  ``.float()`` casts, as Core ML's fp16 pass does); CPU kernels may accumulate in fp32, as
  Core ML's GPU does. fp32 packages run in float32.

Not simulated: Core ML's kernels and op fusions, and the Neural Engine's arithmetic.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from lrf.exporter import parity
from lrf.exporter.targets import ExportContext, GraphRecord
from lrf.exporter.wrappers import image_to_uint8_nhwc
from lrf.runtime import scheduler

COMPRESSED_OPS = ("constexpr_affine_dequantize", "constexpr_lut_to_dense",
                  "constexpr_blockwise_shift_scale")
DESCRIPTION = ("PyTorch simulation: the package's compressed weights (int8 re-quantised "
               "independently and checked equal; palettised read from the package) and its "
               "compute precision; not Core ML's kernels")


def package_weights(path) -> list[dict]:
    """The compressed weights stored in the saved package at ``path``: one dict per constexpr
    op with its ``name``, ``op`` type, ``dense`` float32 values and, for affine int8, ``axis``,
    ``scale`` and ``quantized`` data."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto import load as milproto

    from lrf.exporter.targets.coreml import _quiet

    with _quiet():
        ml = ct.models.MLModel(str(path), skip_model_load=True)
        spec = ml.get_spec()
        prog = milproto.load(spec, spec.specificationVersion, ml.weights_dir)
    out = []
    for fn in prog.functions.values():
        for op in fn.operations:
            if op.op_type not in COMPRESSED_OPS:
                continue
            w = {"name": op.name, "op": op.op_type,
                 "dense": np.asarray(op.materialized_val_inference(), dtype=np.float32)}
            if op.op_type == "constexpr_affine_dequantize":
                if np.any(op.zero_point.val != 0):
                    raise ValueError(f"{path}: {op.name} is not symmetric (zero point != 0)")
                w.update(axis=int(op.axis.val), scale=np.asarray(op.scale.val),
                         quantized=np.asarray(op.quantized_data.val))
            out.append(w)
    return out


def quantize_dequantize_int8(w: torch.Tensor, axis: int) -> torch.Tensor:
    """coremltools' ``linear_symmetric`` int8 per-channel quantisation of ``w`` along ``axis``,
    then dequantisation, computed in ``w``'s dtype like coremltools computes on the stored const
    (float16 for fp16 packages)."""
    dims = [d for d in range(w.dim()) if d != axis]
    max_abs = w.abs().amax(dim=dims, keepdim=True)
    scale = (max_abs - (-max_abs)) / 254                   # (q_max - q_min) = 127 - (-127)
    q = torch.where(scale > 0, torch.round(w / torch.where(scale > 0, scale, 1)), 0)
    return q.clamp(-127, 127) * scale


def _views(p: torch.Tensor, shape: tuple) -> list[tuple[str, torch.Tensor]]:
    """Layouts in which a parameter may be stored in the package."""
    out = []
    if tuple(p.shape) == shape:
        out.append(("same", p))
    if p.dim() == 2 and tuple(p.shape[::-1]) == shape:
        out.append(("transposed", p.t()))
    if not out and p.numel() == int(np.prod(shape)) and p.dim() != len(shape):
        out.append(("reshaped", p.reshape(shape)))
    return out


def _back(layout: str, value: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return value.t() if layout == "transposed" else value.reshape(p.shape)


def simulate_module(module: torch.nn.Module, weights: list[dict], compute: str, where: str
                    ) -> tuple[torch.nn.Module, dict]:
    """A copy of ``module`` in the compute dtype with the package's compressed weights in place;
    returns it and a report (weights matched, largest difference from the package)."""
    dtype = torch.float16 if compute == "fp16" else torch.float32
    sim = copy.deepcopy(module).to(dtype).eval()
    params = dict(sim.named_parameters(remove_duplicate=True))
    worst, methods = 0.0, set()
    for w in weights:
        shape, dense = tuple(w["dense"].shape), torch.from_numpy(w["dense"]).to(dtype)
        best = None
        for pname, p in params.items():
            for layout, view in _views(p.detach(), shape):
                if w["op"] == "constexpr_affine_dequantize":
                    value = quantize_dequantize_int8(view, w["axis"])
                else:      # palettised: the package's own LUT values (k-means is not re-run)
                    value = dense
                err = float((value.float() - dense.float()).abs().max())
                # which parameter: the one closest to the package's values before compression
                dist = float((view.float() - dense.float()).abs().mean()
                             / (view.float().abs().mean() + 1e-12))
                if best is None or dist < best[0]:
                    best = (dist, pname, layout, value, err)
        if best is None or best[0] > 0.5:
            raise ValueError(f"{where}: compressed weight {w['name']} {list(shape)} matches no "
                             "PyTorch parameter; the simulation would be incomplete")
        dist, pname, layout, value, err = best
        if w["op"] == "constexpr_affine_dequantize":
            # re-quantised independently: it must be the package's weight (1 step = rounding tie)
            step = float(np.abs(w["scale"]).max())
            if err > step * 1.01:
                raise ValueError(f"{where}: {w['name']} re-quantised here differs from the "
                                 f"package by {err:.3g} (> one quantisation step {step:.3g})")
            worst = max(worst, err)
        methods.add(w["op"])
        p = params[pname]
        with torch.no_grad():
            p.copy_(_back(layout, value, p))
    return sim, {"compressed_weights": len(weights), "matched": len(weights),
                 "max_abs_vs_package": worst, "ops": sorted(methods)}


class Float16Everywhere(TorchFunctionMode):
    """Every float32 tensor an op returns is rounded to float16, as Core ML's fp16 program stores
    every intermediate; catches explicit ``.float()`` casts in the model (e.g. the timestep
    embedding's ``t.float() * 1000``), which Core ML's fp16 pass also turns into fp16."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return _half(func(*args, **(kwargs or {})))


def _half(x):
    if isinstance(x, torch.Tensor) and x.dtype == torch.float32:
        return x.half()
    if isinstance(x, (tuple, list)):
        return type(x)(_half(v) for v in x)
    return x


def run_simulated(sim: torch.nn.Module, dtype: torch.dtype, *arrays: np.ndarray
                  ) -> torch.Tensor:
    """``sim`` on numpy inputs (int32 stays int32), in ``dtype``; the output as float32."""
    args = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    args = [a if a.dtype == torch.int32 else a.to(dtype) for a in args]
    with torch.no_grad():
        if dtype == torch.float16:
            with Float16Everywhere():
                out = sim(*args)
        else:
            out = sim(*args)
    return out.float()


def _images(x: torch.Tensor) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 NHWC by the manifest's rounding rule."""
    return image_to_uint8_nhwc(x).numpy()


def simulated_parity(ctx: ExportContext, records: dict[str, GraphRecord], compute: str
                     ) -> tuple[dict[str, dict], dict, list[str]]:
    """(per-graph parity, stepwise parity, failures) for a Core ML bundle in ``ctx.out_dir``,
    like :func:`lrf.exporter.parity.measure` but on the simulation. Bars: images as the
    precision's; the fp32 step velocity bar only applies to uncompressed fp32 compute (fp16 and
    compressed steps are judged by the images they produce)."""
    refs = getattr(ctx, "references", None)
    if not refs:
        raise ValueError("simulated parity needs the reference trajectories "
                         "(ExportContext.references)")
    dtype = torch.float16 if compute == "fp16" else torch.float32
    default_steps = int(ctx.ckpt.sampling["steps"])
    bar = parity.IMAGE_PSNR_DB[ctx.precision]
    exact = ctx.precision == "fp32" and compute == "fp32"
    failures: list[str] = []
    sims, reports = {}, {}
    for name, rec in records.items():
        weights = package_weights(ctx.out_dir / rec.file)
        sims[name], reports[name] = simulate_module(ctx.graphs[name], weights, compute, rec.file)
    label = {"simulated": True, "simulation": DESCRIPTION,
             "compute_precision": "float16" if compute == "fp16" else "float32"}
    out: dict[str, dict] = {}
    ref = refs[default_steps]
    run = run_simulated
    vel = np.stack([run(sims["step"], dtype, f["latent"], f["t"], f["label"], f["guidance"])
                    .numpy() for f in ref.step_feeds()])
    step = {**parity.tensor_metrics(ref.velocities, vel), **label, "weights": reports["step"]}
    step["points"] = int(ref.velocities.shape[0] * ref.velocities.shape[1])
    if exact:
        step["bar_rel_max_abs"] = parity.STEP_REL_MAX_ABS
        step["passed"] = bool(step["finite"] and step["rel_max_abs"] <= parity.STEP_REL_MAX_ABS)
        if not step["passed"]:
            failures.append(f"step (simulated): relative max-abs velocity error "
                            f"{step['rel_max_abs']} > {parity.STEP_REL_MAX_ABS} bar")
    else:
        step["passed"] = bool(step["finite"])
        if not step["finite"]:
            failures.append("step (simulated): non-finite velocities")
    out["step"] = step
    dec = _images(run(sims["decoder"], dtype, ref.latents[-1]))
    out["decoder"] = {**parity._gate_image(parity.image_metrics(ref.images, dec), bar,
                                           "decoder (simulated)", failures),
                      **label, "weights": reports["decoder"]}
    for name in records:
        if name.startswith("generator_"):
            r = refs[int(name.split("_")[1])]
            guidance = np.full((r.batch,), r.guidance, dtype=np.float32)
            img = _images(run(sims[name], dtype, r.latents[0], r.labels.astype(np.int32),
                              guidance))
            out[name] = {**parity._gate_image(parity.image_metrics(r.images, img), bar,
                                              f"{name} (simulated)", failures),
                         **label, "weights": reports[name]}
    # stepwise: the app's loop (float32 Euler in app code) around the simulated step graph
    z = ref.latents[0]
    ts = scheduler.timesteps(default_steps, ref.shift)
    y = ref.labels.astype(np.int32)
    g = np.full((ref.batch,), ref.guidance, dtype=np.float32)
    for i in range(default_steps):
        t = np.full((ref.batch,), ts[i], dtype=np.float32)
        v = run(sims["step"], dtype, z, t, y, g).numpy()
        z = scheduler.euler_update(z, ts[i], ts[i + 1], v)
    img = _images(run(sims["decoder"], dtype, z))
    stepwise = {**parity._gate_image({"steps": default_steps,
                                      **parity.image_metrics(ref.images, img)}, bar,
                                     f"stepwise (simulated, {default_steps} steps)", failures),
                **label}
    return out, stepwise, failures
