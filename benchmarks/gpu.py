"""python -m benchmarks.gpu: every GPU check and GPU figure in one run, writing results/gpu-<card>.json.

Sections, in order. Each is guarded (a failure is recorded and the rest still run), each has a time budget, and
the JSON is rewritten after each, so a run cut short still leaves its numbers:
1. tests: tests/test_fast.py and tests/test_augment.py under pytest on the GPU (CUDA graph against eager steps,
   no host sync inside an epoch, GPU against CPU accuracy, augmentation equal on both);
2. cpu_match: the CPU reference recipe (results/cpu-reference.json, from `python -m benchmarks.cpu_reference`)
   on the GPU, same seeds: the mean accuracies must agree within noise;
3. learner: the ordinary Learner path (`digitlab train --device cuda`), two epochs;
4. step_speed: one epoch of the fast path with and without the CUDA graph, in fp32 and bf16;
5. targets: for 99.0%, 99.5% and 99.7% test accuracy, candidate recipes cheapest first (by a measured epoch):
   seed 0, then seeds 1-4 when seed 0 reached the target; the first candidate where all five reach it gives the
   figure: training time from the first step to the final evaluation, after a warm-up run, mean of 5 seeds;
6. speedrun_cli (with --extra): `digitlab speedrun --target T --seeds 5 --device cuda`, a fresh process per target;
7. resnet3v7 (with --resnet): the chapter's ResNet-18 stage on the GPU over 8 seeds: as fastai builds it and
   with label smoothing, each also with TTA;
8. best: the most accurate 99.7% candidate over 5 seeds: single-model accuracy, with TTA, and the ensemble; with
   --extra also other architectures and the ensemble of all. `--probs FILE` keeps every member's test
   probabilities (torch.save), so that ensembles can be studied without a GPU;
9. ensemble_cli (with --ensemble-cli, instead of `best`): the user's command for the ensemble,
   `digitlab recipe best-ensemble --device cuda`, in a fresh process: its 15 models (5 of them the best recipe),
   each alone and together.
The default run takes under 5 minutes (about 250 s on an H100); `--extra --budget 565` about 8.5 minutes (the
longest a device call allows, with the start).

`--dry-run` runs every section on the CPU with tiny recipes and data, to check the script before a GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

from digitlab.data.mnist import Split
from digitlab.data.tasks import TaskData, load_task
from digitlab.config import TrainConfig
from digitlab.train.fast import FastTrainer
from digitlab.train.metrics import exact_accuracy

from .common import RESULTS, environment

ROOT = Path(__file__).resolve().parent.parent
TARGETS = (0.99, 0.995, 0.997)
N_SEEDS = 5


def child_env() -> dict:
    """The environment for this repo's pytest and `python -m digitlab` in child processes: the checkout's source
    first (a GPU machine has the checkout, not an installed package)."""
    paths = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]  # and any carried packages
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def fast(**fields) -> TrainConfig:
    """A config for the fast engine."""
    return TrainConfig(engine="fast", **fields)


def candidates(target: float) -> list[TrainConfig]:
    """Recipes that may reach `target`; the script tries them cheapest first (by a measured warm epoch)."""
    f = fast
    if target == 0.99:
        plain = [f(epochs=2, augment=False), f(epochs=3, augment=False), f(epochs=3, augment=False, bs=512, lr=0.4),
                 f(model="fastcnn_wide", epochs=2, augment=False)]
        return plain + [f(epochs=e, augment=False, compile=True) for e in (2, 3)]
    if target == 0.995:
        plain = [f(epochs=8), f(model="fastcnn_wide", epochs=5), f(model="fastcnn_wide", epochs=6),
                 f(model="fastcnn_wide", epochs=6, bs=512, lr=0.4)]
        # fastcnn e8 reached 99.52-99.56% on all 5 seeds uncompiled (1.35 s, run 3): compiled, about 0.8 s.
        # wide e6 compiled met the target in run 2 (min 99.50%) and missed by one seed in run 3 (99.49%): the
        # test-time shifts (5 evaluations of the test set, a few ms on a GPU) add margin at the same training cost
        compiled = [f(model="fastcnn_wide", epochs=e, compile=True, tta=t) for e in (5, 6, 7) for t in (True, False)]
        return plain + compiled + [f(epochs=e, compile=True, tta=t) for e in (7, 8) for t in (True, False)]
    plain = [f(model="fastcnn_deep", epochs=e) for e in (10, 12, 15)]
    # deep e15 compiled met it on the H100 (lowest seed 99.73%), then left seed 0 at 99.68% in the speedrun's own
    # process: the shifts at the end, or more epochs (about 0.26 s each), for margin
    compiled = [f(model="fastcnn_deep", epochs=e, compile=True, tta=t) for e in (10, 12, 15, 17) for t in (True, False)]
    return plain + compiled


def label(cfg: TrainConfig) -> str:
    aug = (cfg.aug_shift, cfg.aug_degrees, cfg.aug_scale)
    return (f"{cfg.model} e{cfg.epochs} bs{cfg.bs} lr{cfg.lr}{'' if cfg.augment else ' no-aug'} {cfg.precision}"
            f"{' compiled' if cfg.compile else ''}{'' if cfg.fused_loss else ' our-loss'}{' tta' if cfg.tta else ''}"
            + ("" if aug == (2.0, 10.0, 0.1) else " aug {}px {}deg {}".format(*aug)))


class Bench:
    def __init__(self, device: str, data: TaskData, budget: float, out: Path, dry: bool, extra: bool = False,
                 probs_out: Path | None = None):
        self.device, self.data, self.dry, self.out, self.extra = device, data, dry, out, extra
        self.probs_out, self.member_probs = probs_out, {}
        self.deadline = time.monotonic() + budget
        self.trainers: dict[tuple, FastTrainer] = {}
        self.epoch_seconds: dict[tuple, float] = {}
        self.warmup_seconds: dict[tuple, float] = {}
        self.record: dict = {"environment": environment(), "device": device_info(device), "sections": {}}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.record, indent=2, default=str))

    def keep_probs(self, name: str, probs: torch.Tensor) -> None:
        """Keep one member's test probabilities (float16: 200 KB) in `--probs` (a torch.save dict: the GPU machine
        may lack safetensors), rewritten after each member so that a run cut short keeps those already trained."""
        if self.probs_out is None:
            return
        self.member_probs[name] = probs.to(torch.float16).contiguous()
        self.probs_out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.member_probs, self.probs_out)

    def section(self, name: str, fn, budget: float) -> None:
        """Run one section with its budget (capped by what is left); record its result or its error."""
        start = time.monotonic()
        stop = min(start + budget, self.deadline)
        print(f"== {name} ({stop - start:.0f}s budget)", flush=True)
        try:
            result = fn(stop)
        except Exception as e:  # a broken section must not lose the others' numbers
            traceback.print_exc()
            result = {"error": f"{type(e).__name__}: {e}"}
        result["section_seconds"] = round(time.monotonic() - start, 2)
        self.record["sections"][name] = result
        self.save()

    # --- trainers shared by the sections: one per (model, batch, precision, graph), warmed up once ---
    def trainer(self, cfg: TrainConfig) -> FastTrainer:
        key = self.key(cfg)
        if key not in self.trainers:
            start = time.perf_counter()
            tr = FastTrainer(cfg, self.data, self.device)
            tr.run(0, epochs=1)                                 # warm-up: allocations, cuDNN choices, compile, graph
            self.warmup_seconds[key] = time.perf_counter() - start
            self.epoch_seconds[key] = tr.run(0, epochs=1).seconds  # a warm epoch (with its evaluation)
            self.trainers[key] = tr
        tr = self.trainers[key]
        tr.cfg = cfg  # epochs, lr and augmentation are read per run; the captured step does not depend on them
        return tr

    @staticmethod
    def key(cfg: TrainConfig) -> tuple:
        """What the captured step depends on: one trainer (and graph) per key."""
        return (cfg.model, cfg.bs, cfg.precision, cfg.graphs, cfg.wd, cfg.label_smoothing, cfg.compile, cfg.fused_loss)

    def estimate(self, cfg: TrainConfig) -> float:
        """Seconds for one run of `cfg` (a warm epoch times its epochs); infinite when its trainer fails to
        build (say, torch.compile is broken here), which the error list records."""
        key = self.key(cfg)
        if key not in self.epoch_seconds:
            try:
                self.trainer(cfg)
            except Exception as e:
                traceback.print_exc()
                self.epoch_seconds[key] = float("inf")
                self.record.setdefault("errors", []).append(f"{label(cfg)}: {type(e).__name__}: {e}")
        return self.epoch_seconds[key] * cfg.epochs


def device_info(device: str) -> dict:
    if not device.startswith("cuda"):
        return {"name": "cpu"}
    p = torch.cuda.get_device_properties(0)
    return {"name": p.name, "memory_gb": round(p.total_memory / 2**30, 1), "sms": p.multi_processor_count,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}


# --- sections ----------------------------------------------------------------------------------------------------
def tests_section(b: Bench, stop: float) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fast.py", "tests/test_augment.py"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                              timeout=max(stop - time.monotonic(), 5))
    except subprocess.TimeoutExpired:
        return {"error": "pytest ran out of its time budget"}
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    print("\n".join(tail), flush=True)
    return {"returncode": proc.returncode, "summary": tail[-1] if tail else "", "tail": tail}


def cpu_match_section(b: Bench, stop: float) -> dict:
    ref = json.loads((RESULTS / "cpu-reference.json").read_text())
    cfg = TrainConfig.from_dict({**ref["config"], "engine": "fast", "precision": "bf16", "graphs": None})
    tr = b.trainer(cfg)
    seeds = [r["seed"] for r in ref["runs"]]
    gpu = [tr.run(s).accuracy for s in seeds]
    cpu = [r["accuracy"] for r in ref["runs"]]
    diff = statistics.mean(gpu) - statistics.mean(cpu)
    return {"recipe": label(cfg), "seeds": seeds, "cpu_fp32": cpu, "gpu_bf16_graph": gpu, "mean_difference": diff,
            "within_noise": abs(diff) < 0.0015}


def learner_section(b: Bench, stop: float) -> dict:
    from digitlab.config import TrainConfig
    from digitlab.train.fit import fit

    epochs = 1 if b.dry else 2
    res = fit(TrainConfig(epochs=epochs, device=b.device), data=b.data)
    return {"epochs": epochs, "accuracy": res.summary["accuracy"], "train_seconds": res.summary["train_seconds"],
            "seconds_per_epoch": res.summary["train_seconds"] / epochs}


def step_speed_section(b: Bench, stop: float) -> dict:
    """A warm epoch (with its evaluation) per variant; the warm-up time says what compiling costs."""
    f = fast
    cuda = b.device.startswith("cuda")
    variants = [f(graphs=False), f(precision="fp32"), f(), f(fused_loss=False)]
    if cuda:
        variants += [f(compile=True)]
    for model in ("fastcnn_wide", "fastcnn_deep"):
        variants += [f(model=model)] + ([f(model=model, compile=True)] if cuda else [])
    rows = []
    for cfg in variants:
        if time.monotonic() > stop:
            break
        cfg = cfg.replace(epochs=1)
        if b.estimate(cfg) == float("inf"):
            continue
        tr = b.trainer(cfg)
        times = [tr.run(0).seconds for _ in range(3)]
        rows.append({"variant": label(cfg), "graph": tr.graph is not None, "epoch_seconds": statistics.median(times),
                     "steps": tr.steps_per_epoch, "warmup_seconds": b.warmup_seconds[b.key(cfg)]})
        print(rows[-1], flush=True)
    return {"rows": rows}


def profile_section(b: Bench, stop: float) -> dict:
    """Where a step's GPU time goes: eager steps of the default fast recipe under torch.profiler (in a captured
    graph the same kernels run back to back, without the launch gaps)."""
    from torch.profiler import ProfilerActivity, profile

    tr = FastTrainer(fast(graphs=False), b.data, b.device)
    tr.run(0, epochs=1)
    x, y = tr.epoch_data(0, 0)
    bs, n = tr.cfg.bs, 20

    def steps(count):
        for i in range(count):
            i %= tr.steps_per_epoch
            tr.xb.copy_(x[i * bs:(i + 1) * bs])
            tr.yb.copy_(y[i * bs:(i + 1) * bs])
            tr.step()
        tr.sync()

    steps(5)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if tr.cuda else [])
    with profile(activities=activities) as prof:
        steps(n)
    table = prof.key_averages().table(sort_by="self_cuda_time_total" if tr.cuda else "self_cpu_time_total",
                                      row_limit=25)
    kernels = [e for e in prof.events() if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    gpu_us = sum(e.device_time_total for e in kernels)
    print(table, flush=True)
    return {"steps": n, "kernels_per_step": len(kernels) / n, "gpu_us_per_step": gpu_us / n,
            "table": table.splitlines()}


def targets_section(b: Bench, stop: float) -> dict:
    out = {}
    seeds = list(range(N_SEEDS))
    shares = {0.99: 0.2, 0.995: 0.3, 0.997: 0.5}  # of the section's budget: the higher targets need longer runs
    for target in TARGETS:
        target_stop = min(time.monotonic() + shares[target] * (stop - time.monotonic()) / sum(
            shares[t] for t in TARGETS if t >= target), stop)
        tried = []
        order = [c for c in sorted(candidates(target), key=b.estimate) if b.estimate(c) < float("inf")]
        best = None
        for cfg in order:
            if time.monotonic() + b.estimate(cfg) * (1 + N_SEEDS) > target_stop and tried:
                tried.append({"recipe": label(cfg), "skipped": "not enough time left"})
                continue
            tr = b.trainer(cfg)
            runs = [tr.run(0)]
            if runs[0].accuracy >= target:
                runs += [tr.run(s) for s in seeds[1:]]
            row = {"recipe": label(cfg), "config": cfg.to_dict(),
                   "runs": [{"seed": r.seed, "accuracy": r.accuracy, "seconds": r.seconds} for r in runs],
                   "all_reached": len(runs) == N_SEEDS and all(r.accuracy >= target for r in runs),
                   "mean_seconds": statistics.mean(r.seconds for r in runs),
                   "mean_accuracy": statistics.mean(r.accuracy for r in runs)}
            tried.append(row)
            print(target, row["recipe"], [round(r.accuracy, 4) for r in runs], f"{row['mean_seconds']:.3f}s", flush=True)
            if row["all_reached"]:
                best = row
                break
        out[str(target)] = {"figure": best, "tried": tried}
        b.save()
    return out


def best_section(b: Bench, stop: float) -> dict:
    """The most accurate recipe (fastcnn_deep, 30 epochs): five seeds, each alone, with TTA, and all five together
    (the ensemble). With --extra, time permitting, five models of each of `extra_members`, and the ensemble of all
    (`digitlab recipe best-ensemble`): models of different kinds make fewer of the same mistakes than seeds of one
    (five deep ones reach 99.76-99.78%; the 15 of three kinds reached 99.81% on an H200)."""
    compiled = b.record["sections"].get("step_speed", {}).get("rows", [])
    use_compile = any(r["variant"].endswith("compiled") for r in compiled)
    epochs = 1 if b.dry else 30
    labels = b.data.final.labels  # the split final_probs scores: the test split (valid in a dry run)
    cfg = fast(model="fastcnn_deep", epochs=epochs, compile=use_compile)
    singles, probs, probs_tta = train_members(b, cfg, stop)
    out = {"recipe": label(cfg), "config": cfg.to_dict(), "singles": singles,
           "mean_single": statistics.mean(s["accuracy"] for s in singles),
           "mean_single_tta": statistics.mean(s["tta_accuracy"] for s in singles),
           "ensemble": acc(sum(probs), labels), "ensemble_tta": acc(sum(probs_tta), labels), "n_models": len(singles)}
    members = {"fastcnn_deep": (probs, probs_tta)}
    others = {}
    for other in extra_members(epochs, use_compile) if b.extra else ():
        model = label(other)
        if stop - time.monotonic() < (5 if b.dry else 45):  # a compile alone takes 10-25 s
            others[model] = {"skipped": "not enough time left"}
            continue
        try:
            o_singles, o_probs, o_probs_tta = train_members(b, other, stop)
        except Exception as e:  # keep the figures already made
            traceback.print_exc()
            others[model] = {"error": f"{type(e).__name__}: {e}"}
            continue
        members[model] = (o_probs, o_probs_tta)
        others[model] = {"recipe": label(other), "singles": o_singles,
                         "mean_single": statistics.mean(s["accuracy"] for s in o_singles),
                         "ensemble": acc(sum(o_probs), labels), "ensemble_tta": acc(sum(o_probs_tta), labels)}
    out["others"] = others
    if len(members) > 1:  # the mixed ensemble: every model trained, each with one vote of equal weight
        every = [p for ps, _ in members.values() for p in ps]
        every_tta = [p for _, ps in members.values() for p in ps]
        out["mixed"] = {"models": {m: len(ps) for m, (ps, _) in members.items()}, "n_models": len(every),
                        "ensemble": acc(sum(every), labels), "ensemble_tta": acc(sum(every_tta), labels)}
    return out


def speedrun_cli_section(b: Bench, stop: float) -> dict:
    """The user's command, `digitlab speedrun --target T --seeds 5 --device cuda`, one fresh process per target
    (its own compile and warm-up run): the figure the issue asks for, on the path a user takes. On the H100 this
    is where a slow start (pinned memory, since fixed) and a seed short of 99.7% showed up that the in-process
    search above had not seen."""
    out = {}
    for target in TARGETS[:1] if b.dry else TARGETS:  # a dry run checks the plumbing: one target, one seed
        left = stop - time.monotonic()
        if left < 30:
            out[str(target)] = {"skipped": "not enough time left"}
            continue
        cmd = [sys.executable, "-m", "digitlab", "speedrun", "--target", str(target), "--seeds",
               str(1 if b.dry else N_SEEDS), "--device", b.device, "--json"]
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            out[str(target)] = {"error": "ran out of the section's time"}
            continue
        try:
            res = json.loads(proc.stdout)
        except json.JSONDecodeError:
            out[str(target)] = {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
            continue
        out[str(target)] = {k: res[k] for k in ("all_reached", "mean_seconds", "min_seconds", "mean_accuracy", "runs")}
        print("speedrun", target, res["all_reached"], round(res["mean_seconds"], 3),
              [round(r["accuracy"], 4) for r in res["runs"]], [round(r["seconds"], 3) for r in res["runs"]], flush=True)
        b.save()
    return out


def ensemble_cli_section(b: Bench, stop: float) -> dict:
    """`digitlab recipe best-ensemble --device cuda` in a fresh process, as a user runs it (a dry run: one epoch and
    one seed of each member). Its lines (each model's accuracy and the ensemble's so far) go to this script's output
    as they come, so a run cut short still shows how far it got; the summary is read from its ensemble.json."""
    import tempfile
    import threading

    with tempfile.TemporaryDirectory() as runs:
        cmd = [sys.executable, "-m", "digitlab", "recipe", "best-ensemble", "--device", b.device, "--runs", runs]
        cmd += ["--epochs", "1", "--seeds", "1"] if b.dry else []
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        watchdog = threading.Timer(max(stop - time.monotonic(), 1), proc.kill)
        watchdog.start()
        lines = []
        for line in proc.stdout:
            print("  best-ensemble:", line.rstrip(), flush=True)
            lines.append(line.rstrip())
        proc.wait()
        watchdog.cancel()
        found = sorted(Path(runs).glob("*/ensemble.json"))
        if proc.returncode != 0 or not found:
            return {"error": f"exit {proc.returncode} (killed at the section's end if negative)", "lines": lines[-20:]}
        res = json.loads(found[0].read_text())
    members = [{k: m[k] for k in ("recipe", "seed", "accuracy", "train_seconds")} for m in res["members"]]
    return {"accuracy": res["accuracy"], "errors": res["errors"], "n_models": res["n_models"],
            "train_seconds": res["train_seconds"], "members": members}


def extra_members(epochs: int, use_compile: bool) -> list[TrainConfig]:
    """Ensemble members unlike fastcnn_deep's five seeds: the recipes best-m5 and best-strong (at full length; a dry
    run shortens them in proportion). On the H100, five fastcnn_wide and five fastcnn models of 30 epochs (99.66% /
    99.63% alone) had brought the ensemble from 99.78% to 99.75-99.77%: too alike and too weak. An et al. 2020's M5,
    which never pools, trained twice as long with stronger shifts and rotations, and fastcnn_deep under that
    augmentation for longer, made mistakes different enough: 99.81% for the 15 on an H200."""
    from digitlab.recipes import RECIPES

    scale = epochs / 30
    members = [RECIPES[name].train_config() for name in ("best-m5", "best-strong")]
    return [TrainConfig(**{**m.to_dict(), "compile": use_compile, "epochs": max(1, round(m.epochs * scale))})
            for m in members]


def resnet3v7_section(b: Bench, stop: float) -> dict:
    """The chapter's last stage (resnet18, fit_one_cycle(1, 0.1), 3 vs 7) on the GPU over several seeds: as fastai
    builds it and with label smoothing 0.1, each also scored with the test-time shifts. On 2 CPU cores a run takes
    12-15 s; here seeds are cheap, so each variant's mean accuracy is measured rather than guessed from three."""
    from digitlab.chapter.resnet_stage import stage_resnet18
    from digitlab.chapter.stages import ChapterData
    from digitlab.data.tasks import to_classes
    from digitlab.inference import class_probs

    from .resnet import VARIANTS

    data = ChapterData.load()
    valid = to_classes(data.valid, (3, 7))
    seeds = [42] if b.dry else [42, 0, 1, 2, 3, 4, 5, 6]
    stage_resnet18(data, seed=0, device=b.device)  # warm-up: cuDNN's algorithm choices, allocations
    variants = {}
    for name in ("fastai", "label-smoothing"):
        variant = VARIANTS[name]
        accs, tta, epochs = [], [], []
        for seed in seeds:
            if accs and time.monotonic() > stop - 5:
                break
            res = stage_resnet18(data, seed=seed, device=b.device, **variant)
            accs.append(res.accuracy)
            tta.append(acc(class_probs(res.extras["model"], valid.images, tta=True), valid.labels))
            epochs.append(res.extras["ce_recorder"].logs[-1]["time"])
        variants[name] = {"seeds": seeds[:len(accs)], "accuracies": accs, "mean_accuracy": statistics.mean(accs),
                          "tta_accuracies": tta, "mean_tta_accuracy": statistics.mean(tta),
                          "median_epoch_seconds": statistics.median(epochs)}
        print(name, variants[name], flush=True)
    return {"variants": variants, "book_accuracy": 0.9971}


