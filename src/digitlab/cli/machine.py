"""`digitlab info`: the machine, the precision `auto` picks on it, and the data sets found."""

from __future__ import annotations

import json

import typer

from .app import app, out


@app.command()
def info(device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N: the device to describe."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """What digitlab sees on this machine: the device, the CPU's capability (AVX2, AVX512, ...) and threads, the
    precision `--precision auto` picks there and why, and the data sets found.

    Example: [bold]digitlab info[/]
    """
    from ..console import dict_table  # deferred: keeps --help fast
    from ..doctor import machine_info  # deferred: imports torch

    facts = machine_info(device)
    if as_json:
        print(json.dumps(facts, indent=2))
        return 0
    sets = facts.pop("data_sets")
    out.print(dict_table({k: str(v) for k, v in facts.items()}, title="machine"))
    out.print(dict_table({s["source"]: f"{s['data_set'] or 'not found'} ({s['folder']})" for s in sets},
                         title="data sets"))
    return 0
