"""python -m benchmarks.docs_tables [--check]: the docs' figures, rewritten from benchmarks/results/*.json.

A figure block is the text between `<!-- figures:NAME -->` and `<!-- /figures:NAME -->` in README.md or
docs/*.md; NAME is one of BLOCKS below, a function of the records that gives the block's text. Without --check
every block is rewritten from its records; with --check nothing is written and the command exits 1 naming each
block that no longer matches them (tests/test_docs_figures.py runs the check). Reads JSON only: no torch.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- figures:(?P<name>[\w-]+) -->)(?P<body>.*?)(<!-- /figures:(?P=name) -->)", re.S)


def record(name: str, results: Path) -> dict:
    return json.loads((results / f"{name}.json").read_text())


def pct(x: float, digits: int = 2) -> str:
    return f"{100 * x:.{digits}f}%"


def table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def when(rec: dict) -> str:
    """When and on what a record was measured, from its own environment (and machine class, where it has one)."""
    env = rec.get("environment", {})
    cpu = env.get("cpu", "?") + (f" ({rec['machine_class']})" if rec.get("machine_class") else "")
    return f"{env.get('when', '?')[:10]}, torch {env.get('torch', '?')}, {env.get('threads', '?')} threads, {cpu}"


# --- the blocks --------------------------------------------------------------------------------------------------
def suite(results: Path) -> str:
    rec = record("all", results)
    return (f"{rec['suite_seconds'] / 60:.1f} minutes on 2 cores in its last full run, {rec['started'][:10]}: "
            f"{rec['suite_seconds']:.0f} s, `results/all.json`")


def quickstart(results: Path) -> str:
    q = record("quickstart", results)
    return (f"{q['wall_s'] / 60:.1f} minutes on 2 CPU cores ({q['train_seconds']:.0f} s of training), "
            f"{pct(q['accuracy'])} test accuracy ({q['errors']} errors in 10000), `results/quickstart.json`")


def resnet(results: Path, tag: str = "") -> str:
    rn, fa = record(f"resnet{tag}", results), record(f"fastai-resnet18{tag}", results)
    plain = {r["seed"]: r for r in rn.get("plain", [])}
    fastai = {r["seed"]: r for r in fa["runs"]}
    rows = []
    for r in rn["ours"]:
        f, p = fastai.get(r["seed"]), plain.get(r["seed"])
        rows.append([r["seed"], f"{r['accuracy']:.4f}", f"{r['epoch_s']:.1f} s",
                     f"{f['accuracy']:.4f}" if f else "-", f"{f['epoch_s']:.1f} s" if f else "-",
                     f"{p['accuracy']:.4f}, {p['epoch_s']:.1f} s" if p else "-"])
    ours_acc = [r["accuracy"] for r in rn["ours"]]
    rows.append([f"**mean (sd) / median epoch, {len(ours_acc)} and {len(fa['runs'])} seeds**",
                 f"**{statistics.mean(ours_acc):.4f}** ({statistics.stdev(ours_acc):.4f})",
                 f"**{rn['ours_epoch_s']:.1f} s**",
                 f"**{rn['fastai_mean_accuracy']:.4f}** ({rn['fastai_sd_accuracy']:.4f})",
                 f"**{rn['fastai_epoch_s']:.1f} s**", "-"])
    head = ["seed", "ours: accuracy (2038 images)", "ours: epoch", "fastai: accuracy", "fastai: epoch",
            "plain PyTorch, same model"]
    fenv = rn.get("fastai_environment", {})
    met = "met" if rn["accuracy_parity"] else "**not met**"
    return "\n".join([
        table(head, rows), "",
        f"Accuracy bar, parity with fastai's own distribution ({rn['accuracy_bar']}): **{met}**. Speed: fastai's "
        f"median epoch over ours, **{rn['vs_fastai']:.2f}x**" + (f"; plain PyTorch's over ours {rn['vs_plain']:.2f}x"
                                                                 if rn.get("vs_plain") else "") + ". "
        f"Ours: {when(rn)}; fastai {fenv.get('fastai', '?')} on torch {fenv.get('torch', '?')}, "
        f"{fenv.get('threads', '?')} threads, DataLoader workers: {fa['runs'][0].get('num_workers', '?')} (its "
        f"default), {fenv.get('when', '?')[:10]}. Records: `results/resnet.json`, `results/fastai-resnet18.json`."])


def tendigits(results: Path) -> str:
    td = record("tendigits", results)
    ours, ref = td["ours"], td.get("reference")
    t99 = lambda t: f"{t:.1f} s" if t else "not reached"  # noqa: E731
    rows = [[f"ours, bf16 autocast (seeds {', '.join(str(td['args']['seed'] + i) for i in range(len(ours)))})",
             f"{td['ours_epoch_s']:.1f} s", t99(td["ours_time_to_99"]) + " (median of seeds)",
             ", ".join(pct(o["final_accuracy"]) for o in ours)]]
    if td.get("ours_fp32"):
        rows.append(["ours, fp32 (same seeds)", f"{td['ours_fp32_epoch_s']:.1f} s",
                     t99(td["ours_fp32_time_to_99"]) + " (median of seeds)",
                     ", ".join(pct(o["final_accuracy"]) for o in td["ours_fp32"])])
    if ref:
        runs = ref.get("runs", [ref])
        rows.append([f"reference, fp32 ({len(runs)} run{'s' * (len(runs) > 1)})", f"{td['ref_epoch_s']:.1f} s",
                     t99(td["ref_time_to_99"]) if td.get("ref_reached") else
                     f"not at 99.0% after {max(r['checks'][-1]['seconds'] for r in runs):.0f} s",
                     ", ".join(pct(r["final_accuracy"]) for r in runs)])
    ratios = []
    for key, what in (("time_to_99_ratio", "ours in bf16"), ("time_to_99_ratio_at_least", "ours in bf16, at least"),
                      ("fp32_time_to_99_ratio", "ours in fp32"),
                      ("fp32_time_to_99_ratio_at_least", "ours in fp32, at least")):
        if td.get(key):
            ratios.append(f"{what} **{td[key]:.1f}x**")
    epochs = [f"{what} {td[key]:.1f}x" for key, what in (("epoch_ratio", "bf16"), ("fp32_epoch_ratio", "fp32"))
              if td.get(key)]
    return "\n".join([table(["", "per epoch", "time to 99.0%", "accuracy when stopped"], rows), "",
                      f"Time to 99.0%, the reference's (fp32) over ours: {', '.join(ratios) or '-'}"
                      + (f" (per epoch: {', '.join(epochs)})" if epochs else "") + f". {when(td)}; "
                      f"`results/tendigits.json`."])


def serve_load(results: Path) -> str:
    rows = []
    for name, what, cmd in (("serve_load", "JSON 28x28 pixels", "python -m benchmarks.serve_load"),
                            ("serve_load_png", "280x280 RGBA PNG, multipart (what the page sends)",
                             "python -m benchmarks.serve_load --payload png")):
        r = record(name, results)
        lat, bar = r["latency_ms"], r.get("bars") or {"rps": 400, "p99_ms": 50}
        share = f"{r['client_cpu_share']:.1%}" if "client_cpu_share" in r else "-"
        rows.append([what, f"`{cmd}`", f"{r['throughput_rps']:.0f}", f"{lat['p50']:.1f} ms", f"{lat['p99']:.2f} ms",
                     r["errors"], share, f">= {bar['rps']} req/s, p99 < {bar['p99_ms']} ms: "
                                         f"{'met' if r['target_met'] else '**not met**'}"])
    recs = [record(n, results) for n in ("serve_load", "serve_load_png")]
    served = [r.get("served") for r in recs]
    model = "; ".join(dict.fromkeys(f"{s['file']} ({s['architecture']}, detector {s['detector'] or 'none'})"
                                    if s else f"{Path(r['model']).name} (before the records named what was served)"
                                    for s, r in zip(served, recs)))
    times = "; ".join(dict.fromkeys(f"{r['medians_of_runs']} fresh servers, {when(r)}" for r in recs))
    head = ["payload", "command", "req/s", "p50", "p99", "errors", "client's CPU share", "bar"]
    return "\n".join([table(head, rows), "",
                      f"Medians of {times}. Served: {model}. `results/serve_load.json`, `results/serve_load_png.json`."])


def machines(results: Path) -> str:
    """Which CPU each CPU record was measured on, from the records' own environment."""
    by: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(results.glob("*.json")):
        rec = json.loads(path.read_text())
        env = rec.get("environment") or {}
        if "cpu" not in env or path.name.startswith("gpu-"):
            continue
        cpu = env["cpu"] + (f", {rec['machine_class']}" if rec.get("machine_class") else "")
        by.setdefault(cpu, []).append((path.stem, env.get("when", "?")[:10]))
    return "; ".join(f"**{cpu}** ({min(d for _, d in recs)} to {max(d for _, d in recs)}): "
                     f"{', '.join(n for n, _ in recs)}" for cpu, recs in by.items())


