"""Export targets: a registry that fails loudly, and the interface a target implements.

A target turns the wrapper graphs (``lrf.exporter.wrappers``) into files in a bundle folder and
describes them with :class:`GraphRecord`s. Everything else (calibration data, the manifest, the
parity gate, golden files, the atomic write) is shared and lives in ``lrf.exporter``.

Adding a target (e.g. Core ML): write ``exporter/targets/coreml.py``::

    @register_target("coreml")
    class CoreMLTarget(Target):
        backend = None                 # no lrf.runtime backend can run .mlpackage on Linux
        def export(self, ctx): ...     # write files into ctx.out_dir, return {name: GraphRecord}
        def simulated_parity(self, ctx, records): ...   # only when backend is None

and add its module to :data:`TARGET_MODULES`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lrf.exporter.calibration import Trajectories
from lrf.models.checkpoint import Checkpoint

# name -> module that registers it (imported on first use).
TARGET_MODULES: dict[str, str] = {
    "onnx": "lrf.exporter.targets.onnx",
    "coreml": "lrf.exporter.targets.coreml",
    "executorch": "lrf.exporter.targets.executorch",
}
_REGISTRY: dict[str, type["Target"]] = {}


@dataclass
class GraphRecord:
    """One exported graph as the manifest describes it (``runtime/BUNDLE.md`` graph entry).

    ``file`` is relative to the bundle; ``inputs``/``outputs`` are tensor dicts (see
    :func:`lrf.exporter.wrappers.graph_io`); ``quantization`` is ``{"method": "none"}`` for
    float graphs; ``extra`` is merged into the entry (e.g. ``{"opset": 18}``).
    """

    name: str
    file: str
    format: str
    inputs: list[dict]
    outputs: list[dict]
    steps: int | None = None
    quantization: dict = field(default_factory=lambda: {"method": "none"})
    extra: dict = field(default_factory=dict)

    def to_manifest(self) -> dict:
        d = {"file": self.file, "format": self.format, **self.extra,
             "inputs": self.inputs, "outputs": self.outputs, "quantization": self.quantization}
        if self.steps is not None:
            d["steps"] = self.steps
        return d


@dataclass
class ExportContext:
    """What a target gets. ``graphs``: wrapper modules by graph name (``step``, ``decoder``,
    ``generator_<N>``); ``calibration``: trajectories at all timesteps for int8 calibration;
    ``selection``: held-out trajectories for choosing between int8 variants;
    ``options``: target-specific options from the CLI."""

    ckpt: Checkpoint
    graphs: dict[str, torch.nn.Module]
    out_dir: Path
    precision: str
    fused_steps: list[int]
    latent_size: int
    calibration: Trajectories | None = None
    selection: Trajectories | None = None
    options: dict = field(default_factory=dict)
    log: Callable[[str], None] = print
    # parity reference trajectories by step count (for targets measuring parity themselves)
    references: dict[int, Trajectories] | None = None


class Target:
    """Base class. ``backend``: the ``lrf.runtime`` backend that runs this target's files (the
    parity gate and golden files go through it); None when no backend can run them here, in which
    case :meth:`simulated_parity` must measure parity another way and say so."""

    name: str = ""
    backend: str | None = None
    precisions: tuple[str, ...] = ("fp32", "int8")
    image_format: str = "uint8_nhwc"

    def export(self, ctx: ExportContext) -> dict[str, GraphRecord]:
        """Write every graph of ``ctx.graphs`` into ``ctx.out_dir``; return their records."""
        raise NotImplementedError

    def simulated_parity(self, ctx: ExportContext, records: dict[str, GraphRecord]) -> dict:
        """Per-graph parity dicts when ``backend`` is None (labelled as simulated)."""
        raise NotImplementedError(f"target {self.name!r} has no runtime backend and no "
                                  "simulated parity")

    def verify_bundle(self, bundle_dir: Path, manifest: dict) -> list[str]:
        """Target-specific checks for ``lrf-export --check`` (e.g. each file's own spec against
        the manifest); report lines, raising ValueError on a mismatch. Default: none."""
        return []

    def tool_versions(self) -> dict[str, str]:
        """Versions of the tools this target used, for the manifest's ``tools``."""
        return {}

    def default_fused_steps(self, default_steps: int, precision: str) -> set[int]:
        """The N values that get a ``generator_<N>`` graph when ``--steps`` is not given."""
        return {8, default_steps}


@contextlib.contextmanager
def quiet(*loggers: str, stderr: bool = False):
    """Silence what exporters print on every graph (progress, version notes, deprecations; none
    is actionable): ``loggers`` at ERROR, warnings ignored, stdout (and ``stderr`` if asked)
    swallowed. Exceptions still propagate."""
    logs = [logging.getLogger(n) for n in loggers]
    levels = [lg.level for lg in logs]
    for lg in logs:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.ExitStack() as stack:
            warnings.simplefilter("ignore")
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            if stderr:
                stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
            yield
    finally:
        for lg, lv in zip(logs, levels):
            lg.setLevel(lv)


def register_target(name: str):
    """Class decorator: make a :class:`Target` subclass available as ``name``."""
    def deco(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"target {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return deco


def available_targets() -> list[str]:
    """Target names whose implementation is present in this install."""
    found = set(_REGISTRY)
    for name, mod in TARGET_MODULES.items():
        if importlib.util.find_spec(mod) is not None:
            found.add(name)
    return sorted(found)


def get_target(name: str) -> Target:
    """A new instance of the target registered as ``name``; ValueError listing the valid ones."""
    if name not in _REGISTRY and name in TARGET_MODULES and name in available_targets():
        importlib.import_module(TARGET_MODULES[name])
    if name not in _REGISTRY:
        raise ValueError(f"unknown export target {name!r}; valid targets: "
                         f"{', '.join(available_targets())}")
    return _REGISTRY[name]()
