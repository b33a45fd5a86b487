"""Reading and verifying a schema v2 bundle (``runtime/BUNDLE.md``). No torch.

:func:`open_bundle` checks schema name and version, runs the one schema check
(:func:`lrf.runtime.schema.check_manifest`), enforces containment (no symlinks, nothing unlisted,
external data listed), verifies every file's size and sha256 and parses the graph entries into
:class:`GraphSpec` objects that bind tensors by role.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lrf.digest import sha256_file
from lrf.runtime import schema as sc
from lrf.runtime import onnx_structure
from lrf.runtime.containment import MANIFEST, ContainmentError, check_tree, inside, \
    onnx_external_data

SCHEMA, SCHEMA_VERSION = sc.SCHEMA, sc.SCHEMA_VERSION
DTYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "int64": np.int64}
MAX_MANIFEST_BYTES = 16 << 20
ROLES = {"latent", "timesteps", "label", "guidance", "image", "token_ids", "attention_mask",
         "text_pooled", "text_tokens"}
# graph -> (input roles, output roles) it must have (BUNDLE.md 2.2; text bundles: 11.3)
GRAPH_ROLES = {"denoise": ({"latent", "timesteps", "label", "guidance"}, {"latent"}),
               "decoder": ({"latent"}, {"image"}),
               "encoder": ({"image"}, {"latent"})}


def graph_roles(manifest: dict) -> dict[str, tuple[set, set]]:
    """The roles each graph must have in this bundle: a text bundle's ``denoise`` also takes
    the prompt's conditioning, which its ``text_encoder`` makes."""
    cond = manifest.get("conditioning") if manifest.get("schema_version") == 3 else None
    if not cond or cond.get("kind") != "text":
        return GRAPH_ROLES
    text = {"text_pooled"} | ({"text_tokens", "attention_mask"} if cond["text_tokens"] else set())
    return {**GRAPH_ROLES,
            "denoise": (GRAPH_ROLES["denoise"][0] | text, {"latent"}),
            "text_encoder": ({"token_ids", "attention_mask"}, text - {"attention_mask"})}

# names this runtime's own (newest) schema; the Kotlin, Swift and web readers name theirs
V1_LINE = ("bundle schema v1 is no longer supported by this runtime "
           f"(schema v{SCHEMA_VERSION}); re-export it with lrf-export")


GRAPH_FORMATS = ("onnx", "pte", "mlpackage")   # onnx, executorch and coreml graph files


def _unique_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"duplicate key {dup[:60]!r}")
    return dict(pairs)


