"""The parity gate, the one path every target takes: :func:`gate` measures a :class:`Runner`
(a bundle run through ``lrf.runtime``, or a simulation of one) against the PyTorch float32
reference on fixed (seed, label) cases and returns a :class:`GateResult`; below any bar the
export writes nothing.

Bars (``runtime/BUNDLE.md`` section 5): images >= 40 dB PSNR for fp32 bundles and >= 25 dB for
int8; when the artifact computes in float32 at fp32 precision, the velocity of every reference
step (read back from a one-step ``denoise`` window) and the encoder's latents within
``REL_MAX_ABS`` of the reference (relative to its largest magnitude); class fidelity within 3
points of the reference when measurable. Everything else is judged by the images it produces.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lrf.exporter.calibration import Encodings, Trajectories, window_velocity
# the measurements and bars live in lrf.exporter.metrics; PSNR_CAP and psnr are also read as
# parity.PSNR_CAP / parity.psnr by callers of the gate
from lrf.exporter.metrics import (IMAGE_PSNR_DB, PSNR_CAP, TENSOR_REL_MAX_ABS,  # noqa: F401
                                  image_metrics, psnr, tensor_metrics)
from lrf.runtime import scheduler

REL_MAX_ABS = TENSOR_REL_MAX_ABS["fp32"]  # float32 compute at fp32 precision only
STEP_REL_MAX_ABS = REL_MAX_ABS
CLASS_FIDELITY_DROP = 0.03    # fraction (3 points)


class ParityError(ValueError):
    """An artifact is below its bar; ``failures`` lists one line per failing measurement."""

    def __init__(self, failures: list[str]):
        self.failures = failures
        super().__init__("export gate failed: " + "; ".join(failures) + " -- no bundle written")


# ---------------------------------------------------------------------------- what is measured
class Runner:
    """What the gate measures: the three graphs of a bundle, by role, on numpy arrays.

    ``window``: (min, max) steps one ``denoise`` call takes (max None = unbounded);
    ``float32_compute``: False when the artifact computes in lower precision (e.g. Core ML
    fp16), which exempts it from the tensor bars; ``simulated`` and ``description`` say how the
    numbers were obtained (recorded in the manifest)."""

    window: tuple[int, int | None] = (1, None)
    float32_compute: bool = True
    simulated: bool = False
    description: str = ""
    has_encoder: bool = True

    def denoise(self, latent: np.ndarray, timesteps: np.ndarray, label: np.ndarray,
                guidance: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def decode(self, latent: np.ndarray) -> np.ndarray:
        """Normalised latents -> uint8 NHWC images."""
        raise NotImplementedError

    def encode(self, image: np.ndarray) -> np.ndarray:
        """uint8 NHWC images -> normalised latents."""
        raise NotImplementedError

    def sample(self, z: np.ndarray, label: np.ndarray, guidance: np.ndarray, ts: np.ndarray,
               window: int | None) -> np.ndarray:
        """The one numpy sampler (``lrf.runtime.scheduler.sample``) over this runner's
        ``denoise``, in windows of ``window`` steps (None: as large as the graph allows)."""
        wmin, wmax = self.window
        spans = scheduler.windows(len(ts) - 1, window, wmin, wmax)
        return scheduler.sample(lambda zz, tw: self.denoise(zz, tw, label, guidance), ts, z,
                                spans)


class RuntimeRunner(Runner):
    """A bundle loaded in ``lrf.runtime`` (a :class:`~lrf.runtime.Generator`)."""

    def __init__(self, gen):
        self.gen = gen
        self.window = gen.window
        self.has_encoder = "encoder" in gen.bundle.graphs
        self.description = f"lrf.runtime, backend {gen.backend.name} {gen.backend.version()}"

    def denoise(self, latent, timesteps, label, guidance):
        return self.gen.run("denoise", latent=latent, timesteps=timesteps, label=label,
                            guidance=guidance)["latent"]

    def sample(self, z, label, guidance, ts, window):
        return self.gen.denoise(z, ts, label, guidance, window=window)  # the runtime's own path

    def decode(self, latent):
        return self.gen.decode(latent)

    def encode(self, image):
        return self.gen.encode(image)


@dataclass
class GateResult:
    """What :func:`gate` measured. Every entry of ``graphs`` (``denoise``, ``decoder``,
    ``encoder``), ``paths`` (``stepwise_<N>``, ``fused_<N>``, ``roundtrip``) and
    ``class_fidelity`` has ``metric``, ``value``, ``bar`` and ``passed`` plus its details;
    ``failures`` has one line per missed bar."""

    simulated: bool
    description: str
    graphs: dict[str, dict] = field(default_factory=dict)
    paths: dict[str, dict] = field(default_factory=dict)
    class_fidelity: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def manifest(self) -> dict:
        """The manifest's ``parity`` fields this result owns (the export adds cases and bars)."""
        return {"simulated": self.simulated, "measured_by": self.description,
                "paths": self.paths, "class_fidelity": self.class_fidelity,
                "passed": self.passed, "failures": list(self.failures)}

    def judge(self, where: dict, key: str, what: str, metric: str, value, bar,
              ok: bool, details: dict) -> dict:
        res = {"metric": metric, "value": value, "bar": bar, "passed": bool(ok), **details}
        where[key] = res
        if not ok:
            shown = "non-finite" if value is None else f"{value:.4g}"
            self.failures.append(f"{what}: {metric} {shown} misses the bar {bar}")
        return res


