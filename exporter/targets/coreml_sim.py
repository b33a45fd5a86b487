"""Parity of Core ML packages on Linux, where Core ML cannot predict: a PyTorch simulation of each
saved package's exact weights and compute precision, measured against the float32 reference.
Every result carries ``"simulated": true``; the real predict parity runs on macOS
(``.github/workflows/coreml.yml``, ``tests/test_export_coreml.py -m macos``).

What is simulated, exactly:

* weights: every weight the saved package stores under a parameter's name (fp16/fp32 consts,
  int8 and palettised constexprs) is read back (coremltools' MIL reader) and runs in the
  simulation, so a package that is changed after export is measured as it is. Each is also
  checked against the checkpoint, re-derived independently: consts are the parameter rounded
  to the compute dtype, int8 weights the parameter re-quantised the way coremltools does (per
  output channel, symmetric, scale = (max|w| - -max|w|) / 254 in the stored precision, round
  half to even, clamp to +-127); a mismatch fails the gate. Palettised weights are taken as
  stored (k-means is not re-run).
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
from lrf.exporter.targets import GraphRecord, quiet
from lrf.models.reference import from_uint8, to_uint8

COMPRESSED_OPS = ("constexpr_affine_dequantize", "constexpr_lut_to_dense",
                  "constexpr_blockwise_shift_scale")
DESCRIPTION = ("PyTorch simulation of the saved packages: their stored weights (checked against "
               "the checkpoint's, int8 re-quantised independently) in their compute precision; "
               "not Core ML's kernels")


def package_weights(path) -> dict[str, dict]:
    """The weights stored in the saved package at ``path``, by the parameter key the converter
    named them after (``p_<module path with _>``, see :func:`param_key`): one dict per const or
    constexpr op with its ``name``, ``op`` type, ``dense`` float32 values and, for affine int8,
    ``axis`` and ``scale``."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto import load as milproto

    with quiet("coremltools", stderr=True):  # its version notes: not actionable
        ml = ct.models.MLModel(str(path), skip_model_load=True)
        spec = ml.get_spec()
        prog = milproto.load(spec, spec.specificationVersion, ml.weights_dir)
    out = {}
    for fn in prog.functions.values():
        for op in fn.operations:
            if not op.name.startswith("p_") or (op.op_type != "const"
                                                and op.op_type not in COMPRESSED_OPS):
                continue
            key = op.name
            for suffix in ("_quantized", "_palettized", "_to_fp16"):
                key = key.removesuffix(suffix)
            value = op.materialized_val_inference() if op.op_type in COMPRESSED_OPS \
                else op.outputs[0].val
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                continue
            w = {"name": op.name, "op": op.op_type, "dense": value.astype(np.float32)}
            if op.op_type == "constexpr_affine_dequantize":
                if np.any(op.zero_point.val != 0):
                    raise ValueError(f"{path}: {op.name} is not symmetric (zero point != 0)")
                w.update(axis=int(op.axis.val), scale=np.asarray(op.scale.val))
            out[key] = w
    return out


def param_key(name: str) -> str:
    """The name torch.export (and so the Core ML converter) gives parameter ``name``."""
    return "p_" + name.replace(".", "_")


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


def simulate_module(module: torch.nn.Module, weights: dict[str, dict], compute: str,
                    where: str) -> tuple[torch.nn.Module, dict]:
    """A copy of ``module`` in the compute dtype running the package's own stored weights.

    Each stored weight is also checked against the checkpoint's, re-derived here independently:
    fp16/fp32 consts must be the parameter rounded to the compute dtype, int8 ones the
    parameter re-quantised as coremltools does (within one quantisation step, a rounding tie);
    a weight that is not (a corrupted or foreign package) raises :class:`parity.ParityError`.
    Palettised weights are taken as stored (k-means is not re-run). Parameters the converter
    folded into other constants keep the checkpoint's values (counted in the report)."""
    dtype = torch.float16 if compute == "fp16" else torch.float32
    sim = copy.deepcopy(module).to(dtype).eval()
    params = dict(sim.named_parameters(remove_duplicate=True))
    worst, methods, found, bad = 0.0, set(), 0, []
    for pname, p in params.items():
        w = weights.get(param_key(pname))
        if w is None:
            continue
        views = _views(p.detach(), tuple(w["dense"].shape))
        if not views:
            raise parity.ParityError([f"{where}: stored weight {w['name']} has shape "
                                      f"{list(w['dense'].shape)}, parameter {pname} "
                                      f"{list(p.shape)}"])
        layout, view = views[0]
        dense = torch.from_numpy(w["dense"]).to(dtype)
        if w["op"] == "constexpr_affine_dequantize":
            expected, bound = quantize_dequantize_int8(view, w["axis"]), \
                float(np.abs(w["scale"]).max()) * 1.01
        elif w["op"] == "const":
            expected, bound = view, 0.0
        else:
            expected, bound = None, None
        if expected is not None:
            err = float((expected.float() - dense.float()).abs().max())
            worst = max(worst, err)
            if err > bound:
                bad.append(f"{where}: weight {pname} differs from the checkpoint's by "
                           f"{err:.3g} (allowed {bound:.3g}): a corrupted or foreign package")
        methods.add(w["op"])
        found += 1
        with torch.no_grad():
            p.copy_(_back(layout, dense, p))
    if bad:
        raise parity.ParityError(bad)
    compressed = sum(w["op"] in COMPRESSED_OPS for w in weights.values())
    return sim, {"stored_weights": len(weights), "from_package": found,
                 "compressed_weights": compressed, "max_abs_vs_checkpoint": worst,
                 "ops": sorted(methods)}


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


class SimulatedRunner(parity.Runner):
    """The parity gate's view of a Core ML bundle on Linux: each saved package simulated in
    PyTorch (:func:`simulate_module` with the package's weights, in its compute precision),
    bound by role like ``lrf.runtime`` binds a real bundle."""

    simulated = True
    description = DESCRIPTION

    def __init__(self, out_dir, graphs: dict[str, torch.nn.Module],
                 records: dict[str, GraphRecord], compute: str):
        self.dtype = torch.float16 if compute == "fp16" else torch.float32
        self.float32_compute = compute == "fp32"
        self.records = records
        self.sims, self.weights = {}, {}
        for name, rec in records.items():
            self.sims[name], self.weights[name] = simulate_module(
                graphs[name], package_weights(out_dir / rec.file), compute, rec.file)
        w = records["denoise"].extra["window"]
        self.window = (int(w["min"]), w["max"])
        self.has_encoder = "encoder" in records

    def _run(self, name: str, **by_role: np.ndarray) -> torch.Tensor:
        rec = self.records[name]
        return run_simulated(self.sims[name], self.dtype,
                             *[by_role[t["role"]] for t in rec.inputs])

    def denoise(self, latent, timesteps, label, guidance):
        return self._run("denoise", latent=latent, timesteps=timesteps, label=label,
                         guidance=guidance).numpy()

    def decode(self, latent):
        return to_uint8(self._run("decoder", latent=latent))   # float_nchw -> the uint8 rule

    def encode(self, image):
        spec = next(t for t in self.records["encoder"].inputs if t["role"] == "image")
        x = image if spec["dtype"] == "uint8" else from_uint8(image).numpy()
        return self._run("encoder", image=x).numpy()
