"""Imports only point up the layer stack of shared/DESIGN.md:

_core < geometry < physics < scanners < inference < io < experiment/cli/spec/sweep

A module may import from its own layer or any layer above it, never below.
"""

import ast
from pathlib import Path

import biosim

ROOT = Path(biosim.__file__).parent
RANK = {"_core": 0, "geometry": 1, "physics": 2, "scanners": 3, "inference": 4, "io": 5}
TOP_LEVEL_RANK = 6  # experiment.py, cli.py, spec.py, sweep.py, __init__.py


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) < 2:
        return TOP_LEVEL_RANK
    return RANK.get(parts[1], TOP_LEVEL_RANK)


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, module: str):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("biosim"):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("biosim"):
                if target == "biosim":
                    for alias in node.names:
                        yield f"biosim.{alias.name}", node.lineno
                else:
                    yield target, node.lineno


def test_imports_point_upward_only():
    violations = []
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        own = _layer(module)
        if own == TOP_LEVEL_RANK and module.count(".") == 0:
            continue  # biosim/__init__.py
        for target, line in _imports(path, module):
            if _layer(target) > own:
                violations.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    assert not violations, "imports pointing down the layer stack:\n" + "\n".join(violations)
