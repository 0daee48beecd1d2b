"""Each stage of the chapter clears the book's figure minus half a point, averaged over 3 seeds."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import HANG_S

from digitlab.chapter.by_hand import calc_grad, validate_epoch
from digitlab.chapter.calculus import RollerCoaster, gradient_at
from digitlab.chapter.reproduce import EXTRA_STAGES, STAGES, fork_stage, join_stage, run_stages, table_rows
from digitlab.chapter.stages import ChapterData
from digitlab.errors import ConfigError
from digitlab.models import Linear1, SimpleNetByHand, simple_net
from digitlab.viz.plotter import Plotter


@pytest.fixture(scope="module")
def data():
    return ChapterData.load()


@pytest.fixture(scope="module")
def three_seeds(data):
    return {seed: run_stages(seed=seed, data=data) for seed in (0, 1, 2)}


@pytest.mark.slow
def test_stages_clear_the_books_figures_over_three_seeds(three_seeds):
    per_stage = {}
    for results in three_seeds.values():
        for r in results:
            per_stage.setdefault(r.stage, []).append(r)
    assert len(per_stage) == 6
    for stage, rs in per_stage.items():
        mean = sum(r.accuracy for r in rs) / len(rs)
        assert mean >= rs[0].book - 0.005, f"{stage}: {mean:.4f} < book {rs[0].book} - 0.005"


def test_pixel_similarity_is_the_books_figure_exactly(three_seeds):
    pix = three_seeds[0][0]
    assert pix.stage == "pixel similarity (L1)"
    assert round(pix.extras["l1"]["acc_3"], 4) == 0.9168 and round(pix.extras["l1"]["acc_7"], 4) == 0.9854
    assert round(pix.accuracy, 4) == 0.9511
    assert 0.9 < pix.extras["rmse"]["accuracy"] < 1


def test_same_seed_same_table_in_one_process_or_two(data, three_seeds):
    threads = torch.get_num_threads()
    again = run_stages(["linear_by_hand", "simple_net"], seed=0, data=data, processes=2)  # as the CLI runs them
    assert torch.get_num_threads() == threads
    first = {r.stage: r for r in three_seeds[0]}
    for r in again:
        assert r.history == first[r.stage].history
    rec, first_rec = again[1].extras["recorder"], first["simple net, Learner.fit"].extras["recorder"]
    assert rec.logs[-1]["batch_accuracy"] == first_rec.logs[-1]["batch_accuracy"]  # the recorder came back whole
    # one thread per process there, two here: sums may round differently in the last bit, the table does not
    assert len(rec.losses) == 40 * 49 and np.allclose(rec.losses, first_rec.losses, rtol=1e-4)
    assert torch.allclose(again[1].extras["model"][0].weight, first["simple net, Learner.fit"].extras["model"][0].weight,
                          atol=1e-4)


def test_a_forked_stage_raises_its_error_here(data):
    def broken(data, seed):
        raise ConfigError("no such stage setting")

    with pytest.raises(ConfigError, match="no such stage setting"):
        join_stage(*fork_stage(broken, data, 0))


def test_plotter_draws_from_numpy_in_child_processes_or_in_this_one(tmp_path):
    for fork in (True, False):
        with Plotter(fork=fork) as plotter:
            plotter.plot(tmp_path / f"img{fork}.png", "images_figure", images=[np.eye(28)], titles=["eye"])
            plotter.plot(tmp_path / f"hist{fork}.png", "histories_figure", histories={"a": [0.5, 0.9]}, book={"a": 0.8})
            paths = plotter.close()
        assert [p.name for p in paths] == [f"img{fork}.png", f"hist{fork}.png"]
        assert all(p.stat().st_size > 1000 for p in paths)
    plotter = Plotter()
    plotter.plot(tmp_path / "bad.png", "images_figure", images=[np.eye(28)], titles=["a", "b"], nope=1)
    with pytest.raises(RuntimeError, match="bad.png: TypeError"):
        plotter.close()


PLOTTER_PROCESSES = """
import ctypes, os, sys, time
import numpy as np
from digitlab.viz.plotter import Plotter
ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: orphaned workers become our children, so we can see them
def children():
    me = str(os.getpid())
    ppid = lambda p: open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1]  # after the name, state, ppid
    return [p for p in os.listdir("/proc") if p.isdigit() and ppid(p) == me]
