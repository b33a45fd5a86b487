"""Turn child outcomes into rows, ratios against PyTorch, fits, target checks, table, plot."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from lrf.benchmarks.limit import ChildOutcome
from lrf.benchmarks.plan import PYTORCH, Config

MB = 1024 * 1024


def _ms(s):
    return None if s is None else 1000.0 * s


def make_row(c: Config, out: ChildOutcome | None, bare_kb: int | None) -> dict:
    """One configuration's JSON row (times in ms, memory in MB)."""
    v = c.variant
    row = {"name": c.name, "backend": v.backend, "target": v.target, "precision": v.precision,
           "mode": c.mode, "resolution": c.resolution, "latent_size": c.latent_size,
           "steps": c.steps, "batch": c.batch, "bundle": c.bundle, "probe": c.probe}
    if out is None:
        row.update(status=c.skip[0], message=c.skip[1])
        return row
    row.update(status=out.status, wall_s=round(out.wall_s, 3),
               phases=[e for e in out.events if e.get("event") == "phase"])
    if out.peak_kb:
        row["peak_rss_mb"] = out.peak_kb / 1024
        if bare_kb:
            row["peak_above_bare_mb"] = (out.peak_kb - bare_kb) / 1024
    if out.status != "ok":
        row["message"] = out.error or ""
        row["last_phase"] = out.last_phase
        if out.status in ("failed", "timeout") and out.stderr_tail:
            row["stderr_tail"] = out.stderr_tail[-2000:]
        return row
    r = out.result
    # Per image: each call's latency / batch (a batch-1 row is simply the call latency).
    img = {k: (_ms(x) / c.batch if k in ("median", "min", "max") else x)
           for k, x in r["image_s"].items()}
    img["runs"] = [_ms(x) / c.batch for x in r["image_s"]["runs"]]
    row.update(load_ms=_ms(r["load_s"]), first_call_ms=_ms(r["first_s"]), image_ms=img,
               images_per_s=c.batch / r["image_s"]["median"] if r["image_s"]["median"] else None,
               engine_version=r.get("engine_version"), artifact_bytes=r.get("artifact_bytes", {}),
               source_checkpoint_sha256=r.get("source_checkpoint_sha256"),
               guidance_distilled=bool(r.get("guidance_distilled")),
               artifact_mb=sum(r.get("artifact_bytes", {}).values()) / MB)
    if "step_s" in r:
        row.update(per_step_ms=_ms(r["step_s"]["median"]), decode_ms=_ms(r["decode_s"]["median"]),
                   per_step_method="median of on_step intervals (step graph only)")
    else:  # fused: the graph runs all steps and the decoder in one call
        row.update(per_step_ms=_ms(r["image_s"]["median"]) / c.steps,
                   per_step_method="image latency / N (includes the decoder's share)")
    if "torch_imported" in r:
        row["torch_imported"] = r["torch_imported"]
    if "flops" in r:
        row["flops"] = r["flops"]
    if "graphs" in r:  # per graph: time and resident memory right after it was opened
        row["graph_open"] = {k: {"ms": _ms(g["seconds"]), "rss_mb": g["rss_kb"] / 1024}
                             for k, g in r["graphs"].items()}
    return row


def add_ratios(rows: list[dict], matmul_gflops: float | None) -> None:
    """Speed and memory ratios against the PyTorch row of the same (resolution, steps, batch);
    FLOPs per image (counted on that PyTorch row) and the achieved fraction of the GEMM peak."""
    base = {(r["resolution"], r["steps"], r["batch"]): r for r in rows
            if r["backend"] == PYTORCH and r["status"] == "ok"}
    flops = {(r["resolution"], r["steps"]): r["flops"]["per_image"] for r in rows
             if r["backend"] == PYTORCH and "flops" in r}
    step_flops = {r["resolution"]: r["flops"]["step"] for r in rows
                  if r["backend"] == PYTORCH and "step" in r.get("flops", {})
                  and not r.get("guidance_distilled")}
    teacher50 = {(r["resolution"], r["batch"]): r for r in rows
                 if r["backend"] == PYTORCH and r["status"] == "ok" and r["steps"] == 50
                 and not r.get("guidance_distilled")}
    for r in rows:
        if r["status"] != "ok":
            continue
        t50 = teacher50.get((r["resolution"], r["batch"]))
        if r.get("guidance_distilled") and t50 is not None:   # turbo vs the 50-step teacher
            r["speedup_vs_teacher_pytorch_50"] = t50["image_ms"]["median"] / r["image_ms"]["median"]
            r["peak_rss_vs_teacher_pytorch_50"] = r["peak_rss_mb"] / t50["peak_rss_mb"]
        b = base.get((r["resolution"], r["steps"], r["batch"]))
        mine, theirs = (r.get("source_checkpoint_sha256"),
                        b.get("source_checkpoint_sha256") if b else None)
        if b is not None and mine and theirs and mine != theirs:
            r["ratio_note"] = ("no ratio: the bundle was exported from another checkpoint than "
                               "the PyTorch baseline ran (pass --checkpoint)")
            continue
        if b is not None:
            r["speedup_vs_pytorch"] = b["image_ms"]["median"] / r["image_ms"]["median"]
            r["peak_rss_vs_pytorch"] = r["peak_rss_mb"] / b["peak_rss_mb"]
        f = flops.get((r["resolution"], r["steps"]))
        if f is not None:
            r["flops_per_image"] = f
            per_image_s = r["image_ms"]["median"] / 1000
            r["achieved_gflops"] = f / per_image_s / 1e9
            if matmul_gflops:
                r["fraction_of_matmul_peak"] = r["achieved_gflops"] / matmul_gflops
        sf = step_flops.get(r["resolution"])
        if sf and matmul_gflops and r.get("per_step_ms") and not r.get("guidance_distilled"):
            # one teacher step (both guidance passes) of the row's whole call at the GEMM peak:
            # per_step_ms times a call of `batch` images, so the bound covers `batch` images too
            r["flop_bound_step_ms"] = sf * r["batch"] / (matmul_gflops * 1e9) * 1e3
            r["per_step_vs_flop_bound"] = r["per_step_ms"] / r["flop_bound_step_ms"]


