"""``export_bundle``: checkpoint -> verified bundle for any registered target.

    1. reference trajectories from PyTorch (parity cases; int8 calibration and selection sets)
    2. the target writes its graph files into a temporary folder beside ``out``
    3. manifest written, bundle loaded through ``lrf.runtime`` (checksums verified)
    4. parity gate: every graph, the stepwise path and (when measurable) class fidelity
    5. golden files written through the runtime, manifest finished, bundle re-verified
    6. one rename into place; below any bar the temporary folder is deleted and ParityError raised
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from lrf.exporter import writer as bw
from lrf.exporter import golden, parity
from lrf.exporter.calibration import (CALIBRATION_SEED0, FIDELITY_SEED0, PARITY_SEED0,
                                      SELECTION_SEED0, fixed_cases, record_trajectories)
from lrf.exporter.targets import ExportContext, get_target
from lrf.exporter.wrappers import build_graphs
from lrf.models.checkpoint import load_checkpoint
from lrf.runtime import Generator


def default_out(checkpoint_dir: str, target: str, precision: str) -> Path:
    return Path("bundles") / f"{Path(checkpoint_dir).name}-{target}-{precision}"


def export_bundle(target: str, checkpoint: str | None = None, out: str | Path | None = None,
                  int8: bool = False, steps: list[int] | None = None,
                  latent_size: int | None = None, options: dict | None = None,
                  parity_images: int = 20, calibration_images: int = 32,
                  fidelity_images: int = 200, log: Callable[[str], None] = print) -> Path:
    """Export ``checkpoint`` (default: the shipped one) for ``target`` and write a verified
    bundle at ``out``; returns its path. ``steps``: N values that get a fused generator graph
    (default: 8 and the checkpoint's default steps). Raises :class:`parity.ParityError` (nothing
    written) when an artifact misses its bar."""
    tgt = get_target(target)  # fails first, listing the valid targets
    precision = "int8" if int8 else "fp32"
    if precision not in tgt.precisions:
        raise ValueError(f"target {target!r} does not support {precision}; it supports "
                         f"{', '.join(tgt.precisions)}")
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt.config
    latent_size = int(latent_size or cfg.latent_size)
    default_steps = int(ckpt.sampling["steps"])
    fused = sorted(set(steps) if steps else tgt.default_fused_steps(default_steps, precision))
    if any(not isinstance(n, int) or n < 1 for n in fused):
        raise ValueError(f"--steps values must be integers >= 1, got {fused}")
    for name, value in (("parity_images", parity_images),
                        ("calibration_images", calibration_images)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    out = Path(out) if out else default_out(ckpt.path, target, precision)
    if out.exists() and not (out / bw.MANIFEST).is_file():
        raise FileExistsError(f"--out {out} exists and is not a bundle; choose another path")
    nc = cfg.num_classes
    traj = dict(ckpt=ckpt, latent_size=latent_size)

    log(f"reference: PyTorch trajectories for {parity_images} parity cases at N = "
        f"{sorted(set(fused) | {default_steps})}")
    labels, seeds = fixed_cases(parity_images, nc, PARITY_SEED0)
    refs = {n: record_trajectories(labels=labels, seeds=seeds, steps=n, **traj)
            for n in sorted(set(fused) | {default_steps})}
    ctx = ExportContext(ckpt=ckpt, graphs=build_graphs(ckpt, fused, image_format=tgt.image_format),
                        out_dir=bw.temp_dir_for(out), precision=precision, fused_steps=fused,
                        latent_size=latent_size, options=dict(options or {}), log=log,
                        references=refs)  # for targets that measure parity themselves (coreml)
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
        manifest = bw.build_manifest(ckpt, tgt, precision, records, fused, latent_size,
                                     fused + [default_steps])
        bw.write_manifest(tmp, manifest)
        bar = parity.IMAGE_PSNR_DB[precision]
        # one intra-op thread: the gate is not latency-bound, and spinning worker threads waste
        # a shared machine's CPU
        gen = Generator.load(tmp, backend=tgt.backend, threads=1) if tgt.backend else None
        try:
            if gen is not None:
                log("parity: measuring every graph through lrf.runtime")
                per_graph, stepwise, failures = parity.measure(gen, refs, default_steps,
                                                               precision, list(records))
            else:
                per_graph, stepwise, failures = tgt.simulated_parity(ctx, records)
            fidelity, fail_f = _class_fidelity(gen, ckpt, fidelity_images, default_steps,
                                               latent_size, precision, log)
            failures += fail_f
            ratios, fail_s = parity.fused_size_check(tmp, {n: r.file for n, r in records.items()})
            failures += fail_s
            for name, ratio in ratios.items():
                manifest["graphs"][name]["size_vs_step_plus_decoder"] = ratio
            for name, res in per_graph.items():
                manifest["graphs"][name]["parity"] = res
            manifest["parity"] = {
                "reference": "pytorch float32 (lrf.models.reference.generate)",
                "cases": {"seeds": seeds, "labels": labels,
                          "guidance": float(ckpt.sampling["guidance"])},
                "bars": {"image_psnr_db": bar, "class_fidelity_drop": parity.CLASS_FIDELITY_DROP,
                         **({"step_rel_max_abs": parity.STEP_REL_MAX_ABS}
                            if precision == "fp32" else {})},
                "simulated": gen is None,
                "stepwise": stepwise, "class_fidelity": fidelity, "passed": not failures}
            if failures:
                raise parity.ParityError(failures)
            g_labels, g_seeds = [golden.GOLDEN_LABEL % nc], [golden.GOLDEN_SEED]
            g_ref = record_trajectories(labels=g_labels, seeds=g_seeds, steps=default_steps,
                                        **traj)
            manifest["golden"] = golden.write_golden(tmp, g_ref, gen, list(ckpt.classes), bar)
        finally:
            if gen is not None:
                gen.close()
        bw.write_manifest(tmp, manifest)
        if tgt.backend:  # the finished bundle must load (schema, every checksum) before commit
            Generator.load(tmp, backend=tgt.backend).close()
        bw.commit(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out}")
    return out


def _class_fidelity(gen, ckpt, count, steps, latent_size, precision, log):
    """Measured only at the trained latent size, with the classifier present; else recorded as
    not measured with the reason."""
    if gen is None:
        return {"measured": False, "reason": "no runtime backend for this target here"}, []
    if latent_size != ckpt.config.latent_size:
        return {"measured": False, "reason": f"latent size {latent_size} is not the trained "
                f"size {ckpt.config.latent_size}"}, []
    if parity.class_fidelity_function()[0] is None:
        return {"measured": False, "reason": parity.class_fidelity_function()[1]}, []
    if count < 1:
        return {"measured": False, "reason": "disabled (--fidelity-images 0)"}, []
    log(f"class fidelity: {count} images, bundle vs PyTorch reference")
    labels, seeds = fixed_cases(count, ckpt.config.num_classes, FIDELITY_SEED0)
    ref = record_trajectories(ckpt, labels, seeds, steps=steps, latent_size=latent_size)
    return parity.measure_class_fidelity(gen, ref, None, precision)
