"""Reading and verifying a bundle's ``manifest.json`` (schema: ``runtime/BUNDLE.md``). No torch.

:func:`open_bundle` checks the schema name and version, that every listed file exists with its
recorded size and sha256, and parses the graph entries into :class:`GraphSpec` objects whose
:meth:`TensorSpec.check` validates arrays (expected vs actual shape and dtype).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lrf.digest import sha256_file  # noqa: F401  (re-exported by lrf.runtime)

SCHEMA = "lrf-bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
DTYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, dtype and shape (-1 = dynamic dimension named in dims)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    dims: tuple[str, ...]

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "TensorSpec":
        try:
            spec = cls(str(d["name"]), str(d["dtype"]), tuple(int(v) for v in d["shape"]),
                       tuple(str(v) for v in d.get("dims", [f"d{i}" for i in range(len(d["shape"]))])))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: malformed tensor entry {d!r} ({e})") from None
        if spec.dtype not in DTYPES:
            raise ValueError(f"{where}: tensor {spec.name!r} has dtype {spec.dtype!r}; "
                             f"this runtime knows {sorted(DTYPES)}")
        if len(spec.dims) != len(spec.shape):
            raise ValueError(f"{where}: tensor {spec.name!r} has {len(spec.shape)} dims in shape "
                             f"but {len(spec.dims)} names in dims")
        return spec

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "dims": list(self.dims)}

    def check(self, value, graph: str, bound: dict[str, int] | None = None) -> np.ndarray:
        """Return ``value`` as a C-contiguous array of this spec, or raise ValueError saying what
        was expected and what was given. ``bound`` maps dynamic dim names to sizes already seen
        in this call (e.g. the batch), so all inputs agree."""
        want = np.dtype(DTYPES[self.dtype])
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{graph}: input {self.name!r} must be a numpy array of dtype "
                             f"{self.dtype}, got {type(value).__name__}")
        if value.dtype != want:
            raise ValueError(f"{graph}: input {self.name!r} expected dtype {self.dtype}, got "
                             f"{value.dtype} (shape {list(value.shape)})")
        expected = self.describe()
        if value.ndim != len(self.shape):
            raise ValueError(f"{graph}: input {self.name!r} expected shape {expected}, got "
                             f"{list(value.shape)}")
        bound = {} if bound is None else bound
        for size, want_size, dim in zip(value.shape, self.shape, self.dims):
            if want_size >= 0 and size != want_size:
                raise ValueError(f"{graph}: input {self.name!r} expected shape {expected}, got "
                                 f"{list(value.shape)}")
            if want_size < 0:
                if size < 1:
                    raise ValueError(f"{graph}: input {self.name!r} dimension {dim!r} must be "
                                     f">= 1, got shape {list(value.shape)}")
                if bound.setdefault(dim, size) != size:
                    raise ValueError(f"{graph}: input {self.name!r} has {dim}={size} but another "
                                     f"input has {dim}={bound[dim]}")
        return np.ascontiguousarray(value)

    def describe(self) -> list:
        return [d if s < 0 else s for s, d in zip(self.shape, self.dims)]


@dataclass(frozen=True)
class GraphSpec:
    """One graph entry of the manifest."""

    name: str
    file: str
    format: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    steps: int | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, name: str, d: dict) -> "GraphSpec":
        where = f"manifest graphs.{name}"
        try:
            return cls(name=name, file=_safe_relpath(d["file"], where), format=str(d["format"]),
                       inputs=tuple(TensorSpec.from_dict(t, where) for t in d["inputs"]),
                       outputs=tuple(TensorSpec.from_dict(t, where) for t in d["outputs"]),
                       steps=int(d["steps"]) if d.get("steps") is not None else None, raw=d)
        except KeyError as e:
            raise ValueError(f"{where}: missing field {e.args[0]!r}") from None


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its folder, the parsed manifest and the graph specs."""

    path: Path
    manifest: dict
    graphs: dict[str, GraphSpec]

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def fused_steps(self) -> list[int]:
        return sorted(int(n) for n in self.manifest.get("fused_steps", []))

    def file(self, rel: str) -> Path:
        return self.path / rel


