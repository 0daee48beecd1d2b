"""The one precision policy (digitlab.hardware): `auto` resolved from what a device does natively, an explicit
precision winning, the fp16 loss scaler against PyTorch's GradScaler, and the choice recorded by a real run and
reported by `digitlab info`, also in a process that PyTorch and oneDNN are told to run as on an AVX2-only CPU."""

from __future__ import annotations

import json

import pytest
import torch

from test_cli import digitlab

from digitlab.config import TrainConfig
from digitlab.data.tasks import load_task
from digitlab.errors import ConfigError
from digitlab.hardware import (auto_precision, cpu_bf16_rule, cuda_precision_rule, describe_machine, machine_class,
                               resolve_precision)
from digitlab.train.fast import FastTrainer
from digitlab.train.loss_scale import LossScaler
from digitlab.weights import read_weights

# what PyTorch and oneDNN honour to dispatch as on a CPU without AVX-512 and bf16 units (benchmarks/precision.py)
AS_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


@pytest.mark.parametrize("capability, amx, avx512_bf16, isa, native", [
    ("AVX2", False, False, "", False),            # an AVX2-only EPYC or a laptop: bf16 emulated, 10-14x slower
    ("AVX512", False, False, "", False),          # AVX-512 without BF16 (Skylake, Zen 3 server parts)
    ("AVX512", False, True, "", True),            # AVX-512 BF16 (Zen 4 EPYC, Cooper Lake)
    ("AVX512", True, True, "", True),             # AMX (Sapphire Rapids Xeon)
    ("AVX2", True, True, "", False),              # an AMX machine told ATEN_CPU_CAPABILITY=avx2
    ("AVX512", True, True, "AVX2", False),        # ... or ONEDNN_MAX_CPU_ISA=AVX2
    ("AVX512", True, True, "AVX512_CORE_AMX", True),
])
def test_the_cpu_rule_picks_bf16_only_with_native_units_and_kernels(capability, amx, avx512_bf16, isa, native):
    chosen, why = cpu_bf16_rule(capability, amx, avx512_bf16, isa)
    assert chosen is native and why


@pytest.mark.parametrize("cc, name", [((9, 0), "bf16"), ((8, 0), "bf16"), ((8, 6), "bf16"), ((7, 5), "fp16"),
                                      ((7, 0), "fp16"), ((6, 0), "fp32"), ((6, 1), "fp32")])
def test_the_cuda_rule_follows_the_tensor_cores(cc, name):
    """H100/A100/RTX 30xx: bf16; T4 (7.5) and V100 (7.0): fp16 with a scaler; P100 (6.0): fp32."""
    assert cuda_precision_rule(*cc)[0] == name


