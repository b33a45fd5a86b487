"""Shared fixtures: small checkpoints made on the fly (no downloads, no shipped weights needed),
and the data that lives outside the repository (``../shared``), with a committed stand-in or a
skip that names what is missing, so a fresh clone passes alone."""

from __future__ import annotations

import os

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
# ``LRF_SHARED_DIR`` points the suite at another ``shared`` folder (or at a missing one, to see
# what a fresh clone without ``../shared`` runs).
SHARED = os.environ.get("LRF_SHARED_DIR", os.path.join(REPO, "..", "shared"))
CIFAR_TAR = os.path.join(SHARED, "data", "cifar10", "cifar10-jpeg.tar.gz")
CIFAR_MINI_TAR = os.path.join(FIXTURES, "cifar10-test-mini.tar.gz")   # tests/fixtures/README.md
TAEF2_DIR = os.path.join(SHARED, "weights", "taef2")
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SMALL_CODEC = dict(encoder_block_out_channels=(16, 16, 16, 16),
                   decoder_block_out_channels=(16, 16, 16, 16))
# One block per stage: a random deep TAESD decodes every latent to nearly the same black image
# (std ~0.04), which no image-parity test can tell apart from a broken one.
VIVID_CODEC = dict(SMALL_CODEC, num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1))
TURBO_SAMPLING = {"steps": 2, "guidance": 3.0, "shift": 1.0}


def _vivid(codec) -> None:
    """Re-initialise a codec so its images span [-1, 1] and depend on the latent (Kaiming
    weights at 3/4 gain, the last bias centring the output)."""
    with torch.no_grad():
        for m in codec.ae.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                m.weight.mul_(0.75)
                if m.bias is not None:
                    torch.nn.init.normal_(m.bias, std=0.05)
        codec.ae.decoder.layers[-1].bias.add_(0.3)


def make_checkpoint(path, preset: str = "tiny", seed: int = 0, small_codec: bool = True,
                    turbo: bool = False, vivid: bool = False, steps: int | None = None):
    """A checkpoint with random (non-zero) weights everywhere, so outputs depend on every layer.
    ``turbo``: a guidance-distilled core (``guidance_embed`` and ``step_embed``), sampled in
    :data:`TURBO_SAMPLING` steps by default. ``vivid``: a small codec whose images have contrast
    and follow the latent (image parity then measures something). ``steps``: the sampling
    default (fewer steps make exports and their parity gate faster)."""
    from dataclasses import replace

    from lrf.models.checkpoint import save_checkpoint
    from lrf.models.codec import Codec
    from lrf.models.config import get_preset
    from lrf.models.lrf import LRFModel

    torch.manual_seed(seed)
    cfg = get_preset(preset)
    if turbo:
        cfg = replace(cfg, guidance_embed=True, step_embed=True)
    model = LRFModel.from_lrf_config(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    codec = Codec.new(**(VIVID_CODEC if vivid else SMALL_CODEC if small_codec else {}))
    if vivid:
        _vivid(codec)
    codec = Codec(codec.ae, [0.1, -0.2, 0.3, 0.0], [1.5, 0.8, 1.2, 1.0])
    sampling = dict(TURBO_SAMPLING) if turbo else {}
    if steps is not None:
        sampling["steps"] = steps
    save_checkpoint(path, model, codec, CLASSES, sampling=sampling or None)
    return str(path)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def vivid_checkpoint(tmp_path_factory):
    """The tiny preset with a vivid codec: images with contrast, for image-parity tests."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-vivid", vivid=True)


@pytest.fixture(scope="session")
def tiny_turbo_checkpoint(tmp_path_factory):
    """The tiny preset as a guidance-distilled student (one core call per step), vivid codec."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-turbo", seed=1, turbo=True,
                           vivid=True)


