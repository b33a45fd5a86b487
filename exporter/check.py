"""``lrf-export --check BUNDLE``: re-verify an existing bundle.

Checks the manifest schema, every file's size and sha256, the golden RNG vectors and noise
against ``lrf.prng``, and re-runs the golden case through ``lrf.runtime``: the stepwise
image (and the fused one when present) must be within the bundle's image bar of the golden PNGs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from lrf.exporter.parity import psnr, tensor_metrics
from lrf import prng
from lrf.runtime import Generator, open_bundle


class BundleCheckError(ValueError):
    """The bundle is readable but does not reproduce its golden files."""


def _read_f32(path: Path, entry: dict) -> np.ndarray:
    a = np.fromfile(path, dtype="<f4")
    if a.size != int(np.prod(entry["shape"])):
        raise BundleCheckError(f"{entry['file']}: {a.size} floats, manifest shape {entry['shape']}")
    return a.reshape(entry["shape"])


def check_bundle(path: str | Path, backend: str | None = None) -> str:
    """Verify ``path``; return a short report, raise (ValueError / FileNotFoundError) on failure."""
    from lrf.exporter.targets import get_target

    b = open_bundle(path, verify=True)
    lines = [f"{b.path}: schema v{b.manifest['schema_version']}, target {b.target}, "
             f"{b.manifest.get('precision')}; {len(b.manifest['files'])} files, checksums ok"]
    golden = b.manifest.get("golden")
    if not golden:
        raise BundleCheckError(f"{b.path}: manifest has no golden section")
    files, case = golden["files"], golden["case"]
    for v in json.loads(b.file(files["rng"]["file"]).read_text())["vectors"]:
        words = [f"0x{int(w):016x}" for w in prng.words(v["seed"], len(v["words_hex"]))]
        bits = [int(x) for x in prng.uniform(v["seed"], len(v["uniform_bits"])).view(np.uint32)]
        if words != v["words_hex"] or bits != v["uniform_bits"]:
            raise BundleCheckError(f"golden/rng.json: seed {v['seed']} does not match runtime "
                                   "prng (words or uniforms differ)")
    noise = _read_f32(b.file(files["noise"]["file"]), files["noise"])
    if np.abs(noise - prng.noise([case["seed"]], noise.shape[1:])).max() > 1e-6:
        raise BundleCheckError("golden/noise.f32 differs from prng.noise for the golden seed")
    lines.append("golden RNG vectors and noise match lrf.prng")
    target = get_target(b.target)
    if hasattr(target, "verify_bundle"):  # e.g. coreml: each package's spec vs the manifest
        lines += target.verify_bundle(b.path, b.manifest)
    backend = backend or target.backend
    if backend is None:
        lines.append(f"no runtime backend runs target {b.target!r} here: golden images not re-run")
        return "\n".join(lines)
    bar = float(golden["tolerances"]["image_psnr_db"])
    with Generator.load(b.path, backend=backend, verify=False) as gen:
        y = np.asarray([case["label"]], dtype=np.int32)
        g = np.asarray([case["guidance"]], dtype=np.float32)
        z = gen.sample_latents(noise, y, g, int(case["steps"]))
        ref_z = _read_f32(b.file(files["latent_final"]["file"]), files["latent_final"])
        zm = tensor_metrics(ref_z, z)
        runs = {"image_stepwise": gen.decode(z)[0]}
        fused_key = f"image_fused_{case['steps']}"
        if fused_key in files:
            runs[fused_key] = gen.generate(case["label"], case["seed"], steps=case["steps"],
                                           guidance=case["guidance"], mode="fused")
    lines.append(f"golden latent_final: max-abs {zm['max_abs']:.3g}")
    for key, img in runs.items():
        want = np.asarray(Image.open(b.file(files[key]["file"])).convert("RGB"))
        p = psnr(want, img)
        if p < bar:
            raise BundleCheckError(f"golden {key}: re-run gives {p:.2f} dB PSNR vs "
                                   f"{files[key]['file']}, below the {bar:.0f} dB bar")
        lines.append(f"golden {key}: {'identical' if p >= 100 else f'{p:.2f} dB PSNR'} "
                     f"(bar {bar:.0f} dB)")
    return "\n".join(lines)
