"""Runtime backends: a registry that fails loudly, and the interface every backend implements.

A backend runs one bundle target's graph files. Each lives in its own module and registers itself
with :func:`register_backend`; :data:`BACKEND_MODULES` tells :func:`get_backend` which module to
import for a name, so ``import lrf.runtime`` stays cheap and imports no inference engine.

Adding one (e.g. ExecuTorch): write ``runtime/backend_executorch.py`` with a :class:`Backend`
subclass decorated ``@register_backend("executorch")`` and add its module to
:data:`BACKEND_MODULES`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from lrf.runtime.manifest import GraphSpec
from lrf.runtime.registry import register_class

# name -> module that registers it (imported on first use only).
BACKEND_MODULES: dict[str, str] = {
    "onnxruntime": "lrf.runtime.backend_onnxruntime",
    "executorch": "lrf.runtime.backend_executorch",
}
_REGISTRY: dict[str, type["Backend"]] = {}


class Session:
    """One loaded graph. ``run`` takes and returns numpy arrays keyed by tensor name; inputs were
    already validated against the manifest by the caller."""

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the engine's resources (idempotent)."""


class Backend:
    """Opens graph files of the bundle ``targets`` it supports.

    ``thread_safe``: whether one Session may ``run`` from several threads at once; when False the
    :class:`~lrf.runtime.Generator` serialises calls with a lock.
    """

    name: str = ""
    targets: tuple[str, ...] = ()
    thread_safe: bool = False

    def __init__(self, threads: int | None = None, **options):
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)
                                    or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        self.threads = threads
        self.options = options

    def open(self, path: Path, spec: GraphSpec) -> Session:
        """Load the graph file at ``path`` described by ``spec`` and return a :class:`Session`."""
        raise NotImplementedError

    def version(self) -> str:
        """The engine's version string (recorded by benchmarks)."""
        return "unknown"

    def settings(self) -> dict:
        """The settings golden files made with this backend record (``golden.runtime``)."""
        return {"backend": self.name, "version": self.version(), "threads": self.threads}


def register_backend(name: str):
    """Class decorator: make a :class:`Backend` subclass available as ``name``."""
    return register_class(_REGISTRY, "backend", name)


def available_backends() -> list[str]:
    """Every backend name that :func:`get_backend` knows (installed or not)."""
    return sorted(set(BACKEND_MODULES) | set(_REGISTRY))


def get_backend(name: str) -> type[Backend]:
    """The backend class registered as ``name``; ValueError listing the valid names otherwise,
    or saying what to install when its engine is missing."""
    if name not in _REGISTRY and name in BACKEND_MODULES:
        try:
            importlib.import_module(BACKEND_MODULES[name])
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("lrf.runtime.backend_"):
                raise ValueError(f"backend {name!r} is not implemented in this lrf-mobile "
                                 f"version (no module {e.name}); available here: "
                                 f"{', '.join(sorted(_REGISTRY)) or 'none'}") from None
            raise ValueError(f"backend {name!r} needs the Python package {e.name!r}, which is "
                             f"not installed (for onnxruntime: pip install "
                             f"'lrf-mobile[runtime]')") from None
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; valid backends: "
                         f"{', '.join(available_backends())}")
    return _REGISTRY[name]
