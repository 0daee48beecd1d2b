"""python -m benchmarks.figure_check: figures typed into the docs that no record backs.

The docs' generated blocks (`<!-- figures:NAME -->...<!-- /figures:NAME -->`, see docs_tables.py) are rewritten
from the records; everything else in README.md, docs/*.md and src/digitlab/pretrained/README.md is typed by hand.
This finds every percentage (99.64%, 87-92%), time (23 s, 0.25 s, 34.6 ms, 1.5 minutes) and accuracy or share
written as a fraction with three or more decimals (0.9876) outside the blocks, and
looks for its value among the numbers of the records in benchmarks/results/ (every JSON file there, folders
included; every number in them, and every number written inside their strings). A figure is backed when some
record number, in the figure's unit, rounds to it at the figure's precision: 98.76% is backed by 0.98757, 23 s by
22.61, 34.6 ms by 0.0346 (seconds). Nothing else is checked: a backed figure may still be quoted for the wrong
thing, but a stale or invented one is caught.

Figures that are not ours to record (the book's, a peer's published numbers, a bar or a setting, an example's
output) are marked as quotes where they stand: `<!-- quote: why -->` on the line marks that line; alone on a line it
marks the block that follows (up to the next blank line, or a whole fenced code block). Where a marker cannot go
in yet, QUOTED below names the file and the figure, with the reason; every entry must still match a figure (a
stale entry is reported too). Exits 1, listing them, when any figure is unbacked. Reads text and JSON only.
"""

from __future__ import annotations

import bisect
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .docs_tables import BLOCK, RESULTS, ROOT, doc_files

NUM = r"\d+(?:\.\d+)?"
# a number (or a range of two: 87-92%, 22 to 25 s) and its unit; a bare "s" needs a space or a decimal before it,
# so the digit classes "3s and 7s" are not times
FIGURE = re.compile(rf"(?<![\w.\-/])(?P<a>{NUM})(?:\s?(?:-|–|to)\s?(?P<b>{NUM}))?"
                    rf"(?:(?P<pct>\s?%)|(?P<ms>\s?ms\b)|(?P<min>\s(?:min|minutes?)\b)|(?P<s>\s(?:s|seconds?)\b)"
                    rf"|(?<=\.\d)(?P<s2>s\b)|(?<=\.\d\d)(?P<s3>s\b))"
                    rf"|(?<![\w.\-/])(?P<frac>0\.\d{{3,}})(?![\d.%])")  # an accuracy or a share written as 0.9876
QUOTE = re.compile(r"<!--\s*quote\b[^>]*-->")
FENCE = re.compile(r"^\s*(```|~~~)")
# a record's number x, read in the figure's unit: the candidates it can be written as
SCALES = {"pct": (1.0, 100.0), "s": (1.0, 0.001), "ms": (1.0, 1000.0), "min": (1.0, 1 / 60), "frac": (1.0, 0.01)}

EARLIER = "an earlier session's CPU run, from before runs were recorded (the section says it was chosen on the test set)"
# (file, figure as written) -> why no record backs it. Prefer a `<!-- quote: why -->` marker in the doc itself.
QUOTED = {
    ("docs/recipes.md", "99.45%"): EARLIER,
    ("docs/recipes.md", "99.527%"): EARLIER,
    ("docs/recipes.md", "266.5 s"): EARLIER,
    ("docs/recipes.md", "258.5 s"): EARLIER,
    ("docs/recipes.md", "28.8 s"): EARLIER,
    ("docs/recipes.md", "127 s"): EARLIER,
    ("docs/recipes.md", "125 s"): EARLIER,
    ("docs/recipes.md", "228 s"): EARLIER,
    ("docs/recipes.md", "179 s"): EARLIER,
    ("docs/recipes.md", "77-81 s"): EARLIER,
    ("docs/recipes.md", "0.99967"): EARLIER,
    ("docs/recipes.md", "94-102 s"): EARLIER,
    ("docs/recipes.md", "60-112 s"): EARLIER,
    ("docs/recipes.md", "0.9990"): "the best-3v7 recipe's bar, a target, not a measurement",
    ("docs/recipes.md", "99.804%"): "the mean over the 12-model subsets, computed by benchmarks.ensemble_probs from "
                                    "gpu-runs/h200-run4-members.pt (saved probabilities, not a JSON record)",
    ("docs/datasets.md", "0.1307"): "MNIST's training-set mean, a constant of the catalogue (data/catalogue.py)",
    ("docs/datasets.md", "0.3081"): "MNIST's training-set standard deviation, a constant of the catalogue",
    ("docs/reliability.md", "120 s"): "DIGITLAB_DIST_TIMEOUT's default, a setting",
}


