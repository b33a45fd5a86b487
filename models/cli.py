"""``lrf-generate``: make images from a checkpoint (PyTorch reference) or a bundle (lrf.runtime).

    lrf-generate --checkpoint DIR --class cat --seed 0 --steps 50 --guidance 3.0 --out cat.png
    lrf-generate --grid grid.png                       # one row per class, default checkpoint
    lrf-generate --bundle BUNDLE --class cat --out cat.png   # no torch needed
    lrf-generate --bundle BUNDLE --init-image in.png --strength 0.6 --class dog --out dog.png
    lrf-generate --checkpoint DIR --init-image in.png --mask keep.png --class dog --out dog.png

Editing: --init-image starts from a photo of the model's size (img2img); --strength in [0, 1]
(1 ignores the photo, 0 returns its codec round trip; default 0.8, or 1.0 with --mask);
--mask is a KEEP mask of the same size: white keeps the photo, black is repainted.

This module imports torch only on the --checkpoint path, so a runtime-only install can use it.
It lives in ``lrf.models`` (not the ground layer ``lrf``) because it drives both the PyTorch
reference (``lrf.models``) and the bundle runtime (``lrf.runtime``).
"""

from __future__ import annotations

from lrf.cli import guard_startup

guard_startup("lrf-generate", __name__ == "__main__")  # Ctrl-C during the imports: 1 line

import argparse

from lrf.cli import CLIError, Parser, atomic_output, check_output, entry, int_arg, missing_extra, \
    print_result
import math
import os
import sys

import numpy as np


def _finite(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be finite, got {s!r}")
    return v


def _guidance(s: str) -> float:
    """--guidance under the one rule of every path (lrf.runtime.scheduler.check_guidance): the
    PyTorch reference used to take 1e39 and write an all-black image."""
    from lrf.runtime.scheduler import check_guidance

    v = _finite(s)
    try:
        check_guidance(v)
        return v
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _seed(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed must be an integer, got {s!r}") from None
    if not 0 <= v < 2**64:
        raise argparse.ArgumentTypeError(f"--seed must be in [0, 2^64), got {v}")
    return v


def _strength(s: str) -> float:
    v = _finite(s)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"--strength must be in [0, 1], got {s!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="lrf-generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="checkpoint folder (default: the one default model, "
                          "models/weights/cifar10-turbo; lrf/defaults.py)")
    src.add_argument("--bundle", nargs="?", const="", default=None,
                     help="exported bundle folder, run through lrf.runtime (no torch); with no "
                          "folder, the prebuilt turbo int8 bundle in models/bundles/")
    p.add_argument("--class", dest="cls", default=None, help="class name or index")
    p.add_argument("--prompt", action="append", default=None,
                   help="text models: what to draw (repeat it for one --grid row per prompt)")
    p.add_argument("--style", default=None,
                   help="text models: one of the model's styles (default: none, any style)")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--steps", type=int_arg("--steps", 1, 1000), default=None,
                   help="Euler steps, at most 1000 (default: the model's own)")
    p.add_argument("--guidance", type=_guidance, default=None,
                   help="CFG scale in [0, 20] (default: the model's own)")
    p.add_argument("--mode", choices=["fused", "stepwise"], default=None,
                   help="bundle only: fused generator graph or step graph + decoder")
    p.add_argument("--backend", default="onnxruntime", help="bundle only: runtime backend")
    p.add_argument("--out", default=None, help="PNG for one image (a name ending in .png)")
    p.add_argument("--grid", default=None, help="PNG grid, one row per class (.png)")
    p.add_argument("--per-class", type=int_arg("--per-class", 1, 100), default=10,
                   help="grid columns (seeds 0..N-1), at most 100")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--init-image", default=None, help="edit this RGB image (PNG/JPEG)")
    p.add_argument("--strength", type=_strength, default=None,
                   help="edit strength in [0, 1] (default 0.8; 1.0 with --mask)")
    p.add_argument("--mask", default=None, help="keep mask PNG: white = keep, black = repaint")
    p.add_argument("--tiling", choices=["auto", "on", "off"], default="auto",
                   help="bundle only: decode large images in tiles (default: above 256 px)")
    return p


