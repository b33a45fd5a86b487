"""The one schema check of a v2 or v3 ``manifest.json`` (``runtime/BUNDLE.md`` sections 2-4, 11).

Every field the runtime uses gets a type and a range here; a failure raises
:class:`ManifestError` with one line: ``manifest.json: <field>: expected <what>, got <value>``.
"""

from __future__ import annotations

import math
import re

import numpy as np

from lrf.runtime import scheduler
from lrf.runtime.containment import MAX_PATH_CHARS, MAX_PATH_PARTS, path_problem

SCHEMA = "lrf-bundle"
SCHEMA_VERSION = 3
SUPPORTED_VERSIONS = (2, 3)   # v2: class bundles (RGB); v3 adds prompts, the tokenizer and RGBA
TARGETS = ("onnx", "executorch", "coreml")
PRECISIONS = ("fp32", "int8")
IMAGE_FORMATS = ("uint8_nhwc", "float_nchw")
MODES = ("fused", "stepwise")
RNG = {"name": "splitmix64-boxmuller", "version": 1}
MAX_DIM = 4096
MAX_CLASSES = 1000
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SEED = re.compile(r"^(0|[1-9][0-9]{0,19})$")


class ManifestError(ValueError):
    """A manifest field has the wrong type or range (one line: field, expected, got)."""


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def fail(path: str, expected: str, got) -> None:
    raise ManifestError(f"manifest.json: {path}: expected {expected}, got {_show(got)}")


def missing(obj: dict, key: str, path: str):
    if not isinstance(obj, dict) or key not in obj:
        raise ManifestError(f"manifest.json: {path}: missing (required field)")
    return obj[key]


def obj(parent: dict, key: str, path: str) -> dict:
    v = missing(parent, key, path)
    if not isinstance(v, dict):
        fail(path, "an object", v)
    return v


def integer(parent: dict, key: str, path: str, lo: int, hi: int | None = None) -> int:
    v = missing(parent, key, path)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
        fail(path, f"int in {lo}..{'' if hi is None else hi}", v)
    return v


def number(parent: dict, key: str, path: str, lo: float, hi: float, open_lo: bool = False
           ) -> float:
    """A finite JSON number that stays finite as float32, in [lo, hi] ((lo, hi] if open_lo)."""
    v = missing(parent, key, path)
    with np.errstate(over="ignore"):
        ok = finite(v) and bool(np.isfinite(np.float32(v))) and \
            (v > lo if open_lo else v >= lo) and v <= hi
    if not ok:
        fail(path, f"number in {'(' if open_lo else '['}{lo}, {hi}]", v)
    return float(v)


