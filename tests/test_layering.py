"""The import graph of the package is a DAG you can draw:

    lrf  <-  lrf.runtime  <-  lrf.models  <-  lrf.training / lrf.exporter  <-  lrf.benchmarks

A module may import only from its own layer or a lower one, and no two modules may import each
other, directly or round a loop. Imports inside functions count: a lazy import is still an
edge. The source is read with ``ast`` (nothing is imported), from the folders pyproject.toml maps
the packages onto, so a new module is checked as soon as it exists.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> layer; a package not listed here fails the test (give it a layer first)
LAYERS = {"lrf": 0, "lrf.runtime": 1, "lrf.models": 2, "lrf.training": 3, "lrf.exporter": 3,
          "lrf.exporter.targets": 3, "lrf.benchmarks": 4}


def package_dirs(root: Path) -> dict[str, Path]:
    """Package name -> folder, from pyproject.toml's setuptools package list and package-dir."""
    tool = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = tool.get("package-dir", {})
    out = {}
    for pkg in tool["packages"]:
        parent = next((p for p in sorted(mapped, key=len, reverse=True)
                       if pkg == p or pkg.startswith(p + ".")), None)
        rel = Path(mapped[parent], *pkg[len(parent):].split(".")[1:]) if parent else \
            Path(*pkg.split("."))
        out[pkg] = root / rel
    return out


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package: dotted name -> source file (a package is its __init__)."""
    out = {}
    for pkg, folder in package_dirs(root).items():
        for path in sorted(folder.glob("*.py")):
            out[pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported lrf module, line) for every import statement in the file, at any depth, plus
    ``importlib.import_module("lrf...")`` with a literal name. ``from pkg import sub`` names the
    submodule when ``sub`` is one."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = name.split(".") if path.stem == "__init__" else name.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = here[:len(here) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((sub if sub in known else base, node.lineno))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id",
                                                                              None))
              in ("import_module", "__import__") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.args[0].value, node.lineno))
    out = []
    for target, line in sorted(set(found), key=lambda f: f[1]):
        if target != "lrf" and not target.startswith("lrf."):
            continue
        while target not in known and "." in target:  # `import lrf.models.x.y` -> its module
            target = target.rsplit(".", 1)[0]
        out.append((target, line))
    return out


def package_of(module: str, known: dict[str, Path]) -> str:
    return module if known[module].stem == "__init__" else module.rsplit(".", 1)[0]


def check(root: Path, layers: dict[str, int] = LAYERS) -> tuple[list[str], int]:
    """(problems, edges checked): back-edges, unlayered packages and import cycles."""
    known = modules(root)
    problems, graph, edges = [], {}, 0
    for pkg in package_dirs(root):
        if pkg not in layers:
            problems.append(f"package {pkg} has no layer in tests/test_layering.py")
    for name, path in known.items():
        graph[name] = set()
        for target, line in imports(name, path, known):
            edges += 1
            if target == name:
                continue
            graph[name].add(target)
            src, dst = package_of(name, known), package_of(target, known)
            if layers.get(dst, 0) > layers.get(src, 0):
                problems.append(f"{path.relative_to(root)}:{line}: {name} (layer "
                                f"{layers.get(src)}) imports {target} (layer {layers.get(dst)}), "
                                "a higher layer")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems, edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One loop through each strongly connected component of more than one module."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):  # Tarjan; the graph is a few hundred edges
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(loop_in(sorted(comp), graph))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def loop_in(comp: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A path from comp[0] back to itself inside the component (breadth first)."""
    start, inside = comp[0], set(comp)
    prev, frontier = {}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & inside):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def test_the_package_imports_only_downwards_and_without_cycles():
    problems, edges = check(ROOT)
    assert edges > 150, f"only {edges} lrf imports found: is the source where pyproject says?"
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------- the checker itself
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\npackages = ["lrf", "lrf.runtime", "lrf.models"]\n'
        '[tool.setuptools.package-dir]\n"lrf" = "lrf"\n"lrf.runtime" = "runtime"\n'
        '"lrf.models" = "models"\n')
    for d in ("lrf", "runtime", "models"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "__init__.py").write_text("")
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    return tmp_path


@pytest.mark.parametrize("text", [
    "from lrf.models import a\n",
    "import lrf.models.a\n",
    "def f():\n    from lrf.models.a import x\n",          # lazy, inside a function
    "from ..models import a\n",                             # relative (lrf.runtime -> lrf.models)
    "import importlib\nimportlib.import_module('lrf.models.a')\n",
])
def test_checker_finds_a_back_edge_however_it_is_written(tmp_path, text):
    root = _tree(tmp_path, {"models/a.py": "x = 1\n", "runtime/b.py": text})
    problems, _ = check(root, {"lrf": 0, "lrf.runtime": 1, "lrf.models": 2})
    assert len(problems) == 1 and problems[0].startswith("runtime/b.py:"), problems
    assert "lrf.runtime.b (layer 1) imports lrf.models.a (layer 2)" in problems[0]


def test_checker_allows_downward_and_same_layer_imports(tmp_path):
    root = _tree(tmp_path, {"runtime/a.py": "from lrf import c\n", "lrf/c.py": "",
                            "models/b.py": "from lrf.runtime import a\nfrom . import d\n",
                            "models/d.py": ""})
    assert check(root, {"lrf": 0, "lrf.runtime": 1, "lrf.models": 2})[0] == []


def test_checker_finds_a_cycle_of_lazy_imports_in_one_layer(tmp_path):
    root = _tree(tmp_path, {"models/a.py": "def f():\n    from lrf.models import b\n",
                            "models/b.py": "def g():\n    from lrf.models.a import f\n"})
    problems, _ = check(root, {"lrf": 0, "lrf.runtime": 1, "lrf.models": 2})
    assert problems == ["import cycle: lrf.models.a -> lrf.models.b -> lrf.models.a"]


def test_checker_refuses_a_package_without_a_layer(tmp_path):
    root = _tree(tmp_path, {})
    problems, _ = check(root, {"lrf": 0, "lrf.runtime": 1})
    assert problems == ["package lrf.models has no layer in tests/test_layering.py"]
