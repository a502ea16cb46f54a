"""The ``epynn-jax`` command: train a bundled example, inspect and use model files.

::

    epynn-jax list                                   the bundled examples and their models
    epynn-jax train EXAMPLE [--model NAME] [--epochs N] [--seed S] [--batch-size B]
                    [--lr LR] [--out DIR] [--quick] [--synthetic] [--cache-dir DIR]
                    [--no-plot] [--resume CHECKPOINT]
    epynn-jax info MODEL                             what a model file holds
    epynn-jax predict MODEL INPUT.npy [--out OUT]

``python -m epynn_jax`` is the same command. Errors a user can cause (a bad
argument, a missing or corrupt file, data that does not fit the model, a
diverging run) print one line on stderr and exit with status 1 (2 for usage
errors), never a traceback.

Ctrl-C during ``train`` saves the last completed epoch as a checkpoint in
``OUT/EXAMPLE_MODEL.checkpoint/last.epynn``, prints the command that resumes
it (the same options plus ``--resume``) and exits with status 130; the
resumed run ends with the same model as an uninterrupted one. The
checkpoint is removed once the run has finished and its model file is saved.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["EXAMPLES", "Recipe", "main", "build_parser"]

MODEL_SUFFIX = ".epynn"
#: Seeds are 32-bit unsigned ints (what numpy's and jax's generators both take whole).
MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How the command trains one model of one example."""

    layers: Callable[[], list]
    loss: str = "MSE"
    learning_rate: float = 0.1
    epochs: int = 100
    batch_size: int | None = None
    quick_epochs: int = 20


def _softmax(units: int, temperature: float = 1.0):
    from epynn_jax.layers import Dense
    from epynn_jax.maths.activations import ActivationHPars

    return Dense(units, "softmax", hpars=ActivationHPars(softmax_temperature=temperature))


def _examples() -> dict[str, dict[str, Recipe]]:
    from epynn_jax import layers as L

    rnn, lstm, gru, conv, pool = L.RNN, L.LSTM, L.GRU, L.Convolution, L.Pooling

    return {
        "dummy_boolean": {
            "perceptron": Recipe(lambda: [L.Dense(1, "sigmoid")], "MSE", 0.1, 100),
        },
        "dummy_string": {
            "feedforward": Recipe(lambda: [L.Flatten(), _softmax(2)], "BCE", 0.001, 50),
            "rnn": Recipe(lambda: [rnn(1), _softmax(2)], "BCE", 0.001, 50),
            "lstm": Recipe(lambda: [lstm(1), _softmax(2)], "BCE", 0.005, 50),
            "gru": Recipe(lambda: [gru(1), _softmax(2)], "BCE", 0.005, 50),
        },
        "dummy_time": {
            "feedforward": Recipe(lambda: [L.Flatten(), L.Dense(64, "relu"), _softmax(2)],
                                  "MSE", 0.005, 100),
            "rnn": Recipe(lambda: [rnn(10), _softmax(2, 5.0)], "MSE", 0.2, 100, 32, 15),
        },
        "dummy_image": {
            "feedforward": Recipe(lambda: [L.Flatten(), L.Dropout(0.2), L.Dense(64, "relu"),
                                           L.Dropout(0.5), _softmax(2)], "MSE", 0.01, 100, 32),
            "cnn": Recipe(lambda: [conv(6, (4, 4)), pool((2, 2)), L.Flatten(), _softmax(2)],
                          "MSE", 0.01, 100, 32, 30),
        },
        "ptm_protein": {
            "feedforward": Recipe(lambda: [L.Flatten(), L.Dropout(0.2), L.Dense(64, "relu"),
                                           L.Dropout(0.3), _softmax(2)], "MSE", 0.005, 100, 32, 20),
            "lstm": Recipe(lambda: [lstm(8, sequences=True), L.Flatten(), _softmax(2, 5.0)],
                           "MSE", 0.5, 20, 32, 8),
        },
        "author_music": {
            "feedforward": Recipe(lambda: [L.Flatten(), L.Dense(64, "relu"), L.Dropout(0.5),
                                           _softmax(2, 5.0)], "MSE", 0.01, 10, 16, 10),
            "rnn": Recipe(lambda: [rnn(1, sequences=True), L.Flatten(), L.Dense(64, "relu"),
                                   L.Dropout(0.5), _softmax(2)], "MSE", 0.01, 3, 16, 3),
            "gru": Recipe(lambda: [gru(1, sequences=True), L.Flatten(), L.Dense(64, "relu"),
                                   L.Dropout(0.5), _softmax(2)], "MSE", 0.01, 5, 16, 3),
        },
        "captcha_mnist": {
            "feedforward": Recipe(lambda: [L.Flatten(), L.Dropout(0.2), L.Dense(64, "relu"),
                                           L.Dropout(0.5), _softmax(10, 5.0)], "CCE", 0.02,
                                  100, 32, 20),
            "cnn": Recipe(lambda: [conv(32, (4, 4)), pool((2, 2)), L.Flatten(),
                                   _softmax(10, 5.0)], "CCE", 0.05, 100, 32, 15),
        },
        "digits": {
            "dense": Recipe(lambda: [L.Flatten(), L.Dense(64, "relu"), _softmax(10)], "CCE",
                            0.01, 30, 32, 10),
            "cnn": Recipe(lambda: [conv(8, (3, 3), strides=(1, 1)), pool((2, 2)), L.Flatten(),
                                   _softmax(10)], "CCE", 0.01, 30, 32, 5),
        },
    }