def fits(rows: list[dict], limit_bytes: int | None) -> list[dict]:
    """Per backend and precision: the largest resolution that ran within the limit, and the
    largest batch that ran at that resolution (main rows and the batch search)."""
    out = {}
    for r in rows:
        key = (r["backend"], r["precision"])
        f = out.setdefault(key, {"backend": key[0], "precision": key[1], "resolution": None,
                                 "batch": None, "peak_rss_mb": None, "smallest_over": None})
        if r["status"] == "ok":
            if f["resolution"] is None or r["resolution"] > f["resolution"]:
                f.update(resolution=r["resolution"], batch=None)
            if r["resolution"] == f["resolution"] and (f["batch"] or 0) < r["batch"]:
                f.update(batch=r["batch"], peak_rss_mb=r["peak_rss_mb"], mode=r["mode"],
                         steps=r["steps"])
        elif r["status"] == "over_budget":
            so = f["smallest_over"]
            if so is None or (r["resolution"], r["batch"]) < (so["resolution"], so["batch"]):
                f["smallest_over"] = {"resolution": r["resolution"], "batch": r["batch"],
                                      "mode": r["mode"], "steps": r["steps"]}
    res = list(out.values())
    for f in res:
        f["limit_bytes"] = limit_bytes
    return res


UNDER_LOAD = "not judged: measured under load"


def target_checks(rows: list[dict], trained_resolution: int, judged: bool = True) -> list[dict]:
    """The issues' targets, evaluated on this run's rows (nothing assumed when a row is absent).
    A run that was not quiet (``benchmarks/load.py``) reports values but judges none."""
    ok = [r for r in rows if r["status"] == "ok" and not r["probe"] and r["batch"] == 1]
    checks = []

    def add(name, want, cands, value_key, cmp):
        for r in cands:
            v = r.get(value_key)
            c = {"target": name, "config": r["name"], "value": v, "bar": want,
                 "met": None if v is None or not judged else cmp(v, want)}
            if v is None:
                c["note"] = "no PyTorch baseline row to compare with"
            elif not judged:
                c["note"] = UNDER_LOAD
            checks.append(c)
        if not cands:
            checks.append({"target": name, "config": None, "value": None, "bar": want,
                           "met": None, "note": "no matching configuration in this run"})

    at = trained_resolution
    teacher_int8 = [r for r in ok if r["target"] == "onnx" and r["precision"] == "int8"
                    and r["resolution"] == at and not r.get("guidance_distilled")]
    for n, want in ((50, 6.0), (8, 10.0)):
        add(f">= {want:g}x faster per image than PyTorch eager (onnx int8, N={n})", want,
            [r for r in teacher_int8 if r["steps"] == n], "speedup_vs_pytorch", lambda v, w: v >= w)
    add(">= 40x faster per image than the PyTorch eager teacher at 50 steps (turbo onnx int8, "
        "default steps)", 40.0,
        [r for r in ok if r.get("guidance_distilled") and r["target"] == "onnx"
         and r["precision"] == "int8" and r["resolution"] == at],
        "speedup_vs_teacher_pytorch_50", lambda v, w: v >= w)
    add(f"peak RSS <= 100 MB, onnx, {at}px", 100.0,
        [r for r in ok if r["target"] == "onnx" and r["resolution"] == at],
        "peak_rss_mb", lambda v, w: v <= w)
    add("peak RSS <= 250 MB, onnx int8, 512px (fused and stepwise)", 250.0,
        [r for r in ok if r["target"] == "onnx" and r["precision"] == "int8"
         and r["resolution"] == 512], "peak_rss_mb", lambda v, w: v <= w)
    return checks


def _f(v, fmt="{:.1f}", none="-"):
    return none if v is None else fmt.format(v)


