"""The docs' figure blocks are what `python -m benchmarks.docs_tables` writes from benchmarks/results/*.json: a
figure edited by hand, or a record re-measured without regenerating the docs, fails here; and a figure typed outside
the blocks that no record backs (`python -m benchmarks.figure_check`) fails here too."""

from __future__ import annotations

import json
import shutil

import benchmarks.__main__ as bench
from benchmarks.docs_tables import BLOCK, BLOCKS, RESULTS, ROOT, doc_files, rewrite, stale_blocks
from benchmarks.figure_check import stale_quotes, unbacked


def test_every_figure_block_matches_its_records():
    assert stale_blocks() == [], "run: python -m benchmarks.docs_tables"


def test_every_block_is_used_and_every_used_block_is_known():
    used = [m["name"] for path in doc_files() for m in BLOCK.finditer(path.read_text())]
    assert set(used) == set(BLOCKS)


def test_a_figure_changed_by_hand_is_caught_and_regenerated(tmp_path):
    doc = tmp_path / "recipes.md"
    original = next(p for p in doc_files() if p.name == "recipes.md").read_text()
    block = next(m for m in BLOCK.finditer(original) if m["name"] == "resnet")
    edited = original.replace(block["body"], block["body"].replace("fastai", "fast.ai", 1))
    doc.write_text(edited)
    assert stale_blocks([doc]) == [f"{doc}: resnet"]
    assert rewrite(edited) == original


def test_a_blocks_card_torch_and_day_come_from_its_records(tmp_path):
    """The validation sweeps' block names the card, torch build and day its records say: one re-measured
    elsewhere changes the line, rather than leaving a typed one standing."""
    for path in RESULTS.glob("gpu-validation-*.json"):
        shutil.copy(path, tmp_path)
    assert "One NVIDIA H200, torch 2.11.0+cu130, 2026-11-30;" in BLOCKS["validation-choices"](tmp_path)
    moved = tmp_path / "gpu-validation-recipes-nvidia-h200.json"
    rec = json.loads(moved.read_text())
    rec["device"]["name"], rec["environment"]["torch"], rec["environment"]["when"] = "Card B", "2.99.0", "2027-01-02"
    moved.write_text(json.dumps(rec))
    line = BLOCKS["validation-choices"](tmp_path).splitlines()[-1]
    assert line.startswith("GPUs: NVIDIA H200, Card B, torch 2.11.0+cu130, 2.99.0, 2026-11-30, 2027-01-02;"), line


def test_the_benchmark_table_reads_each_cards_record_and_not_the_validation_sweeps(tmp_path, monkeypatch):
    """gpu-validation-*.json also match gpu-*.json: their targets are not the cards' and add no rows."""
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    card = {"device": {"name": "Card A"}, "sections": {"targets": {"0.99": {"figure": {"mean_seconds": 0.25,
                                                                                     "recipe": "fastcnn e3"}}}}}
    (tmp_path / "gpu-card-a.json").write_text(json.dumps(card))
    (tmp_path / "gpu-validation-card-a.json").write_text(json.dumps({"device": {"name": "Card A"}, "sections": {}}))
    rows = [r["what"] for r in bench.rows() if "ten digits to" in r["what"]]
    assert rows == [f"Card A: ten digits to {t}%, mean of 5 seeds after warm-up" for t in ("99.0", "99.5", "99.7")]


def test_the_benchmark_table_is_what_its_records_give():
    """results/all.md is `python -m benchmarks table` of the records there are: a record re-measured without
    rebuilding the table fails here."""
    assert (RESULTS / "all.md").read_text() == bench.markdown(bench.rows()), "run: python -m benchmarks table"


def test_every_hand_typed_figure_in_the_docs_has_a_record_or_is_marked_a_quote():
    """Percentages, times and accuracies typed outside the generated blocks: each is a record's number (rounded as
    written) or marked as a quote; the allow-list names only figures that are still there."""
    assert [str(f) for f in unbacked()] == [], "python -m benchmarks.figure_check"
    assert stale_quotes() == []


def test_a_stale_figure_typed_into_a_doc_is_reported(tmp_path):
    """The tutorial's old line (98.87% in two epochs, 84 s) against a record that says 98.76% and 22.79 s: both
    figures are reported; the record's own figures, a quote and a generated block's text are not."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "quickstart.json").write_text(json.dumps({"accuracy": 0.9876, "train_seconds": 22.787,
                                                         "latency_ms": {"p99": 34.57}}))
    doc = tmp_path / "tutorial.md"
    doc.write_text("The CNN reaches 98.87% in two epochs (84 s on 2 CPU cores), 0.9887 on the test set.\n"
                   "Recorded: 98.76% (0.9876), 23 s of training, 22.79 s exactly, p99 34.6 ms, 0.03457 s.\n"
                   "Pixel similarity: 95.1% right <!-- quote: the book's figure -->\n"
                   "<!-- quote: a peer's table -->\n"
                   "| peer | 91.7% | 12 s |\n\n"
                   "<!-- figures:quickstart -->99.99% in 1234 s<!-- /figures:quickstart -->\n"
                   "Digit classes 3s and 7s, and 12396 images, are not figures; 87-99.5% is a range.\n")
    found = [f.text for f in unbacked([doc], results=results, quoted={})]
    assert found == ["98.87%", "84 s", "0.9887", "87-99.5%"]
    (results / "more.json").write_text(json.dumps({"range": [0.8704, 0.995], "old": {"acc": 0.98871}}))
    assert [f.text for f in unbacked([doc], results=results, quoted={})] == ["84 s"]
    assert unbacked([doc], results=results, quoted={(str(doc), "84 s"): "planted"}) == []


def test_a_stale_figure_planted_in_a_real_doc_fails_the_repos_check(tmp_path):
    """The check over the real records: a copy of docs/tutorial.md with a line of figures no record holds (the old
    tutorial's kind of line; 98.87% happens to be in a record, the time is not) is caught."""
    doc = tmp_path / "tutorial.md"
    doc.write_text((ROOT / "docs" / "tutorial.md").read_text() + "\nThe CNN reaches 98.87% in two epochs (8417 s).\n")
    assert [f.text for f in unbacked([doc])] == ["8417 s"]
