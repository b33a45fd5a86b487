"""``lrf-eval CHECKPOINT``: the quality report behind the model card.

Measured on CIFAR-10's test split, split in two fixed halves so every comparison has the same
sample sizes: the *probe* set (test images 0-99 of each class, 1,000 images) and the *reference*
set (the other 9,000). Every Frechet distance is "1,000 images vs the 9,000 reference images".

* codec reconstruction MSE on all 10,000 test images ([-1, 1] scale);
* generated samples: 100 per class with seeds 0-99, at the checkpoint's steps/guidance;
  per-class pixel std and range (the "no grey images" check: std > 0.2 on the [-1, 1] scale);
* class fidelity: the fraction of samples that our classifier assigns to their conditioning
  class, and the Frechet distance of its penultimate features;
* two ceilings for those numbers: the real probe images, and the probe images passed through
  our autoencoder (no generator on this codec can look sharper than that round trip);
* the classifier's blur sensitivity: accuracy on probe images resampled 32->16->32;
* sweeps: guidance 1, 2, 3, 5 at 50 steps and steps 4, 8, 16, 50 at guidance 3.
"""

from __future__ import annotations

from lrf.cli import guard_startup

guard_startup("lrf-eval", __name__ == "__main__")  # Ctrl-C during the imports: 1 line

import json
import os
import sys
import time

import numpy as np
import torch

from lrf.cli import Parser, entry, float_arg, int_arg

PROBE_PER_CLASS = 100


def _split_test(test):
    per_class_idx = np.zeros(len(test.labels), dtype=np.int64)
    for c in np.unique(test.labels):
        m = test.labels == c
        per_class_idx[m] = np.arange(m.sum())
    probe = per_class_idx < PROBE_PER_CLASS
    return probe, ~probe


def _round_trip(codec, images_u8: np.ndarray) -> np.ndarray:
    from lrf.models.reference import to_uint8
    from lrf.training.data import to_tensor_range

    out = []
    with torch.no_grad():
        for i in range(0, len(images_u8), 500):
            x = to_tensor_range(images_u8[i:i + 500])
            out.append(to_uint8(codec.decode_raw(codec.encode_raw(x))))
    return np.concatenate(out)


