"""benchmarks/bench_language.py: the ranks it reports and a small run read back by ``report``."""

from __future__ import annotations

import json

import numpy as np

from .conftest import load_benchmark

bench = load_benchmark("bench_language")


def test_rank_of_counts_the_texts_scored_higher():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    np.testing.assert_array_equal(bench.rank_of(scores, 0), [3, 1, 2])
    np.testing.assert_array_equal(bench.rank_of(scores, 2), [2, 3, 1])  # ties share the rank


def test_cosines_of_class_embeddings():
    emb = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    c = bench.cosines(emb)
    assert np.isclose(c["max"], 0.8) and c["closest"] == [0, 1]
    assert np.isclose(c["mean"], (0.8 + 0.0 + 0.6) / 3)


def test_a_geometry_run_is_written_and_reported(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "GEOMETRY", {"cosine (default)": {},
                                            "cross-entropy head": dict(loss="cross_entropy")})
    bench.main(["geometry", "--epochs", "1", "--seeds", "1", "--results", str(tmp_path)])
    rows = json.loads((tmp_path / "language_geometry.json").read_text())["rows"]
    assert len(rows) == 2 * 4 and {r["cosine"] for r in rows} == {0.5, 0.9, 0.97, 0.99}
    assert all(0 <= r["train_accuracy"] <= 1 for r in rows)
    capsys.readouterr()
    bench.main(["report", "--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert "language_geometry.json: bench_language.py geometry --epochs 1 --seeds 1" in out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].split("|")[1].strip() == "head" and len(table) == 2 + 2  # header, rule, rows
    assert table[-1].startswith("| cross-entropy head ")