#: Names of the bundled examples, in ``list`` order (the first model of each is the default).
EXAMPLES = ("dummy_boolean", "dummy_string", "dummy_time", "dummy_image", "ptm_protein",
            "author_music", "captcha_mnist", "digits")

DESCRIPTIONS = {
    "dummy_boolean": "11 random booleans; positive when True outnumbers False",
    "dummy_string": "12 letters of ATGC; positive when the first and last letters match",
    "dummy_time": "128-step noisy series; positive when a sine hides in the noise",
    "dummy_image": "28x28 grey images; positive when a row and a column are blanked",
    "ptm_protein": "21-residue peptides, O-GlcNAcylated or not (download, or --synthetic)",
    "author_music": "1 s guitar clips at 10 kHz, one author or not (download, or --synthetic)",
    "captcha_mnist": "28x28 hand-written digits, 10 classes (download, or --synthetic)",
    "digits": "scikit-learn's 8x8 digits, 10 classes (needs scikit-learn)",
}


class CLIError(Exception):
    """An error reported as one line on stderr (exit status 1)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the lines to print on stderr (what was saved, how to resume)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2, no usage dump
        self.exit(2, f"epynn-jax: error: {message} (see epynn-jax --help)\n")


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, "
                                             f"got {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, "
                                             f"got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an int from 0 to {MAX_SEED}, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the command."""
    parser = _Parser(prog="epynn-jax", description="Train EpyNN's examples with JAX; "
                     "inspect and use model files.")
    from epynn_jax import __version__

    parser.add_argument("--version", action="version", version=f"epynn-jax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="list the bundled examples and their models")

    train = sub.add_parser("train", help="train a bundled example")
    train.add_argument("example", help="example name (see `epynn-jax list`)")
    train.add_argument("--model", help="which model of the example (default: the first)")
    train.add_argument("--epochs", type=_positive(int), help="epochs (default: the recipe's)")
    train.add_argument("--seed", type=_seed, default=0,
                       help=f"seed of data, init and shuffles (0 to {MAX_SEED})")
    train.add_argument("--batch-size", type=_positive(int), help="mini-batch size")
    train.add_argument("--lr", type=_positive(float), help="learning rate")
    train.add_argument("--out", default="epynn-jax-out", help="folder for the model and plot")
    train.add_argument("--quick", action="store_true", help="small data and few epochs")
    train.add_argument("--synthetic", action="store_true",
                       help="train download examples on a synthetic stand-in")
    train.add_argument("--cache-dir", help="download cache (default $EPYNN_JAX_DATA or "
                       "~/.cache/epynn_jax)")
    train.add_argument("--no-plot", action="store_true", help="do not write the PNG plot")
    train.add_argument("--resume", metavar="CHECKPOINT",
                       help="continue an interrupted run from its checkpoint (Ctrl-C prints "
                       "the whole command)")

    info = sub.add_parser("info", help="describe a model file")
    info.add_argument("model", help="model file")

    predict = sub.add_parser("predict", help="run a model file on an input array")
    predict.add_argument("model", help="model file")
    predict.add_argument("input", help="input array (.npy), shape (m, *input_shape)")
    predict.add_argument("--out", help="write the outputs to this exact path, in .npy format "
                         "(no suffix is added); default: print them")
    return parser


# -- subcommands -----------------------------------------------------------------------------


def _checkpoint():
    try:
        from epynn_jax.io import checkpoint
    except ImportError:
        raise CLIError("model files need epynn_jax.io.checkpoint, which this installation "
                       "lacks") from None
    return checkpoint


def cmd_list(args: argparse.Namespace, out) -> int:
    """Print each example, its models and what its data is."""
    recipes = _examples()
    for name in EXAMPLES:
        models = ", ".join(recipes[name])
        out.write(f"{name:<14} {DESCRIPTIONS[name]}\n{'':<14} models: {models}\n")
    return 0


def _resolve(args: argparse.Namespace) -> tuple[str, Recipe]:
    recipes = _examples()
    if args.example not in recipes:
        raise CLIError(f"unknown example {args.example!r}; known: {', '.join(EXAMPLES)}")
    models = recipes[args.example]
    name = args.model or next(iter(models))
    if name not in models:
        raise CLIError(f"example {args.example} has no model {name!r}; "
                       f"known: {', '.join(models)}")
    return name, models[name]


# -- train: checkpoints, resume, Ctrl-C, divergence ---------------------------------------

#: The checkpoint fit writes for the last completed epoch (at the end and on Ctrl-C).
LAST_CHECKPOINT = "last.epynn"


def _fit_checkpointed(net, params, data, *, directory: Path, resume: Path | None, **options):
    """``network.fit`` with the command's checkpointing.

    The ONE place the command passes fit's checkpoint arguments: fit writes
    ``directory/last.epynn`` at the end and on Ctrl-C (then raises
    ``TrainingInterrupted`` with ``.checkpoint``); ``resume``, a checkpoint
    file :func:`_check_resume` has read, continues that run to the same end.
    """
    from epynn_jax import network
    from epynn_jax.io import Checkpoints, load_checkpoint

    return network.fit(net, params, data, checkpoints=Checkpoints(directory),
                       resume=None if resume is None else load_checkpoint(resume), **options)


def _check_resume(text: str, net, *, epochs: int, lr: float, batch: int) -> tuple[Path, int]:
    """The checkpoint ``--resume`` names and its epoch, once it is known to continue THIS run.

    ``batch`` is the batch size fit uses (the training split's size for full batches).
    The seed and the data cannot be checked: the command printed on Ctrl-C has them.
    """
    path = Path(text)
    if path.is_dir():
        path = path / LAST_CHECKPOINT
        if not path.exists():
            raise CLIError(f"--resume {text}: a directory without a {LAST_CHECKPOINT} checkpoint")
    elif not path.exists():  # anything else that is not a regular file: load_checkpoint says
        raise CLIError(f"--resume {text}: no such checkpoint file")
    try:
        ck = _checkpoint().load_checkpoint(path)
    except (ValueError, OSError) as err:
        raise CLIError(f"--resume {text}: cannot read the checkpoint: {err}") from None
    if ck.net != net:
        arch = " -> ".join(layer.name for layer in ck.net.layers)
        raise CLIError(f"--resume {text} is a checkpoint of another model ({arch}): resume "
                       "with the example and --model it was trained with")
    plan = ck.metadata
    was = {"--epochs": plan.get("epochs"), "--batch-size": plan.get("batch_size"),
           "--lr": (plan.get("schedule") or {}).get("learning_rate")}
    now = {"--epochs": epochs, "--batch-size": batch, "--lr": lr}
    differ = [f"{opt} {was[opt]}" for opt in was if was[opt] is not None and was[opt] != now[opt]]
    if differ:
        raise CLIError(f"--resume {text} continues a run with {', '.join(differ)}: resume with "
                       "the options it was started with (Ctrl-C printed the whole command)")
    return path, int(ck.epoch)


def _resume_command(args: argparse.Namespace, model_name: str, epochs: int, lr: float,
                    checkpoint: Path) -> str:
    """The command that continues this run from ``checkpoint``, every option explicit."""
    argv = ["epynn-jax", "train", args.example, "--model", model_name, "--epochs", str(epochs),
            "--seed", str(args.seed), "--lr", repr(lr)]
    if args.batch_size:
        argv += ["--batch-size", str(args.batch_size)]
    argv += ["--out", args.out]
    if args.cache_dir:
        argv += ["--cache-dir", args.cache_dir]
    argv += [flag for flag, on in (("--quick", args.quick), ("--synthetic", args.synthetic),
                                   ("--no-plot", args.no_plot)) if on]
    return shlex.join([*argv, "--resume", str(checkpoint)])


def _interrupted(stop, args: argparse.Namespace, model_name: str, epochs: int, lr: float,
                 directory: Path) -> Interrupted:
    """What to say after Ctrl-C (fit's ``TrainingInterrupted``): what is saved, how to resume."""
    done = getattr(stop.result, "epochs", 0) or 0
    if done == 0:  # fit saved the initial state: not worth resuming
        _discard_checkpoint(directory)
        return Interrupted("interrupted before the first epoch finished; nothing to resume")
    if stop.checkpoint is None:
        return Interrupted(f"interrupted after {done} of {epochs} epochs; no checkpoint saved")
    command = _resume_command(args, model_name, epochs, lr, Path(stop.checkpoint))
    return Interrupted(f"interrupted after {done} of {epochs} epochs; checkpoint saved to "
                       f"{stop.checkpoint}. Resume with:\n  {command}")


def _diverged(err, lr: float, batch: int | None) -> CLIError:
    """A ``NonFiniteError`` in the command's words: what to change on the command line."""
    where = ("the training loss" if err.layer_name is None
             else f"the gradient of layer {err.layer_index} ({err.layer_name})")
    smaller = (f"; gradients are summed over the batch, so a smaller --batch-size (this run: "
               f"{batch}) also takes smaller steps" if batch else "")
    return CLIError(f"training diverged: {where} became NaN or inf in epoch {err.epoch + 1}, "
                    f"nothing was saved. Lower the learning rate, e.g. --lr {lr / 10:g} "
                    f"(this run: --lr {lr:g}){smaller}")


def _out_folder(text: str) -> tuple[Path, bool]:
    """``--out``, created now so a bad folder fails before training; (folder, created)."""
    folder = Path(text)
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"--out {text} is a file, not a folder")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"--out {text}: cannot create the folder: {err.strerror or err}") from None
    return folder, created


