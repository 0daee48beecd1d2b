"""`digitlab train`: a config from the options (or a file), one run folder, torchrun for several processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .app import DataOpt, app, err, out


@app.command()
def train(
    task: Optional[str] = typer.Option(None, help="digits (every class of the data set: MNIST's ten) or 3v7 (the "
                                       "book's 3s and 7s). [default: digits]"),
    classes: Optional[str] = typer.Option(None, "--classes", help="Only these classes of the data set, comma-"
                                          "separated names or digits: 'Sneaker,Bag', '3,5,8'."),
    valid_pct: Optional[float] = typer.Option(None, "--valid-pct", help="A single image folder (root/<class>/*): "
                                              "the share held out for validation, by a fixed seed. [default: 0.2]"),
    valid_size: Optional[int] = typer.Option(None, "--valid-size", help="IDX data sets: training images held out "
                                             "for validation (stratified, fixed); 0 trains on all. [default: 5000]"),
    model: Optional[str] = typer.Option(None, help="Model name: linear, simple_net, mlp, cnn, fastcnn, ... "
                                        "[default: fastcnn]"),
    epochs: Optional[int] = typer.Option(None, help="Passes over the training set."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (one-cycle) or the constant rate."),
    bs: Optional[int] = typer.Option(None, help="Batch size."),
    opt: Optional[str] = typer.Option(None, help="sgd, adam or adamw."),
    mom: Optional[float] = typer.Option(None, help="SGD momentum / Adam beta1."),
    wd: Optional[float] = typer.Option(None, help="Weight decay."),
    schedule: Optional[str] = typer.Option(None, help="one_cycle or constant."),
    label_smoothing: Optional[float] = typer.Option(None, help="Cross-entropy label smoothing."),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help="Random shifts, rotations and scaling of training batches."),
    seed: Optional[int] = typer.Option(None, help="Seed for weights, data order and augmentation."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N."),
    engine: Optional[str] = typer.Option(None, help="learner (callbacks, checkpoints, resume, --nproc) or fast "
                                         "(data on the device, CUDA graph; one-cycle SGD only). [default: the "
                                         "data set's recipe: fast for MNIST and Fashion-MNIST, else learner]"),
    precision: Optional[str] = typer.Option(None, help="auto (what the device does natively: bf16 on CPUs with AMX "
                                            "or AVX-512 BF16 and on bf16 GPUs, fp16 on fp16-only GPUs, else fp32; "
                                            "`digitlab info` says which), bf16, fp16 or fp32. [default: auto]"),
    tta: Optional[bool] = typer.Option(None, "--tta/--no-tta", help="Score the final model with test-time "
                                       "augmentation (one-pixel shifts; mirror images too with aug_flip)."),
    config: Optional[Path] = typer.Option(None, "--config", help="A TOML file of TrainConfig fields (a run's "
                                          "config.toml, `digitlab recipe NAME --print-config`); flags override it."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config as TOML and exit."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Folder that holds run folders."),
    name: Optional[str] = typer.Option(None, help="Run folder name (default: date-time-task-model)."),
    resume: Optional[Path] = typer.Option(None, help="Continue an interrupted run folder from its checkpoint "
                                          "(its own config is used; other options are ignored)."),
    checkpoint_every: Optional[int] = typer.Option(None, help="Also checkpoint every N steps (always: every epoch)."),
    nproc: Optional[int] = typer.Option(None, help="Train data-parallel on N processes of this machine (starts "
                                        "torchrun for you; --bs is then the global batch)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress: print only the final line."),
    as_json: bool = typer.Option(False, "--json", help="No progress; print the summary as JSON (for scripts)."),
    data: Optional[Path] = DataOpt,
):
    """Train a model and write a run folder (config.json and config.toml, metrics, weights, plots, TensorBoard
    events, report.html). Unset options take the --config file's fields, else the data set's default recipe
    (docs/recipes.md: MNIST's is 20 epochs of fastcnn on the fast engine), else TrainConfig's defaults. On a
    terminal a bar shows each epoch's progress; piped into a file, one plain line per epoch.

    Example: [bold]digitlab train --task digits --model cnn --epochs 3 --lr 0.05[/]
    Example: [bold]digitlab train --config runs/my-run/config.toml --seed 2[/]
    Example: [bold]digitlab train --task 3v7 --model linear --epochs 1 --name first[/]
    """
    from ..config import TrainConfig  # deferred: keeps --help fast
    from ..train.progress import ProgressCallback  # deferred: keeps --help fast
    from ..train.distributed import world  # deferred: keeps --help fast
    from ..runs import train_run  # deferred: keeps --help fast
    from ..train.fit import divergence_message  # deferred: keeps --help fast

    rank = world()[0]
    if nproc and nproc > 1:  # re-run this very command under torchrun, without --nproc
        import sys  # deferred: keeps --help fast

        from ..train.distributed import launch  # deferred: keeps --help fast
        return launch(nproc, strip_option(sys.argv[1:], "--nproc"))

    given = dict(task=task, classes=classes, valid_pct=valid_pct, valid_size=valid_size, model=model, epochs=epochs,
                 lr=lr, bs=bs, opt=opt, mom=mom, wd=wd, schedule=schedule, label_smoothing=label_smoothing,
                 augment=augment, seed=seed, device=device, engine=engine, precision=precision, tta=tta,
                 data=str(data) if data else None)
    needs_learner = world()[1] > 1  # only the Learner engine shards over processes
    cfg = None if resume else TrainConfig.resolve(config, needs_learner=needs_learner, **given)
    if print_config:
        print(cfg.to_toml() if cfg else Path(resume, "config.toml").read_text(), end="")
        return 0
    mode = "quiet" if quiet or as_json else "auto"
    run, result = train_run(cfg, runs, name, resume, checkpoint_every, cbs=[ProgressCallback(out, mode)])
    s = result.summary
    if rank != 0:  # under torchrun only rank 0 speaks
        return 0
    if as_json:
        print(json.dumps({"run": str(run), **s}, indent=2))
    else:
        out.print(f"{accuracy_line(s)} after {s['epochs_done']} epochs, {s['train_seconds']:.1f}s; run folder {run}",
                  highlight=False)
        if not quiet:
            out.print(f"report: {run / 'report.html'}; next: digitlab predict {run} my_digit.png", highlight=False)
    if s["status"] == "diverged":
        err.print(f"[red]error:[/] {divergence_message(s['diverged'])}", highlight=False)
        return 3
    if s["status"] == "interrupted":
        err.print(f"stopped by {s['interrupted']}; checkpoint saved. Continue with: digitlab train --resume {run}",
                  highlight=False)
        return 130 if s["interrupted"] == "SIGINT" else 143
    return 0


def accuracy_line(s: dict) -> str:
    """A summary's scores in words: the final accuracy (the test split's, scored once, where the task has one),
    the validation accuracy, then the calibration error before and after the temperature."""
    if s.get("test_accuracy") is not None:
        scores = (f"accuracy {s['accuracy']:.4f} on the test set ({s['errors']} errors in {s['n']}, scored once after "
                  f"training); validation {s['valid_accuracy']:.4f} ({s['valid_errors']} errors in {s['n_valid']})"
                  if s.get("valid_accuracy") is not None else
                  f"accuracy {s['accuracy']:.4f} on the test set ({s['errors']} errors in {s['n']}, no validation split)")
    else:
        scores = (f"accuracy {s['accuracy']:.4f} ({s['errors']} errors in {s['n']}; no separate test split: the "
                  f"valid split is the final score)")
    return f"{scores}; calibration error {s['ece']:.2%} -> {s['ece_calibrated']:.2%} at temperature {s['temperature']:.2f}"


def strip_option(argv: list[str], option: str) -> list[str]:
    """argv without `option VALUE` or `option=VALUE`."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            kept.append(arg)
    return kept
