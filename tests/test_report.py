"""The HTML report of a run: one self-contained file showing the summary, metrics, config and every plot."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image

from digitlab.config import TrainConfig
from digitlab.report import render_report, write_report
from digitlab.runs import new_run_dir, record_run
from digitlab.train.fit import fit


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = TrainConfig(task="3v7", model="linear", epochs=2, lr=0.1, device="cpu")
    return record_run(fit(cfg), new_run_dir(tmp_path_factory.mktemp("runs"), "rep"))


def test_report_embeds_every_plot_as_a_readable_png(run):
    page = (run / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(list((run / "plots").glob("*.png"))) == 6
    for data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            assert im.format == "PNG" and im.size[0] > 100
    assert "src=\"http" not in page and "<script" not in page and "<link" not in page  # nothing fetched


def test_report_shows_metrics_summary_and_config(run):
    page = (run / "report.html").read_text()
    summary = json.loads((run / "summary.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"{summary['accuracy']:.4f}" in page
    for log in metrics:
        assert f"{log['valid_loss']:.4f}" in page
    assert "<td>lr</td><td>0.1000</td>" in page and "<td>model</td><td>linear</td>" in page
    assert "Accuracy per digit" in page and "Top losses" in page
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")


def test_report_of_a_partial_run_still_renders(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"config": {"model": "cnn", "task": "digits"}}))
    page = render_report(tmp_path)
    assert f"<h1>digitlab run {tmp_path.name}</h1>" in page
    assert "<h2>Metrics per epoch</h2><p>none</p>" in page  # no metrics yet: said, not an empty table
    assert "<td>model</td><td>cnn</td>" in page and "data:image/png" not in page and "accuracy <b>" not in page
    assert write_report(tmp_path).exists()
