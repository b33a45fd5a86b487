"""``lrf-generate``: make images from a checkpoint (PyTorch reference) or a bundle (lrf.runtime).

    lrf-generate --checkpoint DIR --class cat --seed 0 --steps 50 --guidance 3.0 --out cat.png
    lrf-generate --grid grid.png                       # one row per class, shipped checkpoint
    lrf-generate --bundle BUNDLE --class cat --out cat.png   # no torch needed

This module imports torch only on the --checkpoint path, so a runtime-only install can use it.
"""

from __future__ import annotations

import argparse

from lrf.cli import Parser
import math
import os
import sys

import numpy as np


def _steps(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--steps must be an integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"--steps must be >= 1, got {v}")
    return v


def _finite(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be finite, got {s!r}")
    return v


def _seed(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed must be an integer, got {s!r}") from None
    if not 0 <= v < 2**64:
        raise argparse.ArgumentTypeError(f"--seed must be in [0, 2^64), got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="lrf-generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="checkpoint folder (default: the shipped cifar10 one)")
    src.add_argument("--bundle", help="exported bundle folder, run through lrf.runtime")
    p.add_argument("--class", dest="cls", default=None, help="class name or index")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--steps", type=_steps, default=None, help="Euler steps (default: 50)")
    p.add_argument("--guidance", type=_finite, default=None, help="CFG scale (default: 3.0)")
    p.add_argument("--mode", choices=["fused", "stepwise"], default=None,
                   help="bundle only: fused generator graph or step graph + decoder")
    p.add_argument("--backend", default="onnxruntime", help="bundle only: runtime backend")
    p.add_argument("--out", default=None, help="PNG for one image")
    p.add_argument("--grid", default=None, help="PNG grid, one row per class")
    p.add_argument("--per-class", type=_steps, default=10, help="grid columns (seeds 0..N-1)")
    p.add_argument("--no-progress", action="store_true")
    return p


def save_png(array: np.ndarray, path: str) -> None:
    """uint8 HWC -> PNG, atomically."""
    from PIL import Image

    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise FileNotFoundError(f"output folder {d!r} does not exist")
    tmp = f"{path}.tmp{os.getpid()}.png"
    Image.fromarray(array).save(tmp)
    os.replace(tmp, path)


def make_grid(images: np.ndarray, rows: int) -> np.ndarray:
    """[R*C,H,W,3] uint8 -> one [R*H, C*W, 3] image."""
    n, h, w, c = images.shape
    cols = n // rows
    return images.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


class _Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()

    def __call__(self, i: int, n: int):
        if self.enabled:
            bar = "#" * (30 * i // n)
            print(f"\r[{bar:<30}] {i}/{n}", end="\n" if i == n else "", file=sys.stderr, flush=True)
        return True


def _torch_images(args, labels, seeds):
    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.reference import generate, to_uint8

    ckpt = load_checkpoint(args.checkpoint)
    labels = [ckpt.class_index(c) for c in labels] if labels else None
    return ckpt.classes, labels, (lambda lab, sd: to_uint8(generate(
        ckpt, lab, sd, steps=args.steps, guidance=args.guidance,
        on_step=_Progress(not args.no_progress))))


def _bundle_images(args, labels, seeds):
    from lrf.runtime import Generator

    gen = Generator.load(args.bundle, backend=args.backend)
    labels = [gen.class_index(c) for c in labels] if labels else None

    def run(lab, sd):
        return np.stack([gen.generate(l, s, steps=args.steps, guidance=args.guidance,
                                      mode=args.mode, on_step=_Progress(not args.no_progress))
                         for l, s in zip(lab, sd)])
    return gen.classes, labels, run


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.out and not args.grid:
        print("lrf-generate: error: nothing to write: pass --out FILE.png and/or --grid FILE.png",
              file=sys.stderr)
        return 2
    if args.out and args.cls is None:
        print("lrf-generate: error: --out needs --class NAME", file=sys.stderr)
        return 2
    try:
        backend = _bundle_images if args.bundle else _torch_images
        classes, labels, run = backend(args, [args.cls] if args.cls is not None else [], None)
        if args.out:
            img = run(labels, [args.seed])[0]
            save_png(img, args.out)
            print(f"wrote {args.out} (class {classes[labels[0]]}, seed {args.seed})")
        if args.grid:
            k = args.per_class
            lab = [c for c in range(len(classes)) for _ in range(k)]
            imgs = run(lab, list(range(k)) * len(classes))
            save_png(make_grid(imgs, len(classes)), args.grid)
            print(f"wrote {args.grid} ({len(classes)} rows x {k} seeds)")
    except (ValueError, FileNotFoundError, OSError, InterruptedError) as e:
        print(f"lrf-generate: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
