"""The web demo (web_demo/) in a real browser: Debian's Chromium, headless, driven by
playwright-core (web_demo/tests/drive.mjs), running a bundle exported here on onnxruntime-web.

Asserts: the page's golden self-check passes (every golden file within its manifest tolerance);
one generation through the form, read back from the canvas, matches lrf.runtime's image for the
same seed, class, steps and guidance within the manifest's image tolerance (computed here, in
Python, independently of the page); Cancel stops a long run and leaves no image. The page's
screenshot lands in the test's tmp folder.

Also runs web_demo/tests/vectors.test.mjs (node only): the page's PRNG, schedule, pixel and
editing code against the cross-language golden vectors the Kotlin and Swift ports are held to.

Needs node, /usr/bin/chromium and `npm ci` in web_demo/ (.ci/run does all three); skipped only
when node or Chromium is absent.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB = os.path.join(REPO, "web_demo")
CHROMIUM = os.environ.get("LRF_CHROMIUM", "/usr/bin/chromium")
# the generation the page makes through its form: no golden case, a seed above 2^53
CASES = {"teacher": {"label": 7, "seed": 123456789012345678, "steps": 8, "guidance": 2.5},
         "turbo": {"label": 7, "seed": 123456789012345678, "steps": 4, "guidance": 2.5}}
CANCEL_STEPS = 1000
EXPORT_TIMEOUT_S = 1800    # ~30 s of CPU each; generous for machines shared with training jobs

pytestmark = pytest.mark.skipif(shutil.which("node") is None,
                                reason="node is not installed (web demo tests)")
needs_chromium = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else min(100.0, 10 * np.log10(255.0 ** 2 / mse))


@pytest.fixture(scope="module")
def bundles(vivid_checkpoint, tiny_turbo_checkpoint, tmp_path_factory):
    """A teacher and a turbo bundle, exported side by side (two processes) to save wall time."""
    root = tmp_path_factory.mktemp("web")
    procs = {}
    try:
        for kind, ckpt in (("teacher", vivid_checkpoint), ("turbo", tiny_turbo_checkpoint)):
            procs[kind] = subprocess.Popen(
                [sys.executable, "-m", "lrf.exporter.cli", "--target", "onnx", "--checkpoint",
                 ckpt, "--out", str(root / kind), "--parity-images", "2", "--fidelity-images",
                 "0", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for kind, proc in procs.items():
            out, _ = proc.communicate(timeout=EXPORT_TIMEOUT_S)
            assert proc.returncode == 0, f"lrf-export ({kind}) failed:\n{out[-3000:]}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {kind: root / kind for kind in procs}


@contextlib.contextmanager
def _serve(bundle):
    if not os.path.isdir(os.path.join(WEB, "node_modules", "onnxruntime-web")):
        pytest.fail("web_demo/node_modules is missing: run `npm ci` in web_demo/ (as .ci/run does)")
    proc = subprocess.Popen(["node", os.path.join(WEB, "serve.mjs"), "--port", "0",
                             "--bundle", str(bundle)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), f"serve.mjs printed {url!r}"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _drive(*args: str, timeout: float = 100) -> dict:
    r = subprocess.run(["node", os.path.join(WEB, "tests", "drive.mjs"), *args],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"drive.mjs failed:\n{r.stderr[-4000:]}"
    return json.loads(r.stdout)


def test_js_ports_match_golden_vectors():
    """web_demo/src's PRNG, schedule, pixel and editing ports vs the cross-language vectors."""
    r = subprocess.run(["node", "--test", "tests/"], cwd=WEB, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout and "# pass 6" in r.stdout, r.stdout[-2000:]


@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize("kind", sorted(CASES))
def test_page_in_chromium(kind, bundles, tmp_path):
    from lrf.runtime import Generator

    bundle, case = bundles[kind], CASES[kind]
    with _serve(bundle) as url:
        r = _drive("check", "--url", url, "--out", str(tmp_path), "--mode", "stepwise",
                   "--cancel-steps", str(CANCEL_STEPS),
                   *[x for k, v in case.items() for x in (f"--{k}", str(v))])
    manifest = json.loads((bundle / "manifest.json").read_text())
    d = manifest["sampling"]
    bar = manifest["golden"]["files"][f"generate_{d['steps']}.image_stepwise"]["tolerance"]["bar"]

    # 1. the golden self-check, as shown on the page
    g = r["golden"]
    failed = [c for c in g["checks"] if not c["passed"]]
    assert g["passed"] and not failed, f"golden check failed: {g['line']}\n{failed}"
    assert g["text"].startswith("Golden check PASS") and g["psnr"] >= bar
    assert len(g["checks"]) >= 20, g["checks"]   # RNG, timesteps, noise, latents, images, edits
    assert any(c["key"].startswith("img2img") for c in g["checks"]), "no editing case checked"
    assert g["ort"]["version"] == _locked_ort_version()

    # 2. one generation from the form vs lrf.runtime (the reference), same case
    assert manifest["model"]["guidance_distilled"] is (kind == "turbo")
    run = r["generation"]["run"]
    assert r["generation"]["state"] == "done" and run, r["generation"]
    assert (run["seed"], run["steps"], run["mode"]) == (str(case["seed"]), case["steps"], "stepwise")
    img = r["image"]
    h, w = manifest["image"]["height"], manifest["image"]["width"]
    assert (img["height"], img["width"], img["alpha_max"]) == (h, w, 255)
    page = np.frombuffer(base64.b64decode(img["rgb_b64"]), np.uint8).reshape(h, w, 3)
    with Generator.load(bundle) as gen:
        ref = gen.generate(case["label"], seed=case["seed"], steps=case["steps"],
                           guidance=case["guidance"], mode="stepwise")
    assert len(np.unique(ref)) > 16, "degenerate reference image: the comparison would be weak"
    psnr = _psnr(page, ref)
    assert psnr >= bar, f"browser image {psnr:.2f} dB vs lrf.runtime, bar {bar} dB"

    # 3. cancel: a long stepwise run stopped from the Cancel button leaves no image
    c = r["cancel"]
    assert c["state"] == "cancelled", c
    assert 1 <= c["progress"] < CANCEL_STEPS and "no image" in c["status"], c
    assert c["canvas_alpha_max"] == 0 and c["runs"] == 1, c

    shot = tmp_path / "web_demo.png"
    assert shot.stat().st_size > 1000
    print(f"\nweb demo ({kind}): golden {g['psnr']:.2f} dB, page vs lrf.runtime {psnr:.2f} dB (bar {bar}), "
          f"cancelled at step {c['progress']}/{CANCEL_STEPS}; screenshot {shot}", file=sys.stderr)


def _locked_ort_version() -> str:
    with open(os.path.join(WEB, "package-lock.json")) as f:
        return json.load(f)["packages"]["node_modules/onnxruntime-web"]["version"]
