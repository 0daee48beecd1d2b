"""Commands for training and using models: train, evaluate, runs, predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..errors import DataError
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


@app.command()
def evaluate(run: Path = typer.Argument(..., help="A run folder or a .safetensors file."),
             uci_digits: bool = typer.Option(False, "--uci-digits", help="Score on the 1797 UCI handwritten digits "
                                             "(not MNIST; shipped inside scikit-learn) through predict's preprocessing."),
             ood: Optional[Path] = typer.Option(None, "--ood", help="Images that are not the model's classes "
                                                "(an IDX images file, a folder of IDX files, or a folder of "
                                                "images): how well its detector tells them from its test images."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON."),
             data: Optional[Path] = DataOpt):
    """Re-score a saved model on the test set of its task and data set (the folder in its config, or --data):
    accuracy, loss, accuracy per class and the confusion matrix (rows actual, columns predicted). With --ood:
    its "not a digit" detector on those images against its test images (AUROC, FPR at 95% TPR, shares flagged).

    Example: [bold]digitlab evaluate runs/20261126-120000-digits-cnn[/]
    Example: [bold]digitlab evaluate runs/my-run --uci-digits[/]
    Example: [bold]digitlab evaluate runs/my-run --ood /usr/share/datasets/fashion-mnist[/]
    Example: [bold]digitlab evaluate runs/fashion --data /usr/share/datasets/fashion-mnist[/]
    """
    from ..console import confusion_table, dict_table  # deferred: keeps --help fast
    from ..interpret import Interpretation  # deferred: keeps --help fast
    from ..predict import Classifier  # deferred: keeps --help fast

    clf = Classifier.load(run)
    if ood is not None:
        return evaluate_ood_cmd(clf, ood, data, as_json)
    if uci_digits:
        return evaluate_uci(clf, as_json)
    task, task_data = model_task_data(clf, data)
    interp = Interpretation.from_model(clf.model, task_data.final, clf.classes)
    has_test = task_data.test is not None and len(task_data.valid) > 0
    valid = Interpretation.from_model(clf.model, task_data.valid, clf.classes).accuracy if has_test else None
    summary = {"task": task, "dataset": (task_data.info or {}).get("name"), "accuracy": interp.accuracy,
               "valid_accuracy": valid, "test_accuracy": interp.accuracy if task_data.test is not None else None,
               "errors": int((interp.preds != interp.actual).sum()),
               "n": len(interp.actual), "loss": interp.losses.mean().item(), **interp.to_dict()}
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    split = "test" if task_data.test is not None else "valid"
    out.print(f"{summary['dataset']} {task}: {split} accuracy {summary['accuracy']:.4f} ({summary['errors']} errors in "
              f"{summary['n']}), loss {summary['loss']:.4f}"
              + (f"; valid accuracy {valid:.4f}" if valid is not None else ""), highlight=False)
    out.print(dict_table(interp.per_class_accuracy(), title=f"accuracy per {'digit' if clf.digits else 'class'}"))
    out.print(confusion_table(interp.confusion_matrix(), interp.classes))


def model_task_data(clf, data: Optional[Path]):
    """(task, TaskData) a saved model was trained on: its own config's data folder, classes and splits (or --data
    for a data set that has moved); a model whose classes the data does not have is refused."""
    from ..predict import task_data_for  # deferred: keeps --help fast

    return task_data_for(clf.meta, data)


def evaluate_uci(clf, as_json: bool):
    """Accuracy on the UCI digits (8x8, 43 writers), each image prepared as `predict` prepares a user's image."""
    from ..console import dict_table  # deferred: keeps --help fast
    from ..data.uci import uci_digits  # deferred: keeps --help fast
    from ..predict import accuracy_on  # deferred: keeps --help fast

    if not clf.digits:
        names = ", ".join(map(str, clf.classes))
        raise DataError(f"--uci-digits scores a model of digits; this one tells apart {names}.")
    images, labels = uci_digits()
    keep = np.isin(labels, clf.classes)
    res = {"dataset": "UCI handwritten digits (scikit-learn load_digits)",
           **accuracy_on(clf, list(images[keep]), labels[keep])}
    if as_json:
        print(json.dumps(res, indent=2))
        return
    out.print(f"UCI digits: accuracy {res['accuracy']:.4f} on {res['n']} images ({res['no_answer']} without an "
              f"answer)", highlight=False)
    out.print(dict_table(res["per_digit"], title="accuracy per digit"))


def evaluate_ood_cmd(clf, source: Path, data: Optional[Path], as_json: bool) -> None:
    """`evaluate --ood`: the detector's report, as JSON or in words."""
    from ..predict import evaluate_ood  # deferred: keeps --help fast

    r = evaluate_ood(clf, source, data)
    if as_json:
        print(json.dumps(r, indent=2))
        return
    what = "digits" if clf.digits else "images of its classes"
    out.print(f"detector {r['detector']} (threshold {r['threshold']:.4g}, set to accept "
              f"{r['detector_info'].get('accept', 0):.0%} of the {r['detector_info'].get('threshold_on')} split): "
              f"{r['out']['n']} images from {r['out']['source']} against {r['n_in']} {r['in']['split']} {what}",
              highlight=False)
    blank = f" ({r['out']['blank']} blank images left out)" if r["out"]["blank"] else ""
    out.print(f"AUROC {r['auroc']:.4f}; FPR at 95% TPR {r['fpr_at_95_tpr']:.2%}; flagged as not one of the "
              f"classes: {r['out_flagged']:.2%} of those images{blank}, {r['in_flagged']:.2%} of the {r['in']['split']} "
              f"{what}; accuracy of the accepted ones {r['accuracy_accepted']:.4f} (all: {r['accuracy_all']:.4f})",
              highlight=False)