def predict_accuracy(results: Path) -> str:
    p = record("predict_speed", results)
    names = {"uneven_light": "shadow", "noisy_jpeg": "noise+JPEG"}
    styles = " / ".join(names.get(s, s.replace("_", " ")) for s in p["accuracy_by_style"])
    return table([f"pictures of {p['n']} MNIST test digits", "accuracy"], [
        ["the original 28x28 images (no preprocessing needed)", f"{p['accuracy_on_originals']:.3f}"],
        ["the same digits as pictures, through `prepare_image`", f"**{p['accuracy_on_renderings']:.3f}** (same label "
                                                                 f"as on the original: {p['agreement_with_originals']:.3f})"],
        [f"by style: {styles}", " / ".join(f"{v:.3f}" for v in p["accuracy_by_style"].values())]])


def predict_speed(results: Path) -> str:
    p = record("predict_speed", results)
    s = p["seconds"]
    reps = p.get("repeats", 1)
    runs = f"median of {reps} runs" if reps > 1 else "one run"
    return "\n".join([table([f"{p['n']} image files", f"seconds ({runs})"], [
        ["`Classifier.predict_many` (prepare all, one batched call)", f"**{s['predict_many']:.2f}**"],
        ["naive: one `predict_many([image])` call per image", f"{s['naive_per_image']:.2f}"],
        ["`digitlab predict RUN FOLDER --json`, the whole process (start-up and model loading included)",
         f"{s['cli_end_to_end']:.2f}"]]), "",
        f"Model: {p['model']}; {when(p)}; `results/predict_speed.json`."])