def read_picture(path: str, flag: str, size: tuple[int, int] | None = None):
    """A PIL image fully read from ``path``; FileNotFoundError / ValueError naming the flag.
    ``size`` (width, height), the size the model needs: a picture of more than 4x its pixels is
    refused from its header, before a pixel is decoded (a small PNG can inflate to gigabytes);
    the exact size is judged after, by :mod:`lrf.editing`."""
    import warnings

    from PIL import Image

    if not os.path.lexists(path):
        raise FileNotFoundError(f"{flag} {path!r} does not exist")
    if not os.path.isfile(path):
        raise ValueError(f"{flag} {path!r} is not a regular file; give a PNG or JPEG")
    try:
        with warnings.catch_warnings():  # PIL's bomb warning, an error here: one line, ours
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if size is not None and im.size[0] * im.size[1] > 4 * size[0] * size[1]:
                    raise _TooLarge(im.size)
                im.load()
                return im.copy()
    except _TooLarge as e:
        (w, h), (want_w, want_h) = e.args[0], size
        raise ValueError(f"{flag} {path!r} is {w}x{h}, far larger than the {want_w}x{want_h} "
                         f"images this model makes; resize it to {want_w}x{want_h}") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ValueError(f"{flag} {path!r} declares more pixels than an image can have here "
                         "(a decompression bomb?); give a PNG or JPEG of the model's size") \
            from None
    except Exception as e:  # PIL raises many types (UnidentifiedImageError, bomb errors, ...)
        raise ValueError(f"cannot read {flag} {path!r} as an image ({type(e).__name__}); "
                         "give a PNG or JPEG") from None


class _TooLarge(Exception):
    pass


def edit_inputs(args, height: int, width: int, channels: int = 3):
    """The validated --init-image (uint8 [H,W,3], or [H,W,4] for an RGBA model) and --mask
    (bool keep mask or None)."""
    from lrf import editing

    image = editing.check_image(read_picture(args.init_image, "--init-image", (width, height)),
                                height, width, what=f"--init-image {args.init_image!r}",
                                channels=channels)
    mask = None if args.mask is None else editing.keep_pixels(
        read_picture(args.mask, "--mask", (width, height)), height, width,
        what=f"--mask {args.mask!r}")
    return image, mask


def save_png(array: np.ndarray, path: str, flag: str = "--out") -> None:
    """uint8 HWC -> PNG, atomically (no temporary is left behind on any error)."""
    from PIL import Image

    with atomic_output(path, flag) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


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
    try:
        from lrf.models.checkpoint import load_checkpoint
        from lrf.models.reference import generate, to_uint8
    except ModuleNotFoundError as e:  # a runtime-only install: say which extra, in one line
        line = missing_extra(e, "generating without --bundle (the PyTorch reference)")
        if line is None:
            raise
        raise CLIError(f"{line}; or pass --bundle to run the prebuilt bundle without torch") \
            from None

    ckpt = load_checkpoint(args.checkpoint)
    if args.guidance is None:   # the checkpoint's own default obeys the same rule
        from lrf.runtime.scheduler import check_guidance

        try:
            check_guidance(ckpt.sampling.get("guidance", 3.0))
        except ValueError as e:
            raise ValueError(f"checkpoint {args.checkpoint or 'default'}: sampling.{e}") from None
    if ckpt.config.text_dim:
        return _torch_text_images(args, ckpt)
    if args.prompt or args.style is not None:
        raise ValueError(f"checkpoint {args.checkpoint or 'default'} is class-conditioned: "
                         "pass --class, not --prompt/--style")
    labels = [ckpt.class_index(c) for c in labels] if labels else None
    if args.init_image:
        from lrf.models.reference import edit

        side = ckpt.config.latent_size * ckpt.codec.scale_factor
        image, mask = edit_inputs(args, side, side)
        return ckpt.classes, labels, (lambda lab, sd: to_uint8(edit(
            ckpt, image, lab[0], sd[0], _edit_strength(args), mask, steps=args.steps,
            guidance=args.guidance, on_step=_Progress(not args.no_progress))))
    return ckpt.classes, labels, (lambda lab, sd: to_uint8(generate(
        ckpt, lab, sd, steps=args.steps, guidance=args.guidance,
        on_step=_Progress(not args.no_progress))))


