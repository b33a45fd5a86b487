"""Cross-language golden vectors: Python (the reference) == Kotlin (android_demo/core) == Swift.

The fixture ``golden_vectors.json`` is derived here from the Python code (lrf/prng.py,
models/flow.py, models/reference.py) and committed twice: as a JUnit resource of the Kotlin core
and as an XCTest resource of LRFKit. These tests re-derive it and require both copies to be
byte-identical, then (where kotlinc is installed) compile the Kotlin core and run its JUnit tests,
which check the Kotlin port against the same file. Swift runs the same checks in the macOS
workflow (.github/workflows/ios.yml).

Exactness: PRNG words and uniforms, the schedule, the Euler update and the pixel conversion are
compared bit for bit; normals to within 1e-6 (libm ``log``/``cos``/``sin`` may differ in the last
float64 bit across platforms, see lrf/prng.py).

Regenerate after a deliberate spec change:  .venv/bin/python tests/test_cross_language.py --write
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE_COPIES = (
    os.path.join(REPO, "android_demo", "core", "src", "test", "resources", "golden_vectors.json"),
    os.path.join(REPO, "ios_demo", "LRFKit", "Tests", "LRFKitTests", "Resources", "golden_vectors.json"),
)
KOTLIN_TESTS = os.path.join(REPO, "android_demo", "core", "run_tests.sh")

PRNG_SEEDS = (0, 1, 42, 2**63 + 5, 2**64 - 1)
SCHEDULE_STEPS = (1, 2, 3, 7, 8, 25, 49, 50, 100)   # 49: naive 1 + i*(-1/N) differs
SCHEDULE_SHIFTS = (1.0, 3.0)


def _f32_bits(values) -> list[str]:
    return [f"{int(b):08x}" for b in np.asarray(values, dtype=np.float32).view(np.uint32)]


def _floats(values) -> list[float]:
    # float(float32) is exact in float64; repr of it is the shortest exact round-trip text
    return [float(v) for v in np.asarray(values, dtype=np.float32)]


def _prng_case(seed: int, n: int) -> dict:
    from lrf import prng
    return {"seed": str(seed), "n": n,
            "words": [f"{int(w):016x}" for w in prng.words(seed, n)],
            "uniform_bits": _f32_bits(prng.uniform(seed, n)),
            "normal_bits": _f32_bits(prng.normal(seed, n)),
            "normals": _floats(prng.normal(seed, n))}


def _pixel_case() -> dict:
    """Float NCHW in [-1, 1] (plus out-of-range and rounding-edge values) -> uint8 NHWC."""
    import torch
    from lrf.models.reference import to_uint8
    h, w = 4, 5
    edges = [-1.0, 1.0, 0.0, -2.0, 3.5, 0.5 / 127.5 - 1.0, 1.5 / 127.5 - 1.0, 127.0 / 127.5 - 1.0,
             -0.99999994, 0.99999994]
    rng = np.random.default_rng(1234)
    x = np.concatenate([np.asarray(edges, np.float32),
                        rng.uniform(-1.1, 1.1, 3 * h * w - len(edges)).astype(np.float32)])
    rgb = to_uint8(torch.from_numpy(x.reshape(1, 3, h, w)))[0]     # [H, W, 3] uint8
    return {"height": h, "width": w, "float_chw_bits": _f32_bits(x),
            "rgb_hwc": [int(v) for v in rgb.reshape(-1)]}


def _euler_case() -> dict:
    """A full Euler trajectory with a fixed fake velocity, done with torch exactly as euler_sample."""
    import torch
    from lrf.models.flow import timesteps
    from lrf import prng
    n, steps, shift = 64, 8, 3.0
    z = torch.from_numpy(prng.normal(42, n))
    v = torch.from_numpy(prng.normal(7, n))
    ts = timesteps(steps, shift)
    for i in range(steps):
        z = z + (ts[i + 1] - ts[i]) * (v * (1.0 + i))   # a velocity that changes per step
    return {"latent_seed": "42", "velocity_seed": "7", "n": n, "steps": steps, "shift": shift,
            "velocity_scale": "step i (0-based) uses velocity * (1 + i)",
            "result_bits": _f32_bits(z.numpy())}


def _editing_case() -> dict:
    """The editing rules of lrf/editing.py (BUNDLE.md section 8) on fixed inputs: the start
    index (with exact ties), the noised start latent, the inpainting blend and the pixel ->
    latent keep-mask downsampling."""
    from lrf import editing, prng
    from lrf.runtime import scheduler
    starts = []
    for n, shift in ((8, 1.0), (50, 1.0), (7, 3.0), (1, 1.0)):
        ts = scheduler.timesteps(n, shift)
        for strength in (0.0, 0.0625, 0.3, 0.5625, 0.6, 0.9, 0.999, 1.0):
            starts.append({"steps": n, "shift": shift, "strength": strength,
                           "start_index": editing.start_index(ts, strength)})
    z_img, noise = prng.normal(5, 64), prng.normal(6, 64)
    ts = scheduler.timesteps(8, 3.0)
    noised = [{"t_bits": _f32_bits([ts[i]])[0], "result_bits": _f32_bits(editing.noised(z_img, noise, ts[i]))}
              for i in (0, 3, 8)]
    rng = np.random.default_rng(77)
    edge = rng.choice(np.array([128, 200, 255], np.uint8), (16, 24))   # all kept (128 is kept) ...
    for by, bx, v in ((0, 1, 127), (1, 0, 0), (1, 2, 127)):            # ... but one pixel in 3 blocks
        edge[8 * by + int(rng.integers(8)), 8 * bx + int(rng.integers(8))] = v
    masks = []
    for h, w, values in ((16, 24, edge), (8, 8, np.full((8, 8), 255, np.uint8)),
                         (16, 8, np.zeros((16, 8), np.uint8))):
        masks.append({"height": h, "width": w, "mask": [int(v) for v in values.reshape(-1)],
                      "keep": [bool(k) for k in editing.latent_keep_mask(values, h, w).reshape(-1)]})
    keep = np.array([[True, False, True, True], [False, False, True, False],
                     [True, True, True, True], [False, True, False, False]])
    z = prng.normal(9, 64).reshape(1, 4, 4, 4)
    blended = editing.blend(z, z_img.reshape(1, 4, 4, 4), noise.reshape(1, 4, 4, 4), ts[5], keep)
    return {"rule": "lrf/editing.py", "z_img_seed": "5", "noise_seed": "6", "n": 64,
            "start": starts, "noised": noised, "masks": masks,
            "blend": {"latent_seed": "9", "shape": [4, 4, 4], "t_bits": _f32_bits([ts[5]])[0],
                      "keep": [bool(k) for k in keep.reshape(-1)],
                      "result_bits": _f32_bits(blended.reshape(-1))}}


def build_fixture() -> dict:
    """The golden vectors, derived from the Python reference code."""
    from lrf.models.flow import timesteps
    from lrf import prng
    cases = [_prng_case(s, 16) for s in PRNG_SEEDS] + [_prng_case(3, 7)]   # odd n: truncated pair
    schedule = [{"steps": n, "shift": s,
                 "timestep_bits": _f32_bits(timesteps(n, s).numpy()),
                 "timesteps": _floats(timesteps(n, s).numpy())}
                for n in SCHEDULE_STEPS for s in SCHEDULE_SHIFTS]
    return {
        "about": "LRF golden vectors, generated by tests/test_cross_language.py from the Python "
                 "reference; *_bits are float32 bit patterns (hex), words are uint64 (hex), seeds "
                 "are unsigned decimal strings. Do not edit by hand.",
        "prng": {"name": prng.SPEC["name"], "version": prng.SPEC["version"], "cases": cases},
        "schedule": {"cases": schedule},
        "euler": _euler_case(),
        "pixels": _pixel_case(),
        "editing": _editing_case(),
    }


def fixture_text() -> str:
    return json.dumps(build_fixture(), indent=1) + "\n"


def test_committed_fixtures_match_python_reference():
    expected = fixture_text()
    for path in FIXTURE_COPIES:
        assert os.path.isfile(path), f"missing {path}: run `python tests/test_cross_language.py --write`"
        with open(path, encoding="utf-8") as f:
            assert f.read() == expected, (
                f"{path} differs from what the Python reference derives now; if the spec changed "
                "on purpose, run `python tests/test_cross_language.py --write`")


@pytest.mark.parametrize("shift", [0.5, 1.0, 2.5, 3.0, 7.0])
def test_schedule_formula_the_apps_use_equals_torch(shift):
    """Kotlin/Swift follow BUNDLE.md section 3 (u = 1 - i/N in float64; torch uses its own
    linspace kernel): after the shift and the float32 cast the bits must agree with the PyTorch
    reference and with lrf.runtime.scheduler for every N the apps allow."""
    from lrf.models.flow import timesteps
    from lrf.runtime import scheduler
    for n in range(1, 1001):
        u = 1.0 - np.arange(n + 1, dtype=np.float64) / n
        mine = (shift * u / (1.0 + (shift - 1.0) * u)).astype(np.float32)
        ref = timesteps(n, shift).numpy()
        assert np.array_equal(mine.view(np.uint32), ref.view(np.uint32)), f"N={n} shift={shift}"
        assert np.array_equal(mine.view(np.uint32), scheduler.timesteps(n, shift).view(np.uint32))


def test_fixture_is_sensitive_to_the_spec():
    """The fixture pins the spec: a changed constant or a changed shift changes it."""
    from lrf import prng
    base = _prng_case(42, 16)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prng, "GAMMA", np.uint64(0x9E3779B97F4A7C17))
        assert _prng_case(42, 16)["words"] != base["words"]
    fx = build_fixture()["schedule"]["cases"]
    assert fx[0]["timestep_bits"] == _f32_bits([1.0, 0.0])            # N=1, any shift: 1 -> 0
    by_key = {(c["steps"], c["shift"]): c["timestep_bits"] for c in fx}
    assert by_key[(8, 1.0)] != by_key[(8, 3.0)]


def test_sample_manifest_copies_are_identical():
    """Kotlin and Swift parse the same sample manifest in their tests."""
    kotlin, swift = (os.path.join(os.path.dirname(p), "sample_manifest.json") for p in FIXTURE_COPIES)
    with open(kotlin, "rb") as a, open(swift, "rb") as b:
        assert a.read() == b.read(), f"{swift} must be a copy of {kotlin}"


def test_runtime_euler_update_matches_reference():
    """The numpy runtime's one sampler (what the apps mirror), fused and stepwise, gives the
    fixture's bits too."""
    from lrf import prng
    from lrf.runtime import scheduler
    e = build_fixture()["euler"]
    v = prng.normal(7, e["n"])
    ts = scheduler.timesteps(e["steps"], e["shift"])
    index = {float(t): i for i, t in enumerate(ts)}          # the times are distinct
    step = scheduler.velocity_window(lambda z, t, t_next: v * np.float32(1.0 + index[float(t)]))
    for size in (None, 1):                                   # one window, then windows of 1
        z = scheduler.sample(step, ts, prng.normal(42, e["n"]), scheduler.windows(e["steps"], size))
        assert _f32_bits(z) == e["result_bits"], f"window size {size}"


