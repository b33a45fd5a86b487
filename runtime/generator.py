"""``Generator``: images from a schema v2 bundle with numpy and a runtime backend; never imports
torch.

    with Generator.load("bundles/cifar10-onnx-int8") as gen:
        img = gen.generate("cat", seed=0)                 # uint8 [32, 32, 3]
        img = gen.generate(3, seed=0, steps=13, mode="stepwise", on_step=print_progress)

Graphs are bound by role (``runtime/BUNDLE.md`` 2.2): :meth:`run` takes and returns arrays keyed
by role. The building blocks :meth:`denoise`, :meth:`encode` and :meth:`decode` are what
``generate`` and the editing code (``lrf.runtime.editing``) are made of.

Thread-safety: a Generator keeps no per-call state, so its methods may be called from several
threads at once; graphs are opened lazily under a lock and, for backends that are not thread-safe
(``Backend.thread_safe``), every graph call is serialised by a lock. ``close()`` must not race
with calls in flight (it waits for none): close when all are done.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

import numpy as np

from lrf import prng
from lrf.runtime import editing, scheduler, tiling
from lrf.runtime.backends import Backend, get_backend
from lrf.runtime.manifest import Bundle, check_graph, open_bundle, verify_file
from lrf.runtime.scheduler import GenerationCancelled, OnStep  # noqa: F401  (re-exported)

MODES = ("fused", "stepwise")


DEFAULT_BUNDLE = "cifar10-turbo-int8"


def default_bundle(name: str = DEFAULT_BUNDLE) -> str:
    """A prebuilt bundle shipped in the repository's ``models/bundles/`` (found without
    importing ``lrf.models``, which needs torch)."""
    import importlib.util

    spec = importlib.util.find_spec("lrf.models")
    return os.path.join(list(spec.submodule_search_locations)[0], "bundles", name)


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
        self.latent_shape = (m["latent"]["channels"], m["latent"]["height"], m["latent"]["width"])
        self.guidance_distilled: bool = m["model"]["guidance_distilled"]
        s = m["sampling"]
        self.default_steps, self.default_guidance = s["steps"], float(s["guidance"])
        self.default_mode, self.shift = s["mode"], float(s["shift"])
        self.window: tuple[int, int | None] = bundle.graphs["denoise"].window
        self.channels: int = int(m["image"]["channels"])   # 3: RGB, 4: straight RGBA (v3)
        cond = m.get("conditioning") if m.get("schema_version") == 3 else None
        self.takes_prompt: bool = bool(cond) and cond.get("kind") == "text"
        # v3 "editing.schedule"; v2 bundles edit on the nearest schedule index (section 8)
        self.edit_schedule: str = (m.get("editing") or {}).get("schedule", "nearest") \
            if self.takes_prompt else "nearest"
        self._prompts = None   # lrf.runtime.text.PromptCache, made on the first prompt
        _latent_matches_graphs(bundle, self.latent_shape)
        # decoding in tiles (runtime/tiling.py): "auto" | "on" | "off" or a tiling.Tiling
        self.tiling: str | tiling.Tiling = "auto"
        self._sessions: dict = {}
        self._open_lock = threading.Lock()
        self._run_lock = None if backend.thread_safe else threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ life cycle
    @classmethod
    def load(cls, bundle: str | os.PathLike | None = None, backend: str = "onnxruntime",
             threads: int | None = None, verify: bool = True, preload: bool = False,
             **backend_options) -> "Generator":
        """Open a bundle folder (default: the prebuilt turbo int8 ONNX bundle that ships in
        ``models/bundles/``, :func:`default_bundle`): the schema check, containment and every
        file's size and sha256 (``verify``), then the backend. Graphs open on first use (``preload=True`` opens them
        all now; each is checked against the manifest when opened). Extra keyword arguments go
        to the backend."""
        b = open_bundle(default_bundle() if bundle is None else bundle, verify=verify)
        gen = cls(b, get_backend(backend)(threads=threads, **backend_options))
        if preload:
            gen.open(*b.graphs)
        return gen

    def open(self, *names: str) -> None:
        """Open graphs ``names`` now instead of on first use (each is checked against the
        manifest as it opens), e.g. to time loading apart from generating."""
        for name in names:
            self._session(name)

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
        """A class name or index -> index; ValueError naming the valid classes otherwise. An
        index in a string is ASCII digits only ("²" and "٣" are digits to Python, not here)."""
        if isinstance(name_or_index, (int, np.integer)) and not isinstance(name_or_index, bool):
            if 0 <= int(name_or_index) < len(self.classes):
                return int(name_or_index)
        elif isinstance(name_or_index, str):
            if name_or_index in self.classes:
                return self.classes.index(name_or_index)
            text = name_or_index
            if text.isascii() and text.isdigit() and len(text) <= 6 and \
                    int(text) < len(self.classes):
                return int(text)
        shown = str(name_or_index) if isinstance(name_or_index, str) else \
            repr(name_or_index)[:40]
        raise ValueError(f"unknown label {shown[:40]!r}{'...' if len(shown) > 40 else ''}; "
                         f"valid: {', '.join(self.classes)} (or an index 0-"
                         f"{len(self.classes) - 1})")

    def check_labels(self, label, allow_null: bool = False) -> np.ndarray:
        """``label`` as an int32 array [B] of class indices in 0..classes-1, or ValueError (the
        rule :meth:`class_index` applies to one label; -5 or 2**40 never wrap onto a class).
        ``allow_null``: the null class (a text bundle's "no style") is allowed too."""
        a = np.asarray(label)
        n = len(self.classes) + bool(allow_null)
        if a.ndim != 1 or not a.size or a.dtype.kind not in "iu":
            raise ValueError(f"label must be a 1-D integer array of class indices (one per "
                             f"image), got {a.dtype} {list(a.shape)}")
        bad = a[(a < 0) | (a >= n)]
        if bad.size:
            raise ValueError(f"label {int(bad[0])} is not a class index; valid: 0-{n - 1} "
                             f"({', '.join(self.classes)[:200]})")
        return a.astype(np.int32)

    # ------------------------------------------------------------------ graph calls
    def _session(self, name: str):
        with self._open_lock:
            if self._closed:
                raise ValueError("this Generator is closed; load the bundle again")
            if name not in self._sessions:
                spec = self._spec(name)
                self._sessions[name] = self._open_verified(spec)
            return self._sessions[name]

    def _open_verified(self, spec):
        """Open ``spec``'s graph on bytes verified now (size and sha256 against the manifest,
        and the loop check), so a graph swapped on disk after :meth:`load` is refused; a
        backend that takes bytes (``Backend.takes_bytes``) runs exactly those bytes."""
        files = self.bundle.manifest["files"]
        path = self.bundle.file(spec.file)
        for rel in spec.external_data:
            verify_file(self.bundle.file(rel), rel, files[rel])
        if spec.file not in files:   # a folder graph (.mlpackage): every listed file in it
            for rel in sorted(f for f in files if f.startswith(spec.file + "/")):
                verify_file(self.bundle.file(rel), rel, files[rel])
            return self.backend.open(path, spec)
        data = path.read_bytes()
        verify_file(path, spec.file, files[spec.file], data)
        if spec.format == "onnx":
            check_graph(data, spec)
        if getattr(self.backend, "takes_bytes", False):
            return self.backend.open(path, spec, data=data)
        return self.backend.open(path, spec)

    def _spec(self, name: str):
        if name not in self.bundle.graphs:
            raise ValueError(f"bundle has no graph {name!r}; graphs: "
                             f"{', '.join(sorted(self.bundle.graphs))}")
        return self.bundle.graphs[name]

    def run(self, name: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Run graph ``name`` on inputs keyed by **role**; returns outputs keyed by role. Inputs
        are checked against the manifest before the call and outputs after it (dtype, and shape
        as bound by the inputs), so a graph returning float64 or another shape is refused."""
        spec = self._spec(name)
        if name == "text_encoder" and isinstance(inputs.get("token_ids"), np.ndarray):
            from lrf.runtime.text import check_ids   # ids index the embedding table

            check_ids(inputs["token_ids"], int(self.manifest["tokenizer"]["vocab_size"]))
        unknown = sorted(set(inputs) - {t.role for t in spec.inputs})
        if unknown:
            raise ValueError(f"{name}: unknown input role {unknown[0]!r}; roles are "
                             f"{[t.role for t in spec.inputs]}")
        fixed, n = _fixed_batch(spec), _leading_batch(inputs)
        if fixed and n and n != fixed and n % fixed == 0:
            # a graph exported for one batch size (ExecuTorch, Core ML): run it in chunks
            parts = [self.run(name, **{k: (v[s:s + fixed] if k != "timesteps" else v)
                                       for k, v in inputs.items()})
                     for s in range(0, n, fixed)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        bound: dict[str, int] = {}
        feeds = {}
        for t in spec.inputs:
            if t.role not in inputs:
                raise ValueError(f"{name}: missing input {t.role!r} (expected {t.dtype} "
                                 f"{t.describe()})")
            feeds[t.name] = t.check(inputs[t.role], name, bound)
        session = self._session(name)
        if self._run_lock is None:
            raw = session.run(feeds)
        else:
            with self._run_lock:
                raw = session.run(feeds)
        return {t.role: t.check(raw.get(t.name), name, bound, kind="output")
                for t in spec.outputs}

    # ------------------------------------------------------------------ prompts (v3)
    def prompt_cache(self):
        """The per-prompt cache of the ``text_encoder`` outputs (:mod:`lrf.runtime.text`)."""
        if not self.takes_prompt:
            raise ValueError("this bundle is class-conditioned and takes no prompt; give a "
                             f"class ({', '.join(self.classes)[:200]})")
        if self._prompts is not None:
            return self._prompts
        session = self._session("text_encoder")   # takes _open_lock itself: open it first
        with self._open_lock:
            if self._prompts is None:
                from lrf.runtime.text import PromptCache, PromptTokenizer

                roles = [t.role for t in self._spec("text_encoder").outputs]
                run = lambda ids, mask: self.run("text_encoder", token_ids=ids,  # noqa: E731
                                                 attention_mask=mask)
                tok = PromptTokenizer(self.bundle)
                _probe_vocabulary(session, self._spec("text_encoder"), tok.vocab_size)
                self._prompts = PromptCache(tok, run, roles)
            return self._prompts

    def encode_prompts(self, prompts: Sequence[str]) -> dict[str, np.ndarray]:
        """The ``denoise`` graph's text inputs by role for one prompt per image ([B, ...]),
        each distinct prompt tokenized and encoded once (then cached)."""
        if isinstance(prompts, str) or not len(prompts):
            raise ValueError("prompts must be a non-empty list of strings, one per image")
        return self.prompt_cache().batch(list(prompts))

    def style_index(self, style) -> int:
        """A style name or index -> label; None -> the null style (no style)."""
        if style is None:
            return int(self.manifest["null_class"])
        return self.class_index(style)

    def _labels_for(self, labels, prompts, styles, n_seeds: int):
        """(int32 labels [B], text inputs or None) from class labels or prompts + styles."""
        if not self.takes_prompt:
            if prompts is not None or styles is not None:
                raise ValueError("this bundle is class-conditioned: give a class, not "
                                 "prompt=/style=")
            if labels is None:
                raise ValueError(f"give a class ({', '.join(self.classes)[:200]})")
            return np.asarray([self.class_index(c) for c in labels], dtype=np.int32), None
        if prompts is None:
            if labels is not None and all(isinstance(c, str) for c in labels):
                prompts = list(labels)   # generate("cat face", seed=0) on a text bundle
            else:
                raise ValueError("this bundle is text-to-image: give prompt= (and optionally "
                                 f"style=, one of {', '.join(self.classes)[:200]})")
        elif labels is not None:
            raise ValueError("give prompt= and style=, not a class label, to a text bundle")
        if styles is None or isinstance(styles, (str, int, np.integer)):
            styles = [styles] * len(prompts)
        if len(styles) != len(prompts) or len(prompts) != n_seeds:
            raise ValueError(f"need one prompt, style and seed per image: {len(prompts)} prompts,"
                             f" {len(styles)} styles, {n_seeds} seeds")
        y = np.asarray([self.style_index(s) for s in styles], dtype=np.int32)
        return y, self.encode_prompts(prompts)

    # ------------------------------------------------------------------ building blocks
    def denoise(self, z: np.ndarray, timesteps: np.ndarray, label: np.ndarray,
                guidance: np.ndarray | float, on_step: OnStep | None = None,
                window: int | None = None,
                after_window: Callable[[np.ndarray, int], np.ndarray] | None = None,
                text: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Integrate latents ``z`` [B,C,h,w] over ``timesteps`` t[0..K] (descending) with the
        ``denoise`` graph. ``window``: steps per graph call (None: as few calls as the graph
        allows, i.e. fused; 1: stepwise). After each call ``after_window(z, i)`` (i = index
        reached in ``timesteps``) and ``on_step(i, K)`` run; on_step returning False raises
        :class:`GenerationCancelled`. A text bundle takes ``text``: the prompt conditioning by
        role (:meth:`encode_prompts`), the same for every window; ``label`` is then the style
        (``null_class`` allowed: no style)."""
        ts = np.asarray(timesteps, dtype=np.float32)
        if ts.ndim != 1 or len(ts) < 1:
            raise ValueError(f"timesteps must be a 1-D float32 schedule, got shape "
                             f"{list(ts.shape)}")
        scheduler.check_steps(max(len(ts) - 1, 1))
        if len(ts) > 1 and not (np.isfinite(ts).all() and (np.diff(ts) < 0).all()):
            raise ValueError("timesteps must be finite and strictly descending")
        label = self.check_labels(label, allow_null=self.takes_prompt)
        if self.takes_prompt and text is None:
            raise ValueError("this bundle is text-to-image: denoise needs text= (the prompt "
                             "conditioning from encode_prompts)")
        if len(label) != len(z):
            raise ValueError(f"need one label per latent: {len(label)} labels for a batch of "
                             f"{len(z)}")
        if isinstance(guidance, np.ndarray):
            if guidance.dtype.kind not in "iuf":
                raise ValueError(f"guidance must be a numeric array, got dtype {guidance.dtype}")
            for value in np.unique(guidance):
                scheduler.check_guidance(float(value))
            g = np.broadcast_to(guidance.astype(np.float32), label.shape)
        else:
            g = np.full(label.shape, scheduler.check_guidance(guidance), np.float32)

        def step(zz: np.ndarray, w: np.ndarray) -> np.ndarray:
            out = self.run("denoise", latent=zz, timesteps=w, label=label, guidance=g,
                           **(text or {}))["latent"]
            if out.shape != zz.shape:
                raise ValueError(f"denoise returned shape {list(out.shape)} for latent "
                                 f"{list(zz.shape)}; the bundle is inconsistent")
            return out

        spans = scheduler.windows(len(ts) - 1, window, *self.window)
        return scheduler.sample(step, ts, z, spans, on_step, after_window)

    def encode(self, image: np.ndarray) -> np.ndarray:
        """uint8 images [B,H,W,3] (H, W divisible by 8) -> normalised latents [B,C,H/8,W/8]."""
        image = np.asarray(image)
        c = self.channels
        if image.ndim != 4 or image.shape[-1] != c or image.shape[1] % 8 or image.shape[2] % 8:
            raise ValueError(f"encode takes uint8 images [B,H,W,{c}] with H and W divisible by "
                             f"8, got shape {list(image.shape)}")
        z = self.run("encoder", image=image)["latent"]
        want = (image.shape[0], self.latent_shape[0], image.shape[1] // 8, image.shape[2] // 8)
        return _expect_shape(z, want, "encoder")

    def decode(self, latent: np.ndarray) -> np.ndarray:
        """Normalised latents [B,C,H',W'] float32 -> uint8 images [B,8H',8W',3]."""
        if not isinstance(latent, np.ndarray) or latent.ndim != 4:
            raise ValueError(f"decode: latent must be a numpy array [B,C,H',W'] float32, got "
                             f"{type(latent).__name__} {list(np.shape(latent))}")
        if not np.isfinite(latent).all():   # a broken graph or bundle: never a silent black image
            raise ValueError("decode: the latent holds NaN or infinite values (the denoise graph "
                             "produced them); re-export the bundle or check its files")
        t = tiling.as_tiling(self.tiling)
        if t.applies(latent.shape[2], latent.shape[3]):  # tiles decoded by decode_whole, blended
            return tiling.decode_tiled(self.decode_whole, latent, t)
        return self.decode_whole(latent)

    def decode_whole(self, latent: np.ndarray) -> np.ndarray:
        """One decoder call on the whole latent (no tiling): uint8 [B,8H',8W',3]."""
        image = self.run("decoder", latent=latent)["image"]
        b, _, h, w = latent.shape
        if self.manifest["image"]["format"] == "float_nchw":
            _expect_shape(image, (b, 3, 8 * h, 8 * w), "decoder")
            x = np.clip((np.clip(image, -1, 1) + 1) * 127.5 + 0.5, 0, 255)
            return np.floor(x).astype(np.uint8).transpose(0, 2, 3, 1).copy()
        return _expect_shape(image, (b, 8 * h, 8 * w, self.channels), "decoder")

    # ------------------------------------------------------------------ sampling
    def resolve(self, steps: int | None, guidance: float | None, mode: str | None
                ) -> tuple[int, float, str]:
        """Defaults and validation shared by :meth:`generate` and :meth:`generate_batch`:
        steps in 1..MAX_STEPS, guidance finite in float32 within GUIDANCE_RANGE."""
        steps = scheduler.check_steps(self.default_steps if steps is None else steps)
        guidance = scheduler.check_guidance(self.default_guidance if guidance is None
                                            else guidance)
        mode = self.default_mode if mode is None else mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} or None, got {mode!r}")
        scheduler.windows(steps, 1 if mode == "stepwise" else None, *self.window)  # splittable?
        return steps, guidance, mode

    def noise(self, seeds: Sequence[int]) -> np.ndarray:
        """Portable latent noise [B,C,h,w] (BUNDLE.md section 4), one seed per image."""
        return prng.noise(list(seeds), self.latent_shape)

    def generate(self, label: int | str | None = None, seed: int = 0, steps: int | None = None,
                 guidance: float | None = None, mode: str | None = None,
                 on_step: OnStep | None = None, *, prompt: str | None = None,
                 style: str | int | None = None) -> np.ndarray:
        """One uint8 image [H, W, C] for ``label`` (index or class name) and ``seed``; a text
        bundle (schema v3) takes ``prompt`` (a plain string first argument is the prompt too)
        and optionally ``style`` (a name of ``classes``; None: no style) and makes straight
        RGBA [H, W, 4]: ``gen.generate(prompt="cat face", style="noto", seed=0)``.

        ``mode``: "fused" (the whole schedule in as few denoise calls as the graph allows),
        "stepwise" (one call per step, ``on_step(i, n)`` after each) or None (the manifest's
        ``sampling.mode``). Any N in 1..MAX_STEPS. ``on_step`` returning False raises
        :class:`GenerationCancelled` and returns nothing.
        """
        return self.generate_batch(None if label is None else [label], [seed], steps, guidance,
                                   mode, on_step, prompts=None if prompt is None else [prompt],
                                   styles=None if style is None else [style])[0]

    def generate_batch(self, labels: Sequence[int | str] | None, seeds: Sequence[int],
                       steps: int | None = None, guidance: float | None = None,
                       mode: str | None = None, on_step: OnStep | None = None, *,
                       prompts: Sequence[str] | None = None,
                       styles: Sequence[str | int | None] | None = None) -> np.ndarray:
        """Like :meth:`generate` for a batch: uint8 [B, H, W, C]; image b depends only on
        (labels[b] or prompts[b] and styles[b], seeds[b]). Each distinct prompt is encoded
        once."""
        count = len(prompts) if prompts is not None else len(labels) if labels is not None \
            else 0
        if count != len(seeds) or not count:
            raise ValueError(f"need one seed per {'prompt' if prompts is not None else 'label'}"
                             f" and at least one image, got {count} and {len(seeds)} seeds")
        n, g, mode = self.resolve(steps, guidance, mode)
        y, text = self._labels_for(labels, prompts, styles, len(seeds))
        z = self.sample_latents(self.noise(seeds), y, g, n, on_step, mode, text=text)
        return self.decode(z)

    def edit(self, image, label: int | str | None = None, seed: int = 0,
             strength: float = 0.6, mask=None, steps: int | None = None,
             guidance: float | None = None, mode: str | None = None,
             on_step: OnStep | None = None, *, prompt: str | None = None,
             style: str | int | None = None) -> np.ndarray:
        """Edit a uint8 RGB image [H, W, 3] of the bundle's size: img2img, or inpainting with
        ``mask`` (a KEEP mask in pixels: 1 / white keeps the input, 0 / black is repainted).
        ``strength`` in [0, 1]: 1 ignores the image (the same image as :meth:`generate` for
        ``seed``), 0 returns the codec round trip. Progress and cancel as in :meth:`generate`
        (inpainting runs stepwise). Rules: BUNDLE.md "Editing" (``lrf.runtime.editing``).
        A text bundle edits toward ``prompt`` (and ``style``) and takes straight RGBA [H, W, 4]
        (or opaque RGB) images; its ``editing.schedule`` says how ``strength`` maps to the
        steps (section 8)."""
        return editing.edit(self, image, label, seed, strength, mask, steps, guidance, mode,
                            on_step, prompt=prompt, style=style)

    def sample_latents(self, z: np.ndarray, label: np.ndarray, guidance, steps: int,
                       on_step: OnStep | None = None, mode: str = "stepwise",
                       text: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Noise [B,C,h,w] -> final latents after ``steps`` steps of the full schedule."""
        ts = scheduler.timesteps(steps, self.shift)
        return self.denoise(z, ts, label, guidance, on_step, 1 if mode == "stepwise" else None,
                            text=text)


def _latent_matches_graphs(bundle: Bundle, latent: tuple[int, int, int]) -> None:
    """The manifest's latent size against the static dims of the graphs' latent tensors, at
    load: a 4x4096x4096 latent for an 4x4x4 graph would cost seconds of noise first."""
    for name, kind in (("denoise", "inputs"), ("decoder", "inputs"), ("encoder", "outputs")):
        spec = bundle.graphs.get(name)
        t = next((t for t in getattr(spec, kind, ()) if t.role == "latent"), None)
        if t is None or len(t.shape) != 4:
            continue
        dims = (t.shape[1],) if name != "denoise" else t.shape[1:]
        if any(d >= 0 and d != w for d, w in zip(dims, latent)):
            raise ValueError(f"manifest.json: latent is {'x'.join(map(str, latent))} "
                             f"(channels x height x width) but graphs.{name} tensor "
                             f"{t.name!r} is {t.describe()}; the bundle is inconsistent")


def _probe_vocabulary(session, spec, vocab_size: int) -> None:
    """The text_encoder's embedding table has exactly ``vocab_size`` rows: the last id must
    run and the next one must fail (engines refuse an out-of-range Gather), so a tokenizer
    whose vocabulary does not match the graph is refused before any prompt is encoded."""
    names = {t.role: t.name for t in spec.inputs}
    mask = np.ones((1, 3), np.int64)

    def runs(i: int) -> bool:
        ids = np.asarray([[101, i, 102]], np.int64)
        try:
            session.run({names["token_ids"]: ids, names["attention_mask"]: mask})
            return True
        except ValueError:
            return False

    if not runs(vocab_size - 1) or runs(vocab_size):
        raise ValueError(f"graphs.text_encoder: its embedding table does not have the "
                         f"tokenizer's {vocab_size} rows (tokenizer.vocab_size); the tokenizer "
                         "and the graph do not belong together: re-export the bundle")


def _expect_shape(a: np.ndarray, shape: tuple, graph: str) -> np.ndarray:
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{graph} returned shape {list(a.shape)}, expected {list(shape)}; the "
                         "bundle is inconsistent")
    return a


def _fixed_batch(spec) -> int | None:
    """The batch size every batched input of ``spec`` is fixed to, or None (dynamic)."""
    batched = [t for t in spec.inputs if t.dims and t.dims[0] == "batch"]
    sizes = {t.shape[0] for t in batched}
    return sizes.pop() if len(sizes) == 1 and min(sizes) > 0 else None


def _leading_batch(inputs: dict) -> int | None:
    """The common leading dimension of the batched arrays (all but timesteps), or None."""
    arrays = [v for k, v in inputs.items() if k != "timesteps"]
    sizes = {v.shape[0] for v in arrays if isinstance(v, np.ndarray) and v.ndim}
    ok = len(sizes) == 1 and all(isinstance(v, np.ndarray) and v.ndim for v in arrays)
    return sizes.pop() if ok else None
