"""lrf-bench: the enforced RAM budget, the outputs, the ratios. Tiny bundles, few repeats.

The integration tests run real child processes (each one an interpreter plus onnxruntime or
torch), so they are few: one run over budget, one passing run with every output, one cached
export. The arithmetic (ratios, fits, target checks) is tested on explicit rows.
"""

from __future__ import annotations

import json
import os
import shutil
import struct

import pytest

from lrf.benchmarks import cli, plan, report
from lrf.benchmarks.limit import format_size, parse_size, run_child

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench_ckpt(tiny_checkpoint, tmp_path_factory):
    """A copy of the tiny test checkpoint with default N = 2, so the exporter's reference
    trajectories and the bench's default step counts stay tiny (sampling defaults live in
    lrf.json only, outside the weights)."""
    path = tmp_path_factory.mktemp("bench") / "tiny"
    shutil.copytree(tiny_checkpoint, path)
    meta = json.loads((path / "lrf.json").read_text())
    meta["sampling"]["steps"] = 2
    (path / "lrf.json").write_text(json.dumps(meta, indent=2) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def tiny_bundle(bench_ckpt, tmp_path_factory):
    """An ONNX fp32 bundle (fused N = 2) written by the exporter's API from the tiny checkpoint."""
    from lrf.exporter.export import export_bundle

    out = tmp_path_factory.mktemp("bench") / "tiny-onnx-fp32"
    export_bundle("onnx", bench_ckpt, out, steps=[2], parity_images=1, fidelity_images=0,
                  log=lambda m: None)
    return str(out)


def _run(capsys, argv):
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse usage errors (lrf.cli.Parser: one line, status 2)
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


# ----------------------------------------------------------------------------- cheap checks
def test_device_other_than_cpu_is_refused(capsys):
    rc, out, err = _run(capsys, ["--device", "cuda"])
    assert rc == 2
    assert err.strip().count("\n") == 0
    assert "--device cuda is not available here" in err


@pytest.mark.parametrize("text,want", [("64M", 64 << 20), ("3G", 3 << 30), ("1.5G", 3 << 29),
                                       ("512MiB", 512 << 20), ("2097152", 2 << 20)])
def test_parse_size(text, want):
    assert parse_size(text) == want
    assert parse_size(format_size(want)) == want


@pytest.mark.parametrize("bad", ["3X", "", "-1G", "10K"])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


def test_bad_ram_limit_and_missing_bundle_are_one_line_errors(capsys, tmp_path):
    rc, _, err = _run(capsys, ["--ram-limit", "lots"])
    assert rc == 2 and "not understood" in err and err.count("\n") == 1
    rc, _, err = _run(capsys, ["--bundle", str(tmp_path / "nope")])
    assert rc == 2 and "has no manifest.json" in err and err.count("\n") == 1
    rc, _, err = _run(capsys, ["--target", "coreml"])
    assert rc == 2 and "Apple" in err


def test_cache_inside_the_repository_is_refused(capsys, bench_ckpt):
    rc, _, err = _run(capsys, ["--checkpoint", bench_ckpt, "--cache",
                               str(plan.repo_root() / "bench-cache")])
    assert rc == 2 and "inside the repository" in err
    assert not (plan.repo_root() / "bench-cache").exists()


def test_unknown_backend_is_reported_not_available():
    out = run_child({"kind": "runtime", "backend": "no-such-engine", "bundle": "x", "mode":
                     "fused", "steps": 1, "repeats": 1}, parse_size("3G"), 300)
    assert out.status == "not_available"
    assert "no-such-engine" in out.error


def test_watchdog_polls_slowly_far_from_the_limit(monkeypatch):
    """The watchdog wakes every POLL_IDLE_S while the child's peak is below half the limit (so it
    does not preempt a multi-threaded engine being timed) and every POLL_S above it."""
    from lrf.benchmarks import limit

    assert limit.POLL_IDLE_S > limit.POLL_S
    assert limit.poll_interval(1000, 4000 * 1024) == limit.POLL_IDLE_S   # peak at 1/4
    assert limit.poll_interval(2001, 4000 * 1024) == limit.POLL_S        # just past 1/2
    assert limit.poll_interval(10, None) == limit.POLL_S                 # no limit
    seen, real = [], limit.time.sleep
    monkeypatch.setattr(limit.time, "sleep", lambda s: (seen.append(s), real(s)))
    out = run_child({"kind": "bare"}, 1 << 40)
    assert out.status == "ok" and set(seen) <= {limit.POLL_IDLE_S}


def test_timing_continues_until_min_seconds():
    import time

    from lrf.benchmarks.child import _StepClock, _timed_runs

    out = _timed_runs(lambda: time.sleep(0.01), _StepClock(), warmup=0, repeats=2,
                      stepwise=False, min_seconds=0.08)
    assert out["image_s"]["n"] >= 5 and sum(out["image_s"]["runs"]) >= 0.08
    assert _timed_runs(lambda: None, _StepClock(), 0, 3, False)["image_s"]["n"] == 3


# ----------------------------------------------------------------------------- arithmetic
def _row(backend, precision, res, ms, peak, status="ok", steps=50, mode="fused", batch=1,
         flops=None, probe=False):
    r = {"name": f"{backend} {precision} {mode} N={steps} {res}px B={batch}", "backend": backend,
         "target": None if backend == "pytorch" else "onnx", "precision": precision,
         "mode": mode, "resolution": res, "steps": steps, "batch": batch, "status": status,
         "probe": probe, "peak_rss_mb": peak}
    if status == "ok":
        r["image_ms"] = {"median": ms}
    if flops is not None:
        r["flops"] = {"per_image": flops}
    return r


def test_ratios_against_pytorch_of_the_same_shape():
    rows = [_row("pytorch", "fp32", 32, 200.0, 400.0, flops=2e9),
            _row("onnxruntime", "int8", 32, 10.0, 80.0),
            _row("onnxruntime", "int8", 64, 30.0, 90.0)]          # no baseline at 64 px
    report.add_ratios(rows, matmul_gflops=100.0)
    assert rows[1]["speedup_vs_pytorch"] == pytest.approx(20.0)
    assert rows[1]["peak_rss_vs_pytorch"] == pytest.approx(0.2)
    assert rows[1]["achieved_gflops"] == pytest.approx(2e9 / 0.010 / 1e9)
    assert rows[1]["fraction_of_matmul_peak"] == pytest.approx(2.0)
    assert "speedup_vs_pytorch" not in rows[2] and "flops_per_image" not in rows[2]


def test_per_step_time_against_the_flop_bound():
    rows = [_row("pytorch", "fp32", 32, 200.0, 400.0, flops=2e9),
            _row("onnxruntime", "int8", 32, 10.0, 80.0),
            _row("onnxruntime", "int8", 64, 30.0, 90.0)]
    rows[0]["flops"]["step"] = 5e7          # 50 MFLOP per step: 0.5 ms at 100 GFLOP/s
    rows[1]["per_step_ms"], rows[2]["per_step_ms"] = 2.0, 3.0
    report.add_ratios(rows, matmul_gflops=100.0)
    assert rows[1]["flop_bound_step_ms"] == pytest.approx(0.5)
    assert rows[1]["per_step_vs_flop_bound"] == pytest.approx(4.0)
    assert "per_step_vs_flop_bound" not in rows[2]       # no step count at 64 px


def test_flop_bound_of_a_batch_call_counts_every_image():
    """per_step_ms of a batch-B row times one call of B images: the bound it is set against is
    B images' step, not one image's (which would overstate the ratio B times)."""
    rows = [_row("pytorch", "fp32", 32, 200.0, 400.0, flops=2e9),
            _row("onnxruntime", "int8", 32, 10.0, 80.0, batch=4)]
    rows[0]["flops"]["step"] = 5e7          # one image's step: 0.5 ms at 100 GFLOP/s
    rows[1]["per_step_ms"] = 4.0            # one step of the batch-4 call
    report.add_ratios(rows, matmul_gflops=100.0)
    assert rows[1]["flop_bound_step_ms"] == pytest.approx(2.0)
    assert rows[1]["per_step_vs_flop_bound"] == pytest.approx(2.0)


def test_fits_and_target_checks():
    rows = [_row("onnxruntime", "int8", 32, 5.0, 70.0),
            _row("onnxruntime", "int8", 32, 2.0, 60.0, steps=8),
            _row("onnxruntime", "int8", 512, 900.0, 240.0),
            _row("onnxruntime", "int8", 512, 950.0, 260.0, mode="stepwise"),
            _row("onnxruntime", "int8", 512, 0, 700.0, batch=2, probe=True),
            _row("onnxruntime", "int8", 512, 0, 1300.0, status="over_budget", batch=4,
                 probe=True),
            _row("onnxruntime", "fp32", 64, 0, 900.0, status="over_budget")]
    rows[0]["speedup_vs_pytorch"] = 5.5
    rows[1]["speedup_vs_pytorch"] = 10.5
    fit = {(f["backend"], f["precision"]): f for f in report.fits(rows, 1 << 30)}
    assert (fit[("onnxruntime", "int8")]["resolution"], fit[("onnxruntime", "int8")]["batch"]) \
        == (512, 2)
    assert fit[("onnxruntime", "int8")]["smallest_over"]["batch"] == 4
    assert fit[("onnxruntime", "fp32")]["resolution"] is None
    checks = report.target_checks(rows, trained_resolution=32)
    by = lambda key: [c for c in checks if key in c["target"]]  # noqa: E731
    assert [(c["value"], c["met"]) for c in by("6x")] == [(5.5, False)]
    assert [(c["value"], c["met"]) for c in by("10x")] == [(10.5, True)]
    assert [c["met"] for c in by("100 MB")] == [True, True]
    assert [c["met"] for c in by("250 MB")] == [True, False]      # fused 240, stepwise 260 MB
    assert by("40x")[0]["met"] is None and "no matching" in by("40x")[0]["note"]
    del rows[0]["speedup_vs_pytorch"]                 # e.g. --no-baseline: said, not dropped
    speed = [c for c in report.target_checks(rows, 32) if "6x" in c["target"]][0]
    assert speed["met"] is None and "baseline" in speed["note"]


def test_a_run_under_load_reports_values_but_judges_nothing():
    rows = [_row("onnxruntime", "int8", 32, 5.0, 70.0)]
    rows[0]["speedup_vs_pytorch"] = 73.0
    checks = report.target_checks(rows, trained_resolution=32, judged=False)
    measured = [c for c in checks if c["value"] is not None]
    assert measured and all(c["met"] is None and c["note"] == report.UNDER_LOAD for c in measured)
    assert "73.00 -> not judged: measured under load" in report.checks_text(checks)


def test_turbo_rows_are_compared_with_the_50_step_pytorch_teacher():
    rows = [_row("pytorch", "fp32", 32, 400.0, 500.0, steps=50),
            _row("pytorch", "fp32", 32, 70.0, 500.0, steps=8),
            _row("onnxruntime", "int8", 32, 8.0, 75.0, steps=4)]
    rows[2]["guidance_distilled"] = True
    report.add_ratios(rows, matmul_gflops=None)
    assert rows[2]["speedup_vs_teacher_pytorch_50"] == pytest.approx(50.0)
    assert rows[2]["peak_rss_vs_teacher_pytorch_50"] == pytest.approx(0.15)
    turbo = [c for c in report.target_checks(rows, 32) if "40x" in c["target"]]
    assert [(c["value"], c["met"]) for c in turbo] == [(pytest.approx(50.0), True)]


def test_load_monitor_sees_a_foreign_busy_process():
    """A busy loop that is not the bench's child (re-parented away by a double fork) makes the
    run 'not quiet'; the bench's own children never do."""
    import subprocess
    import sys
    import time

    from lrf.benchmarks.load import LoadMonitor

    mon = LoadMonitor(busy_process_cores=0.02)   # low: this machine may be busy already
    mon.start()
    pid = int(subprocess.check_output(
        ["sh", "-c", f"{sys.executable} -c 'import time; t=time.time()\nwhile time.time()-t<4: pass' "
                     ">/dev/null 2>&1 & echo $!"]).decode())
    try:
        time.sleep(2.5)
        verdict = mon.finish()
    finally:
        subprocess.call(["kill", str(pid)])
    assert not verdict["quiet"]
    assert any(h["pid"] == pid for h in verdict["heavy_processes"]), verdict
    assert any("other CPU-heavy processes" in r for r in verdict["reasons"])
    own = LoadMonitor(busy_process_cores=0.02)
    own.start()
    child = subprocess.Popen([sys.executable, "-c", "import time; t=time.time()\nwhile time.time()-t<1: pass"])
    child.wait()
    assert all(h["pid"] != child.pid for h in own.finish()["heavy_processes"])


def test_load_monitor_sees_short_lived_foreign_processes():
    """Foreign processes that start and end inside the run (a test suite's commands) are each
    invisible to the per-process check; the machine-wide busy time still marks the run."""
    import subprocess
    import sys
    import time

    from lrf.benchmarks.load import LoadMonitor

    mon = LoadMonitor(busy_process_cores=100.0)   # per-process check off: only the total counts
    mon.start()
    for _ in range(3):   # three 0.5 s CPU busy loops, each re-parented away (double fork)
        subprocess.check_call(["sh", "-c", f"{sys.executable} -c 'import time\n"
                               "while time.process_time() < 0.5: pass' >/dev/null 2>&1 &"])
        time.sleep(0.7)
    verdict = mon.finish()
    assert verdict["heavy_processes"] == []
    assert verdict["foreign_cores"] > 0.3, verdict
    assert not verdict["quiet"] and any("on average" in r for r in verdict["reasons"])

    from lrf.benchmarks.load import CLK_TCK, cpu_snapshot, own_ticks

    before = own_ticks(cpu_snapshot(), os.getpid())
    subprocess.check_call([sys.executable, "-c", "import time\n"
                           "while time.process_time() < 0.5: pass"])   # the bench's own child
    assert own_ticks(cpu_snapshot(), os.getpid()) - before >= 0.45 * CLK_TCK   # counted as ours


def test_export_requests_per_target_and_size():
    """ExecuTorch's denoise graph has a fixed window: its fused rows say why and its export
    asks for no N, while ONNX keeps the requested N. At untrained sizes ONNX int8 builds the shipped
    variant instead of scoring candidates."""
    variants = plan.variants_for(["onnx", "executorch"], ["int8"], [])
    cfgs = plan.build_plan(variants, [], [32], [8, 50], list(plan.MODES), [1], baseline=False)
    fused_et = [c for c in cfgs if c.variant.target == "executorch" and c.mode == "fused"]
    assert len(fused_et) == 2 and all(c.skip[0] == "skipped" and "fixed window" in c.skip[1]
                                      for c in fused_et)
    reqs = {r["target"]: r for r in plan.export_requests(cfgs, [8, 50], trained_latent=4)}
    assert reqs["executorch"]["steps"] == [] and reqs["onnx"]["steps"] == [8, 50]
    assert "options" not in reqs["onnx"]["settings"]                    # trained size: scored
    cfgs = plan.build_plan(variants, [], [512], [8], ["stepwise"], [1], baseline=False)
    reqs = {r["target"]: r for r in plan.export_requests(cfgs, [8], trained_latent=4)}
    assert reqs["onnx"]["settings"]["options"] == {"int8_variant": "static_qdq"}


# ----------------------------------------------------------------------------- real runs
def test_ram_limit_64m_fails_cleanly(capsys, tiny_bundle, tmp_path):
    j = tmp_path / "over.json"
    rc, out, err = _run(capsys, ["--bundle", tiny_bundle, "--ram-limit", "64M", "--steps", "2",
                                 "--mode", "fused", "--repeats", "1", "--min-seconds", "0",
                                 "--max-batch", "1", "--json", str(j), "--quiet"])
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrf-bench: error: ")
    assert "exceeded --ram-limit 64M" in lines[0]
    assert "Traceback" not in out + err
    rows = json.loads(j.read_text())["rows"]
    assert {r["backend"] for r in rows} == {"pytorch", "onnxruntime"}
    assert any(r["backend"] == "pytorch" and r["status"] == "over_budget"
               and "while importing the engine" in r["message"] for r in rows)
    for r in rows:
        # a tiny onnxruntime run peaks right around 64 MB here, so it may fit; whatever ran
        # within the budget really stayed under it, and whatever went over was stopped
        if r["status"] == "ok":
            assert r["backend"] == "onnxruntime" and r["peak_rss_mb"] <= 64, r
            continue
        assert r["status"] == "over_budget", r
        assert r["peak_rss_mb"] > 64          # killed once its resident peak passed the limit
        assert "image_ms" not in r            # stopped before it produced timings
    assert "over_budget" in out


def test_generous_limit_passes_with_table_json_plot(capsys, bench_ckpt, tiny_bundle, tmp_path):
    j, png = tmp_path / "bench.json", tmp_path / "bench.png"
    # the bundle's source checkpoint lies outside the project, so its manifest names it only:
    # the PyTorch baseline is given explicitly (a ratio needs the same checkpoint on both sides)
    rc, out, err = _run(capsys, ["--bundle", tiny_bundle, "--checkpoint", str(bench_ckpt),
                                 "--ram-limit", "3G", "--steps", "2",
                                 "--repeats", "2", "--min-seconds", "0", "--max-batch", "2",
                                 "--json", str(j), "--plot", str(png), "--quiet"])
    assert rc == 0, err
    assert "ms/img" in out and "peak MB" in out
    rep = json.loads(j.read_text())
    rows = {(r["backend"], r["mode"], r["batch"]): r for r in rep["rows"]}
    base = rows[("pytorch", "eager", 1)]
    fused = rows[("onnxruntime", "fused", 1)]
    stepwise = rows[("onnxruntime", "stepwise", 1)]
    for r in (base, fused, stepwise):
        assert r["status"] == "ok", r
        assert r["image_ms"]["n"] == 2 and len(r["image_ms"]["runs"]) == 2
        assert r["peak_rss_mb"] > rep["bare_interpreter_peak_mb"] > 0
        assert r["peak_rss_mb"] < 3 * 1024
        assert r["name"] in out
        # the peak is the whole process's: never below what any phase saw
        assert r["peak_rss_mb"] * 1024 >= max(p["hwm_kb"] for p in r["phases"])
    assert fused["torch_imported"] is False and stepwise["torch_imported"] is False
    assert fused["speedup_vs_pytorch"] == pytest.approx(
        base["image_ms"]["median"] / fused["image_ms"]["median"])
    f = base["flops"]
    assert f["step"] > 0 and f["decoder"] > 0
    assert f["per_image"] == pytest.approx(2 * f["step"] + f["decoder"])
    assert fused["flops_per_image"] == f["per_image"] and fused["fraction_of_matmul_peak"] > 0
    assert stepwise["per_step_ms"] > 0 and stepwise["decode_ms"] > 0
    assert set(stepwise["graph_open"]) == {"denoise", "decoder"}
    assert set(fused["graph_open"]) == {"denoise", "decoder"}
    assert fused["artifact_bytes"] and fused["artifact_mb"] > 0
    probe = rows[("onnxruntime", "fused", 2)]
    assert probe["probe"] and probe["status"] == "ok"
    fit = [x for x in rep["fits"] if x["backend"] == "onnxruntime"][0]
    assert (fit["resolution"], fit["batch"]) == (32, 2)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", png.read_bytes()[16:24])
    assert w > 400 and h > 200


def test_exports_are_cached_outside_the_repo(capsys, bench_ckpt, tiny_bundle, tmp_path):
    """With the bundle already in the cache, the bench reuses it instead of exporting."""
    from lrf.models.checkpoint import checkpoint_sha256

    cache = tmp_path / "cache"
    shutil.copytree(tiny_bundle, cache / checkpoint_sha256(bench_ckpt)[:16] /
                    "onnx-fp32-latent4-n2")
    j = tmp_path / "cached.json"
    rc, out, err = _run(capsys, ["--target", "onnx", "--precision", "fp32", "--checkpoint",
                                 bench_ckpt, "--cache", str(cache), "--steps", "2", "--mode",
                                 "fused", "--repeats", "1", "--min-seconds", "0", "--max-batch",
                                 "1", "--no-baseline", "--json", str(j), "--quiet"])
    assert rc == 0, err
    rep = json.loads(j.read_text())
    assert [b["status"] for b in rep["exports"]["bundles"]] == ["cached"]
    assert rep["rows"][0]["bundle"].startswith(str(cache))
    assert rep["rows"][0]["status"] == "ok"


def test_profile_groups_kernel_time_by_operator(capsys, tiny_bundle, tmp_path):
    from lrf.benchmarks import profile

    out = tmp_path / "prof.json"
    assert profile.main([tiny_bundle, "--threads", "1", "--runs", "5", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    prof = res["profile"]
    assert prof["kernels_per_call"] == sum(o["kernels_per_call"] for o in prof["ops"]) > 10
    assert sum(o["share"] for o in prof["ops"]) == pytest.approx(1.0)
    assert 0 < prof["compute_share"] < 1 and prof["compute_kernels_per_call"] > 0
    assert res["timing"][0]["median_ms"] > 0 and "kernels per call" in capsys.readouterr().out
    assert res["qdq_fusion"] is False              # the runtime's rule for a non-QDQ graph
    assert profile.main([tiny_bundle, "--graph", "decoder", "--threads", "1", "--runs", "2",
                         "--qdq-fusion", "on", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["qdq_fusion"] is True
    assert "QDQ fusion on" in capsys.readouterr().out
    assert profile.main([tiny_bundle, "--graph", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "graph 'nope'" in err


def test_a_turbo_bundle_runs_once_at_its_own_default_steps():
    turbo = plan.BundleInfo("/b/turbo", "onnx", "int8", 4, 32, None, "/ck/turbo", 4, True)
    teacher = plan.BundleInfo("/b/teacher", "onnx", "int8", 4, 32, None, "/ck/teacher", 50)
    variants = plan.variants_for([], [], [turbo, teacher])
    assert [v.turbo for v in variants] == [True, False]
    cfgs = plan.build_plan(variants, [turbo, teacher], [32], [8, 50], ["fused"], [1], True)
    runs = [(c.variant.label, c.steps, c.bundle) for c in cfgs]
    assert runs == [("pytorch fp32", 8, None), ("onnxruntime int8 turbo", 4, "/b/turbo"),
                    ("onnxruntime int8", 8, "/b/teacher"), ("pytorch fp32", 50, None),
                    ("onnxruntime int8", 50, "/b/teacher")]


def test_untrained_size_variant_is_the_shipped_recipe():
    """The bench's 512 px exports build the variant the shipped teacher bundle chose for its
    decoder, so the sweep measures the shipped recipe (plan.py)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "models", "bundles", "cifar10-int8", "manifest.json")) as fh:
        m = json.load(fh)
    assert m["graphs"]["decoder"]["quantization"]["variant"] == plan.UNTRAINED_SIZE_ONNX_INT8_VARIANT


def test_watchdog_cost_reports_a_failing_child_in_one_line(capsys, tmp_path):
    from lrf.benchmarks import watchdog_cost

    assert watchdog_cost.main(["--checkpoint", str(tmp_path / "none"), "--rounds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "benchmark child failed" in err[0] and "Traceback" not in err[0]


def test_table_notes_rows_whose_process_loaded_torch():
    """Only an ok row whose process had torch loaded (the executorch Python package loads it)
    gets the peak-RSS note, naming its backend; a failed row or a torch-free one does not."""
    from lrf.benchmarks.report import table

    rows = [_row("executorch", "int8", 32, 3.0, 300.0), _row("onnxruntime", "int8", 32, 2.0, 80.0),
            _row("executorch", "fp32", 32, 0, 310.0, status="failed"),
            _row("executorch", "fp32", 64, 4.0, 320.0)]
    for r in rows:
        if r["status"] == "ok":
            r.update(load_ms=50.0, first_call_ms=5.0, per_step_ms=1.0, images_per_s=300.0,
                     image_ms={"median": 3.0, "min": 2.5, "max": 3.5})
    rows[0]["torch_imported"] = rows[2]["torch_imported"] = True
    rows[1]["torch_imported"] = rows[3]["torch_imported"] = False

    def noted(rs):
        return [line.split(": its peak RSS")[0].strip() for line in table(rs).splitlines()
                if "its peak RSS includes torch" in line]

    assert noted(rows) == [rows[0]["name"]]
    assert "which the executorch Python package loaded" in table(rows)
    rows[1]["torch_imported"] = True  # an onnxruntime row that had torch loaded is noted too
    assert noted(rows) == [rows[0]["name"], rows[1]["name"]]
    assert f"{rows[1]['name']}: its peak RSS includes torch, which the onnxruntime" in table(rows)