def distributed(results: Path) -> str:
    d = record("distributed-auto", results)
    rows = [[f"{r['nproc']} ({'2 threads' if r['nproc'] == 1 else '1 thread each, torchrun default'})",
             f"{r['images_per_s']:.0f}", f"{r['seconds']:.2f}", f"{r['accuracy']:.4f}"] for r in d["rows"]]
    one, most = d["rows"][0], d["rows"][-1]
    return "\n".join([table(["processes", "training images/s", "seconds per epoch", "accuracy"], rows), "",
                      f"{most['nproc']} processes: {most['images_per_s'] / one['images_per_s']:.2f}x the throughput "
                      f"of 1. Medians of {d['args']['repeats']} runs; {when(d)}; `results/distributed-auto.json`."])


def ensemble_cli(results: Path) -> str:
    e = record("gpu-nvidia-h200", results)["sections"]["ensemble_cli"]
    by = {}
    for m in e["members"]:
        by.setdefault(m["recipe"], []).append(m["accuracy"])
    each = ", ".join(f"{k} {pct(min(v))}-{pct(max(v))}" for k, v in by.items())
    return (f"`digitlab recipe best-ensemble --device cuda`, as a user runs it, on one H200: {e['n_models']} models "
            f"({each} alone), **{pct(e['accuracy'])} ({e['errors']} errors)** together, {e['train_seconds']:.0f} s "
            f"of training (`ensemble_cli` section of `results/gpu-nvidia-h200.json`)")