out = sys.argv[1]
with Plotter(workers=3) as plotter:
    assert len(children()) == 1, children()  # one worker forked here; it forks the other two
    for i in range(4):
        plotter.plot(f"{out}/f{i}.png", "images_figure", images=[np.eye(28)], titles=[str(i)])
    paths = plotter.close()
assert all(os.path.getsize(p) > 1000 for p in paths), paths
assert children() == [], children()  # every worker ended and was reaped
plotter = Plotter(workers=3)
time.sleep(1)  # the workers are up
plotter.__exit__(RuntimeError, None, None)  # the caller failed: stop them without waiting for figures
deadline = time.time() + 10
while children() and time.time() < deadline:
    os.waitpid(-1, os.WNOHANG)
    time.sleep(0.05)
assert children() == [], children()
print("ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and uses prctl")
def test_plotter_workers_share_one_start_and_none_is_left_behind(tmp_path):
    proc = subprocess.run([sys.executable, "-c", PLOTTER_PROCESSES, str(tmp_path)], capture_output=True, text=True,
                          timeout=HANG_S)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0.png", "f1.png", "f2.png", "f3.png"]


def test_a_plotter_worker_that_dies_is_reported_not_a_broken_pipe(tmp_path):
    plotter = Plotter(workers=2)
    os.kill(plotter.pid, signal.SIGKILL)  # the first worker, as if killed by the out-of-memory killer
    os.waitpid(plotter.pid, 0)
    for i in range(4):  # half of these go to the dead worker
        plotter.plot(tmp_path / f"f{i}.png", "images_figure", images=[np.eye(28)], titles=[str(i)])
    with pytest.raises(RuntimeError, match="a plotter process ended before saving its figures"):
        plotter.close()


def test_the_plotter_and_figures_import_without_torch():
    code = "import sys, digitlab.viz, digitlab.viz.plotter; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_calc_grad_fills_gradients_and_validate_counts_every_image(data):
    torch.manual_seed(0)
    model = Linear1()
    calc_grad(data.train_x[:4], data.train_y[:4], model)
    assert model.weights.grad.shape == (784, 1) and model.bias.grad.abs().sum() > 0
    dls = data.dls(seed=0)
    with torch.no_grad():
        expected = ((model(data.valid_x) > 0).float() == data.valid_y).float().mean().item()
    assert validate_epoch(model, dls.valid) == round(expected, 4)


def test_simple_net_by_hand_is_the_same_function_as_the_sequential():
    torch.manual_seed(0)
    by_hand, seq = SimpleNetByHand(), simple_net()
    with torch.no_grad():
        seq[0].weight.copy_(by_hand.w1.T), seq[0].bias.copy_(by_hand.b1)
        seq[2].weight.copy_(by_hand.w2.T), seq[2].bias.copy_(by_hand.b2)
    x = torch.rand(5, 784)
    assert torch.allclose(by_hand(x), seq(x), atol=1e-4)


def test_simple_net_by_hand_trains(data):
    r = EXTRA_STAGES["simple_net_by_hand"](data, seed=0, epochs=5)
    assert r.accuracy > 0.9 and len(r.history) == 5


def test_gradient_of_x_squared_at_3_is_6():
    assert gradient_at(3.0) == (9.0, 6.0)
    assert gradient_at(-1.5)[1] == -3.0


def test_roller_coaster_loss_falls():
    rc = RollerCoaster(seed=42)
    losses, preds = rc.fit(20)
    assert len(losses) == 20 and len(preds) == 20
    assert losses[-1] < losses[0]
    assert all(b <= a for a, b in zip(losses, losses[1:]))


def test_table_rows(three_seeds):
    rows = table_rows(three_seeds[0])
    assert [r["stage"] for r in rows][0] == "pixel similarity (L1)"
    assert all(set(r) == {"stage", "accuracy", "book", "epochs", "seconds"} for r in rows)
    assert rows[-1]["epochs"] == 40 and rows[-1]["book"] == 0.9828
