"""The parity gate, shared by every target: each artifact against the PyTorch float32 reference
on fixed (seed, label) cases, through ``lrf.runtime``.

Bars (``runtime/BUNDLE.md`` section 5): final images >= 40 dB PSNR for fp32 bundles and >= 25 dB
for int8; fp32 step velocities within ``STEP_REL_MAX_ABS`` of the reference (relative to its
largest magnitude); int8 class fidelity within 3 points of the reference when measurable.
"""

from __future__ import annotations

import math

import os

import numpy as np

from lrf.exporter.calibration import Trajectories
from lrf.runtime import Generator

IMAGE_PSNR_DB = {"fp32": 40.0, "int8": 25.0}
STEP_REL_MAX_ABS = 1e-3       # fp32 only: int8 steps are judged by the images they produce
CLASS_FIDELITY_DROP = 0.03    # fraction (3 points)
PSNR_CAP = 100.0              # identical images read as 100 dB (strict JSON has no Infinity)


FUSED_SIZE_RATIO = 1.2         # a fused generator file vs step + decoder (weights stored once)


class ParityError(ValueError):
    """An artifact is below its bar; ``failures`` lists one line per failing measurement."""

    def __init__(self, failures: list[str]):
        self.failures = failures
        super().__init__("export gate failed: " + "; ".join(failures) + " -- no bundle written")


def path_size(path) -> int:
    """Bytes of a file, or of every file under a directory (e.g. an .mlpackage)."""
    from pathlib import Path

    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*")
                                                    if f.is_file())


def fused_size_check(bundle_dir, files: dict[str, str]) -> tuple[dict[str, float], list[str]]:
    """Each ``generator_<N>`` file's size as a fraction of step + decoder (``files``: graph name
    -> bundle-relative path); a ratio above :data:`FUSED_SIZE_RATIO` means weights are stored
    more than once, and fails the gate."""
    from pathlib import Path

    base = path_size(Path(bundle_dir) / files["step"]) + \
        path_size(Path(bundle_dir) / files["decoder"])
    ratios, failures = {}, []
    for name, rel in files.items():
        if name.startswith("generator_"):
            ratios[name] = round(path_size(Path(bundle_dir) / rel) / base, 4)
            if ratios[name] > FUSED_SIZE_RATIO:
                failures.append(f"{name}: file is {ratios[name]:.2f}x step + decoder > "
                                f"{FUSED_SIZE_RATIO}x (weights stored more than once?)")
    return ratios, failures


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
    ref = ref.astype(np.float64)
    err = out.astype(np.float64) - ref
    if not np.isfinite(err).all():
        return {"max_abs": None, "rel_max_abs": None, "snr_db": None, "finite": False}
    max_abs = float(np.abs(err).max())
    scale = float(np.abs(ref).max()) or 1.0
    p_err = float(np.sum(err ** 2))
    snr = PSNR_CAP if p_err == 0 else min(PSNR_CAP, 10 * math.log10(float(np.sum(ref ** 2)) / p_err))
    return {"max_abs": max_abs, "rel_max_abs": max_abs / scale, "snr_db": round(snr, 3),
            "finite": True}


def _gate_image(result: dict, bar: float, what: str, failures: list[str]) -> dict:
    result["bar_psnr_db"] = bar
    result["passed"] = result["psnr_db"] >= bar
    if not result["passed"]:
        failures.append(f"{what}: {result['psnr_db']:.2f} dB PSNR < {bar:.0f} dB bar "
                        f"(short by {bar - result['psnr_db']:.2f} dB)")
    return result