def validation_choices(results: Path) -> str:
    """Recipe sweeps on one H200 with the validation split: each row's mean validation and test accuracy; the
    chosen row (best validation mean) in bold."""
    names = ("gpu-validation-nvidia-h200", "gpu-validation-fashion2-nvidia-h200", "gpu-validation-recipes-nvidia-h200")
    measured = [record(n, results) for n in names]
    first, second, recipes = (r["sections"] for r in measured)
    sweeps = [("MNIST, sized for 2 CPU cores", first["default_candidates"]),
              ("Fashion-MNIST, round 1", first["fashion_candidates"]),
              ("Fashion-MNIST, round 2", second["fashion_round2"]),
              ("MNIST, the GPU recipes", recipes["gpu_recipes"])]
    rows = []
    for what, sweep in sweeps:
        for r in sweep["rows"]:
            if "runs" not in r:
                continue
            mark = "**" if r["recipe"] == sweep["chosen_on_valid"] else ""
            rows.append([what, f"{mark}{r['recipe']}{mark}", ", ".join(str(x["seed"]) for x in r["runs"]),
                         f"{mark}{pct(r['mean_valid'])}{mark}", f"{pct(r['mean_test'])} (min {pct(r['min_test'])})"])
    ens = record("gpu-validation-ensembles", results)
    rows += [["MNIST, ensembles of the GPU recipes' models", ("**" if e["ensemble"] == ens["chosen_on_valid"] else "")
              + f"{e['ensemble']} ({e['members']} models)" + ("**" if e["ensemble"] == ens["chosen_on_valid"] else ""),
              "-", pct(e["valid_accuracy"]), pct(e["test_accuracy"])] for e in ens["rows"]]
    head = ["sweep", "recipe (fields that differ from TrainConfig's defaults: fast engine, fastcnn, 10 epochs)", "seeds",
            "validation: mean", "test: mean (lowest seed)"]
    return "\n".join([table(head, rows), "", f"{gpu_when(measured)}; records "
                       "`results/gpu-validation-nvidia-h200.json`, `gpu-validation-fashion2-nvidia-h200.json`, "
                       "`gpu-validation-recipes-nvidia-h200.json`, `gpu-validation-ensembles.json`."])


def gpu_when(recs: list[dict]) -> str:
    """Where and when GPU records were measured, from their own device and environment: 'One NVIDIA H200,
    torch 2.11.0+cu130, 2026-11-30' (each different card, torch or day listed once, in order)."""
    def each(values):
        return ", ".join(dict.fromkeys(values))
    cards = each(r.get("device", {}).get("name", "?") for r in recs)
    torches = each(r.get("environment", {}).get("torch", "?") for r in recs)
    days = each(r.get("environment", {}).get("when", "?")[:10] for r in recs)
    return f"{'One' if ', ' not in cards else 'GPUs:'} {cards}, torch {torches}, {days}"


def default_recipe_runs(name: str, results: Path) -> str:
    rec = record(f"default-recipe-{name}", results)
    rows = [[r["seed"], pct(r["valid_accuracy"]), f"{pct(r['test_accuracy'])} ({r['test_errors']} errors)",
             f"{r['train_seconds']:.0f} s", f"{pct(r['ece'])} / {pct(r['ece_calibrated'])}"] for r in rec["runs"]]
    rows.append(["**mean**", pct(rec["mean_valid"], 3), f"**{pct(rec['mean_test'], 3)}** (lowest {pct(rec['min_test'])})",
                 f"median {rec['median_train_seconds']:.0f} s, longest {rec['max_train_seconds']:.0f} s", "-"])
    bars = rec.get("bars") or {}
    verdict = "**met**" if rec.get("passed") else "**not met**"
    return "\n".join([table(["seed", "validation", "test (scored once)", "training", "test ECE before / after the "
                              "temperature"], rows), "",
                       f"Bar: every seed at least {pct(bars.get('each_test', 0), 1)} test, the mean at least "
                       f"{pct(bars.get('mean_test', 0))}, each under {bars.get('seconds', 0) / 60:.0f} minutes of "
                       f"training: {verdict}. `{rec['command']}`, 2 CPU cores, {when(rec)}; "
                       f"`results/default-recipe-{name}.json`."])