def gate(runner: Runner, refs: dict[int, Trajectories], *, precision: str, default_steps: int,
         encodings: Encodings | None = None, fidelity: Trajectories | None = None,
         fidelity_reason: str | None = None, log: Callable[[str], None] = lambda m: None
         ) -> GateResult:
    """Measure ``runner`` against the reference trajectories ``refs`` (by step count; must hold
    ``default_steps``), the PyTorch encoder ``encodings`` (when the bundle has an encoder) and,
    for class fidelity, the reference ``fidelity`` (None: not measured, ``fidelity_reason``)."""
    bar = IMAGE_PSNR_DB[precision]
    exact = precision == "fp32" and runner.float32_compute
    res = GateResult(simulated=runner.simulated, description=runner.description)
    tag = " (simulated)" if runner.simulated else ""
    wmin, wmax = runner.window
    ref = refs[default_steps]

    # denoise: one window at every reference step, read back as the step's velocity
    feeds = ref.denoise_feeds(wmin)
    outs = [runner.denoise(f["latent"], f["timesteps"], f["label"], f["guidance"]) for f in feeds]
    vel = np.stack([window_velocity(f["latent"], o, f["timesteps"][0], f["timesteps"][-1])
                    for f, o in zip(feeds, outs)])
    want = np.stack([window_velocity(f["latent"], f["expected"], f["timesteps"][0],
                                     f["timesteps"][-1]) for f in feeds])
    m = tensor_metrics(want, vel)
    m.update(windows=len(feeds), window_steps=wmin)
    res.judge(res.graphs, "denoise", f"denoise{tag}", "rel_max_abs", m["rel_max_abs"],
              REL_MAX_ABS if exact else None,
              m["finite"] and (not exact or m["rel_max_abs"] <= REL_MAX_ABS), m)

    def image_check(where, key, what, ref_images, images, extra=None):
        m = {**(extra or {}), **image_metrics(ref_images, images)}
        return res.judge(where, key, f"{what}{tag}", "psnr_db", m["psnr_db"], bar,
                         m["psnr_db"] >= bar, m)

    # decoder: the reference's own final latents
    image_check(res.graphs, "decoder", "decoder", ref.images, runner.decode(ref.latents[-1]))
    # whole images: stepwise at the default N, the largest windows the graph allows at every N
    for n, r in sorted(refs.items()):
        y, g = r.labels.astype(np.int32), np.full((r.batch,), r.guidance, dtype=np.float32)
        modes = [("stepwise", wmin)] if n == default_steps else []
        if (wmax is None or wmax > wmin) and n % wmin == 0:
            modes.append(("fused", None))
        for mode, size in modes:
            log(f"parity{tag}: {mode} images at N = {n}")
            z = runner.sample(r.latents[0], y, g, r.times, size)
            image_check(res.paths, f"{mode}_{n}", f"{mode}_{n} ({mode} images, {n} steps)", r.images,
                        runner.decode(z), {"steps": n, "mode": mode})
    # encoder: its latents, and the bundle's encode -> decode round trip (an edit at strength 0)
    if runner.has_encoder and encodings is not None:
        lat = runner.encode(encodings.images)
        m = tensor_metrics(encodings.latents, lat)
        m["images"] = int(len(encodings.images))
        res.judge(res.graphs, "encoder", f"encoder{tag}", "rel_max_abs", m["rel_max_abs"],
                  REL_MAX_ABS if exact else None,
                  m["finite"] and (not exact or m["rel_max_abs"] <= REL_MAX_ABS), m)
        image_check(res.paths, "roundtrip", "roundtrip (encoder -> decoder)",
                    encodings.roundtrip, runner.decode(lat))
    _class_fidelity(res, runner, fidelity, fidelity_reason, precision, log)
    return res


# ---------------------------------------------------------------------------- class fidelity
def class_fidelity_function():
    """(function, None) when the shipped classifier's weights exist, else (None, reason).
    Never estimated when unavailable; any other error propagates."""
    from lrf.models.classifier import CLASSIFIER_DIR, CLASSIFIER_FILE, class_fidelity

    weights = os.path.join(CLASSIFIER_DIR, CLASSIFIER_FILE)
    if not os.path.isfile(weights):
        return None, f"classifier weights not found at {weights}"
    return class_fidelity, None


def _class_fidelity(res: GateResult, runner: Runner, ref: Trajectories | None,
                    reason: str | None, precision: str, log) -> None:
    """The bundle's images (largest windows) vs the reference's, scored by the shipped
    classifier on the same cases."""
    fn, missing = class_fidelity_function() if ref is not None else (None, reason)
    if fn is None:
        res.class_fidelity = {"metric": "drop", "value": None, "bar": CLASS_FIDELITY_DROP,
                              "passed": True, "measured": False, "reason": missing}
        return
    log(f"class fidelity: {ref.batch} images, bundle vs PyTorch reference")
    y = ref.labels.astype(np.int32)
    z = runner.sample(ref.latents[0], y, np.full((ref.batch,), ref.guidance, np.float32),
                      ref.times, None)
    ref_f = float(fn(ref.images, ref.labels.astype(np.int64)))
    art_f = float(fn(runner.decode(z), ref.labels.astype(np.int64)))
    drop = round(ref_f - art_f, 4)
    out: dict = {}
    res.judge(out, "class_fidelity", f"class_fidelity ({precision})", "drop", drop,
              CLASS_FIDELITY_DROP, drop <= CLASS_FIDELITY_DROP,
              {"measured": True, "images": ref.batch, "steps": ref.steps,
               "reference": round(ref_f, 4), "artifact": round(art_f, 4)})
    res.class_fidelity = out["class_fidelity"]
