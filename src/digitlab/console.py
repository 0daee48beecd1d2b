"""Formatting for the terminal, kept apart from computing: rich tables of results."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rich.table import Table


def stage_table(rows: Sequence[dict], title: str = "fastbook chapter 4, reproduced (3 vs 7; valid is the book's: "
                                                  "MNIST's test 3s and 7s, 2038 images)") -> Table:
    """The reproduce table: stage, our accuracy, the book's, the difference, epochs, seconds."""
    table = Table(title=title)
    for col, justify in (("stage", "left"), ("ours", "right"), ("book", "right"), ("diff", "right"),
                         ("epochs", "right"), ("seconds", "right")):
        table.add_column(col, justify=justify)
    for r in rows:
        diff = r["accuracy"] - r["book"]
        style = "green" if diff >= -0.005 else "red"
        table.add_row(r["stage"], f"{r['accuracy']:.4f}", f"{r['book']:.4f}", f"[{style}]{diff:+.4f}[/]",
                      "-" if r["epochs"] is None else str(r["epochs"]), f"{r['seconds']:.2f}")
    return table


def dict_table(d: dict, title: str | None = None) -> Table:
    """A two-column table of keys and values."""
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in d.items():
        table.add_row(str(k), f"{v:.4f}" if isinstance(v, float) else str(v))
    return table


def confusion_table(cm, classes) -> Table:
    """A confusion matrix as a table: rows actual, columns predicted; right answers in bold."""
    table = Table(title="confusion matrix (rows actual, columns predicted)")
    table.add_column("actual", justify="right", style="bold")
    for c in classes:
        table.add_column(str(c), justify="right")
    for i, c in enumerate(classes):
        table.add_row(str(c), *[f"[bold]{int(v)}[/]" if i == j else ("." if int(v) == 0 else str(int(v)))
                                for j, v in enumerate(cm[i].tolist())])
    return table


def runs_table(rows: Sequence[dict], title: str) -> Table:
    """The runs list: name, task, model, epochs, final and best accuracy, seconds, status. A run is named by its
    folder's name (the title says where they are): a whole path wrapped in a narrow terminal, breaking the name."""
    table = Table(title=title)
    for col in ("run", "task", "model", "epochs", "accuracy", "best", "seconds", "status"):
        table.add_column(col, justify="left" if col in ("run", "task", "model", "status") else "right")
    num = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in rows:
        table.add_row(Path(r["run"]).name, str(r["task"]), str(r["model"]), str(r["epochs"]), num(r["accuracy"], ".4f"),
                      num(r["best_accuracy"], ".4f"), num(r["seconds"], ".1f"), r["status"])
    return table


def compare_tables(comparison: dict) -> list[Table]:
    """`digitlab runs --compare`: the config fields that differ (one column per run), then the final metrics."""
    names = [run.rstrip("/").rsplit("/", 1)[-1] for run in comparison["runs"]]
    fmt = lambda v: "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    diffs = Table(title="config differences" if comparison["differences"] else "the configs are identical")
    diffs.add_column("field", style="bold")
    for name in names:
        diffs.add_column(name, justify="right")
    for field, values in comparison["differences"].items():
        diffs.add_row(field, *map(fmt, values))
    metrics = Table(title="final metrics")
    columns = [k for k in comparison["metrics"][0] if k != "run"]
    metrics.add_column("run", style="bold")
    for col in columns:
        metrics.add_column(col, justify="right")
    for name, row in zip(names, comparison["metrics"]):
        metrics.add_row(name, *(fmt(row[c]) for c in columns))
    return [diffs, metrics]
