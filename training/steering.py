"""Steering measured (issue 16): edit real test images of one class toward another and count how
often the shipped classifier then predicts the target class.

    python -m lrf.training.steering --data ../shared/data/cifar10/cifar10-jpeg.tar.gz \\
        --source cat --target dog --images 100 --strengths 0.5,0.7,0.9

Prints a markdown table (strength, target-class rate, source-class rate) and, with ``--json``,
writes the rows. The PyTorch reference ``edit_batch`` does the editing (seeds 0..n-1).
"""

from __future__ import annotations

import argparse
import json
import sys

from lrf.cli import Parser, atomic_output, check_output, entry, float_arg, int_arg


def steering(data: str, source: str, target: str, images: int = 100,
             strengths=(0.5, 0.7, 0.9), steps: int | None = None, guidance: float | None = None,
             checkpoint: str | None = None) -> list[dict]:
    """One row per strength (plus strength 0, the codec round trip, as the baseline)."""
    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.classifier import load_classifier, logits_and_features
    from lrf.models.reference import edit_batch, to_uint8
    from lrf.training.data import load_image_folder

    if images < 1:
        raise ValueError(f"images must be >= 1, got {images}")
    ckpt = load_checkpoint(checkpoint)
    src, tgt = ckpt.class_index(source), ckpt.class_index(target)
    ds = load_image_folder(data, split="test")
    x = ds.images[ds.labels == src][:images]
    if len(x) < images:
        raise ValueError(f"only {len(x)} test images of class {source!r} in {data!r}")
    clf, _ = load_classifier()
    rows = []
    for s in (0.0, *strengths):
        out = to_uint8(edit_batch(ckpt, list(x), [tgt] * images, list(range(images)), s,
                                  steps=steps, guidance=guidance))
        pred = logits_and_features(clf, out)[0].argmax(1).numpy()
        rows.append({"strength": s, "images": images, "target_rate": float((pred == tgt).mean()),
                     "source_rate": float((pred == src).mean())})
    return rows


PROG = "lrf.training.steering"


def _strengths(text: str) -> list[float]:
    """``--strengths``: comma-separated numbers in [0, 1], one clear message otherwise."""
    parse = float_arg("--strengths", 0.0, 1.0)
    try:
        return [parse(v.strip()) for v in text.split(",")]
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e} (a comma-separated list such as 0.5,0.7,0.9)") \
            from None


@entry(PROG)
def main(argv: list[str] | None = None) -> int:
    p = Parser(prog=PROG, description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="CIFAR-10 image folder or .tar.gz")
    p.add_argument("--source", default="cat")
    p.add_argument("--target", default="dog")
    p.add_argument("--images", type=int_arg("--images", 1), default=100)
    p.add_argument("--strengths", type=_strengths, default="0.5,0.7,0.9")
    p.add_argument("--steps", type=int_arg("--steps", 1), default=None)
    p.add_argument("--guidance", type=float_arg("--guidance"), default=None)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--json", default=None, help="write the rows here (checked before the run)")
    a = p.parse_args(argv)
    if a.json:
        check_output(a.json, "--json")
    rows = steering(a.data, a.source, a.target, a.images, a.strengths, a.steps, a.guidance,
                    a.checkpoint)
    print(f"| strength | predicted {a.target} | predicted {a.source} |\n|---|---|---|")
    for r in rows:
        print(f"| {r['strength']:.1f} | {r['target_rate']:.2f} | {r['source_rate']:.2f} |")
    if a.json:
        with atomic_output(a.json, "--json") as tmp:
            tmp.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