def strict_json(raw: bytes, where: str):
    """Strict JSON for untrusted files: UTF-8, no NaN/Infinity, no duplicate keys (readers in
    other languages would disagree on which one wins), no over-long numbers; ValueError naming
    ``where`` otherwise."""
    def constant(c):
        raise ValueError(f"non-standard constant {c}")

    def integer(text):
        if len(text.lstrip("-")) > 20:   # beyond int64/uint64: no field of ours is that long
            raise ValueError(f"integer of {len(text)} digits")
        return int(text)

    def number(text):
        v = float(text)
        if not math.isfinite(v):   # 1e400 parses as infinity
            raise ValueError(f"number {text[:40]} overflows a float")
        return v

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=constant, parse_int=integer,
                          parse_float=number, object_pairs_hook=_unique_keys)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:   # JSONDecodeError too
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{where}: not valid JSON ({msg[:120]}); re-export the bundle") from None


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, role, dtype and shape (-1 = dynamic, named in dims)."""

    name: str
    role: str
    dtype: str
    shape: tuple[int, ...]
    dims: tuple[str, ...]

    @classmethod
    def from_dict(cls, d, where: str) -> "TensorSpec":
        if not isinstance(d, dict):
            sc.fail(where, "a tensor object", d)
        name = sc.string(d, "name", f"{where}.name")
        role = sc.string(d, "role", f"{where}.role", sorted(ROLES))
        dtype = sc.string(d, "dtype", f"{where}.dtype", sorted(DTYPES))
        shape, dims = sc.missing(d, "shape", f"{where}.shape"), sc.missing(d, "dims", f"{where}.dims")
        if not isinstance(shape, list) or not 1 <= len(shape) <= 8 or not all(
                isinstance(s, int) and not isinstance(s, bool) and (s == -1 or 1 <= s <= 1 << 20)
                for s in shape):
            sc.fail(f"{where}.shape", "a list of 1..8 ints (-1 = dynamic, else >= 1)", shape)
        if not isinstance(dims, list) or len(dims) != len(shape) or not all(
                isinstance(s, str) and s for s in dims):
            sc.fail(f"{where}.dims", f"{len(shape)} dimension names", dims)
        return cls(name, role, dtype, tuple(shape), tuple(dims))

    def to_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "dtype": self.dtype,
                "shape": list(self.shape), "dims": list(self.dims)}

    def describe(self) -> list:
        return [d if s < 0 else s for s, d in zip(self.shape, self.dims)]

    def check(self, value, graph: str, bound: dict[str, int] | None = None,
              kind: str = "input") -> np.ndarray:
        """Return ``value`` as a C-contiguous array of this spec, or raise ValueError saying what
        was expected and what was given. ``bound`` maps dynamic dim names to sizes already seen
        in this call (e.g. the batch), so all tensors agree."""
        want = np.dtype(DTYPES[self.dtype])
        what = f"{graph}: {kind} {self.name!r} ({self.role})"
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{what} must be a numpy array of dtype {self.dtype}, got "
                             f"{type(value).__name__}")
        if value.dtype != want:
            raise ValueError(f"{what} expected dtype {self.dtype}, got {value.dtype} "
                             f"(shape {list(value.shape)})")
        if value.ndim != len(self.shape) or any(
                w >= 0 and s != w for s, w in zip(value.shape, self.shape)):
            raise ValueError(f"{what} expected shape {self.describe()}, got {list(value.shape)}")
        bound = {} if bound is None else bound
        for size, want_size, dim in zip(value.shape, self.shape, self.dims):
            if want_size < 0:
                if size < 1:
                    raise ValueError(f"{what} dimension {dim!r} must be >= 1, got shape "
                                     f"{list(value.shape)}")
                if bound.setdefault(dim, size) != size:
                    raise ValueError(f"{what} has {dim}={size} but another tensor has "
                                     f"{dim}={bound[dim]}")
        return np.ascontiguousarray(value)


@dataclass(frozen=True)
class GraphSpec:
    """One graph entry of the manifest; tensors are found by role."""

    name: str
    file: str
    format: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    window: tuple[int, int | None] | None = None
    external_data: tuple[str, ...] = ()
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, name: str, d, required: dict | None = None) -> "GraphSpec":
        where = f"graphs.{name}"
        if not isinstance(d, dict):
            sc.fail(where, "a graph object", d)
        file = sc.relpath(sc.missing(d, "file", f"{where}.file"), f"{where}.file")
        fmt = sc.string(d, "format", f"{where}.format", GRAPH_FORMATS)
        tensors = {}
        for kind in ("inputs", "outputs"):
            lst = sc.missing(d, kind, f"{where}.{kind}")
            if not isinstance(lst, list) or not lst:
                sc.fail(f"{where}.{kind}", "a non-empty list of tensors", lst)
            tensors[kind] = tuple(TensorSpec.from_dict(t, f"{where}.{kind}[{i}]")
                                  for i, t in enumerate(lst))
            roles = [t.role for t in tensors[kind]]
            names = [t.name for t in tensors[kind]]
            if len(set(roles)) != len(roles) or len(set(names)) != len(names):
                sc.fail(f"{where}.{kind}", "distinct roles and names", roles)
            need = (required or GRAPH_ROLES).get(name, (set(), set()))[kind == "outputs"]
            if need and set(roles) != need:
                sc.fail(f"{where}.{kind}", f"roles {sorted(need)}", sorted(roles))
        ext = d.get("external_data", [])
        if not isinstance(ext, list):
            sc.fail(f"{where}.external_data", "a list of bundle paths", ext)
        ext = tuple(sc.relpath(e, f"{where}.external_data") for e in ext)
        spec = cls(name, file, fmt, tensors["inputs"], tensors["outputs"],
                   _window(d, where) if name == "denoise" else None, ext, d)
        if name == "denoise":
            ts = spec.role("timesteps")
            lo, hi = spec.window
            if len(ts.shape) != 1 or (ts.shape[0] >= 0 and (hi is None or ts.shape[0] != hi + 1)):
                sc.fail(f"{where}.inputs[timesteps].shape",
                        "[-1] or [window.max + 1] (= window.min + 1)", list(ts.shape))
            if ts.shape[0] >= 0 and lo != hi:
                sc.fail(f"{where}.window", "min == max for a static timesteps shape",
                        d["window"])
        return spec

    def role(self, role: str, kind: str = "inputs") -> TensorSpec:
        for t in getattr(self, kind):
            if t.role == role:
                return t
        raise ValueError(f"graph {self.name!r} has no {kind[:-1]} with role {role!r}")


def _window(d: dict, where: str) -> tuple[int, int | None]:
    w = sc.obj(d, "window", f"{where}.window")
    lo = sc.integer(w, "min", f"{where}.window.min", 1, 1 << 20)
    hi = sc.missing(w, "max", f"{where}.window.max")
    if hi is not None:
        hi = sc.integer(w, "max", f"{where}.window.max", lo, 1 << 20)
    return lo, hi


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its (resolved) folder, the parsed manifest and the graph specs."""

    path: Path
    manifest: dict
    graphs: dict[str, GraphSpec]

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    def file(self, rel: str) -> Path:
        """The bundle file ``rel``: must be listed, a regular file inside, reached via no link.
        A listed folder (a graph package such as ``denoise.mlpackage``, listed file by file) is
        returned as a folder."""
        files = self.manifest["files"]
        if rel in files:
            return inside(self.path, rel)
        if any(f.startswith(rel + "/") for f in files):
            return inside(self.path, rel, folder=True)
        raise ContainmentError(f"bundle file {rel} is not listed in {MANIFEST}")


