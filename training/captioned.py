"""Captioned image data: any image folder with a ``metadata.jsonl`` (the Hugging Face
"imagefolder" convention), read in place from a directory or a .tar/.tar.gz.

    <root>/[<prefix>/]<split>/metadata.jsonl      one JSON object per line:
        file_name   path of the image, relative to the folder holding metadata.jsonl
        text        the caption
        ...         optional extra columns (``style``, ``name``, ``aliases``, ...), kept as given

Images are converted to RGBA (an RGB image gets alpha 255) and resized to ``size`` x ``size`` in
premultiplied space (box filter), so transparent pixels never bleed colour into edges. Every bad
row is one ``ValueError`` naming the metadata file and the row (1-based line number).

``prepare`` writes the decoded set once to a safetensors file (uint8 images + JSON metadata, no
pickle) that the trainers read in a second instead of decoding thousands of PNGs per run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

METADATA = "metadata.jsonl"
PREPARED_FORMAT = "lrf-captioned/1"
MAX_METADATA_BYTES = 256 << 20
MAX_CAPTION_CHARS = 1000


@dataclass
class CaptionedSet:
    images: np.ndarray                       # [N, S, S, 4] uint8, straight (not premultiplied) RGBA
    texts: list[str]                         # [N] captions
    columns: dict[str, list] = field(default_factory=dict)   # extra columns, [N] each
    file_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def column(self, name: str) -> list:
        if name not in self.columns:
            raise ValueError(f"the data has no column {name!r} (columns: "
                             f"{', '.join(['text', *sorted(self.columns)])})")
        return self.columns[name]

    def labels(self, column: str, classes: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
        """One column as class ids: (labels [N] int64, class names, sorted unless given)."""
        values = [str(v) for v in self.column(column)]
        classes = sorted(set(values)) if classes is None else list(classes)
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted(set(values) - set(index))
        if unknown:
            raise ValueError(f"column {column!r} has values {unknown[:5]} not among {classes}")
        return np.array([index[v] for v in values], dtype=np.int64), classes

    def subset(self, keep: np.ndarray) -> "CaptionedSet":
        keep = np.asarray(keep)
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return CaptionedSet(self.images[idx], pick(self.texts),
                            {k: pick(v) for k, v in self.columns.items()},
                            pick(self.file_names) if self.file_names else [])


def is_held_out(name: str, fraction: float) -> bool:
    """A deterministic split by caption: ``name`` is held out when its sha256 falls in the first
    ``fraction`` of the hash space (the same names on every machine, whatever the data order)."""
    if fraction <= 0:
        return False
    h = int.from_bytes(hashlib.sha256(name.strip().lower().encode()).digest()[:8], "big")
    return h < fraction * 2**64


def _rgba(data: bytes, size: int, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            rgba = im.convert("RGBA")
    except Exception as e:  # PIL raises many types for a bad file
        raise ValueError(f"{where}: not a readable image ({type(e).__name__}: {e})") from None
    if rgba.size != (size, size):
        rgba = rgba.convert("RGBa").resize((size, size), Image.Resampling.BOX).convert("RGBA")
    return np.asarray(rgba, dtype=np.uint8)


def _parse_rows(text: str, where: str) -> list[dict]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where} row {n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where} row {n}: expected a JSON object, got {type(row).__name__}")
        for key in ("file_name", "text"):
            v = row.get(key)
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"{where} row {n}: {key!r} must be a non-empty string, got "
                                 f"{v!r:.60}")
        if len(row["text"]) > MAX_CAPTION_CHARS:
            raise ValueError(f"{where} row {n}: caption longer than {MAX_CAPTION_CHARS} characters")
        name = row["file_name"].replace("\\", "/")
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"{where} row {n}: file_name {name!r} leaves the data folder")
        rows.append({**row, "file_name": name, "_row": n})
    if not rows:
        raise ValueError(f"{where}: no rows")
    return rows


def load_captioned(path: str, size: int | None = 64, split: str = "train",
                   limit: int | None = None) -> CaptionedSet:
    """Read a captioned image folder (or archive of one), or a file written by :func:`prepare`
    (``size=None``: the size it was prepared at; 64 px for a folder or archive)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"data path {path!r} does not exist: pass a folder holding "
                                f"{split}/{METADATA}, a .tar/.tar.gz of one, or a prepared "
                                ".safetensors file")
    if path.endswith(".safetensors"):
        return _load_prepared(path, size, limit)
    size = 64 if size is None else size
    files: dict[str, bytes] | None = None
    if os.path.isdir(path):
        meta_path = _find_metadata([os.path.relpath(os.path.join(d, f), path)
                                    for d, _, fs in os.walk(path) for f in fs], split, path)
        base = os.path.dirname(meta_path)
        with open(os.path.join(path, meta_path), "rb") as fh:
            raw = fh.read(MAX_METADATA_BYTES + 1)

        def read(name: str) -> bytes | None:
            full = os.path.join(path, base, name)
            return open(full, "rb").read() if os.path.isfile(full) else None
    elif tarfile.is_tarfile(path):
        files = {}
        with tarfile.open(path, "r:*") as tar:
            for m in tar:
                if m.isfile():
                    files[m.name.lstrip("./")] = tar.extractfile(m).read()
        meta_path = _find_metadata(list(files), split, path)
        base = os.path.dirname(meta_path)
        raw = files[meta_path]

        def read(name: str) -> bytes | None:
            return files.get(f"{base}/{name}" if base else name)
    else:
        raise ValueError(f"data path {path!r} is neither a folder nor a tar archive")
    where = f"{path}:{meta_path}"
    if len(raw) > MAX_METADATA_BYTES:
        raise ValueError(f"{where}: larger than {MAX_METADATA_BYTES >> 20} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not UTF-8 (byte {e.start})") from None
    rows = sorted(_parse_rows(text, where), key=lambda r: r["file_name"])
    if limit is not None:
        rows = rows[:limit]
    images = []
    for r in rows:
        data = read(r["file_name"])
        if data is None:
            raise ValueError(f"{where} row {r['_row']}: file_name {r['file_name']!r} is not in "
                             "the data")
        images.append(_rgba(data, size, f"{where} row {r['_row']} ({r['file_name']})"))
    extra = sorted({k for r in rows for k in r} - {"file_name", "text", "_row"})
    return CaptionedSet(images=np.stack(images), texts=[r["text"].strip() for r in rows],
                        columns={k: [r.get(k) for r in rows] for k in extra},
                        file_names=[r["file_name"] for r in rows])


