"""Editing (issue 16): the rules of lrf.editing, the PyTorch reference edit() and LRFPipeline
image=/strength=/keep_mask=, the runtime's Generator.edit against the reference, lrf-generate's
edit flags. Identities are exact: strength 1 is generate, strength 0 and an all-ones keep mask
are the codec round trip."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from lrf import editing
from lrf.runtime import scheduler


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return 100.0 if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def _photo(seed: int = 0) -> np.ndarray:
    """A smooth RGB test picture (gradients + a disc), 32x32 uint8."""
    y, x = np.mgrid[0:32, 0:32] / 31.0
    r = ((x - 0.5) ** 2 + (y - 0.4) ** 2 < 0.08).astype(float)
    img = np.stack([x, y, 0.5 * r + 0.3 * (1 - x)], -1) * 255
    return np.clip(img + np.random.default_rng(seed).normal(0, 4, img.shape), 0, 255).astype(np.uint8)


HOLE = np.full((32, 32), 255, np.uint8)
HOLE[8:24, 4:20] = 0                       # keep mask: repaint a 16x16 square


# ------------------------------------------------------------------ the rules
@pytest.mark.parametrize("n,shift", [(1, 1.0), (7, 1.0), (50, 1.0), (13, 3.0)])
def test_window_endpoints_and_nearest_t(n, shift):
    ts = scheduler.timesteps(n, shift)
    assert editing.start_index(ts, 1.0) == 0 and editing.start_index(ts, 0.0) == n
    for s in np.linspace(0, 1, 41):
        i0 = editing.start_index(ts, s)
        assert abs(ts[i0] - s) <= np.abs(ts.astype(np.float64) - s).min() + 1e-12
        assert editing.window(ts, s)[0] == ts[i0] and editing.window(ts, s)[-1] == 0.0


def test_window_tie_goes_to_the_smaller_t():
    ts = scheduler.timesteps(4)                        # 1, .75, .5, .25, 0 (exact in float32)
    assert editing.start_index(ts, 0.625) == 2         # |.75-.625| == |.5-.625|: t = 0.5
    assert editing.start_index(ts, 0.626) == 1
    assert list(editing.window(ts, 0.625)) == [0.5, 0.25, 0.0]


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan"), float("inf"), "0.5", True, None])
def test_strength_outside_unit_interval_is_refused(bad):
    with pytest.raises(ValueError, match="strength must be a number in"):
        editing.start_index(scheduler.timesteps(4), bad)


def test_noised_endpoints_are_exact():
    rng = np.random.default_rng(0)
    z, e = rng.standard_normal((2, 1, 4, 4, 4)).astype(np.float32)
    assert np.array_equal(editing.noised(z, e, np.float32(1)), e)
    assert np.array_equal(editing.noised(z, e, np.float32(0)), z)
    mid = editing.noised(z, e, np.float32(0.25))
    assert mid.dtype == np.float32 and np.allclose(mid, 0.75 * z + 0.25 * e, atol=1e-6)


def test_latent_mask_repaints_every_marked_pixel():
    m = np.full((32, 48), 255, np.uint8)
    m[9, 17] = 0                                       # one pixel of latent cell (1, 2)
    keep = editing.latent_keep_mask(m, 32, 48)
    assert keep.shape == (4, 6) and keep.dtype == bool
    assert not keep[1, 2] and keep.sum() == 23
    assert editing.latent_keep_mask(np.ones((32, 48), bool), 32, 48).all()
    # thresholds: uint8 >= 128 and float >= 0.5 keep; bool and PIL masks are read the same way
    assert editing.latent_keep_mask(np.full((8, 8), 128, np.uint8), 8, 8).all()
    assert not editing.latent_keep_mask(np.full((8, 8), 127, np.uint8), 8, 8).any()
    assert editing.latent_keep_mask(np.full((8, 8), 0.5), 8, 8).all()
    assert np.array_equal(editing.latent_keep_mask(Image.fromarray(HOLE), 32, 32),
                          editing.latent_keep_mask(HOLE >= 128, 32, 32))


@pytest.mark.parametrize("mask,match", [
    (np.ones((16, 32)), "mask is 32x16 but the image is 32x32"),
    (np.ones((32, 32, 3)), "one channel"),
    (np.full((32, 32), 2.0), "lie in"),
    (np.full((32, 32), np.nan), "lie in"),
])
def test_bad_masks_are_refused(mask, match):
    with pytest.raises(ValueError, match=match):
        editing.latent_keep_mask(mask, 32, 32)


@pytest.mark.parametrize("image,match", [
    (np.zeros((32, 40, 3), np.uint8), "this model makes 32x32"),
    (np.zeros((36, 36, 3), np.uint8), "multiples of 8"),
    (np.zeros((32, 32), np.uint8), r"RGB \[H, W, 3\]"),
    (np.zeros((32, 32, 3), np.float32), "uint8"),
    (Image.new("L", (32, 32)), "mode 'L'"),
    (Image.new("RGBA", (32, 32), (0, 0, 0, 10)), "mode 'RGBA'"),
])
def test_bad_images_are_refused(image, match):
    with pytest.raises(ValueError, match=match):
        editing.check_image(image, 32, 32)


def test_opaque_rgba_and_rgb_pil_images_are_accepted():
    rgb = Image.fromarray(_photo())
    assert np.array_equal(editing.check_image(rgb, 32, 32), _photo())
    assert np.array_equal(editing.check_image(rgb.convert("RGBA"), 32, 32), _photo())


# ------------------------------------------------------------------ the PyTorch reference
@pytest.fixture(scope="module")
def ck(vivid_checkpoint):
    from lrf.models.checkpoint import load_checkpoint

    return load_checkpoint(vivid_checkpoint)


def _round_trip(ck, img):
    from lrf.models.reference import from_uint8, to_uint8

    with torch.no_grad():
        return to_uint8(ck.codec.decode(ck.codec.encode(from_uint8(img[None]))))[0]


def test_reference_identities(ck):
    from lrf.models.reference import edit, generate, to_uint8

    img = _photo()
    # strength 1, no mask: exactly generate() for the seed (the image is ignored)
    assert torch.equal(edit(ck, img, 3, 7, 1.0, steps=6, guidance=2.0),
                       generate(ck, [3], [7], steps=6, guidance=2.0))
    rt = _round_trip(ck, img)
    assert np.array_equal(to_uint8(edit(ck, img, 3, 7, 0.0, steps=6))[0], rt)
    assert np.array_equal(to_uint8(edit(ck, img, 3, 7, 0.6, np.ones((32, 32)), steps=6))[0], rt)
    # strength in between: neither the round trip nor the generated image
    mid = to_uint8(edit(ck, img, 3, 7, 0.5, steps=6, guidance=2.0))[0]
    gen = to_uint8(generate(ck, [3], [7], steps=6, guidance=2.0))[0]
    assert not np.array_equal(mid, rt) and not np.array_equal(mid, gen)


def test_reference_inpainting_keeps_exactly_the_kept_latent_cells(ck, monkeypatch):
    """The final latent equals the input's encoding on kept cells and not on repainted ones."""
    from lrf.models.reference import edit, from_uint8

    img = _photo()
    with torch.no_grad():
        z_img = ck.codec.encode(from_uint8(img[None]))
    final = []
    monkeypatch.setattr(ck.codec, "decode", lambda z: final.append(z) or torch.zeros(1, 3, 32, 32))
    edit(ck, img, 3, 7, 1.0, HOLE, steps=6, guidance=2.0)
    keep = torch.from_numpy(editing.latent_keep_mask(HOLE, 32, 32)).expand_as(z_img)
    assert keep.sum() == 4 * (16 - 6)  # the hole touches 2 x 3 cells
    assert torch.equal(final[0][keep], z_img[keep])
    assert (final[0][~keep] - z_img[~keep]).abs().min() > 0


