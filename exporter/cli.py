"""``lrf-export``: export a checkpoint to a verified bundle, or re-verify a bundle.

    lrf-export --target onnx                       # fp32, the default checkpoint (turbo)
    lrf-export --target onnx --int8 --checkpoint DIR --out bundles/cifar10-int8
    lrf-export --check bundles/cifar10-onnx-int8    # checksums + golden image through lrf.runtime
    lrf-export --target coreml --int8               # Core ML, int8 weights, fp16 compute
    lrf-export --target all --int8                  # every target: bundles/cifar10-int8/<target>/
                                                    # (targets whose packages are missing: skipped)

Every export passes the parity gate (runtime/BUNDLE.md section 5) or writes nothing and exits 1
naming the artifact and its margin. Usage and input errors exit 2.
"""

from __future__ import annotations

from lrf.cli import guard_startup

guard_startup("lrf-export", __name__ == "__main__")  # Ctrl-C during the imports: 1 line

import argparse
import sys

from lrf.cli import Parser, entry, int_arg


_int_at_least = int_arg  # lrf/cli.py: one integer parser for every CLI
# Upper bounds, so a typo fails at once with one line instead of allocating gigabytes or
# running for days: steps as the runtime (runtime/scheduler.py MAX_STEPS), a latent of at most
# 512 (4096-pixel images), at most 10,000 gate / calibration / fidelity images, batch 256.
MAX_STEPS, MAX_LATENT, MAX_IMAGES, MAX_BATCH = 1000, 512, 10_000, 256


def _positive(flag: str, hi: int | None = None):
    return _int_at_least(flag, 1, hi)