def test_auto_on_this_cpu_is_what_its_units_say_and_an_explicit_precision_wins():
    native, _ = describe_machine("cpu")["cpu_native_bf16"], None
    assert auto_precision("cpu").name == ("bf16" if native else "fp32")
    assert resolve_precision("auto", "cpu") == auto_precision("cpu")
    for name in ("bf16", "fp16", "fp32"):
        assert resolve_precision(name, "cpu").name == name
    with pytest.raises(ConfigError, match="precision must be one of auto, bf16, fp16, fp32"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(ConfigError, match="precision must be one of"):
        TrainConfig(precision="half")


def test_the_fast_engine_trains_in_the_resolved_precision(mnist):
    data = load_task("digits", valid_size=0)
    assert FastTrainer(TrainConfig(engine="fast"), data).precision == auto_precision("cpu")
    assert FastTrainer(TrainConfig(engine="fast", precision="fp32"), data).precision.name == "fp32"
    fp16 = FastTrainer(TrainConfig(engine="fast", precision="fp16"), data)
    assert fp16.scaler is not None and not fp16.use_graph  # the scaler skips steps on the host


def test_the_loss_scaler_follows_torch_grad_scaler_step_for_step():
    """Same scale after every step, same steps skipped, same weights: finite steps, an overflow, then growth."""
    torch.manual_seed(0)
    ours_w, theirs_w = torch.randn(5, requires_grad=True), None
    theirs_w = ours_w.detach().clone().requires_grad_(True)
    ours, theirs = LossScaler(init_scale=1024.0, growth_interval=3), torch.amp.GradScaler("cpu", init_scale=1024.0,
                                                                                          growth_interval=3)
    opt_ours, opt_theirs = torch.optim.SGD([ours_w], lr=0.1), torch.optim.SGD([theirs_w], lr=0.1)
    course = []
    for step in range(10):
        overflow = step in (2, 6)
        for w, scale_loss in ((ours_w, ours.scaled), (theirs_w, theirs.scale)):
            loss = (w * w).sum() * (float("inf") if overflow else 1.0)
            scale_loss(loss).backward()
        if ours.unscale([ours_w]):
            opt_ours.step()
        theirs.step(opt_theirs)
        theirs.update()
        opt_ours.zero_grad(), opt_theirs.zero_grad()
        assert ours.scale == theirs.get_scale(), step
        assert torch.equal(ours_w, theirs_w), step
        course.append(ours.scale)
    # halved at each overflow, doubled after 3 good steps in a row
    assert course == [1024, 1024, 512, 512, 512, 1024, 512, 512, 512, 1024] and ours.skipped == 2


def test_fp16_training_with_the_scaler_learns_on_the_cpu(tmp_path):
    """The fp16 path end to end on the Learner engine (CPU autocast has fp16 kernels): it trains, and the run says
    it ran in fp16."""
    proc = digitlab("train", "--task", "3v7", "--model", "linear", "--epochs", "1", "--engine", "learner",
                    "--precision", "fp16", "--runs", tmp_path, "--name", "half", "--json", cwd=tmp_path)
    s = json.loads(proc.stdout)
    assert s["precision"] == "fp16" and s["precision_reason"] == "asked for" and s["accuracy"] > 0.95


@pytest.mark.slow
def test_a_run_records_precision_and_machine_in_summary_and_model_file(tmp_path):
    """In a process dispatching as on an AVX2-only CPU, `auto` trains in fp32, and the summary, the model file's
    metadata and `digitlab info` all say so, with the capability."""
    env = {**AS_AVX2}
    proc = digitlab("info", "--json", tmp_path=tmp_path, env=env)
    info = json.loads(proc.stdout)
    assert info["cpu_capability"] == "AVX2" and info["precision"] == "fp32" and "emulated" in info["precision_reason"]
    assert info["machine_class"] == "AVX2 CPU" and info["data_sets"][0]["data_set"] == "MNIST"
    digitlab("train", "--task", "3v7", "--model", "linear", "--epochs", "1", "-q", "--runs", tmp_path,
             "--name", "avx2", cwd=tmp_path, env=env)
    summary = json.loads((tmp_path / "avx2" / "summary.json").read_text())
    assert summary["precision"] == "fp32" and summary["machine"]["cpu_capability"] == "AVX2"
    meta = read_weights(tmp_path / "avx2" / "model.safetensors")[1]
    assert meta["precision"] == "fp32" and meta["machine"]["cpu_capability"] == "AVX2"
    assert json.loads((tmp_path / "avx2" / "config.json").read_text())["config"]["precision"] == "auto"


def test_info_in_this_process_names_the_capability_and_the_choice():
    proc = digitlab("info")
    facts = describe_machine("cpu")
    assert facts["cpu_capability"] in proc.stdout and facts["precision_reason"] in proc.stdout
    assert machine_class(facts) in proc.stdout


@pytest.mark.slow
def test_plain_train_on_a_cpu_without_bf16_takes_the_recipes_fp32_epochs(tmp_path):
    """MNIST's recipe is 20 epochs where the CPU trains in bf16 and 12 where it trains in fp32 (the same time
    budget: data.catalogue); a flag still wins."""
    avx2 = digitlab("train", "--print-config", tmp_path=tmp_path, env=AS_AVX2).stdout
    assert "epochs = 12" in avx2 and 'precision = "auto"' in avx2
    asked = digitlab("train", "--print-config", "--epochs", "7", tmp_path=tmp_path, env=AS_AVX2).stdout
    assert "epochs = 7" in asked
    here = digitlab("train", "--print-config", tmp_path=tmp_path).stdout
    assert f"epochs = {20 if auto_precision('cpu').name == 'bf16' else 12}" in here