def _torch_text_images(args, ckpt):
    """(row names, style labels, run) for a text checkpoint: one prompt per image."""
    from lrf.models.reference import edit, generate, to_uint8

    if args.cls is not None:
        raise ValueError(f"checkpoint {args.checkpoint} is text-to-image: pass --prompt TEXT "
                         f"(and --style, one of {', '.join(ckpt.classes)}), not --class")
    if not args.prompt:
        raise ValueError(f"checkpoint {args.checkpoint} is text-to-image: pass --prompt TEXT")
    style = ckpt.config.null_class
    if args.style is not None:
        if args.style not in ckpt.classes:
            raise ValueError(f"unknown --style {args.style!r}; valid: {', '.join(ckpt.classes)}")
        style = ckpt.classes.index(args.style)
    prompts = list(args.prompt)
    progress = _Progress(not args.no_progress)
    if args.init_image:
        side = ckpt.config.latent_size * ckpt.codec.scale_factor
        image, mask = edit_inputs(args, side, side, channels=4)
        return prompts, [0], (lambda lab, sd: to_uint8(edit(
            ckpt, image, style, sd[0], _edit_strength(args), mask, steps=args.steps,
            guidance=args.guidance, on_step=progress, prompt=prompts[0])))
    return prompts, [0], (lambda rows, sd: to_uint8(generate(
        ckpt, [style] * len(rows), sd, steps=args.steps, guidance=args.guidance,
        on_step=progress, prompts=[prompts[r] for r in rows])))


def _edit_strength(args) -> float:
    """diffusers' defaults: 0.8 for img2img, 1.0 for inpainting."""
    return args.strength if args.strength is not None else (1.0 if args.mask else 0.8)


def _bundle_images(args, labels, seeds):
    from lrf.runtime import Generator

    gen = Generator.load(args.bundle or None, backend=args.backend)
    gen.tiling = args.tiling
    if gen.takes_prompt or getattr(args, "prompt", None):
        return _bundle_text_images(args, gen)
    labels = [gen.class_index(c) for c in labels] if labels else None
    if args.init_image:
        _, h, w = gen.latent_shape
        image, mask = edit_inputs(args, 8 * h, 8 * w)
        return gen.classes, labels, (lambda lab, sd: gen.edit(
            image, lab[0], sd[0], _edit_strength(args), mask, steps=args.steps,
            guidance=args.guidance, mode=args.mode, on_step=_Progress(not args.no_progress))[None])

    def run(lab, sd):
        return np.stack([gen.generate(l, s, steps=args.steps, guidance=args.guidance,
                                      mode=args.mode, on_step=_Progress(not args.no_progress))
                         for l, s in zip(lab, sd)])
    return gen.classes, labels, run


def _bundle_text_images(args, gen):
    """(row names, style labels, run) for a schema v3 text bundle: one prompt per grid row,
    each prompt encoded once (``Generator``'s prompt cache) whatever the seeds."""
    prompts = list(getattr(args, "prompt", None) or [])
    if not gen.takes_prompt:
        raise ValueError(f"bundle {args.bundle or 'default'} is class-conditioned: pass "
                         "--class, not --prompt/--style")
    if args.cls is not None or not prompts:
        raise ValueError(f"bundle {args.bundle or 'default'} is text-to-image: pass --prompt "
                         f"TEXT (and --style, one of {', '.join(gen.classes)}), not --class")
    style = getattr(args, "style", None)
    if style is not None:
        gen.style_index(style)   # an unknown style fails before any sampling
    progress = _Progress(not args.no_progress)
    if args.init_image:
        _, h, w = gen.latent_shape
        image, mask = edit_inputs(args, 8 * h, 8 * w, channels=gen.channels)
        return prompts, [0], (lambda lab, sd: gen.edit(
            image, None, sd[0], _edit_strength(args), mask, steps=args.steps,
            guidance=args.guidance, mode=args.mode, on_step=progress, prompt=prompts[0],
            style=style)[None])
    return prompts, [0], (lambda rows, sd: gen.generate_batch(
        None, list(sd), steps=args.steps, guidance=args.guidance, mode=args.mode,
        on_step=progress, prompts=[prompts[r] for r in rows], styles=[style] * len(rows)))


