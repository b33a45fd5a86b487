"""``export_bundle``: checkpoint -> verified bundle for any registered target.

    1. reference trajectories from the PyTorch sampler (parity cases; int8 calibration and
       selection sets) and the PyTorch encoder's latents of the reference images
    2. the target writes its graph files (``denoise``, ``decoder``, ``encoder``) into a
       temporary folder beside ``out``
    3. manifest written, bundle loaded through ``lrf.runtime`` (checksums verified)
    4. the parity gate (:func:`lrf.exporter.parity.gate`) on what the target gives it: the
       loaded bundle, or a simulation of its files for targets no backend runs here
    5. golden files written through the runtime, manifest finished, bundle re-verified
    6. commit into place; below any bar the temporary folder is deleted and ParityError raised
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lrf.exporter import writer as bw
from lrf.exporter import golden, outdir, parity
from lrf.exporter.calibration import (CALIBRATION_SEED0, FIDELITY_SEED0, PARITY_SEED0,
                                      SELECTION_SEED0, fixed_cases, record_encodings,
                                      record_trajectories)
from lrf.exporter.targets import ExportContext, get_target
from lrf.exporter.wrappers import build_graphs
from lrf.models.checkpoint import load_checkpoint
from lrf.runtime import Generator


def default_out(checkpoint_dir: str, target: str, precision: str) -> Path:
    return Path("bundles") / f"{Path(checkpoint_dir).name}-{target}-{precision}"


def parity_steps(default_steps: int, guidance_distilled: bool) -> list[int]:
    """The N values the gate samples whole images at when ``steps`` is not given: the default,
    and 8 for a teacher / 1, 2 and 4 for a turbo student (one set of weights serves all)."""
    return sorted({default_steps, *((1, 2, 4) if guidance_distilled else (8,))})


def export_bundle(target: str, checkpoint: str | None = None, out: str | Path | None = None,
                  int8: bool = False, steps: list[int] | None = None,
                  latent_size: int | None = None, options: dict | None = None,
                  parity_images: int = 20, calibration_images: int = 32,
                  fidelity_images: int = 200, log: Callable[[str], None] = print) -> Path:
    """Export ``checkpoint`` (default: the shipped one) for ``target`` and write a verified
    bundle at ``out``; returns its path. ``steps``: the N values the parity gate generates whole
    images at, besides the checkpoint's default (default: :func:`parity_steps`); the bundle
    itself runs any N. Raises :class:`parity.ParityError` (nothing written) when an artifact
    misses its bar."""
    tgt = get_target(target)  # fails first, listing the valid targets
    precision = "int8" if int8 else "fp32"
    if precision not in tgt.precisions:
        raise ValueError(f"target {target!r} does not support {precision}; it supports "
                         f"{', '.join(tgt.precisions)}")
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt.config
    if cfg.text_dim:   # prompts: schema v3 (lrf.exporter.text_export)
        if target != "onnx":
            raise ValueError(f"text-to-image bundles (schema v3) export to onnx only so far, "
                             f"not {target!r}")
        from lrf.exporter.text_export import export_text_bundle

        out = Path(out) if out else default_out(ckpt.path, target, precision)
        return export_text_bundle(ckpt, out, int8=int8, log=log,
                                  parity_images=min(parity_images, 8),
                                  **({"text_prompts": options["text_prompts"]}
                                     if options and "text_prompts" in options else {}))
    latent_size = int(latent_size or cfg.latent_size)
    default_steps = int(ckpt.sampling["steps"])
    if steps is not None and any(not isinstance(n, int) or isinstance(n, bool) or n < 1
                                 for n in steps):
        raise ValueError(f"--steps values must be integers >= 1, got {steps}")
    measured = sorted(set(steps) | {default_steps}) if steps else \
        parity_steps(default_steps, cfg.guidance_embed)
    for name, value in (("parity_images", parity_images),
                        ("calibration_images", calibration_images)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    out = Path(out) if out else default_out(ckpt.path, target, precision)
    outdir.prepare(out)  # sweep killed exports' temporaries; refuse early; re-checked at commit
    nc = cfg.num_classes
    traj = dict(ckpt=ckpt, latent_size=latent_size)

    log(f"reference: PyTorch trajectories for {parity_images} parity cases at N = {measured}")
    labels, seeds = fixed_cases(parity_images, nc, PARITY_SEED0)
    refs = {n: record_trajectories(labels=labels, seeds=seeds, steps=n, **traj)
            for n in measured}
    ctx = ExportContext(ckpt=ckpt, graphs=build_graphs(ckpt, image_format=tgt.image_format),
                        out_dir=bw.temp_dir_for(out), precision=precision,
                        latent_size=latent_size, options=dict(options or {}), log=log,
                        references=refs)
    tmp = ctx.out_dir
    try:
        if precision == "int8":
            log(f"calibration: {calibration_images} trajectories x {default_steps} timesteps")
            cal_labels, cal_seeds = fixed_cases(calibration_images, nc, CALIBRATION_SEED0)
            ctx.calibration = record_trajectories(labels=cal_labels, seeds=cal_seeds,
                                                  steps=default_steps, **traj)
            if not ctx.options.get("int8_variant"):  # fixed variant: nothing to score
                sel_labels, sel_seeds = fixed_cases(max(8, parity_images // 2), nc,
                                                    SELECTION_SEED0)
                ctx.selection = record_trajectories(labels=sel_labels, seeds=sel_seeds,
                                                    steps=default_steps, **traj)
        records = tgt.export(ctx)
        window = records["denoise"].extra["window"]
        manifest = bw.build_manifest(
            ckpt, tgt, precision, records, latent_size,
            sorted(set(measured) | set(golden.golden_steps(default_steps))),
            mode="stepwise" if window["max"] == window["min"] == 1 else "fused")
        bw.write_manifest(tmp, manifest)
        # one intra-op thread: the gate is not latency-bound, and spinning worker threads waste
        # a shared machine's CPU
        gen = Generator.load(tmp, backend=tgt.backend, threads=1) if tgt.backend else None
        try:
            result = _gate(tgt, ctx, records, gen, refs, default_steps, fidelity_images, log)
            for name, res in result.graphs.items():
                manifest["graphs"][name]["parity"] = res
            manifest["parity"] = {
                "reference": "pytorch float32 (lrf.models.flow.euler_sample, codec)",
                "cases": {"seeds": [str(s) for s in seeds], "labels": labels,
                          "guidance": float(ckpt.sampling["guidance"]), "steps": measured},
                "bars": {"image_psnr_db": parity.IMAGE_PSNR_DB[precision],
                         "class_fidelity_drop": parity.CLASS_FIDELITY_DROP,
                         "rel_max_abs": parity.REL_MAX_ABS},
                **result.manifest()}
            if not result.passed:
                raise parity.ParityError(result.failures)
            manifest["golden"] = golden.write_golden(tmp, ckpt, gen, precision,
                                                     latent_size=latent_size)
        finally:
            if gen is not None:
                gen.close()
        bw.write_manifest(tmp, manifest)
        if tgt.backend:  # the finished bundle must load (schema, every checksum) before commit
            Generator.load(tmp, backend=tgt.backend).close()
        bw.commit(tmp, out)
    except BaseException:
        outdir.discard(tmp)
        raise
    log(f"wrote {out}")
    return out


def _gate(tgt, ctx: ExportContext, records, gen, refs, default_steps: int,
          fidelity_images: int, log) -> parity.GateResult:
    """The one parity gate on what the target gives it (the loaded bundle or a simulation)."""
    runner = tgt.parity_runner(ctx, records, gen)
    ref = refs[default_steps]
    encodings = record_encodings(ctx.ckpt, ref.images) if "encoder" in records else None
    fidelity, reason = None, None
    if ctx.latent_size != ctx.ckpt.config.latent_size:
        reason = (f"latent size {ctx.latent_size} is not the trained size "
                  f"{ctx.ckpt.config.latent_size}")
    elif fidelity_images < 1:
        reason = "disabled (--fidelity-images 0)"
    elif parity.class_fidelity_function()[0] is None:
        reason = parity.class_fidelity_function()[1]
    else:
        labels, seeds = fixed_cases(fidelity_images, ctx.ckpt.config.num_classes, FIDELITY_SEED0)
        fidelity = record_trajectories(ctx.ckpt, labels, seeds, steps=default_steps,
                                       latent_size=ctx.latent_size)
    log(f"parity: {runner.description}")
    return parity.gate(runner, refs, precision=ctx.precision, default_steps=default_steps,
                       encodings=encodings, fidelity=fidelity, fidelity_reason=reason, log=log)