def test_reference_cancel_and_progress(ck):
    from lrf.models.reference import edit

    seen = []
    edit(ck, _photo(), 1, 0, 0.5, HOLE, steps=10, on_step=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 5) for i in range(1, 6)]       # t = 0.5 of 10 steps: a 5-step window
    with pytest.raises(InterruptedError, match="after step 2/5"):
        edit(ck, _photo(), 1, 0, 0.5, steps=10, on_step=lambda i, n: i < 2)


def test_pipeline_follows_edit_and_the_one_keep_mask(ck):
    from lrf.models.reference import LRFPipeline, edit

    pipe = LRFPipeline.from_checkpoint(ck)
    pipe.set_progress_bar_config(disable=True)
    img = _photo()
    kw = dict(class_labels=["cat"], seeds=[7], num_inference_steps=6, guidance_scale=2.0,
              output_type="pt")
    got = pipe(**kw, image=Image.fromarray(img), strength=0.6).images
    torch.testing.assert_close(got, edit(ck, img, 3, 7, 0.6, steps=6, guidance=2.0),
                               atol=1e-5, rtol=0)
    # keep_mask: white = keep, as edit / Generator.edit / --mask take it; default strength 1
    got = pipe(**kw, image=img, keep_mask=Image.fromarray(HOLE)).images
    torch.testing.assert_close(got, edit(ck, img, 3, 7, 1.0, HOLE, steps=6, guidance=2.0),
                               atol=1e-5, rtol=0)
    # diffusers' repaint mask is refused in one line, never inverted behind the caller's back
    with pytest.raises(ValueError, match="pass keep_mask=") as e:
        pipe(**kw, image=img, mask_image=Image.fromarray(255 - HOLE))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="keep_mask needs image="):
        pipe(**kw, keep_mask=HOLE)
    with pytest.raises(ValueError, match="strength needs image="):
        pipe(**kw, strength=0.5)


