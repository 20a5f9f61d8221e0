"""Imports only point one way through the layer stack.

Packages, lowest first::

    _core < geometry < physics < instruments < inference < io < experiment < cli

and inside the application (``biosim.experiment``), lowest first::

    keys < protocol < subject < activity < devices < analysis < report < estimate < spec
    < pipeline < sweep

A module may import from its own layer or a lower one, never from a higher one;
``cli`` is the top and nothing imports it.  Package ``__init__`` files that only
re-export their own submodules are exempt.
"""

import ast
from pathlib import Path

import biosim

ROOT = Path(biosim.__file__).parent
PACKAGES = ["_core", "geometry", "physics", "instruments", "inference", "io", "experiment", "cli"]
APPLICATION = [
    "keys",
    "protocol",
    "subject",
    "activity",
    "devices",
    "analysis",
    "report",
    "estimate",
    "spec",
    "pipeline",
    "sweep",
]


def rank(module: str) -> tuple[int, int]:
    """(package rank, rank inside the application) of a dotted module name."""
    parts = module.split(".")
    if len(parts) < 2:
        return (len(PACKAGES), 0)  # biosim itself: the version and the errors
    package = PACKAGES.index(parts[1]) if parts[1] in PACKAGES else -1
    assert package >= 0, f"{module}: {parts[1]!r} is not a known layer; add it to PACKAGES"
    inner = 0
    if parts[1] == "experiment" and len(parts) > 2:
        assert parts[2] in APPLICATION, f"{module}: add {parts[2]!r} to APPLICATION"
        inner = APPLICATION.index(parts[2]) + 1
    return (package, inner)


def _module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, module: str, root: Path = ROOT):
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
                names = [a.name for a in node.names]
                for name in names:
                    full = f"{target}.{name}"
                    # `from biosim.experiment import spec` imports the submodule spec
                    yield (
                        (
                            full
                            if (root.parent / full.replace(".", "/")).with_suffix(".py").exists()
                            or (root.parent / full.replace(".", "/")).is_dir()
                            else target
                        ),
                        node.lineno,
                    )


def _violations(root: Path = ROOT):
    found = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        if module == "biosim":
            continue
        own = rank(module)
        is_init = path.name == "__init__.py"
        for target, line in _imports(path, module, root):
            if is_init and target.startswith(module + "."):
                continue  # a package re-exporting its own submodules
            if target == "biosim":
                continue  # biosim/__init__: the version and the error classes
            theirs = rank(target)
            if theirs > own:
                found.append(f"{path.relative_to(root.parent)}:{line} imports {target}")
    return found


def test_imports_point_downward_only():
    violations = _violations()
    assert not violations, "imports against the layer order:\n" + "\n".join(violations)


def test_every_module_has_a_rank():
    for path in ROOT.rglob("*.py"):
        rank(_module_name(path))


def test_a_reversed_import_is_caught(tmp_path):
    """The checker itself, on a small fake package: upward imports are reported."""
    fake = tmp_path / "biosim"
    for rel, text in {
        "__init__.py": "",
        "geometry/__init__.py": "",
        "geometry/mesh.py": "from ..experiment import keys\n",
        "experiment/__init__.py": "",
        "experiment/keys.py": "from . import pipeline\n",
        "experiment/pipeline.py": "from .keys import x\nfrom ..geometry.mesh import y\n",
    }.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    found = _violations(fake)
    assert found == [
        "biosim/experiment/keys.py:1 imports biosim.experiment.pipeline",
        "biosim/geometry/mesh.py:1 imports biosim.experiment.keys",
    ]