COLUMNS = ("config", "status", "load ms", "1st ms", "ms/img (min-max)", "step ms", "img/s",
           "peak MB", "+bare", "x speed", "x mem", "size MB", "GFLOP/img", "%peak")


def table(rows: list[dict]) -> str:
    """The stdout table (main rows; the batch search is summarised under 'fits')."""
    lines = []
    for r in rows:
        if r["probe"]:
            continue
        if r["status"] != "ok":
            lines.append((r["name"], r["status"], *[""] * 5, _f(r.get("peak_rss_mb")),
                          *[""] * 6))
            continue
        im = r["image_ms"]
        pct = r.get("fraction_of_matmul_peak")
        lines.append((
            r["name"], "ok", _f(r["load_ms"], "{:.0f}"), _f(r["first_call_ms"]),
            f"{im['median']:.1f} ({im['min']:.1f}-{im['max']:.1f})", _f(r["per_step_ms"], "{:.2f}"),
            _f(r["images_per_s"], "{:.2f}"), _f(r["peak_rss_mb"]), _f(r.get("peak_above_bare_mb")),
            _f(r.get("speedup_vs_pytorch"), "{:.2f}"), _f(r.get("peak_rss_vs_pytorch"), "{:.2f}"),
            _f(r.get("artifact_mb"), "{:.2f}"),
            _f(r["flops_per_image"] / 1e9 if "flops_per_image" in r else None, "{:.3f}"),
            _f(100 * pct if pct is not None else None, "{:.1f}")))
    widths = [max(len(str(x[i])) for x in [COLUMNS, *lines]) for i in range(len(COLUMNS))]
    fmt = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    out = [fmt(COLUMNS), fmt(["-" * w for w in widths])] + [fmt(x) for x in lines]
    notes = [f"  {r['name']}: {r['status']}: {r['message']}" for r in rows
             if r["status"] != "ok" and not r["probe"] and r.get("message")]
    notes += [f"  {r['name']}: {r['ratio_note']}" for r in rows if r.get("ratio_note")]
    notes += [f"  {r['name']}: its peak RSS includes torch, which the {r['backend']} Python "
              "package loaded into the process (an app linking the C++ runtime does not)"
              for r in rows if r["status"] == "ok" and r.get("torch_imported")]
    return "\n".join(out + (["", "notes:"] + notes if notes else []))


def fits_text(fit_rows: list[dict]) -> str:
    lines = ["largest configuration within the limit (per backend/precision):"]
    for f in fit_rows:
        if f["resolution"] is None:
            lines.append(f"  {f['backend']} {f['precision']}: "
                         + ("none fits" if f["smallest_over"] else "nothing measured"))
            continue
        over = f["smallest_over"]
        lines.append(f"  {f['backend']} {f['precision']}: {f['resolution']}px batch {f['batch']} "
                     f"(peak {f['peak_rss_mb']:.1f} MB)"
                     + (f"; over budget at {over['resolution']}px batch {over['batch']}"
                        if over else ""))
    return "\n".join(lines)


def checks_text(checks: list[dict]) -> str:
    lines = ["targets (measured in this run):"]
    for c in checks:
        if c["value"] is None:
            lines.append(f"  {c['target']}: {c['config'] or ''} not measured ({c['note']})")
        else:
            verdict = UNDER_LOAD if c["met"] is None else ("met" if c["met"] else "MISSED")
            lines.append(f"  {c['target']}: {c['config']}: {c['value']:.2f} -> {verdict}")
    return "\n".join(lines)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, report: dict) -> None:
    write_atomic(path, (json.dumps(report, indent=2) + "\n").encode())


def write_plot(path: str | os.PathLike, rows: list[dict], limit_bytes: int | None) -> None:
    """PNG: per-image latency and peak RSS against output resolution, one line per
    backend/precision/mode/N (batch-1 rows that ran within the limit)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (NullLocator below)

    series: dict[str, list[tuple]] = {}
    for r in rows:
        if r["status"] == "ok" and not r["probe"] and r["batch"] == 1:
            key = f"{r['backend']} {r['precision']} {r['mode']} N={r['steps']}"
            series.setdefault(key, []).append((r["resolution"], r["image_ms"]["median"],
                                               r["peak_rss_mb"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, pts in sorted(series.items()):
        pts.sort()
        xs = [p[0] for p in pts]
        style = "--" if key.startswith(PYTORCH) else "-"
        ax1.plot(xs, [p[1] for p in pts], style, marker="o", label=key)
        ax2.plot(xs, [p[2] for p in pts], style, marker="o", label=key)
    if limit_bytes:
        ax2.axhline(limit_bytes / MB, color="red", lw=1, ls=":", label="--ram-limit")
    ticks = sorted({p[0] for pts in series.values() for p in pts})
    for ax, title, unit in ((ax1, "latency per image", "ms"), (ax2, "peak RSS (whole process)",
                                                              "MB")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # only the measured sizes
        ax.set_yscale("log")
        ax.set_xlabel("output resolution (px, square)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7, loc="best")
    fig.suptitle("lrf-bench (images at untrained resolutions measure cost only)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buf.getvalue())
