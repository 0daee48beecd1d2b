"""One self-contained HTML page per run: summary, config, metrics per epoch, per-class accuracy and every plot,
with the images embedded as base64 so the file can be mailed or opened anywhere without the run folder.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

REPORT_FILE = "report.html"
PLOT_CAPTIONS = {  # file -> caption, in the order shown
    "curves.png": "Loss per batch and per epoch, and validation accuracy per epoch",
    "lr_schedule.png": "Learning rate of every training batch",
    "confusion_matrix.png": "Confusion matrix on the validation (test) set: rows actual, columns predicted",
    "top_losses.png": "The validation images the model is most wrong about",
    "reliability.png": "Reliability on the scored split: accuracy against confidence, before and after the temperature "
                       "fitted on the validation split (the diagonal is perfect calibration)",
    "weights.png": "The linear model's weights, one 28x28 image per class (red: ink there raises the score)",
}
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}figure{margin:1em 0}img{max-width:100%}
figcaption{color:#555;font-size:.9em}.big{font-size:1.4em}code{background:#f3f3f3;padding:0 .2em}"""


def read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
    return html.escape("-" if v is None else str(v))


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """An HTML table of dicts (one row each)."""
    if not rows:
        return "<p>none</p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def kv_table(d: dict) -> str:
    return table([{"name": k, "value": v if not isinstance(v, (dict, list)) else json.dumps(v)} for k, v in d.items()])


def embedded_image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def dataset_name(config: dict) -> str:
    """The data set a run trained on, as recorded in its config.json (runs from before the catalogue: MNIST)."""
    return fmt((config.get("dataset") or {}).get("name") or "MNIST")


def classes_note(cfg: dict) -> str:
    return f" ({fmt(cfg['classes'])})" if cfg.get("classes") else ""


def render_report(run: Path) -> str:
    """The report of a run folder as one HTML string."""
    run = Path(run)
    config = read_json(run / "config.json", {})
    summary = read_json(run / "summary.json", {})
    metrics = read_json(run / "metrics.json", [])
    interp = read_json(run / "interpretation.json")
    cfg = config.get("config", {})
    title = f"digitlab run {run.name}"
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if summary:
        parts.append(f'<p class="big">accuracy <b>{fmt(summary.get("accuracy"))}</b> ({fmt(summary.get("errors"))} '
                     f'errors in {fmt(summary.get("n", summary.get("n_valid")))}) &middot; {dataset_name(config)} '
                     f'{fmt(cfg.get("task"))}{classes_note(cfg)} &middot; '
                     f'{fmt(cfg.get("model"))} &middot; {fmt(summary.get("epochs_done"))} epochs in '
                     f'{fmt(summary.get("train_seconds"))} s &middot; {fmt(summary.get("status"))}</p>')
        if "test_accuracy" in summary:  # runs scored on a validation split and a test split apart
            parts.append(f'<p>validation accuracy {fmt(summary.get("valid_accuracy"))} (what every choice read) '
                         f'&middot; test accuracy <b>{fmt(summary.get("test_accuracy"))}</b> (scored once, after '
                         f'training) &middot; expected calibration error {fmt(summary.get("ece"))} &rarr; '
                         f'{fmt(summary.get("ece_calibrated"))} at temperature {fmt(summary.get("temperature"))}</p>')
    parts.append("<h2>Metrics per epoch</h2>" + table(metrics))
    parts.append("<h2>Plots</h2>")
    plots = run / "plots"
    for name, caption in PLOT_CAPTIONS.items():
        if (plots / name).exists():
            parts.append(embedded_image(plots / name, caption))
    if interp:
        kind = "digit" if all(isinstance(c, int) for c in interp.get("classes", [])) else "class"
        per_class = [{kind: d, "accuracy": a} for d, a in interp.get("per_class_accuracy", {}).items()]
        parts.append(f"<h2>Accuracy per {kind}</h2>" + table(per_class))
        confused = [{"actual": a, "predicted": p, "count": c} for a, p, c in interp.get("most_confused", [])]
        parts.append("<h2>Most confused pairs</h2>" + table(confused))
        parts.append("<h2>Top losses</h2>" + table(interp.get("top_losses", [])))
    parts.append("<h2>Summary</h2>" + kv_table(summary))
    parts.append("<h2>Config</h2>" + kv_table(cfg))
    parts.append("<h2>Environment</h2>" + kv_table(config.get("environment", {})))
    parts.append(f"<p>Re-score: <code>digitlab evaluate {html.escape(str(run))}</code> &middot; predict: "
                 f"<code>digitlab predict {html.escape(str(run))} my_image.png</code></p>")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def write_report(run: Path) -> Path:
    """Write report.html into the run folder; returns its path."""
    path = Path(run) / REPORT_FILE
    path.write_text(render_report(run), encoding="utf-8")
    return path
