"""Where one graph call's time goes in onnxruntime: ``python -m lrf.benchmarks.profile BUNDLE``.

``lrf-bench`` measures whole generations; this looks inside one call of an ONNX bundle's graph
(default ``step``, the graph a generation runs N times). For each thread count it times
``--runs`` calls (median), then runs onnxruntime's profiler single-threaded and groups kernel
time by operator type. The profiler's own bookkeeping inflates the kernel times, so they are
shown as shares of the profiled total, next to the unprofiled latency. Torch-free.

    python -m lrf.benchmarks.profile bundles/cifar10-int8/onnx --graph step --json prof.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lrf.cli import Parser

PROG = "lrf.benchmarks.profile"
# Operators that do the arithmetic (matmuls and convolutions, float or quantised); the rest move,
# reshape, quantise or normalise tensors.
COMPUTE_OPS = {"Gemm", "MatMul", "Conv", "QGemm", "QLinearMatMul", "QLinearConv", "MatMulInteger",
               "ConvInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "FusedGemm",
               "FusedConv", "FusedMatMul", "NhwcFusedConv"}


def feeds(spec: dict, latent: dict, batch: int = 1) -> dict:
    """Inputs for one call from a manifest graph entry: batch ``batch``, dynamic image dims at
    the bundle's latent size; normal latents, t = 0.5, label 0, guidance 3."""
    import numpy as np

    rng = np.random.default_rng(0)
    sizes = {"batch": batch, "latent_height": latent["height"], "latent_width": latent["width"]}
    out = {}
    for t in spec["inputs"]:
        shape = [d if d != -1 else sizes.get(name, 1) for d, name in
                 zip(t["shape"], t.get("dims", [""] * len(t["shape"])))]
        if t["dtype"] == "int32":
            out[t["name"]] = np.zeros(shape, np.int32)
        elif t["name"] == "t":
            out[t["name"]] = np.full(shape, 0.5, np.float32)
        elif t["name"] == "guidance":
            out[t["name"]] = np.full(shape, 3.0, np.float32)
        else:
            out[t["name"]] = rng.standard_normal(shape).astype(np.float32)
    return out


def _session(path: Path, threads: int, profile_prefix: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling, so.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def time_calls(path: Path, inputs: dict, threads: int, runs: int) -> dict:
    sess = _session(path, threads)
    for _ in range(max(10, runs // 10)):
        sess.run(None, inputs)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, inputs)
        ts.append(time.perf_counter() - t)
    return {"threads": threads, "median_ms": 1e3 * statistics.median(ts),
            "min_ms": 1e3 * min(ts), "runs": runs}


def kernel_profile(path: Path, inputs: dict, runs: int) -> dict:
    """onnxruntime's profiler, one thread: kernels per call and time per operator type."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = _session(path, 1, os.path.join(tmp, "ort"))
        for _ in range(runs):
            sess.run(None, inputs)
        with open(sess.end_profiling()) as fh:
            events = json.load(fh)
    by_op, count, nodes = collections.Counter(), collections.Counter(), set()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            by_op[op] += e["dur"]
            count[op] += 1
            nodes.add(e["name"])
    total = sum(by_op.values())
    ops = [{"op": op, "share": us / total, "kernels_per_call": count[op] // runs,
            "compute": op in COMPUTE_OPS} for op, us in by_op.most_common()]
    return {"kernels_per_call": len(nodes), "profiled_us_per_call": total / runs,
            "compute_share": sum(o["share"] for o in ops if o["compute"]),
            "compute_kernels_per_call": sum(o["kernels_per_call"] for o in ops if o["compute"]),
            "ops": ops}


def main(argv=None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="an ONNX bundle folder (lrf-export --target onnx)")
    p.add_argument("--graph", default="step", help="graph name in the manifest (default step)")
    p.add_argument("--threads", default="1,2", help="intra-op thread counts to time (default 1,2)")
    p.add_argument("--runs", type=int, default=200, help="timed calls per thread count")
    p.add_argument("--json", default=None, help="write the result here as JSON")
    args = p.parse_args(argv)
    try:
        threads = [int(x) for x in args.threads.split(",")]
        if args.runs < 1 or min(threads) < 1:
            raise ValueError
    except ValueError:
        p.error(f"--threads {args.threads!r} / --runs {args.runs}: positive integers expected")

    from lrf.runtime import read_manifest

    try:
        m = read_manifest(args.bundle)
    except (FileNotFoundError, ValueError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    if m.get("target") != "onnx" or args.graph not in m["graphs"]:
        print(f"{PROG}: error: {args.bundle}: needs an ONNX bundle with graph {args.graph!r} "
              f"(it is target {m.get('target')!r} with {sorted(m['graphs'])}); export one with "
              "lrf-export --target onnx", file=sys.stderr)
        return 2
    spec = m["graphs"][args.graph]
    path = Path(args.bundle) / spec["file"]
    inputs = feeds(spec, m["latent"])
    res = {"bundle": str(args.bundle), "graph": args.graph, "precision": m["precision"],
           "latent": m["latent"], "timing": [time_calls(path, inputs, t, args.runs)
                                             for t in threads],
           "profile": kernel_profile(path, inputs, min(args.runs, 50))}
    prof = res["profile"]
    best = min(res["timing"], key=lambda r: r["median_ms"])
    res["us_per_kernel"] = 1e3 * best["median_ms"] / prof["kernels_per_call"]
    for r in res["timing"]:
        print(f"{args.graph} ({m['precision']}), {r['threads']} thread(s): "
              f"{r['median_ms']:.3f} ms/call median (min {r['min_ms']:.3f}, {r['runs']} calls)")
    print(f"{prof['kernels_per_call']} kernels per call ({prof['compute_kernels_per_call']} "
          f"matmul/conv), {res['us_per_kernel']:.2f} us per kernel at the best thread count; "
          f"matmul/conv kernels take {100 * prof['compute_share']:.0f}% of the profiled time")
    for o in prof["ops"][:12]:
        print(f"  {o['op']:24s} {100 * o['share']:5.1f}%  x{o['kernels_per_call']}")
    if args.json:
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as fh:
            json.dump(res, fh, indent=2)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
