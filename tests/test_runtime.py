"""lrf.runtime on a schema v2 bundle: one denoise graph for every N and mode, parity with the
PyTorch reference (computed here, not read from the bundle), windows, cancellation, determinism,
thread-safety, input validation, and a proof that it never imports torch."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from bundle_factory import reference_images, shared_bundle
from lrf import prng
from lrf.runtime import MAX_STEPS, GenerationCancelled, Generator, get_backend, scheduler


@pytest.fixture(scope="module")
def bundle(vivid_checkpoint, tmp_path_factory):
    return shared_bundle(tmp_path_factory, vivid_checkpoint)


@pytest.fixture(scope="module")
def gen(bundle):
    with Generator.load(bundle) as g:
        yield g


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 100.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


# ---------------------------------------------------------------------------------- no torch
BLOCK_TORCH = r"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'diffusers', 'torchao'):
            raise ImportError('torch is blocked in this test: ' + name)
sys.meta_path.insert(0, Block())
from lrf.runtime import Generator
from lrf.models.cli import main
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


# ---------------------------------------------------------------------------------- any N
def test_fused_at_unexported_n_equals_stepwise_and_pytorch(gen, vivid_checkpoint):
    """N = 13 appears nowhere in the bundle (scheduler lists 50 and 3): one Loop call serves it."""
    assert "13" not in gen.manifest["scheduler"]["timesteps"]
    labels, seeds = [1, 7], [11, 12]
    calls = []
    fused = gen.generate_batch(labels, seeds, steps=13, mode="fused",
                               on_step=lambda i, n: calls.append(i))
    assert calls == [13]                                  # one denoise call for 13 steps
    stepwise = gen.generate_batch(labels, seeds, steps=13, mode="stepwise")
    assert fused.shape == (2, 32, 32, 3) and fused.dtype == np.uint8
    assert _psnr(stepwise, fused) >= 40                   # fp32 bar
    ref = reference_images(vivid_checkpoint, labels, seeds, steps=13)
    assert _psnr(ref, fused) >= 40 and _psnr(ref, stepwise) >= 40
    # the bar discriminates: other seeds' images are far below it
    assert _psnr(ref, gen.generate_batch(labels, [s + 100 for s in seeds], steps=13)) < 30


def test_chunked_windows_equal_fused(gen):
    z = gen.noise([5])
    y, g = np.asarray([2], np.int32), np.asarray([3.0], np.float32)
    ts = scheduler.timesteps(13, gen.shift)
    seen = []
    chunked = gen.denoise(z, ts, y, g, on_step=lambda i, n: seen.append((i, n)), window=4)
    assert seen == [(4, 13), (8, 13), (12, 13), (13, 13)]
    fused = gen.denoise(z, ts, y, g)
    err = np.abs(chunked - fused).max() / np.abs(fused).max()
    assert err <= 1e-5, err


def test_windows_split():
    assert scheduler.windows(13, None) == [(0, 13)]
    assert scheduler.windows(13, 1) == [(i, i + 1) for i in range(13)]
    assert scheduler.windows(12, None, 4, 4) == [(0, 4), (4, 8), (8, 12)]
    assert scheduler.windows(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert scheduler.windows(4, 1, 2, 2) == [(0, 2), (2, 4)]   # a fixed K=2 graph
    with pytest.raises(ValueError, match="cannot be split into windows of 4"):
        scheduler.windows(13, None, 4, 4)


def test_deterministic_across_runs_and_instances(gen, bundle):
    a = gen.generate(4, 123, steps=3)
    assert np.array_equal(a, gen.generate(4, 123, steps=3))
    with Generator.load(bundle, threads=1) as other:
        assert np.array_equal(a, other.generate(4, 123, steps=3))
    assert not np.array_equal(a, gen.generate(4, 124, steps=3))


def test_progress_per_mode(gen):
    calls = []
    gen.generate(0, 0, steps=3, on_step=lambda i, n: calls.append((i, n)))  # default: fused
    assert gen.manifest["sampling"]["mode"] == "fused" and calls == [(3, 3)]
    calls.clear()
    gen.generate(0, 0, steps=4, mode="stepwise", on_step=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize("mode,steps", [("stepwise", 5), ("fused", 2)])
def test_on_step_false_cancels(gen, mode, steps):
    seen = []

    def stop(i, n):
        seen.append(i)
        return i < 2 if mode == "stepwise" else False

    with pytest.raises(GenerationCancelled, match="cancelled"):
        gen.generate(0, 0, steps=steps, mode=mode, on_step=stop)
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


@pytest.mark.parametrize("g", [float("nan"), float("inf"), 1e39, -1e39, -0.5, 20.5, "3", True])
def test_guidance_finite_in_float32_and_in_range(gen, g):
    with pytest.raises(ValueError, match=r"guidance must be a number in \[0.0, 20.0\] "
                                         r"\(finite in float32\)"):
        gen.generate(0, 0, steps=2, guidance=g)
    with pytest.raises(ValueError, match="guidance must be"):
        gen.denoise(gen.noise([0]), scheduler.timesteps(2), np.zeros(1, np.int32), g)


@pytest.mark.parametrize("steps", [0, MAX_STEPS + 1, 10**9, 2.5, True])
def test_steps_within_documented_max(gen, steps):
    with pytest.raises(ValueError, match=rf"steps must be an integer in 1..{MAX_STEPS}"):
        gen.generate(0, 0, steps=steps)


def test_bad_mode_and_seed(gen):
    with pytest.raises(ValueError, match="mode must be one of"):
        gen.generate(0, 0, steps=2, mode="turbo")
    with pytest.raises(ValueError, match="seed"):
        gen.generate(0, -5, steps=2)


def test_inputs_checked_by_role(gen):
    z = prng.noise([0], (4, 4, 4))
    y, g, ts = np.zeros(1, np.int32), np.ones(1, np.float32), scheduler.timesteps(1)
    out = gen.run("denoise", latent=z, timesteps=ts, label=y, guidance=g)
    assert set(out) == {"latent"} and out["latent"].shape == (1, 4, 4, 4)
    with pytest.raises(ValueError, match=r"'latent' \(latent\) expected dtype float32, got "
                                         "float64"):
        gen.run("denoise", latent=z.astype(np.float64), timesteps=ts, label=y, guidance=g)
    with pytest.raises(ValueError, match=r"expected shape \['batch', 4, 4, 4\], got \[1, 4, 5, 4\]"):
        gen.run("denoise", latent=np.zeros((1, 4, 5, 4), np.float32), timesteps=ts, label=y,
                guidance=g)
    with pytest.raises(ValueError, match="'label' .*expected dtype int32, got int64"):
        gen.run("denoise", latent=z, timesteps=ts, label=y.astype(np.int64), guidance=g)
    with pytest.raises(ValueError, match="batch=2 but another tensor has batch=1"):
        gen.run("denoise", latent=z, timesteps=ts, label=y, guidance=np.ones(2, np.float32))
    with pytest.raises(ValueError, match="missing input 'guidance'"):
        gen.run("denoise", latent=z, timesteps=ts, label=y)
    with pytest.raises(ValueError, match="unknown input role 't'"):
        gen.run("denoise", latent=z, t=ts, label=y, guidance=g)
    with pytest.raises(ValueError, match="strictly descending"):
        gen.denoise(z, ts[::-1].copy(), y, g)
    with pytest.raises(ValueError, match="latent must be a numpy array"):
        gen.decode([[0.0]])


def test_decoder_any_latent_size(gen):
    img = gen.decode(np.zeros((2, 4, 3, 5), np.float32))
    assert img.shape == (2, 24, 40, 3) and img.dtype == np.uint8


def test_encoder_matches_pytorch_codec(gen, vivid_checkpoint):
    import torch

    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.reference import from_uint8

    image = gen.generate(3, 9, steps=3)[None]
    with torch.no_grad():
        want = load_checkpoint(vivid_checkpoint).codec.encode(from_uint8(image)).numpy()
    got = gen.encode(image)
    assert got.shape == (1, 4, 4, 4)
    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()
    with pytest.raises(ValueError, match="divisible by 8"):
        gen.encode(np.zeros((1, 30, 32, 3), np.uint8))


def test_unknown_backend_and_threads(bundle):
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


def test_one_session_setup_shared():
    from lrf.runtime.backend_onnxruntime import LEVELS, session_options

    so = session_options(threads=1, optimization="basic", memory_arena=False)
    assert so.intra_op_num_threads == 1 and so.graph_optimization_level == LEVELS["basic"]
    assert not so.enable_cpu_mem_arena
    with pytest.raises(ValueError, match="optimization 'fast'"):
        session_options(optimization="fast")


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_scheduler_bit_exact_with_torch(shift):
    from lrf.models.flow import timesteps as torch_timesteps

    for n in (1, 2, 8, 50, 333, MAX_STEPS):
        np.testing.assert_array_equal(scheduler.timesteps(n, shift),
                                      torch_timesteps(n, shift).numpy())


def test_velocity_window_matches_pytorch_sampler():
    """The numpy Euler update (velocity_window) against lrf.models.flow.euler_sample on the same
    linear field v = a z + b t, an independent implementation."""
    import torch

    from lrf.models.flow import euler_sample

    class Field(torch.nn.Module):
        def forward(self, z, t, labels):
            return 0.7 * z + 0.3 * t.view(-1, 1, 1, 1)

    z0 = prng.noise([3], (2, 3, 3))
    ts = scheduler.timesteps(7, 2.0)
    step = scheduler.velocity_window(lambda z, t, t1: (0.7 * z + 0.3 * t).astype(np.float32))
    got = scheduler.sample(step, ts, z0, scheduler.windows(7, 1))
    # guidance 1 makes classifier-free guidance the conditional field itself
    want = euler_sample(Field(), torch.from_numpy(z0), torch.zeros(1, dtype=torch.long),
                        ts=torch.from_numpy(ts), guidance=1.0, null_class=1).numpy()
    assert np.abs(got - want).max() <= 1e-6


def test_turbo_bundle_one_call_per_step_matches_pytorch(tiny_turbo_checkpoint, tmp_path_factory):
    """A guidance-distilled core: the manifest says so, and fused (any N) and stepwise images
    match the PyTorch reference computed here."""
    b = shared_bundle(tmp_path_factory, tiny_turbo_checkpoint)
    with Generator.load(b) as gen:
        assert gen.guidance_distilled and gen.manifest["model"]["guidance_distilled"] is True
        n = gen.default_steps
        for steps in sorted({n, 3}):
            ref = reference_images(tiny_turbo_checkpoint, [2, 5], [7, 8], steps)
            for mode in ("fused", "stepwise"):
                assert _psnr(ref, gen.generate_batch([2, 5], [7, 8], steps=steps,
                                                     mode=mode)) >= 40, (steps, mode)


def test_qdq_fusion_only_for_static_qdq_graphs():
    """BUNDLE.md 2.2.1: weight-only, dynamic and fp32 graphs fold their weights at load; static
    QDQ graphs keep onnxruntime's QDQ fusion (int8 kernels)."""
    from lrf.runtime.backend_onnxruntime import folds_weights, session_options

    assert not folds_weights({"method": "static_qdq"})
    for q in ({"method": "weight_only"}, {"method": "dynamic"}, {"method": "none"}, None, "x"):
        assert folds_weights(q), q
    so = session_options(1, fold_weights=False)
    assert so.get_session_config_entry("session.disable_quant_qdq") == "0"
    assert session_options(1).get_session_config_entry("session.disable_quant_qdq") == "1"


