"""The README: short, runs as written, and its results table is the results files' table."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import pytest

from .conftest import requires_st

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _blocks(language):
    """The README's fenced code blocks of ``language``, in order."""
    text = README.read_text()
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def _make_tables():
    """``docs/make_tables.py`` (a script of the docs folder, not a package module)."""
    spec = importlib.util.spec_from_file_location("make_tables", ROOT / "docs" / "make_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_short():
    n_lines = len(README.read_text().splitlines())
    assert n_lines <= 160, f"README.md has {n_lines} lines; the front door stays within 160"


def test_readme_speaks_of_this_version_only():
    text = README.read_text().lower()
    for phrase in ("earlier release", "previous release", "this release", "in brackets",
                   "new in", "was the default"):
        assert phrase not in text, f"README.md refers to other releases: {phrase!r}"


def test_setup_commands_match_ci():
    """The first command installs as CI does and runs the demo; the second is CI's test run."""
    ci = (ROOT / ".ci" / "run").read_text()
    install, tests = _blocks("bash")[:2]
    assert install.strip().startswith("python3 -m venv .venv && .venv/bin/pip install")
    assert install.strip().endswith(".venv/bin/mmlgnet demo")

    def extras(text):
        found = re.search(r'-e "\.\[([a-z,]+)\]"', text)
        assert found, f"no editable install with extras in {text!r}"
        return set(found.group(1).split(","))

    assert extras(install) <= extras(ci), "CI installs at least what the README installs"
    assert tests.strip() == ".venv/bin/python -m pytest"
    assert tests.strip() in ci


def test_local_links_exist():
    text = README.read_text()
    links = re.findall(r"\]\(((?!https?://)[^)#]+)\)", text)
    assert links, "README.md links to its docs"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_results_table_is_built_from_the_results_files():
    make_tables = _make_tables()
    text = README.read_text()
    assert make_tables.readme_with_table(text, make_tables.markdown_headline()) == text, (
        "README.md's results table differs from docs/results/results_*.json: "
        "run python docs/make_tables.py")
    header, rows = make_tables.headline()
    assert len(rows) >= 4 and len(header) >= 3  # method families x scenes


@requires_st
def test_quick_start_runs_as_written(tmp_path, monkeypatch, capsys):
    """Every python block of the README, executed in order in an empty folder."""
    blocks = _blocks("python")
    assert blocks, "README.md has a python quick start"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    start = time.perf_counter()
    for code in blocks:
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    seconds = time.perf_counter() - start
    out = capsys.readouterr().out
    assert "| **OA** |" in out and "AA per spatial fold:" in out and "best:" in out
    assert (tmp_path / "map.png").stat().st_size > 10_000
    assert hasattr(namespace["search"], "best_estimator_")  # the search was fitted
    # The README promises about half a minute on two cores; allow for a busy machine.
    assert seconds < 90, f"the quick start took {seconds:.0f} s"


@pytest.mark.parametrize("block", range(len(_blocks("python"))))
def test_python_blocks_compile(block):
    compile(_blocks("python")[block], str(README), "exec")
