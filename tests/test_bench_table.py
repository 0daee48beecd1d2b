"""The benchmark table (`python -m benchmarks table`) reads every GPU record it finds, and marks a bar met only when
every seed reached the target in time."""

import json

import benchmarks.__main__ as bench


def speedrun(mean: float, reached: bool) -> dict:
    return {"all_reached": reached, "mean_seconds": mean, "min_seconds": mean, "mean_accuracy": 0.995, "runs": []}


def test_table_lists_the_speedrun_command_from_script_records_and_command_records(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    script = {"device": {"name": "Card A"}, "sections": {
        "targets": {"0.99": {"figure": {"mean_seconds": 0.25, "recipe": "fastcnn e3"}}},
        "speedrun_cli": {"0.99": speedrun(0.26, True), "0.995": speedrun(0.7, False)}}}
    command = {"device": {"name": "Card B"}, "sections": {"speedrun_cli": {"0.997": speedrun(5.5, True)}}}
    (tmp_path / "gpu-card-a.json").write_text(json.dumps(script))
    (tmp_path / "speedrun-cli-card-b.json").write_text(json.dumps(command))
    table = {row["what"]: row for row in bench.rows()}
    assert table["Card A: ten digits to 99.0%, mean of 5 seeds after warm-up"]["met"]
    cli = {what: row["met"] for what, row in table.items() if "digitlab speedrun" in what}
    assert cli == {
        "Card A: `digitlab speedrun --target 0.99`, fresh process, 5 seeds (gpu-card-a.json)": True,
        "Card A: `digitlab speedrun --target 0.995`, fresh process, 5 seeds (gpu-card-a.json)": False,  # a seed missed
        "Card B: `digitlab speedrun --target 0.997`, fresh process, 5 seeds (speedrun-cli-card-b.json)": False,  # 5.5 s
    }
