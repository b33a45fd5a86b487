"""A small CIFAR-10 classifier (ResNet-9 at half width) used only to *measure* generated images:
class fidelity (fraction classified as their conditioning class) and a Frechet distance between
its penultimate features of generated and real images.

We train it ourselves on the real train split (no downloaded weights); its weights ship in
``models/weights/classifier/``.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lrf.training.common import append_log, cosine_lr
from lrf.training.data import load_image_folder, to_tensor_range

CLASSIFIER_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "models", "weights", "classifier")
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


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel reflect padding + horizontal flip, per image."""
    b = x.shape[0]
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    xp = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dx = torch.randint(0, 9, (b,), generator=g)
    dy = torch.randint(0, 9, (b,), generator=g)
    idx = torch.arange(32)
    rows = (dy.view(-1, 1) + idx).view(b, 1, 32, 1).expand(b, x.shape[1], 32, 40)
    xp = xp.gather(2, rows)
    cols = (dx.view(-1, 1) + idx).view(b, 1, 1, 32).expand(b, x.shape[1], 32, 32)
    return xp.gather(3, cols)


def train_classifier(data: str, out_dir: str, epochs: int = 16, batch_size: int = 256,
                     lr: float = 2e-3, seed: int = 0, limit_per_class: int | None = None,
                     log=print) -> dict:
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    train = load_image_folder(data, "train", limit_per_class=limit_per_class)
    test = load_image_folder(data, "test", limit_per_class=limit_per_class)
    model = SmallResNet().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    x_all = to_tensor_range(train.images)
    y_all = torch.from_numpy(train.labels)
    steps = max(1, len(x_all) // batch_size)
    total, step = steps * epochs, 0
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_all), generator=g)
        for b in tqdm(range(steps), desc=f"classifier epoch {epoch + 1}/{epochs}", mininterval=10,
                      disable=None):
            idx = perm[b * batch_size:(b + 1) * batch_size]
            x = _augment(x_all[idx], g).contiguous(memory_format=torch.channels_last)
            for grp in opt.param_groups:
                grp["lr"] = cosine_lr(step, total, lr, warmup=steps, final_frac=0.0)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x).float(), y_all[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        acc = accuracy(model, test.images, test.labels)
        append_log(os.path.join(out_dir, "classifier_log.jsonl"),
                   {"epoch": epoch + 1, "loss": float(loss.detach()), "test_acc": acc})
        log(f"classifier epoch {epoch + 1}: test accuracy {acc:.4f}")
    model = model.to(memory_format=torch.contiguous_format).eval()
    acc = accuracy(model, test.images, test.labels)
    meta = {"format": "lrf-classifier/1", "widths": json.dumps(list(WIDTHS)),
            "classes": json.dumps(list(train.classes)), "test_accuracy": f"{acc:.4f}",
            "epochs": str(epochs), "train_seconds": f"{time.time() - t0:.0f}"}
    path = os.path.join(out_dir, CLASSIFIER_FILE)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path + ".tmp", metadata=meta)
    os.replace(path + ".tmp", path)
    return {"test_accuracy": acc, "seconds": time.time() - t0}


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
        f = model.features(to_tensor_range(images_u8[i:i + batch]))
        feats.append(f)
        logits.append(model.head(f))
    return torch.cat(logits), torch.cat(feats).double().numpy()


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
