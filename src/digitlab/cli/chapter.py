"""Commands for the chapter: reproduce, show, data, demo."""

from __future__ import annotations

import gc
import json
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import typer

from ..console import dict_table, stage_table
from ..errors import DigitlabError
from .app import DataOpt, app, out

data_app = typer.Typer(no_args_is_help=True, help="Inspect the MNIST files and export them as image folders.")
demo_app = typer.Typer(no_args_is_help=True, help="The chapter's calculus asides: gradients and SGD on a toy problem.")
app.add_typer(data_app, name="data")
app.add_typer(demo_app, name="demo")


@app.command()
def reproduce(
    out_dir: Path = typer.Option(Path("reproduce"), "--out", help="Folder for results.json, results.csv and plots."),
    seed: int = typer.Option(42, help="Random seed; the same seed prints the same table."),
    stages: Optional[list[str]] = typer.Option(None, "--stage", help="Run only these stages (repeatable). "
                                               "Also: simple_net_by_hand, resnet18 (the book's last stage, about 15 s on 2 CPU cores)."),
    plots: bool = typer.Option(True, help="Save the plots."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the table."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of a table."),
    processes: int = typer.Option(2, min=1, max=2, help="2: the simple net trains in a second process while "
                                  "this one trains the linear models, one thread each (same results); 1: one process."),
    data: Optional[Path] = DataOpt,
):
    """Run the chapter's stages 2 to 5 (3 vs 7) and compare each with the book's accuracy.

    Example: [bold]digitlab reproduce --out reproduce --seed 42[/]
    """
    from ..viz.plotter import Plotter  # deferred: imports numpy; keeps --help fast

    # Forked before torch is imported: the plotter's matplotlib import runs on the other core meanwhile.
    with Plotter(fork=processes > 1) if plots else nullcontext() as plotter:
        from ..chapter.reproduce import run_stages, send_plots, table_rows, write_tables  # deferred: torch, post-fork
        from ..chapter.stages import ChapterData  # deferred: torch, post-fork

        done = []

        def on_stage_done(r):
            done.append(r)
            if plotter:  # the pictures whose data is complete are drawn while later stages train
                send_plots(plotter, done, out_dir, final=False)
            if not (quiet or as_json):
                hist = " ".join(f"{a:.4f}" for a in r.history) if r.history else f"{r.accuracy:.4f}"
                out.print(f"[bold]{r.stage}[/] ({r.seconds:.2f}s): {hist}", highlight=False)

        results = run_stages(stages, seed, ChapterData.load(data), on_stage_done, processes)
        rows = table_rows(results)
        files = write_tables(rows, out_dir, seed, processes)
        if plotter:
            send_plots(plotter, results, out_dir)
            files += plotter.close()
    if as_json:
        print(json.dumps({"stages": rows, "seed": seed, "files": [str(f) for f in files]}, indent=2))
    else:
        out.print(stage_table(rows))
        if not quiet:
            out.print(f"wrote {', '.join(str(f) for f in files)}", highlight=False)
    # Python's exit-time garbage collection walks every object torch created (~0.3 s here); frozen objects are
    # skipped. Only objects that exist now are frozen, and they live until exit anyway.
    gc.freeze()


@app.command()
def show(
    index: int = typer.Argument(0, help="Which image of the split."),
    split: str = typer.Option("train", help="train or valid."),
    digit: Optional[int] = typer.Option(None, help="Count only images of this digit (e.g. 3: the book's threes[0])."),
    png: Optional[Path] = typer.Option(None, help="Also save the shaded table as this PNG."),
    data: Optional[Path] = DataOpt,
):
    """Show an image as a table of grey values, each cell shaded like its pixel (the book's im3_t[4:15,4:22]).

    Example: [bold]digitlab show 0 --digit 3 --png three.png[/]
    """
    from ..data.mnist import pick_image  # deferred: imports torch; keeps --help fast
    from ..viz.figures import grey_table_figure, save  # deferred: imports numpy; keeps --help fast
    from ..viz.terminal import grey_table  # deferred: imports numpy; keeps --help fast

    img, label = pick_image(split, index, digit, data)
    out.print(f"{split} image {index}{'' if digit is None else f' of the {digit}s'}: label {label}, "
              f"rows 4-14, columns 4-21", highlight=False)
    out.print(grey_table(img))
    if png:
        out.print(f"wrote {save(grey_table_figure(img), png, dpi=110)}", highlight=False)