@app.command("ood-fit")
def ood_fit(run: Path = typer.Argument(..., help="A run folder or a .safetensors file."),
            detector: str = typer.Option("mahalanobis", "--detector", help="mahalanobis (the default, chosen by "
                                         "benchmarks/ood.py), energy_mahalanobis, knn, energy or msp."),
            accept: float = typer.Option(0.99, "--accept", help="Share of validation digits the threshold accepts."),
            dest: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the model with its detector here "
                                                "(default: into the model file itself)."),
            data: Optional[Path] = DataOpt):
    """Add (or replace) the "not a digit" detector of a saved model: statistics fitted on its training split,
    the threshold set on its validation split (a model trained without one: the fixed 5000-image split).
    Runs trained since the detector exists already have one.

    Example: [bold]digitlab ood-fit src/digitlab/pretrained/digits-cnn.safetensors[/]
    Example: [bold]digitlab ood-fit runs/my-run --detector energy --accept 0.995[/]
    """
    from ..predict import attach_detector  # deferred: keeps --help fast

    path, det = attach_detector(run, detector, accept, data, dest)
    note = " (the model was trained on those images)" if det.info.get("valid_in_training") else ""
    out.print(f"wrote {path}: detector {det.name}, threshold {det.threshold:.4g} accepting {accept:.1%} of "
              f"{det.info['n_threshold']} {det.info['threshold_on']} images{note}; statistics from "
              f"{det.info['n_fit']} training images", highlight=False)


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


@app.command()
def predict(run: Path = typer.Argument(..., help="A run folder or a .safetensors file."),
            images: list[Path] = typer.Argument(..., help="PNG, JPEG or WebP files of single digits (or, for a "
                                                "model of named classes, single objects), any size or colour; a "
                                                "folder stands for the images in it, or in its class folders."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON: one object per image."),
            show: Optional[Path] = typer.Option(None, "--show", help="Save the 28x28 each image became (what the "
                                                "model saw) as <folder>/<image name>.png.")):
    """Predict the class of each image: a digit, or for a model of named classes (Fashion-MNIST, image folders)
    its name ("label": "Sneaker"). For digits each image is made to look like MNIST first: grey, inverted if the
    paper is light, cropped to the ink, strokes evened, scaled into 20x20 and centred by mass in 28x28; a blank
    image is answered as blank, not guessed. A model of named classes prepares an image as its training images
    were read (saved in the model): Fashion-MNIST's grey, 28x28, inverted if its border is light; an image-folder
    model's exactly as the folder loader read its training images.

    Example: [bold]digitlab predict runs/my-run my_digit.png[/]
    Example: [bold]digitlab predict runs/my-run photos/ --json --show seen/[/]
    """
    from ..data.images import save_input  # deferred: keeps --help fast
    from ..predict import Classifier, image_files  # deferred: keeps --help fast

    clf = Classifier.load(run)
    outcomes = clf.predict_many(image_files(images))
    if show:
        for o in outcomes:
            if o.prediction is not None:
                save_input(o.prediction.input, show / f"{Path(o.image).stem}.png")
    if as_json:
        print(json.dumps([o.to_dict() for o in outcomes], indent=2))
    else:
        for o in outcomes:
            out.print(describe(o.to_dict(), clf.digits), highlight=False)
    return 2 if any(o.error and not o.blank for o in outcomes) else 0


def describe(r: dict, digits: bool = True) -> str:
    """One line for one image: the label and the top probabilities, or why there is none."""
    if r.get("blank"):
        return f"{r['image']}: [yellow]blank[/] ({r['message']})"
    if r.get("error"):
        return f"{r['image']}: [red]error[/] {r['error']}"
    top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
    bars = ", ".join(f"{k}: {v:.3f}" for k, v in top)
    if r.get("not_a_digit"):
        what = "a digit" if digits else "any of the classes"
        return f"{r['image']}: [yellow]not a digit[/]: that does not look like {what} (best guess {r['label']}: {bars})"
    note = "  [yellow]unsure: the model is guessing[/]" if r["unsure"] else ""
    return f"{r['image']}: [bold]{r['label']}[/]  ({bars})" + note


@app.command("export")
def export_cmd(run: Path = typer.Argument(..., help="A run folder or a .safetensors file."),
               fmt: str = typer.Option("onnx", "--format", "-f", help="onnx or torchscript."),
               dest: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file (default: beside the "
                                                   "weights, model.onnx or model.pt)."),
               data: Optional[Path] = DataOpt):
    """Export a saved model to ONNX (run by onnxruntime) or TorchScript, and check that the export predicts
    the same labels as the original on 1000 test images.

    Example: [bold]digitlab export runs/my-run --format onnx[/]
    Example: [bold]digitlab export runs/my-run --format torchscript --out model.pt[/]
    """
    from ..export import export_model  # deferred: keeps --help fast
    from ..predict import Classifier  # deferred: keeps --help fast

    images = model_task_data(Classifier.load(run), data)[1].final.images[:1000].float() / 255
    path, check = export_model(run, fmt, dest, images)
    out.print(f"wrote {path}: same label as the original on {check['same_labels']:.1%} of {check['n']} test "
              f"images, largest score difference {check['max_abs_diff']:.2e}", highlight=False)
