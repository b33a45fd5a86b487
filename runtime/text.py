"""Prompts in a schema v3 text bundle (``runtime/BUNDLE.md`` section 11): the bundle's tokenizer
files, checked as untrusted input, read by the Hugging Face ``tokenizers`` package (the rules
are ``runtime/TOKENIZER.md``'s), and the ``text_encoder`` graph's conditioning cached per prompt.

    prompt --check_prompt--> --tokenizer.json--> ids, mask [1,L] --text_encoder--> text_pooled
    (computed once per distinct prompt; every seed, step and window reuses it)

The null prompt "" is never tokenized here: the ``denoise`` graph of a teacher holds the null
prompt's conditioning itself, and a guidance-distilled student needs none.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from lrf.runtime.prompt import check_prompt
from lrf.runtime.manifest import strict_json

MAX_TOKENIZER_JSON = 16 << 20     # MiniLM's tokenizer.json is 0.7 MB
MAX_VOCAB_TXT = 8 << 20           # its vocab.txt 0.23 MB
CACHE_PROMPTS = 256


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError("prompts need the package tokenizers: pip install -e \".[runtime]\"") \
            from None
    return tokenizers


class PromptTokenizer:
    """A text bundle's tokenizer, verified against ``vocab.txt`` and the manifest."""

    def __init__(self, bundle):
        m = bundle.manifest
        tok = m["tokenizer"]
        self.max_tokens = int(tok["max_tokens"])
        self.vocab_size = int(tok["vocab_size"])
        where_json, where_vocab = tok["tokenizer_json"], tok["vocab"]
        raw_json = _read(bundle, where_json, MAX_TOKENIZER_JSON)
        raw_vocab = _read(bundle, where_vocab, MAX_VOCAB_TXT)
        spec = strict_json(raw_json, where_json)
        vocab = _vocab_lines(raw_vocab, where_vocab)
        _check_tokenizer_json(spec, vocab, where_json, where_vocab)
        if len(vocab) != self.vocab_size:
            raise ValueError(f"{where_vocab}: {len(vocab)} tokens but manifest.json "
                             f"tokenizer.vocab_size is {self.vocab_size}; re-export the bundle")
        tk = _tokenizers()
        try:
            self.tokenizer = tk.Tokenizer.from_str(raw_json.decode("utf-8"))
        except Exception as e:   # the library's own parse error, as one line
            raise ValueError(f"{where_json}: the tokenizers library cannot read it "
                             f"({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})"
                             "; re-export the bundle") from None
        self.tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer.no_padding()

    def encode(self, prompt: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [1,L], mask int64 [1,L]) of one checked prompt (TOKENIZER.md)."""
        enc = self.tokenizer.encode(check_prompt(prompt))
        ids = np.asarray([enc.ids], dtype=np.int64)
        mask = np.asarray([enc.attention_mask], dtype=np.int64)
        check_ids(ids, self.vocab_size)
        return ids, mask


def check_ids(ids: np.ndarray, vocab_size: int) -> None:
    """Token ids must index the embedding table: [0, vocab_size)."""
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        bad = int(ids[(ids < 0) | (ids >= vocab_size)][0])
        raise ValueError(f"token id {bad} is outside the vocabulary (0-{vocab_size - 1})")


def _read(bundle, rel: str, limit: int) -> bytes:
    path = bundle.file(rel)
    size = path.stat().st_size
    if size > limit:
        raise ValueError(f"{rel} is {size} bytes, more than a tokenizer file may be ({limit}); "
                         "re-export the bundle")
    return path.read_bytes()


def _vocab_lines(raw: bytes, where: str) -> list[str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not UTF-8; re-export the bundle") from None
    if "\r" in text or not text.endswith("\n"):
        raise ValueError(f"{where}: expected one token per line with \\n line ends")
    lines = text[:-1].split("\n")
    seen: dict[str, int] = {}
    for i, t in enumerate(lines):
        if not t:
            raise ValueError(f"{where}: line {i + 1} is empty; re-export the bundle")
        if t in seen:
            raise ValueError(f"{where}: token on line {i + 1} duplicates line {seen[t] + 1}; "
                             "re-export the bundle")
        seen[t] = i
    return lines


def _check_tokenizer_json(spec, vocab: list[str], where: str, where_vocab: str) -> None:
    """The fields TOKENIZER.md section 1 fixes, and ``model.vocab`` = ``vocab.txt``."""
    def bad(field, want, got):
        shown = repr(got)
        raise ValueError(f"{where}: {field}: expected {want}, got "
                         f"{shown if len(shown) <= 60 else shown[:57] + '...'}; re-export the "
                         "bundle")

    if not isinstance(spec, dict):
        bad("(top level)", "an object", type(spec).__name__)
    model = spec.get("model")
    if not isinstance(model, dict) or model.get("type") != "WordPiece":
        bad("model.type", "'WordPiece'", model.get("type") if isinstance(model, dict) else model)
    for k, want in (("unk_token", "[UNK]"), ("continuing_subword_prefix", "##"),
                    ("max_input_chars_per_word", 100)):
        if model.get(k) != want:
            bad(f"model.{k}", repr(want), model.get(k))
    norm = spec.get("normalizer")
    want_norm = {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                 "strip_accents": None, "lowercase": True}
    if not isinstance(norm, dict) or {k: norm.get(k) for k in want_norm} != want_norm:
        bad("normalizer", str(want_norm), norm)
    pre = spec.get("pre_tokenizer")
    if not isinstance(pre, dict) or pre.get("type") != "BertPreTokenizer":
        bad("pre_tokenizer.type", "'BertPreTokenizer'", pre)
    table = model.get("vocab")
    if not isinstance(table, dict) or len(table) != len(vocab):
        bad("model.vocab", f"{len(vocab)} tokens (= {where_vocab})",
            len(table) if isinstance(table, dict) else table)
    for i, t in enumerate(vocab):
        if table.get(t) != i:
            bad(f"model.vocab[{t[:20]!r}]", f"{i} (its {where_vocab} line - 1)", table.get(t))


class PromptCache:
    """Each distinct prompt's text_encoder outputs (by role), kept for the last
    :data:`CACHE_PROMPTS` prompts: tokenized and encoded once, reused for every seed and step."""

    def __init__(self, tokenizer: PromptTokenizer, run, roles: list[str]):
        self.tokenizer, self._run, self.roles = tokenizer, run, roles
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self.encoded = 0   # text_encoder calls made (what the cache saves is visible)

    def one(self, prompt: str) -> dict[str, np.ndarray]:
        with self._lock:
            if prompt in self._cache:
                self._cache.move_to_end(prompt)
                return self._cache[prompt]
        ids, mask = self.tokenizer.encode(prompt)
        out = self._run(ids, mask)
        row = {r: out[r] for r in self.roles if r in out}
        if "text_tokens" in self.roles:
            row["attention_mask"] = mask
        with self._lock:
            self.encoded += 1
            self._cache[prompt] = row
            while len(self._cache) > CACHE_PROMPTS:
                self._cache.popitem(last=False)
        return row

    def batch(self, prompts: list[str]) -> dict[str, np.ndarray]:
        """The denoise graph's text inputs by role for one prompt per image: [B,...]; token
        states and masks are right-padded with zeros (mask 0) to ``max_tokens``, the length
        the ``denoise`` graph takes (BUNDLE.md 11.3)."""
        rows = [self.one(p) for p in prompts]
        n = self.tokenizer.max_tokens
        out = {}
        for role in rows[0]:
            parts = [r[role] for r in rows]
            if parts[0].ndim >= 2 and role != "text_pooled":
                parts = [np.pad(p, [(0, 0), (0, n - p.shape[1])] + [(0, 0)] * (p.ndim - 2))
                         for p in parts]
            out[role] = np.ascontiguousarray(np.concatenate(parts))
        return out
