"""int8 for the ONNX target: per graph, quantisation variants are built and measured against
the PyTorch reference on held-out data; every measured variant goes into the manifest.

Variants:
  * ``weight_only``: int8 per-channel symmetric weights (MatMul B inputs, Conv weights), each
    dequantised by one ``DequantizeLinear`` in the top graph (in ``denoise``, before the
    ``Loop``). The runtime folds them into float constants at load, so every call computes in
    float32 with exactly the fp32 graph's kernels; the bundle stores int8.
  * ``weight_only_int4``: the same with int4 weights, one scale per 32 weights along the
    reduction axis (opset 21 blocked ``DequantizeLinear``): about 0.6 bytes per weight.
  * ``dynamic_int4`` (``denoise``): the same int4 storage, but every MatMul at least
    ``INT8_COMPUTE_MIN`` wide computes in integers, in the Loop body too: the weight is
    requantised to int8 per output column at load, the activations per call, and onnxruntime runs
    each as one ``DynamicQuantizeMatMul`` kernel.
  * ``static_qdq`` (onnxruntime): QDQ, int8 per-channel weights, uint8 activations calibrated
    (MinMax) on the tensors the graph sees in real use; MatMul/Gemm/Conv with a constant weight.
    The runtime keeps onnxruntime's QDQ fusion on for these, so they run as int8 kernels.
  * ``static_qdq_float_edges``: the same with the first and last weight layers kept float.
  * ``dynamic`` (onnxruntime): int8 weights, activations quantised at run time.

``denoise`` has the first three variants (onnxruntime's quantisers do not reach into a Loop
body; :mod:`lrf.exporter.onnx_int8_weights` writes these), ``decoder`` and ``encoder`` all but
``dynamic_int4``. Every graph chooses (:func:`choose`) by a deterministic cost, never by CPU
time on a shared machine: among the variants at least ``COMFORT_MARGIN_DB`` above the int8 bar,
the fewest matmul/conv kernels left in float32, then the fewest onnxruntime kernels per call,
the smaller file, the more accurate, the name. Two exports of one checkpoint therefore ship the
same graphs. The class-fidelity gate then measures the whole bundle.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx

from lrf.exporter.onnx_int8_weights import INT4_BLOCK, INT8_COMPUTE_MIN, weight_only
from lrf.exporter.metrics import IMAGE_PSNR_DB, image_metrics, tensor_metrics
from lrf.exporter.targets import ExportContext

OP_TYPES = ["MatMul", "Gemm", "Conv"]
COMFORT_MARGIN_DB = 10.0  # a variant this far above the int8 image bar is accurate enough
INT8_VARIANTS = ("weight_only", "weight_only_int4", "dynamic_int4", "static_qdq",
                 "static_qdq_float_edges", "dynamic")


# ---------------------------------------------------------------------------- onnxruntime QDQ
class _Feeds:
    """onnxruntime CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: list[dict]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def _weight_layers(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul/Gemm/Conv nodes with a constant weight, in graph order."""
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type in OP_TYPES and len(n.input) > 1 and n.input[1] in inits]


def _static(src: Path, dst: Path, feeds: list[dict], exclude: list[str]) -> None:
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    quantize_static(str(src), str(dst), _Feeds(feeds), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=OP_TYPES, per_channel=True, reduce_range=False,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"MatMulConstBOnly": True,
                                   "DefaultTensorType": onnx.TensorProto.FLOAT})


def _dynamic(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=OP_TYPES, per_channel=True,
                     reduce_range=False, weight_type=QuantType.QInt8,
                     extra_options={"MatMulConstBOnly": True,
                                    "DefaultTensorType": onnx.TensorProto.FLOAT})


def _weight_only_file(src: Path, dst: Path, bits: int = 8, int8_compute: bool = False) -> None:
    model = onnx.load(str(src))
    weight_only(model, bits, int8_compute=int8_compute)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


# ---------------------------------------------------------------------------- scoring
def _method(variant: str) -> str:
    """The manifest's ``quantization.method`` of a variant (what the runtime's session set-up
    keys on: ``lrf.runtime.backend_onnxruntime.folds_weights``)."""
    return {"weight_only": "weight_only", "weight_only_int4": "weight_only", "dynamic": "dynamic",
            "dynamic_int4": "dynamic", "fp32": "none"}.get(variant, "static_qdq")


def _session(path: Path, variant: str = "fp32"):
    from lrf.runtime.backend_onnxruntime import folds_weights, make_session

    # scoring is not latency-bound: one thread; the session set-up the runtime will use
    return make_session(path, threads=1,
                        fold_weights=folds_weights({"method": _method(variant)}))


def kernels_per_call(path: Path, feed: dict, variant: str = "fp32") -> dict:
    """onnxruntime kernels one call runs (profiler events, one thread, the runtime's session
    set-up), in all and those that are float32 matmuls/convolutions: deterministic for a given
    graph and onnxruntime version."""
    from lrf.runtime.backend_onnxruntime import folds_weights
    from lrf.runtime.ort_profile import kernel_profile

    prof = kernel_profile(path, feed, 1, folds_weights({"method": _method(variant)}))
    return {"kernels_per_call": prof["kernels_per_call"],
            "float_compute_kernels_per_call": prof["float_compute_kernels_per_call"]}


def _score(name: str, path: Path, sel, enc, float_decoder: Path, variant: str = "fp32") -> dict:
    """Image PSNR of candidate ``path`` on the held-out set ``sel``: ``denoise`` over the whole
    schedule in one call, then the float decoder; ``decoder`` on the reference's final latents;
    ``encoder`` by the round trip through the float decoder (against PyTorch's encode + decode of
    the same images, ``enc``). Plus the kernels of one call (batch 1)."""
    sess, dec = _session(path, variant), _session(float_decoder)
    y = sel.labels.astype(np.int32)
    if name == "denoise":
        g = np.full((sel.batch,), sel.guidance, np.float32)
        z = sess.run(None, {"latent": sel.latents[0], "timesteps": sel.times, "label": y,
                            "guidance": g})[0]
        out = {"value": image_metrics(sel.images, dec.run(None, {"latent": z})[0])["psnr_db"],
               "final_latent_snr_db": tensor_metrics(sel.latents[-1], z)["snr_db"]}
        feed = {"latent": sel.latents[0][:1], "timesteps": sel.times[:2], "label": y[:1],
                "guidance": g[:1]}
    elif name == "decoder":
        out = {"value": image_metrics(sel.images, sess.run(None, {"latent": sel.latents[-1]})[0])
               ["psnr_db"]}
        feed = {"latent": sel.latents[-1][:1]}
    else:
        ref = enc
        z = sess.run(None, {"image": ref.images})[0]
        out = {"value": image_metrics(ref.roundtrip, dec.run(None, {"latent": z})[0])["psnr_db"],
               "latent_snr_db": tensor_metrics(ref.latents, z)["snr_db"]}
        feed = {"image": ref.images[:1]}
    out.update(kernels_per_call(path, feed, variant))
    return out


def choose(candidates: list[dict], comfortable_db: float) -> dict:
    """Among candidates with image PSNR >= ``comfortable_db``: the fewest matmul/convolution
    kernels left in float32 (int8 arithmetic is what makes an int8 graph faster), then the fewest
    kernels per call, the smaller file, the higher PSNR, the name. If none is comfortable: the
    most accurate."""
    ok = [c for c in candidates if c["value"] >= comfortable_db]
    if not ok:
        return max(candidates, key=lambda c: (c["value"], -c["bytes"], c["name"]))
    return min(ok, key=lambda c: (c["float_compute_kernels_per_call"], c["kernels_per_call"],
                                  c["bytes"], -c["value"], c["name"]))


def _calibration_feeds(name: str, ctx: ExportContext) -> list[dict]:
    cal = ctx.calibration
    return cal.decoder_feeds() if name == "decoder" else cal.encoder_feeds()


def quantize_graphs(paths: dict[str, Path], ctx: ExportContext) -> dict[str, dict]:
    """Replace each fp32 file in ``paths`` (``denoise``, ``decoder``, ``encoder``) by its int8
    variant; return the manifest ``quantization`` entry per graph.

    ``ctx.options["int8_variant"]`` (``lrf-export --int8-variant``) builds that variant only and
    skips the scoring; a graph without that variant (``denoise`` has no QDQ or ``dynamic``, the
    codec graphs no ``dynamic_int4``) takes ``weight_only``. The parity gate still measures the
    result."""
    root = logging.getLogger()
    level = root.level
    # onnxruntime's quantiser logs "consider pre-processing" on the root logger: not actionable
    # (we measure the result); the level is restored on the way out
    root.setLevel(max(level, logging.ERROR))
    try:
        return _quantize_graphs(paths, ctx)
    finally:
        root.setLevel(level)


def _quantize_graphs(paths: dict[str, Path], ctx: ExportContext) -> dict[str, dict]:
    fixed = ctx.options.get("int8_variant")
    if fixed is not None and fixed not in INT8_VARIANTS:
        raise ValueError(f"--int8-variant {fixed!r}: choose one of {', '.join(INT8_VARIANTS)}")
    if ctx.calibration is None or (ctx.selection is None and not fixed):
        raise ValueError("int8 export needs calibration and selection trajectories")
    from lrf.exporter.calibration import record_encodings
    comfortable = IMAGE_PSNR_DB["int8"] + COMFORT_MARGIN_DB
    sel = ctx.selection
    enc = record_encodings(ctx.ckpt, sel.images) if sel is not None else None
    results = {}
    with tempfile.TemporaryDirectory(prefix="lrf-int8-") as scratch:
        scratch = Path(scratch)
        float_decoder = scratch / "decoder.fp32.onnx"
        shutil.copyfile(paths["decoder"], float_decoder)
        for name, path in paths.items():
            src = scratch / f"{name}.fp32.onnx"
            shutil.copyfile(path, src)
            edges = _weight_layers(onnx.load(str(src)))
            edges = [edges[0], edges[-1]] if edges else []
            builders = {"weight_only": lambda d: _weight_only_file(src, d),
                        "weight_only_int4": lambda d: _weight_only_file(src, d, 4)}
            if name == "denoise":
                builders["dynamic_int4"] = lambda d: _weight_only_file(src, d, 4, True)
            else:
                builders.update({
                    "static_qdq": lambda d: _static(src, d, _calibration_feeds(name, ctx), []),
                    "static_qdq_float_edges":
                        lambda d: _static(src, d, _calibration_feeds(name, ctx), edges),
                    "dynamic": lambda d: _dynamic(src, d)})
            wanted = [fixed if fixed in builders else "weight_only"] if fixed else list(builders)
            candidates = []
            for cname in wanted:
                dst = scratch / f"{name}.{cname}.onnx"
                ctx.log(f"onnx int8: {name}: building {cname}")
                builders[cname](dst)
                scores = {} if fixed else _score(name, dst, sel, enc, float_decoder, cname)
                candidates.append({"name": cname, "metric": "image_psnr_db", **scores,
                                   "bytes": dst.stat().st_size, "file": dst})
            best = candidates[0] if fixed else choose(candidates, comfortable)
            shutil.copyfile(best["file"], path)
            fp32 = None if fixed else _score(name, src, sel, enc, float_decoder)
            if not fixed:
                ctx.log(f"onnx int8: {name}: chose {best['name']} ({best['value']:.2f} dB, "
                        f"{best['kernels_per_call']} kernels/call; fp32 {fp32['value']:.2f} dB)")
            results[name] = _entry(name, best, candidates, fixed, comfortable, fp32, edges, ctx)
    return results


def _entry(name, best, candidates, fixed, comfortable, fp32, edges, ctx) -> dict:
    v = best["name"]
    method = _method(v)
    int4 = v in ("weight_only_int4", "dynamic_int4")
    entry = {"method": method, "variant": v, "weight_type": "int4" if int4 else "int8",
             "per_channel": True,
             **({"block_size": INT4_BLOCK, "int8_fallback": f"weights whose reduction length "
                 f"is not a multiple of {INT4_BLOCK}"} if int4 else {}),
             "op_types": OP_TYPES,
             "activation_type": {"weight_only": "float32 (weights folded to float at load)",
                                 "dynamic": "dynamic uint8"}.get(method, "uint8"),
             **({"int8_compute": {"op_types": ["MatMul"], "min_width": INT8_COMPUTE_MIN,
                                  "weights": "int4 requantised at load to int8, one scale per "
                                             "output column",
                                  "activations": "uint8, one scale and zero point per call "
                                                 "(DynamicQuantizeLinear)"}}
                if v == "dynamic_int4" else {}),
             "float_nodes": [e for e in edges] if v.endswith("float_edges") else [],
             "selection": {"rule": f"fixed by --int8-variant {fixed} (not scored; the parity "
                                   "gate measures it)"} if fixed else
                          {"rule": f"among candidates with image PSNR >= {comfortable:g} dB: "
                                   "fewest float32 matmul/conv kernels, then fewest kernels per "
                                   "call, smaller file, higher PSNR, name; else the most accurate",
                           "cost": "float_compute_kernels_per_call, kernels_per_call "
                                   "(deterministic; CPU time is not used)",
                           "images": ctx.selection.batch,
                           "seeds": [str(ctx.selection.seeds[0]), str(ctx.selection.seeds[-1])],
                           "steps": ctx.selection.steps if name == "denoise" else None},
             "fp32_reference_metric": None if fixed else {"metric": "image_psnr_db", **fp32},
             "candidates": [{k: val for k, val in c.items() if k != "file"}
                            for c in candidates]}
    if method == "static_qdq":
        cal = ctx.calibration
        entry["calibration"] = {"source": "pytorch_trajectories", "images": cal.batch,
                                "seeds": [str(cal.seeds[0]), str(cal.seeds[-1])],
                                "data": "final latents" if name == "decoder" else
                                        "final images", "method": "minmax"}
    return entry