def _discard_checkpoint(directory: Path) -> None:
    """Remove the run's checkpoint (its model file is saved) and its folder if now empty."""
    with contextlib.suppress(OSError):
        (directory / LAST_CHECKPOINT).unlink(missing_ok=True)
    _remove_empty(directory)


def _remove_empty(*folders: Path) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only ever removes an empty folder


def cmd_train(args: argparse.Namespace, out) -> int:
    """Train one model of one example; save the model file and the plot.

    Ctrl-C leaves a checkpoint and raises :class:`Interrupted` with the resume command.
    """
    import jax

    from epynn_jax import network
    from epynn_jax.data import examples
    from epynn_jax.errors import NonFiniteError, TrainingInterrupted
    from epynn_jax.io import report
    from epynn_jax.maths.schedules import Schedule

    model_name, recipe = _resolve(args)
    try:
        data, info = examples.prepare(args.example, seed=args.seed, quick=args.quick,
                                      synthetic=args.synthetic, cache=args.cache_dir)
    except examples.DataUnavailable as err:
        hint = " (or run with --synthetic)" if args.example in examples.REMOTES else ""
        raise CLIError(f"{err}{hint}") from None
    epochs = args.epochs or (recipe.quick_epochs if args.quick else recipe.epochs)
    batch = args.batch_size or recipe.batch_size
    lr = args.lr or recipe.learning_rate
    input_shape = data["dtrain"][0].shape[1:]
    n_train = data["dtrain"][0].shape[0]
    net = network.build(recipe.layers(), input_shape)
    resume, resumed_at = None, 0
    if args.resume is not None:
        resume, resumed_at = _check_resume(args.resume, net, epochs=epochs, lr=lr,
                                           batch=min(batch or n_train, n_train))
    folder, created = _out_folder(args.out)
    directory = folder / f"{args.example}_{model_name}.checkpoint"
    key_init, key_fit = jax.random.split(jax.random.key(args.seed))
    params = network.init(net, key_init)
    title = (f"{args.example} / {model_name}: {' -> '.join(layer.name for layer in net.layers)}"
             f"; {recipe.loss}, lr {lr:g}, batch {batch or 'full'}, {epochs} epochs"
             + (f"; resumed at epoch {resumed_at}" if resume else ""))
    reporter = report.Reporter(epochs, out, every=max(epochs // 10, 1), title=title)
    reporter.begin()  # the title shows while the first epoch compiles
    start = time.perf_counter()
    try:
        result = _fit_checkpointed(net, params, data, directory=directory, resume=resume,
                                   epochs=epochs, loss=recipe.loss, batch_size=batch,
                                   schedule=Schedule(learning_rate=lr), key=key_fit,
                                   callbacks=[reporter, lambda epoch, history:
                                              check_signalled()])
    except TrainingInterrupted as stop:
        reporter.close()
        raise _interrupted(stop, args, model_name, epochs, lr, directory) from None
    except KeyboardInterrupt:  # before fit's loop: nothing trained, nothing saved
        _remove_empty(directory, *([folder] if created else []))
        raise
    except Exception as err:
        if isinstance(err, NonFiniteError):
            _remove_empty(directory, *([folder] if created else []))  # no checkpoint saved
            raise _diverged(err, lr, batch) from None
        kept = getattr(err, "fit_result", None)  # trained before the error: fit saved it
        saved = kept.checkpoints.get("last") if kept is not None and kept.epochs else None
        if saved is None:  # (nothing trained in this call: fit saved nothing)
            _remove_empty(directory, *([folder] if created else []))
            raise
        command = _resume_command(args, model_name, epochs, lr, Path(saved))
        raise CLIError(f"{type(err).__name__}: {err}\nafter {kept.epochs} of {epochs} epochs; "
                       f"checkpoint saved to {saved}. Resume with:\n  {command}") from err
    seconds = time.perf_counter() - start
    final = report.final_metrics(result.history)
    out.write(f"trained in {seconds:.1f} s"
              + (f" (epochs {resumed_at + 1} to {result.epochs})" if resume else "") + "; final "
              + ", ".join(f"{m} {s} {v:.4f}" for m, per in final.items() for s, v in per.items())
              + "\n")
    stem = folder / f"{args.example}_{model_name}"
    metadata = {"example": args.example, "model": model_name, "loss": recipe.loss,
                "learning_rate": lr, "batch_size": batch, "epochs": result.epochs,
                "seed": args.seed, "quick": args.quick, "synthetic": args.synthetic,
                "classes": [c if isinstance(c, (int, float, str)) else str(c)
                            for c in info.get("classes", [])]}
    try:
        checkpoint = _checkpoint()
    except CLIError as err:
        out.write(f"model not saved: {err}\n")
    else:
        path = stem.with_suffix(MODEL_SUFFIX)
        checkpoint.save_model(path, net, result.params, metadata=metadata,
                              history=result.history)
        out.write(f"model saved to {path}\n")
        _discard_checkpoint(directory)
    if not args.no_plot:
        png = report.plot_history(result.history, stem.with_suffix(".png"),
                                  f"{args.example} / {model_name}")
        out.write(f"plot saved to {png}\n" if png else "no plot: matplotlib is not installed\n")
    return 0


def _load(path: str):
    checkpoint = _checkpoint()
    if Path(path).is_dir():
        raise CLIError(f"{path} is a directory, not a model file")
    if not Path(path).exists():  # anything else that is not a regular file: load_model says
        raise CLIError(f"no such model file: {path}")
    try:
        return checkpoint.load_model(path)
    except (ValueError, OSError) as err:
        raise CLIError(f"cannot read model file {path}: {err}") from None


def cmd_info(args: argparse.Namespace, out) -> int:
    """Print the architecture, parameter shapes, metadata and final metrics of a model file."""
    model = _load(args.model)
    net = model.net
    out.write(f"model file {args.model}\n")
    out.write(f"input shape (m, {', '.join(map(str, net.input_shape))}) -> output shape "
              f"(m, {', '.join(map(str, net.output_shape))})\n")
    total = 0
    for i, (layer, p) in enumerate(zip(net.layers, model.params)):
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in p.items()) or "no parameters"
        total += sum(int(v.size) for v in p.values())
        act = ", ".join(f"{k}={v}" for k, v in layer.activation.items())
        out.write(f"  {i}: {layer.name}{f' ({act})' if act else ''}: {shapes}\n")
    out.write(f"parameters: {total}\n")
    if model.metadata:
        out.write("metadata: " + json.dumps(model.metadata, sort_keys=True, default=str) + "\n")
    if model.history:
        from epynn_jax.io.report import final_metrics

        final = final_metrics(model.history)
        out.write("final metrics: " + ", ".join(f"{m} {s} {v:.4f}" for m, per in final.items()
                                                for s, v in per.items()) + "\n")
    return 0


#: The first bytes of every .npy file (numpy's format: magic string, then version).
NPY_MAGIC = b"\x93NUMPY"
#: An input .npy of more data bytes than this is memory-mapped, not read: ``predict``
#: then reads, checks and places it a chunk at a time (an input larger than the host's
#: memory runs too).
MAP_INPUT_BYTES = 256 * 2**20


def _read_input(text: str):
    """The array in the .npy file ``text``, or a CLIError saying what the file is instead."""
    path = Path(text)
    if path.is_dir():
        raise CLIError(f"input {text} is a directory, not a .npy file")
    try:  # a named pipe or a device is refused before it is opened
        f = _checkpoint().open_regular(path, ".npy input")
    except FileNotFoundError:
        raise CLIError(f"no such input file: {text}") from None
    except OSError as err:
        raise CLIError(f"cannot read input {text}: {err.strerror or err}") from None
    with f:
        try:
            return _read_npy(f, text)
        except OSError as err:
            raise CLIError(f"cannot read input {text} as a .npy array: {err}") from None


def _read_npy(f, text: str):
    """The array in the open .npy file ``f``, once its header is known to fit the file."""
    import numpy as np

    head = f.read(len(NPY_MAGIC))
    if head != NPY_MAGIC:
        what = (" (it is a zip archive, as numpy.savez writes: save one array with numpy.save)"
                if head.startswith(b"PK\x03\x04") else "")
        raise CLIError(f"input {text} is not a .npy file{what}; write the array with numpy.save")
    try:
        f.seek(0)
        header = _check_npy_size(f, text)
        if header is not None and header[0] > MAP_INPUT_BYTES:  # predict reads it by chunks
            _, shape, fortran, dtype, offset = header
            return np.memmap(f, dtype, "r", offset, shape, "F" if fortran else "C")
        f.seek(0)
        return np.lib.format.read_array(f, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err):  # dtype object: the elements would be unpickled
            raise CLIError(f"input {text} holds Python objects (dtype object), which are "
                           "never unpickled: save a numeric array") from None
        raise CLIError(f"cannot read input {text} as a .npy array: {err}") from None


def _check_npy_size(f, text: str) -> tuple | None:
    """Raise unless the data the .npy header at ``f`` declares fits in the file: a few
    bytes must not make numpy allocate terabytes. Returns ``(bytes declared, shape,
    fortran_order, dtype, offset of the data)`` (None for an object array: it holds a
    pickle, which reading refuses)."""
    import math
    import os

    import numpy as np

    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read_header(f)  # numpy caps the header it parses
    if dtype.hasobject:
        return None
    declared = math.prod(shape) * dtype.itemsize
    data = os.fstat(f.fileno()).st_size - f.tell()
    if declared > data:
        raise CLIError(f"input {text}: its .npy header declares an array {tuple(shape)} of "
                       f"{dtype} ({declared} bytes), but the file holds {data} bytes of data "
                       "(truncated or damaged)")
    return declared, tuple(shape), fortran, dtype, f.tell()


def _write_output(text: str, A) -> Path:
    """Write ``A`` in .npy format to exactly ``text`` (numpy.save would append .npy), atomically."""
    import numpy as np

    path = Path(text)
    if path.is_dir():
        raise CLIError(f"--out {text} is a directory; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    _checkpoint().atomic_write(path, lambda f: np.lib.format.write_array(f, A,
                                                                          allow_pickle=False))
    return path