def measure(gen: Generator, refs: dict[int, Trajectories], default_steps: int, precision: str,
            graphs: list[str]) -> tuple[dict[str, dict], dict, list[str]]:
    """Measure every graph of a bundle loaded in ``gen`` against reference trajectories ``refs``
    (by step count; must hold ``default_steps`` and every fused N).

    Returns (per-graph parity, stepwise parity, failures). The bars depend on ``precision``.
    """
    bar = IMAGE_PSNR_DB[precision]
    failures: list[str] = []
    out: dict[str, dict] = {}
    ref = refs[default_steps]
    # step: velocities at every timestep of the reference trajectories
    vel = np.stack([gen.step(**feed) for feed in ref.step_feeds()])
    step = tensor_metrics(ref.velocities, vel)
    step["points"] = int(ref.velocities.shape[0] * ref.velocities.shape[1])
    if precision == "fp32":
        step["bar_rel_max_abs"] = STEP_REL_MAX_ABS
        step["passed"] = bool(step["finite"] and step["rel_max_abs"] <= STEP_REL_MAX_ABS)
        if not step["passed"]:
            failures.append(f"step: relative max-abs velocity error {step['rel_max_abs']} > "
                            f"{STEP_REL_MAX_ABS} bar")
    else:
        step["passed"] = bool(step["finite"])  # int8 steps are gated by the stepwise images
        if not step["finite"]:
            failures.append("step: non-finite velocities")
    out["step"] = step
    # decoder: the reference's own final latents
    out["decoder"] = _gate_image(image_metrics(ref.images, gen.decode(ref.latents[-1])), bar,
                                 "decoder", failures)
    for name in graphs:
        if name.startswith("generator_"):
            n = int(name.split("_")[1])
            r = refs[n]
            imgs = gen.generate_batch(list(r.labels), r.seeds, steps=n, guidance=r.guidance,
                                      mode="fused")
            out[name] = _gate_image(image_metrics(r.images, imgs), bar, name, failures)
    imgs = gen.generate_batch(list(ref.labels), ref.seeds, steps=default_steps,
                              guidance=ref.guidance, mode="stepwise")
    stepwise = _gate_image({"steps": default_steps, **image_metrics(ref.images, imgs)}, bar,
                           f"stepwise (step + decoder, {default_steps} steps)", failures)
    return out, stepwise, failures


def class_fidelity_function():
    """(function, None) when the shipped classifier's weights exist, else (None, reason).
    Never estimated when unavailable; any other error propagates."""
    from lrf.models.classifier import CLASSIFIER_DIR, CLASSIFIER_FILE, class_fidelity

    weights = os.path.join(CLASSIFIER_DIR, CLASSIFIER_FILE)
    if not os.path.isfile(weights):
        return None, f"classifier weights not found at {weights}"
    return class_fidelity, None


def measure_class_fidelity(gen: Generator, ref: Trajectories, mode: str | None,
                           precision: str) -> tuple[dict, list[str]]:
    """Class fidelity of the bundle's images vs the reference's on the same cases (``ref``)."""
    fn, reason = class_fidelity_function()
    if fn is None:
        return {"measured": False, "reason": reason}, []
    imgs = gen.generate_batch(list(ref.labels), ref.seeds, steps=ref.steps,
                              guidance=ref.guidance, mode=mode)
    ref_f = float(fn(ref.images, ref.labels.astype(np.int64)))
    art_f = float(fn(imgs, ref.labels.astype(np.int64)))
    drop = ref_f - art_f
    res = {"measured": True, "images": int(len(ref.seeds)), "steps": ref.steps,
           "mode": mode or "default", "reference": round(ref_f, 4), "artifact": round(art_f, 4),
           "drop": round(drop, 4), "bar_drop": CLASS_FIDELITY_DROP}
    res["passed"] = drop <= CLASS_FIDELITY_DROP
    failures = [] if res["passed"] else [
        f"class fidelity ({precision}): {art_f:.3f} vs reference {ref_f:.3f}, a drop of "
        f"{100 * drop:.1f} points > {100 * CLASS_FIDELITY_DROP:.0f} (short by "
        f"{100 * (drop - CLASS_FIDELITY_DROP):.1f})"]
    return res, failures
