"""One benchmark configuration in a fresh process: ``python -m lrf.benchmarks.child SPEC_JSON``.

Runs in its own interpreter so the memory peak it reports is the whole process's: interpreter,
imports, model load and generation. Reports JSON lines on stdout:

    {"event": "phase", "phase": "...", "t_s": ..., "rss_kb": ..., "hwm_kb": ..., ...}
    {"event": "result", ...}                    (last line on success)
    {"event": "error", "message": "..."}        (exit status 1)

``SPEC["kind"]``: ``bare`` (the interpreter alone), ``runtime`` (a bundle through ``lrf.runtime``;
never imports torch), ``torch`` (the PyTorch eager reference, plus FLOPs), ``matmul`` (fp32 GEMM
peak of this machine), ``export`` (make or reuse cached bundles; not a measurement).
Only the standard library is imported at module level, so ``bare`` is the bare interpreter.
"""

from __future__ import annotations

import json
import os
import sys
import time

_T0 = time.perf_counter()


def _status_kb() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0])
    return out


def emit(event: str, **fields) -> None:
    """One JSON line, flushed: the parent keeps what arrived even if it kills us."""
    print(json.dumps({"event": event, **fields}), flush=True)


def phase(name: str, **fields) -> dict:
    """Record a named point: wall time since start and memory now/peak (kB)."""
    s = _status_kb()
    rec = {"phase": name, "t_s": round(time.perf_counter() - _T0, 6), "rss_kb": s.get("VmRSS"),
           "hwm_kb": s.get("VmHWM"), "anon_kb": s.get("RssAnon"), "file_kb": s.get("RssFile"),
           **fields}
    emit("phase", **rec)
    return rec


class Unavailable(RuntimeError):
    """The backend or target does not exist in this install (reported as not available)."""


