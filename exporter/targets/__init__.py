"""Export targets: a registry that fails loudly, and the interface a target implements.

A target turns the wrapper graphs (``lrf.exporter.wrappers``) into files in a bundle folder and
describes them with :class:`GraphRecord`s. Everything else (calibration data, the manifest, the
parity gate, golden files, the atomic write) is shared and lives in ``lrf.exporter``.

Adding a target (e.g. Core ML): write ``exporter/targets/coreml.py``::

    @register_target("coreml")
    class CoreMLTarget(Target):
        backend = None                 # no lrf.runtime backend can run .mlpackage on Linux
        def export(self, ctx): ...     # write files into ctx.out_dir, return {name: GraphRecord}
        def parity_runner(self, ctx, records, gen): ...  # only when backend is None

and add its module to :data:`TARGET_MODULES` and the Python packages it needs to
:data:`TARGET_REQUIRES` (a target whose packages do not import is not available).
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
from typing import TYPE_CHECKING

from lrf.runtime.registry import register_class

if TYPE_CHECKING:  # the registry imports without torch: lrf-export --check runs without it
    import torch

    from lrf.exporter.calibration import Trajectories
    from lrf.models.checkpoint import Checkpoint

# name -> module that registers it (imported on first use).
TARGET_MODULES: dict[str, str] = {
    "onnx": "lrf.exporter.targets.onnx",
    "coreml": "lrf.exporter.targets.coreml",
    "executorch": "lrf.exporter.targets.executorch",
}
# name -> the Python packages its export needs (all must import for the target to be available)
TARGET_REQUIRES: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "onnxscript", "onnxruntime"),
    "coreml": ("coremltools",),
    "executorch": ("executorch", "torchao"),
}
# name -> the lrf.runtime backend that runs its files (None: none can, here); each Target class
# says the same in its ``backend`` (tests/test_torch_free.py checks they agree). Read without
# importing the target, so checking a bundle needs neither torch nor the export tools.
TARGET_BACKENDS: dict[str, str | None] = {
    "onnx": "onnxruntime",
    "coreml": None,
    "executorch": "executorch",
}
INSTALL_HINT = "pip install 'lrf-mobile[export]'"
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
    """What a target gets. ``graphs``: wrapper modules by graph name (``denoise``, ``decoder``,
    ``encoder``); ``calibration``: trajectories at all timesteps for int8 calibration (its
    ``encoder_feeds`` are the images the encoder is calibrated on); ``selection``: held-out
    trajectories for choosing between int8 variants; ``options``: target-specific options from
    the CLI; ``references``: the parity reference trajectories by step count."""

    ckpt: Checkpoint
    graphs: dict[str, torch.nn.Module]
    out_dir: Path
    precision: str
    latent_size: int
    calibration: Trajectories | None = None
    selection: Trajectories | None = None
    options: dict = field(default_factory=dict)
    log: Callable[[str], None] = print
    references: dict[int, Trajectories] | None = None


class Target:
    """Base class. ``backend``: the ``lrf.runtime`` backend that runs this target's files (the
    parity gate and golden files go through it); None when no backend can run them here, in which
    case :meth:`parity_runner` must return a simulation of the files that says so."""

    name: str = ""
    backend: str | None = None
    precisions: tuple[str, ...] = ("fp32", "int8")
    image_format: str = "uint8_nhwc"

    def export(self, ctx: ExportContext) -> dict[str, GraphRecord]:
        """Write every graph of ``ctx.graphs`` into ``ctx.out_dir``; return their records."""
        raise NotImplementedError

    def parity_runner(self, ctx: ExportContext, records: dict[str, GraphRecord], gen):
        """What the parity gate measures (a :class:`lrf.exporter.parity.Runner`): ``gen``, the
        bundle loaded in ``lrf.runtime``, or for targets without a backend (``gen`` None) a
        simulation of the written files."""
        from lrf.exporter.parity import RuntimeRunner

        if gen is None:
            raise NotImplementedError(f"target {self.name!r} has no runtime backend and no "
                                      "simulation for the parity gate")
        return RuntimeRunner(gen)

    def verify_bundle(self, bundle_dir: Path, manifest: dict) -> list[str]:
        """Target-specific checks for ``lrf-export --check`` (e.g. each file's own spec against
        the manifest); report lines, raising ValueError on a mismatch. Default: none."""
        return []

    def tool_versions(self) -> dict[str, str]:
        """Versions of the tools this target used, for the manifest's ``tools``."""
        return {}



