"""Golden files (``runtime/BUNDLE.md`` section 6): test vectors that ship in every bundle, so the
Kotlin, Swift and web ports check their PRNG, scheduler and graphs without Python.

Two sources, kept apart: files made by **this bundle through lrf.runtime** (what a port must
reproduce, within each file's tolerance) and the **PyTorch float32 reference** for the same case
(``reference_*``: an independent check of the runtime, computed by :func:`references`).
Formats readable without libraries: JSON, raw little-endian ``.f32`` and PNG.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lrf import prng
from lrf.exporter.metrics import IMAGE_PSNR_DB, TENSOR_REL_MAX_ABS, psnr
from lrf.runtime.manifest import strict_json
from lrf.runtime import Generator, scheduler

if TYPE_CHECKING:  # golden vectors are importable without torch
    from lrf.exporter.calibration import Trajectories
    from lrf.models.checkpoint import Checkpoint

GOLDEN_SEED = 2024
GOLDEN_LABEL = 3
GOLDEN_SMALL_STEPS = 3   # the second N: never a default, cheap to re-run in --check
EDIT_STRENGTH = 0.6
RNG_SEEDS = (0, 1, 42, 2**64 - 1)
RNG_COUNT = 8           # words and uniforms per seed
RNG_NORMALS = 9         # odd: exercises the odd-count rule of BUNDLE.md section 4
NOISE_MAX_ABS = 1e-6


@dataclass
class GoldenReference:
    """PyTorch float32 results for the golden cases: ``generate[N]`` (batch-1 trajectories) and
    ``edits[kind]`` = (input image, keep mask or None, reference image, steps, seed)."""

    generate: dict[int, "Trajectories"]
    guidance: float
    edits: dict[str, tuple] = field(default_factory=dict)


def golden_steps(default_steps: int) -> list[int]:
    """The two N of the generate cases: the default and GOLDEN_SMALL_STEPS (2 when those are
    equal), largest first."""
    small = GOLDEN_SMALL_STEPS if default_steps != GOLDEN_SMALL_STEPS else 2
    return sorted({default_steps, small}, reverse=True)


def references(ckpt: "Checkpoint", default_steps: int, latent_size: int) -> GoldenReference:
    """The PyTorch reference for every golden case (imports torch)."""
    from lrf.exporter.calibration import record_trajectories
    from lrf.models import reference

    label = GOLDEN_LABEL % ckpt.config.num_classes
    gen = {n: record_trajectories(ckpt, [label], [GOLDEN_SEED], steps=n, latent_size=latent_size)
           for n in golden_steps(default_steps)}
    edits: dict[str, tuple] = {}
    if latent_size == ckpt.config.latent_size:
        n = min(gen)
        image = gen[max(gen)].images[0]
        h, w = image.shape[:2]
        mask = np.zeros((h, w), np.uint8)
        mask[:, : w // 2] = 255                                  # keep the left half
        for kind, m in (("img2img", None), ("inpaint", mask)):
            out = reference.edit(ckpt, image, label, GOLDEN_SEED + 1, EDIT_STRENGTH, m, steps=n)
            edits[kind] = (image, m, reference.to_uint8(out)[0], n, GOLDEN_SEED + 1)
    return GoldenReference(gen, float(gen[max(gen)].guidance), edits)


def rng_vectors(seeds=RNG_SEEDS, count: int = RNG_COUNT, normals: int = RNG_NORMALS) -> dict:
    """Words, uniforms and normals for each seed (with float32 bit patterns); seeds as strings."""
    vectors = []
    for s in seeds:
        u, n = prng.uniform(s, count), prng.normal(s, normals)
        vectors.append({"seed": str(int(s)),
                        "words_hex": [f"0x{int(w):016x}" for w in prng.words(s, count)],
                        "uniform": [float(v) for v in u],
                        "uniform_bits": [int(b) for b in u.view(np.uint32)],
                        "normal": [float(v) for v in n],
                        "normal_bits": [int(b) for b in n.view(np.uint32)]})
    return {"spec": prng.SPEC, "vectors": vectors}


class _Writer:
    """Writes golden files and their uniform manifest entries."""

    def __init__(self, bundle_dir: Path, precision: str):
        self.root = Path(bundle_dir)
        self.files: dict[str, dict] = {}
        self.tensor = {"metric": "rel_max_abs", "bar": TENSOR_REL_MAX_ABS[precision]}
        self.image = {"metric": "psnr_db", "bar": IMAGE_PSNR_DB[precision]}
        self.precision = precision

    def _entry(self, case, content, rel, fmt, dtype, shape, tolerance) -> None:
        key = content if case is None else f"{case}.{content}"
        self.files[key] = {"file": rel, "format": fmt, "dtype": dtype, "shape": shape,
                           "case": case, "content": content, "tolerance": tolerance}

    def _path(self, case, name) -> tuple[Path, str]:
        rel = f"golden/{name}" if case is None else f"golden/{case}/{name}"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, rel

    def json(self, content: str, data: dict) -> None:
        path, rel = self._path(None, f"{content}.json")
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        self._entry(None, content, rel, "json", None, None, {"metric": "exact", "bar": 0})

    def f32(self, case: str, content: str, array: np.ndarray, tolerance) -> None:
        a = np.ascontiguousarray(array, dtype="<f4")
        path, rel = self._path(case, f"{content}.f32")
        path.write_bytes(a.tobytes())
        self._entry(case, content, rel, "f32", "float32", list(a.shape), tolerance)

    def png(self, case: str, content: str, image: np.ndarray, tolerance) -> None:
        a = np.ascontiguousarray(image, dtype=np.uint8)
        path, rel = self._path(case, f"{content}.png")
        Image.fromarray(a).save(path)
        self._entry(case, content, rel, "png", "uint8", list(a.shape), tolerance)


def write_golden(bundle_dir: Path, ckpt: "Checkpoint", gen: Generator | None, precision: str,
                 latent_size: int | None = None) -> dict:
    """Compute the PyTorch reference of every golden case (:func:`references`), write
    ``golden/`` and return the manifest's ``golden`` section. ``gen`` runs this bundle (None for
    targets without a runtime backend here: then only the inputs, the RNG vectors and the
    PyTorch reference are written)."""
    ref = references(ckpt, int(ckpt.sampling["steps"]), latent_size or ckpt.config.latent_size)
    return write_golden_files(bundle_dir, gen, ref, list(ckpt.classes), precision)


def write_golden_files(bundle_dir: Path, gen: Generator | None, ref: GoldenReference,
                       classes: list[str], precision: str) -> dict:
    """Write ``golden/`` for the reference ``ref``; returns the manifest's ``golden`` section."""
    w = _Writer(bundle_dir, precision)
    w.json("rng_vectors", rng_vectors())
    ref_tensor = w.tensor if precision == "fp32" else None  # int8: judged by its images
    cases: dict[str, dict] = {}
    for n, r in sorted(ref.generate.items(), reverse=True):
        if r.batch != 1:
            raise ValueError(f"golden case must be one image, got {r.batch}")
        label, seed = int(r.labels[0]), int(r.seeds[0])
        case = f"generate_{n}"
        cases[case] = {"kind": "generate", "seed": str(seed), "label": label,
                       "class": classes[label], "steps": n, "guidance": float(r.guidance),
                       "strength": None, "modes": ["fused", "stepwise"] if gen else []}
        noise = prng.noise([seed], r.latents.shape[2:])
        ts = scheduler.timesteps(n, r.shift)
        w.f32(case, "timesteps", ts, {"metric": "exact", "bar": 0})
        w.f32(case, "noise", noise, {"metric": "max_abs", "bar": NOISE_MAX_ABS})
        w.f32(case, "reference_latent_final", r.latents[-1], ref_tensor)
        w.png(case, "reference_image", r.images[0], w.image)
        if gen is None:
            continue
        for content, value in run_case(gen, cases[case], noise, ts).items():
            if content.startswith("image_"):
                w.png(case, content, value, w.image)
            else:
                w.f32(case, content, value, w.tensor)
    edits = ref.edits if gen is None or "encoder" in gen.bundle.graphs else {}
    for kind, (image, mask, ref_image, n, seed) in edits.items():
        case = f"{kind}_{n}"
        label = GOLDEN_LABEL % len(classes)
        cases[case] = {"kind": kind, "seed": str(seed), "label": label, "class": classes[label],
                       "steps": n, "guidance": ref.guidance, "strength": EDIT_STRENGTH,
                       "modes": []}
        w.png(case, "input_image", image, None)
        if mask is not None:
            w.png(case, "mask", mask, None)
        w.png(case, "reference_image", ref_image, w.image)
        if gen is not None:
            cases[case]["modes"] = [edit_mode(mask)]
            for content, value in run_case(gen, cases[case], image=image, mask=mask).items():
                w.png(case, content, value, w.image)
    return {"runtime": gen.backend.settings() if gen is not None else None,
            "cases": cases, "files": w.files}