def _stats(xs: list[float]) -> dict:
    ys = sorted(xs)
    n = len(ys)
    med = ys[n // 2] if n % 2 else 0.5 * (ys[n // 2 - 1] + ys[n // 2])
    return {"median": med, "min": ys[0], "max": ys[-1], "n": n, "runs": xs}


class _StepClock:
    """``on_step`` callback recording when each step ended (per-step latency)."""

    def __init__(self):
        self.start = 0.0
        self.marks: list[float] = []

    def reset(self):
        self.marks = []
        self.start = time.perf_counter()

    def __call__(self, i, n):
        self.marks.append(time.perf_counter())

    def step_times(self) -> list[float]:
        edges = [self.start, *self.marks]
        return [b - a for a, b in zip(edges, edges[1:])]


MAX_RUNS = 1000


def _timed_runs(fn, clock: _StepClock, warmup: int, repeats: int, stepwise: bool,
                min_seconds: float = 0.0) -> dict:
    """Cold first call, ``warmup`` untimed calls, then timed calls (seconds): at least
    ``repeats``, and more until ``min_seconds`` have been spent timing, so millisecond-scale
    configurations get enough samples for a stable median on a busy machine."""
    clock.reset()
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    first_rec = phase("first_image", seconds=first)
    for _ in range(warmup):
        fn()
    runs, steps, decode = [], [], []
    while len(runs) < repeats or (sum(runs) < min_seconds and len(runs) < MAX_RUNS):
        clock.reset()
        t = time.perf_counter()
        fn()
        end = time.perf_counter()
        runs.append(end - t)
        if stepwise and clock.marks:
            steps.extend(clock.step_times())
            decode.append(end - clock.marks[-1])  # after the last step: decoder (+ copies)
    out = {"first_s": first, "first_hwm_kb": first_rec["hwm_kb"], "image_s": _stats(runs)}
    if steps:
        out["step_s"] = _stats(steps)
        out["decode_s"] = _stats(decode)
    return out


def run_runtime(spec: dict) -> dict:
    """A bundle through lrf.runtime: import, load (per graph), first image, steady images."""
    import numpy as np  # noqa: F401  (its import cost belongs to the runtime's)

    from lrf.runtime import Generator, get_backend

    try:
        get_backend(spec["backend"])  # imports the engine (onnxruntime, ...): its own phase
    except ValueError as e:  # not implemented or engine not installed: a row, not a crash
        raise Unavailable(str(e)) from None
    phase("import")
    t = time.perf_counter()
    gen = Generator.load(spec["bundle"], backend=spec["backend"], threads=spec.get("threads"))
    load_s = time.perf_counter() - t
    phase("manifest", seconds=load_s)
    steps, guidance, mode = gen.resolve(spec["steps"], spec.get("guidance"), spec["mode"])
    names = ["denoise", "decoder"]
    graphs = {}
    for name in names:
        t = time.perf_counter()
        # Opening the graphs one by one separates each one's load cost (time, memory) from its
        # run cost.
        gen.open(name)
        dt = time.perf_counter() - t
        load_s += dt
        graphs[name] = phase(f"open:{name}", seconds=dt)
    b = int(spec.get("batch", 1))
    labels = [i % len(gen.classes) for i in range(b)]
    seeds = list(range(b))
    clock = _StepClock()

    def once():
        gen.generate_batch(labels, seeds, steps=steps, guidance=guidance, mode=mode,
                           on_step=clock)

    timing = _timed_runs(once, clock, spec.get("warmup", 0), spec["repeats"], mode == "stepwise",
                         spec.get("min_seconds", 0.0))
    end = phase("steady")
    sizes = artifact_sizes(gen.manifest, [gen.bundle.graphs[n].file for n in names])
    version = gen.backend.version()
    gen.close()
    return {"load_s": load_s, **timing, "graphs": graphs, "steps": steps, "mode": mode,
            "guidance": guidance, "batch": b, "hwm_kb": end["hwm_kb"],
            "artifact_bytes": sizes, "engine_version": version,
            "source_checkpoint_sha256": gen.manifest.get("source_checkpoint", {}).get("sha256"),
            "guidance_distilled": bool(gen.manifest.get("model", {}).get("guidance_distilled")),
            "torch_imported": "torch" in sys.modules}


def artifact_sizes(manifest: dict, graph_files: list[str]) -> dict[str, int]:
    """Bytes per graph file (a folder-shaped artifact, e.g. .mlpackage, sums its files)."""
    out = {}
    for f in graph_files:
        out[f] = sum(int(m["size"]) for rel, m in manifest["files"].items()
                     if rel == f or rel.startswith(f.rstrip("/") + "/"))
    return out


def run_torch(spec: dict) -> dict:
    """The PyTorch eager reference (``lrf.models.reference.generate``) on the same checkpoint,
    steps and guidance; FLOPs are counted after the memory peak is recorded."""
    import torch

    from lrf.models.checkpoint import checkpoint_sha256, load_checkpoint
    from lrf.models.reference import generate

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    phase("import")
    t = time.perf_counter()
    ckpt = load_checkpoint(spec.get("checkpoint"))
    load_s = time.perf_counter() - t
    phase("load", seconds=load_s)
    b, n = int(spec.get("batch", 1)), int(spec["steps"])
    guidance = spec.get("guidance")
    guidance = float(ckpt.sampling["guidance"] if guidance is None else guidance)
    latent = int(spec["latent_size"])
    labels = [i % len(ckpt.classes) for i in range(b)]
    clock = _StepClock()

    def once():
        generate(ckpt, labels, list(range(b)), steps=n, guidance=guidance, latent_size=latent,
                 on_step=clock)

    timing = _timed_runs(once, clock, spec.get("warmup", 0), spec["repeats"], True,
                         spec.get("min_seconds", 0.0))
    end = phase("steady")
    out = {"load_s": load_s, **timing, "steps": n, "mode": "eager", "guidance": guidance,
           "batch": b, "hwm_kb": end["hwm_kb"], "engine_version": torch.__version__,
           "source_checkpoint_sha256": checkpoint_sha256(ckpt.path) if ckpt.path else None,
           "guidance_distilled": bool(ckpt.config.guidance_embed),
           "artifact_bytes": {f: os.path.getsize(os.path.join(ckpt.path, f))
                              for f in ("lrf.safetensors", "codec.safetensors")
                              if ckpt.path and os.path.isfile(os.path.join(ckpt.path, f))}}
    if spec.get("flops", True):
        out["flops"] = count_flops(ckpt, latent, n, b)
    return out


def count_flops(ckpt, latent_size: int, steps: int, batch: int = 1) -> dict:
    """FLOPs per image of the reference sampler: one guided step (conditional + unconditional
    in one batched call) x N, plus the decoder. Counted by torch's FlopCounterMode, which counts
    matmuls, convolutions and attention only (elementwise ops are not in the total)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lrf.models.flow import guided_velocity

    cfg = ckpt.config
    z = torch.zeros(batch, cfg.latent_channels, latent_size, latent_size)
    y = torch.zeros(batch, dtype=torch.long)
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            guided_velocity(ckpt.model, z, torch.full((batch,), 0.5), y, 3.0, cfg.null_class)
        step = fc.get_total_flops() / batch
        with FlopCounterMode(display=False) as fc:
            ckpt.codec.decode(z)
        dec = fc.get_total_flops() / batch
    return {"step": step, "decoder": dec, "per_image": step * steps + dec,
            "counted": "torch.utils.flop_counter (matmul, conv, attention; 2 FLOPs per MAC)"}


def run_matmul(spec: dict) -> dict:
    """Best-of fp32 GEMM throughput with numpy: the machine's practical compute ceiling."""
    import numpy as np

    n = int(spec.get("n", 1024))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up: thread pool start, page faults
    best = float("inf")
    deadline = time.perf_counter() + float(spec.get("seconds", 1.0))
    reps = 0
    while reps < 3 or time.perf_counter() < deadline:
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
        reps += 1
    return {"n": n, "best_s": best, "repeats": reps, "gflops": 2 * n ** 3 / best / 1e9,
            "library": "numpy " + np.__version__}


def run_export(spec: dict) -> dict:
    """Make (or reuse from the cache) the bundles the plan needs, through the exporter's API.
    One request at a time; a failure is reported for that request and the others continue."""
    from lrf.exporter.export import export_bundle
    from lrf.exporter.targets import available_targets
    from lrf.models.checkpoint import checkpoint_sha256, load_checkpoint

    ckpt_dir = spec.get("checkpoint")
    ckpt_path = load_checkpoint(ckpt_dir).path  # resolves the default; fails early if missing
    sha = checkpoint_sha256(ckpt_path)
    root = os.path.join(spec["cache"], sha[:16])
    done = []
    for req in spec["requests"]:
        steps = sorted(int(n) for n in req["steps"])
        name = (f"{req['target']}-{req['precision']}-latent{req['latent_size']}-"
                + (f"n{'-'.join(map(str, steps))}" if steps else "stepwise"))
        out = os.path.join(root, name)
        rec = {"key": req["key"], "path": out}
        if req["target"] not in available_targets():
            rec.update(status="not_available", message=f"export target {req['target']!r} is "
                       f"not available here (available: {', '.join(available_targets())})")
        elif (missing := _backend_missing(req.get("backend"))) is not None:
            rec.update(status="not_available", message=missing)
        elif (cached := _cached_bundle(root, req, steps, sha)) is not None:
            rec.update(status="cached", path=cached)
        else:
            t = time.perf_counter()
            try:
                export_bundle(req["target"], ckpt_path, out, int8=req["precision"] == "int8",
                              steps=steps, latent_size=int(req["latent_size"]),
                              log=lambda msg: print(msg, file=sys.stderr), **req["settings"])
                rec.update(status="exported", seconds=time.perf_counter() - t)
            except Exception as e:  # ParityError, ValueError: this request fails, others go on
                rec.update(status="failed", message=f"{type(e).__name__}: {e}")
        emit("bundle", **rec)
        done.append(rec)
    return {"bundles": done, "checkpoint": ckpt_path, "checkpoint_sha256": sha}


def _cached_bundle(root: str, req: dict, steps: list[int], sha: str) -> str | None:
    """A cached bundle of this checkpoint, target, precision and latent size (schema v2: one
    denoise graph serves every N)."""
    from lrf.runtime import read_manifest

    prefix = f"{req['target']}-{req['precision']}-latent{req['latent_size']}-"
    if not os.path.isdir(root):
        return None
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not name.startswith(prefix) or not os.path.isfile(os.path.join(path, "manifest.json")):
            continue
        m = read_manifest(path)
        if m.get("source_checkpoint", {}).get("sha256") == sha:
            return path
    return None


def _backend_missing(name: str | None) -> str | None:
    """Why the runtime backend ``name`` cannot run here, or None (checked before exporting)."""
    from lrf.runtime import get_backend

    try:
        name and get_backend(name)
    except ValueError as e:
        return str(e)
    return None


KINDS = {"runtime": run_runtime, "torch": run_torch, "matmul": run_matmul, "export": run_export}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        spec = json.loads(argv[0])
        kind = spec["kind"]
    except (IndexError, json.JSONDecodeError, KeyError, TypeError):
        emit("error", message="usage: python -m lrf.benchmarks.child '{\"kind\": ...}'")
        return 2
    start = phase("start")
    if kind == "bare":
        emit("result", hwm_kb=start["hwm_kb"], rss_kb=start["rss_kb"])
        return 0
    if kind not in KINDS:
        emit("error", message=f"unknown child kind {kind!r}; expected bare or {sorted(KINDS)}")
        return 2
    try:
        result = KINDS[kind](spec)
    except Unavailable as e:
        emit("error", message=str(e), status="not_available")
        return 1
    except Exception as e:  # reported to the parent as this configuration's failure
        emit("error", message=f"{type(e).__name__}: {e}")
        return 1
    emit("result", **{**result, "hwm_kb": _status_kb().get("VmHWM")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