def test_apps_sample_manifest_passes_the_python_schema_check():
    """The hand-written v2 manifest the Kotlin and Swift tests parse (deliberately unusual file
    and tensor names) is a valid bundle manifest by the Python reader's own schema check, so the
    apps are tested against the contract, not against their own reading of it."""
    from lrf.runtime import schema

    path = os.path.join(os.path.dirname(FIXTURE_COPIES[0]), "sample_manifest.json")
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    assert manifest["schema_version"] in schema.SUPPORTED_VERSIONS
    schema.check_manifest(manifest)
    bad = json.loads(json.dumps(manifest))
    bad["latent"]["height"] = "4"            # the Kotlin/Swift tests expect this exact line too
    with pytest.raises(ValueError, match=r'manifest\.json: latent\.height: expected int in 1\.\.4096, got \'4\''):
        schema.check_manifest(bad)


def _export_tiny_bundle(checkpoint: str, out: str) -> str:
    """A small fp32 ONNX bundle from the tiny test checkpoint, written by the real exporter with
    few parity images to keep it quick."""
    from lrf.exporter.export import export_bundle

    return str(export_bundle("onnx", checkpoint=checkpoint, out=out, steps=[4], parity_images=2,
                             fidelity_images=4, log=lambda msg: None))


# A graph server for the Kotlin bundle check (android_demo/core ProcessEngine): onnxruntime with
# the settings golden.runtime records (all optimisations, one thread), so the Kotlin Generator runs
# every golden case on the bundle's real graphs here, where ONNX Runtime for Java is not installed.
_ORT_SERVER = r"""
import json, os, sys
import numpy as np
import onnxruntime as ort

root = sys.argv[1]
sessions = {}
src, dst = sys.stdin.buffer, sys.stdout.buffer
for line in iter(src.readline, b""):
    req = json.loads(line)
    feeds = {}
    for t in req["inputs"]:
        dt = np.dtype(t["dtype"]).newbyteorder("<")
        n = int(np.prod(t["shape"], dtype=np.int64)) * dt.itemsize
        feeds[t["name"]] = np.frombuffer(src.read(n), dt).reshape(t["shape"])
    try:
        s = sessions.get(req["graph"])
        if s is None:
            so = ort.SessionOptions()
            so.intra_op_num_threads = so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            s = sessions[req["graph"]] = ort.InferenceSession(os.path.join(root, req["graph"]), so,
                                                             providers=["CPUExecutionProvider"])
        res = s.run(None, feeds)
    except Exception as e:
        dst.write((json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n").encode())
        dst.flush()
        continue
    outs = [{"name": o.name, "dtype": str(r.dtype), "shape": list(r.shape)} for o, r in zip(s.get_outputs(), res)]
    dst.write((json.dumps({"outputs": outs}) + "\n").encode())
    for r in res:
        dst.write(np.ascontiguousarray(r, dtype=r.dtype.newbyteorder("<")).tobytes())
    dst.flush()
"""