def _blur(images_u8: np.ndarray) -> np.ndarray:
    import torch.nn.functional as F

    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float()
    x = F.interpolate(F.interpolate(x, size=16, mode="bilinear", antialias=True, align_corners=False),
                      size=32, mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _sample(ckpt, per_class: int, steps: int, guidance: float, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
    from lrf.models.reference import generate, to_uint8

    labels = np.repeat(np.arange(len(ckpt.classes)), per_class)
    seeds = np.tile(np.arange(per_class), len(ckpt.classes))
    out = []
    for i in range(0, len(labels), batch):
        out.append(to_uint8(generate(ckpt, labels[i:i + batch].tolist(), seeds[i:i + batch].tolist(),
                                     steps=steps, guidance=guidance)))
    return np.concatenate(out), labels


def evaluate(checkpoint: str | None, data: str, classifier: str | None = None,
             per_class: int = PROBE_PER_CLASS, sweep: bool = True, log=print,
             teacher: str | None = None) -> dict:
    from lrf.models.checkpoint import checkpoint_sha256, load_checkpoint
    from lrf.training.ae import reconstruction_mse
    from lrf.models.classifier import frechet_distance, load_classifier, logits_and_features
    from lrf.training.data import load_image_folder

    t0 = time.time()
    ckpt = load_checkpoint(checkpoint)
    clf, clf_meta = load_classifier(classifier)
    test = load_image_folder(data, "test")
    probe, ref = _split_test(test)
    _, ref_feats = logits_and_features(clf, test.images[ref])

    def score(images, labels):
        logits, feats = logits_and_features(clf, images)
        return {"fidelity": float((logits.argmax(1).numpy() == labels).mean()),
                "frechet": frechet_distance(feats, ref_feats)}

    report: dict = {"checkpoint": ckpt.path, "checkpoint_sha256": checkpoint_sha256(ckpt.path),
                    "classifier_test_accuracy": float(clf_meta.get("test_accuracy", "nan"))}
    report["codec_test_mse"] = reconstruction_mse(ckpt.codec, test.images)
    log(f"codec reconstruction MSE (10,000 test images, [-1,1]): {report['codec_test_mse']:.5f}")
    p_img, p_lab = test.images[probe], test.labels[probe]
    report["ceiling_real"] = score(p_img, p_lab)
    report["ceiling_round_trip"] = score(_round_trip(ckpt.codec, p_img), p_lab)
    report["classifier_blur_32_16_32_accuracy"] = score(_blur(p_img), p_lab)["fidelity"]
    log(f"ceilings: real {report['ceiling_real']}, round trip {report['ceiling_round_trip']}")

    steps, guidance = int(ckpt.sampling["steps"]), float(ckpt.sampling["guidance"])
    configs = [(steps, guidance)]
    distilled = ckpt.config.guidance_embed
    report["guidance_distilled"] = distilled
    if sweep and distilled:   # a turbo student: its few-step range, and one guidance sweep
        configs += [(s, 3.0) for s in (1, 2, 4, 8)] + [(steps, g) for g in (1.0, 2.0, 5.0)]
    elif sweep:
        configs += [(50, g) for g in (1.0, 2.0, 3.0, 5.0)] + [(s, 3.0) for s in (4, 8, 16, 50)]
    results = {}
    for s, g in dict.fromkeys(configs):
        imgs, labels = _sample(ckpt, per_class, s, g)
        r = score(imgs, labels)
        r["fidelity_vs_round_trip"] = r["fidelity"] / report["ceiling_round_trip"]["fidelity"]
        results[f"steps={s},guidance={g:g}"] = r
        log(f"steps {s:>2} guidance {g:g}: fidelity {r['fidelity']:.3f} "
            f"({100 * r['fidelity_vs_round_trip']:.0f}% of round trip), FD {r['frechet']:.2f}")
        if (s, g) == (steps, guidance):
            x = imgs.astype(np.float64) / 127.5 - 1.0
            report["per_class"] = {
                name: {"std": float(x[labels == c].std()),
                       "min": float(x[labels == c].min()), "max": float(x[labels == c].max())}
                for c, name in enumerate(ckpt.classes)}
            report["default"] = {"steps": s, "guidance": g, **r}
    report["sweeps"] = results
    if teacher is not None:   # the same cases through another checkpoint, side by side
        tck = load_checkpoint(teacher)
        ts, tg = int(tck.sampling["steps"]), float(tck.sampling["guidance"])
        imgs, labels = _sample(tck, per_class, ts, tg)
        r = score(imgs, labels)
        r["fidelity_vs_round_trip"] = r["fidelity"] / report["ceiling_round_trip"]["fidelity"]
        report["teacher"] = {"checkpoint": tck.path, "checkpoint_sha256": checkpoint_sha256(tck.path),
                             "steps": ts, "guidance": tg, **r}
        log(f"teacher {tck.path} at {ts} steps, guidance {tg:g}: fidelity {r['fidelity']:.3f}, "
            f"FD {r['frechet']:.2f}")
    report["no_grey_images"] = all(v["std"] > 0.2 for v in report["per_class"].values())
    report["seconds"] = time.time() - t0
    return report


def build_parser():
    p = Parser(prog="lrf-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="checkpoint folder (default: the shipped cifar10 one)")
    p.add_argument("--data", default=None,
                   help="CIFAR-10 image folder or .tar.gz (default: ../shared/data/cifar10/...); "
                        "for a text model its captioned data (default: "
                        "../shared/data/emoji/emoji-128.tar.gz)")
    p.add_argument("--judge", default=os.path.join(os.path.dirname(__file__), "..", "models",
                                                   "weights", "emoji-judge", "judge.safetensors"),
                   help="text models: the judge that scores them (default: the shipped one)")
    p.add_argument("--steps", type=int_arg("--steps", 1, 1000), default=None,
                   help="text models: sampling steps (default: the checkpoint's)")
    p.add_argument("--guidance", type=float_arg("--guidance", 0, 100), default=None,
                   help="text models: guidance scale (default: the checkpoint's)")
    p.add_argument("--held-out-pairs", type=int_arg("--held-out-pairs", 1, 100_000), default=400)
    p.add_argument("--seen-pairs", type=int_arg("--seen-pairs", 1, 100_000), default=300)
    p.add_argument("--copies", default=None,
                   help="text models: PNG of generated held-out images beside their nearest "
                        "training image")
    p.add_argument("--classifier", default=None, help="classifier weights (default: shipped)")
    p.add_argument("--per-class", type=int_arg("--per-class", 1, 1000), default=PROBE_PER_CLASS,
                   help=f"samples per class, at most 1000 (default {PROBE_PER_CLASS})")
    p.add_argument("--no-sweep", action="store_true", help="only the checkpoint's default setting")
    p.add_argument("--json", default=None, help="write the report here too")
    p.add_argument("--grid", default=None,
                   help="with --teacher: a side-by-side PNG, teacher at its steps and this "
                        "guidance-distilled checkpoint at 1, 2 and 4 steps, same seeds")
    p.add_argument("--teacher", default=None,
                   help="also score this checkpoint at its own defaults on the same cases "
                        "(e.g. the 50-step teacher beside a turbo student)")
    return p


@entry("lrf-eval")  # one error line, Ctrl-C 130; no traceback (lrf/cli.py)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.checkpoint is not None and _is_text_checkpoint(args.checkpoint):
        return _main_text(args)
    if args.data is None:
        args.data = os.path.join("..", "shared", "data", "cifar10", "cifar10-jpeg.tar.gz")
    if args.grid and not args.teacher:
        print("lrf-eval: error: --grid needs --teacher (the checkpoint drawn beside this one)",
              file=sys.stderr)
        return 2
    # a ValueError / OSError below is one line and exit 2 from lrf.cli.run (which also knows
    # when it is an interrupt a library rewrapped: then 'interrupted' and 130)
    report = evaluate(args.checkpoint, args.data, args.classifier, args.per_class,
                      sweep=not args.no_sweep, teacher=args.teacher)
    if args.grid:
        from lrf.training.distill import side_by_side_grid

        side_by_side_grid(args.teacher, args.checkpoint, args.grid)
        print(f"wrote {args.grid}")
    worst = min(report["per_class"].items(), key=lambda kv: kv[1]["std"])
    print(f"per-class pixel std ([-1,1] scale): min {worst[1]['std']:.3f} ({worst[0]}); "
          f"no grey images: {report['no_grey_images']}")
    d = report["default"]
    print(f"default ({d['steps']} steps, guidance {d['guidance']:g}): fidelity {d['fidelity']:.3f} = "
          f"{100 * d['fidelity_vs_round_trip']:.1f}% of the round-trip ceiling "
          f"({report['ceiling_round_trip']['fidelity']:.3f}); FD {d['frechet']:.2f}")
    if args.json:
        from lrf.training.common import write_json_atomic

        write_json_atomic(args.json, report)
        print(f"wrote {args.json}")
    return 0


def _is_text_checkpoint(path: str) -> bool:
    try:
        with open(os.path.join(path, "lrf.json")) as fh:
            return bool(json.load(fh).get("config", {}).get("text_dim"))
    except (OSError, ValueError, AttributeError):
        return False  # load_checkpoint says what is wrong with it


def _main_text(args) -> int:
    from lrf.training.evaluate_text import evaluate_text_model

    data = args.data or os.path.join("..", "shared", "data", "emoji", "emoji-128.tar.gz")
    report = evaluate_text_model(args.checkpoint, args.judge, data, steps=args.steps,
                                 guidance=args.guidance, n_held=args.held_out_pairs,
                                 n_seen=args.seen_pairs, grid=args.grid, copies=args.copies)
    if args.teacher:
        report["teacher"] = evaluate_text_model(args.teacher, args.judge, data,
                                                n_held=args.held_out_pairs,
                                                n_seen=args.seen_pairs)
    h, s = report["held_out"], report["seen"]
    print(f"held out: top-1 {h['generated']['top1']:.3f} (lookup baseline "
          f"{h['lookup_baseline']['top1']:.3f}), top-5 {h['generated']['top5']:.3f} = "
          f"{100 * h['generated']['top5'] / max(h['real']['top5'], 1e-9):.0f}% of real; seen: "
          f"top-5 {s['generated']['top5']:.3f} = "
          f"{100 * s['generated']['top5'] / max(s['real']['top5'], 1e-9):.0f}% of real; style "
          f"{s['generated']['style_acc']:.3f} vs real {s['real']['style_acc']:.3f}")
    for path in (args.grid, args.copies):
        if path:
            print(f"wrote {path}")
    if args.json:
        from lrf.training.common import write_json_atomic

        write_json_atomic(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
