"""Steering measured (issue 16): edit real test images of one class toward another and count how
often the shipped classifier then predicts the target class.

    python -m lrf.models.steering --data ../shared/data/cifar10/cifar10-jpeg.tar.gz \\
        --source cat --target dog --images 100 --strengths 0.5,0.7,0.9

Prints a markdown table (strength, target-class rate, source-class rate) and, with ``--json``,
writes the rows. The PyTorch reference ``edit_batch`` does the editing (seeds 0..n-1).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def steering(data: str, source: str, target: str, images: int = 100,
             strengths=(0.5, 0.7, 0.9), steps: int | None = None, guidance: float | None = None,
             checkpoint: str | None = None) -> list[dict]:
    """One row per strength (plus strength 0, the codec round trip, as the baseline)."""
    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.classifier import load_classifier, logits_and_features
    from lrf.models.reference import edit_batch, to_uint8
    from lrf.training.data import load_image_folder

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lrf.models.steering", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="CIFAR-10 image folder or .tar.gz")
    p.add_argument("--source", default="cat")
    p.add_argument("--target", default="dog")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--strengths", default="0.5,0.7,0.9")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    try:
        rows = steering(a.data, a.source, a.target, a.images,
                        [float(v) for v in a.strengths.split(",")], a.steps, a.guidance,
                        a.checkpoint)
    except (ValueError, OSError) as e:
        print(f"steering: error: {e}", file=sys.stderr)
        return 2
    print(f"| strength | predicted {a.target} | predicted {a.source} |\n|---|---|---|")
    for r in rows:
        print(f"| {r['strength']:.1f} | {r['target_rate']:.2f} | {r['source_rate']:.2f} |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
