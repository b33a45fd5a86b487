"""onnxruntime's profiler on a graph as the runtime sets it up: kernels per call, how many of
them are matmuls/convolutions still computing in float32, and time per operator type.

Kernel counts are deterministic for a given graph and onnxruntime version, so the exporter
chooses between int8 variants by them (:mod:`lrf.exporter.onnx_int8`); ``lrf.benchmarks.profile``
reports them next to timings. Torch-free.
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
from pathlib import Path

# Operators that do the arithmetic (matmuls and convolutions, float or quantised); the rest move,
# reshape, quantise or normalise tensors.
COMPUTE_OPS = {"Gemm", "MatMul", "Conv", "QGemm", "QLinearMatMul", "QLinearConv", "MatMulInteger",
               "ConvInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "FusedGemm",
               "FusedConv", "FusedMatMul", "NhwcFusedConv"}
# The compute operators that do int8 arithmetic; the others compute in float32.
INT8_COMPUTE_OPS = {"QGemm", "QLinearMatMul", "QLinearConv", "MatMulInteger", "ConvInteger",
                    "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


def session(path: Path, threads: int, profile_prefix: str | None = None,
            fold_weights: bool = True):
    """The runtime's onnxruntime session for ``path`` (``threads`` intra-op threads), with
    onnxruntime's profiler writing under ``profile_prefix`` when given."""
    from lrf.runtime.backend_onnxruntime import make_session, session_options

    so = session_options(threads, fold_weights=fold_weights)
    if profile_prefix:
        so.enable_profiling, so.profile_file_prefix = True, profile_prefix
    return make_session(path, options=so)


def kernel_events(path: Path, inputs: dict, runs: int, fold_weights: bool = True) -> list:
    """onnxruntime's profiler events of every kernel ``runs`` one-thread calls ran."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = session(path, 1, os.path.join(tmp, "ort"), fold_weights)
        for _ in range(runs):
            sess.run(None, inputs)
        with open(sess.end_profiling()) as fh:
            events = json.load(fh)
    return [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]


def kernel_profile(path: Path, inputs: dict, runs: int, fold_weights: bool = True) -> dict:
    """onnxruntime's profiler, one thread: kernels per call (every kernel event, so a Loop body
    counts once per iteration), how many of them are matmuls/convolutions in float32, and time
    per operator type."""
    by_op, count = collections.Counter(), collections.Counter()
    for e in kernel_events(path, inputs, runs, fold_weights):
        op = e["args"]["op_name"]
        by_op[op] += e["dur"]
        count[op] += 1
    total = sum(by_op.values())
    ops = [{"op": op, "share": us / total, "kernels_per_call": count[op] // runs,
            "compute": op in COMPUTE_OPS} for op, us in by_op.most_common()]
    return {"kernels_per_call": sum(count.values()) // runs, "profiled_us_per_call": total / runs,
            "compute_share": sum(o["share"] for o in ops if o["compute"]),
            "compute_kernels_per_call": sum(o["kernels_per_call"] for o in ops if o["compute"]),
            "float_compute_kernels_per_call": sum(o["kernels_per_call"] for o in ops
                                                  if o["compute"] and
                                                  o["op"] not in INT8_COMPUTE_OPS),
            "ops": ops}
