"""CIFAR-10 style image-folder data, read in place from a directory or a .tar/.tar.gz.

Layout (the ordinary "image folder" layout): ``<root>/<split>/<class>/<name>.jpg``. The archive may
carry one extra leading folder (ours is ``cifar10/train/...``); it is found automatically.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass

import numpy as np
from PIL import Image

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # [N, H, W, 3] uint8
    labels: np.ndarray  # [N] int64
    classes: tuple[str, ...]


def _split_key(path: str, split: str) -> tuple[str, str] | None:
    """Return (class, filename) if ``path`` lies at ``.../<split>/<class>/<file>``."""
    parts = path.replace("\\", "/").split("/")
    if len(parts) < 3 or parts[-3] != split or not parts[-1].lower().endswith(_IMAGE_EXT):
        return None
    return parts[-2], parts[-1]


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_image_folder(path: str, split: str = "train", classes: tuple[str, ...] | None = None,
                      limit_per_class: int | None = None) -> ImageSet:
    """Load every image of ``split`` from an image-folder directory or a .tar/.tar.gz of one.

    Images are sorted by (class index, file name) so the order is reproducible. ``classes``
    defaults to the CIFAR-10 order when the folder names match it, else to sorted folder names.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"data path {path!r} does not exist: pass an image-folder "
                                "directory or a .tar/.tar.gz of one")
    found: dict[tuple[str, str], bytes] = {}
    if os.path.isdir(path):
        for dirpath, _, files in os.walk(path):
            for f in files:
                full = os.path.join(dirpath, f)
                key = _split_key(os.path.relpath(full, path), split)
                if key is not None:
                    with open(full, "rb") as fh:
                        found[key] = fh.read()
    elif tarfile.is_tarfile(path):
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key = _split_key(member.name, split)
                if key is not None:
                    found[key] = tar.extractfile(member).read()
    else:
        raise ValueError(f"data path {path!r} is neither a directory nor a tar archive")
    if not found:
        raise ValueError(f"no images found under split {split!r} in {path!r}: expected "
                         f"<root>/{split}/<class>/<image>.jpg")
    names = sorted({c for c, _ in found})
    if classes is None:
        classes = CIFAR10_CLASSES if set(names) == set(CIFAR10_CLASSES) else tuple(names)
    unknown = set(names) - set(classes)
    if unknown:
        raise ValueError(f"class folders {sorted(unknown)} in {path!r} are not in {list(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    keys = sorted(found, key=lambda k: (index[k[0]], k[1]))
    if limit_per_class is not None:
        counts: dict[str, int] = {}
        kept = []
        for k in keys:
            if counts.get(k[0], 0) < limit_per_class:
                counts[k[0]] = counts.get(k[0], 0) + 1
                kept.append(k)
        keys = kept
    images = np.stack([_decode(found[k]) for k in keys])
    labels = np.array([index[k[0]] for k in keys], dtype=np.int64)
    return ImageSet(images=images, labels=labels, classes=tuple(classes))


def to_tensor_range(images: np.ndarray):
    """uint8 NHWC -> float32 NCHW torch tensor in [-1, 1]."""
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    return x.div_(127.5).sub_(1.0)