@pytest.fixture(scope="module")
def kotlin_run(tiny_checkpoint, tmp_path_factory):
    """One kotlinc compile + JUnit run (+ the Kotlin bundle check on an exported bundle, with
    its golden cases run through the Kotlin Generator on the bundle's graphs served by
    onnxruntime). An export failure is kept for the bundle test, so the JUnit result is still
    reported."""
    if shutil.which("kotlinc") is None or shutil.which("java") is None:
        pytest.skip("needs kotlinc, JUnit 4 and a JDK: bash android_demo/core/ci_install.sh "
                    "(as .ci/run does)")
    work = tmp_path_factory.mktemp("kt")
    bundle, export_error = None, None
    try:
        bundle = _export_tiny_bundle(tiny_checkpoint, str(work / "bundle"))
    except Exception as e:  # reported by test_kotlin_core_accepts_an_exported_bundle
        export_error = f"{type(e).__name__}: {e}"
    server = work / "ort_server.py"
    server.write_text(_ORT_SERVER, encoding="utf-8")
    # everything the script, kotlinc and the JVM write goes under pytest's folder, not /tmp
    # (-XX:-UsePerfData: no /tmp/hsperfdata_<user>, which the JVM writes whatever TMPDIR says)
    scratch = work / "tmp"
    scratch.mkdir()
    env = {**os.environ, "LRF_ENGINE_CMD": f"{sys.executable} {server}", "TMPDIR": str(scratch),
           "JAVA_TOOL_OPTIONS": f"-XX:-UsePerfData -Djava.io.tmpdir={scratch}"}
    cmd = ["bash", KOTLIN_TESTS] + ([bundle] if bundle else [])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    return {"rc": res.returncode, "out": res.stdout + res.stderr, "bundle": bundle,
            "export_error": export_error}