GRAPHS = ("denoise", "decoder", "encoder")


def package_version(dist: str) -> str:
    """The installed version of distribution ``dist``, or "not installed"."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def window_entry(k: int) -> dict:
    """The manifest's ``denoise.window`` for a graph that takes exactly ``k`` steps per call
    (targets that cannot delegate a loop, BUNDLE.md 2.2)."""
    return {"min": k, "max": k}


def fixed_graph(ctx: ExportContext, name: str, batch: int, window: int,
                image_format: str) -> tuple[list[dict], list[dict], tuple]:
    """(manifest inputs, outputs, example inputs) of graph ``name`` at fixed shapes: batch
    ``batch``, the export's latent size and a ``window``-step denoise window (the wrapper
    traces that many steps)."""
    from lrf.exporter.wrappers import example_inputs, graph_io

    inputs, outputs = graph_io(name, ctx.ckpt, ctx.latent_size, dynamic_batch=False,
                               dynamic_decoder_hw=False, batch=batch, image_format=image_format,
                               window=window)
    example = example_inputs(name, ctx.ckpt, batch=batch, latent_size=ctx.latent_size,
                             window=window, image_format=image_format)
    return inputs, outputs, tuple(t.contiguous() for t in example)  # exporters need C order


def fixed_batch(options: dict, target: str) -> int:
    """``options["batch"]``: the one batch size of every graph of a fixed-shape target."""
    b = options.get("batch")
    b = 1 if b is None else b
    if not isinstance(b, int) or isinstance(b, bool) or b < 1:
        raise ValueError(f"{target} batch must be an integer >= 1, got {b!r}")
    return b


def fixed_window(options: dict) -> int:
    """``options["window"]``: the steps of one denoise call for fixed-window targets (default
    1, which serves every N)."""
    k = options.get("window")
    k = 1 if k is None else k
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"denoise window must be an integer >= 1, got {k!r}")
    return k


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
    return register_class(_REGISTRY, "target", name)


def missing_dependency(name: str) -> str | None:
    """None when target ``name``'s Python packages import, else the first one that does not
    (with why). Each package is imported once per process."""
    for package in TARGET_REQUIRES.get(name, ()):
        if package not in _IMPORTABLE:
            try:
                with quiet(package, stderr=True):   # import-time version notes, not actionable
                    importlib.import_module(package)
                _IMPORTABLE[package] = None
            except ImportError as e:  # missing, or present but unloadable (a broken install)
                _IMPORTABLE[package] = f"{type(e).__name__}: {e}"
        if _IMPORTABLE[package] is not None:
            return f"{package} ({_IMPORTABLE[package]})"
    return None


_IMPORTABLE: dict[str, str | None] = {}


def known_targets() -> list[str]:
    """Every target name this lrf-mobile version knows, installed or not."""
    return sorted(set(TARGET_MODULES) | set(_REGISTRY))


def available_targets() -> list[str]:
    """Target names that can export in this install: implementation present and every
    package in :data:`TARGET_REQUIRES` importable."""
    return [n for n in known_targets()
            if (n in _REGISTRY or importlib.util.find_spec(TARGET_MODULES[n]) is not None)
            and missing_dependency(n) is None]


def why_unavailable(name: str) -> str:
    """Why target ``name`` is not in :func:`available_targets` (one phrase)."""
    missing = missing_dependency(name)
    if missing is not None:
        return f"needs the Python package {missing}; {INSTALL_HINT}"
    return f"its module {TARGET_MODULES.get(name)} is not in this install"


def get_target(name: str) -> Target:
    """A new instance of the target registered as ``name``; ValueError listing the valid ones,
    or naming the package to install when the target's dependencies do not import."""
    if name not in known_targets():
        raise ValueError(f"unknown export target {name!r}; valid targets: "
                         f"{', '.join(known_targets())}")
    missing = missing_dependency(name)
    if missing is not None:
        raise ValueError(f"export target {name!r} needs the Python package {missing}; install "
                         f"it ({INSTALL_HINT}) or choose another target")
    if name not in _REGISTRY:
        importlib.import_module(TARGET_MODULES[name])
    return _REGISTRY[name]()
