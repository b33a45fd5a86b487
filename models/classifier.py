"""The small CIFAR-10 classifier (ResNet-9 at half width) that *measures* generated images:
class fidelity (fraction classified as their conditioning class) and a Frechet distance between
its penultimate features of generated and real images. Training is ``lrf.training.classifier``;
the weights ship in ``models/weights/classifier/``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch import nn

CLASSIFIER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "classifier")
CLASSIFIER_FILE = "classifier.safetensors"
WIDTHS = (32, 64, 128, 256)


def _cbr(c_in, c_out, pool=False):
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class _Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(_cbr(c, c), _cbr(c, c))

    def forward(self, x):
        return x + self.body(x)


class SmallResNet(nn.Module):
    """[B,3,32,32] in [-1,1] -> logits [B,10]; ``features`` gives the 256-d penultimate layer."""

    def __init__(self, widths=WIDTHS, num_classes: int = 10):
        super().__init__()
        a, b, c, d = widths
        self.body = nn.Sequential(
            _cbr(3, a), _cbr(a, b, pool=True), _Residual(b),       # 16x16
            _cbr(b, c, pool=True),                                 # 8x8
            _cbr(c, d, pool=True), _Residual(d),                   # 4x4
            nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(d, num_classes)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x)) * 0.125


def load_classifier(path: str | None = None) -> tuple[SmallResNet, dict]:
    from safetensors import safe_open

    path = path or os.path.join(CLASSIFIER_DIR, CLASSIFIER_FILE)
    if os.path.isdir(path):
        path = os.path.join(path, CLASSIFIER_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"classifier weights {path!r} not found: train them with "
                                "`lrf-train classifier --data ... --out models/weights/classifier`")
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        sd = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != "lrf-classifier/1":
        raise ValueError(f"{path}: not an lrf classifier file")
    model = SmallResNet(tuple(json.loads(meta["widths"])))
    model.load_state_dict(sd)
    return model.eval(), meta


@torch.no_grad()
def logits_and_features(model: SmallResNet, images_u8: np.ndarray, batch: int = 500):
    model.eval()
    logits, feats = [], []
    for i in range(0, len(images_u8), batch):
        x = torch.from_numpy(np.ascontiguousarray(images_u8[i:i + batch])).permute(0, 3, 1, 2).float()
        f = model.features(x / 127.5 - 1.0)
        feats.append(f)
        logits.append(model.head(f))
    return torch.cat(logits), torch.cat(feats).double().numpy()


def class_fidelity(images_u8: np.ndarray, labels, classifier_path: str | None = None) -> float:
    """Fraction of uint8 NHWC 32x32 images that the shipped classifier assigns to ``labels``."""
    model, _ = load_classifier(classifier_path)
    return accuracy(model, images_u8, np.asarray(labels))


def accuracy(model: SmallResNet, images_u8: np.ndarray, labels: np.ndarray) -> float:
    logits, _ = logits_and_features(model, images_u8)
    return float((logits.argmax(1).numpy() == np.asarray(labels)).mean())


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), via the eigenvalues of S1 S2 (real, >= 0
    for PSD S1, S2), so no scipy is needed."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    eig = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)