@pytest.mark.slow
def test_kotlin_core_passes_on_golden_vectors(kotlin_run):
    """android_demo/core compiled with kotlinc; its JUnit tests pass on the committed fixture."""
    out = kotlin_run["out"]
    assert "OK (" in out and "FAILURES" not in out, f"Kotlin core tests failed:\n{out[-4000:]}"
    assert "normals bit-exact with numpy, all within 1e-6" in out


@pytest.mark.slow
def test_kotlin_core_accepts_an_exported_bundle(kotlin_run):
    """The Kotlin port loads a bundle written by the exporter the way the app does: schema v2,
    containment (no links, nothing unlisted), sha256 of every file, and the golden RNG vectors and
    every case's timesteps and noise within their files' tolerances. (The cases that need the
    graphs: test_kotlin_generator_reproduces_the_golden_cases.)"""
    assert kotlin_run["export_error"] is None, f"export failed: {kotlin_run['export_error']}"
    out = kotlin_run["out"]
    with open(os.path.join(kotlin_run["bundle"], "manifest.json"), encoding="utf-8") as f:
        assert json.load(f)["schema_version"] == 2
    assert kotlin_run["rc"] == 0, f"Kotlin bundle check failed:\n{out[-4000:]}"
    for line in ("ok   load:", "ok   rng:", "ok   timesteps ", "ok   noise "):
        assert line in out, f"missing {line!r} in:\n{out[-3000:]}"
    assert "\nFAIL" not in out, out[-3000:]


