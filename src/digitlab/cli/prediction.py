"""`digitlab predict` (labels for a user's images, in the model's words) and `digitlab export`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .app import DataOpt, app, out
from .evaluation import model_task_data


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
    if r.get("none_of_the_classes"):
        what = "a digit" if digits else "any of the classes"
        return (f"{r['image']}: [yellow]{r['verdict']}[/]: that does not look like {what} "
                f"(best guess {r['label']}: {bars})")
    note = "  [yellow]unsure: the model is guessing[/]" if r["unsure"] else ""
    return f"{r['image']}: [bold]{r['label']}[/]  ({bars})" + note


@app.command("export")
def export_cmd(run: Optional[Path] = typer.Argument(None, help="A run folder or a .safetensors file [default: the "
                                                     "model shipped in the package]."),
               dest_arg: Optional[Path] = typer.Argument(None, metavar="[OUT]", help="Where to write: a file, or "
                                                         "for --format web a folder (same as --out)."),
               fmt: str = typer.Option("onnx", "--format", "-f", help="onnx, torchscript, or web (a static page "
                                       "that runs the model in the browser)."),
               dest: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file (default: beside the "
                                                   "weights, model.onnx or model.pt); for web, a new folder."),
               data: Optional[Path] = DataOpt):
    """Export a saved model to ONNX (run by onnxruntime), TorchScript, or a static web page, and check that the
    export predicts the same labels as the original on 1000 test images.

    Example: [bold]digitlab export runs/my-run --format onnx[/]
    Example: [bold]digitlab export runs/my-run --format torchscript --out model.pt[/]
    Example: [bold]digitlab export runs/my-run --format web my-page/[/]  then  [bold]python -m http.server -d my-page[/]
    """
    from ..export import export_model  # deferred: keeps --help fast
    from ..predict import Classifier  # deferred: keeps --help fast
    from ..runs import MODEL_FILE, resolve_model_file  # deferred: imports torch

    if fmt not in ("onnx", "torchscript", "web"):
        raise typer.BadParameter(f"unknown format {fmt!r}; choose one of onnx, torchscript, web.")
    dest = dest or dest_arg
    if fmt == "web" and dest is None and run is not None and not run.is_file() and not (run / MODEL_FILE).is_file():
        run, dest = None, run  # `digitlab export --format web OUT/`: the shipped model into OUT
    if run is None and dest is None:
        raise typer.BadParameter("give where to write the shipped model's export: --out FILE (for --format web, "
                                 "a folder); beside it would be inside the installed package.")
    src = resolve_model_file(run)
    images = model_task_data(Classifier.load(src), data)[1].final.images[:1000].float() / 255
    if fmt == "web":
        from ..webpage import export_page, page_weight  # deferred: keeps --help fast

        if dest is None:
            raise typer.BadParameter("give the folder to write the page into: digitlab export RUN --format web OUT/")
        folder, spec = export_page(src, dest, images)
        weight = sum(page_weight(folder).values())
        out.print(f"wrote the page {folder}/ ({weight / 2**20:.1f} MB, model {spec['onnx_bytes'] / 2**20:.2f} MB): "
                  f"same label as the original on {spec['check']['same_labels']:.1%} of {spec['check']['n']} test "
                  f"images. Open it with any static server: python -m http.server -d {folder}", highlight=False)
        return
    path, check = export_model(src, fmt, dest, images)
    out.print(f"wrote {path}: same label as the original on {check['same_labels']:.1%} of {check['n']} test "
              f"images, largest score difference {check['max_abs_diff']:.2e}", highlight=False)