def train_members(b: Bench, cfg: TrainConfig, stop: float) -> tuple[list[dict], list, list]:
    """Up to N_SEEDS models of `cfg` while time is left: each one's accuracy alone and with TTA, and its test
    probabilities without and with TTA (for the ensembles)."""
    tr = b.trainer(cfg)
    labels = b.data.final.labels  # the split final_probs scores: the test split (valid in a dry run)
    singles, probs, probs_tta = [], [], []
    for seed in range(N_SEEDS):
        if singles and time.monotonic() + b.estimate(cfg) > stop:
            break
        r = tr.run(seed)
        p, pt = tr.final_probs(False), tr.final_probs(True)
        probs.append(p), probs_tta.append(pt)
        b.keep_probs(f"{label(cfg)} seed{seed}", p), b.keep_probs(f"{label(cfg)} seed{seed} tta", pt)
        singles.append({"seed": seed, "accuracy": r.accuracy, "tta_accuracy": acc(pt, labels), "seconds": r.seconds})
        print(cfg.model, singles[-1], flush=True)
    return singles, probs, probs_tta


def acc(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return exact_accuracy(probs.argmax(1), labels)


def summary(record: dict) -> str:
    s = record["sections"]
    lines = [f"device: {record['device'].get('name')}"]
    t = s.get("tests", {})
    lines.append(f"tests: {t.get('summary', t.get('error'))}")
    c = s.get("cpu_match", {})
    if "mean_difference" in c:
        lines.append(f"GPU vs CPU accuracy ({c['recipe']}): {c['mean_difference'] * 100:+.2f} points, "
                     f"within noise: {c['within_noise']}")
    ln = s.get("learner", {})
    if "accuracy" in ln:
        lines.append(f"Learner path on {record['device'].get('name')}: {ln['accuracy']:.4f}, {ln['seconds_per_epoch']:.2f}s/epoch")
    prof = s.get("profile", {})
    if "kernels_per_step" in prof:
        lines.append(f"profile: {prof['kernels_per_step']:.0f} kernels and {prof['gpu_us_per_step']:.0f} us of GPU time per step")
    for row in s.get("step_speed", {}).get("rows", []):
        lines.append(f"epoch {row['variant']:48s} graph={row['graph']!s:5s} {row['epoch_seconds']:.3f}s "
                     f"(warm-up {row['warmup_seconds']:.1f}s)")
    for target, res in s.get("targets", {}).items():
        if not isinstance(res, dict):
            continue
        fig = res.get("figure")
        lines.append(f"target {target}: " + (f"{fig['recipe']}: mean {fig['mean_seconds']:.3f}s over 5 seeds, "
                                             f"accuracies {[round(r['accuracy'], 4) for r in fig['runs']]}"
                                             if fig else "no candidate reached it with every seed"))
    bst = s.get("best", {})
    if "ensemble" in bst:
        lines.append(f"best ({bst['recipe']}): single {bst['mean_single']:.4f}, with TTA {bst['mean_single_tta']:.4f}, "
                     f"ensemble of {bst['n_models']} {bst['ensemble']:.4f}, with TTA {bst['ensemble_tta']:.4f}")
        for model, o in bst.get("others", {}).items():
            if "ensemble" in o:
                lines.append(f"  {o['recipe']}: single {o['mean_single']:.4f}, ensemble of {len(o['singles'])} "
                             f"{o['ensemble']:.4f}, with TTA {o['ensemble_tta']:.4f}")
        mix = bst.get("mixed", {})
        if "ensemble" in mix:
            lines.append(f"mixed ensemble of {mix['n_models']} {mix['models']}: {mix['ensemble']:.4f}, with TTA "
                         f"{mix['ensemble_tta']:.4f}")
    for target, res in s.get("speedrun_cli", {}).items():
        if isinstance(res, dict) and "all_reached" in res:
            lines.append(f"digitlab speedrun --target {target}: mean {res['mean_seconds']:.3f}s, every seed reached: "
                         f"{res['all_reached']}, accuracies {[round(r['accuracy'], 4) for r in res['runs']]}")
    ens = s.get("ensemble_cli", {})
    if "accuracy" in ens:
        lines.append(f"digitlab recipe best-ensemble: {ens['accuracy']:.4f} ({ens['errors']} errors) from "
                     f"{ens['n_models']} models, {ens['train_seconds']:.0f}s of training")
    rn = s.get("resnet3v7", {})
    for name, v in rn.get("variants", {}).items():
        lines.append(f"resnet18 3v7 {name}: accuracies {v['accuracies']}, mean {v['mean_accuracy']:.4f}, with TTA "
                     f"{v['mean_tta_accuracy']:.4f}, median epoch {v['median_epoch_seconds']:.2f}s")
    for name, sec in s.items():
        if isinstance(sec, dict) and "error" in sec:
            lines.append(f"{name}: ERROR {sec['error']}")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=285.0, help="seconds for the whole run (the issue's bar: the "
                    "script checks and times every GPU figure in under 5 minutes)")
    ap.add_argument("--extra", action="store_true", help="also the speedrun command in fresh processes and the "
                    "mixed ensemble (about 4.5 minutes more; run with --budget 565)")
    ap.add_argument("--ensemble-cli", action="store_true", help="run `digitlab recipe best-ensemble` in a fresh "
                    "process instead of the best section (about 4 minutes on an H200)")
    ap.add_argument("--resnet", action="store_true", help="also the ResNet-18 3v7 stage over 8 seeds (75 s)")
    ap.add_argument("--probs", type=Path, default=None, help="keep every ensemble member's test probabilities "
                    "in this file (torch.save)")
    ap.add_argument("--dry-run", action="store_true", help="tiny recipes on the CPU: check the script itself")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    data = load_task("digits")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.dry_run:
        global N_SEEDS, candidates
        device, N_SEEDS = "cpu", 2
        data = TaskData(Split(data.train.images[:3000], data.train.labels[:3000]),
                        Split(data.valid.images[:1000], data.valid.labels[:1000]), data.classes)
        full = candidates
        candidates = lambda target: [c.replace(epochs=1) for c in full(target)[:2]]  # noqa: E731
    name = device_info(device)["name"].lower().replace(" ", "-")
    out = args.out or RESULTS / f"gpu-{name}.json"
    b = Bench(device, data, args.budget, out, args.dry_run, args.extra, args.probs)
    if not args.dry_run:
        b.section("tests", lambda stop: tests_section(b, stop), 90)
    b.section("profile", lambda stop: profile_section(b, stop), 20)
    b.section("cpu_match", lambda stop: cpu_match_section(b, stop), 20)
    b.section("learner", lambda stop: learner_section(b, stop), 20)
    b.section("step_speed", lambda stop: step_speed_section(b, stop), 100)
    b.section("targets", lambda stop: targets_section(b, stop), 150)
    if args.extra:
        b.section("speedrun_cli", lambda stop: speedrun_cli_section(b, stop), 150)
    if args.resnet:
        b.section("resnet3v7", lambda stop: resnet3v7_section(b, stop), 75)
    if args.ensemble_cli:
        b.section("ensemble_cli", lambda stop: ensemble_cli_section(b, stop), b.left())
    else:
        b.section("best", lambda stop: best_section(b, stop), b.left())
    text = summary(b.record)
    b.record["summary"] = text.splitlines()
    b.save()
    print(f"\nwritten {out}\n{text}")


if __name__ == "__main__":
    main()