@pytest.mark.slow
def test_kotlin_generator_reproduces_the_golden_cases(kotlin_run):
    """The Kotlin Generator (roles, windows, fused and stepwise, img2img and inpaint) runs every
    golden case of the exported bundle on its graphs (served by onnxruntime with the recorded
    settings) and meets every file's tolerance: this bundle's runtime files and the independent
    PyTorch reference."""
    assert kotlin_run["export_error"] is None, f"export failed: {kotlin_run['export_error']}"
    with open(os.path.join(kotlin_run["bundle"], "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    out = kotlin_run["out"]
    assert kotlin_run["rc"] == 0, f"Kotlin bundle check failed:\n{out[-4000:]}"
    compared = [k for k, e in manifest["golden"]["files"].items()
                if e["tolerance"] is not None and e["case"] is not None
                and e["content"].split("_fused")[0].split("_stepwise")[0] in
                ("denoise_first", "latent_final", "image", "reference_latent_final", "reference_image")]
    engine_contents = ("denoise_first", "latent_final", "image", "reference_latent_final", "reference_image")
    ok_lines = [ln for ln in out.splitlines() if ln.startswith("ok   ") and ln[5:].split(" ")[0] in engine_contents]
    assert len(ok_lines) == len(compared), f"{len(compared)} golden files to compare:\n{out[-4000:]}"
    kinds = {e["kind"] for e in manifest["golden"]["cases"].values()}
    for kind in kinds:                                   # generate, img2img, inpaint all ran
        assert any(f" {kind}_" in ln for ln in ok_lines), f"no {kind} case in:\n{out[-4000:]}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_cross_language.py --write   (regenerates the fixtures)")
    text = fixture_text()
    for target in FIXTURE_COPIES:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = target + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)     # atomic: never a half-written fixture
        print(f"wrote {target}")
