"""Checkpoints: a folder of safetensors + JSON. No pickle anywhere.

    DIR/lrf.json           {"format", "config", "classes", "codec": {file, latent stats},
                            "sampling": {steps, guidance, shift}, "training": {...}}
    DIR/lrf.safetensors    the core's EMA weights (config repeated in the header metadata)
    DIR/codec.safetensors  the autoencoder + latent stats (see lrf.models.codec)

Loading is strict: missing or unexpected keys, wrong shapes, a config that differs between the
JSON and the weights' header, or codec stats that differ from the codec file are each rejected
with a message naming the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lrf.models.codec import CODEC_FILE, Codec, _load_strict
from lrf.models.config import LRFConfig
from lrf.models.lrf import LRFModel
from lrf.defaults import DEFAULT_MODEL
from lrf.digest import sha256_file  # one definition, shared with the runtime

CHECKPOINT_FORMAT = "lrf-checkpoint/1"
MANIFEST = "lrf.json"
WEIGHTS = "lrf.safetensors"
# the one default (lrf/defaults.py): the turbo student, whose prebuilt bundle is the default too
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / DEFAULT_MODEL
DEFAULT_SAMPLING = {"steps": 50, "guidance": 3.0, "shift": 1.0}


@dataclass
class Checkpoint:
    model: LRFModel
    codec: Codec
    classes: list[str]
    sampling: dict = field(default_factory=lambda: dict(DEFAULT_SAMPLING))
    training: dict = field(default_factory=dict)
    path: str | None = None

    @property
    def config(self) -> LRFConfig:
        return self.model.cfg

    def class_index(self, name_or_index: str | int) -> int:
        """A class name or index -> index; ValueError naming the valid classes otherwise."""
        text = str(name_or_index)
        if isinstance(name_or_index, int) or (text.isascii() and text.isdigit() and
                                              len(text) <= 6):   # not "²", not 5,001 digits
            i = int(name_or_index)
            if 0 <= i < len(self.classes):
                return i
        elif name_or_index in self.classes:
            return self.classes.index(name_or_index)
        shown = repr(text[:40]) + ("..." if len(text) > 40 else "")
        raise ValueError(f"unknown class {shown}; valid: {', '.join(self.classes)} "
                         f"(or an index 0-{len(self.classes) - 1})")


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """One digest for a checkpoint folder: sha256 over its three files' digests, in order."""
    h = hashlib.sha256()
    for name in (MANIFEST, WEIGHTS, CODEC_FILE):
        h.update(f"{name}:{sha256_file(os.path.join(path, name))}\n".encode())
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, model: LRFModel, codec: Codec, classes: list[str],
                    sampling: dict | None = None, training: dict | None = None,
                    state_dict: dict | None = None) -> None:
    """Write a checkpoint folder atomically (temp folder, then rename). ``state_dict`` overrides
    the model's own weights (pass the EMA weights)."""
    from safetensors.torch import save_file

    path = Path(path)
    cfg = model.cfg
    if len(classes) != cfg.num_classes:
        raise ValueError(f"{len(classes)} class names for a model with {cfg.num_classes} classes")
    sd = state_dict if state_dict is not None else model.state_dict()
    sd = {k: v.detach().float().contiguous().cpu() for k, v in sd.items()}
    manifest = {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "classes": list(classes),
                "codec": {"file": CODEC_FILE, **codec.stats_dict()},
                "sampling": {**DEFAULT_SAMPLING, **(sampling or {})},
                "training": training or {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file(sd, tmp / WEIGHTS, metadata={"format": CHECKPOINT_FORMAT,
                                               "config": json.dumps(cfg.to_dict())})
        codec.save_file(str(tmp / CODEC_FILE))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if path.exists():
            old = path.with_name(f".{path.name}.old{os.getpid()}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_checkpoint(path: str | os.PathLike | None = None) -> Checkpoint:
    """Load a checkpoint folder (default: ``DEFAULT_CHECKPOINT``, the shipped turbo student); the
    model comes in eval mode."""
    from safetensors import safe_open

    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {str(path)!r} is not a directory holding "
                                f"{MANIFEST}, {WEIGHTS} and {CODEC_FILE}")
    for name in (MANIFEST, WEIGHTS, CODEC_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"checkpoint {str(path)!r} lacks {name}")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path / MANIFEST}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise ValueError(f"{path / MANIFEST}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path / MANIFEST}: format {manifest.get('format')!r}, expected "
                         f"{CHECKPOINT_FORMAT!r}")
    if not isinstance(manifest.get("config"), dict):
        raise ValueError(f"{path / MANIFEST}: config: expected an object of LRFConfig fields, got "
                         f"{manifest.get('config')!r}")
    sampling = manifest.get("sampling", {})
    if not isinstance(sampling, dict):
        raise ValueError(f"{path / MANIFEST}: sampling: expected an object, got {sampling!r}")
    for key, kind in (("steps", int), ("guidance", (int, float)), ("shift", (int, float))):
        v = sampling.get(key, DEFAULT_SAMPLING[key])
        if not isinstance(v, kind) or isinstance(v, bool) or not v == v or (key != "guidance" and v <= 0):
            raise ValueError(f"{path / MANIFEST}: sampling.{key}: expected a positive "
                             f"{'integer' if kind is int else 'number'}, got {v!r}")
    cfg = LRFConfig.from_dict(manifest["config"])
    try:
        with safe_open(str(path / WEIGHTS), framework="pt") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise ValueError(f"{path / WEIGHTS}: not a readable safetensors file ({e})") from e
    header_cfg = json.loads(meta.get("config", "{}"))
    for k, v in cfg.to_dict().items():
        if k in header_cfg and header_cfg[k] != v:
            raise ValueError(f"config mismatch for key {k!r}: {v!r} in {MANIFEST} but "
                             f"{header_cfg[k]!r} in {WEIGHTS}")
    model = LRFModel.from_lrf_config(cfg)
    _load_strict(model, sd, where=str(path / WEIGHTS))
    model.eval()
    codec = Codec.load_file(str(path / CODEC_FILE)).eval()
    stats = codec.stats_dict()
    for key in ("latent_mean", "latent_std"):
        want = manifest.get("codec", {}).get(key)
        if want is not None and not torch.allclose(torch.tensor(want), torch.tensor(stats[key])):
            raise ValueError(f"codec stats mismatch for key {key!r}: {MANIFEST} says {want}, "
                             f"{CODEC_FILE} holds {stats[key]}")
    if codec.latent_channels != cfg.latent_channels:
        raise ValueError(f"codec has {codec.latent_channels} latent channels, the model "
                         f"{cfg.latent_channels}")
    classes = manifest.get("classes") or [str(i) for i in range(cfg.num_classes)]
    if len(classes) != cfg.num_classes:
        raise ValueError(f"{MANIFEST}: {len(classes)} class names for {cfg.num_classes} classes")
    return Checkpoint(model=model, codec=codec, classes=list(classes),
                      sampling={**DEFAULT_SAMPLING, **manifest.get("sampling", {})},
                      training=manifest.get("training", {}), path=str(path))
