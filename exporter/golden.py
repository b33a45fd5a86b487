"""Golden files: test vectors that ship in every bundle (``runtime/BUNDLE.md`` section 6), so the
Kotlin and Swift ports check their PRNG, scheduler, step graph and decoder without Python.

Formats readable without libraries: JSON, raw little-endian float32 ``.f32`` (shape in the
manifest) and PNG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lrf import prng
from lrf.runtime import Generator, scheduler

if TYPE_CHECKING:  # golden vectors are importable without torch
    from lrf.exporter.calibration import Trajectories

GOLDEN_SEED = 2024
GOLDEN_LABEL = 3
RNG_SEEDS = (0, 1, 42, 2**64 - 1)
RNG_COUNT = 8


def rng_vectors(seeds=RNG_SEEDS, count: int = RNG_COUNT) -> dict:
    """The first ``count`` words, uniforms and normals for each seed (with float32 bit patterns)."""
    vectors = []
    for s in seeds:
        u = prng.uniform(s, count)
        n = prng.normal(s, count)
        vectors.append({"seed": int(s), "seed_hex": f"0x{int(s):016x}",
                        "words_hex": [f"0x{int(w):016x}" for w in prng.words(s, count)],
                        "uniform": [float(v) for v in u],
                        "uniform_bits": [int(b) for b in u.view(np.uint32)],
                        "normal": [float(v) for v in n],
                        "normal_bits": [int(b) for b in n.view(np.uint32)]})
    return {"spec": prng.SPEC, "vectors": vectors}


def _f32(path: Path, array: np.ndarray, rel: str) -> dict:
    a = np.ascontiguousarray(array, dtype="<f4")
    path.write_bytes(a.tobytes())
    return {"file": rel, "dtype": "float32", "shape": list(a.shape)}


def _png(path: Path, image: np.ndarray, rel: str) -> dict:
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(path)
    return {"file": rel, "dtype": "uint8", "shape": list(image.shape), "format": "png"}


def write_golden(bundle_dir: Path, ref: "Trajectories", gen: Generator | None,
                 classes: list[str], image_psnr_db: float) -> dict:
    """Write ``golden/`` for the single case in ``ref`` (batch 1) and return the manifest's
    ``golden`` section. ``gen`` runs this bundle (None for targets without a runtime backend
    here: then only the reference, noise, timesteps and RNG vectors are written)."""
    if ref.batch != 1:
        raise ValueError(f"golden case must be one image, got {ref.batch}")
    d = Path(bundle_dir) / "golden"
    d.mkdir(exist_ok=True)
    label, seed, n = int(ref.labels[0]), int(ref.seeds[0]), ref.steps
    files = {}
    (d / "rng.json").write_text(json.dumps(rng_vectors(), indent=1) + "\n")
    files["rng"] = {"file": "golden/rng.json", "format": "json"}
    files["timesteps"] = _f32(d / "timesteps.f32", scheduler.timesteps(n, ref.shift),
                              "golden/timesteps.f32")
    noise = prng.noise([seed], ref.latents.shape[2:])
    files["noise"] = _f32(d / "noise.f32", noise, "golden/noise.f32")
    files["reference"] = _png(d / "reference.png", ref.images[0], "golden/reference.png")
    files["reference_float"] = _f32(d / "reference.f32", ref.images_float, "golden/reference.f32")
    if gen is not None:
        y = np.asarray([label], dtype=np.int32)
        g = np.asarray([ref.guidance], dtype=np.float32)
        t0 = np.asarray([ref.times[0]], dtype=np.float32)
        files["velocity_0"] = _f32(d / "velocity_0.f32", gen.step(noise, t0, y, g),
                                   "golden/velocity_0.f32")
        z = gen.sample_latents(noise, y, g, n)
        files["latent_final"] = _f32(d / "latent_final.f32", z, "golden/latent_final.f32")
        files["image_stepwise"] = _png(d / "image_stepwise.png", gen.decode(z)[0],
                                       "golden/image_stepwise.png")
        if n in gen.fused_steps:
            img = gen.generate(label, seed, steps=n, guidance=ref.guidance, mode="fused")
            files[f"image_fused_{n}"] = _png(d / f"image_fused_{n}.png", img,
                                             f"golden/image_fused_{n}.png")
    return {"case": {"seed": seed, "label": label, "class": classes[label], "steps": n,
                     "guidance": ref.guidance},
            "files": files,
            "tolerances": {"noise_max_abs": 1e-6, "image_psnr_db": image_psnr_db}}
