"""Containment (``runtime/BUNDLE.md`` 2.3): a bundle is untrusted input.

Every file the runtime opens resolves to a regular file inside the bundle folder; symlinks are
refused anywhere below it; anything on disk the manifest does not list is refused; an ONNX
graph's external-data locations are listed files. Errors name bundle-relative paths only (never
facts about what a link points to).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MANIFEST = "manifest.json"
# A bundle path is short and shallow (the exporter writes at most golden/<case>/<file>); the
# bounds keep every check on a hostile manifest linear in its size (a 0.4 MB key of 200,000
# components cost minutes when its folder prefixes were built one by one).
MAX_PATH_CHARS = 1024
MAX_PATH_PARTS = 32


def path_problem(rel) -> str | None:
    """Why ``rel`` is not a bundle-relative path ('/'-separated, no empty, '.' or '..' part,
    no '\\' or ':', at most MAX_PATH_PARTS parts and MAX_PATH_CHARS characters), or None."""
    if not isinstance(rel, str) or not rel:
        return "not a non-empty string"
    if len(rel) > MAX_PATH_CHARS or rel.count("/") >= MAX_PATH_PARTS:
        return f"longer than {MAX_PATH_CHARS} characters or {MAX_PATH_PARTS} parts"
    if "\\" in rel or ":" in rel or "\0" in rel or any(
            p in ("", ".", "..") for p in rel.split("/")):
        return "not a relative path inside the bundle"
    return None


def folders_of(paths) -> set[str]:
    """Every folder on the way to each of ``paths`` ("a/b/c" -> "a", "a/b"): shared prefixes
    are added once (the walk up stops at the first folder already seen)."""
    out: set[str] = set()
    for rel in paths:
        i = rel.rfind("/")
        while i > 0:
            folder = rel[:i]
            if folder in out:
                break
            out.add(folder)
            i = rel.rfind("/", 0, i)
    return out


class ContainmentError(ValueError):
    """A bundle file is a symlink, outside the bundle, not a regular file, or unlisted."""


def inside(root: Path, rel: str, folder: bool = False) -> Path:
    """``root/rel`` after checking that no component below ``root`` is a symlink and the
    result is a regular file (a folder if ``folder``, e.g. an ``.mlpackage``); ``root`` itself
    is the resolved bundle folder."""
    if path_problem(rel):
        raise ContainmentError(f"bundle path {rel[:80]!r} is {path_problem(rel)}")
    p = root
    parts = rel.split("/")
    for i, part in enumerate(parts):
        p = p / part
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            raise FileNotFoundError(f"bundle file {rel} is missing (listed in {MANIFEST}); "
                                    "re-export or re-copy the bundle") from None
        sub = "/".join(parts[:i + 1])  # bounded by MAX_PATH_PARTS
        if stat.S_ISLNK(st.st_mode):
            raise ContainmentError(f"bundle entry {sub} is a symlink; bundles must hold real "
                                   "files only (copy the bundle without links)")
        want_dir = folder or i < len(parts) - 1
        if want_dir and not stat.S_ISDIR(st.st_mode) or \
                not want_dir and not stat.S_ISREG(st.st_mode):
            raise ContainmentError(f"bundle entry {sub} is not a regular "
                                   f"{'folder' if want_dir else 'file'}")
    return p


def check_tree(root: Path, listed: set[str]) -> None:
    """Refuse symlinks and every entry below ``root`` that is not the manifest, a listed file
    or a folder on the path of one (one line naming the first such entry)."""
    bad = next((r for r in listed if path_problem(r)), None)
    if bad is not None:
        raise ContainmentError(f"{MANIFEST} lists {bad[:60]!r}..., which is "
                               f"{path_problem(bad)}; re-export the bundle")
    folders = folders_of(listed)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath).relative_to(root).as_posix()
        for name in sorted(dirnames) + sorted(filenames):
            rel = name if base == "." else f"{base}/{name}"
            mode = os.lstat(Path(dirpath) / name).st_mode
            if stat.S_ISLNK(mode):
                raise ContainmentError(f"bundle entry {rel} is a symlink; bundles must hold "
                                       "real files only (copy the bundle without links)")
            if stat.S_ISDIR(mode) and rel in listed:
                raise ContainmentError(f"bundle entry {rel} is a folder, but {MANIFEST} lists "
                                       "it as a file; re-export or re-copy the bundle")
            if stat.S_ISDIR(mode):
                ok = rel in folders
            else:
                ok = rel in listed or rel == MANIFEST
            if not ok:
                raise ContainmentError(f"bundle entry {rel} is not listed in {MANIFEST}; "
                                       "remove it or re-export the bundle")


# ---------------------------------------------------------------- ONNX external data
# Protobuf field numbers (onnx.proto) on the paths that can hold a TensorProto.
_MODEL = {7: "graph", 25: "function"}
_GRAPH = {1: "node", 5: "tensor", 15: "sparse"}
_FUNCTION = {7: "node"}
_NODE = {5: "attribute"}
_ATTRIBUTE = {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"}
_SPARSE = {1: "tensor", 2: "tensor"}
_KINDS = {"graph": _GRAPH, "function": _FUNCTION, "node": _NODE, "attribute": _ATTRIBUTE,
          "sparse": _SPARSE}


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def _fields(buf: bytes):
    """(field number, wire type, value) of one protobuf message (value: bytes for type 2)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
        if i > len(buf):
            raise ValueError("truncated field")
        yield num, wt, v


def _tensor_locations(buf: bytes, out: list[str]) -> None:
    found, external = [], False
    for num, wt, v in _fields(buf):
        if num == 13 and wt == 2:  # external_data: StringStringEntryProto {key=1, value=2}
            entry = {k: val for k, _, val in _fields(v)}
            if entry.get(1) == b"location":
                found.append(entry.get(2, b"").decode("utf-8", "replace"))
        elif num == 14 and wt == 0 and v == 1:  # data_location = EXTERNAL
            external = True
    out.extend(found or ([""] if external else []))


def _walk(buf: bytes, kind: dict, out: list[str], depth: int = 0) -> None:
    if depth > 64:
        raise ValueError("graphs nested too deeply")
    for num, wt, v in _fields(buf):
        sub = kind.get(num)
        if wt != 2 or sub is None:
            continue
        if sub == "tensor":
            _tensor_locations(v, out)
        else:
            _walk(v, _KINDS[sub], out, depth + 1)


def onnx_external_data(path: Path | bytes, rel: str) -> list[str]:
    """Every external-data ``location`` the ONNX file at ``path`` references (initializers,
    Constant nodes, subgraphs and functions); ContainmentError when it cannot be parsed."""
    out: list[str] = []
    try:
        _walk(path if isinstance(path, bytes) else path.read_bytes(), _MODEL, out)
    except (ValueError, IndexError):
        raise ContainmentError(f"bundle file {rel} is not a readable ONNX model; re-export "
                               "the bundle") from None
    return sorted(set(out))