def _find_metadata(names: list[str], split: str, where: str) -> str:
    """The metadata.jsonl of ``split``: ``.../<split>/metadata.jsonl``, else a lone top-level one."""
    cands = sorted((n.replace("\\", "/") for n in names if n.replace("\\", "/").split("/")[-1]
                    == METADATA), key=lambda n: n.count("/"))
    in_split = [n for n in cands if n.split("/")[-2:-1] == [split]]
    if in_split:
        return in_split[0]
    if len(cands) == 1:
        return cands[0]
    raise ValueError(f"{where}: no {split}/{METADATA} found (a captioned image folder has one "
                     f"JSON line per image with 'file_name' and 'text')" if not cands else
                     f"{where}: several {METADATA} files and none under {split}/: {cands[:3]}")


def prepare(data: str, out_path: str, size: int = 64, split: str = "train") -> CaptionedSet:
    """Decode ``data`` once and write it to ``out_path`` (safetensors, atomically)."""
    from lrf.cli import atomic_output
    from safetensors.numpy import save_file

    ds = load_captioned(data, size, split)
    meta = {"format": PREPARED_FORMAT, "size": str(size), "source": os.path.basename(data),
            "texts": json.dumps(ds.texts), "columns": json.dumps(ds.columns),
            "file_names": json.dumps(ds.file_names)}
    with atomic_output(out_path) as tmp:
        save_file({"images": np.ascontiguousarray(ds.images)}, str(tmp), metadata=meta)
    return ds


def read_tagged_safetensors(path: str, fmt: str, what: str, framework: str = "np",
                            json_keys: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file whose metadata ``format`` must be ``fmt``; the
    ``json_keys`` of the metadata are parsed. Any failure is one ValueError naming ``what``."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework=framework) as f:
            meta = f.metadata() or {}
            if meta.get("format") != fmt:
                raise ValueError(f"{path}: format {meta.get('format')!r}, expected {fmt!r}")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = {**meta, **{k: json.loads(meta[k]) for k in json_keys}}
    except ValueError as e:
        if isinstance(e, json.JSONDecodeError):
            raise ValueError(f"{path}: not a readable {what} ({e})") from None
        raise
    except Exception as e:  # safetensors' own errors for a corrupt header, a missing key
        raise ValueError(f"{path}: not a readable {what} ({type(e).__name__}: {e})") from None
    return tensors, meta


def _load_prepared(path: str, size: int | None, limit: int | None) -> CaptionedSet:
    t, meta = read_tagged_safetensors(path, PREPARED_FORMAT, "prepared data file (make it with "
                                      "`lrf-train prep`)",
                                      json_keys=("texts", "columns", "file_names"))
    if "images" not in t:
        raise ValueError(f"{path}: no images tensor")
    images, texts = t["images"], meta["texts"]
    columns, file_names = meta["columns"], meta["file_names"]
    if images.ndim != 4 or images.shape[-1] != 4 or images.shape[0] != len(texts):
        raise ValueError(f"{path}: images of shape {images.shape} for {len(texts)} captions")
    if size is not None and images.shape[1] != size:
        raise ValueError(f"{path}: prepared at {images.shape[1]} px, {size} px asked; prepare "
                         "it again with --size")
    ds = CaptionedSet(images, texts, columns, file_names)
    return ds.subset(np.arange(min(limit, len(ds)))) if limit is not None else ds


def premultiplied(images_u8: np.ndarray):
    """uint8 NHWC RGBA -> float32 NCHW torch tensor in [-1, 1], RGB premultiplied by alpha."""
    from lrf.models.codec import rgba_to_model

    return rgba_to_model(images_u8)


def straight_u8(x) -> np.ndarray:
    """Inverse of :func:`premultiplied`: [-1, 1] premultiplied NCHW -> uint8 NHWC straight RGBA."""
    from lrf.models.codec import model_to_rgba

    return model_to_rgba(x)
