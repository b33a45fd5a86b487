"""One PSNR and one set of bars (lrf.exporter.metrics), read by the parity gate, the golden
files and lrf-export --check alike."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrf.exporter import golden, metrics, parity


def test_psnr_of_a_known_error():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0, 0] = 10                                   # mse = 100 / 96
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255.0 ** 2 * 96 / 100))
    assert metrics.psnr(a, a) == metrics.PSNR_CAP == 100.0
    m = metrics.image_metrics(a, b)
    assert (m["max_abs"], m["images"], m["min_psnr_db"]) == (10, 2, round(10 * math.log10(
        255.0 ** 2 * 48 / 100), 3))


def test_the_gate_and_the_golden_files_judge_by_the_same_bars_and_psnr():
    assert parity.IMAGE_PSNR_DB is metrics.IMAGE_PSNR_DB and parity.psnr is metrics.psnr
    assert parity.REL_MAX_ABS == metrics.TENSOR_REL_MAX_ABS["fp32"]
    rng = np.random.default_rng(0)
    want = rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    got = np.clip(want.astype(int) + rng.integers(-9, 10, want.shape), 0, 255).astype(np.uint8)
    bar = metrics.IMAGE_PSNR_DB["int8"]
    ok, value = golden.judge({"metric": "psnr_db", "bar": bar}, want, got)
    assert value == metrics.psnr(want, got) and ok == (value >= bar)
    assert golden.judge({"metric": "psnr_db", "bar": value + 0.01}, want, got)[0] is False


def test_tensor_metrics():
    ref = np.array([1.0, -2.0, 4.0])
    m = metrics.tensor_metrics(ref, ref + [0.0, 0.4, 0.0])
    assert m["max_abs"] == pytest.approx(0.4) and m["rel_max_abs"] == pytest.approx(0.1)
    assert m["snr_db"] == pytest.approx(10 * math.log10(21 / 0.16), abs=1e-3)
    assert metrics.tensor_metrics(ref, ref * np.nan)["finite"] is False
    with pytest.raises(ValueError, match="tensor parity"):
        metrics.tensor_metrics(ref, ref[:2])