@dataclass(frozen=True)
class Figure:
    path: str
    line: int
    text: str
    unit: str
    values: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def files(root: Path = ROOT) -> list[Path]:
    """README.md, docs/*.md and the shipped model's card."""
    return [*doc_files(root), root / "src" / "digitlab" / "pretrained" / "README.md"]


def record_numbers(results: Path = RESULTS) -> list[float]:
    """Every number in every record under `results` (JSON, and the logs of GPU sessions), sorted: JSON numbers and
    numbers written inside strings."""
    found: set[float] = set()

    def walk(o):
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, (int, float)) and not isinstance(o, bool):
            found.add(abs(float(o)))
        elif isinstance(o, str):
            found.update(float(n) for n in re.findall(NUM, o))

    for path in sorted(results.rglob("*")):
        if path.suffix == ".json":
            walk(json.loads(path.read_text()))
        elif path.suffix == ".log":  # a GPU session's own output (gpu-runs/), kept where no JSON was written
            walk(path.read_text())
    return sorted(found)


class Records:
    """`backs(value, unit)`: whether some record number, read in `unit`, rounds to the figure `value` ("98.76")."""

    def __init__(self, numbers: list[float]):
        self.scaled = {unit: {k: sorted(x * k for x in numbers) for k in scales} for unit, scales in SCALES.items()}

    def backs(self, value: str, unit: str) -> bool:
        digits = len(value.split(".")[1]) if "." in value else 0
        v, half = float(value), 0.5 * 10 ** -digits + 1e-9
        for xs in self.scaled[unit].values():
            i = bisect.bisect_left(xs, v - half)
            if i < len(xs) and xs[i] <= v + half:
                return True
        return False


def hand_typed_lines(text: str):
    """(line number, line) of the text outside generated blocks and quotes."""
    text = BLOCK.sub(lambda m: m.group(1) + "\n" * m["body"].count("\n") + m.group(4), text)
    quoting = fenced = False
    for i, line in enumerate(text.splitlines(), 1):
        fence = bool(FENCE.match(line))
        if QUOTE.fullmatch(line.strip()):
            quoting = True
            continue
        if quoting:
            if fence:
                fenced = not fenced
            elif not fenced and not line.strip():
                quoting = False
            continue
        if not QUOTE.search(line):
            yield i, line


def figures(path: Path, root: Path = ROOT) -> list[Figure]:
    name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    out = []
    for i, line in hand_typed_lines(path.read_text()):
        for m in FIGURE.finditer(line):
            if m["frac"]:
                out.append(Figure(name, i, m["frac"], "frac", (m["frac"],)))
                continue
            unit = "pct" if m["pct"] else "ms" if m["ms"] else "min" if m["min"] else "s"
            out.append(Figure(name, i, m.group(0).strip(), unit, tuple(v for v in (m["a"], m["b"]) if v)))
    return out


def unbacked(paths: list[Path] | None = None, results: Path = RESULTS, quoted: dict = QUOTED) -> list[Figure]:
    """Every hand-typed figure in `paths` (default: the docs) that no record in `results` backs and `quoted` does
    not name."""
    records = Records(record_numbers(results))
    return [f for path in (paths or files()) for f in figures(path)
            if (f.path, f.text) not in quoted and not all(records.backs(v, f.unit) for v in f.values)]


def stale_quotes(quoted: dict = QUOTED) -> list[str]:
    """Entries of `quoted` that name no figure in the docs (the figure was changed or removed: drop the entry)."""
    present = {(f.path, f.text) for path in files() for f in figures(path)}
    return [f"{path}: {text}" for path, text in quoted if (path, text) not in present]


def main() -> int:
    found, stale = unbacked(), stale_quotes()
    for f in found:
        print(f"{f}  (no record backs it: regenerate it from one, measure it, or mark it <!-- quote: why -->)")
    for q in stale:
        print(f"QUOTED names a figure that is not there any more: {q}")
    print(f"{len(found)} figure(s) without a record" if found else "every hand-typed figure has a record")
    return 1 if found or stale else 0


if __name__ == "__main__":
    sys.exit(main())