def _outside_the_bundle(path: str, flag: str, bundle: str | None) -> None:
    """A bundle holds only the files its manifest lists: writing an image into the bundle being
    read would make the next load refuse it (an unlisted file), or overwrite one of its files."""
    if not bundle:
        return
    root = os.path.realpath(bundle)
    target = os.path.realpath(path)
    if os.path.isdir(root) and os.path.commonpath([root, target]) == root:
        raise ValueError(f"{flag} {path!r} is inside the bundle folder {bundle!r}; write the "
                         "image elsewhere (a bundle holds only the files its manifest lists)")


def _png_name(path: str, flag: str) -> None:
    """lrf-generate writes PNG; a name saying another format (``x.jpg``) would hold PNG bytes
    that viewers and uploaders judging by the suffix misread, so it is refused up front."""
    suffix = os.path.splitext(path)[1]
    if suffix.lower() != ".png":
        what = f"a {suffix} name" if suffix else "a name without .png"
        raise ValueError(f"{flag} {path!r} is {what}, but lrf-generate writes PNG only; give a "
                         "file name ending in .png")


@entry("lrf-generate")  # one error line, Ctrl-C 130; no traceback
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.out and not args.grid:
        print("lrf-generate: error: nothing to write: pass --out FILE.png and/or --grid FILE.png",
              file=sys.stderr)
        return 2
    if args.out and args.cls is None and not args.prompt:
        print("lrf-generate: error: --out needs --class NAME (or --prompt TEXT for a text "
              "model)", file=sys.stderr)
        return 2
    if args.out and args.prompt and len(args.prompt) > 1:
        print("lrf-generate: error: --out draws one prompt; give several --prompt only with "
              "--grid", file=sys.stderr)
        return 2
    edit_flag = next((f for f, v in (("--strength", args.strength), ("--mask", args.mask))
                      if v is not None), None)
    if edit_flag and not args.init_image:
        print(f"lrf-generate: error: {edit_flag} needs --init-image FILE.png (the picture to "
              "edit)", file=sys.stderr)
        return 2
    if args.init_image and (args.grid or not args.out):
        print("lrf-generate: error: --init-image makes one image: pass --out FILE.png and no "
              "--grid", file=sys.stderr)
        return 2
    # a ValueError / OSError below is one line and exit 2 from lrf.cli.run (which also knows
    # when it is an interrupt a library rewrapped: then 'interrupted' and 130)
    for flag, path in (("--out", args.out), ("--grid", args.grid)):
        if path:
            check_output(path, flag)  # before minutes of sampling
            _outside_the_bundle(path, flag, args.bundle)
            _png_name(path, flag)
    backend = _bundle_images if args.bundle is not None else _torch_images
    classes, labels, run = backend(args, [args.cls] if args.cls is not None else [], None)
    if args.prompt:   # a text model: the rows are prompts, the first one drawn by --out
        style = f", style {args.style}" if args.style else ""
        first, what = 0, f"prompt {short_repr(classes[0])}{style}"
        rows_are = "prompt rows"
    else:
        first = labels[0] if labels else None
        what, style, rows_are = (f"class {classes[first]}" if labels else ""), "", "rows"
    if args.out:
        save_png(run([first], [args.seed])[0], args.out)
        how = f", strength {_edit_strength(args)}" if args.init_image else ""
        print_result(f"wrote {args.out} ({what}, seed {args.seed}{how})")
    if args.grid:
        k = args.per_class
        rows = [r for r in range(len(classes)) for _ in range(k)]
        imgs = run(rows, list(range(k)) * len(classes))
        save_png(make_grid(imgs, len(classes)), args.grid, "--grid")
        print_result(f"wrote {args.grid} ({len(classes)} {rows_are} x {k} seeds{style})")
    return 0


def short_repr(text: str, limit: int = 80) -> str:
    r = repr(text)
    return r if len(r) <= limit else r[:limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