def _same_file(a: str, b: str) -> bool:
    """Whether the paths ``a`` and ``b`` name one file: the same file where both exist
    (links and hard links followed), else the same resolved path."""
    import os

    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one is missing (or not a path the system takes)
        return os.path.realpath(a) == os.path.realpath(b)


def _check_out(out: str, model: str, input_: str) -> None:
    """Raise unless ``--out`` is another file than the model and the input: writing the
    outputs there would replace the file being read."""
    if out.endswith(("/", os.sep)):  # (an existing folder is named where it is written)
        raise CLIError(f"--out {out} is a folder: give the path of the .npy file to write")
    for role, path in (("model file", model), ("input", input_)):
        if _same_file(out, path):
            raise CLIError(f"--out {out} is the {role} {path}: writing the outputs there "
                           "would replace it; give another path")


def cmd_predict(args: argparse.Namespace, out) -> int:
    """Run the model on an input array; print the outputs or write them to ``--out``."""
    import numpy as np

    from epynn_jax import network
    from epynn_jax.layers import LayerError

    if args.out:
        _check_out(args.out, args.model, args.input)
    model = _load(args.model)
    X = _read_input(args.input)
    try:
        A = np.asarray(network.predict(model.net, model.params, X))
    except (LayerError, ValueError, TypeError) as err:
        raise CLIError(f"input {args.input}: {err}") from None
    if args.out:
        path = _write_output(args.out, A)
        out.write(f"outputs {A.shape} saved to {path}\n")
    else:
        with np.printoptions(precision=4, suppress=True, threshold=200):
            out.write(f"{A}\n")
    return 0


