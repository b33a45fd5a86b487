"""``Generator``: images from a bundle with numpy and a runtime backend; never imports torch.

    with Generator.load("bundles/cifar10-onnx-int8") as gen:
        img = gen.generate("cat", seed=0)                 # uint8 [32, 32, 3]
        img = gen.generate(3, seed=0, steps=20, mode="stepwise", on_step=print_progress)

Thread-safety: a Generator keeps no per-call state, so ``generate``/``step``/``decode`` may be
called from several threads at once; graphs are opened lazily under a lock and, for backends
that are not thread-safe (``Backend.thread_safe``), every graph call is serialised by a lock.
``close()`` must not race with calls in flight (it waits for none): close when all are done.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence

import numpy as np

from lrf import prng
from lrf.runtime import scheduler
from lrf.runtime.backends import Backend, get_backend
from lrf.runtime.manifest import Bundle, open_bundle

MODES = ("fused", "stepwise")


class GenerationCancelled(InterruptedError):
    """``on_step`` returned False; no image is returned."""


class Generator:
    """A loaded bundle. Create with :meth:`load`."""

    def __init__(self, bundle: Bundle, backend: Backend):
        if bundle.target not in backend.targets:
            raise ValueError(f"bundle {str(bundle.path)!r} has target {bundle.target!r}, which "
                             f"backend {backend.name!r} cannot run (it runs "
                             f"{', '.join(backend.targets)})")
        self.bundle = bundle
        self.backend = backend
        m = bundle.manifest
        self.classes: list[str] = bundle.classes
        self.latent_shape = (int(m["latent"]["channels"]), int(m["latent"]["height"]),
                             int(m["latent"]["width"]))
        self.default_steps = int(m["sampling"]["steps"])
        self.default_guidance = float(m["sampling"]["guidance"])
        self.shift = float(m["scheduler"].get("shift", m["sampling"].get("shift", 1.0)))
        self.fused_steps = [n for n in bundle.fused_steps if f"generator_{n}" in bundle.graphs]
        self._sessions: dict = {}
        self._open_lock = threading.Lock()
        self._run_lock = None if backend.thread_safe else threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ life cycle
    @classmethod
    def load(cls, bundle: str | os.PathLike, backend: str = "onnxruntime",
             threads: int | None = None, verify: bool = True, preload: bool = False,
             **backend_options) -> "Generator":
        """Open a bundle folder: checks the manifest's schema version and every file's size and
        sha256 (``verify``), then picks the backend. Graphs load on first use (``preload=True``
        loads them all now). Extra keyword arguments go to the backend."""
        b = open_bundle(bundle, verify=verify)
        gen = cls(b, get_backend(backend)(threads=threads, **backend_options))
        if preload:
            for name in b.graphs:
                gen._session(name)
        return gen

    def close(self) -> None:
        """Release every loaded graph (idempotent)."""
        with self._open_lock:
            self._closed = True
            for s in self._sessions.values():
                s.close()
            self._sessions.clear()

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def manifest(self) -> dict:
        return self.bundle.manifest

    def class_index(self, name_or_index: str | int) -> int:
        """A class name or index -> index; ValueError naming the valid classes otherwise."""
        if isinstance(name_or_index, (int, np.integer)) and not isinstance(name_or_index, bool):
            if 0 <= int(name_or_index) < len(self.classes):
                return int(name_or_index)
        elif isinstance(name_or_index, str):
            if name_or_index in self.classes:
                return self.classes.index(name_or_index)
            if name_or_index.isdigit() and int(name_or_index) < len(self.classes):
                return int(name_or_index)
        raise ValueError(f"unknown label {name_or_index!r}; valid: {', '.join(self.classes)} "
                         f"(or an index 0-{len(self.classes) - 1})")

    # ------------------------------------------------------------------ graph calls
    def _session(self, name: str):
        with self._open_lock:
            if self._closed:
                raise ValueError("this Generator is closed; load the bundle again")
            if name not in self._sessions:
                if name not in self.bundle.graphs:
                    raise ValueError(f"bundle has no graph {name!r}; graphs: "
                                     f"{', '.join(sorted(self.bundle.graphs))}")
                spec = self.bundle.graphs[name]
                self._sessions[name] = self.backend.open(self.bundle.file(spec.file), spec)
            return self._sessions[name]

    def run(self, name: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Run graph ``name`` on validated inputs (names, dtypes and shapes from the manifest)."""
        spec = self.bundle.graphs.get(name)
        if spec is None:
            raise ValueError(f"bundle has no graph {name!r}; graphs: "
                             f"{', '.join(sorted(self.bundle.graphs))}")
        unknown = sorted(set(inputs) - {t.name for t in spec.inputs})
        if unknown:
            raise ValueError(f"{name}: unknown input {unknown[0]!r}; inputs are "
                             f"{[t.name for t in spec.inputs]}")
        fixed, n = _fixed_batch(spec), _leading_batch(inputs)
        if fixed and n and n != fixed and n % fixed == 0:
            # a graph exported for one batch size (ExecuTorch, Core ML): run it in chunks
            parts = [self.run(name, **{k: v[s:s + fixed] for k, v in inputs.items()})
                     for s in range(0, n, fixed)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        bound: dict[str, int] = {}
        feeds = {}
        for t in spec.inputs:
            if t.name not in inputs:
                raise ValueError(f"{name}: missing input {t.name!r} (expected {t.dtype} "
                                 f"{t.describe()})")
            feeds[t.name] = t.check(inputs[t.name], name, bound)
        session = self._session(name)
        if self._run_lock is None:
            return session.run(feeds)
        with self._run_lock:
            return session.run(feeds)

    def step(self, latent: np.ndarray, t: np.ndarray, label: np.ndarray,
             guidance: np.ndarray) -> np.ndarray:
        """Guided velocity [B,C,h,w] float32 (the ``step`` graph)."""
        return self.run("step", latent=latent, t=t, label=label, guidance=guidance)["velocity"]

    def decode(self, latent: np.ndarray) -> np.ndarray:
        """Normalised latents [B,C,H',W'] float32 -> uint8 images [B,8H',8W',3]."""
        return self.run("decoder", latent=latent)["image"]

    # ------------------------------------------------------------------ sampling
    def resolve(self, steps: int | None, guidance: float | None, mode: str | None
                ) -> tuple[int, float, str]:
        """Defaults and validation shared by :meth:`generate` and :meth:`generate_batch`."""
        steps = self.default_steps if steps is None else steps
        if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        guidance = self.default_guidance if guidance is None else guidance
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float, np.floating)) \
                or not math.isfinite(guidance):
            raise ValueError(f"guidance must be a finite number, got {guidance!r}")
        if mode is None:
            mode = "fused" if int(steps) in self.fused_steps else "stepwise"
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} or None, got {mode!r}")
        if mode == "fused" and int(steps) not in self.fused_steps:
            raise ValueError(f"no fused graph for steps={steps}; this bundle has fused graphs "
                             f"for {self.fused_steps or 'no N'}: use one of those, "
                             "mode='stepwise', or re-export with --steps")
        return int(steps), float(guidance), mode

    def noise(self, seeds: Sequence[int]) -> np.ndarray:
        """Portable latent noise [B,C,h,w] (``lrf/prng.py``), one seed per image."""
        return prng.noise(list(seeds), self.latent_shape)

    def generate(self, label: int | str, seed: int, steps: int | None = None,
                 guidance: float | None = None, mode: str | None = None,
                 on_step: Callable[[int, int], bool | None] | None = None) -> np.ndarray:
        """One uint8 image [H, W, 3] for ``label`` (index or class name) and ``seed``.

        ``mode``: "fused" (the generator_<N> graph; N must be exported), "stepwise" (step graph
        + numpy Euler + decoder, any N) or None (fused when N is exported, else stepwise).
        ``on_step(i, n)`` is called after step i (1-based); in fused mode once, with (n, n),
        after the graph. Returning False raises :class:`GenerationCancelled` and returns nothing.
        """
        return self.generate_batch([label], [seed], steps, guidance, mode, on_step)[0]

    def generate_batch(self, labels: Sequence[int | str], seeds: Sequence[int],
                       steps: int | None = None, guidance: float | None = None,
                       mode: str | None = None,
                       on_step: Callable[[int, int], bool | None] | None = None) -> np.ndarray:
        """Like :meth:`generate` for a batch: uint8 [B, H, W, 3]; image b depends only on
        (labels[b], seeds[b])."""
        if len(labels) != len(seeds) or not len(labels):
            raise ValueError(f"need one seed per label and at least one image, got "
                             f"{len(labels)} labels and {len(seeds)} seeds")
        n, g, mode = self.resolve(steps, guidance, mode)
        y = np.asarray([self.class_index(c) for c in labels], dtype=np.int32)
        z = self.noise(seeds)
        gv = np.full((len(y),), g, dtype=np.float32)
        if mode == "fused":
            image = self.run(f"generator_{n}", noise=z, label=y, guidance=gv)["image"]
            _progress(on_step, n, n)
            return image
        z = self.sample_latents(z, y, gv, n, on_step)
        return self.decode(z)

    def sample_latents(self, z: np.ndarray, label: np.ndarray, guidance: np.ndarray, steps: int,
                       on_step: Callable[[int, int], bool | None] | None = None) -> np.ndarray:
        """The stepwise Euler loop on latents [B,C,h,w] -> final latents (before decoding)."""
        ts = scheduler.timesteps(steps, self.shift)
        t = np.empty((z.shape[0],), dtype=np.float32)
        for i in range(steps):
            t.fill(ts[i])
            v = self.step(z, t, label, guidance)
            z = scheduler.euler_update(z, ts[i], ts[i + 1], v)
            _progress(on_step, i + 1, steps)
        return z


def _fixed_batch(spec) -> int | None:
    """The batch size every input of ``spec`` is fixed to, or None (dynamic or no batch dim)."""
    sizes = {t.shape[0] for t in spec.inputs if t.dims and t.dims[0] == "batch"}
    return sizes.pop() if len(sizes) == 1 and min(sizes) > 0 and \
        all(t.dims and t.dims[0] == "batch" for t in spec.inputs) else None


def _leading_batch(inputs: dict) -> int | None:
    """The common leading dimension of the given arrays, or None."""
    sizes = {v.shape[0] for v in inputs.values() if isinstance(v, np.ndarray) and v.ndim}
    ok = len(sizes) == 1 and all(isinstance(v, np.ndarray) and v.ndim for v in inputs.values())
    return sizes.pop() if ok else None


def _progress(on_step, i: int, n: int) -> None:
    if on_step is not None and on_step(i, n) is False:
        raise GenerationCancelled(f"generation cancelled by on_step after step {i}/{n}; "
                                  "no image was produced")