@data_app.command("info")
def data_info(data: Optional[Path] = DataOpt):
    """Where the data files are, which data set they are (recognised by their sha256), and the count of each
    class per split.

    Example: [bold]digitlab data info[/]
    Example: [bold]digitlab data info --data /usr/share/datasets/fashion-mnist[/]
    """
    from ..data.catalogue import load_dataset  # deferred: imports torch; keeps --help fast

    ds = load_dataset(data, quiet=True)
    what = (f"{ds.name}; sha256 of every file verified" if ds.known else
            "not a known data set: it passed the structural checks; a run records its sha256")
    out.print(f"data folder: {ds.root} ({what})", highlight=False)
    for name, s in ds.splits.items():
        counts = {str(c): int((s.labels == i).sum()) for i, c in enumerate(ds.classes)}
        out.print(dict_table({"images": len(s), **counts}, title=f"{name}"))


@data_app.command("export")
def data_export(
    dest: Path = typer.Argument(..., help="Folder to write train/<digit>/*.png and valid/<digit>/*.png into."),
    task: str = typer.Option("3v7", help="3v7 (the book's MNIST_SAMPLE) or digits (all ten)."),
    data: Optional[Path] = DataOpt,
):
    """Write the image-folder layout the book reads (train/3, train/7, valid/3, valid/7 as 28x28 PNGs).

    Example: [bold]digitlab data export mnist_sample --task 3v7[/]
    """
    from ..data.folders import export_dataset  # deferred: imports torch and PIL; keeps --help fast

    counts = export_dataset(dest, task, data)
    for split, per_label in counts.items():
        out.print(f"{dest / split}: " + ", ".join(f"{k}: {v}" for k, v in per_label.items()), highlight=False)


@demo_app.command("gradient")
def demo_gradient(x: float = typer.Option(3.0, help="Where to take the gradient of x**2."),
                  png: Optional[Path] = typer.Option(None, help="Save a plot of x**2 with the point and its tangent.")):
    """The gradient of x**2 by autograd: at 3 it is 6.

    Example: [bold]digitlab demo gradient --x 3 --png gradient.png[/]
    """
    from ..chapter.calculus import gradient_at, gradient_figure  # deferred: imports torch; keeps --help fast
    from ..viz.figures import save  # deferred: imports numpy; keeps --help fast

    y, g = gradient_at(x)
    out.print(f"f(x) = x**2 at x = {x:g}: f = {y:g}, gradient (by autograd) = {g:g}, 2*x = {2 * x:g}", highlight=False)
    if png:
        out.print(f"wrote {save(gradient_figure(x), png)}", highlight=False)


@demo_app.command("sgd")
def demo_sgd(steps: int = typer.Option(10, help="Gradient steps."), lr: float = typer.Option(1e-5, help="Learning rate."),
             seed: int = typer.Option(42), png: Optional[Path] = typer.Option(Path("roller_coaster.png"), help="Plot of the fit improving.")):
    """The roller coaster: fit a*t**2 + b*t + c to noisy speeds by SGD, printing the loss at each step.

    Example: [bold]digitlab demo sgd --steps 10[/]
    """
    from ..chapter.calculus import RollerCoaster, roller_coaster_figure  # deferred: imports torch; keeps --help fast
    from ..viz.figures import save  # deferred: imports numpy; keeps --help fast

    rc = RollerCoaster(seed=seed, lr=lr)
    losses, preds = rc.fit(steps)
    for i, loss in enumerate(losses, 1):
        out.print(f"step {i:3d}  loss {loss:.4f}", highlight=False)
    out.print(f"params a, b, c = {', '.join(f'{p:.4f}' for p in rc.params.tolist())}", highlight=False)
    if png:
        out.print(f"wrote {save(roller_coaster_figure(rc, preds), png)}", highlight=False)


@demo_app.command("plot")
def demo_plot(fn: str = typer.Argument("relu", help="relu, sigmoid or square."),
              png: Path = typer.Option(Path("function.png"), help="Where to save the plot.")):
    """plot_function: draw ReLU, sigmoid or x**2 over [-2, 2].

    Example: [bold]digitlab demo plot sigmoid --png sigmoid.png[/]
    """
    from ..chapter.calculus import FUNCTIONS  # deferred: imports torch; keeps --help fast
    from ..viz.figures import plot_function, save  # deferred: imports numpy; keeps --help fast

    if fn not in FUNCTIONS:
        raise DigitlabError(f"unknown function {fn!r}; choose one of {', '.join(FUNCTIONS)}.")
    out.print(f"wrote {save(plot_function(FUNCTIONS[fn], 'x', f'{fn}(x)', fn), png)}", highlight=False)
