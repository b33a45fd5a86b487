"""``lrf-bench``: latency, whole-process peak memory under an enforced RAM budget, and cost growth.

    lrf-bench --device cpu --ram-limit 3G    # default checkpoint: onnx, executorch x fp32, int8
    lrf-bench --bundle bundles/cifar10-onnx-int8 --steps 8,50 --json out.json --plot out.png
    lrf-bench --target onnx --int8 --resolution 32,64,256,512 --steps 8 --mode fused

Every configuration runs in a fresh child process killed as soon as its resident peak passes
--ram-limit (benchmarks/README.md says how and why). Any configuration over budget or failing
makes the command exit 1 with one line saying which; usage errors exit 2.
"""

from __future__ import annotations

from lrf.cli import guard_startup

guard_startup("lrf-bench", __name__ == "__main__")  # Ctrl-C during the imports: 1 line

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from lrf.benchmarks.load import LoadMonitor
from lrf.benchmarks import plan as P
from lrf.benchmarks import report as R
from lrf.benchmarks.limit import (POLL_IDLE_S, POLL_S, available_memory, format_size,
                                  parse_size, run_child)
from lrf.cli import Parser, atomic_output, check_output, entry, int_arg

PROG = "lrf-bench"


def _list(kind, allowed=None, check=None):
    def parse(text: str):
        items = [s.strip() for s in text.split(",") if s.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list {text!r}")
        out = []
        for s in items:
            try:
                v = kind(s)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{s!r} is not a valid {kind.__name__}") from None
            if allowed is not None and v not in allowed:
                raise argparse.ArgumentTypeError(f"{s!r} is not one of {', '.join(allowed)}")
            if check is not None:
                check(v)
            if v not in out:
                out.append(v)
        return out
    return parse


def _positive(v):
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be >= 1")


def _resolution(v):
    if v < P.SCALE or v % P.SCALE:
        raise argparse.ArgumentTypeError(f"resolution {v} must be a positive multiple of "
                                         f"{P.SCALE} (one latent cell is {P.SCALE}x{P.SCALE} px)")


def _target(v):
    if v in P.NOT_RUNNABLE:
        raise argparse.ArgumentTypeError(f"target {v!r} cannot be benchmarked here: "
                                         f"{P.NOT_RUNNABLE[v]}")
    if v not in P.TARGET_BACKENDS:
        raise argparse.ArgumentTypeError(f"unknown target {v!r}; valid: "
                                         f"{', '.join(P.TARGET_BACKENDS)}")


def _size(text):
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _seconds(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--min-seconds must be a number, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"--min-seconds must be >= 0, got {text}")
    return v


_int = int_arg  # lrf/cli.py: one integer parser for every CLI


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="only 'cpu' exists here")
    p.add_argument("--ram-limit", type=_size, default=parse_size("3G"), metavar="SIZE",
                   help="resident-memory budget per configuration, e.g. 3G, 600M (default 3G)")
    p.add_argument("--bundle", nargs="+", action="extend", default=[], metavar="DIR",
                   help="bundle folder(s) to measure (at their own resolution)")
    p.add_argument("--target", type=_list(str, check=_target), default=None,
                   help="targets exported from --checkpoint into the cache, comma-separated "
                        "(default: onnx,executorch unless --bundle is given)")
    p.add_argument("--precision", type=_list(str, P.PRECISIONS), default=None,
                   help="fp32,int8 (default both)")
    p.add_argument("--int8", action="store_true", help="shorthand for --precision int8")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint for exports and the PyTorch baseline (default: the "
                        "--bundle's source checkpoint, else models/weights/cifar10-turbo)")
    p.add_argument("--resolution", type=_list(int, check=_resolution), default=None,
                   help="output sizes in px, e.g. 32,64,256,512 (default: the trained size, or "
                        "the bundles' own)")
    p.add_argument("--steps", type=_list(int, check=_positive), default=None,
                   help="sampling steps N (default: 8 and the checkpoint's default)")
    p.add_argument("--mode", type=_list(str, P.MODES), default=list(P.MODES),
                   help="fused,stepwise (default both)")
    p.add_argument("--batch", type=_list(int, check=_positive), default=[1],
                   help="images per call (default 1)")
    p.add_argument("--max-batch", type=_int("--max-batch", 1), default=8,
                   help="largest batch tried when searching what fits (default 8; 1: no search)")
    p.add_argument("--threads", type=_int("--threads", 1), default=None,
                   help="threads for every engine (default: the engines' own default)")
    p.add_argument("--repeats", type=_int("--repeats", 1), default=5,
                   help="timed images after the first (cold) one (default 5)")
    p.add_argument("--min-seconds", type=_seconds, default=1.0,
                   help="keep timing past --repeats until this many seconds were timed (default "
                        "1; millisecond-scale runs then get enough samples)")
    p.add_argument("--warmup", type=_int("--warmup", 0), default=0,
                   help="extra untimed images after the first one (default 0)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the PyTorch eager rows (no ratios or FLOPs then)")
    p.add_argument("--cache", default=None,
                   help="where exported bundles are kept (default $LRF_BENCH_CACHE or "
                        "~/.cache/lrf-bench; never inside the repository)")
    p.add_argument("--timeout", type=_int("--timeout", 1), default=3600,
                   help="seconds before one configuration is stopped (default 3600)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the full report as JSON")
    p.add_argument("--plot", default=None, metavar="PATH", help="write a PNG plot")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _cache_dir(arg: str | None) -> Path:
    path = Path(arg or os.environ.get("LRF_BENCH_CACHE") or Path.home() / ".cache" / "lrf-bench")
    path = path.expanduser().resolve()
    root = P.repo_root()
    if root is not None and path.is_relative_to(root):
        raise ValueError(f"--cache {path} is inside the repository {root}; exported benchmark "
                         "bundles must live outside it (e.g. ~/.cache/lrf-bench)")
    return path


