"""The layer rule of the packages (README, "Layers"): every import statement of every module — top level or
inside a function — is parsed with ``ast`` and checked against

    model  ->  rtl  ->  host  ->  verif | fpga | training  ->  yoso

A module may import its own package and the layers to its left, never one to its right (not even lazily, in
a function), and verif, fpga and training do not import each other. Third-party rules: the golden model
imports no HDL, simulator or training library; rtl/ and host/ import no cocotb or torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Package -> rank; a module may import packages of lower rank (and its own).
LAYERS = {"model": 0, "rtl": 1, "host": 2, "verif": 3, "fpga": 3, "training": 3, "yoso": 4}

#: Package -> third-party top-level modules it must not import.
FORBIDDEN = {
    "model": {"amaranth", "cocotb", "cocotb_tools", "torch"},
    "rtl": {"cocotb", "cocotb_tools", "torch"},
    "host": {"cocotb", "cocotb_tools", "torch"},
}


def imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, top-level module) of every import in the file; relative imports resolve to ``package``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, package if node.level else node.module.split(".")[0]))
    return out


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        where = path.relative_to(ROOT)
        for line, target in imports(path, package):
            if target in LAYERS and target != package and LAYERS[target] >= LAYERS[package]:
                bad.append(f"{where}:{line} imports {target} (layer {LAYERS[target]} >= {package}'s {LAYERS[package]})")
            if target in FORBIDDEN.get(package, ()):
                bad.append(f"{where}:{line} imports {target}, which {package}/ must not use")
    return bad


def test_every_package_is_listed():
    found = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert found - {"tests"} == set(LAYERS), "a package without a layer (or a layer without a package)"


@pytest.mark.parametrize("package", list(LAYERS))
def test_no_import_runs_up(package):
    bad = violations(package)
    assert not bad, "\n".join(bad)


def test_the_checker_sees_lazy_imports(tmp_path):
    """An import inside a function counts: the checker walks the whole tree, not just module level."""
    (tmp_path / "m.py").write_text("def f():\n    from verif.driver import pack\n    import yoso.cli\n")
    assert imports(tmp_path / "m.py", "rtl") == [(2, "verif"), (3, "yoso")]