COMMANDS = {"list": cmd_list, "train": cmd_train, "info": cmd_info, "predict": cmd_predict}


#: The signals received while a command runs (SIGINT, SIGTERM), in order: each raises
#: ``KeyboardInterrupt``, and this record survives the places that swallow one (Python
#: ignores an exception raised in a garbage-collection callback, such as JAX's).
_SIGNALLED: list[int] = []


def _on_signal(signum: int, frame) -> None:
    _SIGNALLED.append(signum)
    raise KeyboardInterrupt


def check_signalled() -> None:
    """Raise ``KeyboardInterrupt`` if a signal came that something swallowed (called
    between epochs: the command then stops and saves as for a Ctrl-C it saw)."""
    if _SIGNALLED:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_interrupt():
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` and are recorded (main thread only;
    the previous handlers come back after)."""
    _SIGNALLED.clear()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)
    hook = sys.unraisablehook

    def quiet(unraisable) -> None:  # the swallowed interrupt is recorded: no traceback
        if not (_SIGNALLED and issubclass(unraisable.exc_type, KeyboardInterrupt)):
            hook(unraisable)

    sys.unraisablehook = quiet
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None, out=None, err=None) -> int:
    """Run the command with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Ctrl-C (SIGINT) and SIGTERM stop the command as one line (``train`` saves its
    last completed epoch first), with status 130 and 143."""
    with _signals_interrupt():
        status = _main(argv, out, err)
    return 143 if status == 130 and signal.SIGTERM in _SIGNALLED else status


def run() -> None:
    """The program (``epynn-jax``, ``python -m epynn_jax``): :func:`main`, then exit with its
    status. After an interrupt the process ends at once (``os._exit``, the output flushed):
    JAX can crash tearing down a compilation that Ctrl-C cut short (SIGSEGV at exit, after
    the one line was printed), and nothing is left to do (the checkpoint is saved)."""
    status = main()
    if status in (130, 143):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status)
    sys.exit(status)


def _main(argv: Sequence[str] | None, out, err) -> int:
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except KeyboardInterrupt:
        return 130
    from epynn_jax import config

    config.setup()  # a program, not a library: the compilation cache on (EPYNN_JAX_NO_CACHE=1: off)
    try:
        return COMMANDS[args.command](args, out)
    except CLIError as e:
        err.write(f"epynn-jax {args.command}: error: {e}\n")
    except (ValueError, TypeError, OSError, ArithmeticError, MemoryError) as e:
        # LayerError, DataError, ModelFileError, NonFiniteError (a diverging run), ...
        err.write(f"epynn-jax {args.command}: error: {type(e).__name__}: {e}\n")
    except Interrupted as stop:  # Ctrl-C where the command saved something: say what
        err.write("".join(f"epynn-jax {args.command}: {line}\n" if i == 0 else f"{line}\n"
                          for i, line in enumerate(str(stop).splitlines())))
        return 130
    except KeyboardInterrupt:
        err.write(f"epynn-jax {args.command}: interrupted\n")
        return 130
    return 1


if __name__ == "__main__":  # pragma: no cover
    run()