def edit_mode(mask) -> str:
    """The mode an edit case runs in when the manifest names none: inpainting steps (its mask
    is re-applied every step), img2img fuses."""
    return "stepwise" if mask is not None else "fused"


def run_case(gen: Generator, case: dict, noise: np.ndarray | None = None,
             timesteps: np.ndarray | None = None, image: np.ndarray | None = None,
             mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """What the runtime ``gen`` makes for one golden case (a manifest ``golden.cases`` entry),
    by golden content: the one runner behind both writing the golden files and
    ``lrf-export --check`` re-running them.

    A ``generate`` case, from ``noise`` over ``timesteps``: ``denoise_first`` (one call of the
    graph's window), then ``latent_final_<mode>`` and ``image_<mode>`` for each of its modes.
    An edit case (``img2img``/``inpaint``) of ``image`` (and ``mask``): ``image_<mode>``."""
    label, seed, n, g = int(case["label"]), int(case["seed"]), case["steps"], case["guidance"]
    out: dict[str, np.ndarray] = {}
    if case["kind"] == "generate":
        y, gv = np.asarray([label], np.int32), np.asarray([g], np.float32)
        k = gen.window[0]
        out["denoise_first"] = gen.denoise(noise, timesteps[:k + 1], y, gv, window=k)
        for mode in case["modes"]:
            z = gen.sample_latents(noise, y, gv, n, mode=mode)
            out[f"latent_final_{mode}"], out[f"image_{mode}"] = z, gen.decode(z)[0]
        return out
    for mode in case["modes"]:
        out[f"image_{mode}"] = np.asarray(gen.edit(image, label, seed, case["strength"], mask,
                                                   steps=n, guidance=g, mode=mode))
    return out


# ---------------------------------------------------------------- reading and judging
ENTRY_KEYS = ("file", "format", "dtype", "shape", "case", "content", "tolerance")


def read_file(bundle, key: str):
    """The golden file ``key`` of an open :class:`~lrf.runtime.Bundle`, as JSON data or an
    array of its manifest shape (through the bundle's containment rules)."""
    entry = bundle.manifest["golden"]["files"][key]
    if not isinstance(entry, dict) or tuple(sorted(entry)) != tuple(sorted(ENTRY_KEYS)):
        raise ValueError(f"manifest.json: golden.files.{key}: expected keys {list(ENTRY_KEYS)}, "
                         f"got {sorted(entry) if isinstance(entry, dict) else entry!r}")
    if entry["format"] not in ("json", "f32", "png") or (
            entry["format"] != "json" and not isinstance(entry["shape"], list)):
        raise ValueError(f"manifest.json: golden.files.{key}: expected format json/f32/png "
                         f"with a shape list, got {entry['format']!r} {entry['shape']!r}")
    path = bundle.file(entry["file"])
    if entry["format"] == "json":
        return strict_json(path.read_bytes(), path.name)
    if entry["format"] == "png":
        try:
            with Image.open(path) as im:
                a = np.asarray(im)
        except (OSError, ValueError, Image.DecompressionBombError):
            raise ValueError(f"{entry['file']}: not a readable PNG; re-export the bundle") \
                from None
        if list(a.shape) != entry["shape"]:
            raise ValueError(f"{entry['file']}: image of shape {list(a.shape)}, manifest shape "
                             f"{entry['shape']}")
    else:
        a = np.fromfile(path, dtype="<f4")
        if a.size != int(np.prod(entry["shape"])):
            raise ValueError(f"{entry['file']}: {a.size} floats, manifest shape {entry['shape']}")
    return a.reshape(entry["shape"])


def judge(tolerance: dict | None, want: np.ndarray, got: np.ndarray) -> tuple[bool, float | None]:
    """(passed, measured value) of ``got`` against the golden array ``want`` under a
    ``golden.files.*.tolerance`` (BUNDLE.md section 6); (True, None) when not compared."""
    if tolerance is None:
        return True, None
    metric, bar = tolerance["metric"], float(tolerance["bar"])
    want, got = np.asarray(want), np.asarray(got)
    if want.shape != got.shape:
        return False, None
    if metric == "exact":
        return bool(np.array_equal(want, got)), 0.0 if np.array_equal(want, got) else None
    if metric == "psnr_db":
        value = psnr(want, got)
        return value >= bar, value
    if metric == "cosine_min":   # v3 text embeddings [B,T]: every row's cosine >= bar
        from lrf.exporter.metrics import cosine

        value = float(cosine(want.reshape(len(want), -1), got.reshape(len(got), -1)).min())
        return bool(value >= bar), value
    err = np.abs(want.astype(np.float64) - got.astype(np.float64))
    value = float(err.max()) if err.size else 0.0
    if metric == "rel_max_abs":
        value /= max(float(np.abs(want).max()), 1e-12)
    elif metric != "max_abs":
        raise ValueError(f"unknown golden tolerance metric {metric!r}")
    return bool(np.isfinite(value) and value <= bar), value