def _machine(threads) -> dict:
    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                  if ln.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "threads": threads,
            "python": platform.python_version(), "platform": platform.platform(),
            "load_average_start": os.getloadavg()}


@entry(PROG)  # one error line, Ctrl-C 130; no traceback (lrf/cli.py)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device != "cpu":
        print(f"{PROG}: error: --device {args.device} is not available here: lrf-bench measures "
              "CPU inference on this machine only (use --device cpu)", file=sys.stderr)
        return 2
    # ValueError / OSError: one line and exit 2 from lrf.cli.run, which also knows when the
    # error is an interrupt some library rewrapped (then: "interrupted", 130)
    return _run(args, list(sys.argv[1:] if argv is None else argv))


def _run(args, argv: list[str]) -> int:
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    limit = args.ram_limit
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path:   # the project's one output check, before minutes of measuring
            check_output(path, flag)
    ckpt, trained, plan, exports = _prepare(args, log)

    machine = _machine(args.threads)
    monitor = LoadMonitor()
    monitor.start()
    bare = run_child({"kind": "bare"}, limit, args.timeout)
    bare_kb = bare.peak_kb if bare.status == "ok" else None
    matmul = [_matmul(args)]
    log(f"{PROG}: bare interpreter peak {_mb(bare.peak_kb)} MB; fp32 matmul peak "
        f"{matmul[0].get('gflops', float('nan')):.1f} GFLOP/s; limit {format_size(limit)}; "
        f"load average {machine['load_average_start'][0]:.1f} on {machine['cores']} cores")
    rows = []
    for i, c in enumerate(plan, 1):
        rows.append(_measure(c, args, ckpt, bare_kb, limit))
        monitor.sample()
        log(f"[{i}/{len(plan)}] {_progress(rows[-1])}")
    for c in _batch_probes(rows, plan, args.max_batch):
        rows.append(_measure(c, args, ckpt, bare_kb, limit))
        log(f"[fit] {_progress(rows[-1])}")
    # The GEMM peak again at the end: on a shared machine the larger of the two is the better
    # estimate of what this CPU can do.
    matmul.append(_matmul(args))
    peak_gflops = max((m["gflops"] for m in matmul if "gflops" in m), default=None)
    R.add_ratios(rows, peak_gflops)
    machine["load_average_end"] = os.getloadavg()
    quiet = monitor.finish()
    busy = max(quiet["load_average_samples"])
    state = "machine quiet" if quiet["quiet"] else "measured under load"
    report = {"command": [PROG, *argv], "machine": machine, "machine_state": state,
              "quiet_check": quiet,
              "ram_limit_bytes": limit,
              "enforcement": {"method": "watchdog on /proc/<pid>/status VmHWM, SIGKILL above the "
                              "limit", "poll_s": POLL_S, "poll_idle_s": POLL_IDLE_S,
                              "idle_below": "half the limit"},
              "bare_interpreter_peak_mb": _mb(bare.peak_kb, None),
              "matmul_peak": {"gflops": peak_gflops, "runs": matmul},
              "trained_resolution": trained, "repeats": args.repeats, "warmup": args.warmup,
              "min_seconds": args.min_seconds,
              "checkpoint": ckpt.path if ckpt else None, "exports": exports, "rows": rows,
              "fits": R.fits(rows, limit), "targets": R.target_checks(rows, trained, judged=quiet["quiet"])}
    _print_report(report, busy)
    if args.json:   # never onto a FIFO or a device node: atomic_output refuses them again
        with atomic_output(args.json, "--json") as tmp:
            R.write_json(tmp, report)
    if args.plot:
        with atomic_output(args.plot, "--plot") as tmp:
            R.write_plot(tmp, rows, limit)
    return _verdict(rows, limit)


