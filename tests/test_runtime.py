"""lrf.runtime: loading, validation, generation modes, cancellation, determinism, parity with the
PyTorch reference, thread-safety, and a proof that it never imports torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from lrf import prng
from lrf.runtime import GenerationCancelled, Generator, get_backend, scheduler
from test_export_onnx import build_bundle


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint, tmp_path_factory):
    return build_bundle(tmp_path_factory, tiny_checkpoint)


@pytest.fixture(scope="module")
def gen(bundle):
    with Generator.load(bundle) as g:
        yield g


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 100.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _reference(ckpt_dir, labels, seeds, steps):
    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.reference import generate, to_uint8

    return to_uint8(generate(load_checkpoint(ckpt_dir), labels, seeds, steps=steps))


def _copy(bundle, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst


# ---------------------------------------------------------------------------------- no torch
BLOCK_TORCH = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'diffusers', 'torchao'):
            raise ImportError('torch is blocked in this test: ' + name)
sys.meta_path.insert(0, Block())
from lrf.runtime import Generator
from lrf.generate import main
bundle, png = sys.argv[1], sys.argv[2]
with Generator.load(bundle) as gen:
    a = gen.generate('cat', 3, mode='fused', steps=2)
    b = gen.generate(3, 3, mode='stepwise', steps=4)
    assert a.shape == b.shape == (32, 32, 3) and a.dtype.name == 'uint8'
rc = main(['--bundle', bundle, '--class', 'cat', '--steps', '2', '--out', png, '--no-progress'])
assert rc == 0, rc
assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers')], 'torch imported'
print('OK')
"""