def default_recipe_line(results: Path, name: str = "default-recipe-mnist") -> str:
    rec = record(name, results)
    seeds = ", ".join(str(r["seed"]) for r in rec["runs"])
    tests = ", ".join(pct(r["test_accuracy"]) for r in rec["runs"])
    secs = [r["train_seconds"] for r in rec["runs"]]
    epochs = rec["config"]["epochs"]
    cls = rec.get("machine_class") or "AVX512 + bf16 units CPU"  # the first record predates the field: bf16 ran
    forced = " (PyTorch and oneDNN dispatching as there: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2)" \
        if rec.get("dispatch_forced") else ""
    return (f"on 2 CPU cores of an {rec['environment']['cpu']}, {cls}{forced}, {epochs} epochs in "
            f"{rec['runs'][0].get('precision', rec['config']['precision'])}, seeds {seeds}: {tests} test accuracy (mean **{pct(rec['mean_test'], 3)}**), "
            f"{min(secs):.0f}-{max(secs):.0f} s of training each; `results/{name}.json`")


def precision_table(results: Path) -> str:
    """One training step in fp32 and under bf16 autocast, per machine class (benchmarks/precision.py)."""
    rows = []
    for path in sorted(results.glob("precision-*.json")):
        rec = json.loads(path.read_text())
        forced = " (PyTorch and oneDNN told to dispatch as AVX2)" if rec.get("dispatch_forced") else ""
        for case, c in rec["cases"].items():
            rows.append([f"{rec['machine_class']}{forced}", case, f"{c['fp32_ms']:.1f} ms", f"{c['bf16_ms']:.1f} ms",
                         f"{c['bf16_over_fp32']:.2f}x", f"**{rec['auto_picks']}**"])
    head = ["machine class", "one training step", "fp32", "bf16 autocast", "bf16 / fp32", "`auto` picks"]
    cpu = json.loads(sorted(results.glob("precision-*.json"))[0].read_text())["environment"]
    return "\n".join([table(head, rows), "", f"{cpu['cpu']}, 2 cores, torch {cpu['torch']}, {cpu['when'][:10]}; "
                      f"medians of 3 rounds; records `results/precision-*.json` (`python -m benchmarks.precision --as-avx2`)."])


def one_loop(results: Path) -> str:
    rec = record("one-loop", results)
    return (f"{rec['median_learner_epoch_s']:.2f} s an epoch as a Learner against {rec['median_bare_epoch_s']:.2f} s "
            f"for the loop it replaced ({rec['overhead']:+.1%}, medians of {rec['rounds']}), the same weights bit for "
            f"bit: {'yes' if rec['same_weights'] else 'NO'} ({rec['machine_class']}, `results/one-loop.json`)")


def ood_table(rec: dict, name: str = "ood") -> str:
    """docs/predict.md's detector comparison from a record of `python -m benchmarks.ood`."""
    lines = ["| detector | AUROC | FPR at 95% TPR | Fashion-MNIST flagged | MNIST test flagged | accuracy of accepted "
             "MNIST | UCI digits accepted | Fashion as pictures flagged | cost (batch / one input) | every bar |",
             "|" + " --- |" * 10]
    for r in rec["detectors"]:
        if "refused" in r:
            lines.append(f"| {r['detector']} | refused: {r['refused']} |" + " |" * 8)
            continue
        bold = "**" if r["detector"] == rec.get("model_detector", rec["default"]) else ""
        lines.append(f"| {bold}{r['detector']}{bold} | {r['auroc']:.4f} | {r['fpr_at_95_tpr']:.2%} | "
                     f"{r['fashion_flagged']:.2%} | {r['mnist_flagged']:.2%} | {r['accuracy_accepted']:.4f} | "
                     f"{r['uci_accepted']:.2%} | {r['fashion_as_pictures']['flagged']:.2%} | "
                     f"{r['cost_batch']:+.1%} / {r['cost_single']:+.1%} | {'yes' if r['meets_bars'] else 'no'} |")
    env = rec.get("environment", {})
    lines.append("")
    lines.append(f"Model: {Path(rec['model']).name} ({rec['architecture']}); in bold the model's own detector "
                 f"(new runs get {rec['default']}); "
                 f"{env.get('when', '?')[:10]}, torch "
                 f"{env.get('torch', '?')}, {env.get('threads', '?')} threads, {env.get('cpu', '?')}; "
                 f"`results/{name}.json`.")
    return "\n".join(lines)