def finite(v) -> bool:
    """A JSON number (not a bool) that is finite as a float: a 400-digit integer is not (it
    would raise OverflowError in float arithmetic)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(v, int):
        return abs(v) < 2**1023
    return math.isfinite(v)


def string(parent: dict, key: str, path: str, choices=None) -> str:
    v = missing(parent, key, path)
    if not isinstance(v, str) or (choices is not None and v not in choices) or not v:
        fail(path, f"one of {list(choices)}" if choices else "a non-empty string", v)
    return v


def boolean(parent: dict, key: str, path: str) -> bool:
    v = missing(parent, key, path)
    if not isinstance(v, bool):
        fail(path, "true or false", v)
    return v


def seed(value, path: str) -> int:
    """A uint64 seed written as a decimal JSON string (BUNDLE.md: seeds are strings)."""
    if not isinstance(value, str) or not _SEED.match(value) or int(value) >= 2**64:
        fail(path, "a uint64 seed as a decimal string", value)
    return int(value)


def relpath(value, path: str) -> str:
    """A bundle-relative path: '/'-separated, no empty/'.'/'..' parts, no '\\' or ':', bounded
    in length and depth (:func:`lrf.runtime.containment.path_problem`)."""
    if path_problem(value):
        fail(path[:80], "a relative path inside the bundle "
             f"(at most {MAX_PATH_PARTS} parts, {MAX_PATH_CHARS} characters)", value)
    return value


def check_manifest(m: dict) -> None:
    """Check every field the runtime uses (types and ranges) and the scheduler / RNG specs."""
    if not isinstance(m, dict):
        fail("(top level)", "an object", type(m).__name__)
    string(m, "target", "target", TARGETS)
    string(m, "precision", "precision", PRECISIONS)
    model = obj(m, "model", "model")
    boolean(model, "guidance_distilled", "model.guidance_distilled")
    classes = missing(m, "classes", "classes")
    if not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES or \
            not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
        fail("classes", f"a list of 1..{MAX_CLASSES} distinct non-empty strings", classes)
    integer(m, "null_class", "null_class", len(classes), len(classes))
    lat = obj(m, "latent", "latent")
    c = integer(lat, "channels", "latent.channels", 1, MAX_DIM)
    for k in ("height", "width"):
        integer(lat, k, f"latent.{k}", 1, MAX_DIM)
    img = obj(m, "image", "image")
    string(img, "format", "image.format", IMAGE_FORMATS)
    v3 = m.get("schema_version") == 3
    ch = integer(img, "channels", "image.channels", 3, 4 if v3 else 3)
    if v3:
        string(img, "color", "image.color", ["RGB" if ch == 3 else "RGBA"])
    codec = obj(m, "codec", "codec")
    f = integer(codec, "scale_factor", "codec.scale_factor", 8, 8)
    integer(codec, "latent_channels", "codec.latent_channels", c, c)
    for k in ("height", "width"):
        want = f * lat[k]
        integer(img, k, f"image.{k}", want, want)
    for k, lo in (("latent_mean", -math.inf), ("latent_std", 0.0)):
        v = missing(codec, k, f"codec.{k}")
        if not isinstance(v, list) or len(v) != c or not all(
                finite(x) and x > lo for x in v):
            fail(f"codec.{k}", f"{c} finite numbers" + (" > 0" if lo == 0 else ""), v)
    s = obj(m, "sampling", "sampling")
    integer(s, "steps", "sampling.steps", 1, scheduler.MAX_STEPS)
    number(s, "guidance", "sampling.guidance", *scheduler.GUIDANCE_RANGE)
    shift = number(s, "shift", "sampling.shift", 0.0, 1e6, open_lo=True)
    string(s, "mode", "sampling.mode", MODES)
    check_scheduler(obj(m, "scheduler", "scheduler"), shift)
    rng = obj(m, "rng", "rng")
    string(rng, "name", "rng.name", [RNG["name"]])
    integer(rng, "version", "rng.version", RNG["version"], RNG["version"])
    files = obj(m, "files", "files")
    if not files:
        fail("files", "an object listing every bundle file", files)
    for rel, meta in files.items():
        where = f"files.{rel}"
        relpath(rel, where)
        if not isinstance(meta, dict):
            fail(where, "an object {size, sha256}", meta)
        integer(meta, "size", f"{where}.size", 0)
        v = missing(meta, "sha256", f"{where}.sha256")
        if not isinstance(v, str) or not _HEX64.match(v):
            fail(f"{where}.sha256", "64 lowercase hex digits", v)
    graphs = obj(m, "graphs", "graphs")
    for required in ("denoise", "decoder"):
        obj(graphs, required, f"graphs.{required}")
    if v3:
        check_conditioning(m, graphs)


TOKENIZER_TYPE = "bert-wordpiece-uncased"
SPECIAL_TOKENS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
MAX_VOCAB = 1 << 20


def check_conditioning(m: dict, graphs: dict) -> None:
    """v3 ``conditioning`` (and, for prompts, ``tokenizer`` and the ``text_encoder`` graph)."""
    cond = obj(m, "conditioning", "conditioning")
    kind = string(cond, "kind", "conditioning.kind", ["class", "text"])
    null = obj(cond, "null", "conditioning.null")
    n = len(m["classes"])
    if kind == "class":
        integer(null, "class", "conditioning.null.class", n, n)
        return
    v = missing(null, "prompt", "conditioning.null.prompt")
    if v != "":
        fail("conditioning.null.prompt", "'' (the empty prompt)", v)
    integer(null, "style", "conditioning.null.style", n, n)
    integer(cond, "text_dim", "conditioning.text_dim", 1, 8192)
    boolean(cond, "text_tokens", "conditioning.text_tokens")
    obj(graphs, "text_encoder", "graphs.text_encoder")
    tok = obj(m, "tokenizer", "tokenizer")
    string(tok, "type", "tokenizer.type", [TOKENIZER_TYPE])
    for k in ("tokenizer_json", "vocab"):
        relpath(missing(tok, k, f"tokenizer.{k}"), f"tokenizer.{k}")
        if tok[k] not in m["files"]:
            fail(f"tokenizer.{k}", "a path listed in files", tok[k])
    integer(tok, "vocab_size", "tokenizer.vocab_size", 104, MAX_VOCAB)
    integer(tok, "max_tokens", "tokenizer.max_tokens", 2, 512)
    special = obj(tok, "special_tokens", "tokenizer.special_tokens")
    if special != SPECIAL_TOKENS:
        fail("tokenizer.special_tokens", str(SPECIAL_TOKENS), special)


def check_scheduler(sch: dict, shift: float) -> None:
    """Type, shift and every listed timesteps list, bit-exact with the formula (BUNDLE.md 3)."""
    string(sch, "type", "scheduler.type", [scheduler.SPEC["type"]])
    s = number(sch, "shift", "scheduler.shift", 0.0, 1e6, open_lo=True)
    if s != shift:
        fail("scheduler.shift", f"{shift} (= sampling.shift)", s)
    ts = obj(sch, "timesteps", "scheduler.timesteps")
    for key, values in ts.items():
        where = f"scheduler.timesteps.{key}"
        if not key.isdigit() or not 1 <= int(key) <= scheduler.MAX_STEPS:
            fail(where, f"a key N in 1..{scheduler.MAX_STEPS}", key)
        n = int(key)
        if not isinstance(values, list) or len(values) != n + 1 or not all(
                finite(v) for v in values):
            fail(where, f"{n + 1} numbers", values)
        want = scheduler.timesteps(n, s)
        got = np.asarray(values, dtype=np.float64).astype(np.float32)
        if not np.array_equal(got, want):
            i = int(np.flatnonzero(got != want)[0])
            fail(f"{where}[{i}]", f"{float(want[i])!r} (section 3 formula)", values[i])