@pytest.fixture(scope="session")
def cifar_checkpoint(tmp_path_factory):
    """The cifar10 preset with random weights: full size, for export/parity tests."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "cifar10", preset="cifar10",
                           small_codec=False)


@pytest.fixture(scope="session")
def cifar_tar():
    """The CIFAR-10 archive in ``../shared``, else the committed 100-image test subset in the
    same layout (``tests/fixtures/cifar10-test-mini.tar.gz``: test split only)."""
    return CIFAR_TAR if os.path.isfile(CIFAR_TAR) else CIFAR_MINI_TAR


@pytest.fixture(scope="session")
def taef2_dir():
    """The shared TAEF2 weights; skipped (naming the path) when ``../shared`` is not there."""
    if not os.path.isfile(os.path.join(TAEF2_DIR, "taef2_encoder.pth")):
        pytest.skip(f"needs the TAEF2 weights at {TAEF2_DIR} (../shared/weights/taef2; set "
                    "LRF_SHARED_DIR to their shared folder)")
    return TAEF2_DIR


TEXT_STYLES = ["noto", "outline"]


def make_text_checkpoint(path, seed: int = 0, turbo: bool = True, attention: bool = False,
                         steps: int | None = None, text_dim: int = 384):
    """A text-to-image checkpoint in well under a second, no training: the ``tiny-text`` core
    with random (non-zero) weights, an RGBA vivid codec and two styles. ``turbo``: a
    step-size-conditioned guidance-distilled student (1 step by default), else a teacher
    (3 steps). The text encoder is the frozen MiniLM of ``lrf.models.text`` (384-d); with
    ``text_dim=TINY_TEXT_DIM`` it is :func:`tiny_text_encoder`'s BERT instead."""
    from dataclasses import replace

    from lrf.models.checkpoint import save_checkpoint
    from lrf.models.codec import Codec
    from lrf.models.config import get_preset
    from lrf.models.lrf import LRFModel

    torch.manual_seed(seed)
    cfg = replace(get_preset("tiny-text"), text_attention=attention, text_dim=text_dim)
    if turbo:
        cfg = replace(cfg, guidance_embed=True, step_embed=True)
    model = LRFModel.from_lrf_config(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    codec = Codec.new(**VIVID_CODEC, in_channels=4, out_channels=4)
    _vivid(codec)
    codec = Codec(codec.ae, [0.1, -0.2, 0.3, 0.0], [1.5, 0.8, 1.2, 1.0])
    sampling = {"steps": steps or (1 if turbo else 3), "guidance": 3.0, "shift": 1.0}
    save_checkpoint(path, model, codec, list(TEXT_STYLES), sampling=sampling)
    return str(path)


TINY_TEXT_DIM = 32


def make_tiny_text_encoder(path, seed: int = 0, hidden: int = TINY_TEXT_DIM):
    """A random 2-layer BERT (``hidden``-d, 0.1M parameters besides its 30522-row embedding
    table) beside MiniLM's own ``tokenizer.json`` and ``vocab.txt``: the layout
    ``lrf.models.text.minilm_dir`` points at, in a second instead of MiniLM's 22.7M parameters.
    A text bundle's contract is the graph's roles and the tokenizer, not MiniLM's weights."""
    import shutil
    from pathlib import Path

    from transformers import BertConfig, BertModel

    from lrf.models.text import minilm_dir

    path = Path(path)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=2 * hidden,
                     max_position_embeddings=64)
    BertModel(cfg, add_pooling_layer=False).eval().save_pretrained(str(path))
    for f in ("tokenizer.json", "vocab.txt"):
        shutil.copyfile(minilm_dir() / f, path / f)
    return path


@pytest.fixture(scope="module")
def tiny_text_encoder(tmp_path_factory):
    """``lrf.models.text`` reads :func:`make_tiny_text_encoder`'s BERT instead of MiniLM for
    the module that asks (checkpoints made with ``text_dim=TINY_TEXT_DIM``); restored after."""
    import lrf.models.text as text
    from lrf.models import reference

    path = make_tiny_text_encoder(tmp_path_factory.mktemp("tiny-bert"))
    mp = pytest.MonkeyPatch()
    mp.setattr(text, "minilm_dir", lambda: path)
    reference._CONDITIONERS.clear()   # a conditioner holds the encoder it was made with
    yield path
    mp.undo()
    reference._CONDITIONERS.clear()
