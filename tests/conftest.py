"""Shared fixtures: small checkpoints made on the fly (no downloads, no shipped weights needed)."""

from __future__ import annotations

import os

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR_TAR = os.path.join(REPO, "..", "shared", "data", "cifar10", "cifar10-jpeg.tar.gz")
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SMALL_CODEC = dict(encoder_block_out_channels=(16, 16, 16, 16),
                   decoder_block_out_channels=(16, 16, 16, 16))


def make_checkpoint(path, preset: str = "tiny", seed: int = 0, small_codec: bool = True):
    """A checkpoint with random (non-zero) weights everywhere, so outputs depend on every layer."""
    from lrf.models.checkpoint import save_checkpoint
    from lrf.models.codec import Codec
    from lrf.models.config import get_preset
    from lrf.models.lrf import LRFModel

    torch.manual_seed(seed)
    model = LRFModel.from_lrf_config(get_preset(preset))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    codec = Codec.new(**(SMALL_CODEC if small_codec else {}))
    codec = Codec(codec.ae, [0.1, -0.2, 0.3, 0.0], [1.5, 0.8, 1.2, 1.0])
    save_checkpoint(path, model, codec, CLASSES)
    return str(path)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def cifar_checkpoint(tmp_path_factory):
    """The cifar10 preset with random weights: full size, for export/parity tests."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "cifar10", preset="cifar10",
                           small_codec=False)


@pytest.fixture(scope="session")
def cifar_tar():
    if not os.path.isfile(CIFAR_TAR):
        pytest.fail(f"CIFAR-10 archive missing at {CIFAR_TAR}: tests need ../shared beside the repo")
    return CIFAR_TAR
