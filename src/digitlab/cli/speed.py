"""`digitlab speedrun`: time to a test-accuracy target."""

from __future__ import annotations

import json

import typer

from .app import app, out


@app.command()
def speedrun(target: float = typer.Option(0.99, help="Test accuracy to reach: 0.99, 0.995 or 0.997."),
             seeds: int = typer.Option(3, help="How many seeds (0, 1, ...)."),
             device: str = typer.Option("auto", help="auto, cpu, cuda."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Train ten digits to a test-accuracy target as fast as possible over several seeds; report mean, minimum
    and every run (the clock runs from the first training step to the final test evaluation, after a warm-up
    run on GPU).

    Example: [bold]digitlab speedrun --target 0.99 --seeds 3[/]
    """
    from ..speedrun import speedrun as run  # deferred: keeps --help fast

    res = run(target, tuple(range(seeds)), device)
    if as_json:
        print(json.dumps(res, indent=2))
        return 0 if res["all_reached"] else 1
    for r in res["runs"]:
        out.print(f"seed {r['seed']}: {'reached' if r['reached'] else 'MISSED'} {r['accuracy']:.4f} in "
                  f"{r['seconds']:.3g}s ({r['epochs']} epochs)", highlight=False)
    out.print(f"target {target} on {res['device']}: mean {res['mean_seconds']:.3g}s, min {res['min_seconds']:.3g}s, mean accuracy "
              f"{res['mean_accuracy']:.4f}, {'every seed reached it' if res['all_reached'] else 'some seeds missed'}",
              highlight=False)
    return 0 if res["all_reached"] else 1
