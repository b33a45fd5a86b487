"""Tiled decoding (issue 13 item 3): the tile plan and blend weights, exactness on a local
decoder, the >= 40 dB agreement with whole-image decoding at 256 and 512 px (a bundle's decoder
graph through lrf.runtime, and the shipped decoder), and the auto / on / off switch."""

from __future__ import annotations

import numpy as np
import pytest

from lrf.runtime import tiling
from lrf.runtime.tiling import Tiling, axis_weights, decode_tiled, spans


def _psnr(a, b) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return 100.0 if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


@pytest.mark.parametrize("n", [1, 24, 25, 31, 32, 40, 64, 100, 129])
@pytest.mark.parametrize("tile,overlap", [(24, 12), (16, 8), (32, 9)])
def test_spans_cover_with_equal_tiles_and_enough_overlap(n, tile, overlap):
    sp = spans(n, tile, overlap)
    assert sp[0][0] == 0 and sp[-1][1] == n
    if n <= tile:
        assert sp == [(0, n)]
        return
    assert all(b - a == tile for a, b in sp)
    assert all(sp[k][1] - sp[k + 1][0] >= overlap for k in range(len(sp) - 1))
    assert len(sp) == 1 + int(np.ceil((n - tile) / (tile - overlap)))   # no extra tile


@pytest.mark.parametrize("n,cfg", [(64, Tiling()), (100, Tiling(tile=16, overlap=9, margin=3)),
                                   (33, Tiling(tile=32, overlap=12, margin=5))])
def test_weights_are_a_partition_of_unity_with_zero_margins(n, cfg):
    f = 8
    sp = spans(n, cfg.tile, cfg.overlap)
    ws = axis_weights(sp, n, f, cfg.margin)
    total = np.zeros(n * f)
    for (a, b), w in zip(sp, ws):
        total[a * f:b * f] += w
        if a > 0:
            assert not w[:cfg.margin * f].any()          # context only, never shown
        if b < n:
            assert not w[len(w) - cfg.margin * f:].any()
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def _local_decoder(z: np.ndarray) -> np.ndarray:
    """A decoder without any spatial context: each cell becomes an 8x8 block of its colour."""
    rgb = np.clip(z[:, :3] * 40 + 128, 0, 255).round().astype(np.uint8)      # [B,3,h,w]
    return np.repeat(np.repeat(rgb.transpose(0, 2, 3, 1), 8, 1), 8, 2)


def test_tiled_equals_whole_for_a_decoder_without_context():
    z = np.random.default_rng(0).standard_normal((2, 4, 50, 70)).astype(np.float32)
    calls = []
    out = decode_tiled(lambda t: calls.append(t.shape) or _local_decoder(t), z,
                       Tiling(mode="on", tile=16, overlap=8, margin=3))
    assert np.array_equal(out, _local_decoder(z))
    assert len(calls) == len(spans(50, 16, 8)) * len(spans(70, 16, 8)) > 1
    assert all(s[2:] == (16, 16) for s in calls)           # every tile has the same size


def test_modes_and_auto_threshold():
    t = Tiling()
    assert not t.applies(32, 32) and t.applies(33, 8) and t.applies(64, 64)
    assert Tiling(mode="on").applies(32, 32) and not Tiling(mode="on").applies(24, 24)
    assert not Tiling(mode="off").applies(512, 512)
    assert tiling.as_tiling(None) == Tiling() and tiling.as_tiling(False).mode == "off"
    assert tiling.as_tiling("on").mode == "on" and tiling.as_tiling(True).mode == "on"


@pytest.mark.parametrize("kw,match", [(dict(mode="yes"), "mode must be"),
                                      (dict(tile=0), "tile must be"),
                                      (dict(overlap=24), "2 \\* margin < overlap < tile"),
                                      (dict(margin=6), "2 \\* margin < overlap < tile")])
def test_bad_settings_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        Tiling(**kw)


# ------------------------------------------------------------------ real decoders
@pytest.fixture(scope="module")
def gen(vivid_checkpoint, tmp_path_factory):
    from bundle_factory import shared_bundle
    from lrf.runtime import Generator

    with Generator.load(shared_bundle(tmp_path_factory, vivid_checkpoint), threads=1) as g:
        yield g


@pytest.mark.parametrize("px", [256, 512])
def test_bundle_decoder_tiled_within_fp32_bar(gen, px):
    z = np.random.default_rng(px).standard_normal((1, 4, px // 8, px // 8)).astype(np.float32)
    whole = gen.decode_whole(z)
    gen.tiling = "on"
    try:
        tiled = gen.decode(z)
    finally:
        gen.tiling = "auto"
    assert tiled.shape == whole.shape == (1, px, px, 3)
    assert _psnr(tiled, whole) >= 40


def test_generator_decode_tiles_automatically_above_256_px(gen, monkeypatch):
    calls = []
    real = gen.decode_whole
    monkeypatch.setattr(gen, "decode_whole", lambda z: calls.append(z.shape) or real(z))
    for side, expect in [(32, 1), (40, len(spans(40, 24, 12)) ** 2)]:
        calls.clear()
        gen.decode(np.zeros((1, 4, side, side), np.float32))
        assert len(calls) == expect
    gen.tiling = "off"
    try:
        calls.clear()
        gen.decode(np.zeros((1, 4, 40, 40), np.float32))
        assert calls == [(1, 4, 40, 40)]
    finally:
        gen.tiling = "auto"


@pytest.mark.parametrize("px", [256, 512])
def test_shipped_decoder_tiled_within_fp32_bar(px):
    """The shipped TAESD-architecture decoder (PyTorch) on latents of real-looking statistics."""
    import torch

    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.reference import to_uint8

    ck = load_checkpoint()

    def decode(z):
        with torch.no_grad():
            return to_uint8(ck.codec.decode(torch.from_numpy(z)))

    z = np.random.default_rng(px).standard_normal((1, 4, px // 8, px // 8)).astype(np.float32)
    assert _psnr(decode_tiled(decode, z, Tiling(mode="on")), decode(z)) >= 40
