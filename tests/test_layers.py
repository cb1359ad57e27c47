"""The package's layers (DEVELOPERS.md): every import, function bodies and TYPE_CHECKING blocks included, goes down
or across a layer, never up, and no set of modules imports itself round in a cycle. The rules path imports no heavy
ML library at module level. And every documented import path works.

A module-level ``__getattr__`` is a shim: an old documented path (``bridge.translation.translate``,
``bridge.seq2seq.Seq2SeqTranslator``) that leads, lazily, to where the name lives now. Its import is not a
dependency of the module holding it, so the layer and cycle checks look through it; the last test checks that every
shim leads somewhere real.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bridge"

# Bottom to top. A module belongs to the layer of the longest name here that it starts with.
LAYERS = {
    "bridge.syntax": 1, "bridge.datafiles": 1, "bridge.memo": 1,
    "bridge.tokens": 2, "bridge.chunks": 2, "bridge.recipe": 2, "bridge.models": 2, "bridge.dialects": 2,
    "bridge.translation": 3,
    "bridge.rules": 4, "bridge.learned": 4, "bridge.imaging": 4,
    "bridge.chain": 5,
    "bridge.load": 6, "bridge.library": 6, "bridge.migration": 6, "bridge.workflows": 6, "bridge.testing": 6, "bridge.export": 6,
    "bridge.search": 6,
    "bridge.cli": 7, "bridge.cli_output": 7, "bridge.__main__": 7,
    "bridge.seq2seq": 8, "bridge.render": 8,  # the documented old paths (shims)
    "bridge": 1,  # the package: __version__, and lazy names (shims) that lead up
}
HEAVY = ("torch", "diffusers", "transformers", "open_clip", "peft", "accelerate", "datasets", "numpy", "PIL",
         "ctranslate2", "tokenizers")
RULES_PATH = ("bridge.syntax", "bridge.datafiles", "bridge.memo", "bridge.tokens", "bridge.chunks", "bridge.recipe",
              "bridge.models", "bridge.dialects", "bridge.translation", "bridge.rules", "bridge.chain", "bridge.load",
              "bridge.library", "bridge.migration", "bridge.cli", "bridge.cli_output")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _layer(name: str) -> int:
    owner = max((key for key in LAYERS if name == key or name.startswith(key + ".")), key=len, default=None)
    assert owner is not None, f"{name} has no layer: add it to LAYERS (and to DEVELOPERS.md)"
    return LAYERS[owner]


class _Import:
    def __init__(self, target: str, line: int, in_function: bool, in_shim: bool):
        self.target, self.line, self.in_function, self.in_shim = target, line, in_function, in_shim


def _imports(name: str, path: Path) -> list[_Import]:
    """Every import of the module, resolved to a module name (``from a import b`` is ``a.b`` where that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[_Import] = []

    def visit(node: ast.AST, in_function: bool, in_shim: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                shim = in_shim or (node is tree and getattr(child, "name", "") == "__getattr__")
                visit(child, True, shim)
                continue
            if isinstance(child, ast.Import):
                found.extend(_Import(a.name, child.lineno, in_function, in_shim) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    module = ".".join([*base, child.module] if child.module else base)
                else:
                    module = child.module or ""
                for alias in child.names:
                    full = f"{module}.{alias.name}"
                    found.append(_Import(full if full in MODULES else module, child.lineno, in_function, in_shim))
            visit(child, in_function, in_shim)

    visit(tree, False, False)
    return found


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _edges() -> dict[str, set[str]]:
    return {name: {i.target for i in imports if i.target in MODULES and i.target != name and not i.in_shim}
            for name, imports in IMPORTS.items()}


def test_every_module_has_a_layer():
    assert [name for name in MODULES if _layer(name) is None] == []


def test_no_import_goes_up_a_layer():
    upward = [f"{name} (layer {_layer(name)}) line {i.line} imports {i.target} (layer {_layer(i.target)})"
              for name, imports in IMPORTS.items() for i in imports
              if i.target in MODULES and not i.in_shim and _layer(i.target) > _layer(name)]
    assert upward == []


def test_no_import_cycle():
    edges = _edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []
    for start in edges:  # Tarjan's strongly connected components, iterative
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    assert cycles == []


def test_the_cycle_check_finds_a_cycle_hidden_in_function_bodies(tmp_path):
    """The checks read imports inside functions too: the lazy imports that once hid a 7-module cycle."""
    module = tmp_path / "m.py"
    module.write_text("def later():\n    from bridge.cli import main\n    return main\n")
    (found,) = _imports("bridge.syntax", module)
    assert found.target == "bridge.cli" and found.in_function and not found.in_shim


def test_the_rules_path_imports_no_ml_library_at_module_level():
    heavy = [f"{name} line {i.line}: {i.target}" for name, imports in IMPORTS.items()
             if name.startswith(RULES_PATH) for i in imports
             if not i.in_function and i.target.split(".")[0] in HEAVY]
    assert heavy == []


@pytest.mark.parametrize(("path", "name"), [
    ("bridge", "translate"), ("bridge", "load_translator"), ("bridge", "Translation"), ("bridge", "Recipe"),
    ("bridge", "parse"), ("bridge", "attention"),
    ("bridge.translation", "translate"), ("bridge.translation", "load_translator"),
    ("bridge.translation", "Translation"), ("bridge.translation", "TranslationOptions"),
    ("bridge.load", "translate"), ("bridge.load", "load_translator"),
    ("bridge.dialects", "from_a1111"), ("bridge.dialects", "to_a1111"), ("bridge.dialects", "compel_weights"),
    ("bridge.dialects", "comfy_weights"), ("bridge.dialects", "DIALECTS"),
    ("bridge.seq2seq", "Seq2SeqTranslator"), ("bridge.seq2seq", "rerank"),
    ("bridge.render", "Renderer"), ("bridge.imaging.render", "Renderer"),
    ("bridge.cli", "main"), ("bridge.models", "list_models"),
])
def test_documented_import_paths_work(path, name):
    assert getattr(importlib.import_module(path), name) is not None


def test_every_shim_leads_somewhere_real():
    shims = {name: [i.target for i in imports if i.in_shim and i.target.startswith("bridge")]
             for name, imports in IMPORTS.items()}
    shims = {name: targets for name, targets in shims.items() if targets}
    # (the package's own lazy names are looked up by name: test_documented_import_paths_work covers them)
    assert set(shims) >= {"bridge.translation", "bridge.seq2seq", "bridge.render"}
    for name, targets in shims.items():
        for target in targets:
            assert target in MODULES, f"the shim in {name} leads to {target}, which is not a module"
