"""Bundle writing, shared by every target: the schema v2 manifest builder, the file table (size +
sha256), tool versions, and the atomic commit (temporary folder, then one rename)."""

from __future__ import annotations

import datetime
import json
import os
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from lrf.exporter import outdir
from lrf.exporter.targets import GraphRecord, Target
from lrf.models.checkpoint import Checkpoint, checkpoint_sha256
from lrf.models.lrf import count_parameters
from lrf import prng
from lrf.digest import sha256_file
from lrf.runtime import MANIFEST, SCHEMA, SCHEMA_VERSION, GraphSpec, scheduler
from lrf.runtime.schema import check_manifest


def temp_dir_for(out: Path) -> Path:
    """A fresh temporary folder beside ``out`` (same filesystem, so the final rename is atomic);
    temporaries of killed exports are swept first (``exporter/outdir.py``)."""
    return outdir.make_temp(out)


def file_table(bundle_dir: Path) -> dict[str, dict]:
    """Every file under ``bundle_dir`` except the manifest: relative path -> size, sha256."""
    table = {}
    for p in sorted(bundle_dir.rglob("*")):
        rel = p.relative_to(bundle_dir).as_posix()
        if p.is_file() and rel != MANIFEST:
            table[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    return table


def checkpoint_label(path) -> str:
    """``source_checkpoint.path`` as a bundle records it: relative to the project checkout when
    the checkpoint lies inside it (``models/weights/cifar10-turbo``), else the folder's name
    alone, so a manifest never carries the exporting machine's absolute paths."""
    p = Path(path).resolve()
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file():
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            pass
    return p.name


def tool_versions(target: Target) -> dict[str, str]:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for dist in ("torch", "diffusers", "lrf-mobile"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    versions.update(target.tool_versions())
    return versions


def build_manifest(ckpt: Checkpoint, target: Target, precision: str,
                   records: dict[str, GraphRecord], latent_size: int,
                   timestep_counts: list[int], mode: str = "fused") -> dict:
    """The schema v2 manifest (``runtime/BUNDLE.md``) without ``parity``, ``golden`` and
    ``files``, which the export adds once they are measured and written. ``records`` carry each
    graph's tensors with their roles (and ``window`` for ``denoise``, in ``extra``);
    ``timestep_counts``: the N whose schedules are listed; ``mode``: ``sampling.mode``."""
    cfg = ckpt.config
    f = ckpt.codec.scale_factor
    shift = float(ckpt.sampling.get("shift", 1.0))
    return {
        "schema": SCHEMA,
        # class bundles stay v2 (unchanged); prompts and RGBA need v3 (BUNDLE.md section 11)
        "schema_version": SCHEMA_VERSION if cfg.text_dim else 2,
        "target": target.name,
        "precision": precision,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": "LatentRecurrentFlow", "config": cfg.to_dict(),
                  "parameters": count_parameters(ckpt.model),
                  "guidance_distilled": bool(cfg.guidance_embed)},
        "source_checkpoint": {"path": checkpoint_label(ckpt.path),
                              "sha256": checkpoint_sha256(ckpt.path)},
        "classes": list(ckpt.classes),
        "null_class": cfg.null_class,
        "latent": {"channels": cfg.latent_channels, "height": latent_size, "width": latent_size},
        "image": {"height": latent_size * f, "width": latent_size * f, "channels": 3,
                  "format": target.image_format, "color": "RGB"},
        "codec": {"type": "taesd-autoencoder-tiny", "scale_factor": f,
                  "latent_channels": ckpt.codec.latent_channels, **ckpt.codec.stats_dict()},
        "sampling": {"steps": int(ckpt.sampling["steps"]),
                     "guidance": float(ckpt.sampling["guidance"]), "shift": shift, "mode": mode},
        "scheduler": {**scheduler.SPEC, "shift": shift,
                      "timesteps": {str(n): [float(t) for t in scheduler.timesteps(n, shift)]
                                    for n in sorted(set(timestep_counts))}},
        "rng": dict(prng.SPEC),
        "graphs": {name: {"external_data": [], **r.to_manifest()}
                   for name, r in records.items()},
        "tools": tool_versions(target),
    }


def seeds_json(seeds) -> list[str]:
    """Seeds as the manifest writes them: decimal strings (uint64 survives every JSON parser)."""
    return [str(int(s)) for s in seeds]


def write_manifest(bundle_dir: Path, manifest: dict) -> None:
    """Refresh ``files`` from the folder's contents, run the runtime's schema check on the
    result (an exporter bug fails here, not in an app) and write ``manifest.json`` (strict
    JSON, temporary file then rename)."""
    manifest["files"] = file_table(bundle_dir)
    check_manifest(manifest)
    from lrf.runtime.manifest import graph_roles

    for name, entry in manifest["graphs"].items():
        GraphSpec.from_dict(name, entry, graph_roles(manifest))
    text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    tmp = bundle_dir / f".{MANIFEST}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, bundle_dir / MANIFEST)


def commit(tmp: Path, out: Path) -> None:
    """Move the finished bundle into place. An existing bundle at ``out`` is replaced only when
    it holds nothing but the files its manifest lists; anything else there is refused
    (``exporter/outdir.py``)."""
    outdir.replace(tmp, out)