def _prepare(args, log):
    """Checkpoint, trained resolution, the plan, and its bundles (exported into the cache where
    no --bundle serves a configuration)."""
    bundles = [P.read_bundle_info(b) for b in args.bundle]
    ckpt_dir = args.checkpoint or next((b.checkpoint for b in bundles if b.checkpoint and
                                        Path(b.checkpoint, "lrf.json").is_file()), None) \
        or str(P.default_checkpoint())
    have_ckpt = Path(ckpt_dir, "lrf.json").is_file()
    # Without --bundle the checkpoint is required (read_checkpoint_info says what to pass).
    ckpt = P.read_checkpoint_info(ckpt_dir) if have_ckpt or not bundles else None
    targets = args.target if args.target is not None else ([] if bundles else
                                                           list(P.TARGET_BACKENDS))
    precisions = ["int8"] if args.int8 else (args.precision or list(P.PRECISIONS))
    variants = P.variants_for(targets, precisions, bundles)
    trained = (ckpt.latent_size if ckpt else bundles[0].latent_size) * P.SCALE
    resolutions = args.resolution or (sorted({b.resolution for b in bundles}) if bundles
                                      else [trained])
    steps = args.steps or sorted({8, ckpt.steps if ckpt else bundles[0].default_steps})
    plan = P.build_plan(variants, bundles, resolutions, steps, args.mode, args.batch,
                        args.baseline)
    for c in plan:
        if c.variant.backend == P.PYTORCH and ckpt is None:
            c.skip = ("not_available", "no checkpoint for the PyTorch reference; pass "
                      "--checkpoint DIR (or --no-baseline)")
    reqs = P.export_requests(plan, steps, trained // P.SCALE)
    if not reqs:
        return ckpt, trained, plan, {}
    if ckpt is None:
        raise FileNotFoundError("configurations need bundles exported from a checkpoint, and "
                                "none was found; pass --checkpoint DIR")
    cache = _cache_dir(args.cache)
    # Exports are preparation, not measurements, but they run on a shared machine: capped at
    # 60% of the memory available now, so a runaway export stops with a message instead of
    # sending the kernel's OOM killer after whatever else is running.
    cap = int(0.6 * available_memory())
    log(f"{PROG}: preparing {len(reqs)} bundle(s) in {cache} (exporting takes minutes the "
        f"first time; cached after; capped at {format_size(cap)})")
    out = run_child({"kind": "export", "checkpoint": ckpt.path, "cache": str(cache),
                     "requests": reqs}, cap, on_stderr=lambda line: log(f"  export: {line}"))
    if out.status == "over_budget":
        tail = out.stderr_tail.strip().splitlines()
        out.error = (f"the export used more than {format_size(cap)} (60% of the memory "
                     "available) and was stopped" + (f" during: {tail[-1]}" if tail else ""))
    results = [e for e in out.events if e.get("event") == "bundle"]
    # A crashed or killed export leaves its remaining configurations as failed rows (exit 1).
    P.apply_exports(plan, results, missing=f"bundle export failed: {out.error}"
                    if out.status != "ok" else "bundle export did not report this bundle")
    return ckpt, trained, plan, {"cache": str(cache), "requests": reqs, "bundles": results,
                                 "memory_cap_bytes": cap}


def _print_report(rep: dict, busy: float) -> None:
    rows, trained = rep["rows"], rep["trained_resolution"]
    print(f"lrf-bench: cpu, --ram-limit {format_size(rep['ram_limit_bytes'])} (enforced: child "
          f"killed when its resident peak passes it), {rep['machine_state']} (load average "
          f"{busy:.1f} on {rep['machine']['cores']} cores)")
    print(f"bare interpreter peak {rep['bare_interpreter_peak_mb']} MB; numpy fp32 matmul peak "
          f"{rep['matmul_peak']['gflops'] or float('nan'):.1f} GFLOP/s; steady = median of >= "
          f"{rep['repeats']} calls (and >= {rep['min_seconds']} s) after the first")
    print(R.table(rows))
    print()
    print(R.fits_text(rep["fits"]))
    print(R.checks_text(rep["targets"]))
    for reason in rep["quiet_check"]["reasons"]:
        print(f"not judged: measured under load: {reason}")
    for r in rows:
        if "per_step_vs_flop_bound" in r:
            print(f"per step of a batch-{r['batch']} call: {r['name']}: "
                  f"{r['per_step_ms']:.2f} ms = {r['per_step_vs_flop_bound']:.1f}x the FLOP-bound "
                  f"{r['flop_bound_step_ms']:.2f} ms of {r['batch']} image(s) "
                  f"({r['per_step_method']})")
    if any(r.get("fraction_of_matmul_peak", 0) > 1 for r in rows):
        print("note: some rows exceed the measured GEMM peak: the peak was measured while the "
              "machine was busy, so %peak is not reliable in this run")
    if any(r["resolution"] != trained for r in rows):
        print(f"note: only {trained}px is the trained size; other resolutions use the same "
              "weights to measure cost, their images are meaningless")


def _matmul(args) -> dict:
    """fp32 GEMM throughput in a child with the configured threads (no memory cap: it is the
    machine's reference, not a configuration)."""
    out = run_child({"kind": "matmul", "n": 1024, "seconds": 0.5}, None, args.timeout,
                    args.threads)
    return out.result if out.status == "ok" else {"error": out.error}


def _mb(kb, default="?"):
    return default if not kb else round(kb / 1024, 1)


def _progress(r: dict) -> str:
    if r["status"] == "ok":
        return (f"{r['name']}: {r['image_ms']['median']:.1f} ms/img, peak "
                f"{r['peak_rss_mb']:.1f} MB")
    return f"{r['name']}: {r['status']}" + (f" ({r['message']})" if r.get("message") else "")


def _measure(c: P.Config, args, ckpt, bare_kb, limit) -> dict:
    if c.skip is not None:
        return R.make_row(c, None, bare_kb)
    common = {"steps": c.steps, "batch": c.batch, "threads": args.threads,
              "repeats": 1 if c.probe else args.repeats, "warmup": 0 if c.probe else args.warmup,
              "min_seconds": 0.0 if c.probe else args.min_seconds}
    if c.variant.backend == P.PYTORCH:
        spec = {"kind": "torch", "checkpoint": ckpt.path, "latent_size": c.latent_size,
                "flops": not c.probe, **common}
    else:
        spec = {"kind": "runtime", "bundle": c.bundle, "backend": c.variant.backend,
                "mode": c.mode, **common}
    out = run_child(spec, limit, args.timeout, args.threads)
    row = R.make_row(c, out, bare_kb)
    if out.status == "over_budget":
        row["message"] = (f"stopped: resident peak reached {row.get('peak_rss_mb', 0):.1f} MB > "
                          f"--ram-limit {format_size(limit)} while {_doing(out.last_phase)}")
    return row


def _doing(last_phase: str | None) -> str:
    """What the child was doing when killed: the step after the last phase it completed."""
    if last_phase is None:
        return "starting the interpreter"
    if last_phase.startswith("open:"):
        return f"opening the next graph or making the first image (after {last_phase[5:]})"
    return {"start": "importing the engine", "import": "loading the model",
            "manifest": "opening the graphs", "load": "making the first image",
            "first_image": "making the timed images"}.get(last_phase, f"after '{last_phase}'")


def _batch_probes(rows: list[dict], plan: list[P.Config], max_batch: int):
    """Per runtime variant: double the batch at its largest fitting resolution until a run goes
    over the limit or reaches ``max_batch`` (one image per run: only memory matters here)."""
    for v in dict.fromkeys(c.variant for c in plan if c.variant.backend != P.PYTORCH):
        ok = [r for r in rows if r["status"] == "ok" and r["backend"] == v.backend
              and r["precision"] == v.precision and r["target"] == v.target]
        if not ok:
            continue
        res = max(r["resolution"] for r in ok)
        at = [r for r in ok if r["resolution"] == res]
        best = max(at, key=lambda r: (r["mode"] == "fused", -r["steps"], r["batch"]))
        src = next(c for c in plan if c.name == best["name"])
        b = max(r["batch"] for r in at if r["mode"] == best["mode"])
        while b * 2 <= max_batch:
            b *= 2
            c = P.Config(v, res, best["steps"], best["mode"], b, bundle=src.bundle, probe=True)
            yield c  # the caller measures it and appends its row before we resume
            if rows[-1]["status"] != "ok":
                break


def _verdict(rows: list[dict], limit: int) -> int:
    sys.stdout.flush()  # the table first, then the one-line verdict on stderr
    main_rows = [r for r in rows if not r["probe"]]
    over = [r for r in main_rows if r["status"] == "over_budget"]
    bad = [r for r in main_rows if r["status"] in ("failed", "timeout")]
    if over:
        worst = max(r.get("peak_rss_mb", 0) for r in over)
        print(f"{PROG}: error: {len(over)} of {len(main_rows)} configurations exceeded "
              f"--ram-limit {format_size(limit)} and were stopped (largest peak {worst:.1f} MB); "
              f"first: {over[0]['name']}, while {_doing(over[0].get('last_phase'))}",
              file=sys.stderr)
        return 1
    if bad:
        print(f"{PROG}: error: {len(bad)} of {len(main_rows)} configurations failed; first: "
              f"{bad[0]['name']}: {bad[0].get('message')}", file=sys.stderr)
        return 1
    if not any(r["status"] == "ok" for r in main_rows):
        print(f"{PROG}: error: nothing was measured (every configuration was unavailable or "
              "skipped; see the notes above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
