"""The docs' figure blocks are what `python -m benchmarks.docs_tables` writes from benchmarks/results/*.json: a
figure edited by hand, or a record re-measured without regenerating the docs, fails here."""

from __future__ import annotations

from benchmarks.docs_tables import BLOCK, BLOCKS, doc_files, rewrite, stale_blocks


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
