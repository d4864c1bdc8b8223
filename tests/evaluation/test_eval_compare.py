import argparse

import pytest

from paralign.commands import eval_compare
from paralign.evaluation.report import compute_metrics, write_report


def _run(root, name, gens, embedder):
    run_dir = root / "runs" / name / "20260101-000000"
    write_report(run_dir / "eval", compute_metrics(gens, embedder=embedder, n_boot=50), gens)
    return run_dir


def _parse(argv):
    parser = argparse.ArgumentParser()
    eval_compare.register(parser.add_subparsers())
    return parser.parse_args(["eval-compare", *argv])


@pytest.mark.slow  # first use of matplotlib + torchmetrics imports: ~8 s alone
def test_compare_two_runs(tmp_path, generations, bow_embedder, capsys):
    worse = [dict(g, reply="no idea") if g["task"] == "emotion" else g for g in generations]
    ours = _run(tmp_path, "ours", generations, bow_embedder)
    base = _run(tmp_path, "baseline_plain", worse, bow_embedder)
    args = _parse([str(ours), str(base), "--out", str(tmp_path / "cmp")])
    assert args.func(args) == 0
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    assert (tmp_path / "cmp" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "emotion accuracy" in rows["run"] and "asr wer (lower better)" in rows["run"]
    assert "**0.500 [" in rows["ours/20260101-000000"]  # better emotion accuracy in bold
    assert "| 0.000 [0.000, 0.000] |" in rows["baseline_plain/20260101-000000"]
    assert "wrote" in capsys.readouterr().out


def test_refuses_different_test_sets(tmp_path, generations, generations_factory, bow_embedder):
    a = _run(tmp_path, "a", generations, bow_embedder)
    b = _run(tmp_path, "b", generations_factory(id_prefix="other"), bow_embedder)
    args = _parse([str(a), str(b), "--out", str(tmp_path / "cmp")])
    with pytest.raises(SystemExit, match="different test sets"):
        args.func(args)
    assert not (tmp_path / "cmp").exists()


def test_refuses_unevaluated_run(tmp_path):
    args = _parse([str(tmp_path / "nothing")])
    with pytest.raises(SystemExit, match="metrics.json not found"):
        args.func(args)
