"""The measurements and bars every export check shares (BUNDLE.md section 5), torch-free: the
parity gate (:mod:`lrf.exporter.parity`), the golden files' tolerances
(:mod:`lrf.exporter.golden`, re-judged by ``lrf-export --check``) and the int8 variant search.

* images: PSNR in dB of uint8 images, peak 255, identical images read as ``PSNR_CAP``;
* tensors: max-abs error, relative to the reference's largest magnitude, and SNR in dB.
"""

from __future__ import annotations

import math

import numpy as np

IMAGE_PSNR_DB = {"fp32": 40.0, "int8": 25.0}       # final image vs the PyTorch reference
TENSOR_REL_MAX_ABS = {"fp32": 1e-3, "int8": 5e-2}  # a graph's tensors vs the reference
PSNR_CAP = 100.0  # identical images read as 100 dB (strict JSON has no Infinity)
COSINE_BAR = 0.99  # a text bundle's prompt embedding vs the fp32 PyTorch encoder (BUNDLE.md 11.4)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of [B,T] arrays, in float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1),
                                        1e-12)


def psnr(ref: np.ndarray, out: np.ndarray) -> float:
    """PSNR in dB of uint8 images (peak 255), capped at :data:`PSNR_CAP`."""
    mse = float(np.mean((ref.astype(np.float64) - out.astype(np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0 ** 2 / mse))


def image_metrics(ref: np.ndarray, out: np.ndarray) -> dict:
    """uint8 [B,H,W,3] artifact images vs reference images."""
    if ref.shape != out.shape or out.dtype != np.uint8:
        raise ValueError(f"image parity: artifact gave {out.dtype} {list(out.shape)}, reference "
                         f"is uint8 {list(ref.shape)}")
    per = [psnr(r, o) for r, o in zip(ref, out)]
    diff = np.abs(ref.astype(np.int16) - out.astype(np.int16))
    return {"psnr_db": round(psnr(ref, out), 3), "min_psnr_db": round(min(per), 3),
            "max_abs": int(diff.max()), "mean_abs": round(float(diff.mean()), 5),
            "images": int(ref.shape[0])}


def tensor_metrics(ref: np.ndarray, out: np.ndarray) -> dict:
    """Float tensors: max-abs error, relative max-abs (to max |ref|) and SNR in dB."""
    if ref.shape != out.shape:
        raise ValueError(f"tensor parity: artifact gave {list(out.shape)}, reference is "
                         f"{list(ref.shape)}")
    ref = ref.astype(np.float64)
    err = out.astype(np.float64) - ref
    if not np.isfinite(err).all():
        return {"max_abs": None, "rel_max_abs": None, "snr_db": None, "finite": False}
    max_abs = float(np.abs(err).max())
    scale = float(np.abs(ref).max()) or 1.0
    p_err = float(np.sum(err ** 2))
    snr = PSNR_CAP if p_err == 0 else min(PSNR_CAP,
                                          10 * math.log10(float(np.sum(ref ** 2)) / p_err))
    return {"max_abs": max_abs, "rel_max_abs": max_abs / scale, "snr_db": round(snr, 3),
            "finite": True}
