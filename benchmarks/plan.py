"""What ``lrf-bench`` runs: the configurations, and which bundle serves each.

A *variant* is a runtime backend with a bundle family (target + precision), or the PyTorch eager
reference. Each variant runs at every requested resolution, step count, mode and batch. The
bundle for (target, precision, latent size) is an explicit ``--bundle`` with that manifest, or
one exported from the checkpoint through ``lrf.exporter`` into the bench's cache (never into the
repository): the step and fused graphs have a fixed latent size, so each resolution needs its own.
The parent process reads only JSON here (no torch, no runtime engine).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

from lrf.defaults import DEFAULT_MODEL

# Bundle target -> the lrf.runtime backend that runs it on this machine.
TARGET_BACKENDS = {"onnx": "onnxruntime", "executorch": "executorch"}
# Targets whose files no backend can run on Linux: refused with the reason.
NOT_RUNNABLE = {"coreml": "Core ML models run only on Apple platforms (macOS/iOS)"}
# Targets whose denoise graph has a fixed window (no loop they can delegate): no fused row.
NO_FUSED = {"executorch": "executorch bundles' denoise graph has a fixed window (the runtime "
                          "calls it N / K times): see the stepwise row"}
PRECISIONS = ("fp32", "int8")
MODES = ("fused", "stepwise")
PYTORCH = "pytorch"
# The codec is TAESD-shaped: 8x8 pixels per latent cell (runtime/BUNDLE.md, image vs latent).
SCALE = 8
# Settings for bundles the bench exports itself: these exist to measure cost, so the parity gate
# runs on a few cases and the class-fidelity check (minutes of sampling) is skipped. At the trained
# size calibration keeps the exporter's default (it decides which int8 variant, hence which cost,
# ships). At other sizes it uses 4 trajectories: onnxruntime's static calibration keeps every
# activation of every sample, and 32 trajectories at latent 64 (512 px) took 23 GB before the
# kernel's OOM killer stopped it on the 24 GB development machine.
EXPORT_SETTINGS = {"parity_images": 4, "calibration_images": 32, "fidelity_images": 0}
UNTRAINED_SIZE_CALIBRATION_IMAGES = 4
# ... and ONNX int8 builds one variant there instead of scoring three on held-out trajectories
# (about 20 minutes per candidate at 512 px on 2 cores): the one the shipped cifar10 int8 bundle
# chose for its decoder and encoder at the trained size (its manifest:
# graphs.decoder.quantization.variant), so the sweep measures the cost of the shipped recipe.
UNTRAINED_SIZE_ONNX_INT8_VARIANT = "static_qdq"


def default_checkpoint() -> Path:
    """The default checkpoint folder (``lrf.models.checkpoint.DEFAULT_CHECKPOINT``, named by
    ``lrf.defaults.DEFAULT_MODEL``), located without importing torch."""
    models = importlib.util.find_spec("lrf.models")
    return Path(list(models.submodule_search_locations)[0]) / "weights" / DEFAULT_MODEL


def repo_root() -> Path | None:
    """The source checkout this package runs from (editable install), if any."""
    root = Path(importlib.util.find_spec("lrf").origin).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    latent_size: int
    steps: int
    guidance: float


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Defaults from a checkpoint's ``lrf.json`` (latent size, steps, guidance)."""
    f = Path(path) / "lrf.json"
    if not f.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} has no lrf.json; pass --checkpoint DIR "
                                "(a folder written by lrf-train) or --bundle DIR")
    m = json.loads(f.read_text())
    s = m.get("sampling", {})
    return CheckpointInfo(str(path), int(m["config"]["latent_size"]), int(s.get("steps", 50)),
                          float(s.get("guidance", 3.0)))


@dataclass(frozen=True)
class BundleInfo:
    path: str
    target: str
    precision: str
    latent_size: int
    resolution: int
    window_max: int | None       # denoise steps per call; None: any (an ONNX Loop)
    checkpoint: str | None
    default_steps: int
    guidance_distilled: bool = False


def read_bundle_info(path: str | Path) -> BundleInfo:
    """What the bench needs from a bundle's ``manifest.json`` (no checksum pass: the child's
    ``Generator.load`` verifies every file, and that cost is part of its load time)."""
    m_path = Path(path) / "manifest.json"
    if not m_path.is_file():
        raise FileNotFoundError(f"--bundle {str(path)!r} has no manifest.json; make one with "
                                "lrf-export")
    m = json.loads(m_path.read_text())
    try:
        latent = int(m["latent"]["height"])
        return BundleInfo(str(path), m["target"], m.get("precision", "fp32"), latent,
                          int(m.get("image", {}).get("height", latent * SCALE)),
                          m["graphs"]["denoise"].get("window", {}).get("max"),
                          _source_checkpoint(m.get("source_checkpoint", {}).get("path")),
                          int(m["sampling"]["steps"]),
                          bool(m.get("model", {}).get("guidance_distilled")))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"--bundle {str(path)!r}: manifest.json lacks {e}; re-export it") from None


