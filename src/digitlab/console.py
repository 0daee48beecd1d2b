"""Formatting for the terminal, kept apart from computing: rich tables of results."""

from __future__ import annotations

from typing import Sequence

from rich.table import Table


def stage_table(rows: Sequence[dict], title: str = "fastbook chapter 4, reproduced (3 vs 7, valid set of 2038)") -> Table:
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