NONDIGIT_SETS = {"closed": "closed shapes (triangle, square, star, house, heart, smiley...)",
                 "open": "open strokes (wave, zigzag, spiral, check, a written M or W...)", "scribble": "scribbles",
                 "letters": "printed letters and symbols, in fonts used neither to train nor to choose",
                 "fashion_test": "Fashion-MNIST's test images as PNG files",
                 "mnist_test": "MNIST's test images as PNG files", "drawn_digits": "MNIST test digits drawn the page's way",
                 "uci_digits": "the UCI digits (8x8 scans)"}


def nondigits_table(results: Path, name: str = "nondigits-shipped") -> str:
    """docs/predict.md: what `digitlab predict` answers per kind of picture, from benchmarks/nondigits.py."""
    rec = record(name, results)
    rows = []
    for key, label in NONDIGIT_SETS.items():
        r = rec["rows"].get(key)
        if r is None:
            continue
        kind, bar = rec["bars"][key]
        flagged = pct(r["flagged"]) + (f" ({pct(r['accuracy'])} right)" if "accuracy" in r else "")
        sep = "(digits: to accept)" if "accuracy" in r else f"{r['auroc']:.4f} / {pct(r['fpr_at_95_tpr'])}"
        want = {"flagged": f"flagged: at least {bar:.0%}", "flagged_at_most": f"flagged: at most {bar:.0%}",
                "right_and_accepted": f"right and accepted: at least {bar:.0%} ({pct(r.get('right_and_accepted', 0))})",
                "accepted": f"accepted: at least {bar:.0%} ({pct(r['accepted'])})"}[kind]
        rows.append([f"{label}, {r['n']}", flagged, sep, want, "yes" if r["bar_met"] else "**no**"])
    return "\n".join([table(["pictures", "flagged \"not a digit\"", "AUROC / FPR at 95% TPR against MNIST test",
                              "issue 27's bar", "met"], rows), "",
                      f"Model: {Path(rec['model']).name}; seed {rec['seed']} of data.nondigits, fonts "
                      f"{', '.join(rec['fonts'][:3])}...; drawn digits from MNIST test digit {rec.get('drawn_from', 0)}"
                      f" on; {when(rec)}; `results/{name}.json`."])


def scribble_seeds(results: Path, name: str = "scribble-seeds-third") -> str:
    """docs/predict.md: a design on many more scribbles than its test set's (scribble_seeds.py): the third's by
    default, the shipped one's in "scribble-seeds.json"."""
    r = record(name, results)
    shares = sorted(r["flagged"].values())
    return (f"{pct(shares[0])} to {pct(shares[-1])} (all {len(shares) * r['n']:,}: {pct(r['all'])}; "
            f"{r['detector']}, {when(r)})")


def web_page(results: Path) -> str:
    """docs/web.md: the exported page's weight, first load and answer time (benchmarks/web_page.py)."""
    r = record("web-page", results)
    rows = []
    for name, p in r["pages"].items():
        w = p["weight"]
        rows.append([name, f"{w['total_bytes'] / 2**20:.1f} MB ({w['total_gzip_bytes'] / 2**20:.1f} MB gzipped)",
                     f"{p['weight']['files']['model/model.onnx'] / 2**20:.2f} MB",
                     f"{p['first_load_ms']['median']:.0f} ms", f"{p['first_answer_ms']['median']:.1f} ms",
                     f"{p['answer_ms']['median']:.1f} ms (max {p['answer_ms']['max']:.1f})"])
    s = r["served_page"]
    rows.append(["`digitlab serve`'s page (to compare: the drawing sent to the server)", "-", "-", "-",
                 f"{s['first_answer_ms']['median']:.1f} ms", f"{s['answer_ms']['median']:.1f} ms "
                                                            f"(max {s['answer_ms']['max']:.1f})"])
    loads, strokes = len(next(iter(r["pages"].values()))["first_load_ms"]["runs"]), \
        next(iter(r["pages"].values()))["answer_ms"]["n"]
    head = ["page", "weight", "ONNX model", f"first load (median of {loads})", "first answer after loading",
            f"stroke end to answer (median of {strokes})"]
    return "\n".join([table(head, rows), "",
                      f"{r['runtime']}; {r['browser']}; {when(r)}; bar (first answer within 100 ms): "
                      f"{'met' if r['target_met'] else '**not met**'}. `{r['command']}`, `results/web-page.json`."])


