"""Bundle writing, shared by every target: the manifest builder, the file table (size + sha256),
tool versions, and the atomic commit (temporary folder, then one rename)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

from lrf.exporter.targets import GraphRecord, Target
from lrf.models.checkpoint import Checkpoint, checkpoint_sha256
from lrf.models.lrf import count_parameters
from lrf import prng
from lrf.digest import sha256_file
from lrf.runtime import MANIFEST, SCHEMA, SCHEMA_VERSION, scheduler


def temp_dir_for(out: Path) -> Path:
    """A fresh temporary folder beside ``out`` (same filesystem, so the final rename is atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))


def file_table(bundle_dir: Path) -> dict[str, dict]:
    """Every file under ``bundle_dir`` except the manifest: relative path -> size, sha256."""
    table = {}
    for p in sorted(bundle_dir.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            rel = p.relative_to(bundle_dir).as_posix()
            table[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    return table


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
                   records: dict[str, GraphRecord], fused_steps: list[int], latent_size: int,
                   timestep_counts: list[int]) -> dict:
    """The manifest (``runtime/BUNDLE.md``) without ``parity``, ``golden`` and ``files``, which
    :func:`finish_manifest` adds once they are measured and written."""
    cfg = ckpt.config
    f = ckpt.codec.scale_factor
    shift = float(ckpt.sampling.get("shift", 1.0))
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "target": target.name,
        "precision": precision,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": "LatentRecurrentFlow", "config": cfg.to_dict(),
                  "parameters": count_parameters(ckpt.model)},
        "source_checkpoint": {"path": str(ckpt.path), "sha256": checkpoint_sha256(ckpt.path)},
        "classes": list(ckpt.classes),
        "null_class": cfg.null_class,
        "latent": {"channels": cfg.latent_channels, "height": latent_size, "width": latent_size},
        "image": {"height": latent_size * f, "width": latent_size * f, "channels": 3,
                  "format": target.image_format, "color": "RGB"},
        "codec": {"type": "taesd-autoencoder-tiny", "scale_factor": f,
                  "latent_channels": ckpt.codec.latent_channels, **ckpt.codec.stats_dict()},
        "sampling": {"steps": int(ckpt.sampling["steps"]),
                     "guidance": float(ckpt.sampling["guidance"]), "shift": shift},
        "scheduler": {**scheduler.SPEC, "shift": shift,
                      "timesteps": {str(n): [float(t) for t in scheduler.timesteps(n, shift)]
                                    for n in sorted(set(timestep_counts))}},
        "fused_steps": sorted(fused_steps),
        "rng": dict(prng.SPEC),
        "graphs": {name: r.to_manifest() for name, r in records.items()},
        "tools": tool_versions(target),
    }


def write_manifest(bundle_dir: Path, manifest: dict) -> None:
    """Refresh ``files`` from the folder's contents and write ``manifest.json`` (strict JSON)."""
    manifest["files"] = file_table(bundle_dir)
    text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    tmp = bundle_dir / f".{MANIFEST}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, bundle_dir / MANIFEST)


def commit(tmp: Path, out: Path) -> None:
    """Move the finished bundle into place with one rename. An existing bundle at ``out`` is
    replaced; anything else there is refused."""
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a bundle is meant to be shared
    if out.exists():
        if not (out / MANIFEST).is_file():
            raise FileExistsError(f"{out} exists and is not a bundle; choose another --out or "
                                  "remove it")
        old = out.with_name(f".{out.name}.old{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)
