"""Fast checks of the docs' sources (the full build, ``sphinx-build -W docs ...``, runs in CI).

* every public class and function of the package is in the API reference, and every
  entry of the reference exists;
* the getting-started page shows the README's quick start unchanged;
* every ``:doc:`` target exists, and no page names a removed parameter;
* measured figures (``±``) stay on the benchmark, performance and research pages.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import sklearn_mmlgnet

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: Modules documented elsewhere than the API reference: the command line (docs/cli.rst,
#: from its parser and module docstring).
NOT_IN_API = {"sklearn_mmlgnet.cli"}
#: Pages that hold measured figures; the others describe, and link here.
MEASURED_PAGES = {"benchmarks.rst", "performance.rst", "research.rst", "language_results.rst"}
#: Parameters the estimators no longer take.
REMOVED = ("mixup", "text_adapter", "clip_model", "text_model", "student_reduction",
           "distill_warmup", "DistillationWarmup", "MixupCollate", "scene_info_")


def _pages():
    return sorted(p for p in DOCS.rglob("*.rst")
                  if not {"_build", "_generated", "generated", "auto_examples",
                          "_templates"} & set(p.relative_to(DOCS).parts))


def public_objects():
    """``{qualified name: object}`` of every public class and function of the package.

    A module's ``__all__`` says what is public; without one, its public names defined
    in the module itself. Modules and names with a leading underscore are private.
    """
    names = ["sklearn_mmlgnet"] + [
        m.name for m in pkgutil.walk_packages(sklearn_mmlgnet.__path__, "sklearn_mmlgnet.")
        if not any(part.startswith("_") for part in m.name.split(".")[1:])]
    out = {}
    for name in names:
        if name in NOT_IN_API:
            continue
        module = importlib.import_module(name)
        if hasattr(module, "__all__"):
            candidates = list(module.__all__)
        else:
            candidates = [n for n, obj in vars(module).items() if not n.startswith("_")
                          and getattr(obj, "__module__", None) == name]
        for attr in candidates:
            obj = getattr(module, attr)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                out[f"{name}.{attr}"] = obj
    return out


def api_entries():
    """``[(module, name)]`` of every autosummary entry of docs/api.rst."""
    entries, module, in_summary = [], None, False
    for line in (DOCS / "api.rst").read_text().splitlines():
        if line.startswith(".. currentmodule::"):
            module = line.split("::")[1].strip()
        elif line.startswith(".. autosummary::"):
            in_summary = True
        elif in_summary and line.startswith("   ") and not line.strip().startswith(":"):
            if line.strip():
                entries.append((module, line.strip()))
        elif in_summary and line.strip() and not line.startswith("   "):
            in_summary = False
    return entries


def test_api_reference_entries_exist():
    missing = []
    for module, name in api_entries():
        if not hasattr(importlib.import_module(module), name):
            missing.append(f"{module}.{name}")
    assert not missing, f"docs/api.rst lists names that do not exist: {missing}"


def test_every_public_name_is_in_the_api_reference():
    documented = {id(getattr(importlib.import_module(m), n)) for m, n in api_entries()}
    missing = sorted(q for q, obj in public_objects().items() if id(obj) not in documented)
    assert not missing, ("public classes / functions missing from docs/api.rst (add them, "
                         f"or make them private): {missing}")


def test_getting_started_shows_the_readme_quick_start():
    readme = (ROOT / "README.md").read_text()
    quick = re.search(r"^```python\n(.*?)^```", readme, re.MULTILINE | re.DOTALL).group(1)
    page = (DOCS / "getting_started.rst").read_text()
    block = page.split(".. code-block:: python\n\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    assert "\n".join(lines).strip() == quick.strip()


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_doc_links_resolve(page):
    for target in re.findall(r":doc:`(?:[^`<]*<)?([^`>]+)>?`", page.read_text()):
        path = (page.parent / target) if not target.startswith("/") else DOCS / target[1:]
        if target.startswith("auto_examples/"):
            path = ROOT / "examples"  # written by sphinx-gallery at build time
        assert path.with_suffix(".rst").exists() or path.exists(), f"{page.name}: {target}"


@pytest.mark.parametrize("page", [p for p in _pages() if p.name != "research.rst"],
                         ids=lambda p: str(p.relative_to(DOCS)))
def test_no_removed_parameter_is_documented(page):
    """Only the research notes speak of what was measured and removed."""
    text = page.read_text()
    named = [name for name in REMOVED if re.search(rf"\b{name}\b", text)]
    assert not named, f"{page.name} names removed parameters: {named}"


@pytest.mark.parametrize("page", [p for p in _pages() if p.name not in MEASURED_PAGES],
                         ids=lambda p: p.name)
def test_measured_figures_stay_on_the_measurement_pages(page):
    text = page.read_text()
    assert "±" not in text and "+/-" not in text, (
        f"{page.name} quotes measured figures; they belong on {sorted(MEASURED_PAGES)}")


def test_examples_are_gallery_scripts():
    """sphinx-gallery needs a reST title at the top of each example's docstring."""
    for path in sorted((ROOT / "examples").glob("*.py")):
        doc = ast_docstring(path)
        lines = doc.strip().splitlines()
        assert len(lines) >= 2 and set(lines[1].strip()) == {"="}, (
            f"{path.name}: the docstring must open with a title underlined with '='")


def ast_docstring(path):
    import ast

    return ast.get_docstring(ast.parse(path.read_text())) or ""