def web_agreement(results: Path) -> str:
    """docs/web.md: the exported page against `digitlab predict` on the same pictures (benchmarks/web_page.py)."""
    a = record("web-page", results)["agreement"]
    kinds = ", ".join(f"{k} {n}" for k, n in a["kinds"].items())
    return (f"{a['pictures']} pictures ({kinds}): blank on both for {a['blank']}, the same blank-or-not for "
            f"{a['blank_same']} of {a['pictures']}; of the {a['answered']} answered, the same label for "
            f"{a['labels_same']}, the same verdict (\"not a digit\" or the label) for {a['verdicts_same']} "
            f"({a['flagged']} not a digit); largest probability difference {a['max_prob_diff']:.1e}; the 28x28 "
            f"inputs equal to the bit for {a['inputs_equal_to_the_bit']} of {a['answered']} (largest difference "
            f"{a['max_input_diff']:g}); requests beyond the page's own server: {len(a['refused_requests'])}")


BLOCKS = {"suite": suite, "web-page": web_page, "web-agreement": web_agreement,
          "scribble-seeds": scribble_seeds, "scribble-seeds-shipped": lambda results: scribble_seeds(results, "scribble-seeds"),
          "nondigits": nondigits_table, "machines": machines, "quickstart": quickstart, "resnet": resnet,
          "resnet-avx2": lambda results: resnet(results, "-avx2"), "tendigits": tendigits, "serve-load": serve_load,
          "predict-accuracy": predict_accuracy, "predict-speed": predict_speed, "distributed": distributed,
          "ensemble-cli": ensemble_cli, "validation-choices": validation_choices,
          "default-recipe-mnist": lambda results: default_recipe_runs("mnist", results),
          "default-recipe-line": default_recipe_line,
          "default-recipe-line-avx2": lambda results: default_recipe_line(results, "default-recipe-mnist-avx2"),
          "precision": precision_table, "one-loop": one_loop,
          "ood": lambda results: ood_table(record("ood", results), "ood"),
          "ood-cnn-2epochs": lambda results: ood_table(record("ood-cnn-2epochs", results), "ood-cnn-2epochs"),
          "default-recipe-fashion": lambda results: default_recipe_runs("fashion-mnist", results)}


# --- finding and rewriting blocks -----------------------------------------------------------------------------------
def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def generated(name: str, body: str, results: Path) -> str:
    """A block's text from its records; a table block (one that starts on its own line) keeps its newlines."""
    if name not in BLOCKS:
        raise SystemExit(f"unknown figure block {name!r}; blocks are: {', '.join(BLOCKS)}")
    text = BLOCKS[name](results)
    return f"\n{text}\n" if body.startswith("\n") else text


def rewrite(text: str, results: Path = RESULTS) -> str:
    return BLOCK.sub(lambda m: m.group(1) + generated(m["name"], m["body"], results) + m.group(4), text)


def stale_blocks(files: list[Path] | None = None, results: Path = RESULTS) -> list[str]:
    """'file: block' for every block whose text differs from what its records give."""
    stale = []
    for path in files or doc_files():
        for m in BLOCK.finditer(path.read_text()):
            if m["body"] != generated(m["name"], m["body"], results):
                stale.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {m['name']}")
    return stale


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a block differs from its records")
    args = ap.parse_args(argv)
    if args.check:
        stale = stale_blocks()
        for s in stale:
            print(f"stale: {s} (run python -m benchmarks.docs_tables)")
        return 1 if stale else 0
    for path in doc_files():
        text = path.read_text()
        new = rewrite(text)
        if new != text:
            path.write_text(new)
            print(f"rewrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