def _safe_relpath(rel, where: str) -> str:
    """Bundle paths are relative and stay inside the bundle."""
    rel = str(rel)
    parts = rel.replace("\\", "/").split("/")
    if not rel or rel.startswith("/") or ".." in parts or ":" in parts[0]:
        raise ValueError(f"{where}: file path {rel!r} must be relative and inside the bundle")
    return rel


def read_manifest(path: str | os.PathLike) -> dict:
    """Parse ``manifest.json`` and check schema name and version (not the files)."""
    path = Path(path)
    mpath = path / MANIFEST
    if not path.is_dir():
        raise FileNotFoundError(f"bundle {str(path)!r} is not a directory (expected a folder "
                                f"holding {MANIFEST}; make one with lrf-export)")
    if not mpath.is_file():
        raise FileNotFoundError(f"bundle {str(path)!r} has no {MANIFEST}; is it a bundle "
                                "written by lrf-export?")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{mpath}: not valid JSON ({e}); re-export the bundle") from e
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        got = manifest.get("schema") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{mpath}: schema {got!r}, expected {SCHEMA!r}")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{mpath}: schema_version must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise ValueError(f"{mpath}: bundle schema version {version} is newer than this runtime "
                         f"supports ({SCHEMA_VERSION}); update lrf-mobile or re-export the "
                         "bundle with the matching lrf-export")
    for key in ("target", "classes", "latent", "sampling", "scheduler", "rng", "graphs", "files"):
        if key not in manifest:
            raise ValueError(f"{mpath}: missing required field {key!r}")
    return manifest


def verify_files(path: str | os.PathLike, manifest: dict) -> None:
    """Every file listed in ``manifest['files']`` exists with its size and sha256."""
    path = Path(path)
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise ValueError(f"{path / MANIFEST}: 'files' must list every bundle file")
    for rel, meta in sorted(files.items()):
        fpath = path / _safe_relpath(rel, f"{path / MANIFEST} files")
        if not fpath.is_file():
            raise FileNotFoundError(f"bundle {str(path)!r} is missing {rel} (listed in "
                                    f"{MANIFEST}); re-export or re-copy the bundle")
        size = fpath.stat().st_size
        if size != meta.get("size"):
            raise ValueError(f"bundle file {rel}: size {size} bytes, manifest says "
                             f"{meta.get('size')}; the file is corrupt or was replaced")
        digest = sha256_file(fpath)
        if digest != meta.get("sha256"):
            raise ValueError(f"bundle file {rel}: sha256 mismatch (file {digest[:16]}..., "
                             f"manifest {str(meta.get('sha256'))[:16]}...); the file is corrupt "
                             "or was replaced: re-export or re-copy the bundle")


def open_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read the manifest, verify every file's checksum (unless ``verify=False``), parse graphs."""
    path = Path(path)
    manifest = read_manifest(path)
    if verify:
        verify_files(path, manifest)
    graphs = {name: GraphSpec.from_dict(name, g) for name, g in manifest["graphs"].items()}
    for name, g in graphs.items():
        if g.file not in manifest["files"] and not any(
                f.startswith(g.file.rstrip("/") + "/") for f in manifest["files"]):
            raise ValueError(f"{path / MANIFEST}: graph {name!r} file {g.file!r} is not listed "
                             "in 'files' (so its checksum cannot be verified)")
    for required in ("step", "decoder"):
        if required not in graphs:
            raise ValueError(f"{path / MANIFEST}: no {required!r} graph; a bundle needs "
                             "'step' and 'decoder'")
    return Bundle(path=path, manifest=manifest, graphs=graphs)
