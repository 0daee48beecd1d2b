"""`digitlab runs`: the run folders as a table, or several compared side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .app import app, out


@app.command("runs")
def list_runs_cmd(selected: Optional[list[str]] = typer.Argument(None, help="With --compare: run folders or glob "
                                                                 "patterns such as 'runs/*-3v7-*'."),
                  runs: Path = typer.Option(Path("runs"), "--runs", help="Folder that holds run folders."),
                  compare: bool = typer.Option(False, "--compare", help="Compare the given runs: config "
                                               "differences, final metrics, and learning curves in an HTML page."),
                  html: Path = typer.Option(Path("compare.html"), "--html", help="Where --compare writes its page."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the runs, newest first, with their task, model, final and best accuracy; or compare some.

    Example: [bold]digitlab runs --runs runs[/]
    Example: [bold]digitlab runs --compare runs/a runs/b 'runs/*-seed*' --html compare.html[/]
    """
    from ..console import runs_table  # deferred: keeps --help fast
    from ..runs import list_runs  # deferred: keeps --help fast

    if compare or selected:
        return compare_cmd(selected or [], html, as_json)
    rows = list_runs(runs)
    if as_json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        out.print(f"no runs in {runs}; `digitlab train` makes one (or pass --runs FOLDER).", highlight=False)
    else:
        out.print(runs_table(rows, f"runs in {runs}"))


def compare_cmd(selected: list[str], html: Path, as_json: bool) -> None:
    """`digitlab runs --compare`: tables in the terminal, curves in the HTML page."""
    from ..compare import compare_runs, expand_runs, write_compare_page  # deferred: keeps --help fast
    from ..console import compare_tables  # deferred: keeps --help fast

    comparison = compare_runs(expand_runs(selected))
    page = write_compare_page(comparison, html)
    if as_json:
        print(json.dumps({"html": str(page), **comparison}, indent=2))  # with each run's curves (histories)
        return
    for table in compare_tables(comparison):
        out.print(table)
    out.print(f"learning curves: {page}", highlight=False)
