"""Old vs new decoder, measured: ``python -m lrf.training.decoder_report OLD NEW --json ...``.

Both decoders decode the same sample latents and the same test images' latents; the report gives
classifier fidelity, Frechet distance, codec MSE and the artefact rates below for each, so a
decoder fine-tune (``lrf-train decoder``, :mod:`lrf.training.decoder`) is judged by what it
changes in the pictures.

Artefact measure: a checkerboard score (share of the luma spectrum on the Nyquist row and column)
and a colour-speckle score (high-pass energy of the opponent chroma channels); an image is flagged
when either is above the 99.5th percentile of the same score over real images.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from lrf.models.codec import Codec
from lrf.training.ae import reconstruction_mse
from lrf.training.data import load_image_folder


# ---------------------------------------------------------------- artefact measure
def artefact_scores(images_u8: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image checkerboard and colour-speckle scores of uint8 NHWC images.

    * ``nyquist``: the share of the luma's AC spectral energy on the Nyquist row and column
      (period-2 stripes and checkerboards, the typical transposed/nearest-upsampling artefact).
    * ``chroma_hf``: mean squared high-pass (image minus its 3x3 box blur) of the two opponent
      chroma channels, on the [0, 1] scale: per-pixel colour noise that luma does not explain.
    """
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).double() / 255.0
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b                                  # [B,H,W]
    p = torch.fft.fft2(luma - luma.mean(dim=(1, 2), keepdim=True)).abs() ** 2
    h, w = luma.shape[1:]
    nyq = p[:, h // 2, :].sum(1) + p[:, :, w // 2].sum(1) - p[:, h // 2, w // 2]
    nyquist = (nyq / p.sum(dim=(1, 2)).clamp_min(1e-12)).numpy()
    chroma = torch.stack([b - luma, r - luma], 1)                             # [B,2,H,W]
    hp = chroma - F.avg_pool2d(F.pad(chroma, (1, 1, 1, 1), mode="replicate"), 3, 1)
    return {"nyquist": nyquist, "chroma_hf": hp.pow(2).mean(dim=(1, 2, 3)).numpy()}


def artefact_thresholds(real_u8: np.ndarray, quantile: float = 0.995) -> dict[str, float]:
    """Flag thresholds: the ``quantile`` of each score over real images (so ~0.5% of real
    images are flagged by construction)."""
    return {k: float(np.quantile(v, quantile)) for k, v in artefact_scores(real_u8).items()}


def artefact_flags(images_u8: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    """Boolean [N]: checkerboard or colour speckle above the real-image thresholds."""
    s = artefact_scores(images_u8)
    return np.logical_or.reduce([s[k] > thresholds[k] for k in thresholds])


# ---------------------------------------------------------------- old vs new report
def _grid_png(rows: list[np.ndarray], path: str, scale: int = 3) -> None:
    """Rows of uint8 NHWC images (same count each) -> one PNG, nearest-upscaled, atomically."""
    from PIL import Image

    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    img = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                       Image.NEAREST)
    tmp = path + ".tmp.png"
    img.save(tmp)
    os.replace(tmp, path)


def compare(old: str, new: str, data: str, classifier: str | None = None, per_class: int = 100,
            images_out: str | None = None, png_prefix: str | None = None, log=print) -> dict:
    """Old vs new decoder on the same latents, by ``lrf-eval``'s protocol (probe/reference
    halves of the test split, 50-step guidance-3 samples with seeds 0..per_class-1 per class).

    ``old`` is a checkpoint folder (its core makes the sample latents); ``new`` a codec file or
    a folder holding one. Adds the artefact rates (thresholds: 99.5th percentile over the real
    train images) and per-class pixel std. ``images_out`` keeps every decoded image (npz) so an
    outside classifier can score exactly the same pixels.
    """
    from dataclasses import replace
    from types import SimpleNamespace

    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.classifier import frechet_distance, logits_and_features
    from lrf.models.reference import generate, to_uint8
    from lrf.training.evaluate import _round_trip, _split_test
    from lrf.models.classifier import load_classifier

    ckpt = load_checkpoint(old)
    codecs = {"old": ckpt.codec, "new": Codec.from_pretrained(new).eval()}
    if codecs["new"].stats_dict() != ckpt.codec.stats_dict():
        raise ValueError(f"{new}: latent stats differ from {old}'s codec; not a decoder-only change")
    clf, _ = load_classifier(classifier)
    test = load_image_folder(data, "test")
    thresholds = artefact_thresholds(load_image_folder(data, "train").images)
    probe, ref = _split_test(test)
    _, ref_feats = logits_and_features(clf, test.images[ref])
    p_img, p_lab = test.images[probe], test.labels[probe]

    def score(images, labels) -> dict:
        logits, feats = logits_and_features(clf, images)
        flags = artefact_flags(images, thresholds)
        x = images.astype(np.float64) / 127.5 - 1.0
        return {"fidelity": float((logits.argmax(1).numpy() == labels).mean()),
                "frechet": frechet_distance(feats, ref_feats),
                "flagged_rate": float(flags.mean()),
                "per_class": {name: {"flagged_rate": float(flags[labels == c].mean()),
                                     "std": float(x[labels == c].std())}
                              for c, name in enumerate(ckpt.classes)}}

    # The sampler decodes with ckpt.codec; an identity "codec" hands back the latents instead,
    # so both decoders see exactly the same 1,000 sample latents.
    labels = np.repeat(np.arange(len(ckpt.classes)), per_class)
    seeds = np.tile(np.arange(per_class), len(ckpt.classes))
    stub = replace(ckpt, codec=SimpleNamespace(decode=lambda z: z))
    t0 = time.time()
    z = torch.cat([generate(stub, labels[i:i + 500].tolist(), seeds[i:i + 500].tolist(),
                            steps=50, guidance=3.0) for i in range(0, len(labels), 500)])
    log(f"sampled {len(z)} latents (50 steps, guidance 3) in {time.time() - t0:.0f}s")
    report = {"old": old, "new": new, "thresholds": thresholds,
              "real_probe": score(p_img, p_lab)}
    keep = {"probe": p_img, "probe_labels": p_lab, "sample_labels": labels}
    for name, codec in codecs.items():
        rt = _round_trip(codec, p_img)
        with torch.no_grad():
            gen = np.concatenate([to_uint8(codec.decode(z[i:i + 500]))
                                  for i in range(0, len(z), 500)])
        report[name] = {"codec_test_mse": reconstruction_mse(codec, test.images),
                        "round_trip": score(rt, p_lab), "generated": score(gen, labels)}
        keep[f"round_trip_{name}"], keep[f"generated_{name}"] = rt, gen
        r = report[name]
        log(f"{name}: MSE {r['codec_test_mse']:.5f}; round trip fidelity "
            f"{r['round_trip']['fidelity']:.3f} FD {r['round_trip']['frechet']:.1f}; generated "
            f"fidelity {r['generated']['fidelity']:.3f} FD {r['generated']['frechet']:.1f}")
    if images_out:
        tmp = images_out + ".tmp.npz"
        np.savez_compressed(tmp, **keep)
        os.replace(tmp, images_out)
    if png_prefix:
        pick = np.concatenate([np.where(p_lab == c)[0][:2] for c in range(len(ckpt.classes))])
        _grid_png([p_img[pick], keep["round_trip_old"][pick], keep["round_trip_new"][pick]],
                  f"{png_prefix}_roundtrip.png")
        pick = np.concatenate([np.where(labels == c)[0][:2] for c in range(len(ckpt.classes))])
        _grid_png([keep["generated_old"][pick], keep["generated_new"][pick]],
                  f"{png_prefix}_samples.png")
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m lrf.training.decoder_report OLD_CHECKPOINT NEW_CODEC --json ...``: the old vs new
    report of issue 15 (``lrf-train decoder`` trains)."""
    import sys

    from lrf.cli import Parser

    p = Parser(prog="python -m lrf.training.decoder_report", description=main.__doc__)
    p.add_argument("old", help="checkpoint folder with the old codec (its core samples)")
    p.add_argument("new", help="new codec.safetensors or a folder holding one")
    p.add_argument("--data", default=os.path.join("..", "shared", "data", "cifar10",
                                                  "cifar10-jpeg.tar.gz"))
    p.add_argument("--classifier", default=None, help="classifier weights (default: shipped)")
    p.add_argument("--json", required=True, help="write the report here")
    p.add_argument("--images", default=None, help="also keep every decoded image (.npz)")
    p.add_argument("--png-prefix", default=None, help="write PREFIX_roundtrip/_samples.png")
    args = p.parse_args(argv)
    try:
        report = compare(args.old, args.new, args.data, args.classifier,
                         images_out=args.images, png_prefix=args.png_prefix)
    except (ValueError, FileNotFoundError) as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    from lrf.training.common import write_json_atomic

    write_json_atomic(args.json, report)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
