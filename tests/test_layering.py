"""Imports between the top-level packages run one way, top to bottom (README, "Where things live").

Every import counts, the lazy ones inside functions too: a lazy import is still a dependency. Run it alone with
``pytest tests/test_layering.py``; a failure names the file, the line and the import.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# top to bottom: a package may import the ones below it, never one above
LAYERS = ("paralign", "prep", "callbacks", "scoring", "lightning_modules", "datamodules", "clips")


def imported_packages(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def upward_imports(root: Path = ROOT) -> list[str]:
    bad = []
    for rank, package in enumerate(LAYERS):
        for path in sorted((root / package).rglob("*.py")):
            for line, module in imported_packages(path):
                top = module.split(".")[0]
                if top in LAYERS and LAYERS.index(top) < rank:
                    bad.append(f"{path.relative_to(root)}:{line} imports {module} ({package} is below {top})")
    return bad


def test_every_package_has_a_layer():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == set(LAYERS), f"give each top-level package a place in LAYERS: {sorted(packages ^ set(LAYERS))}"


def test_no_upward_import():
    assert upward_imports() == []


def test_an_upward_import_is_caught(tmp_path):
    (tmp_path / "datamodules").mkdir()
    (tmp_path / "datamodules" / "bad.py").write_text("def f():\n    from lightning_modules.speech_llm import X\n")
    assert upward_imports(tmp_path) == ["datamodules/bad.py:2 imports lightning_modules.speech_llm "
                                        "(datamodules is below lightning_modules)"]
