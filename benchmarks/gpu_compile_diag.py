"""python benchmarks/gpu_compile_diag.py (on a GPU machine): does the fast engine's compiled step capture as a
CUDA graph, and if not, where does it break? Each variant in its own process (a failed capture can leave the
CUDA context unusable): the code as it is, with TORCH_LOGS of recompiles and graph breaks; without the model's
Normalize layer; with only the forward compiled. It stops at the first variant that trains. Written for the
eighth session's regression (benchmarks/NOTES.md): the first variant passed once the SGD step read plain lists."""
import os, subprocess, sys, time
VARIANT = os.environ.get("DIAG_VARIANT")
if VARIANT:
    import torch
    from torch import nn
    from digitlab.config import TrainConfig
    from digitlab.data.mnist import Split
    from digitlab.data.tasks import TaskData, load_task
    from digitlab.models.layers import Normalize
    import digitlab.train.fast as fast
    d = load_task("digits", None, 5000)
    data = TaskData(Split(d.train.images[:2048], d.train.labels[:2048]), d.valid, d.classes,
                    test=Split(d.test.images[:1000], d.test.labels[:1000]))
    if VARIANT == "no_normalize":
        orig = fast.set_normalization
        def strip(model, mean, std):
            for i, m in enumerate(model):
                if isinstance(m, Normalize):
                    model[i] = nn.Identity()
            return model
        fast.set_normalization = strip
    tr = fast.FastTrainer(TrainConfig(engine="fast", epochs=1, compile=True), data, "cuda")
    if VARIANT == "forward_only":
        tr.update = tr.opt.foreach_step
    t = time.time(); r = tr.run(1)
    print(f"VARIANT {VARIANT}: OK accuracy {r.accuracy:.4f} in {time.time() - t:.1f}s", flush=True)
    sys.exit(0)
for v in ("current", "no_normalize", "forward_only"):
    env = {**os.environ, "DIAG_VARIANT": v, "TORCH_LOGS": "recompiles,graph_breaks" if v == "current" else ""}
    p = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=90)
    out = (p.stdout + p.stderr).strip().splitlines()
    print(f"--- {v}: rc {p.returncode}"); print("\n".join(out[-25:]), flush=True)
    if p.returncode == 0:
        break