def test_runtime_never_imports_torch(bundle, tmp_path):
    png = tmp_path / "cat.png"
    r = subprocess.run([sys.executable, "-c", BLOCK_TORCH, str(bundle), str(png)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("OK") and png.stat().st_size > 0


# ---------------------------------------------------------------------------------- parity
def test_fused_and_stepwise_match_pytorch(gen, tiny_checkpoint):
    labels, seeds = [1, 7], [11, 12]
    ref2 = _reference(tiny_checkpoint, labels, seeds, steps=2)
    fused = gen.generate_batch(labels, seeds, steps=2, mode="fused")
    assert fused.shape == (2, 32, 32, 3) and fused.dtype == np.uint8
    assert _psnr(ref2, fused) >= 40
    ref5 = _reference(tiny_checkpoint, labels, seeds, steps=5)  # 5: no fused graph
    assert _psnr(ref5, gen.generate_batch(labels, seeds, steps=5, mode="stepwise")) >= 40


def test_deterministic_across_runs_and_instances(gen, bundle):
    a = gen.generate(4, 123, steps=3)
    assert np.array_equal(a, gen.generate(4, 123, steps=3))
    with Generator.load(bundle, threads=1) as other:
        assert np.array_equal(a, other.generate(4, 123, steps=3))
    assert not np.array_equal(a, gen.generate(4, 124, steps=3))


def test_mode_selection_and_progress(gen):
    calls = []
    gen.generate(0, 0, steps=3, on_step=lambda i, n: calls.append((i, n)))  # fused: once
    assert calls == [(3, 3)]
    calls.clear()
    gen.generate(0, 0, steps=4, on_step=lambda i, n: calls.append((i, n)))  # stepwise
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize("mode,steps", [("stepwise", 5), ("fused", 2)])
def test_on_step_false_cancels(gen, mode, steps):
    seen = []

    def stop(i, n):
        seen.append(i)
        return i < 2 if mode == "stepwise" else False

    with pytest.raises(GenerationCancelled, match="cancelled"):
        gen.generate(0, 0, steps=steps, mode=mode, on_step=stop)
    assert isinstance(GenerationCancelled(""), InterruptedError)
    assert seen == ([1, 2] if mode == "stepwise" else [2])


def test_thread_safe_generate(gen):
    want = gen.generate(2, 5, steps=3, mode="stepwise")
    out, errors = [None] * 4, []

    def work(k):
        try:
            out[k] = gen.generate(2, 5, steps=3, mode="stepwise")
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(np.array_equal(want, o) for o in out)


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("label", [10, -1, "zebra", True, 2.0])
def test_unknown_label(gen, label):
    with pytest.raises(ValueError, match="unknown label .*airplane"):
        gen.generate(label, 0, steps=2)


@pytest.mark.parametrize("g", [float("nan"), float("inf"), -float("inf"), "3", True])
def test_non_finite_guidance(gen, g):
    with pytest.raises(ValueError, match="guidance must be a finite number"):
        gen.generate(0, 0, steps=2, guidance=g)


def test_fused_needs_exported_steps(gen):
    with pytest.raises(ValueError, match=r"no fused graph for steps=7.*\[2, 3\]"):
        gen.generate(0, 0, steps=7, mode="fused")


@pytest.mark.parametrize("kw,msg", [({"steps": 0}, "steps must be"), ({"mode": "turbo"}, "mode"),
                                    ({"steps": 2.5}, "steps must be")])
def test_bad_steps_and_mode(gen, kw, msg):
    with pytest.raises(ValueError, match=msg):
        gen.generate(0, 0, **kw)


def test_bad_seed(gen):
    with pytest.raises(ValueError, match="seed"):
        gen.generate(0, -5, steps=2)


def test_wrong_shape_and_dtype(gen):
    z = prng.noise([0], (4, 4, 4))
    y, g, t = np.zeros(1, np.int32), np.ones(1, np.float32), np.ones(1, np.float32)
    assert gen.step(z, t, y, g).shape == (1, 4, 4, 4)
    with pytest.raises(ValueError, match=r"'latent' expected dtype float32, got float64"):
        gen.step(z.astype(np.float64), t, y, g)
    with pytest.raises(ValueError, match=r"'latent' expected shape \['batch', 4, 4, 4\], "
                                         r"got \[1, 4, 5, 4\]"):
        gen.step(np.zeros((1, 4, 5, 4), np.float32), t, y, g)
    with pytest.raises(ValueError, match="'label' expected dtype int32, got int64"):
        gen.step(z, t, y.astype(np.int64), g)
    with pytest.raises(ValueError, match="batch=2 but another input has batch=1"):
        gen.step(z, np.ones(2, np.float32), y, g)
    with pytest.raises(ValueError, match="must be a numpy array"):
        gen.decode([[0.0]])
    with pytest.raises(ValueError, match="missing input 'guidance'"):
        gen.run("step", latent=z, t=t, label=y)


def test_decoder_any_latent_size(gen):
    img = gen.decode(np.zeros((2, 4, 3, 5), np.float32))
    assert img.shape == (2, 24, 40, 3) and img.dtype == np.uint8


def test_missing_file(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    os.remove(b / "decoder.onnx")
    with pytest.raises(FileNotFoundError, match="missing decoder.onnx"):
        Generator.load(b)


def test_checksum_mismatch(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    data = bytearray((b / "step.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / "step.onnx").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="step.onnx: sha256 mismatch"):
        Generator.load(b)


def test_schema_version_too_new(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    m["schema_version"] = 2
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="schema version 2 is newer than this runtime supports"):
        Generator.load(b)


def test_not_a_bundle(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        Generator.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        Generator.load(tmp_path)


def test_unknown_backend(bundle):
    with pytest.raises(ValueError, match="unknown backend 'tflite'.*onnxruntime"):
        Generator.load(bundle, backend="tflite")
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        Generator.load(bundle, threads=0)
    assert get_backend("onnxruntime").thread_safe


def test_close_and_context_manager(bundle):
    with Generator.load(bundle) as g:
        g.generate(0, 0, steps=2)
    with pytest.raises(ValueError, match="closed"):
        g.generate(0, 0, steps=2)
    g.close()  # idempotent


# ---------------------------------------------------------------------------------- golden/spec
def test_golden_files_reproduce(bundle, gen):
    m = json.loads((bundle / "manifest.json").read_text())
    files, case = m["golden"]["files"], m["golden"]["case"]

    def f32(key):
        e = files[key]
        return np.fromfile(bundle / e["file"], dtype="<f4").reshape(e["shape"])

    noise = f32("noise")
    np.testing.assert_array_equal(noise, prng.noise([case["seed"]], (4, 4, 4)))
    ts = f32("timesteps")
    np.testing.assert_array_equal(ts, scheduler.timesteps(case["steps"]))
    assert [float(x) for x in ts] == m["scheduler"]["timesteps"][str(case["steps"])]
    y, g = np.asarray([case["label"]], np.int32), np.asarray([case["guidance"]], np.float32)
    np.testing.assert_array_equal(f32("velocity_0"), gen.step(noise, ts[:1].copy(), y, g))
    z = gen.sample_latents(noise, y, g, case["steps"])
    np.testing.assert_array_equal(f32("latent_final"), z)
    from PIL import Image
    png = np.asarray(Image.open(bundle / files["image_stepwise"]["file"]))
    np.testing.assert_array_equal(png, gen.decode(z)[0])


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_scheduler_bit_exact_with_torch(shift):
    from lrf.models.flow import timesteps as torch_timesteps

    for n in (1, 2, 8, 50, 333):
        np.testing.assert_array_equal(scheduler.timesteps(n, shift),
                                      torch_timesteps(n, shift).numpy())