def _non_negative(flag: str, hi: int | None = None):
    return _int_at_least(flag, 0, hi)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="lrf-export", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", help="export target: onnx, coreml, executorch, or all (one "
                   "bundle per target under OUT/<target>/; see runtime/BUNDLE.md section 7)")
    p.add_argument("--int8", action="store_true", help="int8 graphs (calibrated, measured)")
    p.add_argument("--steps", type=_positive("--steps", MAX_STEPS), nargs="+", default=None,
                   metavar="N",
                   help="step counts the parity gate generates whole images at, besides the "
                        "checkpoint's default (default: 8; turbo checkpoints: 1 2 4); the bundle "
                        "runs any N")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint folder (default: models/weights/cifar10-turbo, the one "
                        "default model of lrf.defaults)")
    p.add_argument("--out", default=None,
                   help="bundle folder (default: bundles/<checkpoint>-<target>-<precision>)")
    p.add_argument("--latent-size", type=_positive("--latent-size", MAX_LATENT), default=None,
                   help="latent height = width of the denoise graph (default: trained size; "
                        "other sizes are for cost measurements)")
    p.add_argument("--parity-images", type=_positive("--parity-images", MAX_IMAGES), default=20,
                   help="fixed (seed, class) cases for the parity gate (default 20)")
    p.add_argument("--calibration-images", type=_positive("--calibration-images", MAX_IMAGES),
                   default=32,
                   help="int8: trajectories recorded for calibration (default 32)")
    p.add_argument("--fidelity-images", type=_non_negative("--fidelity-images", MAX_IMAGES),
                   default=200,
                   help="images for the class-fidelity check when the classifier exists "
                        "(default 200; 0 disables and records it as not measured)")
    p.add_argument("--fused-form", choices=["loop", "unrolled"], default="loop",
                   help="onnx: fused generator as an ONNX Loop over the step graph (default; "
                        "file = step + decoder for any N, fast to load) or N unrolled copies")
    compute = p.add_mutually_exclusive_group()
    compute.add_argument("--fp16", dest="compute_precision", action="store_const", const="fp16",
                         help="coreml: compute in float16, Core ML's native GPU/Neural Engine "
                              "precision (default)")
    compute.add_argument("--fp32", dest="compute_precision", action="store_const", const="fp32",
                         help="coreml: compute in float32 (CPU/GPU only)")
    p.add_argument("--palettize", type=int, choices=(4, 6, 8), default=None, metavar="{4,6,8}",
                   help="coreml: k-means palettised weights with 2^N entries (instead of "
                        "--int8; same 25 dB bar)")
    p.add_argument("--int8-variant", default=None,
                   choices=("weight_only", "weight_only_int4", "dynamic_int4", "static_qdq",
                            "static_qdq_float_edges", "dynamic"),
                   help="onnx --int8: build this variant only, without scoring the candidates "
                        "(faster at large --latent-size; the parity gate still runs); "
                        "dynamic_int4 is for denoise only (the codec graphs then take "
                        "weight_only), and denoise takes weight_only for the QDQ and dynamic "
                        "variants")
    p.add_argument("--batch", type=_positive("--batch", MAX_BATCH), default=None,
                   help="coreml/executorch: the fixed batch size of every graph (default 1)")
    p.add_argument("--window", type=_positive("--window", MAX_STEPS), default=None, metavar="K",
                   help="coreml/executorch: steps per denoise call, unrolled (default 1, which "
                        "runs any N; K > 1 runs N divisible by K in fewer calls)")
    p.add_argument("--check", metavar="BUNDLE", default=None,
                   help="re-verify an existing bundle instead of exporting")
    p.add_argument("--backend", default=None, help="--check: runtime backend (default: the "
                   "target's)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


@entry("lrf-export")  # one error line, Ctrl-C 130, SIGTERM 143 (the temporary folder is removed)
def main(argv: list[str] | None = None) -> int:
    return _run(build_parser().parse_args(argv))


def _run(args) -> int:
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    if args.check is None and args.target is None:
        print("lrf-export: error: pass --target TARGET to export, or --check BUNDLE",
              file=sys.stderr)
        return 2
    # a ValueError / OSError below is one line and exit 2 from lrf.cli.run (which also knows
    # when it is an interrupt a library rewrapped: then 'interrupted' and 130)
    if args.check is not None:
        from lrf.exporter.check import check_bundle

        report = check_bundle(args.check, backend=args.backend)
        print(report)
        return 0
    from lrf.exporter.parity import ParityError
    from lrf.exporter.export import export_bundle

    targets, outs = _targets_and_outs(args)
    failed = []
    for target, out_dir in zip(targets, outs):
        try:
            out = export_bundle(target, checkpoint=args.checkpoint, out=out_dir,
                                int8=args.int8 or args.palettize is not None,
                                steps=args.steps, latent_size=args.latent_size,
                                parity_images=args.parity_images,
                                calibration_images=args.calibration_images,
                                fidelity_images=args.fidelity_images, log=log,
                                options=_target_options(args, target))
        except ParityError as e:  # --target all: the other targets are still written
            print(f"lrf-export: error: {target}: {e}", file=sys.stderr)
            failed.append(target)
            continue
        print(out)
    if failed:
        return 1
    return 0


_TARGET_FLAGS = {"compute_precision": ("--fp16/--fp32", {"coreml"}),
                 "palettize": ("--palettize", {"coreml"}),
                 "batch": ("--batch", {"coreml", "executorch"}),
                 "window": ("--window", {"coreml", "executorch"}),
                 "int8_variant": ("--int8-variant", {"onnx"})}


def _target_options(args, target: str) -> dict:
    """The target-specific options of ``target`` (flags other targets ignore under ``all``)."""
    opts = {"fused_form": args.fused_form}
    for key, (_, owners) in _TARGET_FLAGS.items():
        if getattr(args, key) is not None and target in owners:
            opts[key] = getattr(args, key)
    return opts


def _targets_and_outs(args) -> tuple[list[str], list]:
    """``--target all``: every available target, bundles under OUT/<target>/ (OUT defaults to
    bundles/<checkpoint>-<precision>); otherwise the one target and --out. Flags that the
    chosen target does not use are refused."""
    from pathlib import Path

    from lrf.exporter.targets import available_targets, known_targets, why_unavailable
    from lrf.models.checkpoint import DEFAULT_CHECKPOINT

    if args.int8_variant is not None and not args.int8:
        raise ValueError("--int8-variant needs --int8")
    if args.palettize is not None and args.int8:
        raise ValueError("--palettize and --int8 are alternatives (both compress the weights); "
                         "pass one")
    if args.target != "all":
        for key, (flag, owners) in _TARGET_FLAGS.items():
            if getattr(args, key) is not None and args.target not in owners:
                raise ValueError(f"{flag} applies to --target {' / '.join(sorted(owners))}, "
                                 f"not {args.target}")
        return [args.target], [args.out]
    precision = "int8" if args.int8 or args.palettize is not None else "fp32"
    root = Path(args.out) if args.out else \
        Path("bundles") / f"{Path(args.checkpoint or DEFAULT_CHECKPOINT).name}-{precision}"
    targets = available_targets()
    for name in known_targets():
        if name not in targets:  # said once, on stderr: the other targets are still exported
            print(f"lrf-export: skipping --target {name}: {why_unavailable(name)}",
                  file=sys.stderr)
    if not targets:
        raise ValueError("--target all: no export target is available in this install; "
                         "pip install 'lrf-mobile[export]'")
    return targets, [root / t for t in targets]


if __name__ == "__main__":
    sys.exit(main())
