"""Where one denoising step's time goes in onnxruntime: ``python -m lrf.benchmarks.profile BUNDLE``.

``lrf-bench`` measures whole generations; this looks inside the graph a generation spends its
steps in (default ``denoise``; ``--graph decoder``/``encoder`` profile one call of those). The
``denoise`` Loop runs a window of K steps per call, so a step is measured as the difference
between a ``--window`` K call and a one-step call, divided by K - 1: that removes the per-call
work (conditioning, layout changes, weight dequantisation) and leaves the loop body. For each
thread count it times ``--runs`` calls of both (median), then runs onnxruntime's profiler
single-threaded and groups kernel time by operator type. The profiler's own bookkeeping inflates
the kernel times, so they are shown as shares of the profiled total, next to the unprofiled
latency. Torch-free.

    python -m lrf.benchmarks.profile bundles/cifar10-onnx-int8 --json prof.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from lrf.cli import Parser, atomic_output
from lrf.runtime.ort_profile import kernel_events, kernel_profile, session

PROG = "lrf.benchmarks.profile"


def feeds(spec: dict, latent: dict, batch: int = 1, window: int = 1) -> dict:
    """Inputs for one call from a manifest graph entry, bound by role: batch ``batch``, dynamic
    image dims at the bundle's latent size; normal latents, the ``window``-step schedule, label
    0, guidance 3, random uint8 images."""
    import numpy as np

    from lrf.runtime import scheduler

    rng = np.random.default_rng(0)
    f = 8
    sizes = {"batch": batch, "latent_height": latent["height"], "latent_width": latent["width"],
             "image_height": f * latent["height"], "image_width": f * latent["width"],
             "window_plus_one": window + 1}
    out = {}
    for t in spec["inputs"]:
        shape = [d if d != -1 else sizes.get(name, 1) for d, name in
                 zip(t["shape"], t.get("dims", [""] * len(t["shape"])))]
        role = t.get("role", t["name"])
        if role == "timesteps":
            out[t["name"]] = scheduler.timesteps(shape[0] - 1)
        elif t["dtype"] == "int32":
            out[t["name"]] = np.zeros(shape, np.int32)
        elif t["dtype"] == "uint8":
            out[t["name"]] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif role == "guidance":
            out[t["name"]] = np.full(shape, 3.0, np.float32)
        else:
            out[t["name"]] = rng.standard_normal(shape).astype(np.float32)
    return out


def _timed(sess, inputs: dict, runs: int) -> list[float]:
    """Seconds per call of ``runs`` calls, after max(10, runs // 10) untimed ones."""
    for _ in range(max(10, runs // 10)):
        sess.run(None, inputs)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, inputs)
        ts.append(time.perf_counter() - t)
    return ts


def time_calls(path: Path, inputs: dict, threads: int, runs: int,
               fold_weights: bool = True) -> dict:
    ts = _timed(session(path, threads, fold_weights=fold_weights), inputs, runs)
    return {"threads": threads, "median_ms": 1e3 * statistics.median(ts),
            "min_ms": 1e3 * min(ts), "runs": runs}


def integer_matmul_floor(path: Path, inputs: dict, runs: int) -> dict | None:
    """How long the graph's integer matmuls alone take per call: the ``DynamicQuantizeMatMul``
    kernels one call runs (shapes read from onnxruntime's profiler), rebuilt as a graph of
    nothing else (random int8 weights of the same shapes), timed on one thread (median of
    ``runs`` calls). For a one-step ``denoise`` call that is the integer-matmul time of a step,
    a floor for the step whatever the other kernels cost. None if the graph has none."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    shapes = [e["args"]["input_type_shape"] for e in kernel_events(path, inputs, 1)
              if e["args"].get("op_name") == "DynamicQuantizeMatMul"]
    if not shapes:
        return None
    rng = np.random.default_rng(0)
    nodes, inits, feed, outs = [], [], {}, []
    for i, ins in enumerate(shapes):
        a = list(ins[0].values())[0]
        n, k = list(ins[1].values())[0][0], a[-1]
        feed[f"a{i}"] = rng.standard_normal(a).astype(np.float32)
        inits += [numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), f"w{i}"),
                  numpy_helper.from_array(np.full(n, 0.01, np.float32), f"s{i}"),
                  numpy_helper.from_array(np.zeros(n, np.float32), f"b{i}")]
        nodes.append(helper.make_node("DynamicQuantizeMatMul", [f"a{i}", f"w{i}", f"s{i}", "",
                                                                 f"b{i}"], [f"y{i}"],
                                      domain="com.microsoft"))
        outs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "integer_matmuls", [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, list(x.shape))
        for name, x in feed.items()], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    from lrf.runtime.backend_onnxruntime import make_session

    ts = _timed(make_session(model.SerializeToString(), threads=1), feed, runs)
    return {"kernels": len(shapes), "median_ms": 1e3 * statistics.median(ts), "runs": runs,
            "threads": 1}


def per_step(at_k: dict, at_1: dict, k: int) -> dict:
    """Kernels and operator counts of one loop iteration: (a K-step call - a 1-step call) / (K-1)."""
    ops1 = {o["op"]: o["kernels_per_call"] for o in at_1["ops"]}
    ops = [{"op": o["op"], "kernels_per_step": (o["kernels_per_call"] - ops1.get(o["op"], 0))
            / (k - 1), "share": o["share"], "compute": o["compute"]} for o in at_k["ops"]]
    return {"kernels_per_step": (at_k["kernels_per_call"] - at_1["kernels_per_call"]) / (k - 1),
            "kernels_per_call_overhead": at_1["kernels_per_call"] -
            (at_k["kernels_per_call"] - at_1["kernels_per_call"]) / (k - 1),
            "compute_kernels_per_step": sum(o["kernels_per_step"] for o in ops if o["compute"]),
            "compute_share": at_k["compute_share"],
            "ops": sorted(ops, key=lambda o: -o["kernels_per_step"])}


def main(argv=None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="an ONNX bundle folder (lrf-export --target onnx)")
    p.add_argument("--graph", default="denoise", help="graph name in the manifest (default "
                   "denoise)")
    p.add_argument("--window", type=int, default=8,
                   help="steps of the long denoise call (default 8; >= 2)")
    p.add_argument("--threads", default="1,2", help="intra-op thread counts to time (default 1,2)")
    p.add_argument("--runs", type=int, default=200, help="timed calls per thread count")
    p.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    p.add_argument("--qdq-fusion", choices=("auto", "on", "off"), default="auto",
                   help="onnxruntime's QDQ fusion: auto = the runtime's rule (on for static_qdq "
                        "graphs only, runtime/BUNDLE.md 2.2.1); on/off to measure that lever")
    p.add_argument("--json", default=None, help="write the result here as JSON")
    args = p.parse_args(argv)
    try:
        threads = [int(x) for x in args.threads.split(",")]
        if args.runs < 1 or min(threads) < 1 or args.window < 2 or not 1 <= args.batch <= 256:
            raise ValueError
    except ValueError:
        p.error(f"--threads {args.threads!r} / --runs {args.runs} / --window {args.window} / "
                f"--batch {args.batch}: positive integers expected (window >= 2, batch <= 256)")

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
    from lrf.runtime.backend_onnxruntime import folds_weights

    fold = {"auto": folds_weights(spec.get("quantization")), "on": False,
            "off": True}[args.qdq_fusion]
    loop = args.graph == "denoise"
    k = args.window if loop else 1
    inputs = feeds(spec, m["latent"], batch=args.batch, window=k)
    prof_runs = min(args.runs, 50)
    res = {"bundle": str(args.bundle), "graph": args.graph, "precision": m["precision"],
           "batch": args.batch,
           "qdq_fusion": not fold,
           "latent": m["latent"], "window": k if loop else None,
           "timing": [time_calls(path, inputs, t, args.runs, fold) for t in threads],
           "profile": kernel_profile(path, inputs, prof_runs, fold)}
    prof = res["profile"]
    unit, kernels = "call", prof["kernels_per_call"]
    if loop:
        one = feeds(spec, m["latent"], batch=args.batch, window=1)
        res["timing_window_1"] = [time_calls(path, one, t, args.runs, fold) for t in threads]
        res["per_step"] = per_step(prof, kernel_profile(path, one, prof_runs, fold), k)
        for r, r1 in zip(res["timing"], res["timing_window_1"]):
            r["median_ms_per_step"] = (r["median_ms"] - r1["median_ms"]) / (k - 1)
        unit, kernels = "step", res["per_step"]["kernels_per_step"]
    best = min(res["timing"], key=lambda r: r["median_ms"])
    ms = best["median_ms_per_step"] if loop else best["median_ms"]
    res["us_per_kernel"] = 1e3 * ms / kernels
    for r in res["timing"]:
        extra = f", {r['median_ms_per_step']:.3f} ms/step" if loop else ""
        print(f"{args.graph} ({m['precision']}, QDQ fusion {'on' if not fold else 'off'}), "
              f"{r['threads']} thread(s): "
              f"{r['median_ms']:.3f} ms/call median{extra} (min {r['min_ms']:.3f}, "
              f"{r['runs']} calls{f', window {k}' if loop else ''})")
    print(f"{kernels:g} kernels per {unit}, {res['us_per_kernel']:.2f} us per kernel at the best "
          f"thread count; matmul/conv kernels take {100 * prof['compute_share']:.0f}% of the "
          "profiled time")
    if loop:
        print(f"  + {res['per_step']['kernels_per_call_overhead']:g} kernels per call outside "
              "the loop")
        rows = [(o["op"], o["share"], o["kernels_per_step"]) for o in res["per_step"]["ops"]]
    else:
        rows = [(o["op"], o["share"], o["kernels_per_call"]) for o in prof["ops"]]
    for op, share, n in rows[:14]:
        print(f"  {op:24s} {100 * share:5.1f}%  x{n:g}")
    floor = integer_matmul_floor(path, one if loop else inputs, args.runs)
    res["integer_matmul_floor"] = floor
    if floor:
        print(f"its {floor['kernels']} integer matmuls alone (DynamicQuantizeMatMul, nothing "
              f"else, one thread): {floor['median_ms']:.3f} ms per {'step' if loop else 'call'}")
    if args.json:
        with atomic_output(args.json, "--json") as tmp:
            tmp.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