def read_manifest(path: str | os.PathLike) -> dict:
    """Parse ``manifest.json``, check schema name and version and run the one schema check
    (not the files)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"bundle {str(path)!r} is not a directory (expected a folder "
                                f"holding {MANIFEST}; make one with lrf-export)")
    try:
        mpath = inside(path.resolve(), MANIFEST)
    except FileNotFoundError:
        raise FileNotFoundError(f"bundle {str(path)!r} has no {MANIFEST}; is it a bundle "
                                "written by lrf-export?") from None
    size = mpath.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ValueError(f"{MANIFEST} is {size} bytes, more than a bundle manifest can be "
                         f"({MAX_MANIFEST_BYTES}); re-export the bundle")
    manifest = strict_json(mpath.read_bytes(), MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        got = manifest.get("schema") if isinstance(manifest, dict) else type(manifest).__name__
        sc.fail("schema", repr(SCHEMA), got)
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        sc.fail("schema_version", "a positive integer", version)
    if version > max(sc.SUPPORTED_VERSIONS):
        raise ValueError(f"{MANIFEST}: bundle schema version {version} is newer than this "
                         f"runtime supports ({SCHEMA_VERSION}); update lrf-mobile or re-export "
                         "the bundle with the matching lrf-export")
    if version not in sc.SUPPORTED_VERSIONS:
        raise ValueError(V1_LINE.replace("v1", f"v{version}"))
    sc.check_manifest(manifest)
    return manifest


def verify_files(path: str | os.PathLike, manifest: dict) -> None:
    """Every listed file is a regular file inside the bundle with its size and sha256."""
    root = Path(path).resolve()
    for rel, meta in sorted(manifest["files"].items()):
        fpath = inside(root, rel)
        size = fpath.stat().st_size
        if size != meta["size"]:
            raise ValueError(f"bundle file {rel}: size {size} bytes, manifest says "
                             f"{meta['size']}; the file is corrupt or was replaced")
        if sha256_file(fpath) != meta["sha256"]:
            raise ValueError(f"bundle file {rel}: sha256 mismatch; the file is corrupt or was "
                             "replaced: re-export or re-copy the bundle")


def check_graph(data: bytes, spec: "GraphSpec") -> None:
    """The structural checks of an ONNX graph file's bytes (its loops are the schema's:
    :mod:`lrf.runtime.onnx_structure`), at load and again on the bytes a backend opens."""
    ts = next((t.name for t in spec.inputs if t.role == "timesteps"), None)
    onnx_structure.check_graph_structure(data, spec.file, spec.name, ts)


def verify_file(path: Path, rel: str, meta: dict, data: bytes | None = None) -> None:
    """``path`` (or its bytes ``data``) has the size and sha256 the manifest lists for ``rel``:
    called again when a graph is first opened, so a file swapped after load is refused."""
    size = len(data) if data is not None else path.stat().st_size
    digest = sha256_bytes(data) if data is not None else None
    if size != meta["size"] or (digest or sha256_file(path)) != meta["sha256"]:
        raise ValueError(f"bundle file {rel}: its size or sha256 no longer matches "
                         f"{MANIFEST} (changed since the bundle was loaded?); re-copy the bundle "
                         "and load it again")


def sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def open_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read and check the manifest, enforce containment, verify every file's checksum (unless
    ``verify=False``: containment is still enforced) and parse the graph entries."""
    manifest = read_manifest(path)
    root = Path(path).resolve()
    files = manifest["files"]
    check_tree(root, set(files))
    if verify:
        verify_files(root, manifest)
    required = graph_roles(manifest)
    graphs = {name: GraphSpec.from_dict(name, g, required)
              for name, g in manifest["graphs"].items()}
    bundle = Bundle(path=root, manifest=manifest, graphs=graphs)
    for name, g in graphs.items():
        listed = g.file in files or any(f.startswith(g.file + "/") for f in files)
        if not listed:
            sc.fail(f"graphs.{name}.file", "a path listed in files", g.file)
        for ext in g.external_data:
            if ext not in files:
                sc.fail(f"graphs.{name}.external_data", "paths listed in files", ext)
        if g.format == "onnx":
            data = bundle.file(g.file).read_bytes()
            check_graph(data, g)
            used = onnx_external_data(data, g.file)
            base = g.file.rsplit("/", 1)[0] + "/" if "/" in g.file else ""
            for loc in used:
                rel = base + loc
                if loc == "" or rel not in g.external_data:
                    raise ContainmentError(f"graph {name} ({g.file}) reads external data "
                                           f"{loc!r} that graphs.{name}.external_data does not "
                                           "list; re-export the bundle")
    return bundle
