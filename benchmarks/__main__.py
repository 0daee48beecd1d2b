"""python -m benchmarks all: the CPU benchmark suite in one command, and its table of times, ratios and bars.

Each benchmark runs as its own process (a fresh interpreter, as a user would run it), and each of those runs our
code and its baseline in the same process, interleaved or one after the other (see each module's docstring).
This collects their JSON records into results/all.json, a markdown table results/all.md, and a plot of test
accuracy against training seconds for ten digits (ours against the PyTorch example) in results/tendigits.png.

    python -m benchmarks all            # everything below (the last run's time: results/all.json, suite_seconds)
    python -m benchmarks all --quick    # fewer repeats and no reference to 99.0% (about 2 minutes)
    python -m benchmarks table          # only rebuild the table and plot from the records there are

The GPU figures come from `python -m benchmarks.gpu` on a GPU machine (results/gpu-<card>.json); the table includes
each card's record (one per card: the last run of the script on it), never the validation sweeps of
`python -m benchmarks.gpu_validation` (results/gpu-validation-*.json), which measure other things.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from .common import RESULTS

ROOT = Path(__file__).resolve().parent.parent


def steps(quick: bool) -> list[tuple[str, list[str]]]:
    """(name, command) of each benchmark, in the order they run."""
    py = [sys.executable, "-m"]
    return [
        ("reproduce", py + ["benchmarks.reproduce_time", "--repeats", "1" if quick else "3"]),
        ("chapter", py + ["benchmarks.chapter", "--repeats", "1" if quick else "5"]),  # 5: the close calls need them
        ("resnet", py + ["benchmarks.resnet"] + (["--seeds", "42", "--no-plain"] if quick else [])),
        ("tendigits", py + ["benchmarks.tendigits", "--seeds", "1", "--ref-seeds", "1"] + (["--no-reference"] if quick else [])),
        ("speedrun_995", py + ["digitlab", "speedrun", "--target", "0.995", "--seeds", "1", "--device", "cpu",
                               "--json"]),
        ("serve_load", py + ["benchmarks.serve_load"] + (["--requests", "2000"] if quick else [])),
    ]


def run_all(quick: bool) -> dict:
    record = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": quick, "steps": {}}
    total = time.perf_counter()
    for name, cmd in steps(quick):
        print(f"\n== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=name == "speedrun_995", text=True)
        step = {"command": " ".join(cmd[1:]), "seconds": time.perf_counter() - start, "returncode": proc.returncode}
        if name == "speedrun_995":
            print(proc.stdout[-2000:], proc.stderr[-2000:], flush=True)
            try:
                (RESULTS / "speedrun-cpu-0.995.json").write_text(proc.stdout)
            except OSError:
                pass
        record["steps"][name] = step
    record["suite_seconds"] = time.perf_counter() - total
    return record


def load(name: str) -> dict | None:
    try:
        return json.loads((RESULTS / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def card_records() -> list[Path]:
    """Each card's record of `benchmarks.gpu` (gpu-<card>.json): the validation sweeps' gpu-validation-*.json also
    match gpu-*.json, and would add a row per target that "no recipe reached"."""
    return sorted(p for p in RESULTS.glob("gpu-*.json") if not p.name.startswith("gpu-validation-"))


def rows() -> list[dict]:
    """One row per claim: what was measured, ours, the baseline, the ratio, and whether the bar is met."""
    out = []

    def add(what, ours, baseline, ratio, bar, met):
        out.append({"what": what, "ours": ours, "baseline": baseline, "ratio": ratio, "bar": bar, "met": met})

    rep = load("reproduce_time")
    if rep:
        add("`digitlab reproduce` (stages 2-5), wall-clock incl. Python start", f"{rep['median_s']:.2f} s",
            "-", "-", "< 4 s", rep["median_s"] < 4)
        add("`digitlab reproduce`, peak resident memory", f"{rep['peak_rss_mb']:.0f} MB", "-", "-", "< 1.5 GB",
            rep["peak_rss_mb"] < 1536)
    ch = load("chapter")
    for r in (ch or {}).get("rows", []):
        linear = r["stage"].startswith("linear")
        need = 4.0 if linear else 2.0
        met = r["ratio"] >= need and (not linear or r["ratio_plain"] is None or r["ratio_plain"] >= 1.5)
        add(f"chapter {r['stage']} (acc {r['our_acc']:.4f} vs {r['book_acc']:.4f})", f"{r['ours_s']:.3f} s",
            f"book {r['book_s']:.3f} s" + (f", plain {r['plain_s']:.3f} s" if r.get("plain_s") else ""),
            f"{r['ratio']:.2f}x" + (f" / {r['ratio_plain']:.2f}x" if r.get("ratio_plain") else ""),
            f">= {need:g}x book" + (", >= 1.5x plain" if linear else ""), met)
    rn = load("resnet")
    if rn and "fastai_accuracies" in rn:  # fastai measured per seed by benchmarks/peers (results/fastai-resnet18.json)
        n, m = len(rn["ours"]), len(rn["fastai_accuracies"])
        plain = f", plain {rn['plain_epoch_s']:.1f} s" if rn.get("plain_epoch_s") else ""
        add(f"ResNet-18 3v7 fit_one_cycle(1, 0.1): mean acc {rn['ours_mean_accuracy']:.4f} over {n} seeds, fastai "
            f"{rn['fastai_mean_accuracy']:.4f} (sd {rn['fastai_sd_accuracy']:.4f}) over {m}",
            f"{rn['ours_epoch_s']:.1f} s", f"fastai {rn['fastai_epoch_s']:.1f} s (measured){plain}",
            f"{rn['vs_fastai']:.2f}x" + (f" / {rn['vs_plain']:.2f}x" if rn.get("vs_plain") else ""),
            "acc: parity with fastai (mean >= its mean - 1 sd, same number of seeds); speed: the ratio",
            bool(rn["accuracy_parity"]))
    td = load("tendigits")
    if td:
        refs = td.get("references") or ([td["reference"]] if td.get("reference") else [])
        stopped = max((r["checks"][-1]["seconds"] for r in refs), default=0)
        ref = (f"PyTorch example (fp32) {td['ref_time_to_99']:.1f} s" if td.get("ref_time_to_99") else
               f"PyTorch example (fp32) not at 99.0% after {stopped:.0f} s" if refs else "-")
        for key, prec, bar in (("", "bf16", "<= 30 s, >= 5x"), ("fp32_", "fp32", "- (fp32 vs fp32, for the record)")):
            ours = "ours" if prec == "bf16" else "ours_fp32"
            if f"{ours}_epoch_s" not in td:
                continue
            t, slowest = td.get(f"{ours}_time_to_99"), td.get(f"{ours}_slowest_time_to_99", td.get(f"{ours}_time_to_99"))
            ratio = td.get(f"{key}time_to_99_ratio") or td.get(f"{key}time_to_99_ratio_at_least")  # at least: capped
            capped = td.get(f"{key}time_to_99_ratio") is None and ratio is not None
            add(f"ten digits, time to 99.0% (2 CPU cores), ours {prec}", f"{t:.1f} s (slowest seed {slowest:.1f} s)"
                if t else "not reached", ref, f"{'>= ' if capped else ''}{ratio:.1f}x" if ratio else "-", bar,
                bool(t and slowest <= 30 and (ratio or 0) >= 5) if prec == "bf16" else "-")
    sr = load("speedrun-cpu-0.995")
    if sr:
        add("ten digits, time to 99.5% (2 CPU cores, speedrun)", f"{sr['mean_seconds']:.0f} s "
            f"(acc {sr['mean_accuracy']:.4f})", "-", "-", "<= 180 s", sr["all_reached"] and sr["mean_seconds"] <= 180)
    for name in ("mnist", "mnist-avx2", "fashion-mnist"):  # plain `digitlab train`: python -m benchmarks.default_recipe
        dr = load(f"default-recipe-{name}")
        if dr:
            b = dr["bars"]
            cls = f", {dr['machine_class']}" if dr.get("machine_class") else ""
            add(f"{dr['data_set']}: default recipe (`{dr['command']}`), {len(dr['runs'])} seeds, 2 CPU cores{cls}",
                f"test mean {dr['mean_test']:.2%} (lowest {dr['min_test']:.2%}), longest {dr['max_train_seconds']:.0f} s",
                "-", "-", f"each >= {b['each_test']:.1%}, mean >= {b['mean_test']:.2%}, each < {b['seconds']:.0f} s",
                bool(dr["passed"]))
    od = load("ood")
    if od:  # the shipped model's default detector against the bars of issue 19
        r, b = next(r for r in od["detectors"] if r["detector"] == od["default"]), od["bars"]
        add(f"not-a-digit detector ({r['detector']}, shipped model): Fashion-MNIST flagged / MNIST test flagged / "
            f"UCI accepted, AUROC", f"{r['fashion_flagged']:.2%} / {r['mnist_flagged']:.2%} / {r['uci_accepted']:.2%}, "
            f"{r['auroc']:.4f}", "-", "-", f">= {b['fashion_flagged']:.0%} / <= {b['mnist_flagged']:.0%} / >= "
            f"{b['uci_accepted']:.0%}, AUROC >= {b['auroc']}, cost < {b['cost']:.0%}", bool(r["meets_bars"]))
    for name, what in (("serve_load", "JSON"), ("serve_load_png", "PNG (what the page sends)")):
        sl = load(name)
        if sl:
            bar = sl.get("bars") or {"rps": 400, "p99_ms": 50}
            add(f"serve: {sl['requests']} {what} predictions, {sl['concurrency']} clients, shipped model + detector",
                f"{sl['throughput_rps']:.0f} req/s, p99 {sl['latency_ms']['p99']:.1f} ms", "-", "-",
                f">= {bar['rps']} req/s, p99 < {bar['p99_ms']} ms", bool(sl.get("target_met")))
    lp = load("one-loop")
    if lp:  # issue 26: the fast engine as a Learner
        add(f"fast engine as a Learner, per epoch ({lp['machine_class']})", f"{lp['median_learner_epoch_s']:.2f} s",
            f"its own loop {lp['median_bare_epoch_s']:.2f} s", f"{1 + lp['overhead']:.3f}x",
            "<= 1.03x, same weights", bool(lp["bar_met"]))
    # every card's last script run (the bar names an H100), and records of the speedrun command alone
    # (results/speedrun-cli-<card>.json, shaped like the script's speedrun_cli section)
    gpu_bars = (("0.99", 0.3), ("0.995", 1.0), ("0.997", 5.0))
    records = [(path, json.loads(path.read_text()))
               for path in card_records() + sorted(RESULTS.glob("speedrun-cli-*.json"))]
    for path, g in records:
        if not path.name.startswith("gpu-"):
            continue
        card = g.get("device", {}).get("name", "GPU")
        for target, bar in gpu_bars:
            fig = g.get("sections", {}).get("targets", {}).get(target, {}).get("figure")
            add(f"{card}: ten digits to {float(target) * 100:.1f}%, mean of 5 seeds after warm-up",
                f"{fig['mean_seconds']:.3f} s ({fig['recipe']})" if fig else "no recipe reached it with every seed",
                "-", "-", f"<= {bar} s", bool(fig and fig["mean_seconds"] <= bar))
    for path, g in records:  # the user's command in fresh processes
        card = g.get("device", {}).get("name", "GPU")
        for target, bar in gpu_bars:
            run = g.get("sections", {}).get("speedrun_cli", {}).get(target, {})
            if "mean_seconds" in run:
                add(f"{card}: `digitlab speedrun --target {target}`, fresh process, 5 seeds ({path.name})",
                    f"{run['mean_seconds']:.3f} s (every seed reached it: {'yes' if run['all_reached'] else 'no'})",
                    "-", "-", f"<= {bar} s", bool(run["all_reached"] and run["mean_seconds"] <= bar))
    return out


def markdown(table: list[dict]) -> str:
    lines = ["| what | ours | baseline | ratio | bar | met |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['what']} | {r['ours']} | {r['baseline']} | {r['ratio']} | {r['bar']} | "
              f"{r['met'] if isinstance(r['met'], str) else 'yes' if r['met'] else '**no**'} |" for r in table]
    return "\n".join(lines) + "\n"


def plot_tendigits() -> Path | None:
    """Test accuracy against training seconds: ours and the PyTorch example, from results/tendigits.json."""
    td = load("tendigits")
    if not td:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, color, label in (("ours", "C0", "digitlab fastcnn, bf16"), ("ours_fp32", "C2", "digitlab fastcnn, fp32")):
        for i, run in enumerate(td.get(key) or []):
            ax.plot([c["seconds"] for c in run["checks"]], [c["accuracy"] for c in run["checks"]], "o-",
                    color=color, label=label if i == 0 else None)
    for i, ref in enumerate(td.get("references") or ([td["reference"]] if td.get("reference") else [])):
        ax.plot([c["seconds"] for c in ref["checks"]], [c["accuracy"] for c in ref["checks"]], "s-", color="C1",
                label="PyTorch MNIST example (fp32)" if i == 0 else None)
    ax.axhline(0.99, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="training seconds (2 CPU cores)", ylabel="test accuracy", ylim=(0.97, 1.0),
           title="Ten digits: accuracy against time")
    ax.legend()
    path = RESULTS / "tendigits.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def write_table(record: dict | None = None) -> str:
    table = rows()
    md = markdown(table)
    (RESULTS / "all.md").write_text(md)
    old = load("all") or {}
    (RESULTS / "all.json").write_text(json.dumps({**old, **(record or {}), "table": table}, indent=2))
    plot_tendigits()
    return md


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["all", "table"])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    record = run_all(args.quick) if args.what == "all" else None
    md = write_table(record)
    print("\n" + md)
    if record:
        print(f"suite: {record['suite_seconds']:.0f} s; "
              f"failed steps: {[n for n, s in record['steps'].items() if s.get('returncode')] or 'none'}")


if __name__ == "__main__":
    main()