def _source_checkpoint(path) -> str | None:
    """A manifest's ``source_checkpoint.path``: exports record it relative to the project (or
    by name alone), so a relative one that is not there from here is looked up in the checkout."""
    if not isinstance(path, str) or not path or Path(path).is_absolute() or Path(path).exists():
        return path if isinstance(path, str) else None
    root = repo_root()
    return str(root / path) if root is not None and (root / path).exists() else path


@dataclass(frozen=True)
class Variant:
    backend: str                 # "pytorch" or an lrf.runtime backend name
    target: str | None           # bundle target; None for pytorch
    precision: str
    turbo: bool = False          # a guidance-distilled bundle: runs at its own default steps

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}" + (" turbo" if self.turbo else "")


@dataclass
class Config:
    variant: Variant
    resolution: int
    steps: int
    mode: str                    # fused | stepwise | eager (pytorch)
    batch: int
    bundle: str | None = None    # resolved bundle folder (runtime variants)
    skip: tuple[str, str] | None = None   # (status, reason) when it cannot run
    probe: bool = False          # part of the largest-batch search, not the main table
    extra: dict = field(default_factory=dict)

    @property
    def latent_size(self) -> int:
        return self.resolution // SCALE

    @property
    def name(self) -> str:
        return (f"{self.variant.label} {self.mode} N={self.steps} {self.resolution}px "
                f"B={self.batch}")

    def slot(self) -> tuple:
        return (self.variant.target, self.variant.precision, self.latent_size, self.variant.turbo)


def variants_for(targets: list[str], precisions: list[str],
                 bundles: list[BundleInfo]) -> list[Variant]:
    """Runtime variants: the --bundle manifests' (target, precision) and targets x precisions."""
    out: list[Variant] = []
    pairs = [(b.target, b.precision, b.guidance_distilled) for b in bundles] + \
        [(t, p, False) for t in targets for p in precisions]
    for t, p, turbo in pairs:
        v = Variant(TARGET_BACKENDS.get(t, t), t, p, turbo)
        if v not in out:
            out.append(v)
    return out


def build_plan(variants: list[Variant], bundles: list[BundleInfo], resolutions: list[int],
               steps: list[int], modes: list[str], batches: list[int],
               baseline: bool) -> list[Config]:
    """Every configuration, the PyTorch rows first at each (resolution, steps)."""
    by_slot = {(b.target, b.precision, b.latent_size, b.guidance_distilled): b for b in bundles}
    plan = []
    for res in resolutions:
        for n in steps:
            for b in batches:
                if baseline:
                    plan.append(Config(Variant(PYTORCH, None, "fp32"), res, n, "eager", b))
                for v in variants:
                    for mode in modes:
                        c = Config(v, res, n, mode, b)
                        have = by_slot.get(c.slot())
                        if v.turbo:   # only at its own default steps, once per (res, batch)
                            if have is None or n != steps[0]:
                                continue
                            c.steps = have.default_steps
                        if have is None and mode == "fused" and v.target in NO_FUSED:
                            c.skip = ("skipped", NO_FUSED[v.target])
                        if have is not None:
                            c.bundle = have.path
                            if mode == "fused" and have.window_max is not None:
                                c.skip = ("skipped", f"bundle {have.path}: its denoise graph "
                                          f"takes at most {have.window_max} step(s) per call; "
                                          "see the stepwise row")
                        plan.append(c)
    return plan


def export_requests(plan: list[Config], steps: list[int], trained_latent: int) -> list[dict]:
    """The bundles the bench must export (slots with no explicit --bundle), each with the
    exporter settings it gets (:data:`EXPORT_SETTINGS`)."""
    seen, reqs = set(), []
    for c in plan:
        if c.variant.target is None or c.bundle is not None or c.skip is not None:
            continue
        if c.slot() not in seen:
            seen.add(c.slot())
            t, p, s, _ = c.slot()
            settings = dict(EXPORT_SETTINGS)
            if s != trained_latent:
                settings["calibration_images"] = UNTRAINED_SIZE_CALIBRATION_IMAGES
                if (t, p) == ("onnx", "int8"):
                    settings["options"] = {"int8_variant": UNTRAINED_SIZE_ONNX_INT8_VARIANT}
            reqs.append({"key": f"{t}/{p}/{s}", "target": t, "precision": p, "latent_size": s,
                         "steps": [] if t in NO_FUSED else sorted(set(steps)),
                         "backend": c.variant.backend,
                         "settings": settings})
    return reqs


def apply_exports(plan: list[Config], results: list[dict], missing: str) -> None:
    """Point each configuration at its exported bundle, or mark why it has none (``missing``:
    the reason when the export reported nothing for it)."""
    by_key = {r["key"]: r for r in results}
    for c in plan:
        if c.variant.target is None or c.bundle is not None or c.skip is not None:
            continue
        t, p, s, _ = c.slot()
        r = by_key.get(f"{t}/{p}/{s}")
        if r is None:
            c.skip = ("failed", missing)
        elif r["status"] in ("cached", "exported"):
            c.bundle = r["path"]
        elif r["status"] == "not_available":
            c.skip = ("not_available", f"target not available: {r['message']}")
        else:
            c.skip = ("failed", f"export failed: {r.get('message')}")
