"""pyproject.toml declares what the package imports, lower bounds only, one version, its licence."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

import sklearn_mmlgnet

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(req):
    return re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower().replace("_", "-")


def _names(req):
    """The distribution a requirement names, and those its extras name (dask[distributed])."""
    extras = re.search(r"\[([^\]]*)\]", req.split(";")[0])
    return {_name(req)} | ({e.strip() for e in extras.group(1).split(",")} if extras else set())


def _imported_modules(folder):
    """Top-level names of the modules imported anywhere under ``folder`` (lazily or not)."""
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"sklearn_mmlgnet", "__future__"}


def test_every_imported_package_is_declared():
    declared = set().union(*map(_names, PYPROJECT["dependencies"]))
    for reqs in PYPROJECT["optional-dependencies"].values():
        declared |= set().union(*map(_names, reqs))
    dists = importlib.metadata.packages_distributions()
    missing = {}
    for module in _imported_modules(ROOT / "sklearn_mmlgnet") | _imported_modules(ROOT / "tests"):
        if module == "tests":
            continue
        owners = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not owners & declared:
            missing[module] = sorted(owners)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_lower_bounds_only_and_no_torch_cap():
    reqs = list(PYPROJECT["dependencies"])
    for extra in PYPROJECT["optional-dependencies"].values():
        reqs += extra
    capped = [r for r in reqs if re.search(r"<|==|~=", r.split(";")[0])]
    assert not capped, f"upper bounds or pins: {capped}"


def test_one_version_source():
    assert "version" not in PYPROJECT and "version" in PYPROJECT["dynamic"]
    dynamic = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "sklearn_mmlgnet.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", sklearn_mmlgnet.__version__)


def test_licence_file_matches_the_declared_licence():
    assert PYPROJECT["license"] == "BSD-3-Clause" and PYPROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Neither the name of the copyright holder" in text


@pytest.mark.parametrize("extra", ["offline", "datasets", "dask"])
def test_the_test_extra_pulls_every_other_runtime_extra(extra):
    test_reqs = PYPROJECT["optional-dependencies"]["test"]
    self_ref = [r for r in test_reqs if _name(r) == "sklearn-mmlgnet"]
    assert self_ref and extra in self_ref[0]
    assert {"pytest", "hypothesis"} <= {_name(r) for r in test_reqs}
