"""digitlab: MNIST from scratch on PyTorch tensors and autograd, the way fastbook chapter 4 builds it.

The public API for notebooks and scripts, all importable from here:

    from digitlab import ChapterData, simple_net, Learner, Recorder, mnist_loss, batch_accuracy
    data = ChapterData.load()                      # the book's 3s and 7s
    learn = Learner(simple_net(), data.dls(seed=42), mnist_loss, metrics=[batch_accuracy], cbs=[Recorder()])
    learn.fit(40, 0.1)

Names are loaded on first use, so `import digitlab` (and the `digitlab` command) starts fast.
`help(digitlab.Learner)` shows each one's docstring.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

# public name -> module it lives in (relative to digitlab)
_EXPORTS = {
    # data
    "load_mnist": "data", "load_split": "data", "mnist_sample": "data", "Split": "data", "DataLoader": "data",
    "DataLoaders": "data", "load_folder": "data", "export_split": "data", "load_task": "data.tasks",
    "TASKS": "data.tasks", "to_input": "data.tasks", "ChapterData": "chapter.stages",
    # models
    "simple_net": "models", "linear_model": "models", "init_params": "models", "Linear1": "models",
    "SimpleNetByHand": "models", "cnn": "models", "build_model": "models", "MODELS": "models",
    "n_params": "models",
    # training
    "Learner": "train.learner", "Callback": "train.callback", "CancelFitException": "train.callback",
    "CancelEpochException": "train.callback", "CancelBatchException": "train.callback",
    "Recorder": "train.callbacks", "PrintEpochs": "train.callbacks", "NanGuard": "train.callbacks",
    "ProgressCallback": "train.progress", "OneCycle": "train.schedule", "one_cycle": "train.schedule",
    "SGD": "train.optim", "BasicOptim": "train.optim", "Adam": "train.optim",
    "mnist_loss": "train.losses", "cross_entropy": "train.losses", "softmax": "train.losses",
    "batch_accuracy": "train.metrics", "accuracy": "train.metrics", "error_rate": "train.metrics",
    "TrainConfig": "config", "fit": "train.fit", "TrainResult": "train.result", "class_probs": "inference",
    # runs, predictions, interpretation, export
    "record_run": "runs", "list_runs": "runs", "new_run_dir": "runs", "write_report": "report",
    "Classifier": "predict", "prepare_image": "data.images", "uci_digits": "data.uci",
    "Interpretation": "interpret", "confusion_matrix": "interpret", "show_batch": "interpret",
    "export_model": "export", "save_model": "weights", "load_model": "weights",
    # plots
    "show_image": "viz", "images_figure": "viz", "image_grid_figure": "viz", "plot_function": "viz",
    "curves_figure": "viz", "confusion_figure": "viz", "weights_figure": "viz", "grey_table": "viz",
    "grey_table_figure": "viz", "save": "viz",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # cached: the next access is a plain attribute
        return value
    raise AttributeError(f"module 'digitlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