# ------------------------------------------------------------------ the runtime (a bundle)
@pytest.fixture(scope="module")
def gen(vivid_checkpoint, tmp_path_factory):
    from bundle_factory import shared_bundle
    from lrf.runtime import Generator

    with Generator.load(shared_bundle(tmp_path_factory, vivid_checkpoint), threads=1) as g:
        yield g


@pytest.mark.parametrize("mode", ["fused", "stepwise"])
def test_runtime_identities(gen, mode):
    img = _photo()
    assert np.array_equal(gen.edit(img, 3, 7, 1.0, steps=6, guidance=2.0, mode=mode),
                          gen.generate(3, 7, steps=6, guidance=2.0, mode=mode))
    rt = gen.decode(gen.encode(img[None]))[0]
    assert np.array_equal(gen.edit(img, 3, 7, 0.0, steps=6, mode=mode), rt)
    assert np.array_equal(gen.edit(img, 3, 7, 0.7, np.full((32, 32), 255, np.uint8), steps=6,
                                   mode=mode), rt)


EDITS = [(0.3, False), (0.7, False), (1.0, True), (0.6, True)]


def _assert_edit_parity(g, ck, strength, masked):
    """A bundle's edit vs the PyTorch reference edit: the image bar of its precision."""
    from lrf.exporter.parity import IMAGE_PSNR_DB
    from lrf.models.reference import edit, to_uint8

    img, mask = _photo(1), HOLE if masked else None
    ref = to_uint8(edit(ck, img, 5, 11, strength, mask, steps=8, guidance=2.5))[0]
    got = g.edit(Image.fromarray(img), "dog", 11, strength, mask, steps=8, guidance=2.5)
    assert _psnr(got, ref) >= IMAGE_PSNR_DB[g.manifest["precision"]]
    assert _psnr(got, _round_trip(ck, img)) < 40          # it edited something


@pytest.mark.parametrize("strength,masked", EDITS)
def test_runtime_edit_matches_the_reference_fp32(gen, ck, strength, masked):
    _assert_edit_parity(gen, ck, strength, masked)


@pytest.fixture(scope="module")
def gen_int8(vivid_checkpoint, tmp_path_factory):
    from lrf.exporter.export import export_bundle
    from lrf.runtime import Generator

    out = tmp_path_factory.mktemp("int8") / "bundle"
    export_bundle("onnx", vivid_checkpoint, out, int8=True, steps=[2], parity_images=1,
                  calibration_images=2, fidelity_images=0, log=lambda _: None)
    with Generator.load(out, threads=1) as g:
        yield g


@pytest.mark.slow
@pytest.mark.parametrize("strength,masked", EDITS)
def test_runtime_edit_matches_the_reference_int8(gen_int8, ck, strength, masked):
    assert gen_int8.manifest["precision"] == "int8"
    _assert_edit_parity(gen_int8, ck, strength, masked)


def test_runtime_progress_and_cancel(gen):
    from lrf.runtime import GenerationCancelled

    seen = []
    gen.edit(_photo(), 0, 0, 0.5, HOLE, steps=10, on_step=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 5) for i in range(1, 6)]
    with pytest.raises(GenerationCancelled, match="after step 3/5"):
        gen.edit(_photo(), 0, 0, 0.5, steps=10, mode="stepwise", on_step=lambda i, n: i < 3)


def test_runtime_bad_input(gen):
    with pytest.raises(ValueError, match="this model makes 32x32"):
        gen.edit(np.zeros((64, 64, 3), np.uint8), 0, 0, 0.5)
    with pytest.raises(ValueError, match="strength must be"):
        gen.edit(_photo(), 0, 0, 1.5)
    with pytest.raises(ValueError, match="mask is 16x16"):
        gen.edit(_photo(), 0, 0, 0.5, np.ones((16, 16), bool))


# ------------------------------------------------------------------ lrf-generate
def _run_cli(args, capsys):
    from lrf.models.cli import main

    try:
        rc = main(args)
    except SystemExit as e:  # argparse's usage errors, if main is not wrapped
        rc = e.code
    return rc, capsys.readouterr().err.strip()