def test_small_batches_of_an_integer_graph_run_on_one_thread(bundle, monkeypatch):
    """An integer-matmul denoise graph (quantization.method "dynamic") opens on one intra-op
    thread when no thread count is given; the first batch above ONE_THREAD_MAX_BATCH opens a
    default-threaded session, and both give the same latents as a plain session. A given thread
    count, or a float graph, keeps one session. Measured by the sessions the backend asks
    onnxruntime for (their thread counts), not by its attributes."""
    import dataclasses

    from lrf.runtime import backend_onnxruntime as bo
    from lrf.runtime.manifest import open_bundle

    b = open_bundle(bundle)
    spec = b.graphs["denoise"]
    dyn = dataclasses.replace(spec, raw={**spec.raw, "quantization": {"method": "dynamic"}})
    assert bo.one_thread_max_batch(spec) == 0 and bo.one_thread_max_batch(dyn) == \
        bo.ONE_THREAD_MAX_BATCH
    path = bundle / spec.file
    plain = bo.make_session(path, threads=1)
    opened = []
    real = bo.make_session

    def recording(model, threads=None, *a, **k):
        opened.append(threads)
        return real(model, threads, *a, **k)

    monkeypatch.setattr(bo, "make_session", recording)

    def feed(batch):
        rng = np.random.default_rng(batch)
        return {"latent": rng.standard_normal((batch, 4, 4, 4)).astype(np.float32),
                "timesteps": scheduler.timesteps(3), "label": np.arange(batch, dtype=np.int32),
                "guidance": np.full(batch, 2.0, np.float32)}

    sess = bo.OnnxRuntimeBackend().open(path, dyn)
    for batch in (1, bo.ONE_THREAD_MAX_BATCH):
        assert np.array_equal(sess.run(feed(batch))["denoised"], plain.run(None, feed(batch))[0])
    assert opened == [1]                              # small batches only: one 1-thread session
    big = bo.ONE_THREAD_MAX_BATCH + 1
    for _ in range(2):                                # the default session opens once
        assert np.allclose(sess.run(feed(big))["denoised"], plain.run(None, feed(big))[0],
                           atol=1e-5)
    assert opened == [1, None]
    opened.clear()
    for backend, graph in ((bo.OnnxRuntimeBackend(threads=2), dyn),
                           (bo.OnnxRuntimeBackend(), spec)):
        s = backend.open(path, graph)
        s.run(feed(1))
        s.run(feed(big))
        assert opened == [backend.threads], (backend.threads, opened)
        opened.clear()
