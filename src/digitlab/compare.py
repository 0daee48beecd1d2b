"""Runs side by side: what differs in their configs, their final metrics, and their learning curves on shared
axes (`digitlab runs --compare A B C`, or a glob such as 'runs/*-3v7-*').
"""

from __future__ import annotations

import glob
import html
import io
from pathlib import Path

from matplotlib.ticker import MaxNLocator

from .errors import ConfigError
from .report import STYLE, table
from .runs import read_json_or
from .viz.figures import new_figure

METRICS = ("accuracy", "best_accuracy", "valid_loss", "errors", "epochs_done", "train_seconds", "status")
CURVES = ("train_loss", "valid_loss", "accuracy")  # one plot each, every run a curve


def expand_runs(args: list[str | Path]) -> list[Path]:
    """Run folders from arguments that are folders or glob patterns, in the order given (a glob's matches
    sorted), each once; anything that is not a run folder is an error naming it."""
    runs: list[Path] = []
    for arg in map(str, args):
        matches = sorted(glob.glob(arg)) if glob.has_magic(arg) else [arg]
        if not matches:
            raise ConfigError(f"{arg}: matches no run folder. `digitlab runs` lists the runs.")
        for m in map(Path, matches):
            if not (m / "config.json").is_file():
                raise ConfigError(f"{m}: not a run folder (no config.json). `digitlab runs` lists the runs.")
            if m not in runs:
                runs.append(m)
    if len(runs) < 2:
        raise ConfigError(f"comparing needs at least two runs; got {len(runs)}.")
    return runs


def compare_runs(runs: list[Path]) -> dict:
    """The config fields whose values differ between the runs, each run's final metrics, and each run's
    per-epoch history (metrics.json)."""
    configs = [read_json_or(r / "config.json", {}).get("config", {}) for r in runs]
    fields = sorted({k for c in configs for k in c})
    differences = {k: [c.get(k) for c in configs] for k in fields if len({repr(c.get(k)) for c in configs}) > 1}
    metrics = []
    for run in runs:
        summary = read_json_or(run / "summary.json", {})
        metrics.append({"run": str(run), **{k: summary.get(k) for k in METRICS}})
    histories = {str(r): read_json_or(r / "metrics.json", []) for r in runs}
    return {"runs": [str(r) for r in runs], "differences": differences, "metrics": metrics, "histories": histories}


def curves_svg(histories: dict[str, list[dict]], metric: str) -> str:
    """One metric per epoch for every run on shared axes, as inline SVG; each run's line has the id curve-<i>."""
    fig, ax = new_figure(6.5, 3.6)
    for i, (run, logs) in enumerate(histories.items()):
        points = [(log["epoch"] + 1, log[metric]) for log in logs if metric in log]
        if points:
            (line,) = ax.plot(*zip(*points), marker=".", color=f"C{i}", label=Path(run).name)
            line.set_gid(f"curve-{i}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]  # without the XML prologue, to sit inside HTML


def compare_page(comparison: dict) -> str:
    """The comparison as one self-contained HTML page: the differences, the metrics, the curves."""
    runs = comparison["runs"]
    diff_rows = [{"field": k, **{Path(r).name: v for r, v in zip(runs, values)}}
                 for k, values in comparison["differences"].items()]
    plots = "".join(f'<figure class="plot" data-metric="{m}"><figcaption>{html.escape(m.replace("_", " "))} per '
                    f'epoch</figcaption>{curves_svg(comparison["histories"], m)}</figure>' for m in CURVES)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>digitlab: {len(runs)} runs compared</title>"
            f"<style>{STYLE}</style></head><body><h1>{len(runs)} runs compared</h1>"
            f"<h2>Config differences</h2>{table(diff_rows) if diff_rows else '<p>the configs are identical</p>'}"
            f"<h2>Final metrics</h2>{table([{**m, 'run': Path(m['run']).name} for m in comparison['metrics']])}<h2>Learning curves</h2>{plots}</body></html>")


def write_compare_page(comparison: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(compare_page(comparison))
    return path
