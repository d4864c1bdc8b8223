"""Side-by-side comparison of evaluated runs: one markdown table and one bar chart, same test set only."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from paralign.evaluation.report import LOWER_IS_BETTER, digits_for, format_estimate


class CompareError(ValueError):
    """The runs cannot be compared (missing metrics, different test sets)."""


def run_name(run_dir: Path) -> str:
    """``<recipe>/<timestamp>`` for the usual ``runs/<recipe>/<timestamp>`` layout."""
    return "/".join(run_dir.resolve().parts[-2:])


def load_runs(run_dirs: Sequence[str | Path]) -> dict[str, dict[str, Any]]:
    """``{run name: metrics}``; refuses runs without ``eval/metrics.json`` and runs on different test sets."""
    runs: dict[str, dict[str, Any]] = {}
    for run_dir in map(Path, run_dirs):
        path = run_dir / "eval" / "metrics.json"
        if not path.is_file():
            raise CompareError(f"{path} not found: evaluate the run first (make eval)")
        try:
            metrics = json.loads(path.read_text())
            metrics["test_set"]["fingerprint"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CompareError(f"{path} is not a metrics file of paralign eval ({err})") from None
        name = run_name(run_dir)
        if name in runs:
            raise CompareError(f"run {name} given twice")
        runs[name] = metrics
    fingerprints = {name: m["test_set"]["fingerprint"] for name, m in runs.items()}
    if len(set(fingerprints.values())) > 1:
        groups = ", ".join(f"{name}: {fp[:12]}" for name, fp in fingerprints.items())
        raise CompareError(f"runs were evaluated on different test sets (clip-id fingerprints {groups})")
    return runs


def metric_columns(runs: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """Every (task, metric) any run has, in first-seen order."""
    columns: list[tuple[str, str]] = []
    for metrics in runs.values():
        for task, entry in metrics["tasks"].items():
            columns += [(task, name) for name in entry["metrics"] if (task, name) not in columns]
    return columns


def _estimate(metrics: dict[str, Any], task: str, name: str) -> dict[str, Any] | None:
    return metrics["tasks"].get(task, {}).get("metrics", {}).get(name)


def comparison_markdown(runs: dict[str, dict[str, Any]]) -> str:
    columns = metric_columns(runs)
    first = next(iter(runs.values()))["test_set"]
    headers = [f"{t} {m}" + (" (lower better)" if m in LOWER_IS_BETTER else "") for t, m in columns]
    lines = [
        "# Comparison of evaluated runs", "",
        f"All runs share the test set `{first['fingerprint'][:16]}` ({first['n_clips']} clips). "
        "Cells: value [95 % bootstrap CI]; the best value of each column is in bold; '-' = task not evaluated.", "",
        "| run | " + " | ".join(headers) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    best: dict[tuple[str, str], float] = {}
    for col in columns:
        values = [e["value"] for m in runs.values() if (e := _estimate(m, *col)) is not None]
        best[col] = min(values) if col[1] in LOWER_IS_BETTER else max(values)
    for name, metrics in runs.items():
        cells = []
        for col in columns:
            est = _estimate(metrics, *col)
            if est is None:
                cells.append("-")
                continue
            text = format_estimate(est, digits_for(col[1]))
            cells.append(f"**{text}**" if est["value"] == best[col] and len(runs) > 1 else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Judges (scores from different judges are not comparable):", ""]
    for name, metrics in runs.items():
        judge = metrics.get("judge")
        if not judge:
            lines.append(f"- {name}: no judge")
            continue
        v = judge.get("validation") or {}
        r = v.get("point_biserial")
        lines.append(f"- {name}: `{judge['id']}`, validation point-biserial r = "
                     + ("n/a" if r is None else f"{r:.3f}") + f" (n = {v.get('n', 0)})")
    return "\n".join(lines) + "\n"


def plot_comparison(runs: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """One panel per (task, metric), one bar per run, 95 % CI as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = metric_columns(runs)
    ncols = min(3, len(columns))
    nrows = -(-len(columns) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), dpi=110, squeeze=False)
    names = list(runs)
    colors = [plt.get_cmap("tab10")(i % 10) for i in range(len(names))]
    for ax, (task, metric) in zip(axes.flat, columns):
        for i, name in enumerate(names):
            est = _estimate(runs[name], task, metric)
            if est is None:
                continue
            err = [[est["value"] - est["low"]], [est["high"] - est["value"]]]
            ax.bar(i, est["value"], yerr=err, color=colors[i], capsize=4)
        ax.set_title(f"{task}: {metric}" + (" (lower better)" if metric in LOWER_IS_BETTER else ""), fontsize=9)
        ax.set_xticks(range(len(names)), [str(i + 1) for i in range(len(names))])
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    fig.legend([plt.Rectangle((0, 0), 1, 1, color=c) for c in colors],
               [f"{i + 1}: {n}" for i, n in enumerate(names)], loc="lower center", ncol=min(len(names), 3),
               fontsize=8)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * ((len(names) - 1) // 3), 1, 1))
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``comparison.md`` and ``comparison.png`` into ``out_dir``; return both paths."""
    if not run_dirs:
        raise CompareError("no runs given")
    runs = load_runs(run_dirs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "comparison.md"
    chart = plot_comparison(runs, out_dir / "comparison.png")
    table.write_text(comparison_markdown(runs) + f"\n![comparison chart]({chart.name})\n")
    return table, chart