def test_cli_edit_bundle_equals_checkpoint(gen, vivid_checkpoint, tmp_path, capsys):
    Image.fromarray(_photo()).save(tmp_path / "in.png")
    Image.fromarray(HOLE).save(tmp_path / "keep.png")
    common = ["--init-image", str(tmp_path / "in.png"), "--strength", "0.6", "--mask",
              str(tmp_path / "keep.png"), "--class", "dog", "--steps", "6", "--seed", "2"]
    assert _run_cli(["--bundle", str(gen.bundle.path), *common, "--out",
                     str(tmp_path / "b.png")], capsys)[0] == 0
    assert _run_cli(["--checkpoint", vivid_checkpoint, *common, "--out",
                     str(tmp_path / "c.png")], capsys)[0] == 0
    b, c = (np.asarray(Image.open(tmp_path / f)) for f in ("b.png", "c.png"))
    assert b.shape == (32, 32, 3) and _psnr(b, c) >= 40
    assert np.array_equal(b, gen.edit(_photo(), "dog", 2, 0.6, HOLE, steps=6))


@pytest.mark.parametrize("case,match", [
    ("size", "is 32x40 but this model makes 32x32"),
    ("odd", "multiples of 8"),
    ("gray", "mode 'L'"),
    ("garbage", "cannot read --init-image"),
    ("missing", "does not exist"),
    ("mask", "--mask .* is 16x16 but the image is 32x32"),
    ("strength", "--strength must be in \\[0, 1\\]"),
    ("nan", "must be finite"),
    ("noimage", "--strength needs --init-image"),
])
def test_cli_bad_edit_input_is_one_line_exit_2(gen, tmp_path, capsys, case, match):
    Image.fromarray(_photo()).save(tmp_path / "ok.png")
    init, extra = tmp_path / "in.png", []
    if case == "size":
        Image.fromarray(np.zeros((40, 32, 3), np.uint8)).save(init)
    elif case == "odd":
        Image.fromarray(np.zeros((36, 36, 3), np.uint8)).save(init)
    elif case == "gray":
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(init)
    elif case == "garbage":
        init.write_bytes(b"not a png")
    elif case != "missing":
        init = tmp_path / "ok.png"
    if case == "mask":
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "m.png")
        extra = ["--mask", str(tmp_path / "m.png")]
    strength = {"strength": "1.5", "nan": "nan"}.get(case, "0.5")
    args = ["--bundle", str(gen.bundle.path), "--class", "dog", "--strength", strength,
            "--out", str(tmp_path / "x.png"), *extra]
    if case != "noimage":
        args += ["--init-image", str(init)]
    rc, err = _run_cli(args, capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("lrf-generate: error:")
    assert re.search(match, err), err
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------- steering (python -m lrf.training.steering)
def test_steering_cli_writes_rows_atomically(vivid_checkpoint, tmp_path, capsys):
    from conftest import CIFAR_MINI_TAR
    from lrf.training import steering

    out = tmp_path / "rows.json"
    rc = steering.main(["--data", CIFAR_MINI_TAR, "--source", "cat", "--target", "dog",
                        "--images", "2", "--strengths", "0.9", "--steps", "2",
                        "--checkpoint", str(vivid_checkpoint), "--json", str(out)])
    assert rc == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| strength | predicted dog | predicted cat |" and len(table) == 4
    rows = json.loads(out.read_text())
    assert [r["strength"] for r in rows] == [0.0, 0.9]  # strength 0: the codec round trip
    for r in rows:
        assert r["images"] == 2
        assert r["target_rate"] in (0.0, 0.5, 1.0) and r["source_rate"] in (0.0, 0.5, 1.0)
        assert r["target_rate"] + r["source_rate"] <= 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["rows.json"]  # no temporary left


@pytest.mark.parametrize("args,match", [
    (["--strengths", "0.5,x"], "--strengths must be a number, got 'x'"),
    (["--strengths", "0.5,1.5"], r"--strengths must be a number in \[0, 1\]"),
    (["--images", "0"], "--images must be >= 1"),
    (["--guidance", "nan"], "--guidance must be a finite number"),
    (["--json", "/nonexistent-dir/rows.json"], "folder '/nonexistent-dir' does not exist"),
    (["--source", "kat"], "unknown class 'kat'"),
])
def test_steering_cli_bad_input_is_one_line_exit_2(vivid_checkpoint, capsys, args, match):
    from conftest import CIFAR_MINI_TAR
    from lrf.training import steering

    rc = steering.main(["--data", CIFAR_MINI_TAR, "--checkpoint", str(vivid_checkpoint), *args])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("lrf.training.steering: error:") and re.search(match, err), err
