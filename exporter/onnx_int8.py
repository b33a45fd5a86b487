"""int8 for the ONNX target: per graph, quantisation variants are built and measured against
the PyTorch reference on held-out trajectories; every measured variant goes into the manifest.

Variants (onnxruntime.quantization):
  * ``static_qdq``: QDQ, int8 per-channel weights, uint8 activations calibrated (MinMax) on latents
    recorded from PyTorch sampling at every timestep; MatMul/Gemm/Conv with a constant weight.
    The activation x activation MatMuls of attention (q k^T, attn v) stay float: they have no
    weight to shrink and their ranges move with every input.
  * ``static_qdq_float_edges``: the same with the usual sensitive layers kept float: the first and
    last weight layers of the denoiser (latent patch embedding, velocity output projection) and of
    the decoder (first conv, last conv to RGB).
  * ``dynamic``: int8 weights, activations quantised at run time (no calibration).

Selection (:func:`choose`): each variant is scored by image PSNR against the reference (the step
through a full Euler loop with the float decoder) and by single-thread CPU time per call; the
fastest variant at least ``COMFORT_MARGIN_DB`` above the int8 bar ships, else the most accurate.
Accuracy beyond a comfortable margin buys nothing on a phone, speed does: on the random-weight
cifar10 preset the dynamic decoder was 3 dB more accurate (68 vs 65 dB) but 13x slower. The fused
generators are composed from the chosen step and decoder (``lrf.exporter.onnx_compose``).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from lrf.exporter.parity import image_metrics, tensor_metrics
from lrf.exporter.targets import ExportContext

OP_TYPES = ["MatMul", "Gemm", "Conv"]
COMFORT_MARGIN_DB = 10.0  # a variant this far above the int8 image bar is accurate enough
WEIGHT_OPS = {"MatMul", "Gemm", "Conv"}


class _Feeds:
    """onnxruntime CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: list[dict]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def _weight_nodes(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, str]]:
    """(node, content hash of its weight) for every MatMul/Gemm/Conv whose B/W input is an
    initializer, in graph (topological) order."""
    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type in WEIGHT_OPS and len(node.input) > 1 and node.input[1] in inits:
            arr = numpy_helper.to_array(inits[node.input[1]])
            out.append((node, hashlib.sha256(arr.tobytes() + str(arr.shape).encode()).hexdigest()))
    return out


def edge_weights(model: onnx.ModelProto) -> set[str]:
    """Content hashes of the first and last weight layer of a graph (``step`` or ``decoder``)."""
    nodes = _weight_nodes(model)
    return {nodes[0][1], nodes[-1][1]} if nodes else set()


def _nodes_using(model: onnx.ModelProto, hashes: set[str]) -> list[str]:
    """Names of the weight nodes whose weight is one of ``hashes`` (in any unrolled step)."""
    return [n.name for n, h in _weight_nodes(model) if h in hashes]


def _static(src: Path, dst: Path, feeds: list[dict], exclude: list[str]) -> None:
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    quantize_static(str(src), str(dst), _Feeds(feeds), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=OP_TYPES, per_channel=True, reduce_range=False,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"MatMulConstBOnly": True,
                                   "DefaultTensorType": onnx.TensorProto.FLOAT})


def gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrite Gemm(A, W, b) with a constant W as MatMul(A, W') + b, in place; returns the count.

    onnxruntime's dynamic quantiser has no Gemm kernel (it mis-handles transB), but quantises
    MatMul; each weight is transposed once even when several Gemms share it."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    done: dict[tuple[str, int], str] = {}
    nodes, count = [], 0
    for node in g.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(node)
            continue
        trans = int(attrs.get("transB", 0))
        key = (node.input[1], trans)
        if key not in done:
            w = numpy_helper.to_array(inits[node.input[1]])
            done[key] = f"{node.input[1]}_kn"
            g.initializer.append(numpy_helper.from_array(
                np.ascontiguousarray(w.T if trans else w), done[key]))
        mm_out = f"{node.output[0]}_mm" if len(node.input) > 2 and node.input[2] else node.output[0]
        nodes.append(onnx.helper.make_node("MatMul", [node.input[0], done[key]], [mm_out],
                                           name=f"{node.name}_MatMul"))
        if mm_out != node.output[0]:
            nodes.append(onnx.helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]],
                                               name=f"{node.name}_Add"))
        count += 1
    del g.node[:]
    g.node.extend(nodes)
    used = {x for n in g.node for x in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return count


def _dynamic(src: Path, dst: Path, exclude: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    gemm_to_matmul(model)
    src = dst.with_suffix(".matmul.onnx")
    onnx.save(model, str(src))
    quantize_dynamic(str(src), str(dst), op_types_to_quantize=OP_TYPES, per_channel=True,
                     reduce_range=False, weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                     extra_options={"MatMulConstBOnly": True,
                                    "DefaultTensorType": onnx.TensorProto.FLOAT})


def _session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1  # scoring is not latency-bound; spinning threads waste CPU
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class _Evaluator:
    """Scores a candidate file of graph ``name`` on the held-out selection set.

    Both graphs are judged by the images they lead to, against the PyTorch reference images:
    ``decoder`` on the reference's final latents; ``step`` by running the whole Euler loop with
    the candidate step and the float decoder (``float_decoder``), so its error accumulates over
    every timestep as in real use. The step's teacher-forced velocity SNR is recorded too."""

    metric = "image_psnr_db"

    def __init__(self, name: str, ctx: ExportContext, float_decoder: Path):
        self.name, self.sel = name, ctx.selection
        self.decoder = _session(float_decoder) if name == "step" else None

    def __call__(self, path: Path) -> dict:
        """{"value": image PSNR, "cpu_ms_per_call": ..., ["velocity_snr_db": ...]}."""
        from lrf.runtime import scheduler

        sess, sel = _session(path), self.sel
        t0, calls = time.process_time(), 0
        if self.name == "decoder":
            images = sess.run(None, sel.decoder_feeds()[0])[0]
            calls = 1
        else:
            feed = sel.generator_feeds()[0]
            z, y, g = feed["noise"], feed["label"], feed["guidance"]
            for i in range(sel.steps):
                t = np.full((sel.batch,), sel.times[i], dtype=np.float32)
                v = sess.run(None, {"latent": z, "t": t, "label": y, "guidance": g})[0]
                z = scheduler.euler_update(z, sel.times[i], sel.times[i + 1], v)
            calls = sel.steps
        ms = 1000 * (time.process_time() - t0) / calls
        if self.name == "step":
            images = self.decoder.run(None, {"latent": z})[0]
        out = {"value": float(image_metrics(sel.images, images)["psnr_db"]),
               "cpu_ms_per_call": round(ms, 3)}
        if self.name == "step":
            vel = np.stack([sess.run(None, f)[0] for f in sel.step_feeds()])
            m = tensor_metrics(sel.velocities, vel)
            out["velocity_snr_db"] = m["snr_db"]
        return out


def choose(candidates: list[dict], comfortable_db: float) -> dict:
    """The fastest candidate whose image PSNR is at least ``comfortable_db`` (CPU times within
    20% count as equal, the more accurate then wins); if none is, the most accurate."""
    ok = [c for c in candidates if c["value"] >= comfortable_db]
    if not ok:
        return max(candidates, key=lambda c: c["value"])
    fastest = min(c["cpu_ms_per_call"] for c in ok)
    return max((c for c in ok if c["cpu_ms_per_call"] <= 1.2 * fastest),
               key=lambda c: c["value"])


def _calibration_feeds(name: str, ctx: ExportContext) -> list[dict]:
    cal = ctx.calibration
    if name == "step":
        return cal.step_feeds()             # every timestep, all calibration trajectories
    if name == "decoder":
        return cal.decoder_feeds()          # the final latents the decoder really sees
    return cal.generator_feeds(batch=8)     # the fused graph replays whole trajectories


INT8_VARIANTS = ("static_qdq", "static_qdq_float_edges", "dynamic")


def quantize_graphs(paths: dict[str, Path], ctx: ExportContext) -> dict[str, dict]:
    """Replace each fp32 file in ``paths`` (``step``, ``decoder``) by its chosen int8 variant;
    return the manifest ``quantization`` entry per graph.

    ``ctx.options["int8_variant"]`` (``lrf-export --int8-variant``) builds that variant only and
    skips the candidate scoring, whose held-out trajectories dominate the export time at large
    latents (at 512 px: about 20 minutes per candidate on 2 cores). The parity gate still
    measures the result. ``lrf-bench`` uses it at untrained sizes, with the variant the trained
    size chose, so the sweep measures the cost of the shipped recipe."""
    # onnxruntime's "consider pre-processing" warning: its optimizer would swap standard ops for
    # contrib fusions; we quantise the onnxsim graph as is and measure the result instead.
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    fixed = ctx.options.get("int8_variant")
    if fixed is not None and fixed not in INT8_VARIANTS:
        raise ValueError(f"--int8-variant {fixed!r}: choose one of "
                         f"{', '.join(INT8_VARIANTS)}")
    if ctx.calibration is None or (ctx.selection is None and not fixed):
        raise ValueError("int8 export needs calibration and selection trajectories")
    from lrf.exporter.parity import IMAGE_PSNR_DB

    comfortable = IMAGE_PSNR_DB["int8"] + COMFORT_MARGIN_DB
    sensitive = edge_weights(onnx.load(str(paths["step"]))) | \
        edge_weights(onnx.load(str(paths["decoder"])))
    cal = ctx.calibration
    calib_info = {"source": "pytorch_trajectories", "seeds": [cal.seeds[0], cal.seeds[-1]],
                  "images": cal.batch, "labels": "seed i -> class i % num_classes",
                  "steps": cal.steps, "guidance": cal.guidance,
                  "timesteps": "all", "method": "minmax"}
    sel = ctx.selection
    results = {}
    with tempfile.TemporaryDirectory(prefix="lrf-int8-") as scratch:
        scratch = Path(scratch)
        float_decoder = scratch / "decoder.fp32.onnx"
        shutil.copyfile(paths["decoder"], float_decoder)
        for name, path in paths.items():
            model = onnx.load(str(path))
            float_nodes = _nodes_using(model, sensitive)
            evaluate = _Evaluator(name, ctx, float_decoder)
            fp32 = None if fixed else evaluate(path)
            feeds = _calibration_feeds(name, ctx)
            builders = {
                "static_qdq": lambda d: _static(path, d, feeds, []),
                "static_qdq_float_edges": lambda d: _static(path, d, feeds, float_nodes),
                "dynamic": lambda d: _dynamic(path, d, []),
            }
            candidates = []
            for cname, build in builders.items():
                if fixed is not None and cname != fixed:
                    continue
                dst = scratch / f"{name}.{cname}.onnx"
                ctx.log(f"onnx int8: {name}: building {cname}")
                build(dst)
                scores = {} if fixed else evaluate(dst)
                candidates.append({"name": cname, "metric": evaluate.metric, **scores,
                                   "bytes": dst.stat().st_size, "file": dst})
            best = candidates[0] if fixed else choose(candidates, comfortable)
            shutil.copyfile(best["file"], path)
            if not fixed:
                ctx.log(f"onnx int8: {name}: chose {best['name']} ({best['value']:.2f} dB, "
                        f"{best['cpu_ms_per_call']:.2f} ms/call; fp32 {fp32['value']:.2f} dB)")
            dynamic = best["name"] == "dynamic"
            entry = {"method": "dynamic" if dynamic else "static_qdq",
                     "variant": best["name"], "weight_type": "int8", "per_channel": True,
                     "op_types": OP_TYPES,
                     "activation_type": "dynamic uint8" if dynamic else "uint8",
                     "float_ops": "activation x activation MatMuls (attention q k^T, attn v)",
                     "float_nodes": float_nodes if best["name"].endswith("float_edges") else [],
                     "float_reason": "first/last weight layers of denoiser and decoder"
                     if best["name"].endswith("float_edges") else "",
                     "selection": {"rule": f"fixed by --int8-variant {fixed} (not scored; "
                                           "the parity gate measures it)"} if fixed else
                                  {"rule": f"fastest candidate with image PSNR >= "
                                           f"{comfortable:g} dB (CPU times within 20% tie, "
                                           "then the more accurate); else the most accurate",
                                   "images": sel.batch, "seeds": [sel.seeds[0], sel.seeds[-1]],
                                   "steps": sel.steps if name == "step" else None},
                     "fp32_reference_metric": None if fixed else
                                              {"metric": evaluate.metric, **fp32},
                     "candidates": [{k: v for k, v in c.items() if k != "file"}
                                    for c in candidates]}
            if not dynamic:
                entry["calibration"] = calib_info
            results[name] = entry
    return results
